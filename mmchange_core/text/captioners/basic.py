"""``basic``: an offline, deterministic fallback captioner from pixel statistics (not a language model).

It needs no weights. Each pixel of a (downsampled) RGB image is put in one of four land-cover
classes by simple colour rules on hue, saturation and luminance: water (blue to cyan, not bright),
vegetation (green to yellow-green), built-up (cool grey, white, red or bright-blue surfaces such as
roofs, concrete and asphalt, and deep shadows) and bare land (the rest: warm grey and brown soil,
sand, dry fields). The sentence gives the four shares, the brightness and the texture
(mean luminance gradient) as words *and* numbers, for example::

    Mostly built-up area. Vegetation about 12 percent, water about 0 percent, built-up area about
    61 percent, bare land about 27 percent; medium brightness (brightness 41 percent), highly
    textured (texture 58 percent).

The ``hashing`` text encoder reads each number together with the words before it ("built-up
area" + 61), so two dates whose land-cover mix differs get clearly different text features. The
colour rules are approximate: they describe colour classes, not verified land cover, which is why
this captioner is documented as a fallback for offline use, tests and demos, never as a VLM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mmchange_core.errors import MMChangeError
from mmchange_core.text.config import CaptionerConfig

MODEL_ID = "pixel-statistics"
#: Images are reduced (by striding, deterministically) to at most this side before the statistics.
MAX_SIDE = 256
#: Mean absolute luminance gradient (0..1 scale) that counts as 100 percent texture.
TEXTURE_FULL_SCALE = 0.25


@dataclass(frozen=True)
class PixelStatistics:
    """Shares of the four colour classes, brightness and texture, all in percent (0..100)."""

    vegetation: float
    water: float
    built_up: float
    bare: float
    brightness: float
    texture: float

    def shares(self) -> dict[str, float]:
        """The four land-cover shares by their sentence names."""
        return {"vegetation": self.vegetation, "water": self.water, "built-up area": self.built_up,
                "bare land": self.bare}


def _hue_degrees(r: np.ndarray, g: np.ndarray, b: np.ndarray, high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """HSV hue in degrees (0..360); 0 where the pixel is grey."""
    delta = np.maximum(high - low, 1e-6)
    hue = np.where(high == r, ((g - b) / delta) % 6.0,
                   np.where(high == g, (b - r) / delta + 2.0, (r - g) / delta + 4.0))
    return np.where(high - low < 1e-6, 0.0, hue * 60.0)


def _downsample(image: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil(max(image.shape[:2]) / MAX_SIDE)))
    return image[::step, ::step]


def pixel_statistics(image: np.ndarray) -> PixelStatistics:
    """Land-cover shares, brightness and texture of a uint8 ``[H, W, 3]`` RGB image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise MMChangeError(f"the basic captioner needs an RGB image [H, W, 3], got shape {tuple(image.shape)}")
    rgb = _downsample(image).astype(np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    lum = 0.299 * r + 0.587 * g + 0.114 * b
    high, low = rgb.max(axis=2), rgb.min(axis=2)
    saturation = (high - low) / np.maximum(high, 1e-6)
    hue = _hue_degrees(r, g, b, high, low)

    coloured = saturation >= 0.12
    water = (hue >= 165) & (hue < 260) & (saturation >= 0.1) & (lum < 0.6)
    vegetation = ~water & coloured & (hue >= 65) & (hue < 165)
    # Built-up: cool-grey or white surfaces (roofs, concrete, asphalt; warm grey is soil), bright or blue roofs
    # left over from the water rule, red roofs, and deep shadows.
    neutral = (saturation < 0.12) & (lum > 0.3) & (r - b < 0.025)
    red = coloured & ((hue >= 330) | (hue < 12)) & (saturation >= 0.3)
    built = ~water & ~vegetation & (neutral | (lum > 0.7) | red | (lum <= 0.1) | ((hue >= 165) & (hue < 260)))
    total = float(lum.size)

    grad_x = np.abs(np.diff(lum, axis=1)).mean() if lum.shape[1] > 1 else 0.0
    grad_y = np.abs(np.diff(lum, axis=0)).mean() if lum.shape[0] > 1 else 0.0
    texture = min(1.0, 0.5 * float(grad_x + grad_y) / TEXTURE_FULL_SCALE)
    veg, wat, bui = (100.0 * float(m.sum()) / total for m in (vegetation, water, built))
    return PixelStatistics(vegetation=veg, water=wat, built_up=bui, bare=max(0.0, 100.0 - veg - wat - bui),
                           brightness=100.0 * float(lum.mean()), texture=100.0 * texture)


#: (upper bound in percent, word) bands that put brightness and texture into words.
BRIGHTNESS_WORDS = ((30.0, "dark"), (60.0, "medium brightness"), (math.inf, "bright"))
TEXTURE_WORDS = ((20.0, "smooth"), (45.0, "moderately textured"), (math.inf, "highly textured"))


def _in_words(value: float, bands: tuple[tuple[float, str], ...]) -> str:
    return next(word for bound, word in bands if value < bound)


def _headline(shares: dict[str, float]) -> str:
    ranked = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))
    (first, first_share), (second, second_share) = ranked[0], ranked[1]
    if first_share >= 50:
        return f"Mostly {first}."
    if second_share >= 20:
        return f"Mixed {first} and {second}."
    return f"Mainly {first}."


def describe_statistics(stats: PixelStatistics) -> str:
    """The deterministic sentence for a set of pixel statistics."""
    shares = stats.shares()
    parts = ", ".join(f"{name} about {round(value)} percent" for name, value in shares.items())
    parts = parts[0].upper() + parts[1:]
    return (f"{_headline(shares)} {parts}; {_in_words(stats.brightness, BRIGHTNESS_WORDS)} "
            f"(brightness {round(stats.brightness)} percent), {_in_words(stats.texture, TEXTURE_WORDS)} "
            f"(texture {round(stats.texture)} percent).")


class BasicCaptioner:
    """Deterministic captions from pixel statistics; needs no model and no weights."""

    def __init__(self, model: str = MODEL_ID) -> None:
        if model != MODEL_ID:
            raise MMChangeError(f"the basic captioner has no model '{model}'; leave --model unset for it")

    @classmethod
    def from_config(cls, config: CaptionerConfig, device: torch.device) -> BasicCaptioner:
        """The registry's factory: only ``config.model`` matters (no weights, any device)."""
        return cls(config.resolved_model)

    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        """One sentence per uint8 RGB image."""
        return [describe_statistics(pixel_statistics(image)) for image in images]
