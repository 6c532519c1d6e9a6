"""int8 on the CPU that a user can trust: a calibrated static-int8 export, its accuracy certificate, a disk cache.

``--precision int8`` (every command that runs a detector, and :meth:`ChangeDetector.load
<mmchange_core.inference.detector.ChangeDetector.load>`) runs onnxruntime's static int8 quantisation of the
checkpoint's export, calibrated on windows of real pairs: the checkpoint's training split (the dataset its
metadata records), or the user's own images (``--calibrate DATASET``). It is made once (:func:`make_int8`):

1. windows of the calibration pairs calibrate the quantisation (:func:`calibration_batches`);
2. the certificate (:class:`~mmchange_core.models.int8_record.Int8Certificate`) is measured on windows
   kept out of calibration: of a labelled split other than the calibration split when the dataset has one
   (``val``, else ``test``: mask agreement with the fp32 network and the F1 of both), else of the
   calibration pairs' other windows (agreement only);
3. the export and its record go into the int8 cache (:class:`Int8Cache`, ``$MMCHANGE_CACHE/int8``), or
   beside the checkpoint when ``train`` makes it (``best.int8.onnx``).

:func:`select_int8` finds the export a detector runs: the one beside the checkpoint, else a cache entry of
this checkpoint (and calibration data, when given), else it makes one. An export whose record does not
match its bytes (corrupt) or whose checkpoint changed (stale) is never used: cache entries are removed and
made again. Below the documented bound (:data:`~mmchange_core.models.int8_record.BOUND_AGREEMENT`,
:data:`~mmchange_core.models.int8_record.BOUND_F1_DROP`) an export is refused in one line with its figures,
unless ``--accept-int8-drift``. ``--precision auto`` on a CPU runs a certified export within the bound when
one exists (never making one), fp32 otherwise.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from mmchange_core.data.dataset import read_labelled_pair
from mmchange_core.data.layouts import DatasetLayout, ImagePair, detect_layout, resolve_dataset_root
from mmchange_core.data.normalize import normalize_batch
from mmchange_core.data.windows import TileGrid, iter_date_batches
from mmchange_core.device import resolve_device
from mmchange_core.environment import __version__, cache_home
from mmchange_core.errors import InputError, OutputError
from mmchange_core.inference.decision import DecisionRule
from mmchange_core.inference.onnx_runner import OnnxRunner
from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.io.hashing import update_with_stamps
from mmchange_core.io.raster import read_images
from mmchange_core.metrics import ConfusionStats, confusion_stats, f1
from mmchange_core.models.checkpoint import CheckpointMeta
from mmchange_core.models.export import import_onnx_module
from mmchange_core.models.int8_record import (
    INT8_ONNX_SUFFIX,
    Int8Certificate,
    Int8RecordError,
    int8_files,
    read_int8_record,
    record_of,
    write_int8_record,
)
from mmchange_core.text.features import checkpoint_text_provider

#: Windows that calibrate the quantisation, and at most this many held-out windows measure the certificate.
CALIBRATION_WINDOWS = 32
CERTIFY_WINDOWS = 64
#: Environment variable of the int8 cache's size limit in GB (default :data:`DEFAULT_LIMIT_GB`).
LIMIT_ENV = "MMCHANGE_INT8_CACHE_GB"
DEFAULT_LIMIT_GB = 4.0
#: Bump when the exports made for the same checkpoint and calibration change.
CACHE_FORMAT = 1
#: Temporary files older than this (seconds) are left-overs of a killed process and are removed.
STALE_TEMP_SECONDS = 3600
FP32_SUFFIX = ".fp32.onnx"
_ENTRY = re.compile(r"[0-9a-f]{64}(" + re.escape(INT8_ONNX_SUFFIX) + "|" + re.escape(FP32_SUFFIX) + ")")

Say = Callable[[str], None]
Feed = dict[str, np.ndarray]


@dataclass
class Int8Model:
    """A certified int8 export a detector can run: the ``.onnx`` file, its certificate and where it came from."""

    path: Path
    certificate: Int8Certificate
    origin: str
    """``beside the checkpoint``, ``cache`` or ``made now``."""
    export: Any = None
    """What the export measured when it was made now (:class:`~mmchange_core.models.export.ExportResult`)."""

    def describe(self) -> str:
        """One line for messages: the file and the certificate's figures."""
        return f"{self.path} ({self.origin}): {self.certificate.figures()}"


