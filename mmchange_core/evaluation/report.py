"""The HTML reports of ``eval`` and ``robustness``: metrics, the worst pairs as a gallery, per-image table, curves.

Built from the same dicts the runs write to their JSON files, with :mod:`mmchange_core.reporting.report`.
K-class results add the per-class metrics, the confusion matrix as a heatmap and the class colours; their
gallery ranks pairs by the mean F1 over the change classes present (:func:`class_gallery_score`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmchange_core.data.layouts import ImagePair
from mmchange_core.evaluation.evaluate import (
    EvaluationResult,
    class_gallery_score,
    gallery_score,
)
from mmchange_core.metrics import class_stats, f1, iou, precision, recall
from mmchange_core.evaluation.perturbations import Perturbation
from mmchange_core.io.imagery import Imagery
from mmchange_core.io.raster import read_images
from mmchange_core.reporting.report import (
    Cell,
    Figure,
    Gallery,
    GalleryItem,
    MetricsTable,
    Picture,
    Report,
    RunHeader,
    Section,
    Table,
    Text,
    metric_text,
)
from mmchange_core.reporting.thumbnails import ERROR_COLOURS, WRONG_CLASS_COLOUR

#: The colour key of the error overlays (:func:`~mmchange_core.reporting.thumbnails.error_blend`).
ERROR_LEGEND = [("true change", ERROR_COLOURS["true change"]), ("missed (false negative)", ERROR_COLOURS["missed"]),
                ("false alarm (false positive)", ERROR_COLOURS["false alarm"])]
#: Columns of the per-image table of an eval report.
PER_IMAGE_COLUMNS = ["pair", "F1", "IoU", "P", "R", "label change %", "predicted change %", "wrong pixels"]


def _percent(part: int, total: int) -> Cell:
    value = 100.0 * part / max(1, total)
    return Cell(f"{value:.2f}", value)


def per_image_table(result: EvaluationResult) -> Table:
    """Every pair of the split with its metrics, sortable (F1 'n/a' sorts as 1: no change, none found); K-class
    results add the mean F1 over the change classes present and the F1 of each change class."""
    names = list(result.scheme.names[1:]) if result.multiclass and result.scheme is not None else []
    rows: list[list[Any]] = []
    for item in result.per_image:
        s = item.stats
        defined = 2 * s.tp + s.fp + s.fn > 0
        row = [item.pair.name,
               Cell(metric_text(f1(s)) if defined else "n/a (no change)", gallery_score(s)),
               iou(s) if defined else Cell("n/a", 1.0), precision(s), recall(s),
               _percent(s.tp + s.fn, s.total), _percent(s.tp + s.fp, s.total), s.fp + s.fn]
        if item.classes is not None:
            present = item.classes.matrix.sum(axis=0) + item.classes.matrix.sum(axis=1)
            score = class_gallery_score(item.classes)
            row.append(Cell(metric_text(score) if present[1:].any() else "n/a (no change)", score))
            row += [f1(class_stats(item.classes, i)) if present[i] else Cell("n/a", 1.0)
                    for i in range(1, item.classes.classes)]
        rows.append(row)
    columns = [*PER_IMAGE_COLUMNS, *(["mean class F1", *(f"F1 {n}" for n in names)] if names else [])]
    if names:
        columns[1:3] = ["change F1", "change IoU"]
    return Table(columns, rows, title=f"Every pair ({len(rows)}), click a header to sort",
                 sortable=True, table_id="per-image", numeric=[False, *([True] * (len(columns) - 1))])


def gallery(result: EvaluationResult) -> Gallery:
    """The kept worst pairs, worst first, as A | B | label | prediction | errors on B, with a swipe A/B."""
    items = []
    for kept in result.gallery:
        s = kept.stats
        pictures = [(label, Picture.from_array(array, f"{kept.pair.name} {label}"))
                    for label, array in kept.pictures.items()]
        if kept.classes is None:
            caption = (f"F1 {metric_text(f1(s))}" if 2 * s.tp + s.fp + s.fn else "F1 n/a (no change)") + \
                f" · {s.fn} px missed · {s.fp} px false alarm"
        else:
            wrong = kept.classes.total - int(np.trace(kept.classes.matrix)) - s.fn - s.fp
            caption = (f"mean class F1 {metric_text(kept.score)}" if 2 * s.tp + s.fp + s.fn
                       else "mean class F1 n/a (no change)") + \
                f" · {s.fn} px missed · {s.fp} px false alarm · {wrong} px wrong class"
        items.append(GalleryItem(kept.pair.name, pictures, caption, swipe=("A", "B")))
    if not result.multiclass:
        note = (f"The {len(items)} pairs with the lowest F1 of {len(result.per_image)} (a pair with no change in the "
                f"label and none predicted counts as F1 1). 'enlarge' opens a before/after swipe.")
        return Gallery(items, "Worst pairs first", legend=ERROR_LEGEND, note=note)
    note = (f"The {len(items)} pairs with the lowest mean F1 over the change classes present in their label or "
            f"prediction, of {len(result.per_image)} (a pair with no change in the label and none predicted counts "
            f"as 1). Label and prediction are drawn in the class colours. 'enlarge' opens a before/after swipe.")
    return Gallery(items, "Worst pairs first", legend=[*class_legend(result), *ERROR_LEGEND,
                                                       ("wrong change class", WRONG_CLASS_COLOUR)], note=note)


def class_legend(result: EvaluationResult) -> list[tuple[str, tuple[int, int, int]]]:
    """The colour of each class (label value and name) of a K-class result, for a report legend."""
    if result.scheme is None:
        return []
    return [(f"{c.value} {c.name}", c.colour) for c in result.scheme.classes]


def class_sections(summary: Mapping[str, Any], result: EvaluationResult, title: str) -> list[Any]:
    """The blocks of a K-class result: the means, the per-class table, the confusion heatmap and the class colours."""
    from mmchange_core.reporting.plots import confusion_figure

    metrics = summary["metrics"]
    means = Table(["mean F1 (change classes)", "mIoU (change classes)", "change F1 (any change)",
                   "class OA (K classes)"],
                  [[metrics["mean_f1"], metrics["miou"], metrics["change_f1"], metrics["class_oa"]]],
                  title="Class-aware metrics")
    per_class = Table(["class", "value", "P", "R", "F1", "IoU", "label pixels", "predicted pixels"],
                      [[r["name"], r["value"], r["precision"], r["recall"], r["f1"], r["iou"], r["support"],
                        r["predicted"]] for r in metrics["per_class"]],
                      title="Per class (one class against the rest; F1 0 where a class is in neither label nor "
                            "prediction)")
    confusion = metrics["confusion"]
    with tempfile.TemporaryDirectory() as tmp:
        path = confusion_figure(confusion["matrix"], confusion["classes"], Path(tmp) / "confusion.png",
                                title=f"{title}: confusion matrix ({summary.get('split', '')} split)")
        figure = Figure(Picture.from_file(path, "confusion matrix"),
                        "rows: label class, columns: predicted class; each cell: pixels and share of its row")
    colours = Gallery([], "Class colours", legend=class_legend(result),
                      note="the colours of the class maps (--save-pred palette PNGs, overlays and the gallery)")
    return [means, per_class, figure, colours]


def eval_sections(summary: Mapping[str, Any], result: EvaluationResult, title: str = "Evaluation") -> list[Section]:
    """The metrics table (from ``summary``, the dict written to metrics.json), the gallery and the per-image table."""
    metrics = summary["metrics"]
    counts = Table(["TP", "FP", "FN", "TN", "pairs", "threshold"],
                   [[metrics["tp"], metrics["fp"], metrics["fn"], metrics["tn"], summary.get("pairs"),
                     Cell(f"{summary['threshold']:.3f}", summary["threshold"])]], title="Pixel counts")
    note = ("precision, recall, F1 and IoU of the change class, from one confusion matrix over all pixels of the "
            "split; hover a value for the exact number in metrics.json")
    if result.multiclass:
        note = ("precision, recall, F1 and IoU of any change against no change (every change class together), "
                "from one confusion matrix over all pixels of the split; the classes follow below")
    sections = [Section(f"{title}: metrics", [MetricsTable([(f"{summary.get('split', '')} split", metrics)],
                                                           note=note), counts])]
    if result.multiclass and "per_class" in metrics:
        sections.append(Section(f"{title}: per class", class_sections(summary, result, title)))
    if result.gallery:
        sections.append(Section(f"{title}: where it fails", [gallery(result)]))
    sections.append(Section(f"{title}: per pair", [per_image_table(result)]))
    return sections


def eval_report(header: RunHeader, summary: Mapping[str, Any], result: EvaluationResult) -> Report:
    """The whole eval report."""
    return Report(f"mmchange eval: {Path(str(summary.get('checkpoint', ''))).name} on the "
                  f"{summary.get('split', '')} split", header, eval_sections(summary, result))


def perturbation_examples(pair: ImagePair, key: tuple[str, str], perturbations: Sequence[Perturbation],
                          max_side: int = 192, imagery: Imagery | None = None) -> Gallery:
    """One card per perturbation and severity: the first pair's A and B as the network sees them (in RGB)."""
    imagery = imagery or Imagery()
    rgb = list(imagery.rgb_positions())
    image_a, image_b = (np.ascontiguousarray(image[..., rgb])
                        for image in read_images([pair.image_a, pair.image_b], None, imagery))
    items = []
    for p in perturbations:
        pictures = [(date, Picture.from_array(p.apply(image, date, k), f"{p.tag()} {date}", max_side=max_side,
                                              fmt="jpeg"))
                    for date, image, k in (("A", image_a, key[0]), ("B", image_b, key[1]))]
        severity = "" if p.is_identity else f"severity {p.severity:g}"
        items.append(GalleryItem(p.name, pictures, severity, swipe=("A", "B")))
    return Gallery(items, f"Inputs under each condition ({pair.name})",
                   note="noise: Gaussian noise on both dates; light: darker, higher-contrast date B")


