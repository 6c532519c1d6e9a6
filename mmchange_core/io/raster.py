"""Large images as row sources and row writers, so prediction never holds a scene as floats.

Sources hand out full-width strips of uint8 rows of the chosen bands (RGB by default; bands and the
radiometric rule of :mod:`mmchange_core.io.imagery`, one scale for the dates opened together):
8-bit PNG/JPEG (and plain TIFF without rasterio) are decoded once, on the first read, so opening
reads headers only and a pair is compared (size, georeference) before any pixel is decoded;
TIFF/GeoTIFF go through rasterio windows and are never read whole. Every source checks the file type and the pixel limit of
:mod:`mmchange_core.io.images` when it is opened. Writers take rows in any order into an on-disk
stage (:mod:`mmchange_core.io.cog`) that becomes a Cloud-Optimized GeoTIFF, streamed, or a PNG/JPEG
(or a plain TIFF without rasterio), written whole by Pillow. Every output is written atomically.
"""

from __future__ import annotations

import warnings
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from mmchange_core.errors import InputError
from mmchange_core.io.cog import PIL_FORMATS, StagedRaster, write_with_pillow
from mmchange_core.io.outputs import check_output_suffix
from mmchange_core.io.geo import (
    GeoReference,
    georeference_of,
    has_geotiff_tags,
    rasterio_available,
    require_rasterio,
)
from mmchange_core.io.imagery import RGB_NAMES, BandPlan, Imagery, Radiometry, Scale, plan_bands, plan_scales
from mmchange_core.io.images import (
    HIGH_BIT_DEPTH_DTYPES,
    HIGH_BIT_DEPTH_MODES,
    Warn,
    check_pixels,
    check_regular_file,
    is_tiff,
    open_header,
    read_raw,
)

#: Largest side of the decimated read used for statistics (bit-depth stretch) and thumbnails.
OVERVIEW_SIDE = 1024
#: GDAL's block cache while reading (MiB). GDAL's default (5% of the RAM) keeps every decoded block of every
#: input, so reading a scene by strips held it whole, once per date; strips need only the block row they
#: share with the next strip.
READ_CACHE_MB = 128


def bounded_block_cache() -> Any:
    """A rasterio environment whose GDAL block cache holds at most :data:`READ_CACHE_MB`."""
    import rasterio

    return rasterio.Env(GDAL_CACHEMAX=READ_CACHE_MB)


