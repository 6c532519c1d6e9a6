"""Reading and writing ordinary images (PNG, JPEG, TIFF) as uint8 arrays, with clear errors.

Grayscale, palette, RGBA and 16-bit inputs are converted to 8-bit RGB; each conversion is reported
through the ``warn`` callback (one line) so that the CLI can show it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mmchange_core.errors import InputError
from mmchange_core.io.atomic import atomic_path

Warn = Callable[[str], None]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

Image.MAX_IMAGE_PIXELS = None  # large scenes are expected; memory is managed by the callers


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise InputError(f"image not found: {path}")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path} ({exc}); check that it is a valid PNG, JPEG or TIFF") from exc
    return img


def stretch_to_uint8(values: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """Linearly map the ``low_pct``..``high_pct`` percentile range of ``values`` to 0..255."""
    values = values.astype(np.float64)
    lo, hi = np.percentile(values, [low_pct, high_pct])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((values - lo) * (255.0 / (hi - lo)), 0, 255).round().astype(np.uint8)


def read_rgb(path: str | Path, warn: Warn | None = None) -> np.ndarray:
    """An image as uint8 ``[H, W, 3]`` RGB; non-RGB inputs are converted with a one-line warning."""
    path = Path(path)
    img = _open(path)
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        if warn:
            warn(f"{path.name}: {mode} (high bit depth) image scaled to 8-bit RGB with a 1-99% stretch")
        gray = stretch_to_uint8(np.asarray(img))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        if warn:
            warn(f"{path.name}: {mode} image converted to RGB (alpha channel dropped)")
    elif mode in ("L", "1", "P"):
        if warn:
            warn(f"{path.name}: {'grayscale' if mode != 'P' else 'palette'} image converted to RGB")
    elif warn:
        warn(f"{path.name}: {mode} image converted to RGB")
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_mask(path: str | Path, threshold: int = 128) -> np.ndarray:
    """A change label as bool ``[H, W]``: values >= ``threshold`` (on 0..255) count as change."""
    path = Path(path)
    img = _open(path)
    values = np.asarray(img)
    if values.ndim == 3:
        values = values[..., 0]
    if values.dtype == np.bool_:
        return values.copy()
    if values.dtype != np.uint8:
        values = np.clip(values, 0, 255)
    return values >= threshold


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image without decoding its pixels."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read image {path} ({exc}); check that it is a valid PNG, JPEG or TIFF") from exc


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 ``[H, W]`` or ``[H, W, 3]`` array (or a bool mask as 0/255) as PNG, atomically."""
    path = Path(path)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
    return path
