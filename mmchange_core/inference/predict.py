"""``mmchange predict`` as a library call: one pair or two folders, any size, PNG/JPEG/(Geo)TIFF, with outputs.

:func:`predict_pair` and :func:`predict_folder` load a :class:`~mmchange_core.inference.detector.ChangeDetector`
and write, per pair: a 0/255 mask (PNG, or GeoTIFF with the input's CRS and transform), optionally the
probability map, an outline overlay on date B and change polygons as GeoJSON.
"""

from __future__ import annotations

import bisect
import datetime
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mmchange_core.config import (
    DEVICE,
    PRECISION,
    between,
    multiple_of,
    non_negative,
    positive,
    setting,
    to_dict,
    validate,
)
from mmchange_core.data.windows import DEFAULT_OVERLAP, TileGrid
from mmchange_core.distributed import DistributedContext, distributed_session, share_cpu_threads
from mmchange_core.errors import InputError, MMChangeError
from mmchange_core.inference.detector import DEFAULT_BATCH_SIZE, ChangeDetector, check_pair, logits_to_probability
from mmchange_core.inference.manifest import MANIFEST_NAME, RunManifest, file_stamp, fingerprint, finished
from mmchange_core.inference.sliding_window import WindowTimings
from mmchange_core.inference.stac import model_fields, require_stac, stac_item_path, write_pair_item
from mmchange_core.progress import ProgressCallback, report
from mmchange_core.io.cog import StagedRaster, stage_path
from mmchange_core.io.geo import GeoReference
from mmchange_core.io.images import IMAGE_SUFFIXES, Warn, image_size, is_tiff
from mmchange_core.io.outputs import IMAGE_OUTPUT_SUFFIXES, MASK_SUFFIXES, VECTOR_SUFFIXES, OutputPlan
from mmchange_core.io.raster import RasterSource, open_source
from mmchange_core.io.vector import write_change_polygons
from mmchange_core.reporting.overlay import write_overlay
from mmchange_core.io.hashing import cached_sha256_file

#: The folder-mode caption cache in the output folder; never a dataset's caption store's name.
PREDICT_CAPTION_CACHE = "mmchange_predict_captions.jsonl"
#: Window rows per resumable block of one large pair, unless the config says otherwise (``block_rows``).
DEFAULT_BLOCK_ROWS = 16
#: Finished row strips that may wait for the writer thread while the network runs.
WRITE_BEHIND = 4
#: Processes can finish their shares far apart (uneven pairs, slow disks): barriers wait up to a day.
BARRIER_TIMEOUT = datetime.timedelta(hours=24)
#: How often process 0 re-reads the manifest to show the progress of every process (seconds).
PROGRESS_POLL_SECONDS = 1.0
#: Test hook: a process kills itself (SIGKILL, as a crash would) once it has recorded this many units.
KILL_AFTER_UNITS_ENV = "MMCHANGE_TEST_KILL_AFTER_UNITS"


@dataclass
class PredictConfig:
    """Options of ``mmchange predict`` (the defaults are the CLI's)."""

    tile_size: int | None = setting(None, multiple_of(32), renamed_from=["tile"])
    """Window size in pixels (multiple of 32); ``None`` = the checkpoint's training crop."""
    overlap: int = setting(DEFAULT_OVERLAP, non_negative())
    """Minimum overlap between neighbouring windows, in pixels; logits are blended across it."""
    batch_size: int = setting(DEFAULT_BATCH_SIZE, positive())
    """Windows per network call."""
    threshold: float | None = setting(None, between(0, 1))
    """Decision threshold on the change probability; ``None`` = the checkpoint's (``meta['threshold']``)."""
    min_area: float = setting(0.0, non_negative())
    """Smallest polygon kept in ``--vector`` output: pixels, or squared CRS units for georeferenced input."""
    device: str = setting("auto", DEVICE)
    precision: str = setting("auto", PRECISION)
    compile: bool = False
    """``torch.compile`` the network (GPU; the compiled code is cached on disk for later runs)."""
    block_rows: int = setting(DEFAULT_BLOCK_ROWS, positive())
    """Window rows per block of one large pair: the unit that a killed run resumes from and that torchrun
    processes share (each border between processes recomputes about one window row)."""
    stac: bool = False
    """Also write a STAC Item per pair beside its mask (``<mask stem>.stac.json``: inputs, model, outputs); needs
    pystac (``pip install 'mmchange[cog]'``)."""