# --------------------------------------------------------------------------------------------------
# calibration and held-out windows


def calibration_batches(meta: CheckpointMeta, dataset: str | Path, split: str = "train", *, windows: int = 32,
                        captions: str | None = None) -> tuple[list[Feed], int]:
    """Up to ``windows`` normalised tile-size windows of ``split``'s pairs as onnxruntime feeds (one window each),
    taken evenly across the pairs; text models get the pairs' caption embeddings. Returns (feeds, pairs used)."""
    layout = detect_layout(resolve_dataset_root(dataset))
    pairs = layout.pairs(split)
    samples = sample_windows(meta, layout, pairs, windows, captions=captions)
    return [feed for feed, _ in samples], min(len(pairs), windows)


def _spread(items: Sequence[Any], count: int) -> list[Any]:
    """At most ``count`` items taken evenly from ``items`` (all of them when there are fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[(i * len(items)) // count] for i in range(count)]


def sample_windows(meta: CheckpointMeta, layout: DatasetLayout, pairs: Sequence[ImagePair], count: int, *,
                   captions: str | None = None, labelled: bool = False) -> list[tuple[Feed, np.ndarray | None]]:
    """Up to ``count`` tile-size windows of ``pairs``, spread evenly over the pairs and over each pair's windows,
    as normalised feeds, with the label window (bool change or class indices, inside the image) where ``labelled``.

    Text models get each pair's caption embeddings from the caption store; a text model whose checkpoint
    records no text pipeline is refused in one line (its pairs cannot be captioned).
    """
    if meta.model.uses_text and not meta.text_description:
        raise InputError("this text model records no text pipeline (an authors' checkpoint converted by mmchange), "
                         "so its calibration pairs cannot be captioned for int8; run it with --precision fp32, or "
                         "fine-tune it with 'mmchange train --weights' to record one")
    chosen = _spread(pairs, count)
    provider = checkpoint_text_provider(meta, layout.root, captions, chosen)
    emb_a = emb_b = None
    if provider is not None:
        emb_a, emb_b = provider(chosen)
    per_pair = -(-count // len(chosen))
    norm = meta.normalization
    samples: list[tuple[Feed, np.ndarray | None]] = []
    for i, pair in enumerate(chosen):
        label = None
        if labelled:
            image_a, image_b, label = read_labelled_pair(pair, meta.imagery, meta.classes)
        else:
            image_a, image_b = read_images([pair.image_a, pair.image_b], None, meta.imagery)
        grid = TileGrid.plan(image_a.shape[0], image_a.shape[1], meta.tile_size, 0)
        take = set(_spread(range(len(grid)), per_pair))
        readers = [lambda y, h, a=image_a: a[y:y + h], lambda y, h, b=image_b: b[y:y + h]]
        if label is not None:
            readers.append(lambda y, h, t=label.astype(np.uint8)[..., None]: t[y:y + h])
        for batch in iter_date_batches(grid, readers, 1):
            r, c = batch.rows[0], batch.cols[0]
            if r * grid.columns + c not in take:
                continue
            feed = {name: normalize_batch(torch.from_numpy(arr).permute(0, 3, 1, 2), norm.mean, norm.std).numpy()
                    for name, arr in (("image_a", batch.images[0]), ("image_b", batch.images[1]))}
            if emb_a is not None and emb_b is not None:
                feed["text_a"] = np.asarray(emb_a[i], dtype=np.float32).reshape(1, -1)
                feed["text_b"] = np.asarray(emb_b[i], dtype=np.float32).reshape(1, -1)
            target = None
            if label is not None:  # the window's pixels inside the image (reflection padding is not scored)
                h, w = grid.strip_height(r), min(grid.tile_w, grid.width - grid.xs[c])
                target = batch.images[2][0, :h, :w, 0]
            samples.append((feed, target))
            if len(samples) >= count:
                return samples
    return samples


def calibration_reader(feeds: list[Feed]) -> Any:
    """An onnxruntime ``CalibrationDataReader`` over ``feeds``."""
    import_onnx_module("onnxruntime", "--quantize int8")
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items: Iterator[Feed] = iter(feeds)

        def get_next(self) -> Feed | None:
            return next(self._items, None)

    return _Reader()


def held_out_split(layout: DatasetLayout, calibration_split: str) -> str | None:
    """The labelled split the certificate is measured on: ``val``, else ``test``, other than the calibration
    split and with a label for every pair; None when there is none (unlabelled or unsplit data)."""
    for split in ("val", "test"):
        if split != calibration_split and split in layout.splits and layout.splits[split] \
                and all(pair.label is not None for pair in layout.splits[split]):
            return split
    return None


def calibration_key(layout: DatasetLayout, split: str, windows: int, captions: str | None) -> str:
    """sha256 of the calibration data's identity: every pair file's path, size and modification time, the split,
    the window count and the caption store (a changed image gives a new key, hence a new export)."""
    digest = hashlib.sha256(f"int8-calibration|{split}|{windows}|{captions or ''}".encode())
    for name in sorted(layout.splits):
        digest.update(f"|{name}".encode())
        for pair in layout.splits[name]:
            if not update_with_stamps(digest, (pair.image_a, pair.image_b, pair.label)):
                raise InputError(f"{pair.image_a} or its pair's other files cannot be read; check {layout.origin}")
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """The software an int8 export depends on (part of its cache key)."""
    found = {"mmchange": __version__, "torch": torch.__version__}
    for name in ("onnx", "onnxruntime"):
        found[name] = getattr(import_onnx_module(name, "--precision int8"), "__version__", "?")
    return found


# --------------------------------------------------------------------------------------------------
# the certificate


def _window_logits(runner: Any, feed: Feed) -> tuple[np.ndarray, float]:
    tensors = [torch.from_numpy(feed[name]) if name in feed else None
               for name in ("image_a", "image_b", "text_a", "text_b")]
    start = time.perf_counter()
    logits = runner.logits(*tensors)
    return logits[0].float().cpu().numpy(), time.perf_counter() - start


def certify(network: Any, int8_path: Path, meta: CheckpointMeta, windows: Sequence[tuple[Feed, np.ndarray | None]],
            *, held_out: str, calibration: str, calibration_windows: int, checkpoint_sha256: str,
            key: str) -> Int8Certificate:
    """Measure the int8 export at ``int8_path`` against the plain fp32 torch ``network`` on held-out ``windows``:
    the share of pixels whose change decision agrees, and with labels the F1 of both."""
    reference = InferenceRunner(network, "cpu", "fp32", channels_last=False, fold_bn=False, cuda_graphs=False)
    candidate = OnnxRunner(int8_path, "cpu")
    rule = DecisionRule(meta.resolve_threshold(None), meta.classes)
    agree = total = 0
    max_diff = 0.0
    stats_fp32, stats_int8 = ConfusionStats(), ConfusionStats()
    times_fp32: list[float] = []
    times_int8: list[float] = []
    labelled = all(target is not None for _, target in windows)
    with torch.no_grad():
        for feed, target in windows:
            logits_fp32, t_fp32 = _window_logits(reference, feed)
            logits_int8, t_int8 = _window_logits(candidate, feed)
            times_fp32.append(t_fp32)
            times_int8.append(t_int8)
            rows = (lambda x: x[0]) if not rule.multiclass else (lambda x: x)
            prob_fp32, index_fp32 = rule.decide(rows(logits_fp32))
            prob_int8, index_int8 = rule.decide(rows(logits_int8))
            if target is not None:  # the pixels inside the image
                h, w = target.shape
                prob_fp32, index_fp32 = prob_fp32[:h, :w], index_fp32[:h, :w]
                prob_int8, index_int8 = prob_int8[:h, :w], index_int8[:h, :w]
                stats_fp32 = stats_fp32 + confusion_stats(index_fp32 > 0, target > 0)
                stats_int8 = stats_int8 + confusion_stats(index_int8 > 0, target > 0)
            agree += int(((index_fp32 > 0) == (index_int8 > 0)).sum())
            total += index_fp32.size
            max_diff = max(max_diff, float(np.abs(prob_fp32 - prob_int8).max()))
    return Int8Certificate(
        checkpoint_sha256=checkpoint_sha256, calibration=calibration, calibration_windows=calibration_windows,
        held_out=held_out, labelled=labelled,
        windows=len(windows), pixels=total, agreement=agree / max(total, 1),
        f1_fp32=f1(stats_fp32) if labelled else None, f1_int8=f1(stats_int8) if labelled else None,
        max_abs_prob_diff=max_diff, seconds_fp32=statistics.median(times_fp32) if times_fp32 else 0.0,
        seconds_int8=statistics.median(times_int8) if times_int8 else 0.0, calibration_key=key,
        versions=versions(), made=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


# --------------------------------------------------------------------------------------------------
# making an export


@dataclass(frozen=True)
class Calibration:
    """Where the calibration windows come from: a dataset (folder or pair list), its split, how many windows."""

    dataset: str | Path
    split: str = "train"
    windows: int = CALIBRATION_WINDOWS
    captions: str | None = None

    @functools.cached_property
    def layout(self) -> DatasetLayout:
        """The dataset, detected once (the cache key, the calibration and the certificate read it)."""
        return detect_layout(resolve_dataset_root(self.dataset))

    @functools.cached_property
    def key(self) -> str:
        """The calibration data's identity (:func:`calibration_key`), stat'ed once."""
        return calibration_key(self.layout, self.split, self.windows, self.captions)


def make_int8(model: Any, calibration: Calibration, output: str | Path, *, say: Say | None = None,
              cache: Int8Cache | None = None) -> Int8Model:
    """Make the certified int8 export of ``model`` (a :class:`~mmchange_core.inference.backends.ModelFile` of a
    torch checkpoint) calibrated on ``calibration``, and write it with its record to ``output`` (``.int8.onnx``).

    The fp32 export it quantises is kept in ``cache`` (the slow step: tens of seconds to minutes), so another
    calibration of the same checkpoint only quantises and certifies again."""
    from mmchange_core.models.export import quantize_export

    say = say or (lambda message: None)
    cache = cache or Int8Cache()
    if model.backend.name != "torch":
        raise InputError(f"{model.spec} is already an ONNX model; int8 exports are made from the torch checkpoint "
                         f"it was exported from")
    meta: CheckpointMeta = model.meta
    layout = calibration.layout
    key = calibration.key
    split = held_out_split(layout, calibration.split)
    pairs = layout.pairs(calibration.split)
    say(f"making the int8 export of {model.spec}: calibrating on {calibration.windows} windows of "
        f"{layout.origin} ({calibration.split}), certifying on "
        + (f"its '{split}' split" if split else "windows kept out of calibration") + " (once; then cached)")
    if split is not None:
        feeds = [feed for feed, _ in sample_windows(meta, layout, pairs, calibration.windows,
                                                    captions=calibration.captions)]
        held = sample_windows(meta, layout, layout.pairs(split), CERTIFY_WINDOWS, captions=calibration.captions,
                              labelled=True)
        held_text = f"{len(held)} windows of the labelled '{split}' split of {layout.origin}"
    else:  # every other window calibrates; the ones between are held out
        windows = sample_windows(meta, layout, pairs, 2 * calibration.windows, captions=calibration.captions)
        feeds, held = [feed for feed, _ in windows[0::2]], windows[1::2][:CERTIFY_WINDOWS]
        held_text = f"{len(held)} windows of {layout.origin} kept out of calibration"
    if not feeds or not held:
        raise InputError(f"{layout.origin} has too few windows to calibrate and certify int8 (a pair gives one "
                         f"window per {meta.tile_size}x{meta.tile_size} tile); give more image pairs with --calibrate")
    output = Path(output)
    network, _ = model.network()
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=_temp_parent(output)) as tmp:
        made = Path(tmp) / f"model{INT8_ONNX_SUFFIX}"
        result = cache.with_fp32_export(model, lambda fp32: quantize_export(
            fp32, made, "int8", calibration=calibration_reader(feeds), timed=False), say)
        certificate = certify(network, made, meta, held, held_out=held_text,
                              calibration=f"{len(feeds)} windows of '{calibration.split}' of {layout.origin}",
                              calibration_windows=len(feeds), checkpoint_sha256=model.sha256(), key=key)
        os.replace(made, output)
    write_int8_record(output, certificate)
    result.path = output
    return Int8Model(output, certificate, "made now", result)


def _temp_parent(output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    return output.parent


# --------------------------------------------------------------------------------------------------
# the cache


def default_cache_dir() -> Path:
    """The int8 cache's folder, ``<cache_home()>/int8`` (``$MMCHANGE_CACHE/int8``, ``~/.cache/mmchange/int8``)."""
    return cache_home() / "int8"


