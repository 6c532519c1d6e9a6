"""A synthetic bitemporal change-detection dataset with real structure and unlabelled nuisance.

Each scene has textured ground (vegetation with tree crowns, bare soil, sometimes water), roads and
buildings with roof shading and cast shadows. Between the two dates some buildings are built and
some are demolished: their footprints are the change label (as in LEVIR-CD, shadows are not
labelled). Everything else that differs between the dates is nuisance the network has to ignore:
a global illumination and colour shift with gamma, a seasonal change of the vegetation colour, a
different sun position (shadows move), a small misregistration of date B and sensor noise. About
15% of the scenes have no labelled change at all.

``text_signal=True`` couples the land-cover mix to the labelled change, so that captions describing
land-cover shares (the ``basic`` captioner) carry information about the change: new buildings are
placed on vegetation and a lot twice their size is cleared to paved ground, demolitions leave a bare
lot, and the seasonal and colour-cast changes stay mild enough that the land-cover shares (as the
``basic`` captioner measures them) move little where nothing changed.
Without it, new buildings stand on the unchanged ground and a demolished building reveals the ground
that was around it, so the land-cover shares hardly move except for the roofs themselves.

Every pair is a pure function of ``(seed, index)``; generation can be interrupted and resumed.

``SynthSeriesConfig`` (``mmchange synth --dates N``) makes series of N dates (one year apart from
2015-06-01) of the same places instead: each new or demolished building changes at a date index k in
1..N-1 (some new buildings are demolished again later), each date has its own nuisance, and every
series has ground-truth maps of the first and last date index of a change and of the number of changes.

``SynthConfig.bands`` (``mmchange synth --bands 4`` or ``--bands 13``) renders the same scenes as multispectral
pairs: uint16 GeoTIFFs of surface reflectance x 10000 (red, green, blue, nir; or Sentinel-2 B01..B12), each
pixel's spectrum taken from its material (:mod:`mmchange_core.data.spectra`) with the RGB pairs' textures
and noise. Surface reflectance has no colour cast, gamma or haze left: the radiometric nuisance is one
brightness gain of date B per pair (``gain_range``), both dates are of the same season, and the sun,
the misregistration and the noise change as in RGB pairs. A share (``nir_only_fraction``) of the changed
objects are NIR-only: at date B the vegetation of their footprint is stressed and its bare soil greens, so
the visible bands stay as they were while the red edge, near-infrared and short-wave infrared change:
changes a model with a near-infrared band can see and an RGB model cannot. Each multispectral pair's gain,
noise, shift and changes are recorded in ``<split>/meta/<name>.json``.

``SynthConfig.style`` (``mmchange synth --style NAME``) picks the look of the places from :data:`STYLES`, one
configuration of the same renderer each: ``suburb`` (the default, unchanged: green vegetation with tree crowns,
brown soil, gabled rectangular houses) and ``desert`` (an arid town: sand with coarse, low-contrast dune streaks,
sparse scrub, grey-brown roads, smaller and denser flat-roofed white, concrete and terracotta buildings that are
L-shaped, courtyard or round compounds), so that a model trained on one style can be fine-tuned on a few pairs of
the other. The labels mean the same in every style (new and demolished roofs; courtyards are not roof), and each
style works for RGB, multispectral pairs (its soil a material of :mod:`~mmchange_core.data.spectra`) and series.

``SynthConfig.classes`` (``mmchange synth --classes``) makes class-aware pairs instead (RGB or ``--bands 4|13``; not
series): palette PNG labels of :data:`CHANGE_CLASSES` (0 no change, 1 new building: absent at A, standing at B;
2 demolished building: standing at A, bare soil and rubble at B; 3 vegetation lost: a patch of trees at A cleared to
bare soil at B), objects large enough to learn (at least about 8 x 8 pixels; two or three classes in every pair),
the class file ``classes.yaml`` (for ``mmchange train --classes``) and ``captions.yaml``, the land cover of each date
in words (``an aerial image of a suburb with 4 buildings, 2 patches of trees, 1 road and bare ground``), so that
the captions of the two dates differ as the classes say: the number of buildings, tree patches, cleared plots and
demolition sites. The pixels the default settings make are not touched by any of this.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mmchange_core.data.series import MIN_DATES
from mmchange_core.data.spectra import (
    BAND_COUNTS,
    REFLECTANCE_SCALE,
    ROOFS,
    BandSet,
    band_set,
)
from mmchange_core.errors import InputError
from mmchange_core.io.atomic import atomic_path, atomic_write_text
from mmchange_core.io.classes import ChangeClass, ClassScheme
from mmchange_core.io.geo import GeoReference, require_rasterio
from mmchange_core.io.images import write_palette_png, write_png
from mmchange_core.io.jsonio import strict_json
from mmchange_core.io.raster import write_image
from mmchange_core.progress import ProgressCallback, report

MANIFEST = "synth.json"
#: With ``text_signal``, the lot cleared around a new building (or left bare by a demolition), as a
#: multiple of the building's side.
_LOT_SCALE = 2.0

_ROOF_COLOURS = np.array([
    (168, 168, 172), (190, 186, 180), (214, 212, 206), (140, 86, 70), (166, 100, 78),
    (92, 112, 140), (120, 126, 132), (200, 170, 140), (70, 82, 96),
], dtype=np.float32)


#: The thinnest wall (pixels) of a courtyard house; a spot too small for it and a court holds a plain building.
_MIN_WALL = 1.5

#: The default range of the brightness gain of date B of a multispectral pair (``gain_range``).
DEFAULT_GAIN_RANGE = (0.8, 1.25)
#: The widest gain accepted: beyond it the gain is no longer a radiometric nuisance but saturation.
_MAX_GAIN = 4.0
#: The folder of each split that holds one JSON per multispectral pair (gain, noise, shift, changes).
PAIR_META_FOLDER = "meta"
#: The pixel side (m) of each multispectral band count: aerial-like 4-band and Sentinel-2's 10 m grid.
PAIR_PIXEL_M = {4: 0.5, 13: 10.0}
#: The config keys that only multispectral pairs use; left out of the manifest of 3-band (RGB) datasets,
#: so that those stay as they were and older ones can still be completed.
_MULTISPECTRAL_KEYS = ("bands", "gain_range", "nir_only_fraction")
#: The look of the scenes when ``--style`` is not given (left out of the manifest, so older datasets still match).
DEFAULT_STYLE = "suburb"


@dataclass(frozen=True)
class SynthConfig:
    """Settings of ``mmchange synth``: number and size of pairs, seed, the text-signal option and, for
    multispectral pairs (``bands`` 4 or 13), the range of the brightness gain of date B and the share of
    changes seen only outside the visible bands."""

    pairs: int = 200
    size: int = 256
    seed: int = 0
    text_signal: bool = False
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    no_change_fraction: float = 0.15
    bands: int = 3
    """3: uint8 RGB PNG pairs; 4 (red, green, blue, nir) or 13 (Sentinel-2 B01..B12): uint16 reflectance GeoTIFFs."""
    gain_range: tuple[float, float] = DEFAULT_GAIN_RANGE
    """Multispectral pairs: date B's reflectance is date A's times a gain drawn uniformly from this range per
    pair (not a change; ``(1.0, 1.0)`` disables it)."""
    nir_only_fraction: float = 0.3
    """Multispectral pairs: the probability that a changed object is a NIR-only change of its footprint (vegetation
    stressed, soil greening: nothing in the visible bands) instead of a new or demolished building; ignored with 3
    bands."""
    style: str = DEFAULT_STYLE
    """The look of the places: a name of :data:`STYLES` (palette, ground texture, building shapes and density)."""
    classes: bool = False
    """Class-aware pairs (``--classes``): labels of :data:`CHANGE_CLASSES` (new building, demolished building,
    vegetation lost), ``classes.yaml`` and per-date captions; see :func:`_synthesize_classes`."""

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise InputError(f"--style {self.style!r} is unknown; choose one of: {', '.join(STYLES)}")
        if self.classes and self.text_signal:
            raise InputError("--classes already ties the land cover and captions to the change classes; "
                             "leave --text-signal out")
        if self.bands not in BAND_COUNTS:
            raise InputError(f"--bands must be 3 (RGB PNG), 4 (red, green, blue, nir GeoTIFF) or 13 (Sentinel-2 "
                             f"B01-B12 GeoTIFF), got {self.bands}")
        lo, hi = (float(v) for v in self.gain_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi <= _MAX_GAIN):
            raise InputError(f"--gain-range {lo:g},{hi:g} must satisfy 0 < LO <= HI <= {_MAX_GAIN:g} "
                             f"(e.g. 0.8,1.25; 1,1 for no gain)")
        if self.bands == 3 and (lo, hi) != DEFAULT_GAIN_RANGE:
            raise InputError("--gain-range applies to multispectral pairs; give --bands 4 or 13 too "
                             "(RGB pairs keep their illumination, colour-cast and gamma nuisance)")
        if not 0 <= self.nir_only_fraction <= 1:
            raise InputError(f"nir_only_fraction must be between 0 and 1, got {self.nir_only_fraction}")
        if self.pairs < 3:
            raise InputError(f"--pairs must be at least 3 (one per split), got {self.pairs}")
        if self.size < 32:
            raise InputError(f"--size must be at least 32 pixels, got {self.size}")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1
                and self.val_fraction + self.test_fraction < 1):
            raise InputError("val and test fractions must be in (0, 1) and sum to less than 1")

    def split_counts(self) -> dict[str, int]:
        """Pairs per split: at least one in each."""
        n_val = max(1, round(self.pairs * self.val_fraction))
        n_test = max(1, round(self.pairs * self.test_fraction))
        return {"train": self.pairs - n_val - n_test, "val": n_val, "test": n_test}

    def split_of(self, index: int) -> str:
        """Split of pair ``index`` (train first, then val, then test)."""
        counts = self.split_counts()
        if index < counts["train"]:
            return "train"
        return "val" if index < counts["train"] + counts["val"] else "test"

    @property
    def multispectral(self) -> bool:
        """Whether pairs are uint16 reflectance GeoTIFFs (4 or 13 bands) rather than RGB PNGs."""
        return self.bands != 3

    def record(self) -> dict:
        """The settings as written to (and compared with) the manifest; a 3-band dataset's record lists only the
        settings RGB pairs use, and a default-style one no style, as before multispectral pairs and styles existed."""
        record = asdict(self)
        if self.style == DEFAULT_STYLE:
            record.pop("style")
        if not self.classes:
            record.pop("classes")
        if self.multispectral:
            record["gain_range"] = [float(v) for v in self.gain_range]
        else:
            for key in _MULTISPECTRAL_KEYS:
                record.pop(key)
        return record


def parse_gain_range(text: str) -> tuple[float, float]:
    """``"LO,HI"`` (``--gain-range``) as two floats; bad text raises one line."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise InputError(f"--gain-range {text!r} is not LO,HI; give two numbers, e.g. --gain-range 0.8,1.25 "
                         f"(1,1 for no gain)") from None
    return (lo, hi)