@dataclass
class PairOutputs:
    """Where one pair's results go; ``None`` skips that output."""

    mask: Path
    prob: Path | None = None
    overlay: Path | None = None
    vector: Path | None = None
    stac: Path | None = None
    """The STAC Item describing the others (``--stac``); not an output of the network, so not in :meth:`paths`."""

    def validate(self, *inputs: Path | None) -> None:
        """Check the file types, and that no output overwrites an input or another output, before any work."""
        self.plan(OutputPlan(inputs))

    def plan(self, plan: OutputPlan, owner: str | None = None) -> None:
        """Add these outputs (of the input named ``owner``) to ``plan``, which refuses bad suffixes and collisions."""
        plan.add(self.mask, "mask output", MASK_SUFFIXES, owner)
        for kind, path, suffixes in (("--prob", self.prob, MASK_SUFFIXES),
                                     ("--overlay", self.overlay, IMAGE_OUTPUT_SUFFIXES),
                                     ("--vector", self.vector, VECTOR_SUFFIXES)):
            if path is not None:
                plan.add(path, f"{kind} output", suffixes, owner)
        if self.stac is not None:
            plan.add(self.stac, "--stac item", (".json",), owner)

    def paths(self) -> dict[str, Path]:
        """The requested outputs by kind."""
        return {k: v for k, v in (("mask", self.mask), ("prob", self.prob), ("overlay", self.overlay),
                                   ("vector", self.vector)) if v is not None}


