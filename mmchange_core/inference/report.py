"""The HTML report of ``mmchange predict --report``: per pair A | B with the change outlined, the probability
map with its colour bar, the changed area (pixels, and m² for projected GeoTIFFs), the polygon count and
the summary in words (:mod:`mmchange_core.inference.summary`).

The report is built from what predict wrote (the mask, the probability map) and the inputs, read as
thumbnails, so a scene is never held whole beyond the mask that predict itself holds. The class raster of
a K-class network is drawn in its class colours (read by strips and pooled, see
:func:`~mmchange_core.inference.series_report.read_pooled`), with the changed area of each class.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmchange_core.errors import InputError
from mmchange_core.io.atomic import refuse_unsafe
from mmchange_core.inference.summary import changed_area_m2
from mmchange_core.io.classes import ChangeClass, ClassScheme
from mmchange_core.io.imagery import Imagery
from mmchange_core.io.raster import open_source, open_sources
from mmchange_core.reporting.report import (
    Cell,
    Figure,
    Gallery,
    GalleryItem,
    Picture,
    Report,
    Section,
    Table,
    Text,
    run_header,
    try_write_report,
)
from mmchange_core.reporting.thumbnails import THUMB_SIDE, class_colours, fit

#: Pairs shown with pictures in a folder's report (all of them are in its summary table).
REPORT_PAIRS = 48
#: Outline colour of the predicted change on the thumbnails.
OUTLINE = (255, 0, 0)


def _read_mask(path: Path) -> np.ndarray:
    with open_source(path) as source:
        return np.asarray(source.read_rows(0, source.height))[..., 0] > 0


def summary_classes(summary: Mapping[str, Any] | None) -> ClassScheme | None:
    """The change classes a pair's summary lists (a K-class network's), to draw its class raster; ``None`` for a
    binary network."""
    if not isinstance(summary, Mapping) or not summary.get("classes"):
        return None
    return ClassScheme((ChangeClass(0, "no change", (0, 0, 0)),
                        *(ChangeClass(int(c["value"]), str(c["name"]), tuple(c["colour"])) for c in summary["classes"])))


def pair_section(result: Any, *, max_side: int = THUMB_SIDE, prob_path: Path | None = None,
                 title: str | None = None) -> tuple[Section, dict[str, Any]]:
    """One pair's section and its summary row (``result`` is a :class:`~mmchange_core.inference.predict.PairResult`)."""
    from mmchange_core.inference.series_report import read_pooled
    from mmchange_core.io.vector import polygonize
    from mmchange_core.reporting.overlay import outlines, paint_classes, pool_any
    from mmchange_core.reporting.plots import probability_figure, read_probability_preview

    summary = getattr(result, "summary", None)
    classes = summary_classes(summary)
    h, w = fit(result.height, result.width, max_side)
    if classes is None:
        mask = _read_mask(Path(result.outputs["mask"]))
        small = pool_any(mask, h, w) if (h, w) != mask.shape else mask
        edge = outlines(small, 1)
    else:  # the class raster, its largest value per block (a palette PNG is read as its values, not colours)
        small = read_pooled(result.outputs["mask"], h, w, size=(result.height, result.width)).preview.astype(np.uint8)
    pictures = []
    sources = open_sources([result.image_a, result.image_b], None, Imagery.from_dict(getattr(result, "imagery", None)))
    georef = sources[0].georef or sources[1].georef
    for label, source in zip(("A (before)", "B (after)"), sources):
        with source:
            view = np.array(source.thumbnail(max(h, w)), copy=True)
        if view.shape[:2] != (h, w):
            from PIL import Image

            view = np.asarray(Image.fromarray(view).resize((w, h), Image.Resampling.BOX)).copy()
        pictures.append((label, Picture.from_array(view, f"{result.name} {label}", max_side=max_side, fmt="jpeg")))
        if classes is None:
            view[edge] = OUTLINE
        else:
            paint_classes(view, small, classes, 1)
        pictures.append((f"{label[0]} + change outline", Picture.from_array(view, f"{result.name} {label} outline",
                                                                           max_side=max_side, fmt="jpeg")))
    if classes is None:
        pictures.append(("predicted mask", Picture.from_array(small, f"{result.name} mask", max_side=max_side)))
        legend = [("predicted change (outline)", OUTLINE)]
    else:
        pictures.append(("predicted classes", Picture.from_array(class_colours(small, classes),
                                                                 f"{result.name} classes", max_side=max_side,
                                                                 fmt="png")))
        legend = [(cls.name, cls.colour) for cls in classes.change_classes]
    if result.polygons is not None:
        polygons = result.polygons
    else:
        polygons = summary["polygons"] if summary is not None else len(polygonize(mask))
    area, area_text = changed_area_m2(result.changed_pixels, georef)
    blocks: list[Any] = [Text(summary["text"])] if summary is not None else []
    blocks += [Gallery([GalleryItem(result.name, pictures, swipe=("A (before)", "B (after)"))], legend=legend)]
    prob = prob_path or (Path(result.outputs["prob"]) if "prob" in result.outputs else None)
    if prob is not None and prob.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            preview, size = read_probability_preview(prob, max_side=max(2 * max_side, 256))
            figure = probability_figure(preview, Path(tmp) / "prob.png", title=f"{result.name}: change probability",
                                        size=size)
            blocks.append(Figure(Picture.from_file(figure, f"{result.name} probability"),
                                 "change probability (0-1) with its colour bar"))
    facts = [["size", f"{result.width}x{result.height} px"], ["threshold", f"{result.threshold:.3f}"],
             ["changed pixels", f"{result.changed_pixels:,}"],
             ["changed %", f"{100 * result.change_fraction:.3f}"], ["changed area (m²)", area_text],
             *[[f"changed: {c['name']}", f"{c['area_text']} ({c['percent']:.3f} %)"]
               for c in (summary or {}).get("classes") or ()],
             ["polygons", polygons], ["CRS", result.crs or "none"],
             *[[f"output: {kind}", path] for kind, path in result.outputs.items()]]
    blocks.append(Table(["", "value"], facts, numeric=[False, False]))
    row = {"pair": result.name, "size": f"{result.width}x{result.height}", "changed_pixels": result.changed_pixels,
           "change_percent": 100 * result.change_fraction, "area_m2": area, "area_text": area_text,
           "polygons": polygons}
    return Section(title or result.name, blocks), row


