"""What a training run logs while it trains: ``metrics.csv``, ``curves.png`` and TensorBoard events.

``metrics.csv`` has one row per logged step (``kind`` train: the loss of that step, averaged over
the processes, and the learning rate it used), every ``log_every`` iterations and at the last one,
and one row per validation (``kind`` val: the change-class metrics as fractions). ``best`` is 1 on
the validation that produced ``best.safetensors``. The file is rewritten atomically from the run's
rows, so it is never half written; on resume the step rows past the saved state are dropped (the
resumed run logs them again, identically) and the validation rows come from the state itself, so
the file has neither duplicates nor gaps. ``curves.png`` is redrawn after an epoch when the last
drawing is :data:`CURVES_INTERVAL` seconds old, and always when the run ends or stops.

TensorBoard event files go to ``<run>/tensorboard`` when the ``tensorboard`` package is installed
(``pip install 'mmchange[tensorboard]'``); otherwise the run says so once and goes on. A resumed
run purges the events past the saved state, as TensorBoard expects of a restarted job.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmchange_core.errors import install_hint
from mmchange_core.metrics import METRIC_NAMES
from mmchange_core.io.atomic import atomic_write_text

METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
TENSORBOARD_DIR = "tensorboard"
#: Seconds between two drawings of curves.png during a run (drawing takes a fraction of a second).
CURVES_INTERVAL = 30.0
#: The columns of metrics.csv.
METRIC_COLUMNS = ("step", "epoch", "kind", "loss", "lr", *METRIC_NAMES, "best")
TENSORBOARD_MISSING = ("tensorboard is not installed; TensorBoard logs are skipped (metrics.csv and curves.png are "
                       f"written); install it with: {install_hint('tensorboard')}")


def val_rows(history: Sequence[dict[str, Any]], best_epoch: int) -> list[dict[str, Any]]:
    """The ``kind`` val rows of the epochs in a run's history (epochs without validation have none)."""
    rows = []
    for epoch_row in history:
        if epoch_row.get(f"val_{METRIC_NAMES[0]}") is None:
            continue
        row: dict[str, Any] = {"step": epoch_row["iterations"], "epoch": epoch_row["epoch"], "kind": "val"}
        row.update({k: epoch_row.get(f"val_{k}") for k in METRIC_NAMES})
        if epoch_row.get("val_mean_f1") is not None:  # K-class runs: the mean F1 of the change classes
            row["mean_f1"] = epoch_row["val_mean_f1"]
        row["best"] = int(epoch_row["epoch"] == best_epoch)
        rows.append(row)
    return rows


def metrics_csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text of ``rows`` in :data:`METRIC_COLUMNS` (empty cells for values a row does not have); K-class runs
    add ``mean_f1`` (the mean F1 of the change classes, which picks their best epoch) before ``best``."""
    columns = METRIC_COLUMNS
    if any(row.get("mean_f1") is not None for row in rows):
        columns = (*METRIC_COLUMNS[:-1], "mean_f1", METRIC_COLUMNS[-1])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buffer.getvalue()


def _read_step_rows(path: Path, up_to: int) -> list[dict[str, Any]] | None:
    """The train rows of an existing metrics.csv with ``step <= up_to``; None when the file is missing or not
    in this format."""
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != METRIC_COLUMNS:
            return None
        rows = []
        for raw in reader:
            if raw["kind"] != "train" or int(raw["step"]) > up_to:
                continue
            rows.append({"step": int(raw["step"]), "epoch": int(raw["epoch"]), "kind": "train",
                         "loss": float(raw["loss"]), "lr": float(raw["lr"])})
        return rows


class MetricsLog:
    """The metrics.csv rows, curves.png and TensorBoard writer of one run (process 0 only)."""

    def __init__(self, run_dir: Path, every: int, total_iters: int, *, start_iteration: int = 0,
                 message: Callable[[str], None] = lambda _text: None) -> None:
        """Open the log of ``run_dir``; a resumed run (``start_iteration`` > 0) keeps the step rows logged up to
        its saved state."""
        self.run_dir, self.every, self.total_iters = run_dir, every, total_iters
        self.message = message
        self.steps: list[dict[str, Any]] = []
        self._plot_failed = False
        self._drawn_at = float("-inf")
        self._undrawn = False  # metrics.csv changed since curves.png was drawn
        if start_iteration > 0:
            kept = _read_step_rows(run_dir / METRICS_FILE, start_iteration)
            if kept is None:
                message(f"{run_dir / METRICS_FILE} has no step rows of this format; the loss curve restarts at "
                        f"iteration {start_iteration}")
            self.steps = kept or []
        self.writer = self._open_tensorboard(start_iteration + 1 if start_iteration > 0 else None)

    def _open_tensorboard(self, purge_step: int | None) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.message(TENSORBOARD_MISSING)
            return None
        return SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), purge_step=purge_step)

    def step(self, step: int, epoch: int, loss: float, lr: float, history: Sequence[dict[str, Any]],
             best_epoch: int) -> None:
        """Iteration ``step`` is done: log it when it is due (every ``every`` iterations and the last one)."""
        if step % self.every and step != self.total_iters:
            return
        self.steps.append({"step": step, "epoch": epoch, "kind": "train", "loss": loss, "lr": lr})
        self._undrawn = True
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)
        self.write_csv(history, best_epoch)

    def validation(self, step: int, epoch: int, metrics: dict[str, Any]) -> None:
        """The validation after ``epoch`` (at iteration ``step``) gave ``metrics``."""
        if self.writer is not None:
            for key in (*METRIC_NAMES, *(("mean_f1",) if "mean_f1" in metrics else ())):
                self.writer.add_scalar(f"val/{key}", float(metrics[key]), step)
            self.writer.add_scalar("train/epoch", epoch, step)

    def rows(self, history: Sequence[dict[str, Any]], best_epoch: int) -> list[dict[str, Any]]:
        """Every row of metrics.csv, in step order (a step's train row before its val row)."""
        merged = [*self.steps, *val_rows(history, best_epoch)]
        return sorted(merged, key=lambda row: (row["step"], row["kind"] != "train"))

    def write_csv(self, history: Sequence[dict[str, Any]], best_epoch: int) -> Path:
        """Rewrite metrics.csv atomically."""
        return atomic_write_text(self.run_dir / METRICS_FILE, metrics_csv_text(self.rows(history, best_epoch)))

    def save(self, history: Sequence[dict[str, Any]], best_epoch: int) -> None:
        """metrics.csv and the TensorBoard events on disk, curves.png when due (after an epoch, or a stop)."""
        self.write_csv(history, best_epoch)
        self._undrawn = True
        if self.writer is not None:
            self.writer.flush()
        if time.monotonic() - self._drawn_at >= CURVES_INTERVAL:
            self.draw()

    def draw(self) -> None:
        """Draw curves.png from metrics.csv; a failure is reported once and never stops training."""
        self._drawn_at, self._undrawn = time.monotonic(), False
        try:
            from mmchange_core.reporting.plots import plot_training_curves

            plot_training_curves(self.run_dir / METRICS_FILE, self.run_dir / CURVES_FILE)
        except Exception as exc:  # noqa: BLE001 - a plot must never stop a training run
            if not self._plot_failed:
                self.message(f"{CURVES_FILE} not drawn ({type(exc).__name__}: {exc}); training goes on")
            self._plot_failed = True

    def close(self) -> None:
        """Draw the last curves and finish the TensorBoard event file."""
        if self._undrawn:
            self.draw()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
