"""The robustness study (paper Table IV) as a library call: checkpoints x perturbed test sets.

Every checkpoint is evaluated on the clean split and under the selected perturbations
(:mod:`mmchange_core.evaluation.perturbations`), each at one or more severities. Because the text comes
from the images, perturbed images are captioned again with the checkpoint's own captioner; those
captions live in their own caption stores (one per condition), apart from the clean ones, and are
reused by later runs.

K-class checkpoints (a class file) have their labels checked against the class file before any work;
their rows add ``mean_f1`` (over the change classes), ``delta_mean_f1`` and ``per_class`` (F1 and IoU of
each change class by value and name) in robustness.json, and ``mean_f1``, ``delta_mean_f1`` and one
``f1_<class name>`` column per change class in robustness.csv; ``f1``/``iou`` stay those of any change.
Binary rows keep exactly their keys.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mmchange_core.config import SEED, group, non_negative, setting, to_dict, validate
from mmchange_core.data.dataset import check_label_set, is_multiclass
from mmchange_core.data.layouts import DatasetLayout, ImagePair, detect_layout, resolve_dataset_root
from mmchange_core.evaluation.evaluate import evaluate
from mmchange_core.evaluation.report import write_robustness_report
from mmchange_core.evaluation.run import eval_dataset
from mmchange_core.text.features import checkpoint_text_provider
from mmchange_core.inference.backends import open_model
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.inference.settings import DetectorSettings
from mmchange_core.progress import ProgressCallback
from mmchange_core.evaluation.perturbations import Perturbation, conditions
from mmchange_core.text.features import TextProvider
from mmchange_core.errors import InputError
from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.io.jsonio import strict_json
from mmchange_core.io.imagery import Imagery
from mmchange_core.io.raster import read_composite
from mmchange_core.metrics import ClassConfusion, class_stats, f1, iou, mean_f1, precision, recall
from mmchange_core.io.classes import ClassScheme
from mmchange_core.runs import RUN_NAME, next_run_dir

#: Pairs whose perturbed images are held in memory at once while captioning them.
CAPTION_CHUNK = 64


@dataclass
class RobustnessConfig:
    """Settings of ``mmchange robustness``."""

    checkpoints: list[str] = setting([])
    """Files, ``hf://`` specs or ``.onnx`` exports; none: the most recent training run's best (``project``)."""
    dataset: str = ""
    """levir, whu, sysu, a folder or a pair list; empty: the dataset the (first) checkpoint was trained on."""
    change_value: int | None = setting(None, non_negative())  # label value of change (None: see read_mask)
    split: str = "test"
    noise: bool = True
    light: bool = True
    severities: list[float] = setting([1.0], non_negative())
    seed: int = setting(0, SEED)
    detector: DetectorSettings = group(DetectorSettings)
    """How the models run; ``captions`` is the clean caption store (perturbed ones go beside it)."""
    accept_stale_captions: bool = False  # use captions of images that changed since they were captioned
    name: str | None = setting(None, RUN_NAME)
    project: str = "runs"


@dataclass
class RobustnessRow:
    """Metrics of one model under one condition (fractions), with the change against clean.

    ``delta_iou`` and ``delta_f1`` are perturbed minus clean: negative when the perturbation made the
    model worse (0 on the clean row), the sign of the dIoU/dF1 columns of the command's table.
    """

    model: str
    condition: str
    severity: float
    iou: float
    f1: float
    recall: float
    precision: float
    delta_iou: float
    delta_f1: float
    mean_f1: float | None = None
    """K-class models: mean F1 over the change classes (None, and left out of the outputs, for binary ones)."""
    delta_mean_f1: float | None = None
    per_class: list[dict[str, Any]] | None = None
    """K-class models: ``{"value", "name", "f1", "iou"}`` of each change class."""


#: The fields of a :class:`RobustnessRow` that only K-class models fill.
CLASS_FIELDS = ("mean_f1", "delta_mean_f1", "per_class")


def row_dict(row: RobustnessRow) -> dict[str, Any]:
    """A row as robustness.json holds it: binary rows without the K-class fields."""
    data = asdict(row)
    if row.per_class is None:
        for key in CLASS_FIELDS:
            data.pop(key)
    return data


@dataclass
class RobustnessReport:
    """All rows plus where they were written."""

    run_dir: Path
    rows: list[RobustnessRow]
    csv_path: Path
    json_path: Path
    plot_path: Path | None
    report: Path | None = None  # report.html (None when it could not be written)
    dataset: str = ""
    """The dataset that was evaluated (the given one, or the one the checkpoint was trained on)."""

    def to_dict(self) -> list[dict[str, Any]]:
        """The rows as ``mmchange robustness --json`` prints them and robustness.json holds them."""
        return [row_dict(row) for row in self.rows]


