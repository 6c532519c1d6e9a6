"""mmchange checkpoints: safetensors weights plus the model config (and free-form metadata).

A checkpoint alone rebuilds its model: the config travels in the safetensors header. Loading never
unpickles anything. Writes are atomic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from mmchange_core.config import ConfigError, from_dict, to_dict
from mmchange_core.errors import CheckpointError
from mmchange_core.io.atomic import atomic_write_bytes
from mmchange_core.models.config import ModelConfig
from mmchange_core.models.mmchange import MMChange

FORMAT = "mmchange-checkpoint"
FORMAT_VERSION = "1"
#: Decision threshold and tile side of checkpoints whose metadata does not give them.
DEFAULT_THRESHOLD = 0.5
DEFAULT_TILE_SIZE = 256


def _header(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not an mmchange checkpoint (safetensors); for the authors' .pth files run "
            f"'mmchange convert {path} -o model.safetensors'") from exc
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not an mmchange checkpoint "
                              f"(no '{FORMAT}' header); convert it with 'mmchange convert'")
    return header


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The checkpoint's metadata (``model_config`` plus extras such as ``threshold``), without weights."""
    header = _header(Path(path))
    meta = json.loads(header.get("meta", "{}"))
    meta["model_config"] = json.loads(header["model_config"])
    return meta


def save_checkpoint(path: str | Path, model: MMChange, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights, config and ``meta`` (JSON-serialisable) to ``path`` atomically."""
    from mmchange_core import __version__

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    extras = dict(meta or {})
    extras.pop("model_config", None)
    extras.setdefault("mmchange_version", __version__)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": json.dumps(to_dict(model.config)),
        "meta": json.dumps(extras),
    }
    return atomic_write_bytes(path, save(state, metadata=header))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[MMChange, dict[str, Any]]:
    """Rebuild the model stored at ``path`` (in eval mode) and return it with its metadata."""
    path = Path(path)
    meta = read_checkpoint_meta(path)
    try:
        config = from_dict(ModelConfig, meta["model_config"])
    except (ConfigError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: stored model config is invalid ({exc})") from exc
    model = MMChange(config)
    state = load_file(str(path), device="cpu")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the stored config "
                              f"(missing {len(missing)} e.g. {missing[:2]}, unexpected {len(unexpected)} "
                              f"e.g. {unexpected[:2]})")
    return model.to(device).eval(), meta


def checkpoint_threshold(meta: dict[str, Any], override: float | None = None) -> float:
    """``override``, else the checkpoint's decision threshold (tuned by ``mmchange eval``), else 0.5."""
    return float(override if override is not None else meta.get("threshold", DEFAULT_THRESHOLD))


def checkpoint_tile_size(meta: dict[str, Any], override: int | None = None) -> int:
    """``override``, else the crop size the checkpoint was trained on, else 256."""
    return int(override or (meta.get("input") or {}).get("crop_size", DEFAULT_TILE_SIZE))


def update_checkpoint_meta(path: str | Path, **updates: Any) -> dict[str, Any]:
    """Merge ``updates`` into the checkpoint's metadata (rewriting the file atomically)."""
    path = Path(path)
    model, meta = load_checkpoint(path)
    meta.update(updates)
    save_checkpoint(path, model, meta)
    return read_checkpoint_meta(path)
