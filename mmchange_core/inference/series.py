"""``mmchange series`` as a library call: change over a series of 3 or more dated, co-registered images.

A series of N dates is compared N - 1 times (each consecutive interval) plus once from the first
date to the last. Every date is read, normalised, captioned and text-encoded once: the windows of
all dates at one place are cut in one pass (:func:`~mmchange_core.data.windows.iter_date_batches`)
and every comparison runs on them (:class:`~mmchange_core.inference.sliding_window.WindowNetwork`),
each in the very batches that ``mmchange predict`` runs for that pair, so an interval's mask equals
the prediction of that pair bit for bit. Peak memory is that of the window plan (a strip and a
batch of windows per date, a window row of logits per comparison), whatever the image size.

Outputs, in the output folder (``.tif`` for TIFF inputs, a Cloud-Optimized GeoTIFF with the inputs'
CRS and transform and the dates in its metadata; ``.png`` otherwise):

* ``interval_<k>_<date k-1>_<date k>``: the 0/255 change mask of interval ``k`` (1..N-1); for a K-class
  network the class map (the class file's values, 0 = no change; a palette PNG or a GeoTIFF with a colour
  table and the class names in its metadata), as ``mmchange predict`` writes it for that pair;
* ``first_to_last_<date 0>_<date N-1>``: the change mask from the first date to the last;
* ``first_change`` / ``last_change`` (uint8): ``k`` where change was first / last detected in interval
  ``k``, i.e. first seen on date ``k`` (dates counted from 0); 0 where no interval changed;
* ``change_count`` (uint8): the number of intervals that changed;
* ``series.json``: the result (dates, per-interval areas, polygon counts and summaries in words);
  with ``stac``, ``series.stac.json``, a STAC Item whose temporal extent is the series'.

Like predict, a series is cut into blocks of window rows recorded in the folder's run manifest, so
a killed run resumes from its finished blocks, and torchrun processes share the blocks with outputs
bit-identical to one process.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from mmchange_core.config import to_dict, validate
from mmchange_core.data.series import DatedImage, check_coregistered, read_series
from mmchange_core.distributed import DistributedContext, distributed_session, share_cpu_threads
from mmchange_core.errors import InputError
from mmchange_core.inference.backends import ModelFile
from mmchange_core.inference.decision import DecisionRule
from mmchange_core.inference.detector import ChangeDetector, detector_imagery
from mmchange_core.inference.manifest import RunManifest, file_stamp, fingerprint, finished
from mmchange_core.inference.pair_writer import (
    BlockRecorder,
    PairBlocks,
    StageLayout,
    StageSet,
    UnitProgress,
    finish_mask,
    locked_reader,
    on_main,
    open_stage_set,
    output_classes,
    resumable_blocks,
    run_blocks,
    unit_recorded,
    validity_reader,
)
from mmchange_core.inference.predict import (
    BARRIER_TIMEOUT,
    WRITE_BEHIND,
    PredictConfig,
    check_describe_change,
    checkpoint_sha,
    describe_pair,
    load_detector,
    open_predict_model,
    rank_config,
)
from mmchange_core.inference.report import check_report_path
from mmchange_core.inference.series_report import write_series_report
from mmchange_core.inference.sliding_window import WindowTimings
from mmchange_core.inference.stac import model_fields, require_stac, summary_properties
from mmchange_core.inference.summary import summarize_change
from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.io.classes import ClassScheme
from mmchange_core.io.cog import StagedRaster
from mmchange_core.io.geo import GeoReference
from mmchange_core.io.hashing import cached_sha256_file
from mmchange_core.io.images import Warn, is_tiff
from mmchange_core.io.jsonio import strict_json
from mmchange_core.io.outputs import MASK_SUFFIXES, OutputPlan
from mmchange_core.io.raster import RasterSource, open_sources
from mmchange_core.io.stac import write_stac_item
from mmchange_core.io.vector import polygonize, polygonize_classes
from mmchange_core.progress import ProgressCallback
from mmchange_core.reporting.report import report_fields

#: The run manifest's unit of a whole series (its blocks are ``series#rows<a>-<b>``).
SERIES_UNIT = "series"
#: The result file written beside the rasters.
SERIES_RESULT = "series.json"
SERIES_STAC = "series.stac.json"
#: Most dates a series may have: the date-index rasters are uint8.
MAX_DATES = 255
#: What the values of the date-index rasters mean (also written into their GeoTIFF metadata).
INDEX_MEANING = ("k = change first (last) detected in interval k, between dates[k-1] and dates[k], i.e. seen on "
                 "dates[k] (dates counted from 0); 0 = no change")


def series_comparisons(dates: int) -> list[tuple[int, int]]:
    """The compared date pairs of a series: each consecutive interval, then the first date against the last."""
    return [(k - 1, k) for k in range(1, dates)] + [(0, dates - 1)]


@dataclass
class IntervalResult:
    """One comparison of a series: a consecutive interval (``index`` 1..N-1) or first to last (``index`` 0)."""

    # duplicates (deliberate): field declarations, alike in shape only to other result dataclasses
    index: int
    kind: str
    """``interval`` or ``first_to_last``."""
    date_a: str
    date_b: str
    image_a: str
    image_b: str
    mask: str
    changed_pixels: int
    change_fraction: float
    polygons: int
    summary: dict[str, Any] | None = None
    """The summary in words (:class:`~mmchange_core.inference.summary.ChangeSummary` as a dict)."""


@dataclass
class SeriesResult:
    """What :func:`predict_series` did."""

    # duplicates (deliberate): field declarations, alike in shape only to other result dataclasses
    name: str
    dates: list[str]
    images: list[str]
    width: int
    height: int
    windows: int
    threshold: float
    intervals: list[IntervalResult]
    first_to_last: IntervalResult
    outputs: dict[str, str]
    """``first_change``, ``last_change``, ``change_count`` (rasters) and ``result`` (series.json)."""
    crs: str | None = None
    captions: list[str] | None = None
    """One caption per date (text models)."""
    seconds: dict[str, float] = field(default_factory=dict)
    status: str = "ok"
    """``ok`` (predicted by this run) or ``skipped`` (finished by an earlier run, see the run manifest)."""
    units: dict[str, int] | None = None
    processes: int = 1
    checkpoint: str | None = None
    settings: dict[str, Any] | None = None
    stac: str | None = None
    report: str | None = None
    report_bytes: int | None = None
    imagery: dict[str, Any] | None = None
    """The bands read and the radiometric rule (one scale for every date under the ``joint`` rule)."""

    def to_dict(self) -> dict[str, Any]:
        """The result as ``mmchange series --json`` prints it and ``series.json`` holds it."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeriesResult:
        """The result :meth:`to_dict` wrote (the run manifest's record of a finished series)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["intervals"] = [IntervalResult(**item) for item in values["intervals"]]
        values["first_to_last"] = IntervalResult(**values["first_to_last"])
        return cls(**values)


@dataclass
class SeriesOutputs:
    """Where a series' files go: one mask per comparison, the date-index rasters and the result."""

    folder: Path
    masks: list[Path]
    first_change: Path
    last_change: Path
    change_count: Path
    result: Path
    stac: Path | None = None

    @classmethod
    def plan_for(cls, dates: Sequence[DatedImage], folder: Path, *, stac: bool = False) -> SeriesOutputs:
        """The files of a series in ``folder``: ``.tif`` for TIFF inputs (GeoTIFF in, GeoTIFF out), else ``.png``."""
        suffix = ".tif" if is_tiff(dates[0].path) else ".png"
        iso = [d.date.isoformat() for d in dates]
        width = len(str(len(dates) - 1))
        masks = [folder / f"interval_{k:0{width}d}_{iso[k - 1]}_{iso[k]}{suffix}" for k in range(1, len(dates))]
        masks.append(folder / f"first_to_last_{iso[0]}_{iso[-1]}{suffix}")
        return cls(folder, masks, folder / f"first_change{suffix}", folder / f"last_change{suffix}",
                   folder / f"change_count{suffix}", folder / SERIES_RESULT, folder / SERIES_STAC if stac else None)

    def rasters(self) -> dict[str, Path]:
        """Every raster by name (masks as ``interval_<k>`` and ``first_to_last``)."""
        named = {f"interval_{k}": path for k, path in enumerate(self.masks[:-1], start=1)}
        return {**named, "first_to_last": self.masks[-1], "first_change": self.first_change,
                "last_change": self.last_change, "change_count": self.change_count}

    def layout(self) -> StageLayout:
        """``(final path, part, dtype)`` of every stage: the masks, the three index rasters, the invalid pixels."""
        stages = [(path, "", np.uint8) for path in (*self.masks, self.first_change, self.last_change,
                                                    self.change_count)]
        return [*stages, (self.masks[0], "invalid", np.uint8)]

    def plan(self, plan: OutputPlan) -> None:
        """Add every output to ``plan``, which refuses bad suffixes and collisions with inputs and each other."""
        for name, path in self.rasters().items():
            plan.add(path, f"series {name} output", MASK_SUFFIXES)
        plan.add(self.result, "series result", (".json",))
        if self.stac is not None:
            plan.add(self.stac, "--stac item", (".json",))