def model_label(checkpoint: Path) -> str:
    """``run/best`` for a training run's checkpoint, else the file's stem."""
    return f"{checkpoint.parent.name}/{checkpoint.stem}" if checkpoint.stem in ("best", "last") else checkpoint.stem


def perturbed_store_path(layout: DatasetLayout, clean_store: str | None, tag: str) -> Path:
    """Where the captions of perturbed images of one condition are cached (beside the clean store)."""
    from mmchange_core.text import STORE_FILENAME

    clean = Path(clean_store) if clean_store else layout.root / STORE_FILENAME
    return clean.with_name(f"{clean.stem}.{tag}{clean.suffix or '.jsonl'}")


def _image_sha256(image: np.ndarray) -> str:
    digest = hashlib.sha256(f"{image.shape}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def perturbed_text_provider(pipeline: Any, layout: DatasetLayout, perturbation: Perturbation,
                            store_path: Path, imagery: Imagery | None = None) -> TextProvider:
    """Embeddings of perturbed pairs: captioned again with ``pipeline`` (the checkpoint's), cached in ``store_path``."""
    from mmchange_core.text import CaptionStore

    store = CaptionStore.open(layout.root, store_path)

    def provide(pairs: Sequence[ImagePair]) -> tuple[np.ndarray, np.ndarray]:
        chunks_a, chunks_b = [], []
        for start in range(0, len(pairs), CAPTION_CHUNK):
            items = []
            for pair in pairs[start:start + CAPTION_CHUNK]:
                for date, path, key in zip("AB", (pair.image_a, pair.image_b), pair.relative(layout.root)):
                    image = perturbation.apply(read_composite(path, None, imagery), date, key)
                    items.append((key, _image_sha256(image), lambda image=image: image))
            embeddings = store.ensure(items, pipeline)
            chunks_a.append(embeddings[0::2])
            chunks_b.append(embeddings[1::2])
        if not chunks_a:
            return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
        return np.concatenate(chunks_a), np.concatenate(chunks_b)

    return provide


