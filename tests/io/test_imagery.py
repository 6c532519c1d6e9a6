"""Band choice and the one radiometric rule (mmchange_core.io.imagery, io.raster.open_sources)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmchange_core.errors import InputError
from mmchange_core.io.imagery import Imagery, Radiometry, parse_bands, plan_bands
from mmchange_core.io.raster import open_source, open_sources, read_composite, read_images
from tests.data_helpers import spy_on_scales

rasterio = pytest.importorskip("rasterio")
from rasterio.enums import ColorInterp  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402


def write_tif(path: Path, bands: np.ndarray, colours: list[str] | None = None, **extra) -> Path:
    """``[count, H, W]`` as a GeoTIFF, with colour interpretations when given."""
    count, height, width = bands.shape
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=count, dtype=bands.dtype.name,
                       crs="EPSG:32632", transform=from_origin(600000, 5000000, 10, 10), **extra) as dst:
        dst.write(bands)
        if colours is not None:
            dst.colorinterp = [getattr(ColorInterp, c) for c in colours]
    return path


def reflectance(count: int, height: int = 40, width: int = 48, seed: int = 0) -> np.ndarray:
    """Plausible uint16 reflectance x 10000: a different level per band, plus texture."""
    rng = np.random.default_rng(seed)
    levels = np.linspace(500, 4000, count)[:, None, None]
    return (levels + rng.normal(0, 300, (count, height, width))).clip(1, 10000).astype(np.uint16)


# ------------------------------------------------------------------------------------------- band choice

def test_colour_interpretation_names_rgb_in_any_order() -> None:
    plan = plan_bands("bgrn.tif", 4, ["blue", "green", "red", "undefined"], Imagery())
    assert plan.bands == (3, 2, 1) and plan.rgb == (0, 1, 2)
    assert "pass --bands" in plan.note   # the fourth band is left out, and the note says how to use it


def test_more_than_three_bands_without_rgb_names_are_refused_naming_bands() -> None:
    with pytest.raises(InputError, match="s2.tif has 13 bands .* pass --bands") as info:
        plan_bands("s2.tif", 13, ["gray"] + ["undefined"] * 12, Imagery())
    assert "\n" not in str(info.value)


def test_three_bands_grey_and_rgba_keep_their_rules() -> None:
    assert plan_bands("a.tif", 3, ["undefined"] * 3, Imagery()).bands == (1, 2, 3)
    assert plan_bands("g.tif", 1, ["gray"], Imagery()).bands == (1, 1, 1)
    assert plan_bands("a.tif", 4, ["undefined"] * 3 + ["alpha"], Imagery()).bands == (1, 2, 3)


def test_explicit_bands_are_checked_against_the_file() -> None:
    plan = plan_bands("s2.tif", 13, [], Imagery(bands=(4, 3, 2, 8)))
    assert plan.bands == (4, 3, 2, 8) and plan.rgb == (0, 1, 2)
    with pytest.raises(InputError, match="rgbn.tif has 4 bands, so band 8 of --bands 4,3,2,8 does not exist"):
        plan_bands("rgbn.tif", 4, [], Imagery(bands=(4, 3, 2, 8)))
    rgb = plan_bands("s2.tif", 13, [], Imagery(bands=(8, 4, 3, 2), rgb=(4, 3, 2)))
    assert rgb.rgb == (1, 2, 3)


@pytest.mark.parametrize("text, message", [("0,1,2", "start at 1"), ("4,4,2", "repeats a band"),
                                           ("a,b", "not a list of band numbers"), ("", "is empty")])
def test_bad_band_lists_are_one_line(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_bands(text)


def test_an_override_of_another_band_count_is_refused() -> None:
    stored = Imagery(bands=(4, 3, 2, 8))
    assert stored.with_bands((3, 2, 1, 8)).bands == (3, 2, 1, 8)
    with pytest.raises(InputError, match="--bands 4,3,2 gives 3 bands, but the model reads 4"):
        stored.with_bands((4, 3, 2))


def test_a_sentinel2_stack_reads_only_the_chosen_bands(tmp_path: Path) -> None:
    data = reflectance(13)
    path = write_tif(tmp_path / "s2.tif", data)
    with pytest.raises(InputError, match="pass --bands"):
        open_source(path)
    with open_source(path, imagery=Imagery(bands=(4, 3, 2, 8), radiometry=Radiometry("fixed", 0, 10000))) as src:
        rows = src.read_rows(0, src.height)
        assert rows.shape == (40, 48, 4) and rows.dtype == np.uint8
        expected = np.clip(np.round(np.moveaxis(data[[3, 2, 1, 7]], 0, -1) * (255 / 10000)), 0, 255)
        assert np.abs(rows.astype(int) - expected).max() <= 1   # float32 arithmetic may round the other way
        assert src.thumbnail(16).shape[-1] == 3
    with pytest.raises(InputError, match="band 14 of --bands"):
        open_source(path, imagery=Imagery(bands=(14, 3, 2)))


# ------------------------------------------------------------------------------------------- radiometry

def test_joint_rule_keeps_a_brighter_date_brighter(tmp_path: Path) -> None:
    a = reflectance(4)
    b = (a.astype(np.float64) * 1.5).clip(0, 10000).astype(np.uint16)   # the same ground, 50 % brighter
    paths = [write_tif(tmp_path / "a.tif", a), write_tif(tmp_path / "b.tif", b)]
    imagery = Imagery(bands=(1, 2, 3, 4))
    joint_a, joint_b = read_images(paths, None, imagery)
    assert joint_b.astype(float).mean() > joint_a.astype(float).mean() * 1.25
    per_image = Imagery(bands=(1, 2, 3, 4), radiometry=Radiometry("per-image"))
    own_a, own_b = read_images(paths, None, per_image)
    assert abs(own_b.astype(float).mean() - own_a.astype(float).mean()) < 3   # asked for: the change is erased


def test_both_dates_go_through_one_function_with_one_scale(tmp_path: Path, monkeypatch) -> None:
    calls = spy_on_scales(monkeypatch)
    a, b = reflectance(4, seed=1), reflectance(4, seed=2) // 2
    paths = [write_tif(tmp_path / "a.tif", a), write_tif(tmp_path / "b.tif", b)]
    for rule in ("joint", "fixed"):
        calls.clear()
        sources = open_sources(paths, imagery=Imagery(bands=(1, 2, 3, 4), radiometry=Radiometry(rule)))
        for source in sources:
            source.read_rows(0, 10)
            source.close()
        assert len(calls) == 2
        assert np.array_equal(calls[0][0], calls[1][0]) and np.array_equal(calls[0][1], calls[1][1]), rule


def test_fixed_rule_maps_its_range(tmp_path: Path) -> None:
    values = np.array([[[0, 1500, 3000, 4500]]], np.uint16)
    path = write_tif(tmp_path / "one.tif", np.repeat(np.repeat(values, 3, axis=0), 4, axis=1))
    with open_source(path, imagery=Imagery(radiometry=Radiometry("fixed", 0, 3000))) as source:
        assert source.read_rows(0, 1)[0, :, 0].tolist() == [0, 128, 255, 255]   # 1500/3000*255 = 127.5 -> 128


def test_eight_bit_data_is_left_as_it_is_and_none_refuses_high_bit_depth(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (3, 20, 20), dtype=np.uint8)
    with open_source(write_tif(tmp_path / "rgb.tif", rgb)) as source:
        assert np.array_equal(source.read_rows(0, 20), np.moveaxis(rgb, 0, -1)) and source.scale is None
    with pytest.raises(InputError, match="radiometry 'none' passes only 8-bit data"):
        open_source(write_tif(tmp_path / "r16.tif", reflectance(3)), imagery=Imagery(radiometry=Radiometry("none")))


def test_dates_of_different_band_counts_are_refused_naming_both(tmp_path: Path) -> None:
    paths = [write_tif(tmp_path / "s2.tif", reflectance(13)), write_tif(tmp_path / "planet.tif", reflectance(4))]
    with pytest.raises(InputError, match="planet.tif has 4 bands but s2.tif has 13"):
        open_sources(paths, imagery=Imagery(bands=(3, 2, 1)))


@pytest.mark.parametrize("fields, message", [({"rule": "gamma"}, "unknown"), ({"low": 5, "high": 5}, "high > low"),
                                             ({"percentiles": (50, 10)}, "percentiles")])
def test_bad_radiometry_is_one_line(fields: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Radiometry(**fields)


def test_captions_see_the_rgb_composite_of_named_bands(tmp_path: Path) -> None:
    data = reflectance(13)
    path = write_tif(tmp_path / "s2.tif", data)
    picture = read_composite(path, imagery=Imagery(bands=(8, 4, 3, 2), rgb=(4, 3, 2),
                                                   radiometry=Radiometry("fixed", 0, 10000)))
    assert picture.shape == (40, 48, 3)
    expected_red = np.clip(np.round(data[3] * (255 / 10000)), 0, 255)
    assert np.abs(picture[..., 0].astype(int) - expected_red).max() <= 1


def test_imagery_round_trips_through_its_json_form() -> None:
    imagery = Imagery(bands=(4, 3, 2, 8), rgb=(4, 3, 2), radiometry=Radiometry("fixed", 0, 3000))
    assert Imagery.from_dict(imagery.to_dict()) == imagery
    assert Imagery.from_dict(None) == Imagery()
