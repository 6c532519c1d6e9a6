"""From-to change classes from SECOND-style semantic maps, for ``mmchange train --classes``; numpy and Pillow only.

    python examples/second_to_change.py LABEL1 LABEL2 OUT [--top N] [--like CLASSES.yaml]

SECOND labels each date of a pair with its own land-cover map where the land changed, 0 where it did not:
0 unchanged, 1 water, 2 ground (non-vegetated), 3 low vegetation, 4 tree, 5 building, 6 playground. A map is a grey
or palette PNG holding these values, or an RGB PNG in SECOND's colours (unchanged white, water blue, ground grey,
low vegetation dark green, tree green, building dark red, playground red). LABEL1 and LABEL2 are the maps of the
first and second date: two files, or two folders whose PNGs are paired by name (SECOND's ``label1``/``label2``).

Each pixel whose class differs between the dates (both not 0) gets the value of its from-to pair,
``10 x from + to``: 45 is "tree -> building", 53 "building -> low vegetation". Everything else is 0, "no change":
pixels 0 in both maps, of the same class in both, or 0 in one map only (inconsistent; counted and reported). The
values are the same whatever the input, so labels converted separately (train, val, test) agree.

OUT (a folder) receives one palette PNG label per pair (the palette index is the value; its colours those of the
class file) and ``classes.yaml``: "no change" and every from-to pair that occurs, in the class file format of
``mmchange train --classes`` (value, name, colour). ``--top N`` keeps the N most frequent pairs (pixels over all
the maps given) and lumps the others into "other change" (value 1). ``--like CLASSES.yaml`` keeps the pairs of a
class file this script wrote, e.g. the training split's, so that the validation and test labels use its classes::

    python examples/second_to_change.py SECOND/train/label1 SECOND/train/label2 SECOND/train/change --top 8
    python examples/second_to_change.py SECOND/val/label1 SECOND/val/label2 SECOND/val/change \\
        --like SECOND/train/change/classes.yaml
    # a pair list (CSV: image_a,image_b,label,split) naming im1/X.png, im2/X.png and change/X.png of each pair:
    mmchange train --dataset second.csv --classes SECOND/train/change/classes.yaml

Files are written to a temporary name and renamed, so an interrupted run leaves no half-written PNG.
"""

from __future__ import annotations

import argparse
import colorsys
import os
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

#: SECOND's land-cover classes by value (0: unchanged).
SECOND_CLASSES = {1: "water", 2: "ground", 3: "low vegetation", 4: "tree", 5: "building", 6: "playground"}
#: SECOND's RGB colours of the values 0..6 (its published label colour map).
SECOND_COLOURS = ((255, 255, 255), (0, 0, 255), (128, 128, 128), (0, 128, 0), (0, 255, 0), (128, 0, 0), (255, 0, 0))
#: The value of "other change" (``--top``): no from-to pair has it (every pair is 12 or more).
OTHER = 1
#: Every from-to pair by value, in value order.
PAIRS = {10 * a + b: f"{SECOND_CLASSES[a]} -> {SECOND_CLASSES[b]}"
         for a in SECOND_CLASSES for b in SECOND_CLASSES if a != b}


class InputError(Exception):
    """Bad input: printed as one line."""


def pair_value(before: int, after: int) -> int:
    """The label value of the change from class ``before`` to class ``after`` (``10 x before + after``)."""
    return 10 * before + after


def colour(value: int) -> tuple[int, int, int]:
    """A fixed colour for ``value``: black for no change, grey for other change, a hue per from-to pair."""
    if value == 0:
        return (0, 0, 0)
    if value == OTHER:
        return (160, 160, 160)
    rank = sorted(PAIRS).index(value)
    r, g, b = colorsys.hsv_to_rgb((rank * 0.618034) % 1.0, 0.8, 0.95)
    return (round(255 * r), round(255 * g), round(255 * b))