class SeriesBlockWriter(BlockRecorder):
    """Turns finished logit rows of every comparison into masks and date-index rows, and records finished blocks.

    The stages are one mask per comparison, then ``first_change``, ``last_change``, ``change_count`` and the
    invalid pixels (:meth:`SeriesOutputs.layout`); ``changed`` holds one count per comparison. ``decision`` (the
    detector's rule) decides each comparison as predict's ``BlockWriter`` does: masks are 0/255, or a K-class
    network's class values."""

    def __init__(self, stages: StageSet, blocks: PairBlocks, decision: DecisionRule,
                 validity: Callable[[int, int], np.ndarray | None], manifest: RunManifest | None, fp: str | None,
                 counter: UnitProgress) -> None:
        super().__init__(stages, blocks, manifest, SERIES_UNIT, fp, counter)
        self.decision, self.validity = decision, validity
        self.comparisons = len(stages.stages) - 4

    def write(self, y0: int, logits: np.ndarray) -> None:
        """Rows ``y0 ..`` of every comparison (``[comparisons, h, W]`` logits; K-class ``[comparisons, K, h, W]``)."""
        stages = self.stages.stages
        masks = np.empty((self.comparisons, *logits.shape[-2:]), dtype=np.uint8)  # class indices, 0 = no change
        for c in range(self.comparisons):  # one comparison's probabilities at a time: as predict's BlockWriter
            masks[c] = self.decision.decide(logits[c])[1]
        height = logits.shape[-2]
        index = self.blocks.index_of(y0)
        counts = self.changed.setdefault(index, [[0] * self.comparisons, False])
        valid = self.validity(y0, height)
        if valid is not None:
            masks[:, ~valid] = 0
            stages[-1].write(y0, (~valid).view(np.uint8))
            counts[1] = True
        intervals = masks[:-1].astype(bool)
        count = intervals.sum(axis=0, dtype=np.uint8)
        changed = count > 0
        first = np.where(changed, intervals.argmax(axis=0) + 1, 0).astype(np.uint8)
        last = np.where(changed, len(intervals) - intervals[::-1].argmax(axis=0), 0).astype(np.uint8)
        for c in range(self.comparisons):
            values = self.decision.values(masks[c])  # 0/255, or the class file's values
            stages[c].write(y0, values)
            counts[0][c] += int(np.count_nonzero(values))
        for stage, rows in zip(stages[self.comparisons:self.comparisons + 3], (first, last, count)):
            stage.write(y0, rows)
        self.rows_written(y0, height, index)