@dataclass
class PairResult:
    """What :func:`predict_pair` did for one pair."""

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

    @property
    def ok(self) -> bool:
        """True when every matched pair was predicted."""
        return not self.failed


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

    def open_stages() -> tuple[_Stages, dict[int, list]]:
        done = None if (restart or not track) else _resumable_blocks(manifest, unit, unit_fingerprint, blocks, outputs)
        stages = _Stages.open(outputs, height, width, create=done is None)
        if done is None and track:
            manifest.append(f"{unit}#stage", unit_fingerprint)
        return stages, done or {}

    opened = _on_main(ctx, open_stages, share=lambda both: (None, both[1]))
    done = opened[1]
    stages = opened[0] if ctx.is_main else _Stages.open(outputs, height, width, create=False)
    pending = [i for i in range(len(blocks)) if i not in done]
    mine = pending[ctx.rank * len(pending) // ctx.world_size:(ctx.rank + 1) * len(pending) // ctx.world_size]
    show_blocks = progress if (track and (ctx.enabled or len(blocks) > 1)) else None
    counter = _UnitProgress(show_blocks, "blocks", {blocks.unit(unit, i) for i in pending}, len(done), manifest, ctx)
    lock = threading.Lock()  # rasterio datasets are read by the prefetch and the writer threads
    writer = _BlockWriter(stages, blocks, detector.threshold, _validity(source_a, source_b, lock),
                          manifest if track else None, unit, unit_fingerprint, counter)
    timings = WindowTimings()
    error: MMChangeError | None = None
    try:
        with counter:
            for run in _consecutive(mine):
                rows = range(blocks.blocks[run[0]].start, blocks.blocks[run[-1]].stop)
                part = detector.stream_logits(_locked_reader(source_a, lock), _locked_reader(source_b, lock), grid,
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
            processes=ctx.world_size,
        )

    return _on_main(ctx, finish)


def predict_files(detector: ChangeDetector, path_a: str | Path, path_b: str | Path, outputs: PairOutputs, *,
                  min_area: float = 0.0, progress: ProgressCallback | None = None) -> PairResult:
    """Predict the pair of image files ``path_a`` (first date) and ``path_b`` (second date)."""
    path_a, path_b = Path(path_a), Path(path_b)
    outputs.validate(path_a, path_b)
    with open_source(path_a, detector.warn) as source_a, open_source(path_b, detector.warn) as source_b:
        check_pair(source_a, source_b, path_a, path_b)
        return predict_sources(detector, source_a, source_b, outputs, path_a=path_a, path_b=path_b,
                               min_area=min_area, progress=progress)


def load_detector(checkpoint: str | Path, config: PredictConfig, *, captions: str | Path | None = None,
                  caption_cache: str | Path | None = None, warn: Warn | None = None) -> ChangeDetector:
    """The :class:`ChangeDetector` that ``config`` describes (``None`` fields: the checkpoint's values)."""
    return ChangeDetector.from_options(checkpoint, config, captions=captions, caption_cache=caption_cache, warn=warn)


def pair_name(path_a: Path, path_b: Path) -> str:
    """The name of a pair's outputs: the common file stem, or ``<stem A>__<stem B>``."""
    return path_a.stem if path_a.stem == path_b.stem else f"{path_a.stem}__{path_b.stem}"


def default_mask_suffix(path: Path) -> str:
    """``.tif`` for TIFF inputs (GeoTIFF in gives GeoTIFF out), else ``.png``."""
    return ".tif" if is_tiff(path) else ".png"


def pair_outputs(path_a: Path, path_b: Path, output: Path, *, prob: Path | None = None,
                 overlay: Path | None = None, vector: Path | None = None, folders: bool = False,
                 stac: bool = False) -> PairOutputs:
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

    return PairOutputs(mask=mask, prob=place(prob, suffix), overlay=place(overlay, suffix),
                       vector=place(vector, ".geojson"), stac=stac_item_path(mask) if stac else None)


def predict_pair(checkpoint: str | Path, image_a: str | Path, image_b: str | Path, output: str | Path, *,
                 prob: str | Path | None = None, overlay: str | Path | None = None, vector: str | Path | None = None,
                 captions: str | Path | None = None, config: PredictConfig | None = None, warn: Warn | None = None,
                 progress: ProgressCallback | None = None, overwrite: bool = False) -> PairResult:
    """Predict the change between two image files with ``checkpoint`` (the ``mmchange predict A B`` call).

    ``output`` is the mask file (``.png`` or ``.tif``), or a folder to write ``<name>.png|.tif`` into.
    Resumable: finished blocks are recorded in the output folder's :data:`MANIFEST_NAME`, and a rerun
    of the same command skips them (the whole pair when its outputs are unchanged; ``overwrite``:
    start afresh). Under torchrun the processes share the blocks; each gets the same result.
    """
    image_a, image_b = Path(image_a), Path(image_b)
    if config is not None and config.stac:
        require_stac()
    outputs = pair_outputs(image_a, image_b, Path(output), prob=_opt_path(prob), overlay=_opt_path(overlay),
                           vector=_opt_path(vector), stac=config is not None and config.stac)
    manifest = RunManifest(outputs.mask.parent)
    plan = OutputPlan((image_a, image_b, Path(checkpoint), _opt_path(captions)))
    outputs.plan(plan)
    plan.add(manifest.path, "run manifest")
    with open_source(image_a, warn) as source_a, open_source(image_b, warn) as source_b:
        check_pair(source_a, source_b, image_a, image_b)  # fail before loading the model
        config = config or PredictConfig()
        validate(config)
        with distributed_session(config.device, backend="gloo", timeout=BARRIER_TIMEOUT) as ctx:
            share_cpu_threads(ctx)
            detector = load_detector(checkpoint, _rank_config(config, ctx), captions=captions,
                                     warn=warn if ctx.is_main else None)
            unit = outputs.mask.name

            def previous() -> tuple[str, dict[str, Any] | None]:
                fp = pair_fingerprint(detector, checkpoint, image_a, image_b, outputs, config.min_area)
                record = None if overwrite else manifest.latest().get(unit)
                return fp, (record if finished(record, fp, outputs.paths()) else None)

            fp, record = _on_main(ctx, previous)
            if record is not None:
                return _with_item(_skipped_result(record), outputs, checkpoint, detector, ctx)
            result = predict_sources(detector, source_a, source_b, outputs, path_a=image_a, path_b=image_b,
                                     min_area=config.min_area, progress=progress if ctx.is_main else None, ctx=ctx,
                                     manifest=manifest, unit_fingerprint=fp, block_rows=config.block_rows,
                                     restart=overwrite)
            result = _with_item(result, outputs, checkpoint, detector, ctx)
            if ctx.is_main:
                _record_pair(manifest, unit, fp, outputs, result)
            return result


def pair_fingerprint(detector: ChangeDetector, checkpoint: str | Path, path_a: Path, path_b: Path,
                     outputs: PairOutputs, min_area: float) -> str:
    """The fingerprint of one pair's outputs: both inputs, the checkpoint and every setting that changes them."""
    captions = None
    if detector.uses_text and detector.captions is not None:
        captions = detector.captions.pair(path_a, path_b)
    return fingerprint(image_a=cached_sha256_file(path_a), image_b=cached_sha256_file(path_b),
                       checkpoint=_checkpoint_sha(checkpoint), captions=captions,
                       settings=_output_settings(detector, outputs, min_area))


def _checkpoint_sha(checkpoint: str | Path) -> str:
    path = Path(checkpoint)
    return cached_sha256_file(path) if path.is_file() else str(checkpoint)


def _output_settings(detector: ChangeDetector, outputs: PairOutputs, min_area: float) -> dict[str, Any]:
    """The settings that change a pair's outputs (windows, batches, threshold, numerics, output files)."""
    return {"tile_size": detector.tile_size, "overlap": detector.overlap, "batch_size": detector.batch_size,
            "threshold": detector.threshold, "device": detector.device.type,
            "precision": str(getattr(detector.runner, "precision", "")), "min_area": min_area,
            "outputs": {kind: str(path) for kind, path in outputs.paths().items()}}


def _rank_config(config: PredictConfig, ctx: DistributedContext) -> PredictConfig:
    """The config with this process's device (``cuda:LOCAL_RANK`` under torchrun on GPUs)."""
    return replace(config, device=str(ctx.device)) if ctx.enabled else config


def _record_pair(manifest: RunManifest, unit: str, fp: str, outputs: PairOutputs, result: PairResult) -> None:
    manifest.append(unit, fp, stamps={kind: file_stamp(path) for kind, path in outputs.paths().items()},
                    result=to_dict(result))
    _unit_recorded()


def _with_item(result: PairResult, outputs: PairOutputs, checkpoint: str | Path, detector: ChangeDetector,
               ctx: DistributedContext) -> PairResult:
    """``--stac``: name the pair's STAC Item in ``result`` and (process 0) write it; a skipped pair keeps its Item."""
    if outputs.stac is None:
        return result
    result.stac = str(outputs.stac)
    if ctx.is_main and not (result.status == "skipped" and outputs.stac.is_file()):
        write_pair_item(result, outputs.stac, model_fields(checkpoint, detector))
    return result


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
                        protected: tuple[Path | None, ...] = (), stac: bool = False) -> list[PairOutputs]:
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
    planned = []
    for path_a, path_b in pairs:
        outputs = pair_outputs(path_a, path_b, output_dir, prob=prob_dir, overlay=overlay_dir, vector=vector_dir,
                               folders=True, stac=stac)
        outputs.plan(plan, owner=path_a.name)
        planned.append(outputs)
    return planned


