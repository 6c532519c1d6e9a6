"""How a file's pixels become the network's input: which bands, and one radiometric rule for every date.

Two settings travel together in :class:`Imagery` (in each checkpoint, in every command's config):

* **bands** (1-based, as GDAL counts): the file bands fed to the network, in order. Without them, a
  raster whose colour interpretation names red, green and blue gives those three; a 1- or 2-band raster
  is grey (repeated to RGB); a 3-band raster (or an RGBA one) is RGB; anything else is refused with one
  line naming ``--bands``: nothing silently takes bands 1-3. **rgb** names the file bands shown as red,
  green and blue (captions, thumbnails, overlays); without it, the bands coloured red, green and blue,
  else the first three chosen.
* **radiometry**: how values become the 8 bits the network sees, the same function for every date of a
  pair or series (:func:`scale_to_uint8` with one ``low``/``high`` per band):

  - ``none``: 8-bit data as it is (other data types are refused: they need a rule);
  - ``fixed``: ``low``..``high`` to 0..255 for every image (e.g. reflectance 0..10000, or 0..3000 to
    use the 8 bits on the visible range);
  - ``joint``: each band's ``percentiles`` (1-99 %) computed over all dates together, so a date that
    is brighter stays brighter instead of being stretched to look like the other;
  - ``per-image``: each image's own percentiles (only when asked: it erases real brightness changes);
  - ``auto`` (default): ``none`` for 8-bit data, ``joint`` otherwise.

Values are carried as 8 bits after the rule (the network's input precision): a fixed range of 0..10000
keeps steps of 0.4 % reflectance; ``joint`` or a narrower fixed range spend the 256 levels where the data is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmchange_core.errors import InputError

#: Radiometric rules (see the module docstring).
RULES = ("auto", "none", "fixed", "joint", "per-image")
#: Colour interpretations (rasterio ``ColorInterp`` names) that name the red, green and blue bands.
RGB_NAMES = ("red", "green", "blue")


def parse_bands(text: str | Sequence[int] | None, what: str = "--bands") -> tuple[int, ...] | None:
    """``"4,3,2"`` (or a sequence) as a tuple of 1-based band numbers; None stays None; bad text raises one line."""
    if text is None:
        return None
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    try:
        bands = tuple(int(v) for v in items if v != "")
    except (TypeError, ValueError):
        raise InputError(f"{what} {text!r} is not a list of band numbers; give 1-based numbers as GDAL counts, "
                         f"e.g. {what} 4,3,2") from None
    if not bands:
        raise InputError(f"{what} is empty; give 1-based band numbers, e.g. {what} 4,3,2")
    if any(b < 1 for b in bands):
        raise InputError(f"{what} {','.join(map(str, bands))}: band numbers start at 1 (as GDAL counts)")
    if len(set(bands)) != len(bands):
        raise InputError(f"{what} {','.join(map(str, bands))} repeats a band; give each band once")
    return bands


@dataclass(frozen=True)
class Radiometry:
    """One rule that maps every date's values to the network's 8 bits (see the module docstring)."""

    rule: str = "auto"
    #: ``fixed``: the values mapped to 0 and 255 (every band).
    low: float = 0.0
    high: float = 10000.0
    #: ``joint`` / ``per-image``: the percentiles mapped to 0 and 255.
    percentiles: tuple[float, float] = (1.0, 99.0)

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise InputError(f"radiometry rule {self.rule!r} is unknown; choose one of {', '.join(RULES)}")
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.high > self.low):
            raise InputError(f"radiometry low {self.low:g} and high {self.high:g} must be finite with high > low, "
                             f"e.g. low 0, high 10000 for reflectance x 10000")
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise InputError(f"radiometry percentiles {lo:g}, {hi:g} must satisfy 0 <= low < high <= 100")

    def rule_for(self, dtype: np.dtype) -> str:
        """The rule applied to data of ``dtype``: ``auto`` is ``none`` for 8-bit data and ``joint`` otherwise."""
        if self.rule == "auto":
            return "none" if dtype == np.uint8 else "joint"
        return self.rule

    def describe(self) -> str:
        """One line for summaries: the rule and its parameters."""
        if self.rule == "fixed":
            return f"fixed {self.low:g}..{self.high:g} -> 0..255"
        if self.rule in ("joint", "per-image"):
            return f"{self.rule} {self.percentiles[0]:g}-{self.percentiles[1]:g}% stretch"
        return "auto (8-bit as is, joint stretch otherwise)" if self.rule == "auto" else "none (8-bit as is)"


@dataclass(frozen=True)
class Imagery:
    """Which bands a model reads and how their values are scaled; stored in checkpoints, reused by every command."""

    bands: tuple[int, ...] | None = None
    rgb: tuple[int, int, int] | None = None
    radiometry: Radiometry = field(default_factory=Radiometry)

    def __post_init__(self) -> None:
        if self.bands is not None:
            parse_bands(self.bands, "bands")
        if self.rgb is not None:
            parse_bands(self.rgb, "rgb")
            if len(self.rgb) != 3:
                raise InputError(f"rgb needs 3 bands (red, green, blue), got {list(self.rgb)}")

    @property
    def channels(self) -> int:
        """The network's input channels: the number of chosen bands (3 when bands follow the RGB rule)."""
        return 3 if self.bands is None else len(self.bands)

    def rgb_positions(self) -> tuple[int, int, int]:
        """Where red, green and blue are among the bands read (for pictures of arrays already read): ``rgb``'s
        bands, else the first three (true colour for ``4,3,2,...``); a grey image repeats its one band."""
        if self.bands is None:
            return (0, 1, 2)
        if self.rgb is not None:
            return tuple(self.bands.index(b) for b in self.rgb)  # type: ignore[return-value]
        return (0, 1, 2) if len(self.bands) >= 3 else (0, 0, 0)

    def with_bands(self, bands: tuple[int, ...] | None) -> Imagery:
        """These settings with ``bands`` given by the user (None: keep); a model's band count must match."""
        if bands is None or bands == self.bands:
            return self
        if len(bands) != self.channels:
            stored = ",".join(map(str, self.bands)) if self.bands else "RGB"
            raise InputError(f"--bands {','.join(map(str, bands))} gives {len(bands)} bands, but the model reads "
                             f"{self.channels} ({stored}); give {self.channels} band numbers")
        return Imagery(bands=bands, rgb=self.rgb if self.rgb and set(self.rgb) <= set(bands) else None,
                       radiometry=self.radiometry)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (results, manifests, reports)."""
        return {"bands": None if self.bands is None else list(self.bands),
                "rgb": None if self.rgb is None else list(self.rgb),
                "radiometry": {"rule": self.radiometry.rule, "low": self.radiometry.low,
                               "high": self.radiometry.high, "percentiles": list(self.radiometry.percentiles)}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Imagery:
        """Parse :meth:`to_dict` output (None: the defaults)."""
        if not data:
            return cls()
        radiometry = dict(data.get("radiometry") or {})
        if "percentiles" in radiometry:
            radiometry["percentiles"] = tuple(radiometry["percentiles"])
        return cls(bands=parse_bands(data.get("bands"), "bands"),
                   rgb=parse_bands(data.get("rgb"), "rgb"),  # type: ignore[arg-type]
                   radiometry=Radiometry(**radiometry))

    def describe(self) -> str:
        """One line: bands and radiometry."""
        bands = ",".join(map(str, self.bands)) if self.bands else "RGB (colour interpretation or 3 bands)"
        return f"bands {bands}; radiometry {self.radiometry.describe()}"


@dataclass(frozen=True)
class BandPlan:
    """The file bands read for one image (1-based, in network order) and the positions shown as red, green, blue."""

    bands: tuple[int, ...]
    rgb: tuple[int, int, int]
    note: str = ""


def plan_bands(name: str, count: int, colours: Sequence[str], imagery: Imagery) -> BandPlan:
    """Which bands of a file with ``count`` bands (colour interpretations ``colours``) feed the network.

    Explicit bands are checked against ``count``; otherwise the RGB rule of the module docstring applies.
    """
    colours = [c.lower() for c in colours] + ["undefined"] * max(0, count - len(colours))
    if imagery.bands is not None:
        bad = [b for b in imagery.bands if b > count]
        if bad:
            raise InputError(f"{name} has {count} band{'s' if count != 1 else ''}, so band {bad[0]} of --bands "
                             f"{','.join(map(str, imagery.bands))} does not exist; choose bands 1..{count}")
        bands = imagery.bands
        note = ""
    elif count in (1, 2):
        bands, note = (1, 1, 1), "grayscale image converted to RGB" + (" (alpha band dropped)" if count == 2 else "")
    elif all(c in colours for c in RGB_NAMES):
        bands = tuple(colours.index(c) + 1 for c in RGB_NAMES)
        note = ""
        if count == 4 and colours[3] == "alpha":
            note = "RGBA image converted to RGB (alpha band dropped)"
        elif count > 3:
            note = (f"{count}-band image: its red, green and blue bands ({','.join(map(str, bands))}) used; "
                    f"pass --bands to choose others")
    elif count == 3:
        bands, note = (1, 2, 3), ""
    elif count == 4 and colours[3] == "alpha":
        bands, note = (1, 2, 3), "RGBA image converted to RGB (alpha band dropped)"
    else:
        raise InputError(f"{name} has {count} bands and no colour interpretation naming red, green and blue, so "
                         f"which to read is unknown; pass --bands with 1-based band numbers, e.g. --bands 4,3,2 "
                         f"for true colour from Sentinel-2")
    if imagery.rgb is not None:
        missing = [b for b in imagery.rgb if b not in bands]
        if missing:
            raise InputError(f"rgb band {missing[0]} is not among the bands read ({','.join(map(str, bands))}); "
                             f"choose red, green and blue bands from them")
        rgb = tuple(bands.index(b) for b in imagery.rgb)
    else:
        named = [colours[b - 1] for b in bands]
        if all(c in named for c in RGB_NAMES):
            rgb = tuple(named.index(c) for c in RGB_NAMES)
        else:
            rgb = (0, 1, 2) if len(bands) >= 3 else (0, 0, 0)
    return BandPlan(bands=tuple(bands), rgb=rgb, note=note)  # type: ignore[arg-type]


def percentile_ranges(samples: Sequence[np.ndarray], percentiles: tuple[float, float], name: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per-band ``percentiles`` of the finite values of all ``samples`` (each ``[h, w, C]``) together.

    One range per band over every date: the ``joint`` rule. Raises an :class:`InputError` naming
    ``name`` when a band has no valid value.
    """
    channels = samples[0].shape[-1]
    low, high = np.empty(channels, np.float64), np.empty(channels, np.float64)
    for c in range(channels):
        values = np.concatenate([s[..., c].reshape(-1) for s in samples])
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if values.size == 0:
            where = f" in band position {c + 1}" if channels > 1 else ""
            raise InputError(f"{name} has no valid pixels{where} (all NaN, infinite or nodata); check the file and "
                             f"its nodata value")
        lo, hi = np.percentile(values, percentiles)
        low[c], high[c] = lo, max(hi, lo + (1e-6 if values.dtype.kind == "f" else 1.0))
    return low, high


