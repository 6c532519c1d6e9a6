"""Large images as row sources and row writers, so prediction never holds a scene as floats.

Sources hand out full-width strips of uint8 RGB rows: PNG/JPEG (and plain TIFF without rasterio)
are decoded once into a uint8 array, on the first read, so opening reads headers only and a pair
is compared (size, georeference) before any pixel is decoded; TIFF/GeoTIFF go through rasterio
windows and are never read whole. Every source checks the file type and the pixel limit of
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
from mmchange_core.io.images import (
    Warn,
    check_pixels,
    check_regular_file,
    image_size,
    is_tiff,
    read_rgb,
    scale_to_uint8,
    stretch_range,
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
    """An RGB image read by full-width strips: ``read_rows(y0, h) -> uint8 [h, width, 3]``."""

    name: str
    height: int
    width: int
    georef: GeoReference | None = None

    def read_rows(self, y0: int, height: int) -> np.ndarray:
        """Rows ``y0 .. y0 + height`` as uint8 ``[height, width, 3]``."""
        raise NotImplementedError

    def thumbnail(self, max_side: int = OVERVIEW_SIDE) -> np.ndarray:
        """The whole image as uint8 RGB, downsampled (area average) so its longest side is <= ``max_side``."""
        raise NotImplementedError

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


def _thumbnail_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class ArraySource(RasterSource):
    """An in-memory uint8 ``[H, W, 3]`` image (decoded PNG/JPEG, or an array from the caller)."""

    def __init__(self, array: np.ndarray, name: str = "array") -> None:
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise InputError(f"{name}: expected a uint8 [H, W, 3] RGB array, got {array.dtype} {list(array.shape)}")
        self.array = array
        self.name = name
        self.height, self.width = array.shape[:2]

    def read_rows(self, y0: int, height: int) -> np.ndarray:
        return self.array[y0:y0 + height]

    def thumbnail(self, max_side: int = OVERVIEW_SIDE) -> np.ndarray:
        h, w = _thumbnail_size(self.height, self.width, max_side)
        if (h, w) == (self.height, self.width):
            return self.array
        return np.asarray(Image.fromarray(self.array).resize((w, h), Image.Resampling.BOX))


class DecodedSource(ArraySource):
    """A PNG/JPEG (or a plain TIFF without rasterio): size from the header at open, decoded on the first read."""

    def __init__(self, path: Path, warn: Warn | None = None) -> None:
        self.path = path
        self.name = path.name
        self.warn = warn
        self.height, self.width = image_size(path)

    @cached_property
    def array(self) -> np.ndarray:  # type: ignore[override]
        """The decoded uint8 ``[H, W, 3]`` pixels."""
        array = read_rgb(self.path, self.warn)
        if array.shape[:2] != (self.height, self.width):
            raise InputError(f"{self.path} changed while it was read (now {array.shape[1]}x{array.shape[0]}, "
                             f"was {self.width}x{self.height}); run the command again")
        return array


class RasterioSource(RasterSource):
    """A TIFF/GeoTIFF read through rasterio windows, converted to 8-bit RGB on the fly.

    Single-band images are repeated to RGB, an alpha band is dropped, extra bands are ignored (the
    first three are RGB) and non-uint8 data is stretched linearly from its 1st to 99th percentile
    (taken on a decimated read of the whole image) to 0..255. NaN and nodata pixels of such data are
    left out of the percentiles and become 0; an image without any valid pixel is refused. Each
    conversion is reported once.
    """

    def __init__(self, path: Path, warn: Warn | None = None) -> None:
        rasterio = require_rasterio(f"reading {path}")
        from rasterio.enums import ColorInterp

        self.path = path
        self.name = path.name
        try:
            with warnings.catch_warnings():  # a plain TIFF is fine: it simply has no georeference
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                self.dataset = rasterio.open(path)
        except rasterio.errors.RasterioError as exc:
            raise InputError(f"cannot read image {path} ({exc}); check that it is a valid TIFF/GeoTIFF") from exc
        ds = self.dataset
        self.height, self.width = ds.height, ds.width
        try:
            check_pixels(path, self.height, self.width)
        except InputError:
            ds.close()
            raise
        self.georef = georeference_of(ds)
        notes = []
        colorinterp = list(ds.colorinterp)
        if ds.count in (1, 2):
            self.bands = [1, 1, 1]
            notes.append("grayscale image converted to RGB" + (" (alpha band dropped)" if ds.count == 2 else ""))
        elif ds.count == 4 and colorinterp[3] == ColorInterp.alpha:
            self.bands = [1, 2, 3]
            notes.append("RGBA image converted to RGB (alpha band dropped)")
        else:
            self.bands = [1, 2, 3]
            if ds.count > 3:
                notes.append(f"{ds.count}-band image: bands 1-3 used as RGB")
        self.dtype = np.dtype(ds.dtypes[0])
        self.scale: tuple[float, float] | None = None
        self.masked = self.dtype != np.uint8 and any(v is not None for v in ds.nodatavals)
        if self.dtype != np.uint8:
            try:
                self.scale = stretch_range(self._read(None, _thumbnail_size(self.height, self.width, OVERVIEW_SIDE)),
                                           str(path))
            except InputError:
                ds.close()
                raise
            notes.append(f"{self.dtype} (high bit depth) image scaled to 8-bit with a 1-99% stretch")
        if notes and warn:
            warn(f"{self.name}: " + "; ".join(notes))

    def _read(self, window: Any, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        from rasterio.enums import Resampling

        unique = sorted(set(self.bands))
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
        return np.moveaxis(data, 0, -1)[..., [unique.index(b) for b in self.bands]]

    def _to_uint8(self, data: np.ndarray) -> np.ndarray:
        if self.scale is None:
            return np.ascontiguousarray(data, dtype=np.uint8)
        return scale_to_uint8(data, *self.scale)

    def read_rows(self, y0: int, height: int) -> np.ndarray:
        from rasterio.windows import Window

        return self._to_uint8(self._read(Window(0, y0, self.width, height)))

    def thumbnail(self, max_side: int = OVERVIEW_SIDE) -> np.ndarray:
        return self._to_uint8(self._read(None, _thumbnail_size(self.height, self.width, max_side)))

    @cached_property
    def _all_valid(self) -> bool:
        """No nodata value, mask or alpha band on the RGB bands, and no float data that could hold NaN."""
        from rasterio.enums import MaskFlags

        return self.dtype.kind != "f" and all(self.dataset.mask_flag_enums[b - 1] == [MaskFlags.all_valid]
                                              for b in set(self.bands))

    def read_valid(self, y0: int, height: int) -> np.ndarray | None:
        """Valid pixels from the file's nodata value, internal/external mask or alpha band, and NaN.

        A pixel is invalid where every RGB band is masked (GDAL's per-dataset rule) or any is NaN.
        """
        if self._all_valid:
            return None
        from rasterio.windows import Window

        window = Window(0, y0, self.width, height)
        bands = sorted(set(self.bands))
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


def open_source(path: str | Path, warn: Warn | None = None) -> RasterSource:
    """Open an image for strip reading: TIFFs through rasterio when installed, everything else decoded once.

    Without rasterio a GeoTIFF raises an :class:`InputError` naming the ``geo`` extra; a TIFF
    without geo tags is decoded by Pillow.
    """
    path = Path(path)
    check_regular_file(path)
    if is_tiff(path):
        if rasterio_available():
            return RasterioSource(path, warn)
        if has_geotiff_tags(path):
            require_rasterio(f"GeoTIFF input {path}")
    return DecodedSource(path, warn)


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