def predict_folder(checkpoint: str | Path, dir_a: str | Path, dir_b: str | Path, output_dir: str | Path, *,
                   prob_dir: str | Path | None = None, overlay_dir: str | Path | None = None,
                   vector_dir: str | Path | None = None, captions: str | Path | None = None,
                   config: PredictConfig | None = None, warn: Warn | None = None,
                   progress: ProgressCallback | None = None, overwrite: bool = False) -> FolderResult:
    """Predict every pair of same-named images in ``dir_a`` and ``dir_b`` (the ``mmchange predict DIR_A DIR_B`` call).

    Masks go to ``output_dir/<stem>.png`` (``.tif`` for TIFF input); ``prob_dir``, ``overlay_dir``
    and ``vector_dir`` receive the optional outputs under the same names. A pair that fails (bad
    size, unreadable file...) is reported in ``failed`` and the others go on. Captions made on the fly
    are cached in ``output_dir/`` :data:`PREDICT_CAPTION_CACHE` so that a rerun does not caption again; a
    dataset's own caption store (``mmchange_captions.jsonl``) is never written, even when it is there.
    Resumable: finished pairs are recorded in ``output_dir/`` :data:`MANIFEST_NAME` and a rerun skips
    those whose inputs, checkpoint, settings and outputs are unchanged (``overwrite``: redo all).
    Under torchrun the pending pairs are shared between the processes (balanced by pixel count).
    ``progress`` receives ``windows`` events within each pair (one process) and ``pairs`` events.
    """
    start = time.perf_counter()
    dir_a, dir_b, output_dir = Path(dir_a), Path(dir_b), Path(output_dir)
    pairs, only_a, only_b = match_folders(dir_a, dir_b)
    if not pairs:
        raise InputError(f"no file names in common between {dir_a} and {dir_b}; files are matched by name")
    config = config or PredictConfig()
    validate(config)
    if config.stac:
        require_stac()
    planned = plan_folder_outputs(pairs, dir_a, dir_b, output_dir, prob_dir=_opt_path(prob_dir),
                                  overlay_dir=_opt_path(overlay_dir), vector_dir=_opt_path(vector_dir),
                                  protected=(Path(checkpoint), _opt_path(captions)), stac=config.stac)
    manifest = RunManifest(output_dir)
    with distributed_session(config.device, backend="gloo", timeout=BARRIER_TIMEOUT) as ctx:
        share_cpu_threads(ctx)
        detector = load_detector(checkpoint, _rank_config(config, ctx), captions=captions,
                                 caption_cache=output_dir / PREDICT_CAPTION_CACHE, warn=warn if ctx.is_main else None)
        files = sorted({path for pair in pairs for path in pair})
        hashes: dict[str, str | None] = {}
        for part in ctx.gather({str(p): _sha_or_none(p) for p in files[ctx.rank::ctx.world_size]}):
            hashes.update(part)
        ckpt = ctx.broadcast(_checkpoint_sha(checkpoint) if ctx.is_main else None)

        def plan() -> tuple[dict[int, dict[str, Any]], list[list[int]], list[str | None], _UnitProgress]:
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
            counter = _UnitProgress(progress, "pairs", {planned[i].mask.name for i in pending}, len(skipped),
                                    manifest, ctx)
            return skipped, _balance(pending, [_pixels(pairs[i][0]) for i in range(len(pairs))], ctx.world_size), \
                fps, counter

        skipped, shares, fps, counter = _on_main(ctx, plan, share=lambda p: (p[0], p[1], p[2], None))
        if counter is None:
            counter = _UnitProgress(None, "pairs", set(), 0, None, ctx)
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
    ordered = [_with_item(results[i] if i in results else _skipped_result(skipped[i]), planned[i], checkpoint,
                          detector, ctx)
               for i in range(len(pairs)) if i in results or i in skipped]
    units = {"total": len(pairs), "done": len(results), "skipped": len(skipped), "failed": len(failed)}
    return FolderResult(ordered, {pairs[i][0].name: failed[i] for i in sorted(failed)}, only_a, only_b,
                        time.perf_counter() - start, units=units, processes=ctx.world_size)


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


