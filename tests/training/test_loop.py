"""Training: bit-exact resume, NaN stop with the last good checkpoint kept, checkpoint metadata, bad inputs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mmchange_core.training.loop as train_module
from mmchange_core.config import ConfigError
from mmchange_core.training.loop import (
    TrainingDivergedError,
    find_run,
    resume_config,
    train,
)
from mmchange_core.errors import InputError
from mmchange_core.models import Normalization, load_checkpoint, read_checkpoint_meta
from tests.data_helpers import caption_basic, synth_dataset, tiny_config


@pytest.fixture(scope="module")
def captioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = synth_dataset(tmp_path_factory.mktemp("train") / "ds", pairs=12, size=64, text_signal=True)
    caption_basic(root)
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def _check_run_files_and_metadata(result, dataset: Path) -> None:
    from mmchange_core.text import CaptionStore

    assert {p.name for p in result.run_dir.iterdir()} >= {"config.yaml", "metrics.csv", "best.safetensors",
                                                          "last.safetensors", "state.pt", "caption_store.json"}
    meta = read_checkpoint_meta(result.best_checkpoint)
    store = CaptionStore.open(dataset)
    assert meta.threshold == 0.5 and meta.tile_size == 64 and meta.normalization == Normalization()
    assert meta.text_description == store.text_description()
    assert meta.training["caption_store"]["sha256"] == store.identity()["sha256"]
    assert meta.training["best_epoch"] == result.best_epoch and meta.training["iterations"] == 6
    model, _ = load_checkpoint(result.best_checkpoint)
    assert model.uses_text and model.config.backbone == "resnet18" and model.config.text_dim == 512


def test_resume_continues_bit_for_bit(captioned: Path, tmp_path: Path) -> None:
    config = tiny_config(captioned, tmp_path, variant="full", iters=6)
    straight = train(config)
    assert straight.completed and straight.iterations == 6
    _check_run_files_and_metadata(straight, captioned)
    first = train(config, stop_after=3)  # stops in the middle of epoch 1
    assert not first.completed and first.iterations == 3
    state = torch.load(first.run_dir / "state.pt", weights_only=True)
    assert state["progress"]["epoch"] == 1 and state["progress"]["batch"] == 1
    resumed = train(resume_config(first.run_dir), resume_dir=first.run_dir)
    assert resumed.completed and resumed.run_dir == first.run_dir
    for name in ("last.safetensors", "best.safetensors"):
        a, b = load_file(straight.run_dir / name), load_file(resumed.run_dir / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert _rows(straight.run_dir / "metrics.csv") == _rows(resumed.run_dir / "metrics.csv")
    assert len(_rows(resumed.run_dir / "metrics.csv")) == 3
    # the finished run resumes to a no-op
    again = train(resume_config(first.run_dir), resume_dir=first.run_dir)
    assert again.completed and again.iterations == 6


def test_nan_loss_stops_and_keeps_last_good_checkpoint(captioned: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    real_loss = train_module.deep_supervision_loss
    calls = {"n": 0}

    def loss_turning_nan(outputs, target):
        calls["n"] += 1
        loss = real_loss(outputs, target)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(train_module, "deep_supervision_loss", loss_turning_nan)
    config = tiny_config(captioned, tmp_path, iters=6, name="nan")
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at iteration 3 .*last good checkpoint is"):
        train(config)
    run = tmp_path / "train" / "nan"
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["progress"]["iteration"] == 2  # epoch 0, before the bad step
    model, meta = load_checkpoint(run / "last.safetensors")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert meta.training["iterations"] == 2


def test_bad_inputs_fail_with_one_line(captioned: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="fewer than the batch size 64"):
        train(tiny_config(captioned, tmp_path, batch_size=64))
    with pytest.raises(InputError, match=r"split 'holdout' not found.*--set val_split="):
        train(tiny_config(captioned, tmp_path, val_split="holdout"))
    with pytest.raises(ConfigError, match="multiple of 32"):
        train(tiny_config(captioned, tmp_path, crop_size=48))
    with pytest.raises(ConfigError, match="config key .variant. is .text-only.; it must be one of"):
        train(tiny_config(captioned, tmp_path, variant="text-only"))
    uncaptioned = synth_dataset(tmp_path / "plain", pairs=6, size=64)
    from mmchange_core.text import MissingCaptionsError

    with pytest.raises(MissingCaptionsError, match="mmchange caption"):
        train(tiny_config(uncaptioned, tmp_path, variant="full"))
    result = train(tiny_config(uncaptioned, tmp_path, iters=1, batch_size=2, name="plain", val_split=None))
    run = result.run_dir
    assert run == tmp_path / "train" / "plain" and find_run("plain", tmp_path) == run
    assert read_checkpoint_meta(result.best_checkpoint).text_description is None  # image-only: no text, no store needed
    # an image that is damaged after its header only fails when a DataLoader worker decodes it: still one line
    broken = uncaptioned / "train" / "B" / sorted((uncaptioned / "train" / "B").iterdir())[0].name
    broken.write_bytes(broken.read_bytes()[:200])
    with pytest.raises(InputError, match=r"^cannot read image .*B[/\\]\d+\.png \(") as info:
        train(tiny_config(uncaptioned, tmp_path, iters=1, batch_size=2, workers=1, val_split=None))
    assert "Traceback" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot change lr 0.0005 -> 0.1 when resuming"):
        resume_config(run, ["lr=0.1"])
    assert resume_config(run, ["workers=2"]).workers == 2
    # only the two runs that started (plain, and exp whose worker hit the damaged image) left a folder
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["exp", "plain"]
