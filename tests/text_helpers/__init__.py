"""Synthetic datasets for the text-branch tests: tiles whose land-cover mix differs per image."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from PIL import Image

#: Typical colours of the four land-cover classes the basic captioner distinguishes.
COLOURS = {
    "vegetation": (62, 128, 58),
    "water": (38, 74, 150),
    "built": (168, 168, 174),
    "bare": (164, 124, 84),
}


def land_cover_image(shares: dict[str, float], size: int = 48, seed: int = 0) -> np.ndarray:
    """A uint8 RGB tile made of horizontal bands with the given class shares, plus mild noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3), np.int16)
    row = 0
    items = list(shares.items())
    for i, (name, share) in enumerate(items):
        rows = size - row if i == len(items) - 1 else int(round(share * size))
        image[row:row + rows] = COLOURS[name]
        row += rows
    image += rng.integers(-6, 7, image.shape, dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def random_mix(seed: int) -> dict[str, float]:
    """Two classes with a seed-dependent split; distinct for the first 204 seeds (distinct captions)."""
    pairs = list(itertools.permutations(COLOURS, 2))
    first, second = pairs[seed % len(pairs)]
    share = 0.1 + 0.05 * (seed % 17)
    return {first: share, second: 1.0 - share}


def write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def make_dataset(root: Path, layout: str = "split-folders", pairs: int = 3, size: int = 48) -> Path:
    """A small change-detection dataset in ``layout`` (split-folders, sysu or flat); returns ``root``."""
    dirs = {"split-folders": ("A", "B"), "sysu": ("time1", "time2"), "flat": ("A", "B")}[layout]
    splits = [""] if layout == "flat" else ["train", "test"]
    index = 0
    for split in splits:
        base = root / split if split else root
        for n in range(pairs):
            name = f"{split or 'tile'}_{n}.png"
            for d, date_dir in enumerate(dirs):
                write_image(base / date_dir / name, land_cover_image(random_mix(index * 2 + d), size, index * 2 + d))
            label = np.zeros((size, size), np.uint8)
            label[: size // 2] = 255
            write_image(base / "label" / name, label)
            index += 1
    return root