# --------------------------------------------------------------------------------------------------
# blocks, stages and the units of the run manifest


class PairBlocks:
    """A pair's blocks of ``block_rows`` window rows: the resumable units of one large pair and its split
    between processes. The image rows of block ``i`` are those its window rows emit, so the blocks
    partition the image."""

    def __init__(self, grid: TileGrid, block_rows: int) -> None:
        self.grid = grid
        self.blocks = [range(r, min(r + block_rows, grid.rows)) for r in range(0, grid.rows, block_rows)]
        self.starts = [grid.ys[b.start] for b in self.blocks]

    def __len__(self) -> int:
        return len(self.blocks)

    def image_rows(self, index: int) -> tuple[int, int]:
        """First and end image row of block ``index``."""
        block = self.blocks[index]
        return self.grid.ys[block.start], self.grid.finished_until(block.stop - 1)

    def index_of(self, y0: int) -> int:
        """The block holding image row ``y0``."""
        return bisect.bisect_right(self.starts, y0) - 1

    def unit(self, name: str, index: int) -> str:
        """The manifest unit of block ``index`` of the output ``name`` (its window rows: a new block size is new work)."""
        block = self.blocks[index]
        return f"{name}#rows{block.start}-{block.stop}"


class _Stages:
    """The staged mask, probability map and invalid-pixel rows of one pair's outputs (see io/cog.py)."""

    def __init__(self, mask: StagedRaster, prob: StagedRaster | None, invalid: StagedRaster) -> None:
        self.mask, self.prob, self.invalid = mask, prob, invalid

    @staticmethod
    def layout(outputs: PairOutputs) -> list[tuple[Path, str, type]]:
        """``(final path, part, dtype)`` of every stage."""
        layout: list[tuple[Path, str, type]] = [(outputs.mask, "", np.uint8), (outputs.mask, "invalid", np.uint8)]
        if outputs.prob is not None:
            layout.append((outputs.prob, "", np.float32 if is_tiff(outputs.prob) else np.uint8))
        return layout

    @classmethod
    def open(cls, outputs: PairOutputs, height: int, width: int, *, create: bool) -> _Stages:
        """Create the stages (process 0, a fresh start) or attach to them (the other processes, or a resume)."""
        opener = StagedRaster.create if create else StagedRaster.attach
        opened: list[StagedRaster] = []
        try:
            for path, part, dtype in cls.layout(outputs):
                opened.append(opener(path, height, width, dtype, part=part))
        except BaseException:
            for stage in opened:
                stage.detach()
            raise
        return cls(opened[0], opened[2] if len(opened) > 2 else None, opened[1])

    def all(self) -> list[StagedRaster]:
        return [s for s in (self.mask, self.prob, self.invalid) if s is not None]

    def flush(self) -> None:
        for stage in self.all():
            stage.flush()

    def detach(self) -> None:
        for stage in self.all():
            stage.detach()

    def abort(self) -> None:
        for stage in self.all():
            stage.abort()

    def finish(self, outputs: PairOutputs, georef: GeoReference | None, *, invalid: bool, source_a: RasterSource,
               source_b: RasterSource, min_area: float) -> tuple[dict[str, str], int | None]:
        """Write the overlay and polygons (from the staged mask), then the mask and probability files."""
        written: dict[str, str] = {}
        polygons = None
        if outputs.overlay is not None or outputs.vector is not None:
            changed = self.mask.read(0, self.mask.height) > 0  # the one whole-scene array: 1 byte per pixel
            if outputs.overlay is not None:
                written["overlay"] = str(write_overlay(outputs.overlay, source_a, source_b, changed))
            if outputs.vector is not None:
                polygons = write_change_polygons(outputs.vector, changed, georef, min_area)
                written["vector"] = str(outputs.vector)
        bad = self.invalid if invalid else None
        written["mask"] = str(self.mask.finish(georef if is_tiff(outputs.mask) else None, invalid=bad))
        if self.prob is not None:
            written["prob"] = str(self.prob.finish(georef if is_tiff(self.prob.final_path) else None, invalid=bad))
        self.invalid.abort()
        return {k: written[k] for k in ("mask", "prob", "overlay", "vector") if k in written}, polygons