def default_limit() -> int:
    """The int8 cache's size limit in bytes: ``$MMCHANGE_INT8_CACHE_GB`` GB, else :data:`DEFAULT_LIMIT_GB`."""
    text = os.environ.get(LIMIT_ENV, "").strip()
    try:
        gb = float(text) if text else DEFAULT_LIMIT_GB
        if not gb > 0:
            raise ValueError(text)
    except ValueError:
        raise InputError(f"{LIMIT_ENV}={text!r} is not a size in GB; set it to a positive number such as 4") from None
    return int(gb * 1e9)


class Int8Cache:
    """int8 exports keyed by checkpoint, calibration data and versions: ``KEY.int8.onnx`` + ``KEY.int8.json``.

    Entries are made under a per-key file lock, so processes that want the same export make it once (the
    others wait and use it); both files are written atomically, the record first (a reader that sees the new
    record with the old bytes finds them corrupt, never a whole stale entry). Before a new entry is
    stored, entries least recently used are removed until the folder fits in ``limit`` bytes.
    """

    def __init__(self, folder: str | Path | None = None, limit: int | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.limit = default_limit() if limit is None else int(limit)

    @staticmethod
    def key(checkpoint_sha256: str, calibration_key: str) -> str:
        """The entry key of a checkpoint calibrated on the data of ``calibration_key`` with today's versions."""
        text = f"int8-v{CACHE_FORMAT}|{checkpoint_sha256}|{calibration_key}|{sorted(versions().items())}"
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}{INT8_ONNX_SUFFIX}"

    def lock(self, key: str) -> FileLock:
        locks = self.folder / "locks"
        try:
            locks.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot use the int8 cache folder {self.folder} ({exc.strerror or exc}); set "
                              f"$MMCHANGE_CACHE to a writable folder") from None
        return FileLock(str(locks / f"{key}.lock"))

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes of both files, ``.onnx`` path) of every entry; removes old temporaries."""
        found = []
        if not self.folder.is_dir():
            return found
        now = time.time()
        for path in self.folder.iterdir():
            try:
                st = path.stat()
            except OSError:
                continue
            if path.name.startswith(".") and now - st.st_mtime > STALE_TEMP_SECONDS:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            elif _ENTRY.fullmatch(path.name):
                record = record_of(path)
                size = st.st_size + (record.stat().st_size if path.name.endswith(INT8_ONNX_SUFFIX) and
                                     record.exists() else 0)
                found.append((st.st_mtime, size, path))
        return found

    def usage(self) -> int:
        """Bytes the entries take now."""
        return sum(size for _, size, _ in self.entries())

    def read(self, key: str, checkpoint_sha256: str, say: Say) -> Int8Model | None:
        """The entry ``key`` if it is whole and made from this checkpoint; a corrupt or stale one is removed."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            certificate = read_int8_record(path, checkpoint_sha256)
        except Int8RecordError as exc:
            what = "stale" if exc.stale else "corrupt"
            say(f"the cached int8 export is {what} ({exc}); it is removed and made again")
            self.remove(path)
            return None
        now = time.time()
        os.utime(path, (now, now))  # recently used
        return Int8Model(path, certificate, "cache")

    def find(self, checkpoint_sha256: str) -> Int8Model | None:
        """The most recently used whole entry of this checkpoint made with today's versions, any calibration: one
        within the bound if there is one."""
        today = versions()
        found = []
        for _, _, path in sorted(self.entries(), reverse=True):
            if not path.name.endswith(INT8_ONNX_SUFFIX):
                continue
            try:
                certificate = read_int8_record(path, checkpoint_sha256)
            except Int8RecordError:
                continue
            if certificate.versions == today:
                found.append(Int8Model(path, certificate, "cache"))
        return next((m for m in found if m.certificate.within_bound), found[0] if found else None)

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        if path.name.endswith(INT8_ONNX_SUFFIX):
            record_of(path).unlink(missing_ok=True)

    def fp32_path(self, checkpoint_sha256: str) -> Path:
        """Where the fp32 export of a checkpoint is kept (made with today's versions)."""
        key = hashlib.sha256(f"fp32|{checkpoint_sha256}|{sorted(versions().items())}".encode()).hexdigest()
        return self.folder / f"{key}{FP32_SUFFIX}"

    def with_fp32_export(self, model: Any, use: Callable[[Path], Any], say: Say) -> Any:
        """``use(path)`` of the fp32 export of ``model``'s checkpoint, exported once per checkpoint and versions
        and kept here; an entry that cannot be read is exported again."""
        from mmchange_core.errors import CheckpointError
        from mmchange_core.models.export import export_model

        path = self.fp32_path(model.sha256())
        key = path.name[:64]
        with self.lock(key):
            for attempt in (0, 1):
                if not path.exists():
                    say(f"exporting {model.spec} to ONNX (once per checkpoint; kept in {self.folder})")
                    network, meta = model.network()
                    self.make_room(0)
                    export_model(network, meta, path, source=Path(model.spec).name)
                try:
                    now = time.time()
                    os.utime(path, (now, now))
                    return use(path)
                except CheckpointError:  # damaged: export again once
                    if attempt:
                        raise
                    path.unlink(missing_ok=True)

    def make_room(self, incoming: int) -> None:
        """Remove entries, least recently used first, until ``incoming`` more bytes fit in the limit."""
        entries = sorted(self.entries())
        used = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if used + incoming <= self.limit:
                break
            self.remove(path)
            used -= size

    def clear(self) -> tuple[int, int]:
        """Remove every entry; returns (entries, bytes) removed."""
        entries = self.entries()
        for _, _, path in entries:
            self.remove(path)
        shutil.rmtree(self.folder / "locks", ignore_errors=True)
        return len(entries), sum(size for _, size, _ in entries)

    def ensure(self, model: Any, calibration: Calibration, say: Say) -> Int8Model:
        """The entry of ``model`` calibrated on ``calibration``: read, or made once (other processes wait)."""
        checkpoint_sha256 = model.sha256()
        key = self.key(checkpoint_sha256, calibration.key)
        found = self.read(key, checkpoint_sha256, say)
        if found is not None:
            return found
        with self.lock(key):
            found = self.read(key, checkpoint_sha256, say)  # made by another process meanwhile
            if found is not None:
                return found
            path = self.path(key)
            made = make_int8(model, calibration, self.folder / f".{key}.{os.getpid()}{INT8_ONNX_SUFFIX}", say=say,
                             cache=self)
            self.make_room(made.path.stat().st_size + record_of(made.path).stat().st_size)
            os.replace(record_of(made.path), record_of(path))  # the record first: with the old bytes it reads
            os.replace(made.path, path)                        # as corrupt, never as a whole stale entry
            return Int8Model(path, made.certificate, "made now")


