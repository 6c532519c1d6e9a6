"""``mmchange predict`` as a library call: one pair or two folders, any size, PNG/JPEG/(Geo)TIFF, with outputs.

How each pair's files are staged, resumed and recorded is :mod:`mmchange_core.inference.pair_writer`.

:func:`predict_pair` and :func:`predict_folder` load a :class:`~mmchange_core.inference.detector.ChangeDetector`
and write, per pair: a 0/255 mask (PNG, or GeoTIFF with the input's CRS and transform), optionally the
probability map, an outline overlay on date B and change polygons as GeoJSON.
"""

from __future__ import annotations

import contextlib
import datetime
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mmchange_core.config import group, non_negative, positive, setting, to_dict, validate
from mmchange_core.distributed import DistributedContext, distributed_session, launch_position, share_cpu_threads
from mmchange_core.errors import InputError, MMChangeError
from mmchange_core.inference.backends import ModelFile, open_model
from mmchange_core.inference.detector import ChangeDetector, check_pair
from mmchange_core.inference.manifest import MANIFEST_NAME, RunManifest, file_stamp, fingerprint, finished
from mmchange_core.inference.pair_writer import (
    BlockWriter,
    PairBlocks,
    PairOutputs,
    Stages,
    UnitProgress,
    consecutive_runs,
    locked_reader,
    on_main,
    resumable_blocks,
    unit_recorded,
    validity_reader,
)
from mmchange_core.inference.report import check_report_path, write_predict_report
from mmchange_core.inference.settings import DetectorSettings
from mmchange_core.inference.sliding_window import WindowTimings
from mmchange_core.inference.stac import model_fields, require_stac, stac_item_path, write_pair_item
from mmchange_core.progress import ProgressCallback
from mmchange_core.io.images import IMAGE_SUFFIXES, Warn, image_size, is_tiff
from mmchange_core.io.outputs import OutputPlan
from mmchange_core.io.raster import RasterSource, open_source
from mmchange_core.reporting.plots import colorbar_path, write_probability_figure
from mmchange_core.reporting.report import report_fields
from mmchange_core.io.hashing import cached_sha256_file

#: The folder-mode caption cache in the output folder; never a dataset's caption store's name.
PREDICT_CAPTION_CACHE = "mmchange_predict_captions.jsonl"
#: Window rows per resumable block of one large pair, unless the config says otherwise (``block_rows``).
DEFAULT_BLOCK_ROWS = 16
#: Finished row strips that may wait for the writer thread while the network runs.
WRITE_BEHIND = 4
#: Processes can finish their shares far apart (uneven pairs, slow disks): barriers wait up to a day.
BARRIER_TIMEOUT = datetime.timedelta(hours=24)


@dataclass
class PredictConfig:
    """Options of ``mmchange predict`` (the defaults are the CLI's)."""

    detector: DetectorSettings = group(DetectorSettings)
    """How the model runs (device, precision, windows, threshold, captions), as for eval and robustness."""
    min_area: float = setting(0.0, non_negative())
    """Smallest polygon kept in ``--vector`` output: pixels, or squared CRS units for georeferenced input."""
    block_rows: int = setting(DEFAULT_BLOCK_ROWS, positive())
    """Window rows per block of one large pair: the unit that a killed run resumes from and that torchrun
    processes share (each border between processes recomputes about one window row)."""
    stac: bool = False
    """Also write a STAC Item per pair beside its mask (``<mask stem>.stac.json``: inputs, model, outputs); needs
    pystac (``pip install 'mmchange[cog]'``)."""
    prob_colorbar: bool = False
    """Also write ``<prob stem>.colorbar.png`` beside each probability map: viridis with a colour bar."""
    project: str = "runs"
    """Where training runs are: without a checkpoint, predict uses the best one of the most recent run."""


