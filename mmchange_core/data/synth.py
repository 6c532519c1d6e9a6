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
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mmchange_core.data.series import MIN_DATES
from mmchange_core.errors import InputError
from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.io.geo import GeoReference, require_rasterio
from mmchange_core.io.images import write_png
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


@dataclass(frozen=True)
class SynthConfig:
    """Settings of ``mmchange synth``: number and size of pairs, seed, and the text-signal option."""

    pairs: int = 200
    size: int = 256
    seed: int = 0
    text_signal: bool = False
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    no_change_fraction: float = 0.15

    def __post_init__(self) -> None:
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


@dataclass
class SynthPair:
    """One generated pair: both dates (uint8 RGB), the change label (bool) and what changed."""

    image_a: np.ndarray
    image_b: np.ndarray
    label: np.ndarray
    info: dict = field(default_factory=dict)


@dataclass
class SynthReport:
    """What ``make_synthetic_dataset`` wrote."""

    root: Path
    counts: dict[str, int]
    written: int
    skipped: int
    change_fraction: float


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


@dataclass
class _Building:
    corners: list[tuple[float, float]]
    halves: tuple[list[tuple[float, float]], list[tuple[float, float]]]
    colour: np.ndarray
    height: float
    kind: str  # "static", "new", "demolished"


def _rectangle(cx: float, cy: float, length: float, width: float, angle: float) -> _Building:
    ux, uy = math.cos(angle), math.sin(angle)
    vx, vy = -uy, ux
    hl, hw = length / 2, width / 2

    def pt(a: float, b: float) -> tuple[float, float]:
        return (cx + a * ux + b * vx, cy + a * uy + b * vy)

    corners = [pt(-hl, -hw), pt(hl, -hw), pt(hl, hw), pt(-hl, hw)]
    halves = ([pt(-hl, -hw), pt(hl, -hw), pt(hl, 0), pt(-hl, 0)],
              [pt(-hl, 0), pt(hl, 0), pt(hl, hw), pt(-hl, hw)])
    return _Building(corners, halves, np.zeros(3, np.float32), 0.0, "static")


