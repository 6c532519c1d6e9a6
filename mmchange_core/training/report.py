"""The HTML report of a training run: the curves (loss, validation F1/IoU, learning rate, best marked) and the
best and final validation metrics, rendered from the same rows that metrics.csv is written from."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mmchange_core.reporting.report import Figure, MetricsTable, Picture, Report, RunHeader, Section, Table, Text
from mmchange_core.training.metrics_log import CURVES_FILE, METRICS_FILE, val_rows


def validation_table(history: Sequence[Mapping[str, Any]], best_epoch: int) -> MetricsTable | None:
    """Best and final validation metrics (the ``kind`` val rows of metrics.csv); None before any validation."""
    rows = val_rows(list(history), best_epoch)
    if not rows:
        return None
    named: list[tuple[str, Mapping[str, Any]]] = []
    best = [r for r in rows if r["best"]]
    if best:
        b = best[-1]
        named.append((f"best: epoch {b['epoch']}, iteration {b['step']} (best.safetensors)", b))
    final = rows[-1]
    named.append((f"final: epoch {final['epoch']}, iteration {final['step']}", final))
    return MetricsTable(named, title="Validation metrics",
                        note="change-class metrics on the validation split, as in metrics.csv (kind val); "
                             "hover a value for the exact number")


def curves_figure(run_dir: Path) -> Figure | None:
    """The run's curves.png (drawn again from metrics.csv when it is missing); None without metrics.csv."""
    curves, metrics = run_dir / CURVES_FILE, run_dir / METRICS_FILE
    if curves.is_file():
        return Figure(Picture.from_file(curves, "training curves"), _CURVES_CAPTION)
    if not metrics.is_file():
        return None
    from mmchange_core.reporting.plots import plot_training_curves

    with tempfile.TemporaryDirectory() as tmp:
        drawn = plot_training_curves(metrics, Path(tmp) / CURVES_FILE)
        return Figure(Picture.from_file(drawn, "training curves"), _CURVES_CAPTION)


_CURVES_CAPTION = ("training loss, validation F1 and IoU (the star marks the validation that wrote best.safetensors) "
                   "and the learning rate, against the iteration")


def train_sections(run_dir: Path, history: Sequence[Mapping[str, Any]], best_epoch: int, *, iterations: int,
                   total_iters: int, completed: bool, stopped_by: str | None, title: str = "Training") -> list[Section]:
    """Curves, the best/final validation metrics and the run's progress."""
    blocks: list[Any] = []
    figure = curves_figure(run_dir)
    if figure is not None:
        blocks.append(figure)
    table = validation_table(history, best_epoch)
    blocks.append(table if table is not None else Text("no validation has run yet"))
    state = "complete" if completed else f"stopped ({stopped_by or 'early'}); resume with: mmchange train --resume"
    epochs = len(history)
    blocks.append(Table(["iterations", "of", "epochs done", "best epoch", "state"],
                        [[iterations, total_iters, epochs, best_epoch if best_epoch >= 0 else None, state]],
                        title="Progress"))
    files = sorted(p for p in run_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    blocks.append(Table(["file", "bytes"], [[p.name, p.stat().st_size] for p in files], title="Files of the run"))
    return [Section(title, blocks)]


def train_report(header: RunHeader, run_dir: Path, history: Sequence[Mapping[str, Any]], best_epoch: int, *,
                 iterations: int, total_iters: int, completed: bool, stopped_by: str | None) -> Report:
    """The whole training report."""
    return Report(f"mmchange train: {run_dir.name}", header,
                  train_sections(run_dir, history, best_epoch, iterations=iterations, total_iters=total_iters,
                                 completed=completed, stopped_by=stopped_by))


def write_train_report(run_dir: Path, config: Mapping[str, Any], history: Sequence[Mapping[str, Any]],
                       best_epoch: int, *, iterations: int, total_iters: int, completed: bool,
                       stopped_by: str | None, device: str, seconds: float, warn: Any = None) -> Path | None:
    """Write ``<run>/report.html``; a failure is reported through ``warn`` and the run's files stay as they are."""
    from mmchange_core.reporting.report import REPORT_FILE, run_header, try_write_report

    header = run_header("train", dataset=config.get("dataset"), config=config,
                        config_file=run_dir / "config.yaml", device=device, seconds=seconds)
    return try_write_report(run_dir / REPORT_FILE, lambda: train_report(
        header, run_dir, history, best_epoch, iterations=iterations, total_iters=total_iters, completed=completed,
        stopped_by=stopped_by), warn=warn)