def predict_dates(detector: ChangeDetector, dates: Sequence[DatedImage], sources: Sequence[RasterSource],
                  outputs: SeriesOutputs, georef: GeoReference | None, *, min_area: float = 0.0,
                  progress: ProgressCallback | None = None, ctx: DistributedContext | None = None,
                  manifest: RunManifest | None = None, unit_fingerprint: str | None = None,
                  block_rows: int = 16, restart: bool = False, describe: bool = False) -> SeriesResult:
    """Predict every comparison of the open, co-registered ``sources`` (one per date) and write ``outputs``.

    Under torchrun (``ctx``) every process computes its share of the blocks and process 0 finishes the
    files; with a ``manifest`` finished blocks are recorded and a rerun resumes from them (``restart``:
    start afresh). ``describe``: add to each comparison's summary the sentence the model's VLM captioner
    generates from both dates. Every process gets the same result.
    """
    start = time.perf_counter()
    ctx = ctx or DistributedContext()
    height, width = sources[0].height, sources[0].width
    comparisons = series_comparisons(len(dates))
    t0 = time.perf_counter()
    texts, captions = detector.dates_text(sources, [d.path for d in dates])
    text_seconds = time.perf_counter() - t0
    grid = detector.grid(height, width)
    blocks = PairBlocks(grid, block_rows)
    track = manifest is not None and unit_fingerprint is not None
    layout = outputs.layout()
    lock = threading.Lock()  # rasterio datasets are read by the prefetch and the writer threads
    readers = [locked_reader(source, lock) for source in sources]

    def stream(write: Any, rows: range, shown: ProgressCallback | None) -> WindowTimings:
        return detector.stream_dates_logits(readers, grid, write, texts or [None] * len(dates), comparisons, shown,
                                            rows=rows, write_behind=WRITE_BEHIND)

    stage_set, done, pending, timings = run_blocks(
        ctx, blocks, SERIES_UNIT, manifest=manifest, track=track, progress=progress, stream=stream,
        open_stages=lambda create: StageSet(open_stage_set(layout, height, width, create=create,
                                                           name=outputs.folder)),
        resume=lambda: None if (restart or not track) else resumable_blocks(manifest, SERIES_UNIT,
                                                                            unit_fingerprint, blocks, layout),
        writer_for=lambda stages_, counter: SeriesBlockWriter(stages_, blocks, detector.decision,
                                                              validity_reader(sources, lock),
                                                              manifest if track else None, unit_fingerprint,
                                                              counter))
    stages = stage_set.stages

    def finish() -> SeriesResult:
        t0 = time.perf_counter()
        try:
            generate = (lambda i, j: describe_pair(detector, sources[i], sources[j])) if describe else None
            intervals = _finish_stages(stages, outputs, dates, georef, captions, min_area,
                                       invalid=any(v[1] for v in done.values()), describe=generate,
                                       classes=output_classes(detector.decision))
        except BaseException:
            stage_set.abort()
            raise
        iso = [d.date.isoformat() for d in dates]
        rasters = outputs.rasters()
        return SeriesResult(
            name=outputs.folder.name, dates=iso, images=[str(d.path) for d in dates], width=width, height=height,
            windows=len(grid), threshold=detector.threshold, intervals=intervals[:-1], first_to_last=intervals[-1],
            outputs={name: str(rasters[name]) for name in ("first_change", "last_change", "change_count")},
            crs=georef.crs_name() if georef is not None else None, captions=captions,
            seconds={"total": time.perf_counter() - start, "network": timings["network"], "read": timings["read"],
                     "text": text_seconds, "write": timings["write"] + time.perf_counter() - t0},
            units={"total": len(blocks), "done": len(pending), "skipped": len(blocks) - len(pending)},
            processes=ctx.world_size, checkpoint=detector.name, settings=detector.record(),
            imagery=detector.imagery.to_dict())

    return on_main(ctx, finish)