class _Scene:
    """Land cover, roads and buildings of one place (shared by both dates)."""

    def __init__(self, rng: np.random.Generator, size: int, text_signal: bool, no_change: bool) -> None:
        self.rng = rng
        self.size = size
        self.text_signal = text_signal
        s = size
        self.angle = float(rng.uniform(0, math.pi / 2))
        # land cover: vegetation vs bare soil from a fractal field, optional water body
        veg_share = float(rng.uniform(0.25, 0.75))
        field_ = _fractal(rng, s, s / 2.5)
        self.vegetation = field_ < np.quantile(field_, veg_share)
        self.water = np.zeros((s, s), bool)
        if rng.random() < 0.3:
            wfield = _fractal(rng, s, s / 2)
            self.water = wfield > np.quantile(wfield, float(rng.uniform(0.85, 0.95)))
            self.vegetation &= ~self.water
        # roads
        self.roads = np.zeros((s, s), bool)
        road_img = Image.new("L", (s, s), 0)
        draw = ImageDraw.Draw(road_img)
        for k in range(int(rng.integers(1, 4))):
            direction = self.angle + (math.pi / 2 if k % 2 else 0.0)
            ux, uy = math.cos(direction), math.sin(direction)
            cx, cy = rng.uniform(0.15 * s, 0.85 * s, 2)
            width = max(2, int(round(s * rng.uniform(0.03, 0.06))))
            draw.line([(cx - 2 * s * ux, cy - 2 * s * uy), (cx + 2 * s * ux, cy + 2 * s * uy)], fill=255,
                      width=width)
        self.roads = np.asarray(road_img) > 0
        self.water &= ~self.roads
        self.vegetation &= ~self.roads
        # buildings
        self.occupied = self.roads | self.water
        self.buildings: list[_Building] = []
        n_static = int(rng.integers(2, 7))
        n_new = 0 if no_change else int(rng.integers(0, 4))
        n_demolished = 0 if no_change else int(rng.integers(0, 3))
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
        rng, s = self.rng, self.size
        wanted = 12 if (self.text_signal and kind == "new") else 1
        candidates: list[tuple[float, _Building, np.ndarray]] = []
        for _ in range(40):
            length = s * rng.uniform(0.10, 0.24)
            width = length * rng.uniform(0.5, 1.0)
            angle = self.angle + rng.normal(0, 0.05)
            cx, cy = rng.uniform(length / 2 + 1, s - length / 2 - 1, 2)
            margin = (_LOT_SCALE if self.text_signal else 1.5) + 0.1
            lot = _polygon_mask(s, [_rectangle(cx, cy, length * margin + 4, width * margin + 4, angle).corners])
            if (lot & self.occupied).any():
                continue
            score = float(self.vegetation[lot].mean())
            candidates.append((score, _rectangle(cx, cy, length, width, angle), lot))
            if len(candidates) >= wanted:
                break
        if not candidates:
            return None
        _, building, lot = max(candidates, key=lambda c: c[0])
        building.colour = _ROOF_COLOURS[rng.integers(len(_ROOF_COLOURS))] * rng.uniform(0.9, 1.1)
        building.height = float(rng.uniform(0.04, 0.1) * s)
        building.kind = kind
        self.occupied |= lot
        return building

    def lot_mask(self, buildings: list[_Building]) -> np.ndarray:
        """The lots around ``buildings`` (with ``text_signal``: cleared, paved or left bare by a change)."""
        polys = []
        for b in buildings:
            xs, ys = zip(*b.corners)
            cx, cy = sum(xs) / 4, sum(ys) / 4
            scale = _LOT_SCALE if self.text_signal else 1.5
            polys.append([(cx + scale * (x - cx), cy + scale * (y - cy)) for x, y in b.corners])
        return _polygon_mask(self.size, polys) if polys else np.zeros((self.size, self.size), bool)

    def label(self) -> np.ndarray:
        changed = [b.corners for b in self.buildings if b.kind != "static"]
        return _polygon_mask(self.size, changed) if changed else np.zeros((self.size, self.size), bool)


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
    s = scene.size
    # 0 = lush green, 0.7 = dry/autumn; with text_signal the vegetation stays green enough to be
    # described as vegetation, so that land-cover descriptions only move where the land changed
    season = float(rng.uniform(0.0, 0.2 if scene.text_signal else 0.7))
    veg_colour = (1 - season) * np.array([62, 104, 48], np.float32) + season * np.array([140, 128, 70], np.float32)
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
    present = state.present
    sun = ground["sun"] + rng.normal(0, 0.25)
    shadow_img = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(shadow_img)
    for b in present:
        dx, dy = math.cos(sun) * b.height, math.sin(sun) * b.height
        for t in np.linspace(0, 1, 6):
            draw.polygon([(x + t * dx, y + t * dy) for x, y in b.corners], fill=255)
    shadow = _blur(np.asarray(shadow_img) > 0, 0.6)[..., None]
    img = img * (1 - 0.55 * shadow)
    roof_img = np.zeros((s, s, 3), np.float32)
    roof_mask = np.zeros((s, s), bool)
    for b in present:
        for k, half in enumerate(b.halves):
            m = _polygon_mask(s, [half])
            shade = 1.08 if k == 0 else 0.9
            roof_img[m] = b.colour * shade
            roof_mask |= m
    roof_texture = 0.94 + 0.12 * ground["fine"][..., None]
    img = np.where(roof_mask[..., None], roof_img * roof_texture, img)
    return img


def _ground(scene: _Scene, rng: np.random.Generator) -> dict[str, np.ndarray]:
    s = scene.size
    soil_tint = np.array([168, 140, 104], np.float32) * rng.uniform(0.85, 1.1, 3).astype(np.float32)
    mottling = _fractal(rng, s, s / 6)[..., None]
    fine = _smooth_noise(rng, s, 2.0)
    soil = soil_tint * (0.8 + 0.35 * mottling) + 10 * (fine[..., None] - 0.5)
    # tree crowns: many small blobs on a coarser canopy field
    canopy_img = Image.fromarray((_smooth_noise(rng, s, 4.0) * 140).astype(np.uint8))
    draw = ImageDraw.Draw(canopy_img)
    for _ in range(int(s * s / 60)):
        x, y = rng.uniform(0, s, 2)
        r = rng.uniform(1.0, max(1.5, s / 40))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=int(rng.integers(120, 256)))
    canopy = np.asarray(canopy_img.filter(ImageFilter.GaussianBlur(0.7)), np.float32) / 255.0
    water = np.array([46, 74, 96], np.float32) * (0.9 + 0.2 * _smooth_noise(rng, s, s / 4)[..., None])
    asphalt = np.float32(rng.uniform(95, 130)) * (0.95 + 0.1 * fine[..., None]) * np.array([0.97, 0.99, 1.04],
                                                                                          np.float32)
    paved = np.array([170, 173, 180], np.float32) * (0.92 + 0.12 * fine[..., None])
    bare = np.array([150, 118, 84], np.float32) * (0.85 + 0.3 * mottling)
    return {"soil": soil, "canopy": canopy, "water": water, "asphalt": asphalt, "paved": paved,
            "bare": bare, "fine": fine, "sun": np.float32(rng.uniform(0, 2 * math.pi))}


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
    """Generate pair ``index`` of the dataset described by ``config`` (deterministic)."""
    rng = np.random.default_rng([config.seed, index])
    no_change = bool(rng.random() < config.no_change_fraction)
    scene = _Scene(rng, config.size, config.text_signal, no_change)
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
# writing a dataset


