"""``mmchange eval`` as a library call: checkpoint + dataset -> metrics, per-image CSV, overlays, report.

Results go to ``<project>/eval/<name>`` (auto-incremented): ``metrics.json`` (the metrics and the
settings that produced them), ``per_image.csv`` (one row per pair), ``report.html`` (the metrics, the
``gallery`` worst pairs with their errors, every pair in a sortable table) and, with ``save_vis``,
``vis/<name>.png`` error overlays. ``tune_threshold`` picks the threshold with the best F1 on the
validation split, stores it in the checkpoint (``threshold`` in its metadata) and evaluates with it.

K-class checkpoints (a class file): every label is checked against the class file before any work
(:func:`~mmchange_core.data.dataset.check_label_set`); ``metrics.json`` holds the binary keys for any
change against none (``f1`` = ``change_f1``) plus ``mean_f1``, ``miou``, ``class_oa``, ``per_class`` (P, R,
F1, IoU of each class by name and value) and ``confusion`` (the K x K matrix, rows = label, with the class
names), and the run's ``classes``; ``metrics.csv`` has one row per class, the mean of the change classes and
any change against none, and ``per_image.csv`` gains
``mean_f1`` and one ``f1_<class name>`` column per change class. The threshold is tuned on the change
probability ``1 - p(no change)`` against any change, the rule's own quantity.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmchange_core.config import group, non_negative, setting, to_dict, validate
from mmchange_core.data.dataset import check_label_set
from mmchange_core.data.layouts import DatasetLayout, ImagePair, detect_layout, resolve_dataset_root
from mmchange_core.evaluation.evaluate import DEFAULT_GALLERY, EvaluationResult, evaluate
from mmchange_core.evaluation.report import eval_report
from mmchange_core.inference.backends import ModelFile, open_model
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.inference.settings import DetectorSettings
from mmchange_core.progress import ProgressCallback
from mmchange_core.text.features import checkpoint_text_provider
from mmchange_core.errors import InputError
from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.io.jsonio import strict_json
from mmchange_core.io.outputs import OutputPlan
from mmchange_core.inference.predict import pair_name
from mmchange_core.metrics import class_stats, f1, iou, mean_f1, precision, recall
from mmchange_core.models.checkpoint import check_updatable
from mmchange_core.reporting.report import REPORT_FILE, report_fields, run_header, try_write_report
from mmchange_core.runs import RUN_NAME, next_run_dir

#: The per-class metrics of a K-class evaluation: one row per class, then the mean over the change classes and
#: any change against none (binary runs do not write it; their figures are in metrics.json).
PER_CLASS_FILE = "metrics.csv"
#: Columns of :data:`PER_CLASS_FILE`.
PER_CLASS_COLUMNS = ("index", "value", "name", "precision", "recall", "f1", "iou", "support", "predicted")


@dataclass
class EvalOptions:
    """Settings of ``mmchange eval``."""

    checkpoint: str | None = None
    """A file, ``hf://OWNER/NAME[@REV]`` or ``.onnx``; ``None``: the most recent training run's best (``project``)."""
    dataset: str = ""
    """levir, whu, sysu, a folder or a pair list; empty: the dataset the checkpoint was trained on."""
    change_value: int | None = setting(None, non_negative())  # label value of change (None: see read_mask)
    split: str = "test"
    detector: DetectorSettings = group(DetectorSettings)
    """How the model runs (device, precision, windows, threshold, workers, caption store)."""
    tune_threshold: bool = False
    tune_split: str = "val"
    save_vis: bool = False
    save_pred: str | None = None  # a folder for the 0/255 masks, named as ``mmchange predict`` names them
    gallery: int = setting(DEFAULT_GALLERY, non_negative())  # worst pairs shown with pictures in report.html (0: none)
    accept_stale_captions: bool = False  # use captions of images that changed since they were captioned
    name: str | None = setting(None, RUN_NAME)
    project: str = "runs"


@dataclass
class EvalReport:
    """Outcome of :func:`run_evaluation`."""

    run_dir: Path
    checkpoint: str
    layout: DatasetLayout
    result: EvaluationResult
    tuned: dict[str, Any] | None
    tile_size: int
    overlap: int
    report: Path | None = None  # report.html (None when it could not be written)
    summary: dict[str, Any] | None = None
    """What metrics.json holds (the metrics and the settings that produced them)."""

    def metrics(self) -> dict[str, Any]:
        """The metrics of the split (fractions and pixel counts)."""
        return self.result.metrics()

    def to_dict(self) -> dict[str, Any]:
        """The result as ``mmchange eval --json`` prints it: the metrics, the settings and where things went."""
        data = dict(self.metrics())
        data.update({"split": (self.summary or {}).get("split"), "pairs": len(self.result.per_image),
                     "threshold": self.result.threshold, "tile_size": self.tile_size, "overlap": self.overlap,
                     "run_dir": str(self.run_dir), "checkpoint": self.checkpoint,
                     "detector": (self.summary or {}).get("detector"), **report_fields(self.report)})
        if self.tuned:
            data["threshold_tuning"] = self.tuned
        return data


