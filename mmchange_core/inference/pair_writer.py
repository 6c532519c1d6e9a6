"""How one pair's outputs are written: where they go, and the resumable units of a large pair.

:class:`PairOutputs` names a pair's files; a pair is cut into :class:`PairBlocks` of window rows, which
stream into on-disk :class:`Stages` (see :mod:`mmchange_core.io.cog`) through the :class:`BlockWriter`,
which records each finished block in the run manifest so that a killed run resumes from it and
torchrun processes share them. :func:`on_main` and :class:`UnitProgress` are the few collectives and
the cross-process progress that predict needs.
"""

from __future__ import annotations

import bisect
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mmchange_core.data.windows import TileGrid
from mmchange_core.distributed import DistributedContext
from mmchange_core.errors import InputError, MMChangeError
from mmchange_core.inference.decision import DecisionRule
from mmchange_core.inference.manifest import RunManifest, finished
from mmchange_core.inference.summary import ChangeSummary, summarize_change
from mmchange_core.io.classes import ClassScheme
from mmchange_core.io.cog import StagedRaster, stage_path
from mmchange_core.io.geo import GeoReference
from mmchange_core.io.images import is_tiff
from mmchange_core.io.outputs import IMAGE_OUTPUT_SUFFIXES, MASK_SUFFIXES, VECTOR_SUFFIXES, OutputPlan
from mmchange_core.io.raster import RasterSource
from mmchange_core.io.vector import polygonize, polygonize_classes, write_polygons
from mmchange_core.progress import ProgressCallback, report
from mmchange_core.reporting.overlay import write_overlay

#: How often process 0 re-reads the manifest to show the progress of every process (seconds).
PROGRESS_POLL_SECONDS = 1.0
#: Test hook: a process kills itself (SIGKILL, as a crash would) once it has recorded this many units.
KILL_AFTER_UNITS_ENV = "MMCHANGE_TEST_KILL_AFTER_UNITS"


@dataclass
class PairOutputs:
    """Where one pair's results go; ``None`` skips that output."""

    mask: Path
    prob: Path | None = None
    overlay: Path | None = None
    vector: Path | None = None
    stac: Path | None = None
    """The STAC Item describing the others (``--stac``); not an output of the network, so not in :meth:`paths`."""
    colorbar: Path | None = None
    """The probability map drawn with a colour bar (``--prob-colorbar``); drawn from ``prob``, not in :meth:`paths`."""

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
        if self.colorbar is not None:
            plan.add(self.colorbar, "--prob-colorbar output", (".png",), owner)
        if self.stac is not None:
            plan.add(self.stac, "--stac item", (".json",), owner)

    def paths(self) -> dict[str, Path]:
        """The requested outputs by kind."""
        return {k: v for k, v in (("mask", self.mask), ("prob", self.prob), ("overlay", self.overlay),
                                   ("vector", self.vector)) if v is not None}



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


class StageSet:
    """The on-disk stages of one unit of work (see io/cog.py), created together and tagged with one token.

    One creation tags every stage with one random token, which each block record repeats: a resumed
    run trusts only the blocks recorded for the very stages on disk (:func:`resumable_blocks`).
    """

    def __init__(self, stages: Sequence[StagedRaster]) -> None:
        self.stages = list(stages)

    @property
    def token(self) -> str | None:
        """The token of these stages (``None``: untagged stages)."""
        return self.stages[0].token

    def flush(self) -> None:
        for stage in self.stages:
            stage.flush()

    def detach(self) -> None:
        for stage in self.stages:
            stage.detach()

    def abort(self) -> None:
        for stage in self.stages:
            stage.abort()


