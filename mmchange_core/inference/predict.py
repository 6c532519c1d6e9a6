"""``mmchange predict`` as a library call: one pair or two folders, any size, PNG/JPEG/(Geo)TIFF, with outputs.

:func:`predict_pair` and :func:`predict_folder` load a :class:`~mmchange_core.inference.detector.ChangeDetector`
and write, per pair: a 0/255 mask (PNG, or GeoTIFF with the input's CRS and transform), optionally the
probability map, an outline overlay on date B and change polygons as GeoJSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmchange_core.config import DEVICE, PRECISION, between, multiple_of, non_negative, positive, setting, validate
from mmchange_core.data.windows import DEFAULT_OVERLAP
from mmchange_core.errors import InputError, MMChangeError
from mmchange_core.inference.detector import DEFAULT_BATCH_SIZE, ChangeDetector, check_pair, logits_to_probability
from mmchange_core.progress import ProgressCallback, report
from mmchange_core.io.images import IMAGE_SUFFIXES, TIFF_SUFFIXES, Warn, is_tiff
from mmchange_core.io.outputs import IMAGE_OUTPUT_SUFFIXES, MASK_SUFFIXES, VECTOR_SUFFIXES, OutputPlan
from mmchange_core.io.raster import RasterSource, RowWriter, open_row_writer, open_source, write_image
from mmchange_core.io.vector import write_change_polygons
from mmchange_core.reporting.overlay import write_overlay

#: The folder-mode caption cache in the output folder; never a dataset's caption store's name.
PREDICT_CAPTION_CACHE = "mmchange_predict_captions.jsonl"


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


@dataclass
class PairOutputs:
    """Where one pair's results go; ``None`` skips that output."""

    mask: Path
    prob: Path | None = None
    overlay: Path | None = None
    vector: Path | None = None

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


@dataclass
class FolderResult:
    """What :func:`predict_folder` did: one result per matched pair, the failures and the unmatched names."""

    pairs: list[PairResult]
    failed: dict[str, str]
    only_in_a: list[str]
    only_in_b: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when every matched pair was predicted."""
        return not self.failed


def predict_sources(detector: ChangeDetector, source_a: RasterSource, source_b: RasterSource, outputs: PairOutputs,
                    *, path_a: Path | None = None, path_b: Path | None = None, min_area: float = 0.0,
                    progress: ProgressCallback | None = None) -> PairResult:
    """Predict one pair of open sources with ``detector`` and write ``outputs``; the sources stay open.

    Rows stream from the sources through the windows into the mask (and the probability writer), so
    a scene is never held as floats.
    """
    start = time.perf_counter()
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
    mask = np.zeros((height, width), dtype=np.uint8)
    prob_writer: RowWriter | None = None
    if outputs.prob is not None:
        as_float = outputs.prob.suffix.lower() in TIFF_SUFFIXES
        prob_writer = open_row_writer(outputs.prob, height, width, dtype=np.float32 if as_float else np.uint8,
                                      georef=georef)
    threshold = detector.threshold

    def emit(y0: int, logits: np.ndarray) -> None:
        prob = logits_to_probability(logits)
        rows = mask[y0:y0 + len(prob)]
        np.greater(prob, threshold, out=rows, casting="unsafe")
        rows *= 255
        if prob_writer is not None:
            if as_float:
                prob_writer.write(y0, prob)
            else:
                prob_writer.write(y0, np.rint(prob * 255.0).astype(np.uint8))

    try:
        timings = detector.stream_logits(source_a.read_rows, source_b.read_rows, grid, emit, text_a, text_b, progress)
    except BaseException:
        if prob_writer is not None:
            prob_writer.abort()
        raise
    t0 = time.perf_counter()
    written = {"mask": str(write_image(outputs.mask, mask, georef if is_tiff(outputs.mask) else None))}
    if prob_writer is not None:
        written["prob"] = str(prob_writer.close())
    polygons = None
    if outputs.overlay is not None or outputs.vector is not None:
        changed = mask > 0
        if outputs.overlay is not None:
            written["overlay"] = str(write_overlay(outputs.overlay, source_b, changed))
        if outputs.vector is not None:
            polygons = write_change_polygons(outputs.vector, changed, georef, min_area)
            written["vector"] = str(outputs.vector)
    write_seconds = time.perf_counter() - t0
    changed_pixels = int(np.count_nonzero(mask))
    return PairResult(
        name=pair_name(path_a or Path(source_a.name), path_b or Path(source_b.name)),
        image_a=str(path_a or source_a.name), image_b=str(path_b or source_b.name),
        width=width, height=height, windows=len(grid), threshold=threshold,
        changed_pixels=changed_pixels, change_fraction=changed_pixels / (width * height),
        outputs=written, crs=georef.crs_name() if georef is not None else None, polygons=polygons,
        captions=captions,
        seconds={"total": time.perf_counter() - start, "network": timings.network, "read": timings.read,
                 "text": text_seconds, "write": write_seconds},
    )


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
    return ChangeDetector.from_checkpoint(
        checkpoint, device=config.device, precision=config.precision, compile=config.compile,
        tile_size=config.tile_size, overlap=config.overlap, batch_size=config.batch_size, threshold=config.threshold,
        captions=captions, caption_cache=caption_cache, warn=warn)


def pair_name(path_a: Path, path_b: Path) -> str:
    """The name of a pair's outputs: the common file stem, or ``<stem A>__<stem B>``."""
    return path_a.stem if path_a.stem == path_b.stem else f"{path_a.stem}__{path_b.stem}"