def plan_eval_outputs(options: EvalOptions, pairs: Sequence[ImagePair], checkpoint: Path | None = None) -> None:
    """Check the masks of ``--save-pred`` and the overlays of ``--save-vis`` before any work.

    Masks may not overwrite a file of the dataset or the checkpoint, nor go into a dataset folder,
    and no two pairs may share an output name (``x.png`` and ``x.jpg`` both give ``x.png``).
    """
    if not (options.save_pred or options.save_vis):
        return
    files = [path for pair in pairs for path in (pair.image_a, pair.image_b, pair.label) if path is not None]
    plan = OutputPlan([*files, checkpoint if checkpoint is not None else options.checkpoint])
    plan.protect_folder(*{path.parent for path in files})
    if options.save_pred:
        plan.check_folder(Path(options.save_pred), "--save-pred folder")
    owners: dict[str, Path] = {}
    for pair in pairs:
        name = f"{pair_name(pair.image_a, pair.image_b)}.png"
        if options.save_pred:
            plan.add(Path(options.save_pred) / name, "--save-pred mask", owner=pair.image_a.name)
        elif name in owners:
            raise InputError(f"the --save-vis overlays of {owners[name]} and {pair.image_a} would both be named "
                             f"{name}; rename one of the images")
        owners[name] = pair.image_a


def per_image_csv(result: EvaluationResult, root: Path) -> str:
    """CSV text: one row per pair with its counts and metrics (0 where a metric is undefined); K-class results
    (counts and metrics of any change) add ``mean_f1`` and ``f1_<class name>`` of each change class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["name", "image_a", "image_b", "tp", "fp", "fn", "tn", "precision", "recall", "f1", "iou",
              "label_change", "predicted_change"]
    change_classes = list(enumerate(result.scheme.names))[1:] if result.multiclass and result.scheme else []
    if result.multiclass:
        header += ["mean_f1", *(f"f1_{name}" for _, name in change_classes)]
    writer.writerow(header)
    for item in result.per_image:
        s = item.stats
        rel_a, rel_b = item.pair.relative(root) if item.pair.image_a.is_relative_to(root) else (
            str(item.pair.image_a), str(item.pair.image_b))
        row = [item.pair.name, rel_a, rel_b, s.tp, s.fp, s.fn, s.tn, f"{precision(s):.6f}",
               f"{recall(s):.6f}", f"{f1(s):.6f}", f"{iou(s):.6f}",
               f"{(s.tp + s.fn) / max(1, s.total):.6f}", f"{(s.tp + s.fp) / max(1, s.total):.6f}"]
        if item.classes is not None:
            row += [f"{mean_f1(item.classes):.6f}",
                    *(f"{f1(class_stats(item.classes, i)):.6f}" for i, _ in change_classes)]
        writer.writerow(row)
    return buffer.getvalue()


def per_class_csv(metrics: dict[str, Any]) -> str:
    """CSV text of a K-class result's ``per_class`` metrics: one row per class (no change first), fractions and
    pixel counts (support: label pixels, predicted: predicted pixels)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PER_CLASS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    change = metrics["per_class"][1:]
    rows = [*metrics["per_class"],
            {"name": "mean of change classes", "f1": metrics["mean_f1"], "iou": metrics["miou"],
             "precision": sum(r["precision"] for r in change) / len(change),
             "recall": sum(r["recall"] for r in change) / len(change)},
            {"name": "any change", **{k: metrics[k] for k in ("precision", "recall", "f1", "iou")},
             "support": metrics["tp"] + metrics["fn"], "predicted": metrics["tp"] + metrics["fp"]}]
    for row in rows:
        writer.writerow({k: (f"{row[k]:.6f}" if isinstance(row.get(k), float) else row.get(k, ""))
                         for k in PER_CLASS_COLUMNS})
    return buffer.getvalue()


def eval_dataset(options_dataset: str, model: ModelFile, say: Callable[[str], None]) -> str:
    """The dataset to evaluate: the one given, else the one the checkpoint was trained on (said in one line)."""
    if options_dataset:
        return options_dataset
    trained_on = model.meta.training.get("dataset")
    if not trained_on:
        raise InputError(f"no --dataset given and {model.spec} does not record the dataset it was trained on; "
                         f"pass --dataset levir|whu|sysu|PATH")
    say(f"no --dataset given: using {trained_on}, the dataset {model.spec} was trained on")
    return str(trained_on)