class Stages(StageSet):
    """The staged mask, probability map and invalid-pixel rows of one pair's outputs."""

    def __init__(self, mask: StagedRaster, prob: StagedRaster | None, invalid: StagedRaster) -> None:
        super().__init__([s for s in (mask, prob, invalid) if s is not None])
        self.mask, self.prob, self.invalid = mask, prob, invalid

    @staticmethod
    def layout(outputs: PairOutputs) -> list[tuple[Path, str, type]]:
        """``(final path, part, dtype)`` of every stage."""
        layout: list[tuple[Path, str, type]] = [(outputs.mask, "", np.uint8), (outputs.mask, "invalid", np.uint8)]
        if outputs.prob is not None:
            layout.append((outputs.prob, "", np.float32 if is_tiff(outputs.prob) else np.uint8))
        return layout

    @classmethod
    def open(cls, outputs: PairOutputs, height: int, width: int, *, create: bool) -> Stages:
        """Create the stages (process 0, a fresh start) or attach to them (the other processes, or a resume)."""
        opened = open_stage_set(cls.layout(outputs), height, width, create=create, name=outputs.mask)
        return cls(opened[0], opened[2] if len(opened) > 2 else None, opened[1])

    def finish(self, outputs: PairOutputs, georef: GeoReference | None, *, invalid: bool, source_a: RasterSource,
               source_b: RasterSource, min_area: float, captions: Sequence[str] | None = None,
               period: Sequence[str] | None = None, generated: str | None = None,
               classes: ClassScheme | None = None) -> tuple[dict[str, str], int | None, ChangeSummary]:
        """Summarise the staged mask and write the overlay and polygons from it, then the mask and probability
        files; returns the written files, the polygons written (``None`` without ``--vector``) and the summary
        (``captions``, ``period`` and ``generated`` as :func:`summarize_change` takes them). ``classes`` (a
        K-class network, see :func:`output_classes`): the staged mask is its class map, written with a colour
        table, summarised, drawn and polygonized by class.

        The stages are removed whether this succeeds or not (an error, a signal): a failed pair leaves none.
        """
        try:
            return self._finish(outputs, georef, invalid=invalid, source_a=source_a, source_b=source_b,
                                min_area=min_area, captions=captions, period=period, generated=generated,
                                classes=classes)
        except BaseException:
            self.abort()
            raise

    def _finish(self, outputs: PairOutputs, georef: GeoReference | None, *, invalid: bool, source_a: RasterSource,
                source_b: RasterSource, min_area: float, captions: Sequence[str] | None,
                period: Sequence[str] | None, generated: str | None,
                classes: ClassScheme | None) -> tuple[dict[str, str], int | None, ChangeSummary]:
        written: dict[str, str] = {}
        polygons = None
        if classes is None:
            changed = self.mask.read(0, self.mask.height) > 0  # the one whole-scene array: 1 byte per pixel
            traced = polygonize(changed) if changed.any() else []  # once, for the summary and --vector
        else:
            changed = self.mask.read(0, self.mask.height)  # the class map: 1 byte per pixel too
            traced = polygonize_classes(changed, classes)  # one class at a time
        summary = summarize_change(changed, georef, captions=captions, period=period, min_area=min_area,
                                   generated=generated, polygons=traced, classes=classes)
        if outputs.overlay is not None:
            written["overlay"] = str(write_overlay(outputs.overlay, source_a, source_b, changed, classes=classes))
        if outputs.vector is not None:
            polygons = write_polygons(outputs.vector, traced, georef, min_area, classes)
            written["vector"] = str(outputs.vector)
        del changed, traced
        bad = self.invalid if invalid else None
        written["mask"] = str(finish_mask(self.mask, georef if is_tiff(outputs.mask) else None, bad, classes))
        if self.prob is not None:
            written["prob"] = str(self.prob.finish(georef if is_tiff(self.prob.final_path) else None, invalid=bad))
        self.invalid.abort()
        return {k: written[k] for k in ("mask", "prob", "overlay", "vector") if k in written}, polygons, summary


def output_classes(decision: DecisionRule) -> ClassScheme | None:
    """The classes whose class map a mask output holds: the class file of a K-class network; ``None`` for
    binary networks (0/255 masks, with or without class names)."""
    return decision.classes if decision.multiclass else None


def finish_mask(stage: StagedRaster, georef: GeoReference | None, invalid: StagedRaster | None,
                classes: ClassScheme | None, tags: dict[str, str] | None = None) -> Path:
    """Finish a staged mask: as it is for binary networks; a class map (``classes``) gets the class colours (a
    palette PNG, or a GeoTIFF colour table) and the class names in its metadata, besides ``tags``."""
    if classes is None:
        return stage.finish(georef, invalid=invalid, **({"tags": tags} if tags is not None else {}))
    return stage.finish(georef, invalid=invalid, resampling="nearest", tags={**(tags or {}), **classes.raster_tags()},
                        colormap=classes.colour_table())


StageLayout = list[tuple[Path, str, type]]
"""``(final path, part, dtype)`` of every stage of one unit of work."""


def open_stage_set(layout: StageLayout, height: int, width: int, *, create: bool, name: Path) -> list[StagedRaster]:
    """Create (tagged with one new token) or attach to every stage of ``layout``; the stages of one unit of work.

    Stages of different creations are refused; on any error the ones created here are removed.
    """
    import secrets

    token = secrets.token_hex(16) if create else None
    opened: list[StagedRaster] = []
    try:
        for path, part, dtype in layout:
            if create:
                opened.append(StagedRaster.create(path, height, width, dtype, part=part, token=token))
            else:
                opened.append(StagedRaster.attach(path, height, width, dtype, part=part))
        if len({stage.token for stage in opened}) != 1:
            raise InputError(f"the stage files of {name} belong to different runs; "
                             f"run the command again with --overwrite")
    except BaseException:
        for stage in opened:
            if create:
                stage.abort()  # created here: removed, never left behind
            else:
                stage.detach()
        raise
    return opened