def read_semantic(path: Path) -> np.ndarray:
    """A SECOND map as uint8 values 0..6: grey level, palette index, or an RGB colour of :data:`SECOND_COLOURS`."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("L", "P", "I", "I;16"):
                values = np.asarray(img).astype(np.int64)
            elif img.mode in ("RGB", "RGBA"):
                rgb = np.asarray(img.convert("RGB")).astype(np.int64)
                packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
                values = np.full(packed.shape, -1, np.int64)
                for value, (r, g, b) in enumerate(SECOND_COLOURS):
                    values[packed == (r << 16) | (g << 8) | b] = value
                if (values < 0).any():
                    y, x = np.argwhere(values < 0)[0]
                    raise InputError(f"{path}: pixel ({x}, {y}) has colour {tuple(rgb[y, x].tolist())}, not one of "
                                     f"SECOND's class colours")
            else:
                raise InputError(f"{path}: a {img.mode} image; give a grey, palette or RGB PNG")
    except OSError as exc:
        raise InputError(f"{path}: cannot read it as an image ({exc})") from None
    bad = values[(values < 0) | (values > 6)]
    if bad.size:
        raise InputError(f"{path} has value {int(bad[0])}; a SECOND map holds 0 (unchanged) to 6 (playground)")
    return values.astype(np.uint8)


def from_to(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, int]:
    """The from-to values (uint8) of two maps of the same size, and the count of inconsistent pixels (0 in one map
    only), which are no change."""
    if before.shape != after.shape:
        raise InputError(f"the maps are {before.shape[1]}x{before.shape[0]} and {after.shape[1]}x{after.shape[0]}; "
                         f"the two dates must have the same size")
    changed = (before > 0) & (after > 0) & (before != after)
    values = np.where(changed, 10 * before.astype(np.uint16) + after, 0).astype(np.uint8)
    return values, int(((before > 0) != (after > 0)).sum())


def keep_top(counts: dict[int, int], top: int | None) -> list[int]:
    """The from-to values kept as classes: every one that occurs, or the ``top`` most frequent (ties: lower value)."""
    occurring = sorted((v for v, n in counts.items() if n > 0), key=lambda v: (-counts[v], v))
    return sorted(occurring if top is None else occurring[:top])


def lump(values: np.ndarray, kept: list[int], other: bool) -> np.ndarray:
    """``values`` with every from-to value not in ``kept`` turned into :data:`OTHER` (``other``) or refused."""
    out = values.copy()
    rest = (values > 0) & ~np.isin(values, kept)
    if rest.any() and not other:
        raise InputError(f"the maps hold the change {PAIRS[int(values[rest][0])]!r}, which the class file does not "
                         f"list and it has no 'other change'; convert without --like or with --top")
    out[rest] = OTHER
    return out


def class_file_text(kept: list[int], other: bool) -> str:
    """``classes.yaml`` (value, name, colour of each class; no change first) in the format of mmchange's class files."""
    lines = ["# from-to change classes of SECOND-style maps (examples/second_to_change.py): value = 10 x from + to",
             "classes:", '  - {value: 0, name: "no change", colour: [0, 0, 0]}']
    for value in kept + ([OTHER] if other else []):
        name = "other change" if value == OTHER else PAIRS[value]
        lines.append(f'  - {{value: {value}, name: "{name}", colour: [{", ".join(map(str, colour(value)))}]}}')
    return "\n".join(lines) + "\n"


def read_like(path: Path) -> tuple[list[int], bool]:
    """The kept from-to values of a class file this script wrote and whether it has "other change"."""
    try:
        values = [int(v) for v in re.findall(r"value:\s*(\d+)", path.read_text(encoding="utf-8"))]
    except OSError as exc:
        raise InputError(f"--like {path}: cannot read it ({exc})") from None
    unknown = [v for v in values if v not in PAIRS and v not in (0, OTHER)]
    if not values or unknown:
        raise InputError(f"--like {path} is not a class file of this script (value {unknown[0] if unknown else None})")
    return sorted(v for v in values if v in PAIRS), OTHER in values