def _finish_stages(stages: list[StagedRaster], outputs: SeriesOutputs, dates: Sequence[DatedImage],
                   georef: GeoReference | None, captions: list[str] | None, min_area: float, *,
                   invalid: bool, describe: Callable[[int, int], str] | None = None,
                   classes: ClassScheme | None = None) -> list[IntervalResult]:
    """Summarise each comparison's mask (read once, 1 byte a pixel), then write every file; stages are removed.
    ``classes`` (a K-class network): the masks are class maps, summarised by class and written with colours."""
    iso = [d.date.isoformat() for d in dates]
    comparisons = series_comparisons(len(dates))
    bad = stages[-1] if invalid else None
    results = []
    for c, (i, j) in enumerate(comparisons):
        stage = stages[c]
        if classes is None:
            mask = stage.read(0, stage.height) > 0
            polygons = polygonize(mask) if mask.any() else []  # as a pair's finish traces it
        else:
            mask = stage.read(0, stage.height)  # the class map
            polygons = polygonize_classes(mask, classes)
        summary = summarize_change(mask, georef, captions=[captions[i], captions[j]] if captions else None,
                                   period=(iso[i], iso[j]), min_area=min_area, polygons=polygons,
                                   generated=describe(i, j) if describe is not None else None, classes=classes)
        del mask, polygons
        tags = {"MMCHANGE_DATE_A": iso[i], "MMCHANGE_DATE_B": iso[j], "MMCHANGE_IMAGE_A": dates[i].path.name,
                "MMCHANGE_IMAGE_B": dates[j].path.name}
        path = finish_mask(stage, georef if is_tiff(stage.final_path) else None, bad, classes, tags)
        last = c == len(comparisons) - 1
        results.append(IntervalResult(
            index=0 if last else j, kind="first_to_last" if last else "interval", date_a=iso[i], date_b=iso[j],
            image_a=str(dates[i].path), image_b=str(dates[j].path), mask=str(path),
            changed_pixels=summary.changed_pixels, change_fraction=summary.changed_pixels / max(1, summary.total_pixels),
            polygons=summary.polygons, summary=summary.to_dict()))
    dates_tag = json.dumps(iso)
    meanings = {"first_change": INDEX_MEANING.replace(" (last)", ""),
                "last_change": INDEX_MEANING.replace("first (last)", "last"),
                "change_count": "number of intervals with change"}
    for stage, name in zip(stages[len(comparisons):len(comparisons) + 3], ("first_change", "last_change",
                                                                           "change_count")):
        stage.finish(georef if is_tiff(stage.final_path) else None, invalid=bad, resampling="nearest",
                     tags={"MMCHANGE_DATES": dates_tag, "MMCHANGE_VALUES": meanings[name]})
    stages[-1].abort()
    return results


