"""``mmchange synth --dates N``: series of dated images, ground truth that follows the label geometry,
determinism, resume, GeoTIFF series, the CLI, and pairs unchanged by the series generator."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mmchange_core.data.series import check_coregistered, read_series
from mmchange_core.data.synth import (
    MANIFEST,
    SERIES_FILE,
    SynthConfig,
    SynthSeriesConfig,
    make_synthetic_series,
    synthesize_pair,
    synthesize_series,
)
from mmchange_core.errors import InputError
from mmchange_core.io.images import read_rgb
from mmchange_core.io.raster import open_source

TRUTH = ("first_change", "last_change", "change_count")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _truth_from_footprints(footprints: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First/last date index and number of the changes of the standing roofs, date by date."""
    first = np.zeros(footprints[0].shape, np.uint8)
    last, count = first.copy(), first.copy()
    for k in range(1, len(footprints)):
        changed = footprints[k] != footprints[k - 1]
        first[changed & (first == 0)] = k
        last[changed] = k
        count[changed] += 1
    return first, last, count


def test_series_layout_is_read_back_as_series(tmp_path: Path) -> None:
    config = SynthSeriesConfig(pairs=4, size=64, seed=2, dates=5)
    report = make_synthetic_series(tmp_path / "ds", config)
    assert (report.written, report.skipped, report.dates) == (4, 0, 5)
    assert report.counts == {"train": 2, "val": 1, "test": 1} and 0 < report.change_fraction < 0.5
    assert report.to_dict()["series"] == 4
    folders = sorted((tmp_path / "ds").glob("*/series_*"))
    assert [f.relative_to(tmp_path / "ds").as_posix() for f in folders] == [
        "test/series_0003", "train/series_0000", "train/series_0001", "val/series_0002"]
    dates = [datetime.date(2015 + k, 6, 1) for k in range(5)]
    for folder in folders:
        series = read_series([folder])  # the folder holds only the dated images
        assert [s.date for s in series] == dates
        assert [s.path.name for s in series] == [f"{d.isoformat()}.png" for d in dates]
        assert all(read_rgb(s.path).shape == (64, 64, 3) for s in series)
        record = json.loads((folder / SERIES_FILE).read_text())
        assert record["dates"] == [d.isoformat() for d in dates] and record["images"] == [s.path.name for s in series]
        assert record["truth"] == {name: f"truth/{name}.png" for name in TRUTH}
        assert all((folder / "truth" / f"{name}.png").is_file() for name in TRUTH)
    manifest = json.loads((tmp_path / "ds" / MANIFEST).read_text())
    assert manifest["config"]["dates"] == 5 and manifest["dates"][0] == "2015-06-01"


@pytest.mark.parametrize("text_signal", [False, True])
def test_ground_truth_follows_the_roofs_standing_at_each_date(text_signal: bool) -> None:
    config = SynthSeriesConfig(pairs=20, size=64, seed=3, dates=6, text_signal=text_signal)
    kinds, temporary, changed = set(), 0, 0
    for index in range(config.pairs):
        series = synthesize_series(index, config)
        assert len(series.images) == len(series.footprints) == 6
        # a building is absent before its date k and standing from k on (or the reverse): the truth maps are
        # exactly where the roofs standing at consecutive dates differ
        first, last, count = _truth_from_footprints(series.footprints)
        assert np.array_equal(series.first_change, first)
        assert np.array_equal(series.last_change, last)
        assert np.array_equal(series.change_count, count)
        for k in range(1, 6):
            flipped = int((series.footprints[k] != series.footprints[k - 1]).sum())
            assert flipped == sum(c["pixels"] for c in series.changes if c["index"] == k)
        for change in series.changes:
            assert 1 <= change["index"] <= 5 and change["date"] == f"{2015 + change['index']}-06-01"
            kinds.add(change["kind"])
        temporary += int((series.change_count == 2).any())  # built, then demolished again
        changed += int(series.change_count.any())
    assert kinds == {"new", "demolished"} and temporary >= 1 and 1 <= changed < config.pairs


def test_written_truth_matches_the_generator_and_the_json(tmp_path: Path) -> None:
    from PIL import Image

    config = SynthSeriesConfig(pairs=3, size=64, seed=5, dates=4)
    make_synthetic_series(tmp_path / "ds", config)
    for index, folder in enumerate(sorted((tmp_path / "ds").glob("*/series_*"), key=lambda f: f.name)):
        series = synthesize_series(index, config)
        for name in TRUTH:
            written = np.asarray(Image.open(folder / "truth" / f"{name}.png"))
            assert written.dtype == np.uint8 and np.array_equal(written, getattr(series, name))
        record = json.loads((folder / SERIES_FILE).read_text())
        assert record["changes"] == series.changes
        for change in record["changes"]:
            assert (series.first_change == change["index"]).any() or (series.last_change == change["index"]).any()


def test_images_change_where_the_truth_says(tmp_path: Path) -> None:
    config = SynthSeriesConfig(pairs=10, size=96, seed=1, dates=4)
    inside, outside = [], []
    for index in range(config.pairs):
        series = synthesize_series(index, config)
        for k in range(1, config.dates):
            diff = np.abs(series.images[k].astype(int) - series.images[k - 1].astype(int)).mean(axis=2)
            assert diff.mean() > 1.0  # unlabelled nuisance between every two dates
            at_k = (series.first_change == k) | (series.last_change == k)
            if at_k.any():
                inside.append(diff[at_k].mean())
                outside.append(diff[series.change_count == 0].mean())
    assert inside and np.mean(inside) > 2 * np.mean(outside)