@dataclass
class SynthPair:
    """One generated pair: both dates (uint8 RGB ``[H, W, 3]``, or with ``bands`` 4/13 uint16 reflectance x 10000
    ``[H, W, bands]``), the change label (bool) and what changed (for multispectral pairs also the gain, the
    noise, the shift and every changed object: see :func:`synthesize_pair`)."""

    image_a: np.ndarray
    image_b: np.ndarray
    label: np.ndarray
    """bool change; with ``classes`` uint8 class values of :data:`CHANGE_CLASSES`."""
    info: dict = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    """Class-aware pairs only: what stands at each date (bool ``[H, W]``): ``building_A``/``building_B`` (roofs)
    and ``vegetation_A``/``vegetation_B``."""


@dataclass
class SynthReport:
    """What ``make_synthetic_dataset`` wrote."""

    root: Path
    counts: dict[str, int]
    written: int
    skipped: int
    change_fraction: float
    text_signal: bool = False
    bands: int = 3
    gain_range: tuple[float, float] | None = None
    """The range of date B's gain (multispectral pairs only)."""
    style: str = DEFAULT_STYLE
    class_fractions: dict[str, float] | None = None
    """Class-aware datasets only: each change class's share of the pixels of the pairs written now, by name."""

    def to_dict(self) -> dict:
        """The summary printed by ``mmchange synth --json`` (class entries only for ``--classes``)."""
        summary = {"root": str(self.root), "splits": self.counts, "written": self.written, "skipped": self.skipped,
                   "change_fraction": self.change_fraction, "text_signal": self.text_signal, "bands": self.bands,
                   "style": self.style}
        if self.gain_range is not None:
            summary["gain_range"] = list(self.gain_range)
        if self.class_fractions is not None:
            summary.update(class_file=str(self.root / CLASS_FILE), captions_file=str(self.root / CAPTIONS_FILE),
                           class_fractions=self.class_fractions)
        return summary


# --------------------------------------------------------------------------------------------------
# textures


def _smooth_noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    """Smooth noise in [0, 1] with features about ``cell`` pixels wide (bicubic-upsampled grid)."""
    n = max(2, int(math.ceil(size / cell)) + 3)
    grid = rng.random((n, n), dtype=np.float32)
    big = int(round(n * cell))
    img = Image.fromarray(grid).resize((big, big), Image.Resampling.BICUBIC)
    off_y, off_x = (int(v) for v in rng.integers(0, max(1, big - size), 2))
    arr = np.asarray(img, dtype=np.float32)[off_y:off_y + size, off_x:off_x + size]
    lo, hi = float(arr.min()), float(arr.max())
    return (arr - lo) / (hi - lo + 1e-6)


def _fractal(rng: np.random.Generator, size: int, base_cell: float, octaves: int = 3) -> np.ndarray:
    total = np.zeros((size, size), np.float32)
    weight_sum = 0.0
    for k in range(octaves):
        weight = 0.5 ** k
        total += weight * _smooth_noise(rng, size, max(2.0, base_cell / 2 ** k))
        weight_sum += weight
    total /= weight_sum
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / (hi - lo + 1e-6)


def _dunes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Sand in [0, 1]: coarse mottling and wind-aligned dune streaks with sharp crests, bent by a smooth warp."""
    coarse = _fractal(rng, size, size / 3, octaves=2)
    warp = _smooth_noise(rng, size, size / 3)
    wind = float(rng.uniform(0, math.pi))
    period = size * float(rng.uniform(0.08, 0.14))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = (xx * math.cos(wind) + yy * math.sin(wind)) * (2 * math.pi / period) + 5.0 * warp
    streaks = (0.5 + 0.5 * np.sin(phase)) ** 3
    total = 0.55 * coarse + 0.45 * streaks
    lo, hi = float(total.min()), float(total.max())
    return ((total - lo) / (hi - lo + 1e-6)).astype(np.float32)


def _mottling(rng: np.random.Generator, size: int) -> np.ndarray:
    """Soil in [0, 1]: fractal mottling with features about a sixth of the scene wide."""
    return _fractal(rng, size, size / 6)


def _blur(mask: np.ndarray, radius: float) -> np.ndarray:
    img = Image.fromarray((mask * 255).astype(np.uint8))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def _polygon_mask(size: int, polygons: list[list[tuple[float, float]]]) -> np.ndarray:
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    for poly in polygons:
        draw.polygon(poly, fill=255)
    return np.asarray(img) > 0


# --------------------------------------------------------------------------------------------------
# scene layout


_Polygon = list[tuple[float, float]]


@dataclass
class _Building:
    """One building of a scene: its outline, roof faces and courtyards, roof colour and material, height and fate."""

    corners: _Polygon
    """The outline (a simple polygon, ``(x, y)`` in pixels): with :attr:`holes` the footprint that is labelled."""
    facets: list[tuple[_Polygon, float]]
    """The roof's faces, drawn in order, each with its shading factor (two slopes of a gable, one flat face, ...)."""
    colour: np.ndarray
    height: float
    kind: str  # "static", "new", "demolished"; multispectral pairs also "nir_only" (a change outside the visible)
    roof: int = 0
    """Index of the roof colour (and of the roof material in :data:`~mmchange_core.data.spectra.ROOFS`)."""
    brightness: float = 1.0
    """The building's factor on its roof colour or spectrum."""
    holes: list[_Polygon] = field(default_factory=list)
    """Open courtyards inside the outline: ground, not roof (not labelled, lit and shadowed as ground)."""


def _footprints(size: int, buildings: list[_Building]) -> np.ndarray:
    """The roofs of ``buildings`` (outlines less courtyards) as one mask: the label geometry."""
    mask = _polygon_mask(size, [b.corners for b in buildings])
    holes = [h for b in buildings for h in b.holes]
    return mask & ~_polygon_mask(size, holes) if holes else mask


def _frame(cx: float, cy: float, angle: float) -> Callable[[float, float], tuple[float, float]]:
    """The point at ``a`` along and ``b`` across a building turned by ``angle`` about ``(cx, cy)``."""
    ux, uy = math.cos(angle), math.sin(angle)
    vx, vy = -uy, ux

    def pt(a: float, b: float) -> tuple[float, float]:
        return (cx + a * ux + b * vx, cy + a * uy + b * vy)

    return pt


def _rectangle(cx: float, cy: float, length: float, width: float, angle: float) -> _Building:
    """A rectangular house with a gable roof (two slopes, the lit one brighter)."""
    pt = _frame(cx, cy, angle)
    hl, hw = length / 2, width / 2
    corners = [pt(-hl, -hw), pt(hl, -hw), pt(hl, hw), pt(-hl, hw)]
    facets = [([pt(-hl, -hw), pt(hl, -hw), pt(hl, 0), pt(-hl, 0)], 1.08),
              ([pt(-hl, 0), pt(hl, 0), pt(hl, hw), pt(-hl, hw)], 0.9)]
    return _Building(corners, facets, np.zeros(3, np.float32), 0.0, "static")


def _house(rng: np.random.Generator, cx: float, cy: float, length: float, width: float, angle: float) -> _Building:
    """The suburb's shape: a gabled rectangle filling the spot (draws nothing from ``rng``)."""
    return _rectangle(cx, cy, length, width, angle)


def _box(pt: Callable[[float, float], tuple[float, float]], hl: float, hw: float) -> _Polygon:
    """The rectangle of half-sides ``hl`` x ``hw`` in the frame ``pt``."""
    return [pt(-hl, -hw), pt(hl, -hw), pt(hl, hw), pt(-hl, hw)]


def _flat(corners: _Polygon, holes: list[_Polygon] | None = None) -> _Building:
    """A flat-roofed building (one face) of outline ``corners`` around open ``holes``."""
    return _Building(corners, [(corners, 1.0)], np.zeros(3, np.float32), 0.0, "static", holes=holes or [])


