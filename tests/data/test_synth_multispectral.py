"""Multispectral synthetic pairs (``mmchange synth --bands 4|13``): uint16 reflectance GeoTIFFs with band names and
colour interpretation, a recorded brightness gain of date B, changes seen only outside the visible bands, and the
default 3-band output left exactly as it was."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mmchange_core.data.layouts import detect_layout
from mmchange_core.data.synth import (
    MANIFEST,
    SynthConfig,
    SynthSeriesConfig,
    make_synthetic_dataset,
    synthesize_pair,
    synthesize_series,
)
from mmchange_core.errors import InputError
from tests.cli_helpers import assert_cli_error

#: sha256 of the pixels of the default (3-band) pairs and series, taken before multispectral pairs existed.
PINNED = {
    "pairs": "ba34e47a42ed899251270f00a5899923e2cd02b1798cfec0181de990687b2843",
    "pairs_text_signal": "c5c0adbded51f4ddb70ef62a42c74ef2f23922761a43931a5a67d5ddb0d49a4b",
    "series": "7fa724ecf926eb0970e9d043cada41be1aae1fd53513ae5ef4e17d88e7a20401",
}
#: The manifest's config keys of a 3-band dataset, as before multispectral pairs existed.
RGB_CONFIG_KEYS = ["pairs", "size", "seed", "text_signal", "val_fraction", "test_fraction", "no_change_fraction"]


def _sha(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _mask(polygon: list[list[float]], size: int) -> np.ndarray:
    """A recorded object's footprint rasterised."""
    img = Image.new("L", (size, size), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in polygon], fill=255)
    return np.asarray(img) > 0


def _read(path: Path) -> tuple[np.ndarray, dict]:
    """A GeoTIFF's pixels ``[H, W, bands]`` and what its header says about the bands."""
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(path) as ds:
        header = {"count": ds.count, "dtype": ds.dtypes[0], "colorinterp": [c.name for c in ds.colorinterp],
                  "descriptions": list(ds.descriptions), "crs": ds.crs.to_string() if ds.crs else None,
                  "pixel": (ds.transform.a, ds.transform.e), "origin": (ds.transform.c, ds.transform.f)}
        return np.moveaxis(ds.read(), 0, 2), header


def _written_pairs(root: Path):
    """Each written pair with its metadata: ``(meta, A, B, label)`` in the order of the meta files."""
    for meta_path in sorted(root.glob("*/meta/*.json")):
        meta = json.loads(meta_path.read_text())
        folder = meta_path.parent.parent
        a, _ = _read(folder / meta["images"]["A"])
        b, _ = _read(folder / meta["images"]["B"])
        yield meta, a, b, np.asarray(Image.open(folder / meta["images"]["label"])) > 0


# --------------------------------------------------------------------------------------------------
# the default stays as it was


def test_default_three_band_output_is_unchanged(tmp_path: Path) -> None:
    for key, text_signal in (("pairs", False), ("pairs_text_signal", True)):
        config = SynthConfig(pairs=6, size=64, seed=3, text_signal=text_signal)
        assert config.bands == 3
        pairs = [synthesize_pair(i, config) for i in range(6)]
        assert _sha([a for p in pairs for a in (p.image_a, p.image_b, p.label)]) == PINNED[key], key
        assert all(p.image_a.dtype == np.uint8 and p.image_a.shape == (64, 64, 3) for p in pairs)
    series_config = SynthSeriesConfig(pairs=3, size=64, seed=3, dates=3)
    series = [synthesize_series(i, series_config) for i in range(3)]
    assert _sha([a for s in series for a in (*s.images, s.first_change)]) == PINNED["series"]
    # the files: PNGs only, no metadata folder, the manifest lists the settings it always listed
    make_synthetic_dataset(tmp_path / "rgb", SynthConfig(pairs=3, size=32, seed=2))
    files = sorted(p.relative_to(tmp_path / "rgb").as_posix() for p in (tmp_path / "rgb").rglob("*") if p.is_file())
    assert files == ["synth.json", "test/A/0002.png", "test/B/0002.png", "test/label/0002.png", "train/A/0000.png",
                     "train/B/0000.png", "train/label/0000.png", "val/A/0001.png", "val/B/0001.png",
                     "val/label/0001.png"]
    manifest = json.loads((tmp_path / "rgb" / MANIFEST).read_text())
    assert list(manifest["config"]) == RGB_CONFIG_KEYS and list(manifest) == ["generator", "config", "splits"]