def _check_target(root: Path, config: SynthConfig) -> None:
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} exists and is not a folder; choose a new folder for the synthetic dataset")
    manifest = root / MANIFEST
    if manifest.is_file():
        stored = json.loads(manifest.read_text(encoding="utf-8")).get("config", {})
        if stored != asdict(config):
            raise InputError(f"{root} holds a synthetic dataset made with other settings ({stored}); "
                             f"choose a new folder or repeat the same settings to complete it")
        return
    if root.exists() and any(root.iterdir()):
        raise InputError(f"{root} exists and is not empty; choose a new folder for the synthetic dataset")


def make_synthetic_dataset(root: str | Path, config: SynthConfig,
                           progress: ProgressCallback | None = None) -> SynthReport:
    """Write ``config.pairs`` pairs into ``root/{train,val,test}/{A,B,label}/NNNN.png``.

    A folder that already holds a dataset of the same settings is completed (pairs already
    written are skipped), so an interrupted run can simply be repeated.
    """
    root = Path(root)
    _check_target(root, config)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / MANIFEST, strict_json({"generator": "mmchange synth", "config": asdict(config),
                                                    "splits": config.split_counts()}, indent=2))
    width = max(4, len(str(config.pairs - 1)))
    written = skipped = 0
    changed_pixels = total_pixels = 0
    for index in range(config.pairs):
        split = config.split_of(index)
        name = f"{index:0{width}d}.png"
        paths = [root / split / d / name for d in ("A", "B", "label")]
        if all(p.is_file() for p in paths):
            skipped += 1
        else:
            pair = synthesize_pair(index, config)
            # the label goes last: a pair counts as written once its label exists
            write_png(paths[0], pair.image_a)
            write_png(paths[1], pair.image_b)
            write_png(paths[2], pair.label)
            written += 1
            changed_pixels += int(pair.label.sum())
            total_pixels += pair.label.size
        report(progress, "synth", index + 1, config.pairs)
    fraction = changed_pixels / total_pixels if total_pixels else 0.0
    return SynthReport(root, config.split_counts(), written, skipped, fraction)


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

    def to_dict(self) -> dict:
        """The summary printed by ``mmchange synth --dates N --json``."""
        return {"root": str(self.root), "splits": self.counts, "series": sum(self.counts.values()),
                "dates": self.dates, "written": self.written, "skipped": self.skipped,
                "change_fraction": self.change_fraction, "geotiff": self.geotiff, "text_signal": self.text_signal}


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
    scene = _Scene(rng, config.size, config.text_signal, no_change)
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
        footprints.append(_polygon_mask(s, [b.corners for b in state.present]))
    first, last, count = (np.zeros((s, s), np.uint8) for _ in range(3))
    changes = []
    for number, (b, toggles) in enumerate(zip(scene.buildings, events)):
        if not toggles:
            continue
        mask = _polygon_mask(s, [b.corners])
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
    from affine import Affine
    from rasterio.crs import CRS

    row, column = divmod(index, _SERIES_GRID_COLUMNS)
    step = config.size * SERIES_PIXEL_M + 100.0
    x0, y0 = _SERIES_ORIGIN[0] + column * step, _SERIES_ORIGIN[1] - row * step
    return GeoReference(CRS.from_epsg(SERIES_CRS_EPSG), Affine(SERIES_PIXEL_M, 0.0, x0, 0.0, -SERIES_PIXEL_M, y0))


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
    atomic_write_text(root / MANIFEST, strict_json({"generator": "mmchange synth", "config": asdict(config),
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
                             config.text_signal)


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
    record = {"generator": "mmchange synth", "index": index, "split": split,
              "dates": [d.isoformat() for d in series.dates], "images": [p.name for p in image_paths],
              "truth": {name: p.relative_to(folder).as_posix() for name, p in zip(TRUTH_MAPS, truth_paths)},
              "truth_values": "first_change/last_change: index k of the first/last date at which the pixel "
                              "changed (its date is dates[k]), 0 = never; change_count: number of changes",
              "crs": f"EPSG:{SERIES_CRS_EPSG}" if georef is not None else None,
              "changes": series.changes,
              "change_fraction": float((series.change_count > 0).mean())}
    atomic_write_text(folder / SERIES_FILE, strict_json(record, indent=2))
    return series