# --------------------------------------------------------------------------------------------------
# choosing the export a detector runs


def beside_checkpoint(model: Any, say: Say) -> Int8Model | None:
    """The int8 export beside the checkpoint (``train``'s ``best.int8.onnx``), if it was made from this very file."""
    path, record = int8_files(model.path)
    if not path.exists() and model.from_hub:  # a Hub model's int8 export, uploaded beside it by 'mmchange push'
        from mmchange_core.models.hub import companion_file

        if companion_file(model.spec, path.name) is None or companion_file(model.spec, record.name) is None:
            return None
    if not path.exists():
        return None
    try:
        return Int8Model(path, read_int8_record(path, model.sha256(), record), "beside the checkpoint")
    except Int8RecordError as exc:
        say(f"not using {path.name}: {exc}")
        return None


def rebind_beside(checkpoint: Path, old_sha256: str, new_sha256: str) -> None:
    """After the checkpoint's metadata changed (a tuned threshold; same weights), bind the int8 export beside it
    to the new file, when it belonged to the old one; the decision threshold is always the checkpoint's."""
    import dataclasses

    path, record = int8_files(checkpoint)
    if old_sha256 == new_sha256 or not path.exists():
        return
    try:
        certificate = read_int8_record(path, old_sha256, record)
    except Int8RecordError:
        return
    write_int8_record(path, dataclasses.replace(certificate, checkpoint_sha256=new_sha256), record)


