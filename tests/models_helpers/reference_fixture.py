"""Build the authors'-format state dict filled by the deterministic rule of ``spec/README.md``."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import torch



def parse_shape(text: str) -> tuple[int, ...]:
    return () if text == "scalar" else tuple(int(v) for v in text.split("x"))


def reference_keys(spec_dir: Path) -> list[tuple[str, tuple[int, ...], bool]]:
    rows = []
    lines = (spec_dir / "reference_state_dict.tsv").read_text().splitlines()[1:]
    for line in lines:
        key, shape, used = line.split("\t")
        rows.append((key, parse_shape(shape), used == "yes"))
    return rows


def fill_value(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The spec's deterministic value for one tensor (float64)."""
    n = int(np.prod(shape)) if shape else 1
    i = np.arange(n, dtype=np.float64)
    phase = (zlib.crc32(key.encode("utf-8")) % 997) / 100
    if key.endswith("running_mean"):
        values = 0.1 * np.sin(0.3 * i + phase)
    elif key.endswith("running_var"):
        values = 1 + 0.5 * np.sin(0.3 * i + phase) ** 2
    elif len(shape) >= 2:
        fan_in = n // shape[0]
        values = np.sin(0.7 * i + phase) * math.sqrt(2.5 / fan_in)
    elif key.endswith("weight"):
        values = 1 + 0.1 * np.sin(0.7 * i + phase)
    else:
        values = 0.05 * np.sin(0.7 * i + phase)
    return torch.from_numpy(values.reshape(shape))


def reference_state_dict(spec_dir: Path) -> dict[str, torch.Tensor]:
    """Every key of the authors' checkpoint, filled by the spec's rule."""
    state = {}
    for key, shape, _ in reference_keys(spec_dir):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.long)
        else:
            state[key] = fill_value(key, shape)
    return state
