"""Visual styles of synthetic scenes (``mmchange synth --style``): the default look stays as it was (its pixels are
pinned in ``test_synth_multispectral.py``), and ``desert`` is a clearly different region (sandy, little vegetation,
brighter; smaller, denser, non-rectangular flat-roofed compounds with courtyards) with the same label semantics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mmchange_core.data.synth import MANIFEST, STYLES, SynthConfig, SynthPair, make_synthetic_dataset, synthesize_pair
from mmchange_core.errors import InputError
from tests.cli_helpers import assert_cli_error
from tests.data_helpers import components

PAIRS, SIZE, SEED = 6, 64, 0


def _pairs(style: str, **kwargs) -> list[SynthPair]:
    """The small test set of one style: 6 pairs of 64 px."""
    config = SynthConfig(pairs=PAIRS, size=SIZE, seed=SEED, style=style, **kwargs)
    return [synthesize_pair(i, config) for i in range(PAIRS)]


def _rectangularity(region: list[tuple[int, int]]) -> float:
    """Pixels of a region over the pixels of its minimum-area bounding rectangle (any rotation): about 1 for a filled
    rectangle, lower for an L, a ring or a disc."""
    points = sorted({(c, r) for r, c in region})

    def cross(o: tuple, a: tuple, b: tuple) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[int, int]] = []
    upper: list[tuple[int, int]] = []
    for chain, seq in ((lower, points), (upper, points[::-1])):
        for p in seq:
            while len(chain) >= 2 and cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
    hull = lower[:-1] + upper[:-1]
    if len(hull) < 3:
        return 1.0
    best = math.inf
    for (x0, y0), (x1, y1) in zip(hull, hull[1:] + hull[:1]):
        norm = math.hypot(x1 - x0, y1 - y0)
        ux, uy = (x1 - x0) / norm, (y1 - y0) / norm
        along = [x * ux + y * uy for x, y in hull]
        across = [y * ux - x * uy for x, y in hull]
        best = min(best, (max(along) - min(along) + 1) * (max(across) - min(across) + 1))  # pixel centres: +1
    return len(region) / best


def _has_hole(region: list[tuple[int, int]]) -> bool:
    """Whether a region encloses background (a courtyard)."""
    rows, cols = zip(*region)
    r0, c0 = min(rows) - 1, min(cols) - 1
    box = np.zeros((max(rows) - r0 + 2, max(cols) - c0 + 2), bool)
    for r, c in region:
        box[r - r0, c - c0] = True
    h, w = box.shape
    return any(all(0 < r < h - 1 and 0 < c < w - 1 for r, c in bg) for bg in components(~box))


def _colour(pairs: list[SynthPair]) -> dict[str, float]:
    """Mean R, G, luminance (0..1) and the share of green-vegetation pixels (hue 65-165 deg, saturated) of both
    dates."""
    rgb = np.concatenate([np.concatenate([p.image_a, p.image_b]).reshape(-1, 3) for p in pairs]).astype(np.float64)
    r, g, b = rgb.T
    high, low = rgb.max(1), rgb.min(1)
    delta = np.maximum(high - low, 1e-6)
    hue = 60 * np.where(high == r, ((g - b) / delta) % 6, np.where(high == g, (b - r) / delta + 2, (r - g) / delta + 4))
    saturation = (high - low) / np.maximum(high, 1)
    green = (hue >= 65) & (hue < 165) & (saturation >= 0.12)
    return {"red": r.mean(), "green": g.mean(), "luminance": (0.299 * r + 0.587 * g + 0.114 * b).mean() / 255,
            "vegetation": float(green.mean())}


def _polygon(points: list[list[float]]) -> np.ndarray:
    img = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in points], fill=255)
    return np.asarray(img) > 0


# --------------------------------------------------------------------------------------------------


def test_the_default_style_is_the_unstyled_output() -> None:
    """Naming the default style changes nothing, pixels or manifest (the pixels themselves are pinned elsewhere)."""
    assert SynthConfig().style in STYLES and set(STYLES) >= {"suburb", "desert"}
    default = SynthConfig(pairs=PAIRS, size=SIZE, seed=SEED)
    named = SynthConfig(pairs=PAIRS, size=SIZE, seed=SEED, style=default.style)
    for i in range(PAIRS):
        a, b = synthesize_pair(i, default), synthesize_pair(i, named)
        assert all(np.array_equal(x, y) for x, y in ((a.image_a, b.image_a), (a.image_b, b.image_b),
                                                   (a.label, b.label)))
    assert "style" not in default.record() and SynthConfig(style="desert").record()["style"] == "desert"


def test_desert_colours_are_sand_not_green() -> None:
    """Sand/ochre ground (red above green), little vegetation, a brighter scene than the green suburb."""
    suburb, desert = _colour(_pairs("suburb")), _colour(_pairs("desert"))
    assert desert["red"] - desert["green"] > 10, desert  # sand and ochre: warm, red over green
    assert abs(suburb["red"] - suburb["green"]) < 10, suburb  # green vegetation and brown soil balance out
    assert desert["vegetation"] < 0.12 and suburb["vegetation"] > 0.25, (desert, suburb)  # scrub, not green cover
    assert desert["luminance"] > suburb["luminance"] + 0.05, (desert, suburb)


def test_desert_buildings_are_smaller_denser_and_not_rectangles() -> None:
    suburb, desert = _pairs("suburb"), _pairs("desert")
    regions = {name: [r for p in pairs for r in components(p.label, eight=True)] for name, pairs in
               (("suburb", suburb), ("desert", desert))}
    fill = {name: float(np.median([_rectangularity(r) for r in rs])) for name, rs in regions.items()}
    # L-shaped, courtyard and round compounds fill clearly less of their bounding rectangle than rectangles do
    assert fill["desert"] < fill["suburb"] - 0.07, fill
    assert sum(_has_hole(r) for r in regions["desert"]) >= 1  # courtyards are ground, not labelled roof
    assert not any(_has_hole(r) for r in regions["suburb"])

    def buildings(pairs: list[SynthPair]) -> float:
        return float(np.mean([p.info["static"] + p.info["new"] + p.info["demolished"] for p in pairs]))

    assert buildings(desert) > 1.5 * buildings(suburb)
    assert np.mean([len(r) for r in regions["desert"]]) < np.mean([len(r) for r in regions["suburb"]])


def test_desert_labels_mark_exactly_the_changed_buildings() -> None:
    """The label is the recorded footprints (outlines less courtyards) of the new and demolished buildings: one
    region each, as in the default style."""
    for rgb, twin in zip(_pairs("desert"), _pairs("desert", bands=4, nir_only_fraction=0.0)):
        changes = twin.info["changes"]  # the same place, its changed objects recorded with their geometry
        assert sorted(c["kind"] for c in changes) == ["demolished"] * rgb.info["demolished"] + ["new"] * rgb.info["new"]
        expected = np.zeros((SIZE, SIZE), bool)
        for change in changes:
            footprint = _polygon(change["polygon"])
            for hole in change.get("holes", []):
                footprint &= ~_polygon(hole)
            assert int(footprint.sum()) == change["pixels"]
            expected |= footprint
        assert np.array_equal(rgb.label, expected) and np.array_equal(twin.label, expected)
        assert len(components(rgb.label, eight=True)) == len(changes)


def test_desert_multispectral_pairs_are_sand_with_little_vegetation() -> None:
    """With near-infrared the desert's ground is bare: its NDVI is clearly below the suburb's."""
    def ndvi(style: str) -> float:
        pixels = np.concatenate([p.image_a.reshape(-1, 4) for p in _pairs(style, bands=4)]).astype(np.float64)
        red, nir = pixels[:, 0], pixels[:, 3]
        return float(np.mean((nir - red) / np.maximum(nir + red, 1)))

    assert ndvi("desert") < 0.2 < ndvi("suburb") - 0.1


def test_styles_are_deterministic_and_resumable(tmp_path: Path) -> None:
    first, again = _pairs("desert"), _pairs("desert")
    for a, b in zip(first, again):
        assert np.array_equal(a.image_a, b.image_a) and np.array_equal(a.image_b, b.image_b)
        assert np.array_equal(a.label, b.label) and a.info == b.info
    reseeded = synthesize_pair(0, SynthConfig(pairs=PAIRS, size=SIZE, seed=SEED + 1, style="desert"))
    assert not np.array_equal(reseeded.image_a, first[0].image_a)
    # a repeated run completes the same dataset; another style is refused in the same folder
    config = SynthConfig(pairs=3, size=32, seed=SEED, style="desert")
    assert make_synthetic_dataset(tmp_path / "ds", config).written == 3
    assert json.loads((tmp_path / "ds" / MANIFEST).read_text())["config"]["style"] == "desert"
    assert make_synthetic_dataset(tmp_path / "ds", config).skipped == 3
    with pytest.raises(InputError, match="made with other settings"):
        make_synthetic_dataset(tmp_path / "ds", SynthConfig(pairs=3, size=32, seed=SEED))


def test_unknown_style_is_refused_naming_the_known_ones(cli, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--style 'mars' is unknown; choose one of: suburb, desert"):
        SynthConfig(style="mars")
    for extra in ((), ("--dates", 3)):
        result = cli("synth", tmp_path / "mars", "--style", "mars", "--pairs", 3, "--size", 32, *extra)
        assert_cli_error(result, "--style 'mars' is unknown; choose one of: suburb, desert")
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
        assert not (tmp_path / "mars").exists()  # refused before anything is written
    result = cli("synth", tmp_path / "desert", "--style", "desert", "--pairs", 3, "--size", 32, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["style"] == "desert" and summary["written"] == 3