def _resumable_blocks(manifest: RunManifest, unit: str, fp: str, blocks: PairBlocks,
                      outputs: PairOutputs) -> dict[int, list] | None:
    """Blocks recorded as finished (index -> ``[changed pixels, any invalid]``) in stages that are still on disk
    and were made for the same inputs and settings; ``None``: start afresh."""
    latest = manifest.latest()
    stage = latest.get(f"{unit}#stage")
    if not finished(stage, fp):
        return None
    height, width = blocks.grid.height, blocks.grid.width
    for path, part, dtype in _Stages.layout(outputs):
        staged = stage_path(path, part)
        if not staged.is_file() or staged.stat().st_size != height * width * np.dtype(dtype).itemsize:
            return None
    done = {}
    for index in range(len(blocks)):
        record = latest.get(blocks.unit(unit, index))
        if finished(record, fp) and record["seq"] > stage["seq"]:
            done[index] = [int(record.get("changed", 0)), bool(record.get("invalid", False))]
    return done


class _BlockWriter:
    """Turns finished logit rows into mask/probability rows in the stages and records each finished block."""

    def __init__(self, stages: _Stages, blocks: PairBlocks, threshold: float,
                 validity: Callable[[int, int], np.ndarray | None], manifest: RunManifest | None, unit: str,
                 fp: str | None, counter: _UnitProgress) -> None:
        self.stages, self.blocks, self.threshold, self.validity = stages, blocks, threshold, validity
        self.manifest, self.unit, self.fp, self.counter = manifest, unit, fp, counter
        self.changed: dict[int, list] = {}

    def write(self, y0: int, logits: np.ndarray) -> None:
        prob = logits_to_probability(logits)
        mask = np.empty(prob.shape, dtype=np.uint8)
        np.greater(prob, self.threshold, out=mask, casting="unsafe")
        mask *= 255
        index = self.blocks.index_of(y0)
        counts = self.changed.setdefault(index, [0, False])
        valid = self.validity(y0, len(prob))
        if valid is not None:
            mask[~valid] = 0
            self.stages.invalid.write(y0, (~valid).view(np.uint8))
            counts[1] = True
        self.stages.mask.write(y0, mask)
        if self.stages.prob is not None:
            as_float = self.stages.prob.dtype == np.float32
            self.stages.prob.write(y0, prob if as_float else np.rint(prob * 255.0).astype(np.uint8))
        counts[0] += int(np.count_nonzero(mask))
        if y0 + len(prob) == self.blocks.image_rows(index)[1]:  # the block's last rows: durable, then recorded
            self.stages.flush()
            if self.manifest is not None and self.fp is not None:
                self.manifest.append(self.blocks.unit(self.unit, index), self.fp, changed=counts[0],
                                     invalid=counts[1])
                _unit_recorded()
            self.counter.poll()