def robustness_report(header: RunHeader, rows: Sequence[Mapping[str, Any]],
                      series: Mapping[str, list[tuple[float, float]]], examples: Gallery | None,
                      plot: Path | None = None) -> Report:
    """F1 against severity per perturbation, the rows as metrics tables (K-class models: and their per-class F1),
    and example inputs."""
    sections = []
    blocks: list[Any] = []
    if series and any(len(points) > 1 for points in series.values()):
        with tempfile.TemporaryDirectory() as tmp:
            figure = plot
            if figure is None:
                from mmchange_core.reporting.plots import plot_severity_curves

                figure = plot_severity_curves(dict(series), Path(tmp) / "severity.png")
            blocks.append(Figure(Picture.from_file(figure, "F1 against severity"),
                                 "F1 against severity per perturbation (severity 0 = clean)"))
    by_model: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(str(row["model"]), []).append(row)
    for model, model_rows in by_model.items():
        named = [(f"{r['condition']}" + ("" if r["condition"] == "clean" else f" (severity {r['severity']:g})"), r)
                 for r in model_rows]
        blocks.append(MetricsTable(named, title=f"{model}: metrics under each condition",
                                   note="values as in robustness.json; OA and kappa are not part of the study"))
        blocks.append(Table(["condition", "severity", "dF1", "dIoU"],
                            [[r["condition"], float(r["severity"]), r["delta_f1"], r["delta_iou"]] for r in model_rows],
                            title="change against clean (perturbed - clean; negative = worse)"))
        if any(r.get("per_class") is not None for r in model_rows):  # a K-class model (binary rows: absent/None)
            names = [c["name"] for c in model_rows[0]["per_class"]]
            blocks.append(Table(["condition", "severity", "mean F1", "dmean F1", *(f"F1 {n}" for n in names)],
                                [[r["condition"], float(r["severity"]), r["mean_f1"], r["delta_mean_f1"],
                                  *(c["f1"] for c in r["per_class"])] for r in model_rows],
                                title=f"{model}: F1 of each change class under each condition (mean over the "
                                      f"change classes present; F1 and IoU above are of any change)"))
    sections.append(Section("Robustness", blocks))
    if examples is not None:
        sections.append(Section("Perturbed inputs", [examples]))
    if not blocks:
        sections[0].blocks.append(Text("no rows"))
    return Report("mmchange robustness", header, sections)



def write_robustness_report(run_dir: Path, config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                            series: Mapping[str, list[tuple[float, float]]], pair: ImagePair, key: tuple[str, str],
                            perturbations: Sequence[Perturbation], *, plot: Path | None, device: str,
                            seconds: float, warn: Any = None, imagery: Imagery | None = None) -> Path | None:
    """Write ``<run>/report.html`` of a robustness run (a failure only warns: the csv/json are written)."""
    from mmchange_core.reporting.report import REPORT_FILE, run_header, try_write_report

    checkpoints = config.get("checkpoints") or []
    header = run_header("robustness", checkpoint=", ".join(map(str, checkpoints)), dataset=config.get("dataset"),
                        config=config, device=device, seconds=seconds)
    return try_write_report(run_dir / REPORT_FILE, lambda: robustness_report(
        header, rows, series, perturbation_examples(pair, key, perturbations, imagery=imagery), plot), warn=warn)
