"""``mmchange series``: a series of dated images gives each interval's mask (equal to ``predict`` of that pair),
the first/last change date and change count rasters, each date read and captioned once, GeoTIFF/STAC outputs
with the dates, clean refusals, resume after a kill and torchrun processes equal to one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmchange_core.inference import pair_writer, series as series_module
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.inference.predict import PredictConfig, predict_pair
from mmchange_core.inference.series import predict_series
from mmchange_core.inference.settings import DetectorSettings
from mmchange_core.models import CheckpointMeta, build_model, save_checkpoint
from mmchange_core.text import CaptionerConfig, TextEncoderConfig, TextPipeline
from tests.cli_helpers import assert_cli_error
from tests.conftest import REPO_ROOT
from tests.inference_helpers import one_thread, randomise_batchnorm, scene  # noqa: F401  (fixtures)
from tests.text_helpers.tiny_models import tiny_llava_dir  # noqa: F401  (fixture)

DATES = ["2019-03-01", "2020-03-01", "2021-03-01", "2022-03-01"]
#: 64-pixel windows overlapping by 16, three per batch: a 150 x 120 scene has 3 x 3 windows.
SETTINGS = DetectorSettings(tile_size=64, overlap=16, batch_size=3, device="cpu")


def read(path: Path) -> np.ndarray:
    if path.suffix == ".tif":
        import rasterio

        with rasterio.open(path) as ds:
            return ds.read(1)
    return np.asarray(Image.open(path))


def write_series(folder: Path, dates: list[str], height: int = 150, width: int = 120, suffix: str = ".png",
                 seed: int = 0) -> list[Path]:
    """A series of scenes whose later dates are earlier dates with new blocks painted in (plus noise)."""
    base, _ = scene(height, width, seed)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths, image = [], base.copy()
    for k, date in enumerate(dates):
        if k:
            y, x = rng.integers(0, height - 30), rng.integers(0, width - 30)
            image[y:y + 30, x:x + 30] = rng.integers(0, 255, 3, dtype=np.uint8)
        noisy = np.clip(image.astype(int) + rng.integers(-4, 5, image.shape), 0, 255).astype(np.uint8)
        path = folder / f"site_{date}{suffix}"
        if suffix == ".tif":
            import rasterio
            from rasterio.transform import from_origin

            with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=3, dtype="uint8",
                               crs="EPSG:32632", transform=from_origin(600000, 5000000, 2, 2)) as dst:
                dst.write(np.moveaxis(noisy, -1, 0))
        else:
            Image.fromarray(noisy).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> tuple[Path, float]:
    """A random-weight resnet18 full model with the offline basic + hashing pipeline, and a threshold at the median
    probability of one interval (so the masks are neither empty nor full)."""
    torch.manual_seed(3)
    pipeline = TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(name="hashing", dim=64), device="cpu")
    model = build_model("resnet18", "full", text_dim=64)
    randomise_batchnorm(model)
    folder = tmp_path_factory.mktemp("series_model")
    path = folder / "text.safetensors"
    save_checkpoint(path, model, CheckpointMeta(model=model.config, text_description=pipeline.describe()))
    images = write_series(folder / "probe", DATES[:2])
    probs = ChangeDetector.load(path, SETTINGS).predict(images[0], images[1]).probability
    return path, float(np.median(probs))


def config_for(threshold: float, **changes) -> PredictConfig:
    from dataclasses import replace

    return PredictConfig(detector=replace(SETTINGS, threshold=threshold), **changes)


def test_intervals_equal_predict_of_each_pair_and_index_rasters_follow_them(text_model, tmp_path, one_thread) -> None:
    checkpoint, threshold = text_model
    images = write_series(tmp_path / "in", DATES)
    config = config_for(threshold)
    result = predict_series(checkpoint, images, tmp_path / "out", config=config)
    assert result.dates == DATES and [r.index for r in result.intervals] == [1, 2, 3]
    masks = []
    for r, (a, b) in zip([*result.intervals, result.first_to_last],
                         [(0, 1), (1, 2), (2, 3), (0, 3)]):
        ref = predict_pair(checkpoint, images[a], images[b], tmp_path / "ref" / f"{a}{b}.png", config=config)
        mask = read(Path(r.mask))
        np.testing.assert_array_equal(mask, read(tmp_path / "ref" / f"{a}{b}.png"))  # bit for bit, as predict
        assert (r.date_a, r.date_b) == (DATES[a], DATES[b])
        assert r.changed_pixels == ref.changed_pixels == int((mask > 0).sum())
        masks.append(mask > 0)
    assert all(0 < m.mean() < 1 for m in masks[:3])  # the threshold gives partial masks: the test has teeth
    first, last, count = (read(Path(result.outputs[k])) for k in ("first_change", "last_change", "change_count"))
    height, width = first.shape
    for y in range(0, height, 7):
        for x in range(0, width, 5):
            changed = [k + 1 for k in range(3) if masks[k][y, x]]
            assert first[y, x] == (changed[0] if changed else 0)
            assert last[y, x] == (changed[-1] if changed else 0)
            assert count[y, x] == len(changed)
    saved = json.loads((tmp_path / "out" / "series.json").read_text())
    assert saved["intervals"][1]["changed_pixels"] == result.intervals[1].changed_pixels
    assert saved["first_to_last"]["summary"]["text"].startswith(f"Between {DATES[0]} and {DATES[3]}")


def test_each_date_is_read_normalised_captioned_and_encoded_once(text_model, tmp_path, monkeypatch) -> None:
    checkpoint, threshold = text_model
    images = write_series(tmp_path / "in", DATES)
    captioned, encoded, normalised, reads = [], [], [], {}
    caption, encode = TextPipeline.caption, TextPipeline.encode
    monkeypatch.setattr(TextPipeline, "caption", lambda self, imgs: captioned.append(len(imgs)) or caption(self, imgs))
    monkeypatch.setattr(TextPipeline, "encode", lambda self, texts: encoded.append(len(texts)) or encode(self, texts))
    from mmchange_core.inference import sliding_window

    normalize = sliding_window.normalize_batch
    monkeypatch.setattr(sliding_window, "normalize_batch", lambda *a, **k: normalised.append(1) or normalize(*a, **k))
    opened = series_module.open_sources

    def counting_sources(paths, warn=None, imagery=None):
        sources = opened(paths, warn, imagery)
        for path, source in zip(paths, sources):
            rows = source.read_rows

            def read_rows(y0, height, rows=rows, name=Path(path).name):
                reads.setdefault(name, []).append(y0)
                return rows(y0, height)

            source.read_rows = read_rows
        return sources

    monkeypatch.setattr(series_module, "open_sources", counting_sources)
    result = predict_series(checkpoint, images, tmp_path / "out", config=config_for(threshold))
    assert captioned == [4] and encoded == [4]  # one captioning call and one encoding call for all four dates
    assert len(result.captions) == 4
    window_rows, windows = 3, 9  # 150 x 120 in 64-pixel windows overlapping by 16: 3 rows x 3 columns
    assert sorted(reads) == sorted(p.name for p in images)
    assert all(len(y0s) == window_rows for y0s in reads.values())  # inner dates too: once per window row, not twice
    batches = -(-windows // SETTINGS.batch_size)
    assert len(normalised) == 4 * batches  # each date's batch normalised once, for all four comparisons


def test_geotiff_series_writes_cogs_with_dates_and_a_stac_item_with_the_period(text_model, tmp_path) -> None:
    rasterio = pytest.importorskip("rasterio")
    pytest.importorskip("pystac")
    checkpoint, threshold = text_model
    images = write_series(tmp_path / "in", DATES[:3], suffix=".tif")
    result = predict_series(checkpoint, [tmp_path / "in"], tmp_path / "out", config=config_for(threshold, stac=True))
    assert result.crs == "EPSG:32632"
    with rasterio.open(result.outputs["first_change"]) as ds:
        assert json.loads(ds.tags()["MMCHANGE_DATES"]) == DATES[:3]
        assert ds.crs.to_epsg() == 32632 and ds.transform.a == 2
    with rasterio.open(result.intervals[1].mask) as ds:
        assert (ds.tags()["MMCHANGE_DATE_A"], ds.tags()["MMCHANGE_DATE_B"]) == (DATES[1], DATES[2])
    from mmchange_core.io.cog import validate_cog

    assert validate_cog(result.outputs["first_change"]) == []
    item = json.loads(Path(result.stac).read_text())
    assert item["properties"]["start_datetime"].startswith(DATES[0])
    assert item["properties"]["end_datetime"].startswith(DATES[2]) and item["properties"]["datetime"] is None
    assert [i["start"] for i in item["properties"]["mmchange:intervals"]] == DATES[:2]
    assert {"interval_1", "interval_2", "first_to_last", "first_change", "image_c"} <= set(item["assets"])
    assert [item["assets"][f"image_{c}"]["href"].rsplit("/", 1)[-1] for c in "abc"] == [p.name for p in images]
    assert result.intervals[0].summary["area_unit"] == "m2"  # 2 m pixels in a projected CRS


def test_refusals_name_the_file_and_write_nothing(text_model, tmp_path, cli) -> None:
    checkpoint, _ = text_model
    images = write_series(tmp_path / "in", DATES[:3])
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(images[2])  # not co-registered: another size
    out = tmp_path / "out"
    assert_cli_error(cli("series", *images, "-o", out, "--checkpoint", checkpoint),
                     images[2].name)
    assert not out.exists()
    undated = tmp_path / "in" / "site_latest.png"
    Image.fromarray(np.zeros((150, 120, 3), np.uint8)).save(undated)
    assert_cli_error(cli("series", *images[:2], undated, "-o", out, "--checkpoint", checkpoint), "site_latest.png")
    (tmp_path / "file.txt").write_text("x")
    assert_cli_error(cli("series", *images, "-o", tmp_path / "file.txt", "--checkpoint", checkpoint),
                     "file.txt is a file")
    assert not out.exists()


def run_cli(*args: object, kill_after: int | None = None, torchrun: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MMCHANGE_CPU_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    env.pop(pair_writer.KILL_AFTER_UNITS_ENV, None)
    if kill_after is not None:
        env[pair_writer.KILL_AFTER_UNITS_ENV] = str(kill_after)
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"] if torchrun
                else [sys.executable])
    command = [*launcher, "-m", "mmchange_cli", "series", *map(str, args), "--tile-size", "64", "--overlap", "16",
               "--batch-size", "3", "--device", "cpu", "--json"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_killed_series_resumes_and_two_processes_equal_one(text_model, tmp_path, one_thread) -> None:
    checkpoint, threshold = text_model
    images = write_series(tmp_path / "in", DATES, height=200, width=170, suffix=".tif")
    ref = predict_series(checkpoint, images, tmp_path / "ref", config=config_for(threshold, block_rows=1))
    assert ref.units == {"total": 4, "done": 4, "skipped": 0}
    options = ("--checkpoint", checkpoint, "--threshold", threshold, "--set", "block_rows=1")
    args = (*images, "-o", tmp_path / "out", *options)
    killed = run_cli(*args, kill_after=2)  # dies (SIGKILL) right after recording its second block
    assert killed.returncode != 0
    assert not (tmp_path / "out" / "first_change.tif").exists()  # no partial output
    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads(resumed.stdout)
    assert result["units"] == {"total": 4, "done": 2, "skipped": 2}
    shared = run_cli(*images, "-o", tmp_path / "two", *options, torchrun=True)  # by 2 processes
    assert shared.returncode == 0, shared.stderr[-3000:]
    assert json.loads(shared.stdout)["processes"] == 2
    for folder in ("out", "two"):
        for name in ("first_change.tif", "last_change.tif", "change_count.tif",
                     *(Path(r.mask).name for r in [*ref.intervals, ref.first_to_last])):
            np.testing.assert_array_equal(read(tmp_path / folder / name), read(tmp_path / "ref" / name))
    rerun = run_cli(*args)
    assert json.loads(rerun.stdout)["status"] == "skipped"


def test_describe_change_adds_a_generated_sentence_to_every_interval(tiny_llava_dir, tmp_path, cli,
                                                                   monkeypatch) -> None:
    from mmchange_core.text.captioners.vlm import VLMCaptioner

    pipeline = TextPipeline(CaptionerConfig(model=str(tiny_llava_dir), max_new_tokens=4),
                            TextEncoderConfig(name="hashing", dim=64), device="cpu")
    torch.manual_seed(1)
    model = build_model("resnet18", "full", text_dim=64)
    checkpoint = tmp_path / "vlm.safetensors"
    save_checkpoint(checkpoint, model, CheckpointMeta(model=model.config, text_description=pipeline.describe()))
    images = write_series(tmp_path / "in", DATES[:3], height=64, width=64)
    pictures = []
    caption = VLMCaptioner.caption
    monkeypatch.setattr(VLMCaptioner, "caption", lambda self, imgs: pictures.append(len(imgs)) or caption(self, imgs))
    result = cli("series", *images, "-o", tmp_path / "out", "--checkpoint", checkpoint, "--describe-change",
                 "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert pictures == [3, 1, 1, 1]  # the three dates captioned in one call, then one picture per comparison
    for interval in [*summary["intervals"], summary["first_to_last"]]:
        generated = interval["summary"]["generated"]
        assert isinstance(generated, str) and generated
        assert interval["summary"]["text"].endswith(
            f"Generated description (may be inaccurate): {generated.rstrip('.')}.")
    assert summary["captions"] and len(summary["captions"]) == 3


def test_describe_change_needs_a_vlm_captioner(text_model, tmp_path, cli) -> None:
    checkpoint, _ = text_model
    images = write_series(tmp_path / "in", DATES[:3], height=64, width=64)
    assert_cli_error(cli("series", *images, "-o", tmp_path / "out", "--checkpoint", checkpoint,
                         "--describe-change"), "--describe-change", "'basic'")
    assert not (tmp_path / "out").exists()