def series_fingerprint(detector: ChangeDetector, dates: Sequence[DatedImage], outputs: SeriesOutputs,
                       min_area: float, describe: bool = False) -> str:
    """The fingerprint of a series' outputs: every input and its date, the checkpoint and the settings."""
    captions = None
    if detector.uses_text and detector.captions is not None:
        captions = detector.captions.dates([d.path for d in dates])
    return fingerprint(images=[cached_sha256_file(d.path) for d in dates], dates=[d.date.isoformat() for d in dates],
                       checkpoint=checkpoint_sha(detector), captions=captions,
                       settings={**detector.record(outputs_only=True), "min_area": min_area,
                                 "outputs": {k: str(v) for k, v in outputs.rasters().items()},
                                 **({"describe_change": True} if describe else {})})


def predict_series(checkpoint: str | Path | ModelFile | None, inputs: Sequence[str | Path], output: str | Path, *,
                   report: str | Path | None = None, config: PredictConfig | None = None, warn: Warn | None = None,
                   message: Warn | None = None, progress: ProgressCallback | None = None,
                   overwrite: bool = False) -> SeriesResult:
    """Detect change over a series of dated images (the ``mmchange series`` call); see the module docstring.

    ``inputs``: 3 or more image files in date order (dates in their names), one folder of such files,
    or one CSV/JSON/STAC list with a date column (:func:`~mmchange_core.data.series.read_series`).
    ``output`` is the folder of the outputs; ``report`` adds the HTML report. Everything is checked
    before any pixel is computed or any file written; a rerun of a finished series skips it, and of a
    killed one resumes it (``overwrite``: start afresh).
    """
    start = time.perf_counter()
    config = config or PredictConfig()
    validate(config)
    if config.stac:
        require_stac()
    dates = read_series(inputs)
    if len(dates) > MAX_DATES:
        raise InputError(f"the series has {len(dates)} dates; at most {MAX_DATES} fit the date-index rasters, "
                         f"so split it into shorter series")
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file; give a folder for the series' outputs (-o OUT_DIR)")
    if folder.suffix.lower() in MASK_SUFFIXES:
        raise InputError(f"-o {folder}: a series writes several files; give a folder, e.g. -o {folder.with_suffix('')}")
    report_path = check_report_path(report) if report is not None else None
    model = open_predict_model(checkpoint, config, message)
    outputs = SeriesOutputs.plan_for(dates, folder, stac=config.stac)
    manifest = RunManifest(folder)
    plan = OutputPlan((*(d.path for d in dates), model.path,
                       None if config.detector.captions is None else Path(config.detector.captions)))
    outputs.plan(plan)
    plan.add(manifest.path, "run manifest")
    if report_path is not None:
        plan.add(report_path, "--report output")
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(source) for source in
                   open_sources([d.path for d in dates], warn, detector_imagery(model.meta, config.detector))]
        georef = check_coregistered(sources, [d.path for d in dates])  # fail before loading the model
        with distributed_session(config.detector.device, backend="gloo", timeout=BARRIER_TIMEOUT) as ctx:
            share_cpu_threads(ctx)
            detector = load_detector(model, rank_config(config, ctx), warn=warn if ctx.is_main else None)
            if config.describe_change:
                check_describe_change(detector)

            def previous() -> tuple[str, dict[str, Any] | None]:
                fp = series_fingerprint(detector, dates, outputs, config.min_area, config.describe_change)
                record = None if overwrite else manifest.latest().get(SERIES_UNIT)
                return fp, (record if finished(record, fp, outputs.rasters()) else None)

            fp, record = on_main(ctx, previous)
            if record is not None:
                result = replace(SeriesResult.from_dict(record["result"]), status="skipped")
            else:
                result = predict_dates(detector, dates, sources, outputs, georef, min_area=config.min_area,
                                       progress=progress if ctx.is_main else None, ctx=ctx, manifest=manifest,
                                       unit_fingerprint=fp, block_rows=config.block_rows, restart=overwrite,
                                       describe=config.describe_change)
                if ctx.is_main:
                    manifest.append(SERIES_UNIT, fp,
                                    stamps={k: file_stamp(p) for k, p in outputs.rasters().items()},
                                    result=result.to_dict())
                    unit_recorded()
            if ctx.is_main:
                _write_run_files(result, outputs, detector, georef, config=config, report=report_path,
                                 seconds=time.perf_counter() - start, warn=warn)
            return result