class RasterSource:
    """An image read by full-width strips: ``read_rows(y0, h) -> uint8 [h, width, C]`` of its chosen bands.

    ``plan`` says which file bands are read (and which of them are shown as RGB); ``dtype`` is the file's
    data type; ``scale`` (None: 8-bit values as they are) maps raw values to 8 bits, the same for every
    date opened together by :func:`open_sources` (see :mod:`mmchange_core.io.imagery`).
    """

    name: str
    height: int
    width: int
    georef: GeoReference | None = None
    dtype: np.dtype = np.dtype(np.uint8)
    plan: BandPlan = BandPlan((1, 2, 3), (0, 1, 2))
    _scales: _ScaleGroup | None = None
    _index: int = 0

    @property
    def channels(self) -> int:
        """Bands handed out by :meth:`read_rows`."""
        return len(self.plan.bands)

    @property
    def scale(self) -> Scale | None:
        """The radiometric scale of this date (planned at open, shared with the dates opened with it)."""
        return None if self._scales is None else self._scales.scale(self._index)

    def raw_rows(self, y0: int, height: int) -> np.ndarray:
        """Rows ``y0 .. y0 + height`` of the chosen bands as stored (``[height, width, C]``; NaN where invalid)."""
        raise NotImplementedError

    def raw_overview(self, max_side: int = OVERVIEW_SIDE) -> np.ndarray:
        """The chosen bands as stored, downsampled (area average) so the longest side is <= ``max_side``."""
        raise NotImplementedError

    def to_uint8(self, raw: np.ndarray) -> np.ndarray:
        """``raw`` values of this date through its radiometric scale."""
        scale = self.scale
        return np.ascontiguousarray(raw, dtype=np.uint8) if scale is None else scale.apply(raw)

    def read_rows(self, y0: int, height: int) -> np.ndarray:
        """Rows ``y0 .. y0 + height`` as uint8 ``[height, width, C]``."""
        return self.to_uint8(self.raw_rows(y0, height))

    def thumbnail(self, max_side: int = OVERVIEW_SIDE) -> np.ndarray:
        """The whole image as uint8 RGB (its red, green and blue bands), downsampled to ``max_side``."""
        return np.ascontiguousarray(self.to_uint8(self.raw_overview(max_side))[..., list(self.plan.rgb)])

    def read_valid(self, y0: int, height: int) -> np.ndarray | None:
        """Which pixels of rows ``y0 .. y0 + height`` hold data (bool ``[height, width]``); ``None``: all of them.

        Decoded images (PNG/JPEG) are always fully valid.
        """
        return None

    def close(self) -> None:
        """Release the file handle (if any)."""

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ScaleGroup:
    """The radiometric scales of dates opened together, planned at open (a refusal comes before any work)."""

    def __init__(self, sources: list[RasterSource], radiometry: Radiometry) -> None:
        names = [s.name for s in sources]
        dtypes = [s.dtype for s in sources]
        rule = radiometry.rule_for(dtypes[0])
        views = [s.raw_overview() for s in sources] if rule in ("joint", "per-image") else None
        self.scales = plan_scales(names, dtypes, views, sources[0].channels, radiometry)

    def scale(self, index: int) -> Scale | None:
        return self.scales[index]


def _thumbnail_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class ArraySource(RasterSource):
    """An in-memory uint8 ``[H, W, C]`` image (an array from the caller, bands already chosen and scaled)."""

    def __init__(self, array: np.ndarray, name: str = "array") -> None:
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] < 1:
            raise InputError(f"{name}: expected a uint8 [H, W, bands] array (RGB: 3 bands), got {array.dtype} "
                             f"{list(array.shape)}")
        self.array = array
        self.name = name
        self.height, self.width = array.shape[:2]
        bands = array.shape[2]
        self.plan = BandPlan(tuple(range(1, bands + 1)), (0, 1, 2) if bands >= 3 else (0, 0, 0))

    def raw_rows(self, y0: int, height: int) -> np.ndarray:
        return self.array[y0:y0 + height]

    def raw_overview(self, max_side: int = OVERVIEW_SIDE) -> np.ndarray:
        return _resize_box(self.array, max_side)


def _resize_box(array: np.ndarray, max_side: int) -> np.ndarray:
    """``array`` ``[H, W, C]`` area-averaged so its longest side is <= ``max_side`` (itself when it already is)."""
    height, width = array.shape[:2]
    h, w = _thumbnail_size(height, width, max_side)
    if (h, w) == (height, width):
        return array
    if array.dtype == np.uint8 and array.shape[2] == 3:  # RGB in one call
        return np.asarray(Image.fromarray(array).resize((w, h), Image.Resampling.BOX))
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(array[..., c], dtype=np.float32))
                         .resize((w, h), Image.Resampling.BOX)) for c in range(array.shape[2])]
    stacked = np.stack(planes, axis=-1)
    return stacked.round().astype(np.uint8) if array.dtype == np.uint8 else stacked