# --------------------------------------------------------------------------------------------------
# files and headers


@pytest.mark.parametrize("bands", [4, 13])
def test_multispectral_files_are_uint16_reflectance_geotiffs(tmp_path: Path, bands: int) -> None:
    pytest.importorskip("rasterio")
    config = SynthConfig(pairs=6, size=64, seed=1, bands=bands)
    report = make_synthetic_dataset(tmp_path / "ds", config)
    assert report.written == 6 and report.to_dict()["bands"] == bands
    layout = detect_layout(tmp_path / "ds")  # the .tif dates pair with their .png labels by name
    pairs = [p for split in ("train", "val", "test") for p in layout.require_labels(split)]
    assert len(pairs) == 6 and all(p.image_a.suffix == ".tif" and p.label.suffix == ".png" for p in pairs)
    manifest = json.loads((tmp_path / "ds" / MANIFEST).read_text())
    names = manifest["band_names"]
    assert manifest["config"]["bands"] == bands and manifest["scale"] == 10000 and len(names) == bands
    stack = []
    for pair in pairs:
        for path in (pair.image_a, pair.image_b):
            pixels, header = _read(path)
            assert header["count"] == bands and header["dtype"] == "uint16" and pixels.shape == (64, 64, bands)
            assert header["descriptions"] == names
            assert header["crs"] == "EPSG:32632" and header["pixel"][0] == -header["pixel"][1] > 0
            if bands == 4:
                assert names == ["red", "green", "blue", "nir"]
                assert header["colorinterp"] == ["red", "green", "blue", "undefined"]
            else:
                assert names == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
                                 "B12"]
                # nothing says red, green or blue: the user chooses (true colour is 4,3,2). A GeoTIFF cannot mark
                # its first band undefined (GDAL reads band 1 of a MINISBLACK TIFF as gray), so it may say gray.
                assert header["colorinterp"][1:] == ["undefined"] * 12
                assert header["colorinterp"][0] in ("undefined", "gray")
            stack.append(pixels)
    values = np.stack(stack).reshape(-1, bands).astype(np.float64)
    # plausible surface reflectance x 10000: within 0..10000, neither black nor saturated
    assert values.max() <= 10000 and 200 < values.mean() < 5000
    assert np.percentile(values, 99) < 7000
    band = {name: values[:, i] for i, name in enumerate(names)}
    red, nir = (band["red"], band["nir"]) if bands == 4 else (band["B04"], band["B08"])
    assert np.median(nir) > 1.2 * np.median(red)  # vegetation and soil reflect more near-infrared than red


# --------------------------------------------------------------------------------------------------
# the gain of date B


def _ratios(a: np.ndarray, b: np.ndarray, label: np.ndarray) -> list[float]:
    """Per band, the median of B / A over the unchanged pixels away from the noise floor (A > 300), for the bands
    mostly above it (all but B10, the cirrus band, near 0.01)."""
    a, b = a[~label].astype(np.float64), b[~label].astype(np.float64)
    bright = a > 300
    return [float(np.median(b[bright[:, c], c] / a[bright[:, c], c])) for c in range(a.shape[1])
            if bright[:, c].mean() > 0.5]


