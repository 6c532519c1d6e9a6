"""Reading and writing ordinary images (PNG, JPEG, TIFF) as uint8 arrays, with clear errors and limits.

Every read starts from the header: the path must be a regular file (a FIFO, device or folder is
refused without opening it) and the image no larger than :func:`max_pixels`; only then are pixels
decoded. Grayscale, palette, RGBA and 16-bit inputs are converted to 8-bit RGB; each conversion is
reported through the ``warn`` callback (one line) so that the CLI can show it. Change labels of
every common format are read by :func:`read_mask` (rule in its docstring and in the README).
"""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mmchange_core.errors import InputError
from mmchange_core.io.classes import ClassScheme
from mmchange_core.io.atomic import atomic_path
from mmchange_core.io.imagery import percentile_ranges, scale_to_uint8

Warn = Callable[[str], None]
PNG_SUFFIXES = (".png",)
JPEG_SUFFIXES = (".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")
#: Images read as dataset or prediction inputs.
IMAGE_SUFFIXES = PNG_SUFFIXES + JPEG_SUFFIXES + TIFF_SUFFIXES + (".bmp",)

#: Environment variable that overrides :data:`DEFAULT_MAX_PIXELS`.
MAX_PIXELS_ENV = "MMCHANGE_MAX_PIXELS"
#: Largest image (height x width) accepted, checked on the header before any pixel is read: 2**29,
#: about 23170 x 23170, so a 20000 x 20000 scene passes. TIFFs read through rasterio stream by
#: windows; a PNG/JPEG/plain TIFF (or a label) is decoded whole, 3 bytes a pixel, 1.2 GB for a
#: 20000 x 20000 RGB PNG (plus a transient copy while converting).
DEFAULT_MAX_PIXELS = 2**29
_READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)
#: Pillow modes of high-bit-depth (grey) images: their values go through the radiometric rule.
HIGH_BIT_DEPTH_DTYPES = {"I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16, "I;16N": np.uint16,
                         "I": np.int32, "F": np.float32}
HIGH_BIT_DEPTH_MODES = tuple(HIGH_BIT_DEPTH_DTYPES)


def is_tiff(path: str | Path) -> bool:
    """Whether ``path`` has a TIFF suffix (the files that may carry GeoTIFF georeferencing)."""
    return Path(path).suffix.lower() in TIFF_SUFFIXES


def max_pixels() -> int:
    """The pixel limit: ``$MMCHANGE_MAX_PIXELS`` when set (a positive integer), else :data:`DEFAULT_MAX_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise InputError(f"{MAX_PIXELS_ENV}={text!r} is not a positive whole number of pixels; "
                         f"unset it (default {DEFAULT_MAX_PIXELS}) or give e.g. {MAX_PIXELS_ENV}=1000000000")
    return value


def _too_large(path: str | Path, size: str, pixels: int, limit: int) -> InputError:
    return InputError(f"{path} is {size}, above the limit of {limit:,} pixels, so it was not decoded; if the file "
                      f"is trusted and memory allows, raise the limit, e.g. {MAX_PIXELS_ENV}={pixels}")


def check_pixels(path: str | Path, height: int, width: int) -> None:
    """Raise an :class:`InputError` when a ``width`` x ``height`` image is above :func:`max_pixels`."""
    limit, pixels = max_pixels(), height * width
    if pixels > limit:
        raise _too_large(path, f"{width}x{height} ({pixels:,} pixels)", pixels, limit)


def check_regular_file(path: str | Path, what: str = "image") -> None:
    """Raise an :class:`InputError` unless ``path`` is a regular file (checked with stat: a FIFO is never opened)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise InputError(f"cannot access {what} {path} ({exc.strerror}); check the path and its permissions") from exc
    if stat.S_ISDIR(mode):
        raise InputError(f"{path} is a folder, not a file; give the path of the {what} file")
    if not stat.S_ISREG(mode):
        raise InputError(f"{path} is not a regular file (a FIFO, device or socket); give the path of the {what} file")


def _unreadable(path: Path, exc: BaseException) -> InputError:
    return InputError(f"cannot read image {path} ({exc}); check that it is a valid PNG, JPEG or TIFF")


def open_header(path: Path) -> Image.Image:
    """``path`` opened by Pillow with only its header read, after the file-type and pixel-limit checks.

    Every Pillow read goes through here; the caller closes the image (``with open_header(p) as img``).
    """
    check_regular_file(path)
    limit = max_pixels()
    Image.MAX_IMAGE_PIXELS = limit  # Pillow's own bomb check agrees with ours (it refuses at twice the limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # check_pixels below decides
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow's message carries the pixel count
        pixels = int(found.group(1)) if found else 2 * limit + 1
        raise _too_large(path, f"{pixels:,} pixels", pixels, limit) from exc
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    try:
        check_pixels(path, img.height, img.width)
    except InputError:
        img.close()
        raise
    return img


