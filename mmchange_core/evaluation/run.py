"""``mmchange eval`` as a library call: checkpoint + dataset -> metrics, per-image CSV, overlays.

Results go to ``<project>/eval/<name>`` (auto-incremented): ``metrics.json`` (the metrics and the
settings that produced them), ``per_image.csv`` (one row per pair) and, with ``save_vis``,
``vis/<name>.png`` error overlays. ``tune_threshold`` picks the threshold with the best F1 on the
validation split, stores it in the checkpoint (``threshold`` in its metadata) and evaluates with it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmchange_core.config import to_dict
from mmchange_core.data.layouts import DatasetLayout, detect_layout, resolve_dataset_root
from mmchange_core.evaluation.evaluate import EvaluationResult, Progress, evaluate
from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.text.features import TextProvider, open_caption_store, store_text_provider
from mmchange_core.errors import InputError
from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.evaluation.metrics import f1, iou, precision, recall
from mmchange_core.models import checkpoint_threshold, checkpoint_tile_size, load_checkpoint, update_checkpoint_meta
from mmchange_core.runs import next_run_dir


@dataclass
class EvalOptions:
    """Settings of ``mmchange eval``."""

    checkpoint: Path
    dataset: str
    split: str = "test"
    threshold: float | None = None  # None: the checkpoint's (0.5 unless tuned)
    tune_threshold: bool = False
    tune_split: str = "val"
    save_vis: bool = False
    batch_size: int = 8
    tile_size: int | None = None  # None: the checkpoint's training crop size (256 by default)
    num_workers: int = 2
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    caption_store: str | None = None
    name: str | None = None
    project: str = "runs"


@dataclass
class EvalReport:
    """Outcome of :func:`run_evaluation`."""

    run_dir: Path
    checkpoint: Path
    layout: DatasetLayout
    result: EvaluationResult
    tuned: dict[str, Any] | None

    def metrics(self) -> dict[str, Any]:
        """The metrics of the split (fractions and pixel counts)."""
        return self.result.metrics()


def checkpoint_text_provider(meta: dict[str, Any], root: Path, store: str | None = None) -> TextProvider | None:
    """Embeddings for a checkpoint's text model from the dataset's caption store (None: image-only)."""
    description = meta.get("text")
    if not description:
        return None
    try:
        caption_store = open_caption_store(root, store)
    except ImportError as exc:
        raise InputError("this checkpoint uses text but mmchange's text module is not available; "
                         "install mmchange with its text support") from exc
    return store_text_provider(caption_store, root, description)


def per_image_csv(result: EvaluationResult, root: Path) -> str:
    """CSV text: one row per pair with its counts and metrics (0 where a metric is undefined)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "image_a", "image_b", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "iou",
                     "label_change", "predicted_change"])
    for item in result.per_image:
        s = item.stats
        rel_a, rel_b = item.pair.relative(root) if item.pair.image_a.is_relative_to(root) else (
            str(item.pair.image_a), str(item.pair.image_b))
        writer.writerow([item.pair.name, rel_a, rel_b, s.tp, s.fp, s.fn, s.tn, f"{precision(s):.6f}",
                         f"{recall(s):.6f}", f"{f1(s):.6f}", f"{iou(s):.6f}",
                         f"{(s.tp + s.fn) / max(1, s.total):.6f}", f"{(s.tp + s.fp) / max(1, s.total):.6f}"])
    return buffer.getvalue()


def run_evaluation(options: EvalOptions, progress: Progress | None = None,
                   message: Callable[[str], None] | None = None) -> EvalReport:
    """Evaluate a checkpoint on a split, optionally tuning the threshold first; write the run folder."""
    say = message or (lambda _text: None)
    if options.tune_threshold and options.threshold is not None:
        raise InputError("--threshold and --tune-threshold exclude each other; give one of them")
    if options.threshold is not None and not 0.0 <= options.threshold < 1.0:
        raise InputError(f"--threshold must be in [0, 1), got {options.threshold}")
    model, meta = load_checkpoint(options.checkpoint)
    root = resolve_dataset_root(options.dataset)
    layout = detect_layout(root)
    say(f"dataset {layout.describe()}")
    tile = checkpoint_tile_size(meta, options.tile_size)
    provider = checkpoint_text_provider(meta, root, options.caption_store)
    runner = InferenceRunner(model, options.device, options.precision, compile=options.compile)
    common = dict(tile_size=tile, batch_size=options.batch_size, num_workers=options.num_workers,
                  text_provider=provider)
    tuned = None
    threshold = checkpoint_threshold(meta, options.threshold)
    if options.tune_threshold:
        say(f"tuning the threshold on split '{options.tune_split}'")
        val = evaluate(runner, layout, options.tune_split, collect_histogram=True, progress=progress, **common)
        assert val.histogram is not None
        threshold, stats = val.histogram.best_threshold()
        tuned = {"split": options.tune_split, "dataset": str(root), "threshold": threshold, "f1": f1(stats),
                 "f1_at_0.5": f1(val.histogram.stats_at(0.5))}
        update_checkpoint_meta(options.checkpoint, threshold=threshold, threshold_tuning=tuned)
        say(f"threshold {threshold:.3f} (val F1 {tuned['f1']:.4f}, at 0.5: {tuned['f1_at_0.5']:.4f}) "
            f"stored in {options.checkpoint}")
    run_dir = next_run_dir(options.project, "eval", options.name)
    result = evaluate(runner, layout, options.split, threshold=threshold, progress=progress,
                      vis_dir=run_dir / "vis" if options.save_vis else None, **common)
    atomic_write_text(run_dir / "per_image.csv", per_image_csv(result, root))
    summary = {
        "metrics": result.metrics(),
        "split": options.split,
        "pairs": len(result.per_image),
        "threshold": threshold,
        "threshold_tuning": tuned,
        "checkpoint": str(options.checkpoint),
        "model": meta.get("model_config"),
        "dataset": str(root),
        "layout": layout.kind,
        "tile_size": tile,
        "seconds": round(result.seconds, 3),
        "options": to_dict(options),
    }
    atomic_write_text(run_dir / "metrics.json", json.dumps(summary, indent=2, default=str))
    return EvalReport(run_dir, Path(options.checkpoint), layout, result, tuned)