@pytest.mark.parametrize("bands", [4, 13])
def test_date_b_is_date_a_times_the_recorded_gain(tmp_path: Path, bands: int) -> None:
    pytest.importorskip("rasterio")
    config = SynthConfig(pairs=6, size=64, seed=2, bands=bands)
    make_synthetic_dataset(tmp_path / "ds", config)
    gains = []
    for meta, a, b, label in _written_pairs(tmp_path / "ds"):
        gain = meta["gain"]
        assert config.gain_range[0] <= gain <= config.gain_range[1]
        ratios = _ratios(a, b, label)
        assert len(ratios) >= bands - 1
        assert ratios == pytest.approx([gain] * len(ratios), abs=0.02), meta["images"]["A"]
        gains.append(gain)
    assert len(gains) == 6 and len(set(gains)) == 6  # a gain of its own per pair
    # (1, 1) disables it
    flat = synthesize_pair(0, SynthConfig(pairs=6, size=64, seed=2, bands=bands, gain_range=(1.0, 1.0)))
    assert flat.info["gain"] == 1.0
    ratios = _ratios(flat.image_a, flat.image_b, flat.label)
    assert ratios == pytest.approx([1.0] * len(ratios), abs=0.01)


# --------------------------------------------------------------------------------------------------
# changes outside the visible bands


@pytest.mark.parametrize("bands", [4, 13])
def test_nir_only_changes_leave_the_visible_bands_as_they_were(tmp_path: Path, bands: int) -> None:
    pytest.importorskip("rasterio")
    config = SynthConfig(pairs=6, size=64, seed=7, bands=bands, nir_only_fraction=0.5)
    make_synthetic_dataset(tmp_path / "ds", config)
    visible = ("red", "green", "blue") if bands == 4 else ("B04", "B03", "B02")
    near_infrared = "nir" if bands == 4 else "B08"
    checked = 0
    for meta, a, b, label in _written_pairs(tmp_path / "ds"):
        gain, scale = meta["gain"], meta["scale"]
        # the noise of B - gain x A, in stored values
        sigma = scale * float(np.hypot(meta["noise"]["B"], gain * meta["noise"]["A"]))
        names = meta["band_names"]
        kinds = [c["kind"] for c in meta["changes"]]
        assert meta["nir_only"] == kinds.count("nir_only") and meta["new"] == kinds.count("new")
        for change in meta["changes"]:
            mask = _mask(change["polygon"], 64)
            assert label[mask].all() and int(mask.sum()) == change["pixels"]  # labelled as change
            if change["kind"] != "nir_only":
                continue
            assert set(visible) <= set(change["unchanged_bands"]) and near_infrared in change["changed_bands"]
            assert set(change["unchanged_bands"]) | set(change["changed_bands"]) == set(names)
            residual = np.abs(b[mask].astype(np.float64) - gain * a[mask].astype(np.float64)).mean(axis=0) / sigma
            for name in change["unchanged_bands"]:  # no more than the gain and the noise (pure noise: ~0.8)
                assert residual[names.index(name)] < 3.0, (meta["images"]["A"], name, residual)
            assert residual[names.index(near_infrared)] > 10.0, (meta["images"]["A"], residual)
            checked += 1
    assert checked >= 3  # the seed gives several NIR-only objects


def test_nir_only_fraction_sets_the_share_of_nir_only_changes() -> None:
    def share(fraction: float) -> float:
        config = SynthConfig(pairs=40, size=64, seed=4, bands=4, nir_only_fraction=fraction)
        kinds = [c["kind"] for i in range(40) for c in synthesize_pair(i, config).info["changes"]]
        return kinds.count("nir_only") / len(kinds)

    assert share(0.0) == 0.0 and share(1.0) == 1.0
    assert 0.15 < share(0.3) < 0.45


# --------------------------------------------------------------------------------------------------
# determinism, resume, refusals


