"""Change detection on the user's own images: one pair or two folders, any size, PNG/JPEG/(Geo)TIFF.

:class:`ChangePredictor` holds a loaded checkpoint (runner, decision threshold, text pipeline) and
predicts pairs; :func:`predict_pair` and :func:`predict_folder` are the one-call entry points that
``mmchange predict`` uses. Outputs: a 0/255 mask (PNG, or GeoTIFF with the input's CRS and transform),
optionally the probability map, an outline overlay on date B and change polygons as GeoJSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.inference.sliding_window import (
    Progress,
    network_for,
    sliding_window_logits,
    sliding_window_probabilities,
)
from mmchange_core.data.windows import TileGrid
from mmchange_core.errors import CheckpointError, InputError, MMChangeError
from mmchange_core.io.caption_file import CaptionFile
from mmchange_core.io.geo import GeoReference, check_same_georeference
from mmchange_core.io.images import IMAGE_SUFFIXES, Warn
from mmchange_core.reporting.overlay import write_overlay
from mmchange_core.io.raster import (
    JPEG_SUFFIXES,
    PNG_SUFFIXES,
    TIFF_SUFFIXES,
    ArraySource,
    RasterSource,
    RowWriter,
    check_output_suffix,
    open_row_writer,
    open_source,
    write_image,
)
from mmchange_core.io.vector import write_change_polygons
from mmchange_core.models.checkpoint import checkpoint_threshold
from mmchange_core.models.mmchange import MMChange

MASK_SUFFIXES = PNG_SUFFIXES + TIFF_SUFFIXES
OVERLAY_SUFFIXES = PNG_SUFFIXES + JPEG_SUFFIXES + TIFF_SUFFIXES
VECTOR_SUFFIXES = (".geojson", ".json")
#: Longest side of the image handed to the captioner (larger scenes are area-downsampled first).
CAPTION_SIDE = 1024


@dataclass
class PredictConfig:
    """Options of ``mmchange predict`` (the defaults are the CLI's)."""

    tile: int = 256
    """Window size in pixels (multiple of 32)."""
    overlap: int = 32
    """Minimum overlap between neighbouring windows, in pixels; logits are blended across it."""
    batch_size: int = 4
    """Windows per network call."""
    threshold: float | None = None
    """Decision threshold on the change probability; ``None`` = the checkpoint's (``meta['threshold']``)."""
    min_area: float = 0.0
    """Smallest polygon kept in ``--vector`` output: pixels, or squared CRS units for georeferenced input."""
    device: str = "auto"
    precision: str = "auto"
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
        """Check the file types, and that no output would overwrite an input, before any work is done."""
        sources = {p.resolve() for p in inputs if p is not None}
        for kind, path in self.paths().items():
            if path.resolve() in sources:
                raise InputError(f"the {kind} output {path} would overwrite an input image; choose another output path")
        check_output_suffix(self.mask, "mask output", MASK_SUFFIXES)
        if self.prob is not None:
            check_output_suffix(self.prob, "--prob output", MASK_SUFFIXES)
        if self.overlay is not None:
            check_output_suffix(self.overlay, "--overlay output", OVERLAY_SUFFIXES)
        if self.vector is not None:
            check_output_suffix(self.vector, "--vector output", VECTOR_SUFFIXES)

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


class ChangePredictor:
    """A checkpoint ready to predict changes on image pairs of any size.

    The decision threshold is the checkpoint's (``meta['threshold']``, tuned by ``mmchange eval``)
    unless ``config.threshold`` is set. Models that use text get their embeddings from ``captions``
    (a :class:`CaptionFile`) or else by captioning each date on the fly with the captioner and text
    encoder recorded in the checkpoint. With ``caption_cache`` (a caption-store file) on-the-fly
    captions are kept, keyed by image path and content hash, so a rerun does not caption again.
    """

    def __init__(self, model: MMChange, meta: dict[str, Any], config: PredictConfig | None = None, *,
                 captions: CaptionFile | None = None, caption_cache: str | Path | None = None,
                 warn: Warn | None = None, name: str = "checkpoint") -> None:
        self.config = config or PredictConfig()
        self.meta = meta
        self.name = name
        self.warn = warn or (lambda message: None)
        self.runner = InferenceRunner(model, self.config.device, self.config.precision, compile=self.config.compile)
        threshold = checkpoint_threshold(meta, self.config.threshold)
        if not 0.0 < threshold < 1.0:
            raise MMChangeError(f"threshold must be between 0 and 1 (exclusive); got {threshold}")
        self.threshold = threshold
        self.captions = captions
        self.caption_cache = None if caption_cache is None else Path(caption_cache)
        self._pipeline = None
        self._store = None
        if self.uses_text and not meta.get("text"):
            raise CheckpointError(f"{name} uses text but records no text pipeline (meta 'text'); it cannot caption "
                                  f"or encode new images: retrain it or set its 'text' entry with "
                                  f"update_checkpoint_meta")
        if not self.uses_text and captions is not None:
            self.warn(f"{name} is an image-only model; --captions is ignored")
            self.captions = None
        TileGrid.plan(self.config.tile, self.config.tile, self.config.tile, self.config.overlap)  # validate early

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: PredictConfig | None = None, *,
                        captions: str | Path | CaptionFile | None = None, caption_cache: str | Path | None = None,
                        warn: Warn | None = None) -> ChangePredictor:
        """Load ``path`` (an mmchange checkpoint) and, if given, a captions file."""
        from mmchange_core.models.checkpoint import load_checkpoint

        if captions is not None and not isinstance(captions, CaptionFile):
            captions = CaptionFile.load(captions)
        model, meta = load_checkpoint(path, "cpu")
        return cls(model, meta, config, captions=captions, caption_cache=caption_cache, warn=warn, name=str(path))

    @property
    def uses_text(self) -> bool:
        """Whether the model needs captions of both dates."""
        return self.runner.uses_text

    def text_pipeline(self) -> Any:
        """The checkpoint's :class:`~mmchange_core.text.TextPipeline` (created on first use)."""
        if self._pipeline is None:
            from mmchange_core.text import TextPipeline

            self._pipeline = TextPipeline.from_description(self.meta["text"], device=self.config.device)
        return self._pipeline

    def text_embeddings(self, image_a: np.ndarray | None = None, image_b: np.ndarray | None = None,
                        captions: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Embeddings ``[D]`` of both dates: from ``captions`` if given, else captioning the two uint8 images."""
        pipeline = self.text_pipeline()
        if captions is None:
            if image_a is None or image_b is None:
                raise InputError("captioning on the fly needs both images")
            captions = pipeline.caption([image_a, image_b])
        embeddings = pipeline.encode(list(captions))
        return embeddings[0], embeddings[1], list(captions)

    def probabilities(self, image_a: np.ndarray, image_b: np.ndarray,
                      captions: Sequence[str] | None = None) -> np.ndarray:
        """Change probabilities ``[H, W]`` (float32) of two in-memory uint8 RGB images of any size.

        Text models use ``captions`` (both dates) or caption the images on the fly.
        """
        text_a = text_b = None
        if self.uses_text:
            if captions is None:
                image_a_small = ArraySource(image_a, "image A").thumbnail(CAPTION_SIDE)
                image_b_small = ArraySource(image_b, "image B").thumbnail(CAPTION_SIDE)
                text_a, text_b, _ = self.text_embeddings(image_a_small, image_b_small)
            else:
                text_a, text_b, _ = self.text_embeddings(captions=captions)
        return sliding_window_probabilities(self.runner, image_a, image_b, text_a, text_b, tile=self.config.tile,
                                            overlap=self.config.overlap, batch_size=self.config.batch_size)

    def change_mask(self, image_a: np.ndarray, image_b: np.ndarray,
                    captions: Sequence[str] | None = None) -> np.ndarray:
        """Bool change mask ``[H, W]``: :meth:`probabilities` above the decision threshold."""
        return self.probabilities(image_a, image_b, captions) > self.threshold

    def _pair_text(self, source_a: RasterSource, source_b: RasterSource, path_a: Path | None,
                   path_b: Path | None) -> tuple[torch.Tensor | None, torch.Tensor | None, list[str] | None]:
        if not self.uses_text:
            return None, None, None
        if self.captions is not None:
            if path_a is None or path_b is None:
                raise InputError("a captions file matches images by file name; give image paths")
            return self.text_embeddings(captions=self.captions.pair(path_a, path_b))
        if self.caption_cache is not None and path_a is not None and path_b is not None:
            return self._cached_text([(path_a, source_a), (path_b, source_b)])
        return self.text_embeddings(source_a.thumbnail(CAPTION_SIDE), source_b.thumbnail(CAPTION_SIDE))

    def _cached_text(self, images: list[tuple[Path, RasterSource]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        from mmchange_core.text import CaptionStore
        from mmchange_core.text.store import sha256_file

        pipeline = self.text_pipeline()
        if self._store is None:
            self._store = CaptionStore(self.caption_cache)
        keys = [path.resolve().as_posix() for path, _ in images]
        items = [(key, sha256_file(path), lambda source=source: source.thumbnail(CAPTION_SIDE))
                 for key, (path, source) in zip(keys, images)]
        embeddings = torch.from_numpy(self._store.ensure(items, pipeline))
        captions = self._store.captions_for(keys, pipeline.describe())
        return embeddings[0], embeddings[1], captions

    def predict_sources(self, source_a: RasterSource, source_b: RasterSource, outputs: PairOutputs, *,
                        path_a: Path | None = None, path_b: Path | None = None,
                        progress: Progress | None = None) -> PairResult:
        """Predict one pair of open sources and write ``outputs``; the sources stay open."""
        start = time.perf_counter()
        outputs.validate(path_a, path_b)
        georef = check_pair(source_a, source_b, path_a, path_b)
        if georef is not None and (source_a.georef is None or source_b.georef is None):
            plain = source_b.name if source_b.georef is None else source_a.name
            self.warn(f"{plain} has no georeferencing; using the other date's CRS and transform")
        if georef is not None:
            for kind, path in outputs.paths().items():
                if kind in ("mask", "prob") and not _is_tiff(path):
                    self.warn(f"{path}: a {path.suffix} {kind} output drops the CRS and transform; "
                              f"name it .tif to keep them")
        height, width = source_a.height, source_a.width
        t0 = time.perf_counter()
        text_a, text_b, captions = self._pair_text(source_a, source_b, path_a, path_b)
        text_seconds = time.perf_counter() - t0

        grid = TileGrid.plan(height, width, self.config.tile, self.config.overlap)
        mask = np.zeros((height, width), dtype=np.uint8)
        prob_writer: RowWriter | None = None
        if outputs.prob is not None:
            as_float = outputs.prob.suffix.lower() in TIFF_SUFFIXES
            prob_writer = open_row_writer(outputs.prob, height, width, dtype=np.float32 if as_float else np.uint8,
                                          georef=georef)
        threshold = self.threshold

        def emit(y0: int, logits: np.ndarray) -> None:
            prob = torch.sigmoid(torch.from_numpy(logits)).numpy()
            rows = mask[y0:y0 + len(prob)]
            np.greater(prob, threshold, out=rows, casting="unsafe")
            rows *= 255
            if prob_writer is not None:
                if as_float:
                    prob_writer.write(y0, prob)
                else:
                    prob_writer.write(y0, np.rint(prob * 255.0).astype(np.uint8))

        try:
            network = network_for(self.runner, text_a, text_b, self.config.batch_size)
            timings = sliding_window_logits(network, grid, source_a.read_rows, source_b.read_rows, emit,
                                            batch_size=self.config.batch_size, progress=progress)
        except BaseException:
            if prob_writer is not None:
                prob_writer.abort()
            raise
        t0 = time.perf_counter()
        written = {"mask": str(write_image(outputs.mask, mask, georef if _is_tiff(outputs.mask) else None))}
        if prob_writer is not None:
            written["prob"] = str(prob_writer.close())
        polygons = None
        if outputs.overlay is not None or outputs.vector is not None:
            changed = mask > 0
            if outputs.overlay is not None:
                written["overlay"] = str(write_overlay(outputs.overlay, source_b, changed))
            if outputs.vector is not None:
                polygons = write_change_polygons(outputs.vector, changed, georef, self.config.min_area)
                written["vector"] = str(outputs.vector)
        write_seconds = time.perf_counter() - t0
        changed_pixels = int(np.count_nonzero(mask))
        return PairResult(
            name=_pair_name(path_a or Path(source_a.name), path_b or Path(source_b.name)),
            image_a=str(path_a or source_a.name), image_b=str(path_b or source_b.name),
            width=width, height=height, windows=len(grid), threshold=threshold,
            changed_pixels=changed_pixels, change_fraction=changed_pixels / (width * height),
            outputs=written, crs=georef.crs_name() if georef is not None else None, polygons=polygons,
            captions=captions,
            seconds={"total": time.perf_counter() - start, "network": timings.network, "read": timings.read,
                     "text": text_seconds, "write": write_seconds},
        )

    def predict_files(self, path_a: str | Path, path_b: str | Path, outputs: PairOutputs, *,
                      progress: Progress | None = None) -> PairResult:
        """Predict the pair of image files ``path_a`` (first date) and ``path_b`` (second date)."""
        path_a, path_b = Path(path_a), Path(path_b)
        outputs.validate(path_a, path_b)
        with open_source(path_a, self.warn) as source_a, open_source(path_b, self.warn) as source_b:
            check_pair(source_a, source_b, path_a, path_b)
            return self.predict_sources(source_a, source_b, outputs, path_a=path_a, path_b=path_b,
                                        progress=progress)


def check_pair(source_a: RasterSource, source_b: RasterSource, path_a: Path | None = None,
               path_b: Path | None = None) -> GeoReference | None:
    """Check that two dates can be compared (same size, same CRS and transform); returns their georeference."""
    name_a, name_b = path_a or Path(source_a.name), path_b or Path(source_b.name)
    if (source_a.height, source_a.width) != (source_b.height, source_b.width):
        raise InputError(f"size mismatch: {name_a} is {source_a.width}x{source_a.height} but {name_b} is "
                         f"{source_b.width}x{source_b.height} (width x height); the two dates must be "
                         f"co-registered images of the same size")
    return check_same_georeference(source_a.georef, source_b.georef, name_a, name_b)


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in TIFF_SUFFIXES


def _pair_name(path_a: Path, path_b: Path) -> str:
    return path_a.stem if path_a.stem == path_b.stem else f"{path_a.stem}__{path_b.stem}"


def default_mask_suffix(path: Path) -> str:
    """``.tif`` for TIFF inputs (GeoTIFF in gives GeoTIFF out), else ``.png``."""
    return ".tif" if _is_tiff(path) else ".png"


def pair_outputs(path_a: Path, path_b: Path, output: Path, *, prob: Path | None = None,
                 overlay: Path | None = None, vector: Path | None = None, folders: bool = False) -> PairOutputs:
    """Output paths for a pair: files as given, or (``folders=True``, or ``output`` a folder) names inside them.

    Inside folders the files are named after the pair: ``<stem>.png`` (``.tif`` for TIFF input) for
    masks, probabilities and overlays, ``<stem>.geojson`` for polygons.
    """
    name = _pair_name(path_a, path_b)
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
                 progress: Progress | None = None) -> PairResult:
    """Predict the change between two image files with ``checkpoint`` (the ``mmchange predict A B`` call).

    ``output`` is the mask file (``.png`` or ``.tif``), or a folder to write ``<name>.png|.tif`` into.
    """
    image_a, image_b = Path(image_a), Path(image_b)
    outputs = pair_outputs(image_a, image_b, Path(output), prob=_opt_path(prob), overlay=_opt_path(overlay),
                           vector=_opt_path(vector))
    outputs.validate(image_a, image_b)
    with open_source(image_a, warn) as source_a, open_source(image_b, warn) as source_b:
        check_pair(source_a, source_b, image_a, image_b)  # fail before loading the model
        predictor = ChangePredictor.from_checkpoint(checkpoint, config, captions=captions, warn=warn)
        return predictor.predict_sources(source_a, source_b, outputs, path_a=image_a, path_b=image_b,
                                         progress=progress)


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


FolderProgress = Callable[[int, int, str, "PairResult | None"], None]
"""``progress(pairs_done, pairs_total, name, result)``; ``result`` is ``None`` for a failed pair."""


def predict_folder(checkpoint: str | Path, dir_a: str | Path, dir_b: str | Path, output_dir: str | Path, *,
                   prob_dir: str | Path | None = None, overlay_dir: str | Path | None = None,
                   vector_dir: str | Path | None = None, captions: str | Path | None = None,
                   config: PredictConfig | None = None, warn: Warn | None = None,
                   progress: FolderProgress | None = None, window_progress: Progress | None = None) -> FolderResult:
    """Predict every pair of same-named images in ``dir_a`` and ``dir_b`` (the ``mmchange predict DIR_A DIR_B`` call).

    Masks go to ``output_dir/<stem>.png`` (``.tif`` for TIFF input); ``prob_dir``, ``overlay_dir``
    and ``vector_dir`` receive the optional outputs under the same names. A pair that fails (bad
    size, unreadable file...) is reported in ``failed`` and the others go on. Captions made on the fly
    are cached in ``output_dir/mmchange_captions.jsonl`` so that a rerun does not caption again.
    """
    start = time.perf_counter()
    dir_a, dir_b, output_dir = Path(dir_a), Path(dir_b), Path(output_dir)
    pairs, only_a, only_b = match_folders(dir_a, dir_b)
    if not pairs:
        raise InputError(f"no file names in common between {dir_a} and {dir_b}; files are matched by name")
    from mmchange_core.text import STORE_FILENAME

    predictor = ChangePredictor.from_checkpoint(checkpoint, config, captions=captions,
                                                caption_cache=output_dir / STORE_FILENAME, warn=warn)
    results: list[PairResult] = []
    failed: dict[str, str] = {}
    for index, (path_a, path_b) in enumerate(pairs):
        outputs = pair_outputs(path_a, path_b, output_dir, prob=_opt_path(prob_dir), overlay=_opt_path(overlay_dir),
                               vector=_opt_path(vector_dir), folders=True)
        result: PairResult | None = None
        try:
            result = predictor.predict_files(path_a, path_b, outputs, progress=window_progress)
            results.append(result)
        except MMChangeError as exc:
            failed[path_a.name] = str(exc)
        if progress is not None:
            progress(index + 1, len(pairs), path_a.name, result)
    return FolderResult(results, failed, only_a, only_b, time.perf_counter() - start)