@dataclass
class PairResult:
    """What :func:`predict_pair` did for one pair."""

    # duplicates (deliberate): field declarations, alike in shape only to other result dataclasses
    name: str
    image_a: str
    image_b: str
    width: int
    height: int
    windows: int
    threshold: float
    changed_pixels: int
    change_fraction: float
    outputs: dict[str, str]
    crs: str | None = None
    polygons: int | None = None
    captions: list[str] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    status: str = "ok"
    """``ok`` (predicted by this run) or ``skipped`` (finished by an earlier run, see the run manifest)."""
    units: dict[str, int] | None = None
    """Blocks of the pair: ``total``, ``done`` by this run, ``skipped`` (finished before)."""
    processes: int = 1
    stac: str | None = None
    """The pair's STAC Item (``--stac``), else ``None``."""
    checkpoint: str | None = None
    """The model that predicted it, as given (a path or ``hf://`` spec)."""
    settings: dict[str, Any] | None = None
    """The detector settings it ran with (:meth:`ChangeDetector.record`)."""
    report: str | None = None
    """The HTML report (``--report``; single-pair runs), else ``None``."""
    report_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The result as ``mmchange predict --json`` prints it and the run manifest records it."""
        return to_dict(self)


@dataclass
class FolderResult:
    """What :func:`predict_folder` did: one result per matched pair, the failures and the unmatched names."""

    pairs: list[PairResult]
    failed: dict[str, str]
    only_in_a: list[str]
    only_in_b: list[str]
    seconds: float
    units: dict[str, int] = field(default_factory=dict)
    """Pairs: ``total``, ``done`` by this run, ``skipped`` (finished before, unchanged), ``failed``."""
    processes: int = 1
    checkpoint: str | None = None
    settings: dict[str, Any] | None = None
    report: str | None = None
    report_bytes: int | None = None

    @property
    def ok(self) -> bool:
        """True when every matched pair was predicted."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        """The result as ``mmchange predict --json`` prints it."""
        return to_dict(self)


def predict_sources(detector: ChangeDetector, source_a: RasterSource, source_b: RasterSource, outputs: PairOutputs,
                    *, path_a: Path | None = None, path_b: Path | None = None, min_area: float = 0.0,
                    progress: ProgressCallback | None = None, ctx: DistributedContext | None = None,
                    manifest: RunManifest | None = None, unit_fingerprint: str | None = None,
                    block_rows: int = DEFAULT_BLOCK_ROWS, restart: bool = False) -> PairResult:
    """Predict one pair of open sources with ``detector`` and write ``outputs``; the sources stay open.

    Rows stream from the sources through the windows into on-disk stages of the mask and the
    probability map (:class:`~mmchange_core.io.cog.StagedRaster`), finished as COG/PNG at the end,
    so no scene is held in memory (except by ``--overlay``/``--vector``, which need the whole mask,
    one byte per pixel, and by ``.png`` outputs, which PNG writes whole). The pair is cut into blocks of ``block_rows`` window rows. Under
    torchrun (``ctx``) every process computes its share of the blocks, bit-identical to a single
    process, and process 0 finishes the files. With a ``manifest`` and the pair's
    ``unit_fingerprint``, finished blocks are recorded and a rerun resumes from them (``restart``:
    start afresh). Every process gets the same result.
    """
    start = time.perf_counter()
    ctx = ctx or DistributedContext()
    warn = detector.warn
    outputs.validate(path_a, path_b)
    georef = check_pair(source_a, source_b, path_a, path_b)
    if georef is not None and (source_a.georef is None or source_b.georef is None):
        plain = source_b.name if source_b.georef is None else source_a.name
        warn(f"{plain} has no georeferencing; using the other date's CRS and transform")
    if georef is not None:
        for kind, path in outputs.paths().items():
            if kind in ("mask", "prob") and not is_tiff(path):
                warn(f"{path}: a {path.suffix} {kind} output drops the CRS and transform; name it .tif to keep them")
    height, width = source_a.height, source_a.width
    t0 = time.perf_counter()
    text_a, text_b, captions = detector.source_text(source_a, source_b, path_a, path_b)
    text_seconds = time.perf_counter() - t0

    grid = detector.grid(height, width)
    blocks = PairBlocks(grid, block_rows)
    track = manifest is not None and unit_fingerprint is not None
    unit = outputs.mask.name

    def open_stages() -> tuple[Stages, dict[int, list]]:
        done = None if (restart or not track) else resumable_blocks(manifest, unit, unit_fingerprint, blocks, outputs)
        return Stages.open(outputs, height, width, create=done is None), done or {}

    opened = on_main(ctx, open_stages, share=lambda both: (None, both[1]))
    done = opened[1]
    stages = opened[0] if ctx.is_main else Stages.open(outputs, height, width, create=False)
    pending = [i for i in range(len(blocks)) if i not in done]
    mine = pending[ctx.rank * len(pending) // ctx.world_size:(ctx.rank + 1) * len(pending) // ctx.world_size]
    show_blocks = progress if (track and (ctx.enabled or len(blocks) > 1)) else None
    counter = UnitProgress(show_blocks, "blocks", {blocks.unit(unit, i) for i in pending}, len(done), manifest, ctx)
    lock = threading.Lock()  # rasterio datasets are read by the prefetch and the writer threads
    writer = BlockWriter(stages, blocks, detector.threshold, validity_reader(source_a, source_b, lock),
                          manifest if track else None, unit, unit_fingerprint, counter)
    timings = WindowTimings()
    error: MMChangeError | None = None
    try:
        with counter:
            for run in consecutive_runs(mine):
                rows = range(blocks.blocks[run[0]].start, blocks.blocks[run[-1]].stop)
                part = detector.stream_logits(locked_reader(source_a, lock), locked_reader(source_b, lock), grid,
                                              writer.write, text_a, text_b, None if ctx.enabled else progress,
                                              rows=rows, write_behind=WRITE_BEHIND)
                for name in ("windows", "read", "network", "write"):
                    setattr(timings, name, getattr(timings, name) + getattr(part, name))
    except MMChangeError as exc:  # every process must reach the gather below; the error is raised after it
        error = exc
    finally:
        if not ctx.is_main:
            stages.detach()
    reports = ctx.gather({"changed": writer.changed, "error": str(error) if error else None})
    counter.poll()  # the other processes' last blocks
    errors = [r["error"] for r in reports if r["error"]]
    if errors:
        if ctx.is_main:
            stages.abort()
        raise error if error is not None else MMChangeError(errors[0])

    def finish() -> PairResult:
        for report_ in reports:
            done.update({int(k): v for k, v in report_["changed"].items()})
        t0 = time.perf_counter()
        written, polygons = stages.finish(outputs, georef, invalid=any(v[1] for v in done.values()),
                                          source_a=source_a, source_b=source_b, min_area=min_area)
        changed_pixels = sum(v[0] for v in done.values())
        return PairResult(
            name=pair_name(path_a or Path(source_a.name), path_b or Path(source_b.name)),
            image_a=str(path_a or source_a.name), image_b=str(path_b or source_b.name),
            width=width, height=height, windows=len(grid), threshold=detector.threshold,
            changed_pixels=changed_pixels, change_fraction=changed_pixels / (width * height),
            outputs=written, crs=georef.crs_name() if georef is not None else None, polygons=polygons,
            captions=captions,
            seconds={"total": time.perf_counter() - start, "network": timings.network, "read": timings.read,
                     "text": text_seconds, "write": timings.write + time.perf_counter() - t0},
            units={"total": len(blocks), "done": len(pending), "skipped": len(blocks) - len(pending)},
            processes=ctx.world_size, checkpoint=detector.name, settings=detector.record(),
        )

    return on_main(ctx, finish)


def predict_files(detector: ChangeDetector, path_a: str | Path, path_b: str | Path, outputs: PairOutputs, *,
                  min_area: float = 0.0, progress: ProgressCallback | None = None) -> PairResult:
    """Predict the pair of image files ``path_a`` (first date) and ``path_b`` (second date)."""
    path_a, path_b = Path(path_a), Path(path_b)
    outputs.validate(path_a, path_b)
    with open_source(path_a, detector.warn) as source_a, open_source(path_b, detector.warn) as source_b:
        check_pair(source_a, source_b, path_a, path_b)
        return predict_sources(detector, source_a, source_b, outputs, path_a=path_a, path_b=path_b,
                               min_area=min_area, progress=progress)


def _open_model(checkpoint: str | Path | ModelFile | None, config: PredictConfig, message: Warn | None) -> ModelFile:
    """The model through the backend seam (the latest training run's best without a checkpoint, said in one line)."""
    model = open_model(checkpoint, project=config.project)
    if model.chosen and message is not None and launch_position()[0] == 0:
        message(model.chosen)
    return model


def load_detector(checkpoint: str | Path | ModelFile, config: PredictConfig, *, caption_cache: str | Path | None = None,
                  warn: Warn | None = None) -> ChangeDetector:
    """The :class:`ChangeDetector` that ``config`` describes (``None`` fields: the checkpoint's values)."""
    return ChangeDetector.load(checkpoint, config.detector, captions=config.detector.captions,
                               caption_cache=caption_cache, warn=warn)


def pair_name(path_a: Path, path_b: Path) -> str:
    """The name of a pair's outputs: the common file stem, or ``<stem A>__<stem B>``."""
    return path_a.stem if path_a.stem == path_b.stem else f"{path_a.stem}__{path_b.stem}"


def default_mask_suffix(path: Path) -> str:
    """``.tif`` for TIFF inputs (GeoTIFF in gives GeoTIFF out), else ``.png``."""
    return ".tif" if is_tiff(path) else ".png"


def pair_outputs(path_a: Path, path_b: Path, output: Path, *, prob: Path | None = None,
                 overlay: Path | None = None, vector: Path | None = None, folders: bool = False,
                 stac: bool = False, colorbar: bool = False) -> PairOutputs:
    """Output paths for a pair: files as given, or (``folders=True``, or ``output`` a folder) names inside them.

    Inside folders the files are named after the pair: ``<stem>.png`` (``.tif`` for TIFF input) for
    masks, probabilities and overlays, ``<stem>.geojson`` for polygons.
    """
    name = pair_name(path_a, path_b)
    suffix = default_mask_suffix(path_a)
    mask_is_dir = folders or output.is_dir() or not output.suffix
    mask = output / f"{name}{suffix}" if mask_is_dir else output

    def place(path: Path | None, default_suffix: str) -> Path | None:
        if path is None:
            return None
        if folders or path.is_dir() or not path.suffix:
            return path / f"{name}{default_suffix}"
        return path

    prob_path = place(prob, suffix)
    return PairOutputs(mask=mask, prob=prob_path, overlay=place(overlay, suffix),
                       vector=place(vector, ".geojson"), stac=stac_item_path(mask) if stac else None,
                       colorbar=colorbar_path(prob_path) if colorbar and prob_path is not None else None)


@dataclass
class _RunRequest:
    """The outputs of one predict call beyond each pair's network outputs: colour bars, the report, STAC Items."""

    report: Path | None
    temporary_prob: bool
    """``--report`` without ``--prob``: the report reads a temporary probability map that does not outlive it."""

    @classmethod
    def check(cls, config: PredictConfig, prob: Path | None, report: str | Path | None) -> _RunRequest:
        """Check the requested outputs before any work (one line each)."""
        validate(config)
        if config.stac:
            require_stac()
        if config.prob_colorbar and prob is None:
            raise InputError("--prob-colorbar draws the --prob map; add --prob PATH")
        if report is None:
            return cls(None, False)
        report = check_report_path(report)
        if prob is None and launch_position()[1] > 1:
            raise InputError("under torchrun, --report needs --prob (a path every process shares)")
        return cls(report, prob is None)

    @contextlib.contextmanager
    def probabilities(self, prob: Path | None, *, folder: bool) -> Iterator[Path | None]:
        """The probability map to predict: the user's, or the report's temporary one (removed afterwards)."""
        if not self.temporary_prob:
            yield prob
            return
        with tempfile.TemporaryDirectory(prefix="mmchange-report-") as tmp:
            yield Path(tmp) if folder else Path(tmp) / "prob.png"


def _finish_run(request: _RunRequest, results: list[PairResult], planned: list[PairOutputs],
                detector: ChangeDetector, ctx: DistributedContext, *, config: PredictConfig,
                inputs: tuple[Path, Path], seconds: float, failed: dict[str, str] | None = None,
                warn: Warn | None = None) -> dict[str, Any]:
    """Process 0 writes what is drawn from the pairs' outputs, in an order that needs no rewrite: colour
    bars, then the report, then each pair's STAC Item (which lists them). Returns the report fields."""
    for result, outputs in zip(results, planned):
        if result.settings is None:  # a pair finished by a run of an older mmchange
            result.checkpoint, result.settings = detector.name, detector.record()
        if outputs.stac is not None:
            result.stac = str(outputs.stac)
    if not ctx.is_main:
        return report_fields(None)
    for result, outputs in zip(results, planned):
        if outputs.colorbar is not None and "prob" in result.outputs:
            if result.status != "skipped" or not outputs.colorbar.is_file():
                write_probability_figure(result.outputs["prob"], outputs.colorbar,
                                         title=f"change probability: {result.name}")
            result.outputs["prob_colorbar"] = str(outputs.colorbar)
    written = None
    if request.report is not None:
        written = write_predict_report(request.report, results, checkpoint=detector.name,
                                       config={**to_dict(config), "detector": detector.record()}, inputs=inputs,
                                       seconds=seconds, failed=failed, temporary_prob=request.temporary_prob,
                                       warn=warn)
    model = model_fields(detector)
    for result, outputs in zip(results, planned):
        if outputs.stac is not None and not (result.status == "skipped" and outputs.stac.is_file()
                                             and written is None and outputs.colorbar is None):
            write_pair_item(result, outputs.stac, model, extra={"report": written} if written else None)
    return report_fields(written)


def predict_pair(checkpoint: str | Path | ModelFile | None, image_a: str | Path, image_b: str | Path,
                 output: str | Path, *, prob: str | Path | None = None, overlay: str | Path | None = None,
                 vector: str | Path | None = None, report: str | Path | None = None,
                 config: PredictConfig | None = None, warn: Warn | None = None, message: Warn | None = None,
                 progress: ProgressCallback | None = None, overwrite: bool = False) -> PairResult:
    """Predict the change between two image files with ``checkpoint`` (the ``mmchange predict A B`` call).

    ``output`` is the mask file (``.png`` or ``.tif``), or a folder to write ``<name>.png|.tif`` into;
    ``prob``, ``overlay``, ``vector`` and ``report`` add outputs, and ``config`` the colour bar and the
    STAC Item: every output is written here. Resumable: finished blocks are recorded in the output
    folder's :data:`MANIFEST_NAME`, and a rerun of the same command skips them (the whole pair when its
    outputs are unchanged; ``overwrite``: start afresh). Under torchrun the processes share the blocks;
    each gets the same result. Without a ``checkpoint`` it is the most recent training run's best
    (``config.project``), said through ``message``.
    """
    start = time.perf_counter()
    image_a, image_b = Path(image_a), Path(image_b)
    config = config or PredictConfig()
    request = _RunRequest.check(config, _opt_path(prob), report)
    model = _open_model(checkpoint, config, message)
    with request.probabilities(_opt_path(prob), folder=False) as prob_path:
        outputs = pair_outputs(image_a, image_b, Path(output), prob=prob_path, overlay=_opt_path(overlay),
                               vector=_opt_path(vector), stac=config.stac, colorbar=config.prob_colorbar)
        manifest = RunManifest(outputs.mask.parent)
        plan = OutputPlan((image_a, image_b, model.path, _opt_path(config.detector.captions)))
        outputs.plan(plan)
        plan.add(manifest.path, "run manifest")
        if request.report is not None:
            plan.add(request.report, "--report output")
        with open_source(image_a, warn) as source_a, open_source(image_b, warn) as source_b:
            check_pair(source_a, source_b, image_a, image_b)  # fail before loading the model
            with distributed_session(config.detector.device, backend="gloo", timeout=BARRIER_TIMEOUT) as ctx:
                share_cpu_threads(ctx)
                detector = load_detector(model, _rank_config(config, ctx), warn=warn if ctx.is_main else None)
                unit = outputs.mask.name

                def previous() -> tuple[str, dict[str, Any] | None]:
                    fp = pair_fingerprint(detector, image_a, image_b, outputs, config.min_area)
                    record = None if overwrite else manifest.latest().get(unit)
                    return fp, (record if finished(record, fp, outputs.paths()) else None)

                fp, record = on_main(ctx, previous)
                if record is not None:
                    result = _skipped_result(record)
                else:
                    result = predict_sources(detector, source_a, source_b, outputs, path_a=image_a, path_b=image_b,
                                             min_area=config.min_area, progress=progress if ctx.is_main else None,
                                             ctx=ctx, manifest=manifest, unit_fingerprint=fp,
                                             block_rows=config.block_rows, restart=overwrite)
                    if ctx.is_main:
                        _record_pair(manifest, unit, fp, outputs, result)
                fields_ = _finish_run(request, [result], [outputs], detector, ctx, config=config,
                                      inputs=(image_a, image_b), seconds=time.perf_counter() - start, warn=warn)
                result.report, result.report_bytes = fields_.get("report"), fields_.get("report_bytes")
                return result


def pair_fingerprint(detector: ChangeDetector, path_a: Path, path_b: Path, outputs: PairOutputs,
                     min_area: float) -> str:
    """The fingerprint of one pair's outputs: both inputs, the checkpoint and every setting that changes them."""
    captions = None
    if detector.uses_text and detector.captions is not None:
        captions = detector.captions.pair(path_a, path_b)
    return fingerprint(image_a=cached_sha256_file(path_a), image_b=cached_sha256_file(path_b),
                       checkpoint=_checkpoint_sha(detector), captions=captions,
                       settings=_output_settings(detector, outputs, min_area))


def _checkpoint_sha(detector: ChangeDetector) -> str:
    model = detector.model_file
    return model.sha256() if model is not None else detector.name


def _output_settings(detector: ChangeDetector, outputs: PairOutputs, min_area: float) -> dict[str, Any]:
    """The settings that change a pair's outputs (windows, batches, threshold, numerics, output files)."""
    return {**detector.record(outputs_only=True), "min_area": min_area,
            "outputs": {kind: str(path) for kind, path in outputs.paths().items()}}


def _rank_config(config: PredictConfig, ctx: DistributedContext) -> PredictConfig:
    """The config with this process's device (``cuda:LOCAL_RANK`` under torchrun on GPUs)."""
    return replace(config, detector=replace(config.detector, device=str(ctx.device))) if ctx.enabled else config


def _record_pair(manifest: RunManifest, unit: str, fp: str, outputs: PairOutputs, result: PairResult) -> None:
    manifest.append(unit, fp, stamps={kind: file_stamp(path) for kind, path in outputs.paths().items()},
                    result=result.to_dict())
    unit_recorded()


def _skipped_result(record: dict[str, Any]) -> PairResult:
    """The result a finished pair's manifest record holds, marked ``skipped``."""
    data = dict(record["result"])
    data["status"] = "skipped"
    known = {f.name for f in fields(PairResult)}
    return PairResult(**{k: v for k, v in data.items() if k in known})


def _opt_path(path: str | Path | None) -> Path | None:
    return None if path is None else Path(path)


def match_folders(dir_a: Path, dir_b: Path) -> tuple[list[tuple[Path, Path]], list[str], list[str]]:
    """Image files present in both folders (same file name), and the names found in only one of them."""
    for folder in (dir_a, dir_b):
        if not folder.is_dir():
            raise InputError(f"folder not found: {folder}")

    def images(folder: Path) -> dict[str, Path]:
        return {p.name: p for p in sorted(folder.iterdir())
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")}

    in_a, in_b = images(dir_a), images(dir_b)
    if not in_a:
        raise InputError(f"no images (.png, .jpg, .tif, ...) in {dir_a}")
    if not in_b:
        raise InputError(f"no images (.png, .jpg, .tif, ...) in {dir_b}")
    common = sorted(set(in_a) & set(in_b))
    return ([(in_a[n], in_b[n]) for n in common], sorted(set(in_a) - set(in_b)), sorted(set(in_b) - set(in_a)))


def plan_folder_outputs(pairs: list[tuple[Path, Path]], dir_a: Path, dir_b: Path, output_dir: Path, *,
                        prob_dir: Path | None = None, overlay_dir: Path | None = None, vector_dir: Path | None = None,
                        protected: tuple[Path | None, ...] = (), stac: bool = False,
                        colorbar: bool = False, report: Path | None = None) -> list[PairOutputs]:
    """Every pair's outputs, planned together before any pair runs: one error for the first collision.

    No output may land in an input folder or on an input (image, checkpoint, captions file), and
    no two pairs may share an output (``x.png`` and ``x.jpg`` both give ``x.png``).
    """
    plan = OutputPlan(protected)
    plan.protect(*(path for pair in pairs for path in pair))
    plan.protect_folder(dir_a, dir_b)
    for what, folder in (("--output folder", output_dir), ("--prob folder", prob_dir),
                         ("--overlay folder", overlay_dir), ("--vector folder", vector_dir)):
        if folder is not None:
            plan.check_folder(folder, what)
    plan.add(output_dir / PREDICT_CAPTION_CACHE, "caption cache")
    plan.add(output_dir / MANIFEST_NAME, "run manifest")
    if report is not None:
        plan.add(report, "--report output")
    planned = []
    for path_a, path_b in pairs:
        outputs = pair_outputs(path_a, path_b, output_dir, prob=prob_dir, overlay=overlay_dir, vector=vector_dir,
                               folders=True, stac=stac, colorbar=colorbar)
        outputs.plan(plan, owner=path_a.name)
        planned.append(outputs)
    return planned


def predict_folder(checkpoint: str | Path | ModelFile | None, dir_a: str | Path, dir_b: str | Path,
                   output_dir: str | Path, *, prob_dir: str | Path | None = None,
                   overlay_dir: str | Path | None = None, vector_dir: str | Path | None = None,
                   report: str | Path | None = None, config: PredictConfig | None = None, warn: Warn | None = None,
                   message: Warn | None = None, progress: ProgressCallback | None = None,
                   overwrite: bool = False) -> FolderResult:
    """Predict every pair of same-named images in ``dir_a`` and ``dir_b`` (the ``mmchange predict DIR_A DIR_B`` call).

    Masks go to ``output_dir/<stem>.png`` (``.tif`` for TIFF input); ``prob_dir``, ``overlay_dir``
    and ``vector_dir`` receive the optional outputs under the same names, and ``report`` one HTML
    report of every pair. A pair that fails (bad size, unreadable file...) is reported in ``failed``
    and the others go on. Captions made on the fly are cached in ``output_dir/`` :data:`PREDICT_CAPTION_CACHE`
    so that a rerun does not caption again; a dataset's own caption store (``mmchange_captions.jsonl``)
    is never written, even when it is there. Resumable: finished pairs are recorded in ``output_dir/``
    :data:`MANIFEST_NAME` and a rerun skips those whose inputs, checkpoint, settings and outputs are
    unchanged (``overwrite``: redo all). Under torchrun the pending pairs are shared between the
    processes (balanced by pixel count). ``progress`` receives ``windows`` events within each pair (one
    process) and ``pairs`` events.
    """
    start = time.perf_counter()
    dir_a, dir_b, output_dir = Path(dir_a), Path(dir_b), Path(output_dir)
    pairs, only_a, only_b = match_folders(dir_a, dir_b)
    if not pairs:
        raise InputError(f"no file names in common between {dir_a} and {dir_b}; files are matched by name")
    config = config or PredictConfig()
    request = _RunRequest.check(config, _opt_path(prob_dir), report)
    model = _open_model(checkpoint, config, message)
    protected = (model.path, _opt_path(config.detector.captions))
    with request.probabilities(_opt_path(prob_dir), folder=True) as prob_folder:
        planned = plan_folder_outputs(pairs, dir_a, dir_b, output_dir, prob_dir=prob_folder,
                                      overlay_dir=_opt_path(overlay_dir), vector_dir=_opt_path(vector_dir),
                                      protected=protected, stac=config.stac, colorbar=config.prob_colorbar,
                                      report=request.report)
        with distributed_session(config.detector.device, backend="gloo", timeout=BARRIER_TIMEOUT) as ctx:
            share_cpu_threads(ctx)
            detector = load_detector(model, _rank_config(config, ctx),
                                     caption_cache=output_dir / PREDICT_CAPTION_CACHE,
                                     warn=warn if ctx.is_main else None)
            results, skipped, failed = _predict_pairs(detector, pairs, planned, output_dir, config, ctx,
                                                      progress=progress, overwrite=overwrite)
            indices = [i for i in range(len(pairs)) if i in results or i in skipped]
            ordered = [results[i] if i in results else _skipped_result(skipped[i]) for i in indices]
            failed_named = {pairs[i][0].name: failed[i] for i in sorted(failed)}
            fields_ = _finish_run(request, ordered, [planned[i] for i in indices], detector, ctx, config=config,
                                  inputs=(dir_a, dir_b), seconds=time.perf_counter() - start, failed=failed_named,
                                  warn=warn)
    units = {"total": len(pairs), "done": len(results), "skipped": len(skipped), "failed": len(failed)}
    return FolderResult(ordered, failed_named, only_a, only_b, time.perf_counter() - start, units=units,
                        processes=ctx.world_size, checkpoint=detector.name, settings=detector.record(),
                        report=fields_.get("report"), report_bytes=fields_.get("report_bytes"))


def predict_paths(checkpoint: str | Path | ModelFile | None, image_a: str | Path, image_b: str | Path,
                  output: str | Path, *, prob: str | Path | None = None, overlay: str | Path | None = None,
                  vector: str | Path | None = None, **options: Any) -> PairResult | FolderResult:
    """``mmchange predict A B``: two image files (:func:`predict_pair`) or two folders (:func:`predict_folder`);
    ``options`` are theirs (``report``, ``config``, ``warn``, ``message``, ``progress``, ``overwrite``)."""
    image_a, image_b = Path(image_a), Path(image_b)
    if image_a.is_dir() or image_b.is_dir():
        if not (image_a.is_dir() and image_b.is_dir()):
            folder, other = (image_a, image_b) if image_a.is_dir() else (image_b, image_a)
            raise InputError(f"{folder} is a folder but {other} is not; give two images or two folders")
        return predict_folder(checkpoint, image_a, image_b, output, prob_dir=prob, overlay_dir=overlay,
                              vector_dir=vector, **options)
    return predict_pair(checkpoint, image_a, image_b, output, prob=prob, overlay=overlay, vector=vector, **options)


def _predict_pairs(detector: ChangeDetector, pairs: list[tuple[Path, Path]], planned: list[PairOutputs],
                   output_dir: Path, config: PredictConfig, ctx: DistributedContext, *,
                   progress: ProgressCallback | None, overwrite: bool,
                   ) -> tuple[dict[int, PairResult], dict[int, dict[str, Any]], dict[int, str]]:
    """The pending pairs of a folder, shared between the processes: results, skipped records and failures by index."""
    manifest = RunManifest(output_dir)
    files = sorted({path for pair in pairs for path in pair})
    hashes: dict[str, str | None] = {}
    for part in ctx.gather({str(p): _sha_or_none(p) for p in files[ctx.rank::ctx.world_size]}):
        hashes.update(part)
    ckpt = ctx.broadcast(_checkpoint_sha(detector) if ctx.is_main else None)

    def plan() -> tuple[dict[int, dict[str, Any]], list[list[int]], list[str | None], UnitProgress]:
        fps = []
        for (path_a, path_b), outputs in zip(pairs, planned):
            sha_a, sha_b = hashes[str(path_a)], hashes[str(path_b)]
            try:
                pair_captions = (detector.captions.pair(path_a, path_b)
                                 if detector.uses_text and detector.captions is not None else None)
            except MMChangeError:
                pair_captions = None
            fps.append(None if sha_a is None or sha_b is None else fingerprint(
                image_a=sha_a, image_b=sha_b, checkpoint=ckpt, captions=pair_captions,
                settings=_output_settings(detector, outputs, config.min_area)))
        if overwrite:
            manifest.reset()
        latest = manifest.latest()
        skipped = {i: latest[o.mask.name] for i, (o, fp) in enumerate(zip(planned, fps))
                   if fp is not None and finished(latest.get(o.mask.name), fp, o.paths())}
        pending = [i for i in range(len(pairs)) if i not in skipped]
        counter = UnitProgress(progress, "pairs", {planned[i].mask.name for i in pending}, len(skipped),
                                manifest, ctx)
        return skipped, _balance(pending, [_pixels(pairs[i][0]) for i in range(len(pairs))], ctx.world_size), \
            fps, counter

    skipped, shares, fps, counter = on_main(ctx, plan, share=lambda p: (p[0], p[1], p[2], None))
    if counter is None:
        counter = UnitProgress(None, "pairs", set(), 0, None, ctx)
    results: dict[int, PairResult] = {}
    failed: dict[int, str] = {}
    with counter:
        for index in shares[ctx.rank]:
            (path_a, path_b), outputs = pairs[index], planned[index]
            try:
                result = predict_files(detector, path_a, path_b, outputs, min_area=config.min_area,
                                       progress=None if ctx.enabled else progress)
                results[index] = result
                if fps[index] is not None:
                    _record_pair(manifest, outputs.mask.name, fps[index], outputs, result)
            except MMChangeError as exc:
                failed[index] = str(exc)
                manifest.append(outputs.mask.name, fps[index] or "", failed=str(exc))
            counter.poll()
    gathered = ctx.gather((results, failed))
    counter.poll()  # the other processes' last pairs
    for part_results, part_failed in gathered:
        results.update(part_results)
        failed.update(part_failed)
    return results, skipped, failed


def _sha_or_none(path: Path) -> str | None:
    try:
        return cached_sha256_file(path)
    except OSError:
        return None


def _pixels(path: Path) -> int:
    """Pixel count from the header (0 when unreadable): the cost estimate that balances pairs between processes."""
    try:
        height, width = image_size(path)
    except (MMChangeError, OSError):
        return 0
    return height * width


def _balance(indices: list[int], costs: list[int], parts: int) -> list[list[int]]:
    """Split ``indices`` into ``parts`` lists of similar total cost (largest first to the lightest list), each sorted."""
    shares: list[list[int]] = [[] for _ in range(parts)]
    loads = [0] * parts
    for i in sorted(indices, key=lambda i: (-costs[i], i)):
        lightest = loads.index(min(loads))
        shares[lightest].append(i)
        loads[lightest] += costs[i] + 1
    return [sorted(share) for share in shares]