def _compound(rng: np.random.Generator, cx: float, cy: float, length: float, width: float,
              angle: float) -> _Building:
    """The desert's shapes, all inside the ``length`` x ``width`` spot: an L-shaped block, a courtyard house (a
    ring around an open court), a round irregular compound with a domed roof, or a small flat box."""
    pt = _frame(cx, cy, angle)
    hl, hw = length / 2, width / 2
    pick = float(rng.random())
    if pick < 0.35:  # L: the spot less one corner notch of 40-60% of each side
        ca, cb = (float(v) for v in rng.uniform(0.4, 0.6, 2))
        sa, sb = (1.0 if v else -1.0 for v in rng.integers(0, 2, 2))
        na, nb = hl - ca * length, hw - cb * width
        local = [(-hl, -hw), (hl, -hw), (hl, nb), (na, nb), (na, hw), (-hl, hw)]
        return _flat([pt(sa * a, sb * b) for a, b in local])
    if pick < 0.65:  # courtyard: a ring around a court of 40-55% of each side, a little off centre
        fa, fb = (float(v) for v in rng.uniform(0.4, 0.55, 2))
        oa, ob = (float(v) * length for v in rng.uniform(-0.08, 0.08, 2))
        # walls at least _MIN_WALL pixels thick, so that the ring stays one piece; too small for a court: a box
        ia, ib = min(fa * hl, hl - abs(oa) - _MIN_WALL), min(fb * hw, hw - abs(ob) - _MIN_WALL)
        if min(ia, ib) < _MIN_WALL / 2:
            return _flat(_box(pt, hl, hw))
        court = [pt(oa + a, ob + b) for a, b in ((-ia, -ib), (ia, -ib), (ia, ib), (-ia, ib))]
        return _flat(_box(pt, hl, hw), [court])
    if pick < 0.85:  # round compound: an irregular ellipse, its dome lit on one side
        n = 16
        radii = rng.uniform(0.85, 1.0, n)
        ring = [pt(hl * r * math.cos(2 * math.pi * k / n), hw * r * math.sin(2 * math.pi * k / n))
                for k, r in enumerate(radii)]
        lit = ring[n // 2:] + ring[:1]
        return _Building(ring, [(ring, 0.9), (lit, 1.08)], np.zeros(3, np.float32), 0.0, "static")
    return _flat(_box(pt, 0.7 * hl, 0.7 * hw))


_Shape = Callable[[np.random.Generator, float, float, float, float, float], _Building]
_Colour = tuple[float, float, float]


@dataclass(frozen=True)
class _Style:
    """One look of the synthetic places (``--style``): the palette, ground texture, building shapes and density the
    one renderer is configured with; every style keeps the same label semantics and nuisance."""

    # land cover
    veg_share: tuple[float, float]
    """Range of the vegetated share of the ground."""
    veg_cell: float
    """The vegetation field's features are the scene's side over this wide."""
    water_chance: float
    lush: _Colour
    """Vegetation colour in the green season (RGB)."""
    dry: _Colour
    """Vegetation colour in the dry season (RGB)."""
    soil: _Colour
    soil_material: str
    """The soil's spectrum in :data:`~mmchange_core.data.spectra.MATERIALS` (multispectral pairs)."""
    texture: Callable[[np.random.Generator, int], np.ndarray]
    """The soil's texture in [0, 1] (also shading bare lots)."""
    tint: tuple[float, float]
    """Range of the per-scene, per-channel tint of the soil."""
    soil_base: float
    soil_contrast: float
    """Soil = colour x tint x (``soil_base`` + ``soil_contrast`` x texture) + fine grain."""
    grain: float
    """Amplitude of the soil's fine grain, RGB levels."""
    grain_reflectance: float
    """Amplitude of the soil's fine grain, reflectance (multispectral pairs)."""
    asphalt_level: tuple[float, float]
    """Range of the roads' grey level."""
    asphalt_tint: _Colour
    paved: _Colour
    """Paved ground of a new building's lot (``text_signal``)."""
    bare: _Colour
    """Bare ground a demolition leaves (``text_signal``)."""
    # buildings
    shape: _Shape
    static: tuple[int, int]
    new: tuple[int, int]
    demolished: tuple[int, int]
    """Ranges (``rng.integers``: high excluded) of the number of static, new and demolished buildings."""
    side: tuple[float, float]
    """Range of a building's long side, as a share of the scene's side."""
    aspect: tuple[float, float]
    """Range of its short side over its long side."""
    angle_jitter: float
    """Standard deviation (rad) of a building's turn against the street grid."""
    spacing: float
    """A building's free lot as a multiple of its sides (without ``text_signal``)..."""
    gap: float
    """... plus this many pixels."""
    height: tuple[float, float]
    """Range of a building's height (its shadow's length), as a share of the scene's side."""
    roofs: tuple[int, ...]
    """The roof colours (and materials of :data:`~mmchange_core.data.spectra.ROOFS`) drawn from, by index; an
    index given twice is twice as likely."""
    roof_brightness: tuple[float, float]
    shadow: float
    """How much a cast shadow darkens the ground (0 none, 1 black)."""


#: The looks of ``mmchange synth --style``; ``suburb`` is the one every pair had before styles existed.
STYLES: dict[str, _Style] = {
    "suburb": _Style(  # a green suburb: vegetation with tree crowns, brown soil, gabled rectangular houses
        veg_share=(0.25, 0.75), veg_cell=2.5, water_chance=0.3, lush=(62, 104, 48), dry=(140, 128, 70),
        soil=(168, 140, 104), soil_material="soil", texture=_mottling, tint=(0.85, 1.1), soil_base=0.8,
        soil_contrast=0.35, grain=10.0, grain_reflectance=0.07, asphalt_level=(95, 130),
        asphalt_tint=(0.97, 0.99, 1.04), paved=(170, 173, 180), bare=(150, 118, 84),
        shape=_house, static=(2, 7), new=(0, 4), demolished=(0, 3), side=(0.10, 0.24), aspect=(0.5, 1.0),
        angle_jitter=0.05, spacing=1.5, gap=4.0, height=(0.04, 0.1), roofs=tuple(range(len(_ROOF_COLOURS))),
        roof_brightness=(0.9, 1.1), shadow=0.55),
    "desert": _Style(  # an arid town: sand with dune streaks, sparse scrub, dense flat-roofed compounds
        veg_share=(0.02, 0.1), veg_cell=10.0, water_chance=0.05, lush=(104, 112, 66), dry=(152, 140, 98),
        soil=(188, 158, 112), soil_material="sand", texture=_dunes, tint=(0.95, 1.04), soil_base=0.9,
        soil_contrast=0.18, grain=5.0, grain_reflectance=0.03, asphalt_level=(105, 135),
        asphalt_tint=(1.06, 1.0, 0.9), paved=(188, 188, 186), bare=(176, 142, 100),
        shape=_compound, static=(5, 12), new=(0, 5), demolished=(0, 3), side=(0.08, 0.2), aspect=(0.6, 1.0),
        angle_jitter=0.3, spacing=1.25, gap=2.0, height=(0.03, 0.07), roofs=(2, 2, 2, 1, 1, 4, 4, 7, 0),
        roof_brightness=(1.0, 1.15), shadow=0.62),
}


def _land_cover(rng: np.random.Generator, s: int, style: _Style) -> tuple[np.ndarray, np.ndarray]:
    """Vegetation (vs bare soil, from a fractal field) and an optional water body of an ``s`` x ``s`` place."""
    veg_share = float(rng.uniform(*style.veg_share))
    field_ = _fractal(rng, s, s / style.veg_cell)
    vegetation = field_ < np.quantile(field_, veg_share)
    water = np.zeros((s, s), bool)
    if rng.random() < style.water_chance:
        wfield = _fractal(rng, s, s / 2)
        water = wfield > np.quantile(wfield, float(rng.uniform(0.85, 0.95)))
        vegetation &= ~water
    return vegetation, water


def _roads(rng: np.random.Generator, s: int, angle: float, count: int) -> np.ndarray:
    """``count`` straight roads along and across the street grid turned by ``angle`` (a mask)."""
    road_img = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(road_img)
    for k in range(count):
        direction = angle + (math.pi / 2 if k % 2 else 0.0)
        ux, uy = math.cos(direction), math.sin(direction)
        cx, cy = rng.uniform(0.15 * s, 0.85 * s, 2)
        width = max(2, int(round(s * rng.uniform(0.03, 0.06))))
        draw.line([(cx - 2 * s * ux, cy - 2 * s * uy), (cx + 2 * s * ux, cy + 2 * s * uy)], fill=255,
                  width=width)
    return np.asarray(road_img) > 0


class _Scene:
    """Land cover, roads and buildings of one place (shared by both dates), laid out in ``style``."""

    def __init__(self, rng: np.random.Generator, size: int, text_signal: bool, no_change: bool,
                 style: _Style) -> None:
        self.rng = rng
        self.size = size
        self.text_signal = text_signal
        self.style = style
        s = size
        self.angle = float(rng.uniform(0, math.pi / 2))
        self.vegetation, self.water = _land_cover(rng, s, style)
        self.roads = _roads(rng, s, self.angle, int(rng.integers(1, 4)))
        self.water &= ~self.roads
        self.vegetation &= ~self.roads
        # buildings
        self.occupied = self.roads | self.water
        self.buildings: list[_Building] = []
        n_static = int(rng.integers(*style.static))
        n_new = 0 if no_change else int(rng.integers(*style.new))
        n_demolished = 0 if no_change else int(rng.integers(*style.demolished))
        if not no_change and n_new + n_demolished == 0:
            n_new = 1
        for kind, count in (("demolished", n_demolished), ("new", n_new), ("static", n_static)):
            for _ in range(count):
                building = self._place(kind)
                if building is not None:
                    self.buildings.append(building)
        self.lots = {kind: self.lot_mask([b for b in self.buildings if b.kind == kind])
                     for kind in ("new", "demolished")}

    def _place(self, kind: str) -> _Building | None:
        """A free spot for a building; with ``text_signal`` new buildings prefer vegetated lots."""
        rng, s, style = self.rng, self.size, self.style
        wanted = 12 if (self.text_signal and kind == "new") else 1
        candidates: list[tuple[float, _Building, np.ndarray]] = []
        for _ in range(40):
            length = s * rng.uniform(*style.side)
            width = length * rng.uniform(*style.aspect)
            angle = self.angle + rng.normal(0, style.angle_jitter)
            cx, cy = rng.uniform(length / 2 + 1, s - length / 2 - 1, 2)
            margin = (_LOT_SCALE if self.text_signal else style.spacing) + 0.1
            lot = _polygon_mask(s, [_box(_frame(cx, cy, angle), (length * margin + style.gap) / 2,
                                         (width * margin + style.gap) / 2)])
            if (lot & self.occupied).any():
                continue
            score = float(self.vegetation[lot].mean())
            candidates.append((score, style.shape(rng, cx, cy, length, width, angle), lot))
            if len(candidates) >= wanted:
                break
        if not candidates:
            return None
        _, building, lot = max(candidates, key=lambda c: c[0])
        building.roof = style.roofs[int(rng.integers(len(style.roofs)))]
        building.brightness = float(rng.uniform(*style.roof_brightness))
        building.colour = _ROOF_COLOURS[building.roof] * building.brightness
        building.height = float(rng.uniform(*style.height) * s)
        building.kind = kind
        self.occupied |= lot
        return building

    def lot_mask(self, buildings: list[_Building]) -> np.ndarray:
        """The lots around ``buildings`` (with ``text_signal``: cleared, paved or left bare by a change)."""
        polys = []
        for b in buildings:
            xs, ys = zip(*b.corners)
            cx, cy = sum(xs) / len(xs), sum(ys) / len(ys)
            scale = _LOT_SCALE if self.text_signal else 1.5
            polys.append([(cx + scale * (x - cx), cy + scale * (y - cy)) for x, y in b.corners])
        return _polygon_mask(self.size, polys) if polys else np.zeros((self.size, self.size), bool)

    def label(self) -> np.ndarray:
        """The change label: the roofs of the new and demolished buildings (courtyards and shadows excluded)."""
        return _footprints(self.size, [b for b in self.buildings if b.kind != "static"])


# --------------------------------------------------------------------------------------------------
# rendering one date


@dataclass
class _DateState:
    """What stands on the ground at one date: the buildings present and, with ``text_signal``, the lots
    whose vegetation is cleared, those paved and those left bare (masks of the scene's size)."""

    present: list[_Building]
    cleared: np.ndarray
    paved: np.ndarray
    bare: np.ndarray


def _pair_state(scene: _Scene, date: str) -> _DateState:
    """Date ``A`` (before every change) or ``B`` (after all of them) of a pair."""
    empty = np.zeros((scene.size, scene.size), bool)
    if date == "B":
        # construction clears the lot of a new building and paves it; demolition leaves bare soil
        present = [b for b in scene.buildings if b.kind != "demolished"]
        return _DateState(present, scene.lots["new"], scene.lots["new"], scene.lots["demolished"])
    present = [b for b in scene.buildings if b.kind != "new"]
    return _DateState(present, empty, scene.lots["demolished"], empty)


def _render(scene: _Scene, state: _DateState, rng: np.random.Generator, ground: dict[str, np.ndarray]) -> np.ndarray:
    # 0 = lush green, 0.7 = dry/autumn; with text_signal the vegetation stays green enough to be
    # described as vegetation, so that land-cover descriptions only move where the land changed
    season = float(rng.uniform(0.0, 0.2 if scene.text_signal else 0.7))
    veg_colour = ((1 - season) * np.array(scene.style.lush, np.float32)
                  + season * np.array(scene.style.dry, np.float32))
    img = ground["soil"].copy()
    vegetation = scene.vegetation.copy()
    if scene.text_signal:
        vegetation &= ~state.cleared
    veg = vegetation[..., None]
    img = np.where(veg, veg_colour * (0.75 + 0.5 * ground["canopy"][..., None]), img)
    img = np.where(scene.water[..., None], ground["water"], img)
    if scene.text_signal:
        img = np.where(state.paved[..., None], ground["paved"], img)
        img = np.where(state.bare[..., None], ground["bare"], img)
    img = np.where(scene.roads[..., None], ground["asphalt"], img)
    # buildings with cast shadows; the sun moves a little between the dates
    sun = ground["sun"] + rng.normal(0, 0.25)
    return _buildings(img, state.present, sun, ground, [b.colour for b in state.present], scene.style.shadow)


def _buildings(img: np.ndarray, present: list[_Building], sun: float, ground: dict[str, np.ndarray],
               roofs: list[np.ndarray], darkness: float) -> np.ndarray:
    """``img`` (``[H, W, C]``) with the cast shadows of the ``present`` buildings (``darkness``: how much they darken
    the ground) and their roofs (``roofs``: one colour or spectrum each), for the sun at azimuth ``sun``; shared by
    RGB and multispectral rendering. A courtyard is ground: the walls around it shade part of it."""
    s = img.shape[0]
    shadow_img = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(shadow_img)
    rings = np.zeros((s, s), bool)  # the shadows of buildings around a courtyard, swept as rings
    for b in present:
        dx, dy = math.cos(sun) * b.height, math.sin(sun) * b.height
        for t in np.linspace(0, 1, 6):
            moved = [[(x + t * dx, y + t * dy) for x, y in poly] for poly in (b.corners, *b.holes)]
            if b.holes:
                rings |= _polygon_mask(s, moved[:1]) & ~_polygon_mask(s, moved[1:])
            else:
                draw.polygon(moved[0], fill=255)
    shadow = _blur((np.asarray(shadow_img) > 0) | rings, 0.6)[..., None]
    img = img * (1 - darkness * shadow)
    roof_img = np.zeros((s, s, img.shape[2]), np.float32)
    roof_mask = np.zeros((s, s), bool)
    for b, roof in zip(present, roofs):
        courts = _polygon_mask(s, b.holes) if b.holes else None
        for facet, shade in b.facets:
            m = _polygon_mask(s, [facet])
            if courts is not None:
                m &= ~courts
            roof_img[m] = roof * shade
            roof_mask |= m
    roof_texture = 0.94 + 0.12 * ground["fine"][..., None]
    return np.where(roof_mask[..., None], roof_img * roof_texture, img)


def _ground(scene: _Scene, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The colours and textures of the ground of ``scene`` in its style (shared by both dates)."""
    s, style = scene.size, scene.style
    tint = rng.uniform(*style.tint, 3).astype(np.float32)
    soil_tint = np.array(style.soil, np.float32) * tint
    mottling = style.texture(rng, s)[..., None]
    fine = _smooth_noise(rng, s, 2.0)
    soil = soil_tint * (style.soil_base + style.soil_contrast * mottling) + style.grain * (fine[..., None] - 0.5)
    # tree crowns: many small blobs on a coarser canopy field
    canopy_img = Image.fromarray((_smooth_noise(rng, s, 4.0) * 140).astype(np.uint8))
    draw = ImageDraw.Draw(canopy_img)
    for _ in range(int(s * s / 60)):
        x, y = rng.uniform(0, s, 2)
        r = rng.uniform(1.0, max(1.5, s / 40))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.integers(120, 256)))
    canopy = np.asarray(canopy_img.filter(ImageFilter.GaussianBlur(0.7)), np.float32) / 255.0
    ripple = _smooth_noise(rng, s, s / 4)
    water = np.array([46, 74, 96], np.float32) * (0.9 + 0.2 * ripple[..., None])
    asphalt_level = np.float32(rng.uniform(*style.asphalt_level))
    asphalt = asphalt_level * (0.95 + 0.1 * fine[..., None]) * np.array(style.asphalt_tint, np.float32)
    paved = np.array(style.paved, np.float32) * (0.92 + 0.12 * fine[..., None])
    bare = np.array(style.bare, np.float32) * (0.85 + 0.3 * mottling)
    # the colours above, and the textures and draws they are made of (for multispectral rendering)
    return {"soil": soil, "canopy": canopy, "water": water, "asphalt": asphalt, "paved": paved,
            "bare": bare, "fine": fine, "sun": np.float32(rng.uniform(0, 2 * math.pi)),
            "tint": tint, "mottling": mottling[..., 0], "ripple": ripple,
            "asphalt_level": np.float32(asphalt_level / 112.5)}


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Translate by a sub-pixel offset (bilinear, edges replicated)."""
    out = np.empty_like(img)
    for c in range(img.shape[2]):
        band = Image.fromarray(np.ascontiguousarray(img[..., c], dtype=np.float32))
        band = band.transform(band.size, Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy),
                              resample=Image.Resampling.BILINEAR)
        out[..., c] = np.asarray(band)
    # replicate the border the shift uncovered
    ix, iy = int(math.ceil(abs(dx))), int(math.ceil(abs(dy)))
    if ix:
        if dx > 0:
            out[:, :ix] = out[:, ix:ix + 1]
        else:
            out[:, -ix:] = out[:, -ix - 1:-ix]
    if iy:
        if dy > 0:
            out[:iy] = out[iy:iy + 1]
        else:
            out[-iy:] = out[-iy - 1:-iy]
    return out


def _acquire(img: np.ndarray, rng: np.random.Generator, shift: tuple[float, float], cast_range: float) -> np.ndarray:
    """Sensor and atmosphere: gain, colour cast, gamma, haze gradient, misregistration, noise."""
    s = img.shape[0]
    gain = rng.uniform(0.8, 1.2)
    cast = rng.uniform(1 - cast_range, 1 + cast_range, 3).astype(np.float32)
    gamma = rng.uniform(0.85, 1.15)
    ramp = np.linspace(-1, 1, s, dtype=np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    haze = (math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None])[..., None] * rng.uniform(0, 12)
    x = np.clip(img * gain * cast + haze, 0, 255) / 255.0
    x = 255.0 * x ** gamma
    if shift != (0.0, 0.0):
        x = _shift(x.astype(np.float32), *shift)
    x = x + rng.normal(0, rng.uniform(1.0, 5.0), x.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def synthesize_pair(index: int, config: SynthConfig) -> SynthPair:
    """Generate pair ``index`` of the dataset described by ``config`` (deterministic).

    With ``config.bands`` 4 or 13 the pair is multispectral (see :func:`_synthesize_multispectral`): the same
    place as the RGB pair of that index and seed, as uint16 reflectance x 10000. With ``config.classes`` the pair is
    class-aware (see :func:`_synthesize_classes`).
    """
    if config.classes:
        return _synthesize_classes(index, config)
    if config.multispectral:
        return _synthesize_multispectral(index, config)
    rng = np.random.default_rng([config.seed, index])
    no_change = bool(rng.random() < config.no_change_fraction)
    scene = _Scene(rng, config.size, config.text_signal, no_change, STYLES[config.style])
    ground = _ground(scene, rng)
    clean_a = _render(scene, _pair_state(scene, "A"), rng, ground)
    clean_b = _render(scene, _pair_state(scene, "B"), rng, ground)
    max_shift = max(0.5, config.size / 256)
    shift = tuple(float(v) for v in rng.uniform(-max_shift, max_shift, 2))
    # with text_signal the colour cast stays small so that it does not move the land-cover shares
    cast_range = 0.03 if config.text_signal else 0.08
    image_a = _acquire(clean_a, rng, (0.0, 0.0), cast_range)
    image_b = _acquire(clean_b, rng, shift, cast_range)  # type: ignore[arg-type]
    label = scene.label()
    info = {
        "new": sum(b.kind == "new" for b in scene.buildings),
        "demolished": sum(b.kind == "demolished" for b in scene.buildings),
        "static": sum(b.kind == "static" for b in scene.buildings),
        "change_fraction": float(label.mean()),
    }
    return SynthPair(image_a, image_b, label, info)


# --------------------------------------------------------------------------------------------------
# multispectral pairs (``mmchange synth --bands 4`` or ``--bands 13``)

#: Sensor noise of a multispectral date: a standard deviation (reflectance) drawn from this range per date.
_SPECTRAL_NOISE = (0.002, 0.005)
#: What a NIR-only change is, in the pair's metadata.
_NIR_ONLY_WHAT = ("outside the visible bands only: at date B its vegetation is stressed (red edge and near-infrared "
                  "down, short-wave infrared up) and its bare soil greens (red edge and near-infrared up); the "
                  "visible bands stay as at date A")


def _render_spectral(scene: _Scene, state: _DateState, rng: np.random.Generator, ground: dict[str, np.ndarray],
                     sensor: BandSet, season: float, patches: np.ndarray, changed: bool) -> np.ndarray:
    """Surface reflectance ``[H, W, bands]`` (float32, 0..1) of one date: each material's spectrum with the
    textures of the RGB rendering; where ``patches`` (NIR-only objects) lie, ``changed`` stresses the vegetation
    and greens the soil (their visible bands stay as they are)."""
    spectra = sensor.materials
    fine, mottling = ground["fine"][..., None], ground["mottling"][..., None]
    tint, style = float(ground["tint"].mean()), scene.style
    img = spectra[style.soil_material] * (tint * (style.soil_base + style.soil_contrast * mottling)
                                          + style.grain_reflectance * (fine - 0.5))
    vegetation = scene.vegetation & ~state.cleared if scene.text_signal else scene.vegetation
    canopy = (1 - season) * spectra["vegetation"] + season * spectra["dry_vegetation"]
    canopy = canopy * (0.75 + 0.5 * ground["canopy"][..., None])
    img = np.where(vegetation[..., None], canopy, img)
    img = np.where(scene.water[..., None], spectra["water"] * (0.9 + 0.2 * ground["ripple"][..., None]), img)
    if scene.text_signal:
        img = np.where(state.paved[..., None], spectra["concrete"] * (0.92 + 0.12 * fine), img)
        img = np.where(state.bare[..., None], spectra["bare_lot"] * (0.85 + 0.3 * mottling), img)
    if changed:  # the patches lie on vegetation or soil only (a building's lot is clear of water and roads)
        greened = img + sensor.greening
        img = np.where(patches[..., None], np.where(vegetation[..., None], img * sensor.stress, greened), img)
    img = np.where(scene.roads[..., None], spectra["asphalt"] * ground["asphalt_level"] * (0.95 + 0.1 * fine), img)
    sun = ground["sun"] + rng.normal(0, 0.25)
    roofs = [sensor.roofs[b.roof] * b.brightness for b in state.present]
    return _buildings(img.astype(np.float32), state.present, sun, ground, roofs, style.shadow)


def _acquire_spectral(refl: np.ndarray, rng: np.random.Generator, shift: tuple[float, float],
                      gain: float) -> tuple[np.ndarray, float]:
    """Surface reflectance as a sensor delivers it: ``gain``, misregistration, noise, uint16 x 10000 (and the
    noise's standard deviation in reflectance)."""
    x = refl * np.float32(gain)
    if shift != (0.0, 0.0):
        x = _shift(x, *shift)
    sigma = float(rng.uniform(*_SPECTRAL_NOISE))
    x = x + np.float32(sigma) * rng.standard_normal(x.shape, dtype=np.float32)
    return np.clip(np.round(x * REFLECTANCE_SCALE), 0, REFLECTANCE_SCALE).astype(np.uint16), sigma


def _synthesize_multispectral(index: int, config: SynthConfig) -> SynthPair:
    """Multispectral pair ``index``: the place of the RGB pair of that index (same scene draws), each changed
    building turned with probability ``nir_only_fraction`` into a NIR-only change of its footprint (vegetation
    stressed, soil greening at date B: see :data:`~mmchange_core.data.spectra.STRESS`), both dates
    of one season, date B times a gain drawn from ``gain_range``; ``info`` records it all (see
    :func:`pair_metadata`)."""
    rng = np.random.default_rng([config.seed, index])
    no_change = bool(rng.random() < config.no_change_fraction)
    scene = _Scene(rng, config.size, config.text_signal, no_change, STYLES[config.style])
    ground = _ground(scene, rng)
    sensor = band_set(config.bands)
    for b in scene.buildings:
        if b.kind != "static" and rng.random() < config.nir_only_fraction:
            b.kind = "nir_only"
    scene.lots = {kind: scene.lot_mask([b for b in scene.buildings if b.kind == kind])
                  for kind in ("new", "demolished")}
    nir_only = [b for b in scene.buildings if b.kind == "nir_only"]
    patches = _footprints(scene.size, nir_only)
    season = float(rng.uniform(0.0, 0.2 if config.text_signal else 0.7))
    refl = []
    for date in ("A", "B"):
        state = _pair_state(scene, date)
        state.present = [b for b in state.present if b.kind != "nir_only"]
        refl.append(_render_spectral(scene, state, rng, ground, sensor, season, patches, changed=date == "B"))
    max_shift = max(0.5, config.size / 256)
    shift = tuple(float(v) for v in rng.uniform(-max_shift, max_shift, 2))
    gain = float(rng.uniform(*config.gain_range))
    image_a, noise_a = _acquire_spectral(refl[0], rng, (0.0, 0.0), 1.0)
    image_b, noise_b = _acquire_spectral(refl[1], rng, shift, gain)  # type: ignore[arg-type]
    label = scene.label()
    changes = []
    for number, b in enumerate(scene.buildings):
        if b.kind == "static":
            continue
        change = {"object": number, "kind": b.kind, "pixels": int(_footprints(scene.size, [b]).sum()),
                  "polygon": [[float(x), float(y)] for x, y in b.corners]}
        if b.holes:  # a courtyard house: its court is not part of the footprint
            change["holes"] = [[[float(x), float(y)] for x, y in hole] for hole in b.holes]
        if b.kind == "nir_only":
            change.update(what=_NIR_ONLY_WHAT, changed_bands=list(sensor.changed_by_stress()),
                          unchanged_bands=list(sensor.unchanged_by_stress()))
        else:
            change["roof"] = ROOFS[b.roof][0]
        changes.append(change)
    info = {
        "new": sum(b.kind == "new" for b in scene.buildings),
        "demolished": sum(b.kind == "demolished" for b in scene.buildings),
        "nir_only": len(nir_only),
        "static": sum(b.kind == "static" for b in scene.buildings),
        "change_fraction": float(label.mean()),
        "gain": gain,
        "noise": {"A": noise_a, "B": noise_b},
        "shift": list(shift),
        "season": season,
        "changes": changes,
    }
    return SynthPair(image_a, image_b, label, info)


def pair_metadata(pair: SynthPair, index: int, split: str, config: SynthConfig, images: dict[str, str]) -> dict:
    """The JSON record of multispectral pair ``index`` (``<split>/meta/<name>.json``): its files, bands, gain,
    noise, misregistration and every changed object.

    Each entry of ``changes`` has ``object`` (its number in the scene), ``kind`` (``new``, ``demolished`` or
    ``nir_only``), ``pixels`` (its labelled footprint) and ``polygon`` (the footprint's corners, ``[x, y]`` in
    pixels, as the label is drawn; a courtyard house also ``holes``, its open courts, not labelled); a building has
    its ``roof`` material, a NIR-only change ``what`` it is and the ``changed_bands`` and ``unchanged_bands`` (by
    name). A style other than the default is named in ``style``. A class-aware pair (``--classes``) has the entries of
    :func:`class_metadata` instead of ``new`` ... ``change_fraction``, its changes of kind ``new``, ``demolished``
    or ``vegetation_lost``."""
    sensor = band_set(config.bands)
    styled = {} if config.style == DEFAULT_STYLE else {"style": config.style}
    record = {
        "generator": "mmchange synth", "index": index, "split": split, **styled, "images": images,
        "bands": sensor.count, "band_names": list(sensor.names), "wavelengths_nm": list(sensor.wavelengths_nm),
        "scale": REFLECTANCE_SCALE,
        "values": f"uint16 surface reflectance x {REFLECTANCE_SCALE}",
        "gain": pair.info["gain"],
        "gain_note": "date B's reflectance is date A's times gain (a radiometric difference, not a change)",
        "noise": pair.info["noise"],
        "noise_note": "standard deviation of each date's sensor noise, in reflectance (x scale for the values)",
        "shift": pair.info["shift"],
        "shift_note": "sub-pixel misregistration of date B against date A (dx, dy in pixels)",
        "season": pair.info["season"],
        "season_note": "the vegetation's season at both dates: 0 lush green, 0.7 dry (not a change)",
        "crs": f"EPSG:{SERIES_CRS_EPSG}", "pixel_m": PAIR_PIXEL_M[config.bands],
        "new": pair.info["new"], "demolished": pair.info["demolished"], "nir_only": pair.info["nir_only"],
        "static": pair.info["static"],
        "changes": pair.info["changes"],
        "change_fraction": pair.info["change_fraction"],
    }
    if config.classes:
        record.pop("nir_only")
        record.update(_class_record(pair))
    return record


def pair_georeference(index: int, config: SynthConfig) -> GeoReference:
    """The grid of multispectral pair ``index``: UTM 32N, 0.5 m (4 bands) or 10 m (13 bands) pixels, an origin
    of its own."""
    require_rasterio("--bands 4 or 13 (multispectral GeoTIFF pairs)")
    return _tile_georeference(index, config.size, PAIR_PIXEL_M[config.bands])


def _tile_georeference(index: int, size: int, pixel_m: float) -> GeoReference:
    """Tile ``index`` of a grid of :data:`_SERIES_GRID_COLUMNS` columns 100 m apart in UTM 32N, ``size`` pixels of
    ``pixel_m`` metres."""
    from affine import Affine
    from rasterio.crs import CRS

    row, column = divmod(index, _SERIES_GRID_COLUMNS)
    step = size * pixel_m + 100.0
    x0, y0 = _SERIES_ORIGIN[0] + column * step, _SERIES_ORIGIN[1] - row * step
    return GeoReference(CRS.from_epsg(SERIES_CRS_EPSG), Affine(pixel_m, 0.0, x0, 0.0, -pixel_m, y0))


def write_reflectance(path: Path, image: np.ndarray, georef: GeoReference, sensor: BandSet) -> Path:
    """Write a uint16 reflectance image ``[H, W, bands]`` as a GeoTIFF with its bands' colour interpretation,
    descriptions and centre wavelengths (which the staged COG writer does not carry), atomically."""
    rasterio = require_rasterio("--bands 4 or 13 (multispectral GeoTIFF pairs)")
    from rasterio.enums import ColorInterp

    height, width, count = image.shape
    profile = {"driver": "GTiff", "height": height, "width": width, "count": count, "dtype": "uint16",
               "crs": georef.crs, "transform": georef.transform, "compress": "deflate", "predictor": 2,
               "interleave": "pixel"}
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as ds:
        ds.write(np.moveaxis(image, 2, 0))
        ds.colorinterp = [ColorInterp[c] for c in sensor.colorinterp]
        for band, (name, nm) in enumerate(zip(sensor.names, sensor.wavelengths_nm), start=1):
            ds.set_band_description(band, name)
            ds.update_tags(band, CENTRAL_WAVELENGTH_NM=str(nm))
        ds.update_tags(REFLECTANCE_SCALE=str(REFLECTANCE_SCALE), SOURCE="mmchange synth")
    return path


# --------------------------------------------------------------------------------------------------
# class-aware pairs (``mmchange synth --classes``)

#: The class file written into a class-aware dataset, for ``mmchange train --classes <dataset>/classes.yaml``.
CLASS_FILE = "classes.yaml"
#: The captions of every image of a class-aware dataset, in the ``mmchange predict --captions`` format (image path
#: relative to the dataset, e.g. ``train/A/0000.png``, mapped to its caption).
CAPTIONS_FILE = "captions.yaml"
#: The classes of ``--classes``: label value (the palette index of ``label/*.png``), name and colour.
CHANGE_CLASSES = ClassScheme((
    ChangeClass(0, "no change", (0, 0, 0)),
    ChangeClass(1, "new building", (230, 25, 75)),
    ChangeClass(2, "demolished building", (0, 130, 200)),
    ChangeClass(3, "vegetation lost", (60, 180, 75)),
))
#: The label value of each kind of changed object.
CLASS_VALUES = {"new": 1, "demolished": 2, "vegetation_lost": 3}
#: A class-aware building's long side (share of the scene's side; at least 10 px) and short side over long side
#: (the short side at least 8 px): larger than the binary pairs' houses, so that a small model sees every class.
_CLASS_SIDE = (0.14, 0.24)
_CLASS_ASPECT = (0.8, 1.0)
_CLASS_MIN_SIDES = (10.0, 8.0)
#: A tree patch's radius (share of the scene's side; at least 5 px).
_PATCH_RADIUS = (0.08, 0.13)
_MIN_PATCH_RADIUS = 5.0
#: An object's free lot: its sides times this plus this many pixels.
_CLASS_MARGIN, _CLASS_GAP = 1.15, 1.0
#: The chance that one change class (drawn at random) is left out of a pair: every pair has two or three.
_DROP_CLASS_CHANCE = 0.3
#: Tries to find a free spot for one object.
_PLACE_TRIES = 60
#: What a place of each style is called in captions, and its open ground.
_PLACE_WORDS = {"suburb": ("suburb", "bare ground"), "desert": ("desert town", "sand")}


def _blob(rng: np.random.Generator, cx: float, cy: float, radius: float) -> _Polygon:
    """An irregular round outline (a patch of trees) of about ``radius`` pixels around ``(cx, cy)``."""
    radii = rng.uniform(0.8, 1.0, 14) * radius
    return [(cx + r * math.cos(2 * math.pi * k / 14), cy + r * math.sin(2 * math.pi * k / 14))
            for k, r in enumerate(radii)]


class _ClassScene(_Scene):
    """The place of a class-aware pair: land cover and roads as in ``style``; new, demolished and static buildings;
    tree patches, some cleared at date B (``vegetation_lost``). Every object has its own free lot, so the change
    classes never overlap. The renderers draw each date's cleared and bare masks (:func:`_class_state`)."""

    def __init__(self, rng: np.random.Generator, size: int, style_name: str) -> None:
        style = STYLES[style_name]
        self.rng, self.size, self.style, self.style_name = rng, size, style, style_name
        self.text_signal = True  # the renderers draw the states' cleared and bare masks; the season stays green
        s = size
        self.angle = float(rng.uniform(0, math.pi / 2))
        self.vegetation, self.water = _land_cover(rng, s, style)
        self.road_count = int(rng.integers(1, 3))
        self.roads = _roads(rng, s, self.angle, self.road_count)
        self.water &= ~self.roads
        self.vegetation &= ~self.roads
        self.occupied = self.roads | self.water
        self.buildings: list[_Building] = []
        self.patches: list[tuple[_Polygon, str]] = []  # (outline, "static" or "vegetation_lost")
        counts = {kind: int(rng.integers(1, 3)) for kind in CLASS_VALUES}
        if rng.random() < _DROP_CLASS_CHANCE:
            counts[list(CLASS_VALUES)[int(rng.integers(len(CLASS_VALUES)))]] = 0
        # one object of each class first, then the second ones: a crowded place loses a second object, not a class
        for turn in range(2):
            for kind, count in counts.items():
                if count > turn:
                    self._place(kind)
        for _ in range(int(rng.integers(*style.static))):
            self._place("static")
        if rng.random() < 0.5:  # a patch of trees that stays
            self._place("trees")
        self.trees = _polygon_mask(s, [p for p, _ in self.patches])
        self.lost = _polygon_mask(s, [p for p, kind in self.patches if kind == "vegetation_lost"])
        self.vegetation |= self.trees

    def _place(self, kind: str) -> _Building | None:
        """Put one object of ``kind`` (``new``, ``demolished``, ``static``, ``vegetation_lost`` or ``trees``) on a
        free lot; ``None`` when no spot is free."""
        rng, s, style = self.rng, self.size, self.style
        patch = kind in ("vegetation_lost", "trees")
        for _ in range(_PLACE_TRIES):
            if patch:
                radius = max(_MIN_PATCH_RADIUS, s * float(rng.uniform(*_PATCH_RADIUS)))
                length = width = 2 * radius
            else:
                length = max(_CLASS_MIN_SIDES[0], s * float(rng.uniform(*_CLASS_SIDE)))
                width = max(_CLASS_MIN_SIDES[1], length * float(rng.uniform(*_CLASS_ASPECT)))
            angle = self.angle + float(rng.normal(0, style.angle_jitter))
            cx, cy = (float(v) for v in rng.uniform(length / 2 + 1, s - length / 2 - 1, 2))
            lot = _polygon_mask(s, [_box(_frame(cx, cy, angle), (length * _CLASS_MARGIN + _CLASS_GAP) / 2,
                                         (width * _CLASS_MARGIN + _CLASS_GAP) / 2)])
            if (lot & self.occupied).any():
                continue
            self.occupied |= lot
            if patch:
                self.patches.append((_blob(rng, cx, cy, radius), "static" if kind == "trees" else kind))
                return None
            building = style.shape(rng, cx, cy, length, width, angle)
            building.roof = style.roofs[int(rng.integers(len(style.roofs)))]
            building.brightness = float(rng.uniform(*style.roof_brightness))
            building.colour = _ROOF_COLOURS[building.roof] * building.brightness
            building.height = float(rng.uniform(*style.height) * s)
            building.kind = kind
            self.buildings.append(building)
            return building
        return None

    def of_kind(self, kind: str) -> list[_Building]:
        """The buildings of ``kind``."""
        return [b for b in self.buildings if b.kind == kind]

    def label(self) -> np.ndarray:
        """The class label (uint8 values of :data:`CHANGE_CLASSES`): new and demolished roofs (courtyards
        excluded), cleared tree patches; 0 elsewhere."""
        label = np.zeros((self.size, self.size), np.uint8)
        for kind in ("new", "demolished"):
            label[_footprints(self.size, self.of_kind(kind))] = CLASS_VALUES[kind]
        label[self.lost] = CLASS_VALUES["vegetation_lost"]
        return label


def _class_state(scene: _ClassScene, date: str) -> _DateState:
    """Date ``A`` (demolished buildings standing, every tree patch) or ``B`` (new buildings standing; the cleared
    tree patches and the demolished footprints bare soil and rubble) of a class-aware pair."""
    s = scene.size
    empty = np.zeros((s, s), bool)
    if date == "A":
        return _DateState(scene.of_kind("static") + scene.of_kind("demolished"), empty, empty, empty)
    rubble = _footprints(s, scene.of_kind("demolished"))
    return _DateState(scene.of_kind("static") + scene.of_kind("new"), scene.lost, empty, scene.lost | rubble)


def _class_ground(scene: _ClassScene, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The ground of ``scene`` (:func:`_ground`) with darker, coarser tree crowns in its tree patches and grey rubble
    in the footprints of its demolished buildings (seen at date B)."""
    ground = dict(_ground(scene, rng))
    canopy = ground["canopy"]
    ground["canopy"] = np.where(scene.trees, 1.2 * canopy - 0.5, canopy).astype(np.float32)
    fine = ground["fine"][..., None]
    rubble = _footprints(scene.size, scene.of_kind("demolished"))[..., None]
    debris = np.array((150, 146, 140), np.float32) * (0.7 + 0.6 * fine)
    ground["bare"] = np.where(rubble & (fine > 0.5), debris, ground["bare"]).astype(np.float32)
    return ground


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _class_caption(scene: _ClassScene, date: str) -> str:
    """What stands at ``date``, in words: buildings, tree patches, cleared plots and demolition sites (B only),
    roads, water and open ground, e.g. ``an aerial image of a suburb with 5 buildings, 2 patches of trees, 1 road
    and bare ground``."""
    place, ground = _PLACE_WORDS.get(scene.style_name, ("place", "bare ground"))
    after = date == "B"
    lost = sum(kind == "vegetation_lost" for _, kind in scene.patches)
    buildings = len(scene.of_kind("static")) + len(scene.of_kind("new" if after else "demolished"))
    trees = len(scene.patches) - (lost if after else 0)
    parts = [_count(buildings, "building", "buildings"),
             _count(trees, "patch of trees", "patches of trees") if trees else "no trees"]
    if after and lost:
        parts.append(_count(lost, "cleared plot of bare soil", "cleared plots of bare soil"))
    demolished = len(scene.of_kind("demolished"))
    if after and demolished:
        parts.append(_count(demolished, "demolition site with rubble", "demolition sites with rubble"))
    parts.append(_count(scene.road_count, "road", "roads"))
    if scene.water.any():
        parts.append("some water")
    return f"an aerial image of a {place} with {', '.join(parts)} and {ground}"


def _class_changes(scene: _ClassScene) -> list[dict]:
    """Every changed object: ``object`` (its number), ``kind``, class ``value`` and ``class`` name, ``pixels`` and
    ``polygon`` (``[x, y]`` corners as the label is drawn; a courtyard house also ``holes``), a building's ``roof``."""
    s, changes = scene.size, []
    for number, b in enumerate(scene.buildings):
        if b.kind == "static":
            continue
        change = {"object": number, "kind": b.kind, "value": CLASS_VALUES[b.kind],
                  "class": CHANGE_CLASSES.name_of(CLASS_VALUES[b.kind]), "pixels": int(_footprints(s, [b]).sum()),
                  "polygon": [[float(x), float(y)] for x, y in b.corners], "roof": ROOFS[b.roof][0]}
        if b.holes:
            change["holes"] = [[[float(x), float(y)] for x, y in hole] for hole in b.holes]
        changes.append(change)
    for number, (outline, kind) in enumerate(scene.patches, start=len(scene.buildings)):
        if kind == "vegetation_lost":
            value = CLASS_VALUES[kind]
            changes.append({"object": number, "kind": kind, "value": value, "class": CHANGE_CLASSES.name_of(value),
                            "pixels": int(_polygon_mask(s, [outline]).sum()),
                            "polygon": [[float(x), float(y)] for x, y in outline]})
    return changes


def _synthesize_classes(index: int, config: SynthConfig) -> SynthPair:
    """Class-aware pair ``index`` (deterministic per seed and index): new buildings (absent at A, standing at B),
    demolished buildings (standing at A, bare soil and rubble at B) and tree patches cleared to bare soil, labelled
    with the values of :data:`CHANGE_CLASSES`; every pair has two or three of the classes (no pair without change).

    The nuisance is the text-signal pairs' (mild colour cast, green season, sun, misregistration, noise), and with
    ``bands`` 4 or 13 the multispectral pairs' (one gain of date B, no NIR-only changes). ``info`` holds the
    counts, the captions of both dates (:func:`_class_caption`), each class's pixels and every changed object;
    ``maps`` what stands at each date.
    """
    rng = np.random.default_rng([config.seed, index])
    scene = _ClassScene(rng, config.size, config.style)
    ground = _class_ground(scene, rng)
    states = {date: _class_state(scene, date) for date in ("A", "B")}
    max_shift = max(0.5, config.size / 256)
    info: dict = {}
    if config.multispectral:
        sensor = band_set(config.bands)
        season = float(rng.uniform(0.0, 0.2))
        none = np.zeros((config.size, config.size), bool)
        refl = [_render_spectral(scene, states[d], rng, ground, sensor, season, none, False) for d in ("A", "B")]
        shift = tuple(float(v) for v in rng.uniform(-max_shift, max_shift, 2))
        gain = float(rng.uniform(*config.gain_range))
        image_a, noise_a = _acquire_spectral(refl[0], rng, (0.0, 0.0), 1.0)
        image_b, noise_b = _acquire_spectral(refl[1], rng, shift, gain)  # type: ignore[arg-type]
        info.update(gain=gain, noise={"A": noise_a, "B": noise_b}, shift=list(shift), season=season, nir_only=0)
    else:
        clean = [_render(scene, states[d], rng, ground) for d in ("A", "B")]
        shift = tuple(float(v) for v in rng.uniform(-max_shift, max_shift, 2))
        image_a = _acquire(clean[0], rng, (0.0, 0.0), 0.03)
        image_b = _acquire(clean[1], rng, shift, 0.03)  # type: ignore[arg-type]
    label = scene.label()
    pixels = np.bincount(label.reshape(-1), minlength=len(CHANGE_CLASSES))
    info.update({
        "new": len(scene.of_kind("new")), "demolished": len(scene.of_kind("demolished")),
        "vegetation_lost": sum(kind == "vegetation_lost" for _, kind in scene.patches),
        "static": len(scene.of_kind("static")), "change_fraction": float((label > 0).mean()),
        "buildings": {d: len(states[d].present) for d in ("A", "B")},
        "captions": {d: _class_caption(scene, d) for d in ("A", "B")},
        "class_pixels": {c.name: int(pixels[c.value]) for c in CHANGE_CLASSES.change_classes},
        "changes": _class_changes(scene),
    })
    maps = {f"building_{d}": _footprints(config.size, states[d].present) for d in ("A", "B")}
    maps.update({f"vegetation_{d}": scene.vegetation & ~states[d].cleared for d in ("A", "B")})
    return SynthPair(image_a, image_b, label, info, maps)


def class_metadata(pair: SynthPair, index: int, split: str, config: SynthConfig, images: dict[str, str]) -> dict:
    """The JSON record of class-aware pair ``index`` (``<split>/meta/<name>.json``): its files, the captions of both
    dates, the buildings standing at each, each class's pixels and every changed object (:func:`_class_changes`)."""
    styled = {} if config.style == DEFAULT_STYLE else {"style": config.style}
    return {"generator": "mmchange synth", "index": index, "split": split, **styled, "images": images,
            **_class_record(pair)}


def _class_record(pair: SynthPair) -> dict:
    """The class-aware entries of a pair's record (also in a multispectral class-aware pair's)."""
    info = pair.info
    return {"classes": CLASS_FILE, "captions": info["captions"], "buildings": info["buildings"],
            "new": info["new"], "demolished": info["demolished"], "vegetation_lost": info["vegetation_lost"],
            "static": info["static"], "class_pixels": info["class_pixels"], "changes": info["changes"],
            "change_fraction": info["change_fraction"]}


def class_file_text(scheme: ClassScheme = CHANGE_CLASSES) -> str:
    """``classes.yaml``: the class file (:mod:`mmchange_core.io.classes`) of a class-aware dataset."""
    import yaml

    head = ("# mmchange synth --classes: the label values (palette index of label/*.png), names and colours;\n"
            "# train with: mmchange train --dataset <this folder> --classes <this folder>/classes.yaml\n")
    return head + yaml.safe_dump(scheme.to_dict(), sort_keys=False, default_flow_style=None, allow_unicode=True)


def write_class_label(path: Path, label: np.ndarray, scheme: ClassScheme = CHANGE_CLASSES) -> Path:
    """Write a class label (uint8 values ``[H, W]``) as a palette PNG whose index is the value and whose palette
    holds the classes' colours, atomically."""
    return write_palette_png(path, np.ascontiguousarray(label, dtype=np.uint8), scheme.palette())


# --------------------------------------------------------------------------------------------------
# writing a dataset


def _check_target(root: Path, config: SynthConfig) -> None:
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} exists and is not a folder; choose a new folder for the synthetic dataset")
    manifest = root / MANIFEST
    if manifest.is_file():
        stored = json.loads(manifest.read_text(encoding="utf-8")).get("config", {})
        if stored != config.record():
            raise InputError(f"{root} holds a synthetic dataset made with other settings ({stored}); "
                             f"choose a new folder or repeat the same settings to complete it")
        return
    if root.exists() and any(root.iterdir()):
        raise InputError(f"{root} exists and is not empty; choose a new folder for the synthetic dataset")


def _pair_files(folder: Path, stem: str, config: SynthConfig) -> dict[str, Path]:
    """The files of one pair in the split ``folder``: ``A``, ``B`` (and ``meta`` for multispectral and class-aware
    pairs), then ``label``, in the order they are written."""
    suffix = ".tif" if config.multispectral else ".png"
    paths = {"A": folder / "A" / f"{stem}{suffix}", "B": folder / "B" / f"{stem}{suffix}"}
    if config.multispectral or config.classes:
        paths["meta"] = folder / PAIR_META_FOLDER / f"{stem}.json"
    paths["label"] = folder / "label" / f"{stem}.png"
    return paths


def _write_pair(pair: SynthPair, index: int, split: str, paths: dict[str, Path], config: SynthConfig) -> None:
    """Write one pair's files; the label goes last: a pair counts as written once its label exists."""
    if config.multispectral:
        sensor, georef = band_set(config.bands), pair_georeference(index, config)
        write_reflectance(paths["A"], pair.image_a, georef, sensor)
        write_reflectance(paths["B"], pair.image_b, georef, sensor)
        folder = paths["label"].parent.parent
        images = {k: paths[k].relative_to(folder).as_posix() for k in ("A", "B", "label")}
        atomic_write_text(paths["meta"], strict_json(pair_metadata(pair, index, split, config, images), indent=2))
    else:
        write_png(paths["A"], pair.image_a)
        write_png(paths["B"], pair.image_b)
        if config.classes:
            folder = paths["label"].parent.parent
            images = {k: paths[k].relative_to(folder).as_posix() for k in ("A", "B", "label")}
            atomic_write_text(paths["meta"], strict_json(class_metadata(pair, index, split, config, images), indent=2))
    if config.classes:
        write_class_label(paths["label"], pair.label)
    else:
        write_png(paths["label"], pair.label)


def make_synthetic_dataset(root: str | Path, config: SynthConfig,
                           progress: ProgressCallback | None = None) -> SynthReport:
    """Write ``config.pairs`` pairs into ``root/{train,val,test}/{A,B,label}/NNNN.png``.

    Multispectral pairs (``bands`` 4 or 13, which need rasterio: the ``geo`` extra) write ``A`` and ``B`` as
    ``NNNN.tif`` (uint16 reflectance x 10000, UTM 32N) and each pair's record in ``meta/NNNN.json``
    (:func:`pair_metadata`). A folder that already holds a dataset of the same settings is completed (pairs
    already written are skipped), so an interrupted run can simply be repeated.

    Class-aware pairs (``classes``) write palette PNG labels of :data:`CHANGE_CLASSES` values, each pair's record
    in ``meta/NNNN.json`` (:func:`class_metadata`, with the captions of both dates), the class file
    :data:`CLASS_FILE` first and the captions of every image, :data:`CAPTIONS_FILE`, last.
    """
    root = Path(root)
    if config.multispectral:
        require_rasterio("--bands 4 or 13 (multispectral GeoTIFF pairs)")
    _check_target(root, config)
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"generator": "mmchange synth", "config": config.record(), "splits": config.split_counts()}
    if config.multispectral:
        manifest.update(band_names=list(band_set(config.bands).names), scale=REFLECTANCE_SCALE,
                        metadata=f"<split>/{PAIR_META_FOLDER}/<name>.json")
    if config.classes:
        manifest.update(classes=CLASS_FILE, captions=CAPTIONS_FILE, metadata=f"<split>/{PAIR_META_FOLDER}/<name>.json")
        atomic_write_text(root / CLASS_FILE, class_file_text())
    atomic_write_text(root / MANIFEST, strict_json(manifest, indent=2))
    width = max(4, len(str(config.pairs - 1)))
    written = skipped = 0
    changed_pixels = total_pixels = 0
    class_pixels = np.zeros(len(CHANGE_CLASSES), np.int64)
    for index in range(config.pairs):
        split = config.split_of(index)
        paths = _pair_files(root / split, f"{index:0{width}d}", config)
        if all(p.is_file() for p in paths.values()):
            skipped += 1
        else:
            pair = synthesize_pair(index, config)
            _write_pair(pair, index, split, paths, config)
            written += 1
            changed_pixels += int((pair.label > 0).sum())
            total_pixels += pair.label.size
            if config.classes:
                class_pixels += np.bincount(pair.label.reshape(-1), minlength=len(CHANGE_CLASSES))
        report(progress, "synth", index + 1, config.pairs)
    fraction = changed_pixels / total_pixels if total_pixels else 0.0
    fractions = None
    if config.classes:
        _write_captions(root, config, width)
        fractions = {c.name: float(class_pixels[c.value]) / total_pixels if total_pixels else 0.0
                     for c in CHANGE_CLASSES.change_classes}
    return SynthReport(root, config.split_counts(), written, skipped, fraction, config.text_signal, config.bands,
                       tuple(config.gain_range) if config.multispectral else None, config.style, fractions)


def _write_captions(root: Path, config: SynthConfig, width: int) -> None:
    """:data:`CAPTIONS_FILE`: the caption of every image of a class-aware dataset, keyed by its path relative to
    ``root`` (as ``mmchange predict --captions`` and the caption store key images), from the pairs' records."""
    import yaml

    captions: dict[str, str] = {}
    for index in range(config.pairs):
        split = config.split_of(index)
        paths = _pair_files(root / split, f"{index:0{width}d}", config)
        try:
            record = json.loads(paths["meta"].read_text(encoding="utf-8"))
            for date in ("A", "B"):
                captions[paths[date].relative_to(root).as_posix()] = record["captions"][date]
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError(f"{paths['meta']} is missing or damaged; delete {paths['label']} and repeat the "
                             f"same command to write the pair again") from None
    head = ("# mmchange synth --classes: what each image shows (its date's land cover), keyed by its path in this "
            "dataset\n")
    atomic_write_text(root / CAPTIONS_FILE, head + yaml.safe_dump(captions, sort_keys=False, allow_unicode=True,
                                                                  width=1000))


# --------------------------------------------------------------------------------------------------
# series of many dates (``mmchange synth --dates N``)

#: Most dates of a synthetic series (``--dates``); the fewest is a series' :data:`MIN_DATES`.
MAX_DATES = 50
#: The first date of every synthetic series; the next dates follow one year apart.
SERIES_START = datetime.date(2015, 6, 1)
#: Each series' description (dates, files, changes), written last: a series whose files and description all
#: exist is complete (skipped when the run is repeated).
SERIES_FILE = "series.json"
#: The subfolder of a series with its ground truth, so the series folder itself holds only dated images.
TRUTH_FOLDER = "truth"
#: The ground-truth maps of a series (uint8 PNG): first and last date index of a change, number of changes.
TRUTH_MAPS = ("first_change", "last_change", "change_count")
#: With ``--geotiff``: the CRS, the pixel side in metres and the origin of series 0 (UTM 32N); series
#: ``i`` lies on its own tile of a grid of :data:`_SERIES_GRID_COLUMNS` columns, 100 m apart.
SERIES_CRS_EPSG = 32632
SERIES_PIXEL_M = 0.5
_SERIES_ORIGIN = (300000.0, 5200000.0)
_SERIES_GRID_COLUMNS = 50
#: Share of the new buildings of a series (built before the last date) that are demolished again later.
_TEMPORARY_FRACTION = 0.25


@dataclass(frozen=True)
class SynthSeriesConfig(SynthConfig):
    """Settings of ``mmchange synth --dates N``: ``pairs`` series (the ``--pairs`` option) of ``dates`` dates each,
    as PNG or, with ``geotiff``, as georeferenced GeoTIFFs."""

    dates: int = 6
    geotiff: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.classes:
            raise InputError("--classes makes pairs; series (--dates) have no class labels, leave one of them out")
        if self.bands != 3:
            raise InputError(f"--bands {self.bands} makes pairs; series (--dates) are RGB only, leave --bands out")
        if not MIN_DATES <= self.dates <= MAX_DATES:
            raise InputError(f"--dates must be between {MIN_DATES} and {MAX_DATES}, got {self.dates}; "
                             f"for pairs of two dates leave --dates out")

    def date(self, k: int) -> datetime.date:
        """The date of index ``k`` (0 = the first date of every series)."""
        return SERIES_START.replace(year=SERIES_START.year + k)

    @property
    def suffix(self) -> str:
        """The suffix of the image files: ``.tif`` with ``geotiff``, else ``.png``."""
        return ".tif" if self.geotiff else ".png"


@dataclass
class SynthSeries:
    """One generated series: every date's image, the building footprints standing at every date (the label
    geometry the ground truth is made of), the ground-truth maps and the list of changes."""

    dates: list[datetime.date]
    images: list[np.ndarray]
    """uint8 ``[H, W, 3]`` per date."""
    footprints: list[np.ndarray]
    """bool ``[H, W]`` per date: the roofs of every building standing at that date."""
    first_change: np.ndarray
    """uint8 ``[H, W]``: index ``k`` of the first date at which the pixel changed (0 = never)."""
    last_change: np.ndarray
    """uint8 ``[H, W]``: index ``k`` of the last date at which the pixel changed (0 = never)."""
    change_count: np.ndarray
    """uint8 ``[H, W]``: how many times the pixel changed."""
    changes: list[dict]
    """One entry per labelled change, by date: ``building`` (its number in the scene), ``kind`` (new or
    demolished), ``index`` and ``date`` of the date it is first seen at, ``pixels`` (its footprint)."""


@dataclass
class SynthSeriesReport:
    """What ``make_synthetic_series`` wrote."""

    root: Path
    counts: dict[str, int]
    dates: int
    written: int
    skipped: int
    change_fraction: float
    """Share of the pixels of the series written now that changed at least once."""
    geotiff: bool
    text_signal: bool
    style: str = DEFAULT_STYLE

    def to_dict(self) -> dict:
        """The summary printed by ``mmchange synth --dates N --json`` (``style`` only when not the default, so the
        default summary stays as it was)."""
        summary = {"root": str(self.root), "splits": self.counts, "series": sum(self.counts.values()),
                   "dates": self.dates, "written": self.written, "skipped": self.skipped,
                   "change_fraction": self.change_fraction, "geotiff": self.geotiff, "text_signal": self.text_signal}
        if self.style != DEFAULT_STYLE:
            summary["style"] = self.style
        return summary


def _series_events(scene: _Scene, rng: np.random.Generator, dates: int) -> list[list[int]]:
    """The date indices (1 .. dates-1) at which each building of ``scene`` appears or disappears: none for a
    static building, one for a new or a demolished one, two for a new building that is demolished again."""
    events: list[list[int]] = []
    for b in scene.buildings:
        if b.kind == "static":
            events.append([])
            continue
        k = int(rng.integers(1, dates))
        if b.kind == "new" and k < dates - 1 and rng.random() < _TEMPORARY_FRACTION:
            events.append([k, int(rng.integers(k + 1, dates))])
        else:
            events.append([k])
    return events


def _series_state(scene: _Scene, events: list[list[int]], t: int) -> _DateState:
    """Date ``t`` of a series: a building stands from the date it is built and is gone from the date it is
    demolished; with ``text_signal`` its lot is cleared and paved while it stands and left bare once demolished."""
    present, cleared, paved, bare = [], [], [], []
    for b, toggles in zip(scene.buildings, events):
        done = sum(k <= t for k in toggles)
        if b.kind == "static":
            present.append(b)
        elif b.kind == "new":
            if done == 1:
                present.append(b)
                paved.append(b)
            elif done == 2:
                bare.append(b)
            if done:
                cleared.append(b)
        elif done:  # demolished
            bare.append(b)
        else:
            present.append(b)
            paved.append(b)
    if not scene.text_signal:  # the lots are not drawn
        empty = np.zeros((scene.size, scene.size), bool)
        return _DateState(present, empty, empty, empty)
    return _DateState(present, scene.lot_mask(cleared), scene.lot_mask(paved), scene.lot_mask(bare))


def synthesize_series(index: int, config: SynthSeriesConfig) -> SynthSeries:
    """Generate series ``index`` of the dataset described by ``config`` (deterministic).

    The place is the one of pair ``index`` of the same seed; each of its new and demolished buildings
    changes at a date index ``k`` in 1..N-1 (absent before ``k`` and standing from ``k`` on, or the
    reverse), and every date has its own nuisance (season, sun, illumination, misregistration, noise).
    """
    rng = np.random.default_rng([config.seed, index])
    no_change = bool(rng.random() < config.no_change_fraction)
    scene = _Scene(rng, config.size, config.text_signal, no_change, STYLES[config.style])
    ground = _ground(scene, rng)
    events = _series_events(scene, rng, config.dates)
    s = config.size
    max_shift = max(0.5, s / 256)
    cast_range = 0.03 if config.text_signal else 0.08
    images, footprints = [], []
    for t in range(config.dates):
        state = _series_state(scene, events, t)
        clean = _render(scene, state, rng, ground)
        # the first date is the reference grid; every later date is misregistered a little against it
        shift = (0.0, 0.0) if t == 0 else tuple(float(v) for v in rng.uniform(-max_shift, max_shift, 2))
        images.append(_acquire(clean, rng, shift, cast_range))  # type: ignore[arg-type]
        footprints.append(_footprints(s, state.present))
    first, last, count = (np.zeros((s, s), np.uint8) for _ in range(3))
    changes = []
    for number, (b, toggles) in enumerate(zip(scene.buildings, events)):
        if not toggles:
            continue
        mask = _footprints(s, [b])
        for j, k in enumerate(toggles):
            first[mask & ((first == 0) | (first > k))] = k
            last[mask] = np.maximum(last[mask], k)
            count[mask] += 1
            changes.append({"building": number, "kind": b.kind if j == 0 else "demolished", "index": k,
                            "date": config.date(k).isoformat(), "pixels": int(mask.sum())})
    changes.sort(key=lambda c: (c["index"], c["building"]))
    dates = [config.date(t) for t in range(config.dates)]
    return SynthSeries(dates, images, footprints, first, last, count, changes)


def series_georeference(index: int, config: SynthSeriesConfig) -> GeoReference:
    """The grid of series ``index`` with ``--geotiff``: UTM 32N, 0.5 m pixels, an origin of its own."""
    require_rasterio("--geotiff (synthetic GeoTIFF series)")
    return _tile_georeference(index, config.size, SERIES_PIXEL_M)


def _series_files(folder: Path, config: SynthSeriesConfig) -> tuple[list[Path], list[Path]]:
    """The image of every date and the ground-truth maps of the series in ``folder``."""
    images = [folder / f"{config.date(t).isoformat()}{config.suffix}" for t in range(config.dates)]
    return images, [folder / TRUTH_FOLDER / f"{name}.png" for name in TRUTH_MAPS]


def make_synthetic_series(root: str | Path, config: SynthSeriesConfig,
                          progress: ProgressCallback | None = None) -> SynthSeriesReport:
    """Write ``config.pairs`` series into ``root/<split>/series_NNNN/`` (see :func:`synthesize_series`).

    Each series folder holds one image per date named by its ISO date (``2015-06-01.png``, ...; ``.tif``
    GeoTIFFs with ``geotiff``), so that it can be read as a series as it is, the ground truth in
    ``truth/`` (``first_change.png``, ``last_change.png``, ``change_count.png``) and ``series.json``
    (dates, files, changes), written last. A folder that already holds a dataset of the same settings
    is completed (complete series are skipped), so an interrupted run can simply be repeated.
    """
    root = Path(root)
    if config.geotiff:
        require_rasterio("--geotiff (synthetic GeoTIFF series)")
    _check_target(root, config)
    root.mkdir(parents=True, exist_ok=True)
    dates = [config.date(t).isoformat() for t in range(config.dates)]
    atomic_write_text(root / MANIFEST, strict_json({"generator": "mmchange synth", "config": config.record(),
                                                    "splits": config.split_counts(), "dates": dates}, indent=2))
    width = max(4, len(str(config.pairs - 1)))
    written = skipped = changed_pixels = total_pixels = 0
    for index in range(config.pairs):
        split = config.split_of(index)
        folder = root / split / f"series_{index:0{width}d}"
        image_paths, truth_paths = _series_files(folder, config)
        if all(p.is_file() for p in (*image_paths, *truth_paths, folder / SERIES_FILE)):
            skipped += 1
        else:
            series = _write_series(folder, index, split, config, image_paths, truth_paths)
            written += 1
            changed_pixels += int((series.change_count > 0).sum())
            total_pixels += series.change_count.size
        report(progress, "synth", index + 1, config.pairs)
    fraction = changed_pixels / total_pixels if total_pixels else 0.0
    return SynthSeriesReport(root, config.split_counts(), config.dates, written, skipped, fraction, config.geotiff,
                             config.text_signal, config.style)


def _write_series(folder: Path, index: int, split: str, config: SynthSeriesConfig, image_paths: list[Path],
                  truth_paths: list[Path]) -> SynthSeries:
    """Generate series ``index`` and write it into ``folder``: images, ground truth, then ``series.json``."""
    series = synthesize_series(index, config)
    georef = series_georeference(index, config) if config.geotiff else None
    for path, image in zip(image_paths, series.images):
        if georef is not None:
            write_image(path, image, georef)
        else:
            write_png(path, image)
    for path, truth in zip(truth_paths, (series.first_change, series.last_change, series.change_count)):
        write_png(path, truth)
    styled = {} if config.style == DEFAULT_STYLE else {"style": config.style}
    record = {"generator": "mmchange synth", "index": index, "split": split, **styled,
              "dates": [d.isoformat() for d in series.dates], "images": [p.name for p in image_paths],
              "truth": {name: p.relative_to(folder).as_posix() for name, p in zip(TRUTH_MAPS, truth_paths)},
              "truth_values": "first_change/last_change: index k of the first/last date at which the pixel "
                              "changed (its date is dates[k]), 0 = never; change_count: number of changes",
              "crs": f"EPSG:{SERIES_CRS_EPSG}" if georef is not None else None,
              "changes": series.changes,
              "change_fraction": float((series.change_count > 0).mean())}
    atomic_write_text(folder / SERIES_FILE, strict_json(record, indent=2))
    return series