def _validity(source_a: RasterSource, source_b: RasterSource,
              lock: threading.Lock) -> Callable[[int, int], np.ndarray | None]:
    """Valid pixels of both dates' rows (``None``: all valid), read under ``lock``."""
    def valid(y0: int, height: int) -> np.ndarray | None:
        with lock:
            va, vb = source_a.read_valid(y0, height), source_b.read_valid(y0, height)
        if va is None or vb is None:
            return vb if va is None else va
        return va & vb
    return valid


def _locked_reader(source: RasterSource, lock: threading.Lock) -> Callable[[int, int], np.ndarray]:
    def read(y0: int, height: int) -> np.ndarray:
        with lock:
            return source.read_rows(y0, height)
    return read


def _consecutive(indices: list[int]) -> list[list[int]]:
    """``[0, 1, 2, 5, 6]`` -> ``[[0, 1, 2], [5, 6]]``: runs of blocks computed in one pass (no border recompute)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


T = TypeVar("T")


def _on_main(ctx: DistributedContext, work: Callable[[], T], share: Callable[[T], Any] | None = None) -> T:
    """Run ``work`` on process 0; the others get its result (through ``share``), or raise its error, too."""
    if not ctx.enabled:
        return work()
    if ctx.is_main:
        try:
            result = work()
        except MMChangeError as exc:
            ctx.broadcast((None, str(exc)))
            raise
        ctx.broadcast((share(result) if share else result, None))
        return result
    shared, message = ctx.broadcast(None)
    if message is not None:
        raise MMChangeError(message)
    return shared


class _UnitProgress:
    """Units finished by every process, counted from the manifest: process 0 reports them as ``task`` events
    (a thread re-reads the manifest's new lines when several processes work; no collective is needed)."""

    def __init__(self, progress: ProgressCallback | None, task: str, units: set[str], skipped: int,
                 manifest: RunManifest | None, ctx: DistributedContext) -> None:
        self.progress = progress if (ctx.is_main and manifest is not None) else None
        self.task, self.units, self.skipped, self.manifest = task, units, skipped, manifest
        self.seen: set[str] = set()
        self.offset = 0
        if self.progress is not None and manifest is not None and manifest.path.exists():
            self.offset = manifest.path.stat().st_size
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = (threading.Thread(target=self._watch, name="mmchange-progress", daemon=True)
                       if self.progress is not None and ctx.enabled else None)

    def __enter__(self) -> _UnitProgress:
        report(self.progress, self.task, 0, len(self.units), None, skipped=self.skipped)
        if self.thread is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join()
        self.poll()

    def _watch(self) -> None:
        while not self.stop.wait(PROGRESS_POLL_SECONDS):
            self.poll()

    def poll(self) -> None:
        """Count the units recorded since the last look and report when the count moved."""
        if self.progress is None or self.manifest is None:
            return
        with self.lock:
            try:
                with open(self.manifest.path, "rb") as handle:
                    handle.seek(self.offset)
                    data = handle.read()
            except OSError:
                return
            complete = data[:data.rfind(b"\n") + 1]
            self.offset += len(complete)
            last = None
            for line in complete.splitlines():
                try:
                    unit = json.loads(line).get("unit")
                except (ValueError, AttributeError):
                    continue
                if unit in self.units and unit not in self.seen:
                    self.seen.add(unit)
                    last = unit
            if last is not None:
                report(self.progress, self.task, len(self.seen), len(self.units), last, skipped=self.skipped)


_RECORDED = [0]


def _unit_recorded() -> None:
    """Count this process's recorded units; the test hook :data:`KILL_AFTER_UNITS_ENV` kills it like a crash."""
    _RECORDED[0] += 1
    limit = os.environ.get(KILL_AFTER_UNITS_ENV)
    if limit and _RECORDED[0] >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)