def _image_transform(perturbation: Perturbation, layout: DatasetLayout, pairs: Sequence[ImagePair]):
    keys = [pair.relative(layout.root) for pair in pairs]

    def transform(image_a: np.ndarray, image_b: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        key_a, key_b = keys[index]
        return perturbation.apply(image_a, "A", key_a), perturbation.apply(image_b, "B", key_b)

    return transform


def _row(model: str, perturbation: Perturbation, stats: Any, clean: Any | None,
         classes: ClassConfusion | None = None, clean_classes: ClassConfusion | None = None,
         scheme: ClassScheme | None = None) -> RobustnessRow:
    base = clean or stats
    row = RobustnessRow(model, perturbation.name, perturbation.severity if not perturbation.is_identity else 0.0,
                        iou(stats), f1(stats), recall(stats), precision(stats),
                        iou(stats) - iou(base), f1(stats) - f1(base))
    if classes is not None:
        scheme = scheme or ClassScheme.numbered(classes.classes)
        row.mean_f1 = mean_f1(classes)
        row.delta_mean_f1 = row.mean_f1 - mean_f1(clean_classes or classes)
        row.per_class = [{"value": c.value, "name": c.name, "f1": f1(class_stats(classes, i)),
                          "iou": iou(class_stats(classes, i))}
                         for i, c in enumerate(scheme.classes) if i > 0]
    return row


def run_robustness(config: RobustnessConfig, progress: ProgressCallback | None = None,
                   message: Callable[[str], None] | None = None) -> RobustnessReport:
    """Evaluate every checkpoint on clean and perturbed versions of ``config.split``; write csv/json/png."""
    say = message or (lambda _text: None)
    started = time.perf_counter()
    validate(config)
    if not (config.noise or config.light):
        raise InputError("choose at least one perturbation: --noise and/or --light")
    if not config.severities or any(s < 0 for s in config.severities):
        raise InputError(f"--severity values must be >= 0, got {config.severities}")
    models = [open_model(spec, project=config.project) for spec in (config.checkpoints or [None])]
    for model in models:
        if model.chosen:
            say(model.chosen)
    layout = detect_layout(resolve_dataset_root(eval_dataset(config.dataset, models[0], say)), config.change_value)
    say(f"dataset {layout.describe()}")
    pairs = layout.require_labels(config.split)
    for model in models:  # the labels of K-class checkpoints fit their class files, before any work
        if is_multiclass(model.meta.classes):
            check_label_set(pairs, model.meta.classes, f"split '{config.split}' of {layout.root} ({model.spec})")
    plans = [(p, severity) for severity in config.severities if severity > 0
             for p in conditions(config.noise, config.light, severity, config.seed)[1:]]
    store = config.detector.captions
    # every checkpoint's captions are checked against the images before any work
    clean_texts = [checkpoint_text_provider(model.meta, layout.root, store, pairs,
                                            accept_stale=config.accept_stale_captions, warn=say) for model in models]
    rows: list[RobustnessRow] = []
    records: list[dict[str, Any]] = []
    for model, clean_text in zip(models, clean_texts):
        detector = ChangeDetector.load(model, config.detector)  # a checkpoint or an exported .onnx
        records.append(detector.record())
        meta = detector.meta
        label = model_label(Path(model.spec))
        common = dict(pairs=pairs, workers=config.detector.workers)

        def report(name: str) -> ProgressCallback | None:
            return (lambda event: progress(replace(event, task=f"{label} {name}"))) if progress else None

        clean = evaluate(detector, layout, config.split, text_provider=clean_text, progress=report("clean"), **common)
        rows.append(_row(label, Perturbation(seed=config.seed), clean.stats, None, clean.confusion, None,
                         clean.scheme))
        pipeline = detector.text_pipeline() if detector.uses_text and meta.text_description is not None else None
        for perturbation, _severity in plans:
            text = None
            if pipeline is not None:
                perturbed = perturbed_store_path(layout, store, perturbation.tag())
                say(f"{label}: captions of {perturbation.tag()} images with the checkpoint's captioner "
                    f"({perturbed.name})")
                text = perturbed_text_provider(pipeline, layout, perturbation, perturbed, detector.imagery)
            result = evaluate(detector, layout, config.split, text_provider=text,
                              image_transform=_image_transform(perturbation, layout, pairs),
                              progress=report(perturbation.tag()), **common)
            rows.append(_row(label, perturbation, result.stats, clean.stats, result.confusion, clean.confusion,
                             result.scheme))
        say(f"{label}: done")
    run_dir = next_run_dir(config.project, "robustness", config.name)
    csv_path = atomic_write_text(run_dir / "robustness.csv", rows_csv(rows))
    json_path = atomic_write_text(run_dir / "robustness.json", strict_json(
        {"config": to_dict(config), "dataset": str(layout.root), "detectors": records,
         "rows": [row_dict(r) for r in rows]}, indent=2))
    plot_path = None
    if len(config.severities) > 1:
        from mmchange_core.reporting.plots import plot_severity_curves

        plot_path = plot_severity_curves(severity_series(rows), run_dir / "robustness.png", ylabel="F1",
                                         title=f"F1 against perturbation severity ({config.split} split)")
    examples = [Perturbation(seed=config.seed), *(p for p, _ in plans)]
    report = write_robustness_report(run_dir, to_dict(config), [row_dict(r) for r in rows], severity_series(rows),
                                     pairs[0], pairs[0].relative(layout.root), examples, plot=plot_path,
                                     device=str(detector.device), seconds=time.perf_counter() - started, warn=say,
                                     imagery=detector.imagery)
    return RobustnessReport(run_dir, rows, csv_path, json_path, plot_path, report, str(layout.root))


def rows_csv(rows: Sequence[RobustnessRow]) -> str:
    """CSV text of the rows (metrics as fractions); with K-class models also mean_f1, delta_mean_f1 and
    ``f1_<class name>`` per change class (empty in the rows of binary models)."""
    buffer = io.StringIO()
    fields = [f for f in RobustnessRow.__dataclass_fields__ if f not in CLASS_FIELDS]
    names = list(dict.fromkeys(c["name"] for row in rows for c in row.per_class or ()))
    if any(row.per_class is not None for row in rows):
        fields += ["mean_f1", "delta_mean_f1", *(f"f1_{name}" for name in names)]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    for row in rows:
        values = row_dict(row)
        values.update({f"f1_{c['name']}": c["f1"] for c in values.pop("per_class", None) or ()})
        writer.writerow({k: ("" if v is None else f"{v:.6f}" if isinstance(v, float) else v)
                         for k, v in values.items()})
    return buffer.getvalue()


def severity_series(rows: Sequence[RobustnessRow]) -> dict[str, list[tuple[float, float]]]:
    """``{"model condition": [(severity, f1), ...]}``; each series starts at the model's clean F1."""
    clean = {r.model: r.f1 for r in rows if r.condition == "clean"}
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if row.condition == "clean":
            continue
        points = series.setdefault(f"{row.model} {row.condition}", [(0.0, clean[row.model])])
        points.append((row.severity, row.f1))
    return {name: sorted(points) for name, points in series.items()}