def default_mask_suffix(path: Path) -> str:
    """``.tif`` for TIFF inputs (GeoTIFF in gives GeoTIFF out), else ``.png``."""
    return ".tif" if is_tiff(path) else ".png"


def pair_outputs(path_a: Path, path_b: Path, output: Path, *, prob: Path | None = None,
                 overlay: Path | None = None, vector: Path | None = None, folders: bool = False) -> PairOutputs:
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
                       vector=place(vector, ".geojson"))


def predict_pair(checkpoint: str | Path, image_a: str | Path, image_b: str | Path, output: str | Path, *,
                 prob: str | Path | None = None, overlay: str | Path | None = None, vector: str | Path | None = None,
                 captions: str | Path | None = None, config: PredictConfig | None = None, warn: Warn | None = None,
                 progress: ProgressCallback | None = None) -> PairResult:
    """Predict the change between two image files with ``checkpoint`` (the ``mmchange predict A B`` call).

    ``output`` is the mask file (``.png`` or ``.tif``), or a folder to write ``<name>.png|.tif`` into.
    """
    image_a, image_b = Path(image_a), Path(image_b)
    outputs = pair_outputs(image_a, image_b, Path(output), prob=_opt_path(prob), overlay=_opt_path(overlay),
                           vector=_opt_path(vector))
    outputs.validate(image_a, image_b, Path(checkpoint), _opt_path(captions))
    with open_source(image_a, warn) as source_a, open_source(image_b, warn) as source_b:
        check_pair(source_a, source_b, image_a, image_b)  # fail before loading the model
        config = config or PredictConfig()
        validate(config)
        detector = load_detector(checkpoint, config, captions=captions, warn=warn)
        return predict_sources(detector, source_a, source_b, outputs, path_a=image_a, path_b=image_b,
                               min_area=config.min_area, progress=progress)


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
                        protected: tuple[Path | None, ...] = ()) -> list[PairOutputs]:
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
    planned = []
    for path_a, path_b in pairs:
        outputs = pair_outputs(path_a, path_b, output_dir, prob=prob_dir, overlay=overlay_dir, vector=vector_dir,
                               folders=True)
        outputs.plan(plan, owner=path_a.name)
        planned.append(outputs)
    return planned


def predict_folder(checkpoint: str | Path, dir_a: str | Path, dir_b: str | Path, output_dir: str | Path, *,
                   prob_dir: str | Path | None = None, overlay_dir: str | Path | None = None,
                   vector_dir: str | Path | None = None, captions: str | Path | None = None,
                   config: PredictConfig | None = None, warn: Warn | None = None,
                   progress: ProgressCallback | None = None) -> FolderResult:
    """Predict every pair of same-named images in ``dir_a`` and ``dir_b`` (the ``mmchange predict DIR_A DIR_B`` call).

    Masks go to ``output_dir/<stem>.png`` (``.tif`` for TIFF input); ``prob_dir``, ``overlay_dir``
    and ``vector_dir`` receive the optional outputs under the same names. A pair that fails (bad
    size, unreadable file...) is reported in ``failed`` and the others go on. Captions made on the fly
    are cached in ``output_dir/`` :data:`PREDICT_CAPTION_CACHE` so that a rerun does not caption again; a
    dataset's own caption store (``mmchange_captions.jsonl``) is never written, even when it is there.
    ``progress`` receives ``windows`` events within each pair and a ``pairs`` event (named) after it.
    """
    start = time.perf_counter()
    dir_a, dir_b, output_dir = Path(dir_a), Path(dir_b), Path(output_dir)
    pairs, only_a, only_b = match_folders(dir_a, dir_b)
    if not pairs:
        raise InputError(f"no file names in common between {dir_a} and {dir_b}; files are matched by name")
    config = config or PredictConfig()
    validate(config)
    planned = plan_folder_outputs(pairs, dir_a, dir_b, output_dir, prob_dir=_opt_path(prob_dir),
                                  overlay_dir=_opt_path(overlay_dir), vector_dir=_opt_path(vector_dir),
                                  protected=(Path(checkpoint), _opt_path(captions)))
    detector = load_detector(checkpoint, config, captions=captions, caption_cache=output_dir / PREDICT_CAPTION_CACHE,
                             warn=warn)
    results: list[PairResult] = []
    failed: dict[str, str] = {}
    for index, ((path_a, path_b), outputs) in enumerate(zip(pairs, planned)):
        try:
            results.append(predict_files(detector, path_a, path_b, outputs, min_area=config.min_area,
                                         progress=progress))
        except MMChangeError as exc:
            failed[path_a.name] = str(exc)
        report(progress, "pairs", index + 1, len(pairs), path_a.name)
    return FolderResult(results, failed, only_a, only_b, time.perf_counter() - start)