def write_label(path: Path, values: np.ndarray, palette: list[int]) -> None:
    """Write ``values`` as a palette PNG (index = value), to a temporary name first."""
    tmp = path.with_name(f".{path.name}.tmp")
    img = Image.fromarray(values)
    img.putpalette(palette)
    img.save(tmp, format="PNG")
    os.replace(tmp, path)


def pairs_of(label1: Path, label2: Path) -> list[tuple[Path, Path]]:
    """The (first date, second date) maps: two files, or the PNGs of two folders paired by name."""
    if label1.is_file() and label2.is_file():
        return [(label1, label2)]
    if not (label1.is_dir() and label2.is_dir()):
        raise InputError(f"{label1} and {label2} must be two PNG files or two folders of them")
    names = sorted(p.name for p in label1.glob("*.png"))
    missing = [n for n in names if not (label2 / n).is_file()]
    if not names or missing:
        raise InputError(f"{label2} has no {missing[0]}" if missing else f"{label1} holds no PNG")
    return [(label1 / n, label2 / n) for n in names]


def convert(label1: Path, label2: Path, out: Path, top: int | None = None, like: Path | None = None) -> dict:
    """Convert every pair of maps into ``out`` (labels and ``classes.yaml``); returns pixels per class value and
    the count of inconsistent pixels."""
    if top is not None and top < 1:
        raise InputError(f"--top must be at least 1, got {top}")
    if top is not None and like is not None:
        raise InputError("give --top or --like, not both")
    pairs = pairs_of(label1, label2)
    converted, inconsistent = [], 0
    counts = {v: 0 for v in PAIRS}
    for first, second in pairs:
        values, odd = from_to(read_semantic(first), read_semantic(second))
        inconsistent += odd
        for value, n in zip(*np.unique(values, return_counts=True)):
            if value:
                counts[int(value)] += int(n)
        converted.append((first.name, values))
    if like is not None:
        kept, other = read_like(like)
    else:
        kept = keep_top(counts, top)
        other = top is not None and any(counts[v] for v in PAIRS if v not in kept)
    palette = [0] * 768
    for value in [0, *kept, *([OTHER] if other else [])]:
        palette[3 * value:3 * value + 3] = colour(value)
    out.mkdir(parents=True, exist_ok=True)
    pixels: dict[int, int] = {}
    for name, values in converted:
        label = lump(values, kept, other)
        write_label(out / name, label, palette)
        for value, n in zip(*np.unique(label, return_counts=True)):
            pixels[int(value)] = pixels.get(int(value), 0) + int(n)
    tmp = out / ".classes.yaml.tmp"
    tmp.write_text(class_file_text(kept, other), encoding="utf-8")
    os.replace(tmp, out / "classes.yaml")
    return {"pairs": len(converted), "pixels": pixels, "inconsistent": inconsistent, "classes": len(kept) + 1 + other}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("label1", type=Path, help="map of the first date (PNG) or folder of them")
    parser.add_argument("label2", type=Path, help="map of the second date (PNG) or folder of them")
    parser.add_argument("out", type=Path, help="folder for the change labels and classes.yaml")
    parser.add_argument("--top", type=int, help="keep the N most frequent from-to pairs, the rest 'other change'")
    parser.add_argument("--like", type=Path, help="keep the classes of this classes.yaml (written by this script)")
    args = parser.parse_args(argv)
    try:
        summary = convert(args.label1, args.label2, args.out, args.top, args.like)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = {0: "no change", OTHER: "other change", **PAIRS}
    total = sum(summary["pixels"].values())
    print(f"{summary['pairs']} pair(s), {summary['classes']} classes -> {args.out / 'classes.yaml'}")
    for value, n in sorted(summary["pixels"].items(), key=lambda kv: -kv[1]):
        print(f"  {value:3d} {names[value]:<32} {100 * n / total:6.2f}%")
    if summary["inconsistent"]:
        print(f"  {summary['inconsistent']} pixel(s) changed in one map only: no change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
