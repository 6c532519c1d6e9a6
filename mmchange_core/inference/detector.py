"""The library API: a trained checkpoint that detects change between two images of any size.

:class:`ChangeDetector` is the one object behind every command that runs the network: ``predict``
streams scenes through it, ``eval`` (and training validation), ``robustness`` and the drift check
ask it for probability maps. It holds the runner (device, precision, compile), the windowing (tile
size, overlap, batch size: :mod:`mmchange_core.data.windows`), the decision threshold and the text
pipeline, each resolved once: an explicit value, else the checkpoint's metadata, else the default.

    detector = ChangeDetector.from_checkpoint("best.safetensors", device="cpu")
    result = detector.predict("a.png", "b.png")      # paths, PIL images or uint8 arrays
    result.mask, result.probability, result.georef
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmchange_core.config import validate
from mmchange_core.data.windows import RowSink, StripReader, TileGrid
from mmchange_core.errors import CheckpointError, InputError
from mmchange_core.inference.backends import ModelFile, open_model
from mmchange_core.inference.decision import DecisionRule, logits_to_probability
from mmchange_core.inference.int8 import select_int8
from mmchange_core.inference.onnx_runner import OnnxRunner
from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.inference.settings import DEFAULT_BATCH_SIZE, DetectorSettings, settings_record
from mmchange_core.inference.sliding_window import WindowTimings, network_for, sliding_dates_logits
from mmchange_core.io.caption_file import CaptionFile
from mmchange_core.io.classes import ClassScheme
from mmchange_core.io.geo import GeoReference, check_same_georeference
from mmchange_core.io.images import Warn
from mmchange_core.io.imagery import Imagery, parse_bands
from mmchange_core.io.raster import ArraySource, RasterSource, open_sources
from mmchange_core.models.checkpoint import CheckpointMeta
from mmchange_core.models.mmchange import MMChange
from mmchange_core.progress import ProgressCallback

__all__ = ["DEFAULT_BATCH_SIZE", "ChangeDetector", "DecisionRule", "Prediction", "check_pair", "detector_imagery",
           "logits_to_probability"]

#: Longest side of the image handed to the captioner (larger scenes are area-downsampled first).
CAPTION_SIDE = 1024

#: An image given to :meth:`ChangeDetector.predict`: a file path, a PIL image or a uint8 array.
ImageInput = str | Path | Image.Image | np.ndarray


@dataclass
class Prediction:
    """What :meth:`ChangeDetector.predict` returns for one pair."""

    probability: np.ndarray
    """Change probability ``[H, W]``, float32 in [0, 1]."""
    mask: np.ndarray
    """Change mask ``[H, W]`` (bool): ``probability > threshold``."""
    threshold: float
    georef: GeoReference | None = None
    """CRS and transform of the inputs when they were GeoTIFFs, else ``None``."""
    captions: list[str] | None = None
    """The captions of both dates (text models)."""
    classes: np.ndarray | None = None
    """K-class networks: the class of each pixel ``[H, W]`` as the class file's label values (uint8, 0 = no
    change); None for binary networks."""


class ChangeDetector:
    """A network ready to detect change on image pairs of any size, with its windowing and threshold.

    Args:
        model: the network (its weights are not modified), or a runner of another backend (an
            :class:`OnnxRunner`, which holds its device and precision; its metadata is the default ``meta``).
        meta: the checkpoint's metadata; it supplies the tile size (training crop), the decision
            threshold and the text pipeline where ``settings`` leaves them unset.
        settings: how to run it (:class:`~mmchange_core.inference.settings.DetectorSettings`); keyword
            arguments named after its fields (``device="cpu"``, ``tile_size=128``) override single fields.
        captions: captions of the pairs to predict (text models), matched by file name.
        caption_cache: a caption-store file where on-the-fly captions are kept between runs.
        warn: receives one-line warnings.
        name: the model's name in messages and records (the spec it was loaded from).
        runner_options: further :class:`InferenceRunner` options (the drift check's plain reference path).
    """

    def __init__(self, model: MMChange | OnnxRunner, meta: CheckpointMeta | None = None,
                 settings: DetectorSettings | None = None, *, captions: CaptionFile | None = None,
                 caption_cache: str | Path | None = None, warn: Warn | None = None, name: str = "checkpoint",
                 runner_options: dict[str, Any] | None = None, model_file: ModelFile | None = None,
                 **overrides: Any) -> None:
        if meta is None:
            meta = model.meta if isinstance(model, OnnxRunner) else CheckpointMeta(
                model=model.config, classes=ClassScheme.numbered(model.config.num_classes)
                if model.config.num_classes > 2 else None)
        settings = dataclasses.replace(settings or DetectorSettings(), **overrides)
        validate(settings)
        self.meta = meta
        self.name = name
        self.model_file = model_file
        self.warn = warn or (lambda message: None)
        self.tile_size = self.meta.resolve_tile_size(settings.tile_size)
        self.overlap = settings.overlap
        self.batch_size = settings.batch_size
        self.threshold = self.meta.resolve_threshold(settings.threshold)
        #: The threshold and classes that turn logits into the change probability and class map.
        self.decision = DecisionRule(self.threshold, self.meta.classes)
        #: The bands read from each file and the radiometric rule: the checkpoint's, with ``--bands`` applied.
        self.imagery = detector_imagery(self.meta, settings)
        TileGrid.plan(self.tile_size, self.tile_size, self.tile_size, self.overlap)  # validate before any work
        if isinstance(model, MMChange) and settings.precision == "int8":
            raise InputError("int8 runs the checkpoint's calibrated int8 export: load it with "
                             "ChangeDetector.load(checkpoint, precision='int8')")
        if isinstance(model, MMChange):
            self.runner: InferenceRunner | OnnxRunner = InferenceRunner(
                model, settings.device, settings.precision, compile=settings.compile, **(runner_options or {}))
        else:
            self.runner = model
        self.device = self.runner.device
        #: The settings it runs with: the given ones, with the checkpoint's tile size and threshold and the
        #: device and precision actually used filled in (what :meth:`record` writes out).
        self.settings = dataclasses.replace(settings, tile_size=self.tile_size, threshold=self.threshold,
                                            device=str(self.device), precision=str(self.runner.precision),
                                            bands=self.imagery.bands)
        self.captions = captions
        self.caption_cache = None if caption_cache is None else Path(caption_cache)
        self._pipeline: Any = None
        self._store: Any = None
        self._int8: dict[str, Any] | None = None
        if not self.uses_text and captions is not None:
            self.warn(f"{name} is an image-only model; --captions is ignored")
            self.captions = None

    @classmethod
    def load(cls, spec: str | Path | ModelFile, settings: DetectorSettings | None = None, *,
             captions: str | Path | CaptionFile | None = None, caption_cache: str | Path | None = None,
             warn: Warn | None = None, runner_options: dict[str, Any] | None = None,
             **overrides: Any) -> ChangeDetector:
        """Load a model through the backend seam (:func:`~mmchange_core.inference.backends.open_model`): an
        mmchange checkpoint (a path or ``hf://OWNER/NAME[@REV]``), an exported ``.onnx`` (onnxruntime) or an
        authors' ``.pth``. This is the one constructor of every command that runs the network."""
        settings = dataclasses.replace(settings or DetectorSettings(), **overrides)
        validate(settings)
        model = open_model(spec)
        if captions is not None and not isinstance(captions, CaptionFile):
            captions = CaptionFile.load(captions)
        int8 = select_int8(model, settings.precision, settings.device, calibrate=settings.calibrate,
                           accept_drift=settings.accept_int8_drift, say=warn)
        if int8 is not None:  # the certified int8 export of this checkpoint, run by onnxruntime
            runner = OnnxRunner(int8.path, "cpu", "int8", threads=(runner_options or {}).get("threads"))
            runner.certificate = int8.certificate
        else:
            runner = model.runner(settings, **(runner_options or {}))
        return cls(runner, model.meta, settings, captions=captions, caption_cache=caption_cache, warn=warn,
                   name=model.spec, model_file=model)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | torch.device = "auto",
                        captions: str | Path | CaptionFile | None = None, **options: Any) -> ChangeDetector:
        """:meth:`load` with settings as keyword arguments: ``from_checkpoint("best.safetensors", device="cpu")``."""
        return cls.load(path, captions=captions, device=str(device), **options)

    def open_dates(self, paths: Sequence[str | Path]) -> list[RasterSource]:
        """The image files of one place opened with this model's bands and one radiometric scale for all."""
        return open_sources(list(paths), self.warn, self.imagery)

    @property
    def backend(self) -> str:
        """The runtime that runs the network: ``torch`` or ``onnxruntime``."""
        return "onnxruntime" if isinstance(self.runner, OnnxRunner) else "torch"

    def record(self, *, outputs_only: bool = False) -> dict[str, Any]:
        """The settings it runs with, as the manifest, the STAC Item and metrics.json write them (with the int8
        export and its certificate when one ran)."""
        chosen = self.model_file.chosen if self.model_file is not None else None
        return settings_record(self.settings, backend=self.backend, checkpoint=self.name, chosen=chosen,
                               outputs_only=outputs_only, int8=self.int8_record())

    def int8_record(self) -> dict[str, Any] | None:
        """The int8 export that runs (file, sha256, certificate or None for a hand-made one); None at fp32."""
        if not isinstance(self.runner, OnnxRunner) or self.runner.precision != "int8":
            return None
        if self._int8 is None:
            from mmchange_core.io.hashing import cached_sha256_file

            certificate = getattr(self.runner, "certificate", None)
            self._int8 = {"file": str(self.runner.path), "sha256": cached_sha256_file(self.runner.path),
                          "certificate": None if certificate is None else certificate.to_dict()}
        return self._int8

    @property
    def uses_text(self) -> bool:
        """Whether the model needs captions of both dates."""
        return self.runner.uses_text

    # ----------------------------------------------------------------------------------------------
    # text

    def text_pipeline(self) -> Any:
        """The checkpoint's :class:`~mmchange_core.text.TextPipeline` (created on first use)."""
        if self.meta.text_description is None:
            raise CheckpointError(f"{self.name} uses text but records no text pipeline; it cannot caption or "
                                  f"encode new images: retrain it, or give caption embeddings from a caption store")
        if self._pipeline is None:
            from mmchange_core.text import TextPipeline

            self._pipeline = TextPipeline.from_description(self.meta.text_description, device=self.device)
        return self._pipeline

    def text_embeddings(self, image_a: np.ndarray | None = None, image_b: np.ndarray | None = None,
                        captions: Sequence[str] | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Embeddings ``[D]`` of both dates: from ``captions`` if given, else captioning the two uint8 images."""
        if captions is None and (image_a is None or image_b is None):
            raise InputError("captioning on the fly needs both images")
        embeddings, used = self.dates_embeddings(None if captions is not None else [image_a, image_b], captions)
        return embeddings[0], embeddings[1], used

    def dates_embeddings(self, images: Sequence[np.ndarray] | None = None,
                         captions: Sequence[str] | None = None) -> tuple[list[torch.Tensor], list[str]]:
        """Embeddings ``[D]`` of every date: from ``captions`` if given, else captioning the uint8 images in
        one call (each date once)."""
        pipeline = self.text_pipeline()
        if captions is None:
            captions = pipeline.caption(list(images or []))
        embeddings = pipeline.encode(list(captions))
        return [embeddings[i] for i in range(len(captions))], list(captions)

    def source_text(self, source_a: RasterSource, source_b: RasterSource, path_a: Path | None = None,
                    path_b: Path | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None, list[str] | None]:
        """Text embeddings of two open images: the pair case of :meth:`dates_text`."""
        texts, captions = self.dates_text([source_a, source_b], [path_a, path_b])
        return (None, None, None) if texts is None else (texts[0], texts[1], captions)

    def dates_text(self, sources: Sequence[RasterSource], paths: Sequence[Path | None]
                   ) -> tuple[list[torch.Tensor] | None, list[str] | None]:
        """Text embeddings of open images, each captioned and encoded once: the captions file, else the
        caption cache, else fresh captions (``None, None`` for image-only models)."""
        if not self.uses_text:
            return None, None
        if self.captions is not None:
            if any(path is None for path in paths):
                raise InputError("a captions file matches images by file name; give image paths")
            return self.dates_embeddings(captions=self.captions.dates(paths))
        if self.caption_cache is not None and all(path is not None for path in paths):
            return self._cached_text(list(zip(paths, sources)))
        return self.dates_embeddings([source.thumbnail(CAPTION_SIDE) for source in sources])

    def _cached_text(self, images: list[tuple[Path, RasterSource]]) -> tuple[list[torch.Tensor], list[str]]:
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
        return [embeddings[i] for i in range(len(keys))], captions

    # ----------------------------------------------------------------------------------------------
    # windows

    def grid(self, height: int, width: int) -> TileGrid:
        """The window layout of a ``height`` x ``width`` scene."""
        return TileGrid.plan(height, width, self.tile_size, self.overlap)

    def stream_logits(self, read_a: StripReader, read_b: StripReader, grid: TileGrid, emit: RowSink,
                      text_a: torch.Tensor | None = None, text_b: torch.Tensor | None = None,
                      progress: ProgressCallback | None = None, **window_options: Any) -> WindowTimings:
        """Run the windows of a pair and hand finished rows of blended logits ``[h, W]`` (K-class networks:
        ``[K, h, W]``) to ``emit``: the pair case of :meth:`stream_dates_logits`."""
        return self.stream_dates_logits([read_a, read_b], grid, lambda y0, rows: emit(y0, rows[0]), [text_a, text_b],
                                        [(0, 1)], progress, **window_options)

    def stream_dates_logits(self, readers: Sequence[StripReader], grid: TileGrid, emit: RowSink,
                            texts: Sequence[torch.Tensor | None], comparisons: Sequence[tuple[int, int]],
                            progress: ProgressCallback | None = None, **window_options: Any) -> WindowTimings:
        """Run the windows of ``grid`` over every date and hand finished rows of blended logits of each
        comparison (``[comparisons, h, W]``; K-class networks ``[comparisons, K, h, W]``) to ``emit`` (the
        streaming core of predict, eval and series); :attr:`decision` turns them into probabilities and classes.

        Rows with a NaN or infinite score raise an :class:`InputError` before they reach ``emit``, so no
        command ever turns an untrustworthy score into a mask. ``window_options`` go to
        :func:`~mmchange_core.inference.sliding_window.sliding_dates_logits` (``rows``, ``write_behind``).
        """
        norm = self.meta.normalization
        network = network_for(self.runner, texts if self.uses_text else None, comparisons, self.batch_size,
                              mean=norm.mean, std=norm.std)

        channels = network.channels

        def checked(y0: int, logits: np.ndarray) -> None:
            if not np.isfinite(logits).all():
                raise InputError(f"{self.name} produced NaN or infinite change scores (rows {y0}-{y0 + logits.shape[-2] - 1}"
                                 f" of a {grid.width}x{grid.height} image), so no mask was written; check the "
                                 f"checkpoint (retrain or use another) and the caption embeddings")
            if channels > 1:
                logits = logits.reshape(len(comparisons), channels, *logits.shape[-2:])
            emit(y0, logits)

        return sliding_dates_logits(network, grid, readers, checked, comparisons=len(comparisons) * channels,
                                    batch_size=self.batch_size, progress=progress, **window_options)

    def probability_map(self, image_a: np.ndarray, image_b: np.ndarray, text_a: Any = None, text_b: Any = None,
                        progress: ProgressCallback | None = None) -> np.ndarray:
        """Change probabilities ``[H, W]`` (float32) of two uint8 ``[H, W, C]`` arrays, given their text embeddings."""
        return self.decision_map(image_a, image_b, text_a, text_b, progress)[0]

    def decision_map(self, image_a: np.ndarray, image_b: np.ndarray, text_a: Any = None, text_b: Any = None,
                     progress: ProgressCallback | None = None, *,
                     decision: DecisionRule | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(change probability float32 ``[H, W]``, class index uint8 ``[H, W]``: 0 no change, 1 change or the
        class of a K-class network) of two uint8 ``[H, W, C]`` arrays, given their text embeddings; ``decision``
        replaces the detector's rule (e.g. another threshold)."""
        decision = decision or self.decision
        if image_a.shape != image_b.shape:
            raise InputError(f"the two dates differ in size: {image_a.shape[1]}x{image_a.shape[0]} vs "
                             f"{image_b.shape[1]}x{image_b.shape[0]} (width x height)")
        text_a = None if text_a is None else torch.as_tensor(np.asarray(text_a, dtype=np.float32))
        text_b = None if text_b is None else torch.as_tensor(np.asarray(text_b, dtype=np.float32))
        height, width = image_a.shape[:2]
        probs = np.empty((height, width), dtype=np.float32)
        index = np.empty((height, width), dtype=np.uint8)

        def emit(y0: int, rows: np.ndarray) -> None:
            prob, classes = decision.decide(rows)
            probs[y0:y0 + len(prob)], index[y0:y0 + len(prob)] = prob, classes

        self.stream_logits(lambda y, h: image_a[y:y + h], lambda y, h: image_b[y:y + h], self.grid(height, width),
                           emit, text_a, text_b, progress)
        return probs, index

    # ----------------------------------------------------------------------------------------------
    # the public one-call API

    def probabilities(self, image_a: np.ndarray, image_b: np.ndarray,
                      captions: Sequence[str] | None = None) -> np.ndarray:
        """Change probabilities ``[H, W]`` of two uint8 RGB arrays; text models use ``captions`` or caption on the fly."""
        text_a = text_b = None
        if self.uses_text:
            if captions is None:
                text_a, text_b, _ = self.text_embeddings(ArraySource(image_a, "image A").thumbnail(CAPTION_SIDE),
                                                         ArraySource(image_b, "image B").thumbnail(CAPTION_SIDE))
            else:
                text_a, text_b, _ = self.text_embeddings(captions=captions)
        return self.probability_map(image_a, image_b, text_a, text_b)

    def predict(self, image_a: ImageInput, image_b: ImageInput, captions: Sequence[str] | None = None,
                progress: ProgressCallback | None = None) -> Prediction:
        """Probability map and mask of a pair given as paths, PIL images or uint8 arrays (any size).

        GeoTIFF paths keep their georeference in the result. Text models use ``captions`` (both
        dates), else the detector's captions file, else caption the images on the fly.
        """
        path_a, path_b = _path_of(image_a), _path_of(image_b)
        sources = _as_sources([image_a, image_b], self.warn, self.imagery, self.meta.model.in_channels)
        with sources[0] as source_a, sources[1] as source_b:
            georef = check_pair(source_a, source_b, path_a, path_b)
            if captions is not None and self.uses_text:
                text_a, text_b, used = self.text_embeddings(captions=captions)
            else:
                text_a, text_b, used = self.source_text(source_a, source_b, path_a, path_b)
            height, width = source_a.height, source_a.width
            probs = np.empty((height, width), dtype=np.float32)
            index = np.empty((height, width), dtype=np.uint8)

            def emit(y0: int, rows: np.ndarray) -> None:
                prob, classes = self.decision.decide(rows)
                probs[y0:y0 + len(prob)], index[y0:y0 + len(prob)] = prob, classes

            self.stream_logits(source_a.read_rows, source_b.read_rows, self.grid(height, width), emit, text_a, text_b,
                               progress)
        classes = self.decision.values(index) if self.decision.multiclass else None
        return Prediction(probs, index > 0, self.threshold, georef, used, classes)


def detector_imagery(meta: CheckpointMeta, settings: DetectorSettings) -> Imagery:
    """The bands and radiometric rule a model reads files with: its checkpoint's, with ``settings.bands`` applied."""
    return meta.imagery.with_bands(parse_bands(settings.bands))


def check_pair(source_a: RasterSource, source_b: RasterSource, path_a: Path | None = None,
               path_b: Path | None = None) -> GeoReference | None:
    """Check that two dates can be compared (same size, same CRS and transform); returns their georeference."""
    name_a, name_b = path_a or Path(source_a.name), path_b or Path(source_b.name)
    if (source_a.height, source_a.width) != (source_b.height, source_b.width):
        raise InputError(f"size mismatch: {name_a} is {source_a.width}x{source_a.height} but {name_b} is "
                         f"{source_b.width}x{source_b.height} (width x height); the two dates must be "
                         f"co-registered images of the same size")
    return check_same_georeference(source_a.georef, source_b.georef, name_a, name_b)


def _path_of(image: ImageInput) -> Path | None:
    return Path(image) if isinstance(image, (str, Path)) else None


def _as_sources(images: Sequence[ImageInput], warn: Warn, imagery: Imagery, channels: int) -> list[RasterSource]:
    """Open sources for the dates: paths together (one radiometric scale), arrays and PIL images as they are."""
    if all(isinstance(image, (str, Path)) for image in images):
        return open_sources([Path(image) for image in images], warn, imagery)  # type: ignore[arg-type]
    if any(isinstance(image, (str, Path)) for image in images):
        raise InputError("give both dates as paths or both as arrays/PIL images, so that one radiometric rule "
                         "reads them")
    names = ["image A", "image B"]
    return [_as_source(image, name, channels) for image, name in zip(images, names)]


def _as_source(image: ImageInput, name: str, channels: int = 3) -> RasterSource:
    """An open :class:`RasterSource` for a PIL image or a uint8 ``[H, W, C]`` (or ``[H, W]``) array."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise InputError(f"{name} is a {array.dtype} array; give uint8 RGB pixels (0-255)")
    if array.ndim == 2 and channels == 3:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != channels:
        raise InputError(f"{name} has shape {array.shape}; this model reads {channels} bands: give an "
                         f"[H, W, {channels}] array" + (" (RGB)" if channels == 3 else " scaled to 0-255"))
    return ArraySource(np.ascontiguousarray(array), name)