def run_evaluation(options: EvalOptions, progress: ProgressCallback | None = None,
                   message: Callable[[str], None] | None = None) -> EvalReport:
    """Evaluate a checkpoint on a split, optionally tuning the threshold first; write the run folder."""
    say = message or (lambda _text: None)
    started = time.perf_counter()
    validate(options)
    if options.tune_threshold and options.detector.threshold is not None:
        raise InputError("--threshold and --tune-threshold exclude each other; give one of them")
    if options.tune_threshold and options.checkpoint is not None:
        check_updatable(options.checkpoint)  # the tuned threshold is stored in it: not in the Hub cache
    model = open_model(options.checkpoint, project=options.project)  # a checkpoint, an .onnx, hf://...
    if model.chosen:
        say(model.chosen)
    detector = ChangeDetector.load(model, options.detector)
    meta = detector.meta
    root = resolve_dataset_root(eval_dataset(options.dataset, model, say))
    layout = detect_layout(root, options.change_value)
    say(f"dataset {layout.describe()}")
    used = [*layout.pairs(options.split), *(layout.pairs(options.tune_split) if options.tune_threshold else [])]
    if detector.decision.multiclass:  # every label fits the class file, before any output is written
        for split in dict.fromkeys([options.split, *([options.tune_split] if options.tune_threshold else [])]):
            check_label_set(layout.require_labels(split), meta.classes, f"split '{split}' of {root}")
    plan_eval_outputs(options, layout.pairs(options.split), model.path)
    provider = checkpoint_text_provider(meta, layout.root, options.detector.captions, used,
                                        accept_stale=options.accept_stale_captions, warn=say)
    common = dict(workers=options.detector.workers, text_provider=provider)
    tuned = None
    threshold = detector.threshold
    if options.tune_threshold:
        say(f"tuning the threshold on split '{options.tune_split}'")
        val = evaluate(detector, layout, options.tune_split, collect_histogram=True, progress=progress, **common)
        assert val.histogram is not None
        threshold, stats = val.histogram.best_threshold()
        tuned = {"split": options.tune_split, "dataset": str(root), "threshold": threshold, "f1": f1(stats),
                 "f1_at_0.5": f1(val.histogram.stats_at(0.5))}
        model.update_meta(threshold=threshold, threshold_tuning=tuned)
        say(f"threshold {threshold:.3f} (val F1 {tuned['f1']:.4f}, at 0.5: {tuned['f1_at_0.5']:.4f}) "
            f"stored in {model.spec}")
    new_folders = [f for f in (Path(options.project), Path(options.project) / "eval") if not f.exists()]
    run_dir = next_run_dir(options.project, "eval", options.name)
    try:
        result = evaluate(detector, layout, options.split, threshold=threshold, progress=progress,
                          vis_dir=run_dir / "vis" if options.save_vis else None, pred_dir=options.save_pred,
                          gallery=options.gallery, **common)
    except BaseException:  # a failed evaluation (a bad label, an interrupt) leaves no half-filled run folder
        shutil.rmtree(run_dir, ignore_errors=True)
        for folder in reversed(new_folders):
            with contextlib.suppress(OSError):  # only when still empty
                folder.rmdir()
        raise
    atomic_write_text(run_dir / "per_image.csv", per_image_csv(result, layout.root))
    record = {**detector.record(), "threshold": threshold}
    metrics = result.metrics()
    if result.multiclass:
        atomic_write_text(run_dir / PER_CLASS_FILE, per_class_csv(metrics))
    summary = {
        "metrics": metrics,
        "split": options.split,
        "pairs": len(result.per_image),
        "threshold": threshold,
        "threshold_tuning": tuned,
        "checkpoint": model.spec,
        "model": to_dict(meta.model),
        "dataset": str(root),
        "layout": layout.kind,
        "tile_size": detector.tile_size,
        "overlap": detector.overlap,
        "detector": record,
        "seconds": round(result.seconds, 3),
        "options": to_dict(options),
    }
    if result.multiclass and result.scheme is not None:
        summary["classes"] = result.scheme.to_dict()["classes"]
    atomic_write_text(run_dir / "metrics.json", strict_json(summary, indent=2, default=str))
    header = run_header("eval", checkpoint=model.spec, dataset=root, config=summary["options"],
                        device=str(detector.device), seconds=time.perf_counter() - started, detector=record)
    report = try_write_report(run_dir / REPORT_FILE, lambda: eval_report(header, summary, result), warn=say)
    return EvalReport(run_dir, model.spec, layout, result, tuned, detector.tile_size, detector.overlap, report,
                      summary)
