"""Distributed and resumable ``mmchange predict``: torchrun with 2 CPU processes (gloo) gives the bytes of one
process, a killed run resumes from its manifest, changed inputs are redone and ``--overwrite`` redoes all.

CPU kernels round differently with the thread count, so every process here uses one torch thread
(``MMCHANGE_CPU_THREADS=1`` under torchrun, ``torch.set_num_threads(1)`` in the reference run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmchange_core.inference import pair_writer
from mmchange_core.inference.manifest import RunManifest
from mmchange_core.inference.predict import PredictConfig, predict_folder, predict_pair
from mmchange_core.inference.settings import DetectorSettings
from tests.conftest import REPO_ROOT
from tests.inference_helpers import image_only_checkpoint, one_thread, scene  # noqa: F401  (fixtures)

rasterio = pytest.importorskip("rasterio")
#: 64-pixel windows overlapping by 16, three per batch, one window row per block: a 200 x 170 scene has
#: 4 x 4 windows (not a multiple of the tile) in 4 blocks whose batches straddle the block borders.
WINDOWS = ["--tile-size", "64", "--overlap", "16", "--batch-size", "3", "--device", "cpu"]
CONFIG = PredictConfig(detector=DetectorSettings(tile_size=64, overlap=16, batch_size=3, device="cpu"), block_rows=1)


@pytest.fixture(scope="module")
def checkpoint(image_only_checkpoint: Path) -> Path:
    return image_only_checkpoint


def write_geotiff_pair(folder: Path, height: int = 200, width: int = 170, seed: int = 0) -> tuple[Path, Path]:
    from rasterio.transform import from_origin

    paths = []
    for sub, image in zip(("A", "B"), scene(height, width, seed)):
        path = folder / sub / "scene.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=3, dtype="uint8",
                           crs="EPSG:32631", transform=from_origin(500000, 4000000, 10, 10)) as dst:
            dst.write(np.moveaxis(image, -1, 0))
        paths.append(path)
    return paths[0], paths[1]


def torchrun(*args: object, kill_after: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MMCHANGE_CPU_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    env.pop(pair_writer.KILL_AFTER_UNITS_ENV, None)
    if kill_after is not None:
        env[pair_writer.KILL_AFTER_UNITS_ENV] = str(kill_after)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "mmchange_cli", "predict", *map(str, args), *WINDOWS, "--json"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def pixels(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


@pytest.mark.slow
def test_mosaic_two_processes_killed_then_resumed_equals_one_process(checkpoint, tmp_path, one_thread) -> None:
    path_a, path_b = write_geotiff_pair(tmp_path)
    ref = predict_pair(checkpoint, path_a, path_b, tmp_path / "ref" / "mask.tif", prob=tmp_path / "ref" / "prob.tif",
                       config=CONFIG)
    assert ref.units == {"total": 4, "done": 4, "skipped": 0}
    out = tmp_path / "out"
    args = (path_a, path_b, "-o", out / "mask.tif", "--prob", out / "prob.tif", "--checkpoint", checkpoint,
            "--set", "block_rows=1")
    killed = torchrun(*args, kill_after=1)  # each process dies (SIGKILL) right after recording its first block
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr
    assert not (out / "mask.tif").exists()  # no partial output: only the stages and the manifest
    recorded = [u for u in RunManifest(out).latest() if "#rows" in u]
    assert 1 <= len(recorded) < 4
    done = torchrun(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)  # one JSON document: process 1 prints nothing
    assert result["processes"] == 2 and result["status"] == "ok"
    assert result["units"] == {"total": 4, "done": 4 - len(recorded), "skipped": len(recorded)}
    assert result["changed_pixels"] == ref.changed_pixels and result["crs"] == "EPSG:32631"
    for name in ("mask.tif", "prob.tif"):  # the mask and the float probabilities, bit for bit
        np.testing.assert_array_equal(pixels(out / name), pixels(tmp_path / "ref" / name))
    assert sorted(p.name for p in out.iterdir()) == ["mask.tif", "mmchange_manifest.jsonl", "prob.tif"]  # no stage left


@pytest.mark.slow
def test_folder_two_processes_equal_one_process(checkpoint, tmp_path, one_thread) -> None:
    for name, (h, w), seed in (("a.png", (64, 64), 1), ("b.png", (96, 64), 2), ("c.png", (64, 80), 3)):
        for sub, image in zip(("A", "B"), scene(h, w, seed)):
            (tmp_path / sub).mkdir(exist_ok=True)
            Image.fromarray(image).save(tmp_path / sub / name)
    ref = predict_folder(checkpoint, tmp_path / "A", tmp_path / "B", tmp_path / "ref", prob_dir=tmp_path / "ref_prob",
                         config=CONFIG)
    assert ref.ok and ref.units == {"total": 3, "done": 3, "skipped": 0, "failed": 0}
    done = torchrun(tmp_path / "A", tmp_path / "B", "-o", tmp_path / "out", "--prob", tmp_path / "out_prob",
                    "--checkpoint", checkpoint)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["processes"] == 2 and result["units"]["done"] == 3
    assert [p["name"] for p in result["pairs"]] == ["a", "b", "c"]
    for name in ("a.png", "b.png", "c.png"):
        for folder in ("", "_prob"):
            assert (tmp_path / f"out{folder}" / name).read_bytes() == (tmp_path / f"ref{folder}" / name).read_bytes()


def test_resume_skips_finished_blocks_redoes_changed_inputs_and_overwrite(checkpoint, tmp_path, monkeypatch,
                                                                          one_thread) -> None:
    path_a, path_b = write_geotiff_pair(tmp_path, 150, 100)
    ref = predict_pair(checkpoint, path_a, path_b, tmp_path / "ref" / "mask.tif", prob=tmp_path / "ref" / "prob.tif",
                       config=CONFIG)
    out = tmp_path / "out"

    def run(**kwargs):
        return predict_pair(checkpoint, path_a, path_b, out / "mask.tif", prob=out / "prob.tif", config=CONFIG,
                            **kwargs)

    calls = {"n": 0}

    def crash_after_two() -> None:  # a crash (not an input error) after the second recorded block
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(pair_writer, "unit_recorded", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.undo()
    assert not (out / "mask.tif").exists()
    resumed = run()
    assert resumed.status == "ok" and resumed.units == {"total": 3, "done": 1, "skipped": 2}
    assert resumed.changed_pixels == ref.changed_pixels
    for name in ("mask.tif", "prob.tif"):
        np.testing.assert_array_equal(pixels(out / name), pixels(tmp_path / "ref" / name))
    again = run()  # nothing changed: the whole pair is skipped
    assert again.status == "skipped" and again.changed_pixels == ref.changed_pixels
    with rasterio.open(path_b, "r+") as dst:  # a changed input is predicted again, every block
        data = dst.read()
        data[:, :40, :40] = 255 - data[:, :40, :40]
        dst.write(data)
    changed = run()
    assert changed.status == "ok" and changed.units == {"total": 3, "done": 3, "skipped": 0}
    assert not np.array_equal(pixels(out / "prob.tif"), pixels(tmp_path / "ref" / "prob.tif"))
    assert run().status == "skipped"
    redone = run(overwrite=True)
    assert redone.status == "ok" and redone.units["done"] == 3


def test_folder_rerun_skips_unchanged_pairs_and_redoes_changed_ones(checkpoint, tmp_path, one_thread) -> None:
    for name, seed in (("a.png", 1), ("b.png", 2)):
        for sub, image in zip(("A", "B"), scene(64, 64, seed)):
            (tmp_path / sub).mkdir(exist_ok=True)
            Image.fromarray(image).save(tmp_path / sub / name)
    config = PredictConfig(detector=DetectorSettings(tile_size=64, device="cpu"))
    first = predict_folder(checkpoint, tmp_path / "A", tmp_path / "B", tmp_path / "out", config=config)
    assert [p.status for p in first.pairs] == ["ok", "ok"]
    Image.fromarray(scene(64, 64, 9)[1]).save(tmp_path / "B" / "b.png")
    second = predict_folder(checkpoint, tmp_path / "A", tmp_path / "B", tmp_path / "out", config=config)
    assert [p.status for p in second.pairs] == ["skipped", "ok"]
    assert second.units == {"total": 2, "done": 1, "skipped": 1, "failed": 0}
    assert second.pairs[0].changed_pixels == first.pairs[0].changed_pixels
    (tmp_path / "out" / "a.png").unlink()  # a deleted output is written again
    third = predict_folder(checkpoint, tmp_path / "A", tmp_path / "B", tmp_path / "out", config=config)
    assert [p.status for p in third.pairs] == ["ok", "skipped"] and (tmp_path / "out" / "a.png").is_file()
    fourth = predict_folder(checkpoint, tmp_path / "A", tmp_path / "B", tmp_path / "out", config=config,
                            overwrite=True)
    assert [p.status for p in fourth.pairs] == ["ok", "ok"]