class DecodedSource(RasterSource):
    """A PNG/JPEG (or a plain TIFF without rasterio): size from the header at open, decoded on the first read.

    8-bit images are decoded to RGB (grey, palette and alpha converted with a note); high-bit-depth grey
    images keep their values for the radiometric rule.
    """

    def __init__(self, path: Path, warn: Warn | None = None, imagery: Imagery | None = None) -> None:
        self.path = path
        self.name = path.name
        self.warn = warn
        with open_header(path) as img:
            self.height, self.width = img.height, img.width
            mode = img.mode
        self.high_bit_depth = mode in HIGH_BIT_DEPTH_MODES
        self.dtype = np.dtype(HIGH_BIT_DEPTH_DTYPES.get(mode, np.uint8))
        count, colours = (1, ["gray"]) if self.high_bit_depth else (3, list(RGB_NAMES))
        self.plan = plan_bands(self.name, count, colours, imagery or Imagery())
        if self.high_bit_depth and self.plan.note and warn:  # 8-bit conversions are reported when decoded
            warn(f"{self.name}: {self.plan.note}")

    @cached_property
    def array(self) -> np.ndarray:
        """The decoded pixels: uint8 ``[H, W, 3]`` RGB, or the values ``[H, W, 1]`` of a high-bit-depth image."""
        array = read_raw(self.path, self.warn)
        if array.shape[:2] != (self.height, self.width):
            raise InputError(f"{self.path} changed while it was read (now {array.shape[1]}x{array.shape[0]}, "
                             f"was {self.width}x{self.height}); run the command again")
        return array

    def _chosen(self, array: np.ndarray) -> np.ndarray:
        bands = list(self.plan.bands)
        return array if bands == list(range(1, array.shape[2] + 1)) else array[..., [b - 1 for b in bands]]

    def raw_rows(self, y0: int, height: int) -> np.ndarray:
        return self._chosen(self.array[y0:y0 + height])

    def raw_overview(self, max_side: int = OVERVIEW_SIDE) -> np.ndarray:
        return self._chosen(_resize_box(self.array, max_side))