def training_calibration(meta: CheckpointMeta) -> Calibration | None:
    """The training split of the dataset the checkpoint records, when it is still there."""
    dataset = meta.training.get("dataset")
    if isinstance(dataset, str) and dataset and Path(dataset).exists():
        return Calibration(dataset, "train")
    return None


def onnxruntime_available() -> bool:
    try:
        import_onnx_module("onnxruntime", "--precision int8")
        import_onnx_module("onnx", "--precision int8")
    except InputError:
        return False
    return True


def select_int8(model: Any, precision: str, device: str, *, calibrate: str | None = None,
                accept_drift: bool = False, cache: Int8Cache | None = None,
                say: Say | None = None) -> Int8Model | None:
    """The int8 export a detector of ``model`` runs at ``precision`` on ``device``, or None for the other paths.

    ``int8``: beside the checkpoint, else cached, else made now from ``calibrate`` (default: the training
    split the checkpoint records); refused in one line on a GPU, without calibration data, and below the bound
    without ``accept_drift``. ``auto``: a certified export within the bound when one exists on a CPU.
    """
    say = say or (lambda message: None)
    if calibrate is not None and precision != "int8":
        raise InputError(f"--calibrate {calibrate} calibrates the int8 export, used with --precision int8 only; add "
                         f"--precision int8 or drop --calibrate")
    if precision not in ("int8", "auto") or model.backend.name != "torch":
        return None
    on_cpu = resolve_device(device).type == "cpu"
    if precision == "auto":
        if not on_cpu or not onnxruntime_available():
            return None
        cache = cache or Int8Cache()
        found = beside_checkpoint(model, say) or cache.find(model.sha256())
        return found if found is not None and found.certificate.within_bound else None
    if not on_cpu:
        raise InputError(f"--precision int8 runs on the CPU (onnxruntime's integer kernels), not on {device}; use "
                         f"--device cpu, or --precision bf16/fp16 on the GPU")
    import_onnx_module("onnxruntime", "--precision int8")
    cache = cache or Int8Cache()
    found = None
    if calibrate is None:
        found = beside_checkpoint(model, say)
        if found is None or not found.certificate.within_bound:
            found = cache.find(model.sha256()) or found
    if found is None or (calibrate is None and not found.certificate.within_bound
                         and training_calibration(model.meta) is not None):
        calibration = Calibration(calibrate) if calibrate is not None else training_calibration(model.meta)
        if calibration is None:
            raise InputError(f"--precision int8 needs calibration data for {model.spec}: give --calibrate DATASET (a "
                             f"folder of image pairs like the ones you run, or the training dataset); it is "
                             f"calibrated once and cached")
        found = cache.ensure(model, calibration, say)
    check_bound(found.certificate, model.spec, accept_drift, say)
    return found


def check_bound(certificate: Int8Certificate, spec: str, accept_drift: bool, say: Say | None = None) -> None:
    """Refuse an int8 export below the bound in one line with its figures, unless ``accept_drift``."""
    problem = certificate.problem()
    if problem is None:
        return
    if not accept_drift:
        raise InputError(f"the int8 model of {spec} is below the accuracy bound: {problem} ({certificate.figures()}); "
                         f"use --precision fp32, calibrate on other data with --calibrate, or run it anyway with "
                         f"--accept-int8-drift")
    (say or (lambda message: None))(f"running int8 below the accuracy bound (--accept-int8-drift): {problem}")


def certificate_of_file(path: Path) -> Int8Certificate | None:
    """The certificate in the record beside an int8 ``.onnx`` given as the model (None: no record, as for a
    hand-made ``mmchange export --quantize int8``); a record that does not match the file is refused."""
    if not record_of(path).exists():
        return None
    return read_int8_record(path)