def test_series_are_deterministic_and_resumable(tmp_path: Path) -> None:
    config = SynthSeriesConfig(pairs=3, size=64, seed=4, dates=3)
    make_synthetic_series(tmp_path / "a", config)
    make_synthetic_series(tmp_path / "b", config)
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b")
    make_synthetic_series(tmp_path / "c", SynthSeriesConfig(pairs=3, size=64, seed=5, dates=3))
    assert _files(tmp_path / "c").keys() == files.keys() and _files(tmp_path / "c") != files
    # a series without its series.json (written last) or one of its files is written again, the others skipped
    (tmp_path / "a" / "val" / "series_0001" / SERIES_FILE).unlink()
    (tmp_path / "a" / "test" / "series_0002" / "truth" / "last_change.png").unlink()
    again = make_synthetic_series(tmp_path / "a", config)
    assert (again.written, again.skipped) == (2, 1) and _files(tmp_path / "a") == files
    with pytest.raises(InputError, match="other settings"):
        make_synthetic_series(tmp_path / "a", SynthSeriesConfig(pairs=3, size=64, seed=4, dates=4))
    with pytest.raises(InputError, match="other settings"):  # a series folder is no pair dataset
        from mmchange_core.data.synth import make_synthetic_dataset

        make_synthetic_dataset(tmp_path / "a", SynthConfig(pairs=3, size=64, seed=4))


@pytest.mark.parametrize("dates", [2, 0, 51])
def test_dates_out_of_range_are_refused(dates: int) -> None:
    with pytest.raises(InputError, match=f"--dates must be between 3 and 50, got {dates}"):
        SynthSeriesConfig(pairs=3, dates=dates)


def test_geotiff_series_are_georeferenced_and_coregistered(tmp_path: Path) -> None:
    pytest.importorskip("rasterio")
    config = SynthSeriesConfig(pairs=3, size=64, seed=1, dates=3, geotiff=True)
    make_synthetic_series(tmp_path / "ds", config)
    origins = []
    for folder in sorted((tmp_path / "ds").glob("*/series_*")):
        series = read_series([folder])
        assert [s.path.suffix for s in series] == [".tif"] * 3
        sources = [open_source(s.path) for s in series]
        try:
            georef = check_coregistered(sources, [s.path for s in series])
            assert sources[0].read_rows(0, 64).shape == (64, 64, 3)
        finally:
            for source in sources:
                source.close()
        assert georef is not None and georef.crs_name() == "EPSG:32632"
        assert (georef.transform.a, georef.transform.e) == (0.5, -0.5)
        origins.append((georef.transform.c, georef.transform.f))
        assert json.loads((folder / SERIES_FILE).read_text())["crs"] == "EPSG:32632"
    assert len(set(origins)) == 3  # every series lies at its own place
    make_synthetic_series(tmp_path / "again", config)
    assert _files(tmp_path / "again") == _files(tmp_path / "ds")  # the same seed gives the same GeoTIFF bytes


def test_pairs_are_unchanged_by_the_series_generator() -> None:
    """The pixels of default pairs, pinned: the series generator shares the pair generator's scene and rendering,
    and ``mmchange synth`` without ``--dates`` must keep writing the same dataset. (A numpy or Pillow upgrade
    that changes the pixels fails this too: then check the pairs by eye and update the digests.)"""
    expected = {False: "6ab6a50c98035abe0d9ffb0d24737844d4c00102b9b8a8e08a2b62297e64d8cf",
                True: "1826f959c01eee016f4d7d489c7af5251209b90f2e35cac20df8f63cd91b6b3b"}
    for text_signal, digest in expected.items():
        config = SynthConfig(pairs=6, size=64, seed=7, text_signal=text_signal)
        h = hashlib.sha256()
        for index in range(config.pairs):
            pair = synthesize_pair(index, config)
            for array in (pair.image_a, pair.image_b, pair.label):
                h.update(np.ascontiguousarray(array).tobytes())
        assert h.hexdigest() == digest, text_signal


def test_cli_series_json_and_one_line_refusals(cli, tmp_path: Path) -> None:
    out = tmp_path / "series"
    result = cli("synth", out, "--dates", "4", "--pairs", "3", "--size", "64", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == {"root": str(out), "splits": {"train": 1, "val": 1, "test": 1}, "series": 3, "dates": 4,
                       "written": 3, "skipped": 0, "change_fraction": summary["change_fraction"],
                       "geotiff": False, "text_signal": False}
    assert len(read_series([out / "train" / "series_0000"])) == 4
    result = cli("synth", out, "--dates", "4", "--pairs", "3", "--size", "64")
    assert result.exit_code == 0 and "wrote 0 series, 3 already there" in result.output
    for args, message in ((("--dates", "2"), "error: --dates must be between 3 and 50, got 2"),
                          (("--geotiff",), "error: --geotiff writes series of many dates; give --dates N too")):
        target = tmp_path / f"refused{len(args)}"
        result = cli("synth", target, *args)
        assert result.exit_code == 1
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(message), result.output
        assert not target.exists()