def test_multispectral_pairs_are_deterministic_and_resumable(tmp_path: Path) -> None:
    pytest.importorskip("rasterio")
    config = SynthConfig(pairs=6, size=64, seed=5, bands=13)
    one, two = synthesize_pair(3, config), synthesize_pair(3, config)
    assert np.array_equal(one.image_a, two.image_a) and np.array_equal(one.image_b, two.image_b)
    assert np.array_equal(one.label, two.label) and one.info == two.info
    other = synthesize_pair(3, SynthConfig(pairs=6, size=64, seed=6, bands=13))
    assert not np.array_equal(one.image_a, other.image_a)
    # the same place as the RGB pair of that index: the same labels
    assert np.array_equal(one.label, synthesize_pair(3, SynthConfig(pairs=6, size=64, seed=5)).label)
    make_synthetic_dataset(tmp_path / "a", config)
    make_synthetic_dataset(tmp_path / "b", config)
    files_a = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    files_b = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert files_a == files_b and len(files_a) == 1 + 4 * 6
    label = next((tmp_path / "a").glob("test/label/*.png"))
    label.unlink()
    again = make_synthetic_dataset(tmp_path / "a", config)
    assert (again.written, again.skipped) == (1, 5) and label.read_bytes() == files_b[label.relative_to(tmp_path / "a")]
    with pytest.raises(InputError, match="other settings"):
        make_synthetic_dataset(tmp_path / "a", SynthConfig(pairs=6, size=64, seed=5, bands=4))


@pytest.mark.parametrize("kwargs, message", [
    ({"bands": 5}, "--bands must be 3 (RGB PNG), 4 (red, green, blue, nir GeoTIFF) or 13"),
    ({"bands": 4, "gain_range": (1.2, 0.9)}, "must satisfy 0 < LO <= HI"),
    ({"bands": 4, "gain_range": (0.0, 1.0)}, "must satisfy 0 < LO <= HI"),
    ({"gain_range": (1.0, 1.0)}, "--gain-range applies to multispectral pairs"),
    ({"bands": 4, "nir_only_fraction": 1.5}, "nir_only_fraction must be between 0 and 1"),
])
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SynthConfig(pairs=6, **kwargs)


def test_series_stay_rgb() -> None:
    with pytest.raises(InputError, match="series .--dates. are RGB only"):
        SynthSeriesConfig(pairs=3, dates=3, bands=4)


def test_missing_rasterio_is_refused_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rasterio", None)  # as if the geo extra were not installed
    with pytest.raises(InputError, match=r"rasterio is not installed \(required for --bands 4 or 13.*mmchange\[geo\]"):
        make_synthetic_dataset(tmp_path / "ds", SynthConfig(pairs=3, size=32, bands=4))
    assert not (tmp_path / "ds").exists()


def test_cli_bands(cli, tmp_path: Path) -> None:
    result = cli("synth", tmp_path / "five", "--bands", 5, "--pairs", 3, "--size", 32)
    assert_cli_error(result, "--bands must be 3 (RGB PNG), 4 (red, green, blue, nir GeoTIFF) or 13 (Sentinel-2 "
                             "B01-B12 GeoTIFF), got 5")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "five").exists()  # refused before anything is written
    result = cli("synth", tmp_path / "gain", "--bands", 4, "--gain-range", "1.1", "--pairs", 3)
    assert_cli_error(result, "--gain-range '1.1' is not LO,HI")
    assert result.exit_code == 1 and not (tmp_path / "gain").exists()
    result = cli("synth", tmp_path / "rgb", "--gain-range", "1,1", "--pairs", 3)
    assert_cli_error(result, "--gain-range applies to multispectral pairs")
    pytest.importorskip("rasterio")
    result = cli("synth", tmp_path / "four", "--bands", 4, "--gain-range", "0.9,1.1", "--pairs", 3, "--size", 32,
                 "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["bands"] == 4 and summary["gain_range"] == [0.9, 1.1] and summary["written"] == 3
    metas = [json.loads(p.read_text()) for p in (tmp_path / "four").glob("*/meta/*.json")]
    assert len(metas) == 3 and all(0.9 <= m["gain"] <= 1.1 for m in metas)