def predict_report(header: Any, results: Sequence[Any], *, failed: Mapping[str, str] | None = None,
                   prob_paths: Mapping[str, Path] | None = None, limit: int = REPORT_PAIRS) -> Report:
    """Sections for up to ``limit`` pairs and, for several pairs, a sortable summary table of all of them."""
    prob_paths = prob_paths or {}
    folder = len(results) + len(failed or {}) > 1
    sections, rows = [], []
    for index, result in enumerate(results):
        if index < limit:
            section, row = pair_section(result, max_side=256 if folder else THUMB_SIDE,
                                        prob_path=prob_paths.get(result.name))
            sections.append(section)
        else:
            row = {"pair": result.name, "size": f"{result.width}x{result.height}",
                   "changed_pixels": result.changed_pixels, "change_percent": 100 * result.change_fraction,
                   "area_m2": None, "area_text": "", "polygons": result.polygons}
        rows.append(row)
    summary: list[Any] = []
    if folder:
        table_rows = [[r["pair"], r["size"], r["changed_pixels"],
                       Cell(f"{r['change_percent']:.3f}", r["change_percent"]),
                       Cell(r["area_text"] or "n/a", r["area_m2"] if r["area_m2"] is not None else -1.0),
                       r["polygons"], "ok"] for r in rows]
        table_rows += [[name, "", None, None, None, None, f"failed: {message}"]
                       for name, message in (failed or {}).items()]
        summary.append(Table(["pair", "size", "changed pixels", "changed %", "area (m²)", "polygons", "status"],
                             table_rows, title=f"{len(results)} pairs predicted", sortable=True,
                             table_id="pairs", numeric=[False, False, True, True, True, True, False]))
        if len(results) > limit:
            summary.append(Text(f"pictures of the first {limit} pairs only; every pair is in the table"))
    body = ([Section("Summary", summary)] if summary else []) + sections
    name = "a folder of pairs" if folder else (results[0].name if results else "")
    return Report(f"mmchange predict: {name}", header, body)


def check_report_path(path: str | Path) -> Path:
    """``--report`` must name an .html file that is not a folder (checked before any work)."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm") or path.is_dir():
        raise InputError(f"--report {path}: give an .html file name, e.g. --report report.html")
    refuse_unsafe(path, "--report")  # a link or FIFO at its name: refused now, not after the work
    return path


def write_predict_report(path: str | Path, results: Sequence[Any], *, checkpoint: str | Path,
                         config: Mapping[str, Any], inputs: tuple[str | Path, str | Path], seconds: float,
                         failed: Mapping[str, str] | None = None, temporary_prob: bool = False,
                         warn: Callable[[str], None] | None = None) -> Path | None:
    """Write the predict report to ``path`` (a failure only warns: the masks are written).

    With ``temporary_prob`` the results' ``prob`` outputs (``--report`` without ``--prob``) are read for the
    report and dropped from the results, since they do not outlive it.
    """
    from mmchange_core.device import resolve_device

    prob_paths = {r.name: Path(r.outputs.pop("prob")) for r in results if "prob" in r.outputs} \
        if temporary_prob else {}
    header = run_header("predict", checkpoint=checkpoint, config=config,
                        device=str(resolve_device(config.get("device", "auto"))), seconds=seconds,
                        extra={"inputs": f"{inputs[0]} | {inputs[1]}"})
    return try_write_report(path, lambda: predict_report(header, results, failed=failed, prob_paths=prob_paths),
                            warn=warn)