def scale_to_uint8(values: np.ndarray, low: float | np.ndarray, high: float | np.ndarray) -> np.ndarray:
    """Map ``low..high`` linearly to 0..255 (clipped; per band when arrays over the last axis); NaN becomes 0.

    The one scaling function: every date of a pair or series goes through it with the same ``low``/``high``
    under the ``fixed`` and ``joint`` rules.
    """
    low32 = np.asarray(low, np.float32)
    gain = np.float32(255.0) / (np.asarray(high, np.float32) - low32)
    scaled = (values.astype(np.float32) - low32) * gain
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).round().astype(np.uint8)


@dataclass(frozen=True)
class Scale:
    """The ``low``/``high`` per band that :func:`scale_to_uint8` maps to 0..255, and the rule that chose them."""

    low: np.ndarray
    high: np.ndarray
    rule: str

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``values`` ``[..., C]`` as uint8."""
        return scale_to_uint8(values, self.low, self.high)

    def describe(self) -> str:
        """One line for warnings and summaries."""
        ranges = ", ".join(f"{lo:g}..{hi:g}" for lo, hi in zip(self.low.tolist(), self.high.tolist()))
        return f"{self.rule} radiometry ({ranges} -> 0..255)"


def plan_scales(names: Sequence[str], dtypes: Sequence[np.dtype], overviews: Sequence[np.ndarray] | None,
                channels: int, radiometry: Radiometry) -> list[Scale | None]:
    """The scale of each date under ``radiometry`` (None: 8-bit values used as they are).

    ``overviews`` (decimated raw values ``[h, w, C]`` of each date, NaN where invalid) are needed only by
    the ``joint`` and ``per-image`` rules; dates of different data types are refused, naming both files.
    """
    for name, dtype in zip(names[1:], dtypes[1:]):
        if dtype != dtypes[0]:
            raise InputError(f"{name} holds {dtype} values but {names[0]} holds {dtypes[0]}; every date must "
                             f"have the same data type, so that one radiometric rule fits them all")
    rule = radiometry.rule_for(np.dtype(dtypes[0]))
    if rule == "none":
        if np.dtype(dtypes[0]) != np.uint8:
            raise InputError(f"{names[0]} holds {dtypes[0]} values, but radiometry 'none' passes only 8-bit data; "
                             f"use radiometry 'fixed' (e.g. low 0, high 10000) or 'joint'")
        return [None] * len(names)
    if rule == "fixed":
        scale = Scale(np.full(channels, radiometry.low), np.full(channels, radiometry.high), "fixed")
        return [scale] * len(names)
    if overviews is None:
        raise ValueError(f"the {rule} rule needs each date's overview")
    if rule == "joint":
        low, high = percentile_ranges(overviews, radiometry.percentiles, " and ".join(names))
        return [Scale(low, high, "joint")] * len(names)
    return [Scale(*percentile_ranges([view], radiometry.percentiles, name), "per-image")
            for name, view in zip(names, overviews)]