def resumable_blocks(manifest: RunManifest, unit: str, fp: str, blocks: PairBlocks,
                     outputs: PairOutputs | StageLayout) -> dict[int, list] | None:
    """Blocks recorded as finished (index -> ``[changed pixels, any invalid]``; changed pixels is a list, one count
    per comparison, for a series) in the stages on disk (of a pair's ``outputs``, or any stage layout);
    ``None``: start afresh (the stages are then created anew, clearing any stale ones).

    A block counts only when its record (same inputs and settings: ``fp``) names the token that every
    stage file on disk carries (:func:`~mmchange_core.io.cog.stage_token`): the record was appended
    after the block's rows were durable in these very files. Stages that no record vouches for (left
    by a run killed before its first block, or by an older version, or made for other inputs), a
    lost or torn record, or stage files of different creations are never trusted.
    """
    from mmchange_core.io.cog import stage_token

    height, width = blocks.grid.height, blocks.grid.width
    tokens = {stage_token(stage_path(path, part), height * width * np.dtype(dtype).itemsize)
              for path, part, dtype in (Stages.layout(outputs) if isinstance(outputs, PairOutputs) else outputs)}
    token = tokens.pop() if len(tokens) == 1 else None
    if token is None:
        return None
    units = {blocks.unit(unit, index): index for index in range(len(blocks))}
    done: dict[int, list] = {}
    for record in manifest.records():
        index = units.get(record["unit"])
        if index is not None and record.get("stage") == token and finished(record, fp):
            changed = record.get("changed", 0)
            changed = [int(v) for v in changed] if isinstance(changed, list) else int(changed)
            done[index] = [changed, bool(record.get("invalid", False))]
    return done or None


class BlockRecorder:
    """Writes finished rows into a unit's stages and records each block once its last rows are durable, so a
    killed run resumes from it; ``changed`` holds ``[changed pixels, any invalid]`` per block of this process."""

    def __init__(self, stages: StageSet, blocks: PairBlocks, manifest: RunManifest | None, unit: str,
                 fp: str | None, counter: UnitProgress) -> None:
        self.stages, self.blocks = stages, blocks
        self.manifest, self.unit, self.fp, self.counter = manifest, unit, fp, counter
        self.changed: dict[int, list] = {}

    def write(self, y0: int, logits: np.ndarray) -> None:
        """Rows ``y0 ..`` of blended logits."""
        raise NotImplementedError

    def rows_written(self, y0: int, height: int, index: int) -> None:
        """After rows ``y0 .. y0 + height`` of block ``index``: the block's last rows are flushed, then recorded."""
        if y0 + height != self.blocks.image_rows(index)[1]:
            return
        self.stages.flush()
        if self.manifest is not None and self.fp is not None:
            changed, invalid = self.changed[index]
            self.manifest.append(self.blocks.unit(self.unit, index), self.fp, changed=changed, invalid=invalid,
                                 stage=self.stages.token)
            unit_recorded()
        self.counter.poll()


class BlockWriter(BlockRecorder):
    """Turns finished logit rows into mask/probability rows in a pair's stages and records each finished block.

    ``decision`` (the detector's :class:`DecisionRule`) makes the rows: the change probability, and the mask as
    0/255 (binary) or the class file's values (K-class)."""

    def __init__(self, stages: Stages, blocks: PairBlocks, decision: DecisionRule,
                 validity: Callable[[int, int], np.ndarray | None], manifest: RunManifest | None, unit: str,
                 fp: str | None, counter: UnitProgress) -> None:
        super().__init__(stages, blocks, manifest, unit, fp, counter)
        self.stages: Stages = stages
        self.decision, self.validity = decision, validity

    def write(self, y0: int, logits: np.ndarray) -> None:
        """Rows ``y0 ..`` of blended logits (``[h, W]``; K-class networks ``[K, h, W]``)."""
        prob, classes = self.decision.decide(logits)
        mask = self.decision.values(classes)
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
        self.rows_written(y0, len(prob), index)