def _decode(path: Path) -> Image.Image:
    """``path`` fully decoded by Pillow (after the checks of :func:`open_header`)."""
    img = open_header(path)
    try:
        img.load()
    except _READ_ERRORS as exc:
        img.close()
        raise _unreadable(path, exc) from exc
    return img


def stretch_range(values: np.ndarray, name: str, low_pct: float = 1.0, high_pct: float = 99.0) -> tuple[float, float]:
    """The ``low_pct`` and ``high_pct`` percentiles of the finite ``values``: the range a stretch maps to 0..255.

    Raises an :class:`InputError` naming ``name`` when no value is finite (an all-NaN or all-nodata raster).
    """
    low, high = percentile_ranges([values.reshape(-1, 1)], (low_pct, high_pct), name)
    return float(low[0]), float(high[0])


def stretch_to_uint8(values: np.ndarray, name: str = "image") -> np.ndarray:
    """``values`` stretched linearly from their 1st to 99th percentile to 0..255 (see :func:`stretch_range`)."""
    return scale_to_uint8(values, *stretch_range(values, name))


def _rgb_array(img: Image.Image) -> np.ndarray:
    """``img`` as uint8 ``[H, W, 3]``, converted by strips of about 4 Mpx so no second whole-image copy is made."""
    out = np.empty((img.height, img.width, 3), np.uint8)
    step = max(1, 2**22 // max(1, img.width))
    for y in range(0, img.height, step):
        strip = img.crop((0, y, img.width, min(img.height, y + step)))
        out[y:y + step] = np.asarray(strip if strip.mode == "RGB" else strip.convert("RGB"))
    return out


def read_rgb(path: str | Path, warn: Warn | None = None) -> np.ndarray:
    """A picture as uint8 ``[H, W, 3]`` RGB (non-RGB converted with a one-line warning; high bit depth stretched
    per image). Network inputs are read through :func:`mmchange_core.io.raster.read_images` instead, which
    applies the band choice and one radiometric rule to every date."""
    path = Path(path)
    with _decode(path) as img:
        return _convert_rgb(path, img, warn)


def read_raw(path: str | Path, warn: Warn | None = None) -> np.ndarray:
    """An image's pixels for the network: uint8 ``[H, W, 3]`` RGB for 8-bit images (converted as
    :func:`read_rgb` does), the values ``[H, W, 1]`` of a high-bit-depth grey image."""
    path = Path(path)
    with _decode(path) as img:
        if img.mode in HIGH_BIT_DEPTH_MODES:
            return np.asarray(img)[..., None]
        return _convert_rgb(path, img, warn)


def _convert_rgb(path: Path, img: Image.Image, warn: Warn | None) -> np.ndarray:
    mode = img.mode
    if mode == "RGB":
        return _rgb_array(img)
    if mode in HIGH_BIT_DEPTH_MODES:
        if warn:
            warn(f"{path.name}: {mode} (high bit depth) image scaled to 8-bit RGB with a 1-99% stretch")
        gray = stretch_to_uint8(np.asarray(img), str(path))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        if warn:
            warn(f"{path.name}: {mode} image converted to RGB (alpha channel dropped)")
    elif mode in ("L", "1", "P"):
        if warn:
            warn(f"{path.name}: {'grayscale' if mode != 'P' else 'palette'} image converted to RGB")
    elif warn:
        warn(f"{path.name}: {mode} image converted to RGB")
    return _rgb_array(img)


def _label_values(img: Image.Image) -> tuple[np.ndarray, bool]:
    """One value per pixel of a label and whether they are packed RGB colours (65536 R + 256 G + B)."""
    if img.mode in ("1", "L", "P", *HIGH_BIT_DEPTH_MODES):  # palette: the index, as segmentation labels store it
        return np.asarray(img), False
    if img.mode in ("LA", "PA"):
        return np.asarray(img)[..., 0], False
    rgb = np.asarray(img if img.mode in ("RGB", "RGBA") else img.convert("RGB"))[..., :3]
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all():
        return rgb[..., 0], False
    return (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2], True


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a histogram, by strips, for 8/16-bit integers: faster than sorting, little memory)."""
    if values.dtype.kind not in "bu" or values.dtype.itemsize > 2:
        return np.unique(values)
    flat, counts = values.reshape(-1), np.zeros(256**values.dtype.itemsize, np.int64)
    for start in range(0, flat.size, 2**22):
        counts += np.bincount(flat[start:start + 2**22], minlength=counts.size)
    return np.flatnonzero(counts)


def _show(values: np.ndarray, colour: bool) -> str:
    shown = [f"({v >> 16}, {(v >> 8) & 255}, {v & 255})" if colour else f"{v:g}" for v in values[:8].tolist()]
    return ", ".join(shown) + (f", ... ({len(values)} values)" if len(values) > 8 else "")


def read_mask(path: str | Path, change_value: int | None = None) -> np.ndarray:
    """A change label as bool ``[H, W]`` (True = change), whatever its format.

    A label holds one value per pixel: the grey level (0/255, 0/1, 1-bit, 16-bit, float, GeoTIFF band
    1), the palette index of a palette PNG, or the colour of an RGB label (65536 R + 256 G + B). With
    ``change_value``, pixels equal to it are change. Otherwise a label must have at most two values:
    the larger one is change (0/255, 0/1, 1/2, black/white, black/red all work) and a single value is
    change unless it is 0. JPEG labels are lossy: they are read as grey and split at 128. A label with
    more than two values raises an :class:`InputError` naming the file and the values found.
    """
    path = Path(path)
    with _decode(path) as img:
        lossy = img.format == "JPEG"
        values, colour = (np.asarray(img.convert("L")), False) if lossy else _label_values(img)
    if values.dtype == np.bool_:
        values = values.view(np.uint8)
    if change_value is not None:
        return values == change_value
    if lossy:
        return values >= 128
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise InputError(f"label {path} contains NaN or infinite values; write it with 0 = no change and "
                         f"1 or 255 = change")
    found = _distinct(values)
    if len(found) > 2:
        raise InputError(f"label {path} has {len(found)} distinct values ({_show(found, colour)}), so which one "
                         f"means change is ambiguous; binarise it (0 = no change, 255 = change) or pass "
                         f"--change-value V to count only pixels equal to V as change")
    change = values == found[-1]
    if found[-1] == 0:  # a label of zeros only
        change[:] = False
    return change


def read_class_label(path: str | Path, classes: ClassScheme) -> np.ndarray:
    """A class label as class indices (uint8 ``[H, W]``, 0 = no change) of ``classes``.

    The label's values (grey level, palette index, or band 1 of a GeoTIFF) must be the class file's
    values; any other value is refused naming the file and the value. JPEG labels are refused (lossy
    compression invents values between classes).
    """
    path = Path(path)
    with _decode(path) as img:
        if img.format == "JPEG":
            raise InputError(f"label {path} is a JPEG, whose lossy compression changes class values; write class "
                             f"labels as PNG (grey or palette) or GeoTIFF")
        values, colour = _label_values(img)
    if colour:
        raise InputError(f"label {path} is an RGB colour image; write class labels with one value per pixel "
                         f"(grey or palette PNG, or GeoTIFF), the values of the class file")
    if values.dtype == np.bool_:
        values = values.view(np.uint8)
    return classes.labels_to_index(values, path)


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image from its header (pixels are not decoded; the pixel limit applies).

    TIFFs are read through rasterio when it is installed (a 13-band 16-bit GeoTIFF has no Pillow mode).
    """
    path = Path(path)
    if is_tiff(path) and importlib.util.find_spec("rasterio") is not None:
        import rasterio

        check_regular_file(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a plain TIFF simply has no georeference
                with rasterio.open(path) as dataset:
                    height, width = dataset.height, dataset.width
        except rasterio.errors.RasterioError as exc:
            raise InputError(f"cannot read image {path} ({exc}); check that it is a valid TIFF/GeoTIFF") from exc
        check_pixels(path, height, width)
        return height, width
    with open_header(path) as img:
        return img.height, img.width


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 ``[H, W]`` or ``[H, W, 3]`` array (or a bool mask as 0/255) as PNG, atomically."""
    path = Path(path)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
    return path


def write_palette_png(path: str | Path, values: np.ndarray, palette: Sequence[int],
                      text: Mapping[str, str] | None = None) -> Path:
    """Write a uint8 ``[H, W]`` class raster (label values) as a palette PNG (mode ``P``, ``palette`` a flat
    256 x RGB list indexed by value), atomically: the values stay readable as labels, the colours show the classes;
    ``text``: PNG text chunks (e.g. the class names)."""
    path = Path(path)
    values = np.asarray(values)
    if values.ndim != 2 or values.dtype != np.uint8:
        raise ValueError(f"a class raster is uint8 [H, W], got {values.dtype} {list(values.shape)}")
    image = Image.frombytes("P", (values.shape[1], values.shape[0]), np.ascontiguousarray(values).tobytes())
    image.putpalette(list(palette)[:768])
    options: dict[str, Any] = {}
    if text:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in text.items():
            info.add_itxt(key, value)
        options["pnginfo"] = info
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", **options)
    return path