def _write_run_files(result: SeriesResult, outputs: SeriesOutputs, detector: ChangeDetector,
                     georef: GeoReference | None, *, config: PredictConfig, report: Path | None, seconds: float,
                     warn: Warn | None) -> None:
    """Process 0 writes what is drawn from the rasters, in an order that needs no rewrite: the report, the STAC
    Item (which lists it), then ``series.json`` (which lists both)."""
    result.outputs["result"] = str(outputs.result)
    if report is not None:
        written = write_series_report(report, result, checkpoint=detector.name,
                                      config={**to_dict(config), "detector": detector.record()}, seconds=seconds,
                                      warn=warn)
        fields_ = report_fields(written)
        result.report, result.report_bytes = fields_.get("report"), fields_.get("report_bytes")
    if outputs.stac is not None:
        result.stac = str(write_series_item(result, outputs.stac, model_fields(detector), georef,
                                            classes=output_classes(detector.decision)))
    atomic_write_text(outputs.result, strict_json(result.to_dict(), indent=2) + "\n")


def write_series_item(result: SeriesResult, path: Path, model: dict[str, Any], georef: GeoReference | None,
                      classes: ClassScheme | None = None) -> Path:
    """The STAC Item of a series: every date as a source, every raster as an asset, the series' temporal extent,
    and per comparison its dates, changed area and summary in words; ``classes`` (a K-class network): the
    comparisons' masks are class rasters, listed with the classification extension."""
    assets: dict[str, str | Path] = {f"interval_{r.index}": r.mask for r in result.intervals}
    assets.update({"first_to_last": result.first_to_last.mask, **{k: result.outputs[k] for k in
                                                                   ("first_change", "last_change", "change_count")}})
    if result.report:
        assets["report"] = result.report
    properties = {
        "start_datetime": f"{result.dates[0]}T00:00:00Z", "end_datetime": f"{result.dates[-1]}T00:00:00Z",
        "mmchange:dates": result.dates,
        "mmchange:intervals": [{"index": r.index, "start": r.date_a, "end": r.date_b,
                                "changed_pixels": r.changed_pixels, "polygons": r.polygons,
                                **({"summary": r.summary["text"]} if r.summary else {})}
                               for r in result.intervals],
        **summary_properties(result.first_to_last.summary),
    }
    masks = [f"interval_{r.index}" for r in result.intervals] + ["first_to_last"]
    return write_stac_item(path, name=result.name, inputs=result.images, georef=georef, model=model, assets=assets,
                           properties=properties, shape=(result.height, result.width), classes=classes,
                           classified=masks)