def _open_dataset(path: Path) -> Any:
    """``path`` opened by rasterio (a plain TIFF simply has no georeference), or a one-line InputError."""
    rasterio = require_rasterio(f"reading {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioError as exc:
        raise InputError(f"cannot read image {path} ({exc}); check that it is a valid TIFF/GeoTIFF") from exc


class RasterioSource(RasterSource):
    """A TIFF/GeoTIFF read through rasterio windows, its chosen bands scaled to 8 bits on the fly.

    Bands follow :func:`~mmchange_core.io.imagery.plan_bands`; non-uint8 data goes through the
    radiometric rule (NaN and nodata pixels are left out of percentiles and become 0; an image without
    any valid pixel is refused). Each conversion is reported once.
    """

    def __init__(self, path: Path, warn: Warn | None = None, imagery: Imagery | None = None) -> None:
        self.path = path
        self.name = path.name
        self.dataset = ds = _open_dataset(path)
        try:
            self.height, self.width = ds.height, ds.width
            check_pixels(path, self.height, self.width)
            self.georef = georeference_of(ds)
            #: Bands holding data (an alpha band is not one): what the dates of a place must agree on.
            self.count = ds.count - sum(1 for c in ds.colorinterp if c.name == "alpha")
            self.plan = plan_bands(self.name, ds.count, [c.name for c in ds.colorinterp], imagery or Imagery())
            self.dtype = np.dtype(ds.dtypes[0])
        except InputError:
            ds.close()
            raise
        self.masked = self.dtype != np.uint8 and any(v is not None for v in ds.nodatavals)
        notes = [self.plan.note] if self.plan.note else []
        if notes and warn:
            warn(f"{self.name}: " + "; ".join(notes))

    def _read(self, window: Any, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        from rasterio.enums import Resampling

        unique = sorted(set(self.plan.bands))
        kwargs: dict[str, Any] = {"window": window}
        if out_shape is not None:
            kwargs.update(out_shape=(len(unique), *out_shape), resampling=Resampling.average)
        try:
            with bounded_block_cache():
                data = self.dataset.read(unique, masked=self.masked, **kwargs)
        except Exception as exc:  # rasterio raises several types for corrupt blocks
            raise InputError(f"cannot read pixels of {self.path} ({exc}); "
                             f"the file may be truncated or corrupt") from exc
        if self.masked:  # nodata pixels become NaN, treated like NaN pixels of float data
            data = data.astype(np.float32).filled(np.nan)
        return np.moveaxis(data, 0, -1)[..., [unique.index(b) for b in self.plan.bands]]

    def raw_rows(self, y0: int, height: int) -> np.ndarray:
        from rasterio.windows import Window

        return self._read(Window(0, y0, self.width, height))

    def raw_overview(self, max_side: int = OVERVIEW_SIDE) -> np.ndarray:
        return self._read(None, _thumbnail_size(self.height, self.width, max_side))

    @cached_property
    def _all_valid(self) -> bool:
        """No nodata value, mask or alpha band on the chosen bands, and no float data that could hold NaN."""
        from rasterio.enums import MaskFlags

        return self.dtype.kind != "f" and all(self.dataset.mask_flag_enums[b - 1] == [MaskFlags.all_valid]
                                              for b in set(self.plan.bands))

    def read_valid(self, y0: int, height: int) -> np.ndarray | None:
        """Valid pixels from the file's nodata value, internal/external mask or alpha band, and NaN.

        A pixel is invalid where every chosen band is masked (GDAL's per-dataset rule) or any is NaN.
        """
        if self._all_valid:
            return None
        from rasterio.windows import Window

        window = Window(0, y0, self.width, height)
        bands = sorted(set(self.plan.bands))
        try:
            with bounded_block_cache():
                valid = self.dataset.read_masks(bands, window=window).any(axis=0)
                if self.dtype.kind == "f":
                    valid &= ~np.isnan(self.dataset.read(bands, window=window)).any(axis=0)
        except Exception as exc:  # rasterio raises several types for corrupt blocks
            raise InputError(f"cannot read pixels of {self.path} ({exc}); "
                             f"the file may be truncated or corrupt") from exc
        return None if valid.all() else valid

    def close(self) -> None:
        self.dataset.close()


def _open_one(path: Path, warn: Warn | None, imagery: Imagery) -> RasterSource:
    check_regular_file(path)
    if is_tiff(path):
        if rasterio_available():
            return RasterioSource(path, warn, imagery)
        if has_geotiff_tags(path):
            require_rasterio(f"GeoTIFF input {path}")
    return DecodedSource(path, warn, imagery)


def read_band_plan(path: str | Path, imagery: Imagery | None = None) -> BandPlan:
    """Which bands of ``path`` ``imagery`` reads (headers only: no radiometric scale is planned, no pixel read);
    a band the file lacks raises the one-line error :func:`open_sources` gives."""
    source = _open_one(Path(path), None, imagery or Imagery())
    try:
        return source.plan
    finally:
        source.close()


def open_sources(paths: list[str | Path] | tuple[str | Path, ...], warn: Warn | None = None,
                 imagery: Imagery | None = None) -> list[RasterSource]:
    """Open the dates of one place for strip reading, with one band choice and one radiometric scale.

    TIFFs go through rasterio when installed, everything else is decoded once (without rasterio a
    GeoTIFF raises an :class:`InputError` naming the ``geo`` extra; a TIFF without geo tags is decoded
    by Pillow). Dates whose band counts (above 3) or data types differ are refused naming both files.
    The scale under the ``joint`` rule is computed over all dates, when they are opened (high-bit-depth PNGs are decoded then).
    """
    imagery = imagery or Imagery()
    sources: list[RasterSource] = []
    try:
        for path in paths:
            sources.append(_open_one(Path(path), warn, imagery))
        first = sources[0]
        for other in sources[1:]:
            counts = (getattr(first, "count", 3), getattr(other, "count", 3))
            if counts[0] != counts[1] and max(counts) > 3:
                raise InputError(f"{other.name} has {counts[1]} bands but {first.name} has {counts[0]}; every date "
                                 f"must have the same bands")
            if other.dtype != first.dtype:
                raise InputError(f"{other.name} holds {other.dtype} values but {first.name} holds {first.dtype}; "
                                 f"every date must have the same data type, so that one radiometric rule fits "
                                 f"them all")
        group = _ScaleGroup(sources, imagery.radiometry)
        for index, source in enumerate(sources):
            source._scales, source._index = group, index
        if first.dtype != np.uint8 and warn:
            rule = imagery.radiometry.rule_for(first.dtype)
            warn(f"{', '.join(s.name for s in sources)}: {first.dtype} data scaled to 8 bits by the {rule} "
                 f"radiometric rule ({imagery.radiometry.describe()})")
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources


def read_georeference(path: str | Path) -> GeoReference | None:
    """The georeference of an image file from its header (None: not georeferenced, or not a TIFF)."""
    path = Path(path)
    check_regular_file(path)
    if not (is_tiff(path) and rasterio_available()):
        if is_tiff(path) and has_geotiff_tags(path):
            require_rasterio(f"GeoTIFF input {path}")
        return None
    with _open_dataset(path) as dataset:
        return georeference_of(dataset)


def open_source(path: str | Path, warn: Warn | None = None, imagery: Imagery | None = None) -> RasterSource:
    """Open one image for strip reading (:func:`open_sources` of one date)."""
    return open_sources([path], warn, imagery)[0]


def read_images(paths: list[str | Path] | tuple[str | Path, ...], warn: Warn | None = None,
                imagery: Imagery | None = None) -> list[np.ndarray]:
    """The dates ``paths`` whole, as uint8 ``[H, W, C]``, through the same bands and scale as prediction reads."""
    sources = open_sources(paths, warn, imagery)
    try:
        return [np.ascontiguousarray(source.read_rows(0, source.height)) for source in sources]
    finally:
        for source in sources:
            source.close()


def read_composite(path: str | Path, warn: Warn | None = None, imagery: Imagery | None = None) -> np.ndarray:
    """One image whole as uint8 RGB (its red, green and blue bands under ``imagery``), e.g. for captions."""
    with open_source(path, warn, imagery) as source:
        return np.ascontiguousarray(source.read_rows(0, source.height)[..., list(source.plan.rgb)])


class RowWriter(Protocol):
    """Receives finished image rows (any order) and writes one image file at :meth:`close`."""

    def write(self, y0: int, rows: np.ndarray) -> None:
        """Store rows ``y0 .. y0 + len(rows)`` (``[h, W]`` or ``[h, W, bands]``)."""

    def close(self) -> Path:
        """Finish the file (atomically) and return its path."""

    def abort(self) -> None:
        """Drop a partly written file."""


def open_row_writer(path: str | Path, height: int, width: int, *, bands: int = 1, dtype: np.dtype | type = np.uint8,
                    georef: GeoReference | None = None) -> RowWriter:
    """A writer for ``path``: rows are staged on disk (:class:`~mmchange_core.io.cog.StagedRaster`) and
    finished as a Cloud-Optimized GeoTIFF (TIFF with rasterio) or by Pillow (PNG, JPEG)."""
    path = Path(path)
    check_output_suffix(path, "output", PIL_FORMATS)
    return StagedRaster.create(path, height, width, dtype, bands, georef=georef)


def write_image(path: str | Path, array: np.ndarray, georef: GeoReference | None = None) -> Path:
    """Write a whole array (uint8 gray/RGB, float32 gray for TIFF) by suffix, atomically.

    TIFF (with rasterio) is written as a Cloud-Optimized GeoTIFF through the one staged writer.
    """
    path = Path(path)
    if is_tiff(path) and (georef is not None or rasterio_available()):
        bands = 1 if array.ndim == 2 else array.shape[2]
        stage = StagedRaster.create(path, array.shape[0], array.shape[1], array.dtype, bands)
        try:
            stage.write(0, array)
            return stage.finish(georef)
        except BaseException:
            stage.abort()
            raise
    check_output_suffix(path, "output", PIL_FORMATS)
    return write_with_pillow(path, array)
