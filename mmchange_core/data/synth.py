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
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mmchange_core.errors import InputError
from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.io.images import write_png
from mmchange_core.io.jsonio import strict_json
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
        self.lots = {kind: self._lot_mask(kind) for kind in ("new", "demolished")}

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

    def _lot_mask(self, kind: str) -> np.ndarray:
        polys = []
        for b in self.buildings:
            if b.kind != kind:
                continue
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


def _render(scene: _Scene, date: str, rng: np.random.Generator, ground: dict[str, np.ndarray]) -> np.ndarray:
    s = scene.size
    # 0 = lush green, 0.7 = dry/autumn; with text_signal the vegetation stays green enough to be
    # described as vegetation, so that land-cover descriptions only move where the land changed
    season = float(rng.uniform(0.0, 0.2 if scene.text_signal else 0.7))
    veg_colour = (1 - season) * np.array([62, 104, 48], np.float32) + season * np.array([140, 128, 70], np.float32)
    img = ground["soil"].copy()
    vegetation = scene.vegetation.copy()
    if scene.text_signal:
        # construction clears the lot of a new building (date B) and demolition leaves bare soil
        if date == "B":
            vegetation &= ~scene.lots["new"]
    veg = vegetation[..., None]
    img = np.where(veg, veg_colour * (0.75 + 0.5 * ground["canopy"][..., None]), img)
    img = np.where(scene.water[..., None], ground["water"], img)
    if scene.text_signal:
        if date == "B":
            img = np.where(scene.lots["new"][..., None], ground["paved"], img)
            img = np.where(scene.lots["demolished"][..., None], ground["bare"], img)
        else:
            img = np.where(scene.lots["demolished"][..., None], ground["paved"], img)
    img = np.where(scene.roads[..., None], ground["asphalt"], img)
    # buildings with cast shadows; the sun moves a little between the dates
    present = [b for b in scene.buildings if b.kind == "static" or (b.kind == "new") == (date == "B")]
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
    clean_a = _render(scene, "A", rng, ground)
    clean_b = _render(scene, "B", rng, ground)
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