def validity_reader(sources: Sequence[RasterSource],
                    lock: threading.Lock) -> Callable[[int, int], np.ndarray | None]:
    """Pixels valid on every date's rows (``None``: all valid), read under ``lock``."""
    def valid(y0: int, height: int) -> np.ndarray | None:
        with lock:
            masks = [source.read_valid(y0, height) for source in sources]
        known = [m for m in masks if m is not None]
        if not known:
            return None
        return np.logical_and.reduce(known) if len(known) > 1 else known[0]
    return valid


def locked_reader(source: RasterSource, lock: threading.Lock) -> Callable[[int, int], np.ndarray]:
    def read(y0: int, height: int) -> np.ndarray:
        with lock:
            return source.read_rows(y0, height)
    return read


def consecutive_runs(indices: list[int]) -> list[list[int]]:
    """``[0, 1, 2, 5, 6]`` -> ``[[0, 1, 2], [5, 6]]``: runs of blocks computed in one pass (no border recompute)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def run_blocks(ctx: DistributedContext, blocks: PairBlocks, unit: str, *,
               open_stages: Callable[[bool], StageSet], resume: Callable[[], dict[int, list] | None],
               writer_for: Callable[[StageSet, UnitProgress], BlockRecorder],
               stream: Callable[[Callable[[int, np.ndarray], None], range, ProgressCallback | None], Any],
               manifest: RunManifest | None, track: bool, progress: ProgressCallback | None
               ) -> tuple[StageSet, dict[int, list], list[int], dict[str, float]]:
    """Compute the blocks of one unit of work (a pair, a series) not finished before, shared between processes.

    Process 0 finds the blocks a resumed run may trust (``resume``; ``None``: start afresh) and creates or
    attaches to the stages (``open_stages(create)``); the others attach. Each process streams its share of
    the pending blocks, in runs of consecutive blocks (``stream(write, window_rows, progress)`` returns
    its timings), through the writer ``writer_for`` makes. Every process reaches the gather, so an error
    in one is raised in all, after process 0 removed the stages. Returns the stages, every finished block
    (``[changed, any invalid]`` by index, from all processes and earlier runs), the blocks computed now
    and the summed timings (``windows``, ``read``, ``network``, ``write``).
    """
    def first_open() -> tuple[StageSet, dict[int, list]]:
        done = resume()
        return open_stages(done is None), done or {}

    opened = on_main(ctx, first_open, share=lambda both: (None, both[1]))
    done = opened[1]
    stages = opened[0] if ctx.is_main else open_stages(False)
    pending = [i for i in range(len(blocks)) if i not in done]
    mine = pending[ctx.rank * len(pending) // ctx.world_size:(ctx.rank + 1) * len(pending) // ctx.world_size]
    show_blocks = progress if (track and (ctx.enabled or len(blocks) > 1)) else None
    counter = UnitProgress(show_blocks, "blocks", {blocks.unit(unit, i) for i in pending}, len(done), manifest, ctx)
    writer = writer_for(stages, counter)
    timings = dict.fromkeys(("windows", "read", "network", "write"), 0.0)
    error: MMChangeError | None = None
    try:
        with counter:
            for run in consecutive_runs(mine):
                rows = range(blocks.blocks[run[0]].start, blocks.blocks[run[-1]].stop)
                part = stream(writer.write, rows, None if ctx.enabled else progress)
                for name in timings:
                    timings[name] += getattr(part, name)
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
    for report_ in reports:
        done.update({int(k): v for k, v in report_["changed"].items()})
    return stages, done, pending, timings


T = TypeVar("T")


def on_main(ctx: DistributedContext, work: Callable[[], T], share: Callable[[T], Any] | None = None) -> T:
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


class UnitProgress:
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

    def __enter__(self) -> UnitProgress:
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
        from mmchange_core.inference.manifest import parse_record
        from mmchange_core.io.atomic import open_existing

        with self.lock:
            try:
                fd = open_existing(self.manifest.path, "run manifest")  # no link followed, no FIFO waited on
            except (OSError, MMChangeError):
                return
            with os.fdopen(fd, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
            complete = data[:data.rfind(b"\n") + 1]
            self.offset += len(complete)
            last = None
            for line in complete.splitlines():
                record = parse_record(line)  # a torn or glued line fails its check
                unit = record["unit"] if record is not None else None
                if unit in self.units and unit not in self.seen:
                    self.seen.add(unit)
                    last = unit
            if last is not None:
                report(self.progress, self.task, len(self.seen), len(self.units), last, skipped=self.skipped)


_RECORDED = [0]


def unit_recorded() -> None:
    """Count this process's recorded units; the test hook :data:`KILL_AFTER_UNITS_ENV` kills it like a crash."""
    _RECORDED[0] += 1
    limit = os.environ.get(KILL_AFTER_UNITS_ENV)
    if limit and _RECORDED[0] >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)
