"""metrics.csv rows per logged step and per validation, curves.png, TensorBoard events, and all three over a resume."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from PIL import Image

import mmchange_core.training.metrics_log as metrics_log
from mmchange_core.reporting.plots import plot_training_curves
from mmchange_core.training.loop import resume_config, train
from mmchange_core.training.metrics_log import METRIC_COLUMNS, TENSORBOARD_MISSING, MetricsLog, metrics_csv_text
from tests.data_helpers import synth_dataset, tiny_config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_dataset(tmp_path_factory.mktemp("metrics") / "ds", pairs=12, size=64)


@pytest.fixture(scope="module")
def straight(dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    """4 iterations in 2 epochs of 2, validated after each epoch, a step row every iteration; curves.png is drawn
    after the first epoch and then only when the run ends (the interval between drawings is made very long)."""
    interval = metrics_log.CURVES_INTERVAL
    metrics_log.CURVES_INTERVAL = 1e9
    try:
        return train(_config(dataset, tmp_path_factory.mktemp("straight")))
    finally:
        metrics_log.CURVES_INTERVAL = interval


def _config(dataset: Path, project: Path):
    return tiny_config(dataset, project, iters=4, log_every=1, val_start_epoch=0)


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == METRIC_COLUMNS
        return list(reader)


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_rows_per_step_and_validation_curves_and_tensorboard(straight, tmp_path: Path) -> None:
    rows = _csv(straight.run_dir / "metrics.csv")
    assert [(r["step"], r["epoch"], r["kind"]) for r in rows] == [
        ("1", "0", "train"), ("2", "0", "train"), ("2", "0", "val"), ("3", "1", "train"), ("4", "1", "train"),
        ("4", "1", "val")]
    train_rows = [r for r in rows if r["kind"] == "train"]
    val_rows = [r for r in rows if r["kind"] == "val"]
    assert all(float(r["loss"]) > 0 and float(r["lr"]) > 0 and r["f1"] == "" for r in train_rows)
    assert all(r["loss"] == "" and 0 <= float(r["f1"]) <= 1 and r["kappa"] != "" for r in val_rows)
    assert [r["best"] for r in val_rows].count("1") == 1
    best = next(r for r in val_rows if r["best"] == "1")
    assert int(best["epoch"]) == straight.best_epoch
    epochs = {row["epoch"]: row for row in straight.history}
    assert float(best["f1"]) == epochs[straight.best_epoch]["val_f1"]
    with Image.open(straight.run_dir / "curves.png") as image:
        image.load()
        assert image.size[0] > 800
    fresh = plot_training_curves(straight.run_dir / "metrics.csv", tmp_path / "fresh.png")
    assert (straight.run_dir / "curves.png").read_bytes() == fresh.read_bytes()   # drawn from the final rows
    scalars = _scalars(straight.run_dir / "tensorboard")
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    for (step, value), row in zip(scalars["train/loss"], train_rows):
        assert value == pytest.approx(float(row["loss"]), rel=1e-6)
    assert [(s, pytest.approx(float(r["f1"]), rel=1e-6)) for r, (s, _) in zip(val_rows, scalars["val/f1"])] == \
        scalars["val/f1"]
    assert {"train/lr", "val/iou", "val/precision", "val/recall", "val/oa", "val/kappa"} <= set(scalars)


@pytest.mark.slow
def test_resume_keeps_rows_and_events_without_duplicates_or_gaps(straight, dataset: Path, tmp_path: Path) -> None:
    first = train(_config(dataset, tmp_path), stop_after=3)     # state saved at iteration 3, mid epoch 1
    run = first.run_dir
    # a crash after step 4 was logged but before the state was saved: a row and an event past the state
    rows = _csv(run / "metrics.csv")
    rows.append({"step": 4, "epoch": 1, "kind": "train", "loss": 99.0, "lr": 1.0})
    (run / "metrics.csv").write_text(metrics_csv_text(rows))
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run / "tensorboard")) as writer:
        writer.add_scalar("train/loss", 99.0, 4)
    resumed = train(resume_config(run), resume_dir=run)
    assert resumed.completed
    assert (run / "metrics.csv").read_text() == (straight.run_dir / "metrics.csv").read_text()
    scalars = _scalars(run / "tensorboard")
    assert scalars["train/loss"] == _scalars(straight.run_dir / "tensorboard")["train/loss"]   # step 4 once
    assert [step for step, _ in scalars["val/f1"]] == [2, 4]


def test_missing_tensorboard_is_said_once_and_training_goes_on(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    messages: list[str] = []
    log = MetricsLog(tmp_path, every=1, total_iters=3, message=messages.append)
    for step in (1, 2, 3):
        log.step(step, 0, 1.0 / step, 1e-3, [], -1)
    log.save([{"epoch": 0, "iterations": 3, "val_precision": 0.5, "val_recall": 0.5, "val_f1": 0.5, "val_iou": 0.3,
               "val_oa": 0.9, "val_kappa": 0.4}], best_epoch=0)
    log.close()
    assert messages == [TENSORBOARD_MISSING] and 'pip install "mmchange[tensorboard]"' in messages[0]
    assert not (tmp_path / "tensorboard").exists()
    assert [(r["step"], r["kind"], r["best"]) for r in _csv(tmp_path / "metrics.csv")] == [
        ("1", "train", ""), ("2", "train", ""), ("3", "train", ""), ("3", "val", "1")]
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_resume_from_an_old_metrics_csv_keeps_the_validations(tmp_path: Path) -> None:
    old_format = "epoch,iterations,lr,train_loss,val_f1,seconds,best\n0,2,0.1,1.0,0.5,1,True\n"
    (tmp_path / "metrics.csv").write_text(old_format)
    messages: list[str] = []
    log = MetricsLog(tmp_path, every=2, total_iters=4, start_iteration=2, message=messages.append)
    log.close()
    assert any("no step rows of this format" in m for m in messages)
    history = [{"epoch": 0, "iterations": 2, "val_precision": 0.5, "val_recall": 0.5, "val_f1": 0.5, "val_iou": 0.3,
                "val_oa": 0.9, "val_kappa": 0.4}]
    log.write_csv(history, best_epoch=0)
    assert [(r["step"], r["kind"], r["f1"]) for r in _csv(tmp_path / "metrics.csv")] == [("2", "val", "0.5")]
