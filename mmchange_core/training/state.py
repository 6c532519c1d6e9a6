"""The resumable state of a training run: ``<run>/state.pt``.

It holds everything needed to continue bit-for-bit: the weights, optimizer and gradient-scaler
state, the scheduler position, the RNG states of Python, NumPy, torch and CUDA, and the position in
the data order (epoch and batches already taken; the order itself is a function of the seed and the
epoch). The file is written atomically and contains only tensors and plain Python values, so it
loads with ``torch.load(path, weights_only=True)``.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmchange_core.errors import CheckpointError
from mmchange_core.io.atomic import atomic_write_bytes

STATE_FORMAT = "mmchange-train-state"
STATE_VERSION = 1


def capture_rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy, torch (CPU) and every CUDA device, as weights_only-safe values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainState:
    """Progress of a run. ``epoch``/``batch`` point at the next batch to train on."""

    # duplicates (deliberate): field declarations, alike in shape only to other result dataclasses
    epoch: int = 0
    batch: int = 0
    iteration: int = 0
    iters_per_epoch: int = 0
    best_f1: float = -1.0
    best_epoch: int = -1
    loss_sum: float = 0.0  # of the epoch in progress
    loss_count: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def save_train_state(path: Path, state: TrainState, *, config: dict[str, Any], model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
                     parent: dict[str, str] | None = None) -> Path:
    """Write ``state`` plus the run's config (plain values), weights, optimizer, scheduler, scaler and RNG
    states atomically; ``parent``: the name and sha256 of the weights a fine-tuning run started from (kept
    for the checkpoints a resumed run writes, without reading those weights again)."""
    payload = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "config": config,
        "progress": {"epoch": state.epoch, "batch": state.batch, "iteration": state.iteration,
                     "iters_per_epoch": state.iters_per_epoch, "best_f1": state.best_f1,
                     "best_epoch": state.best_epoch, "loss_sum": state.loss_sum,
                     "loss_count": state.loss_count},
        "history": state.history,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": capture_rng_state(),
    }
    if parent is not None:
        payload["parent"] = parent
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_train_state(path: Path) -> dict[str, Any]:
    """Read a state file written by :func:`save_train_state` (safely, ``weights_only=True``)."""
    if not path.is_file():
        raise CheckpointError(f"no training state at {path}; --resume needs a run folder written by "
                              f"'mmchange train' (one that finished at least one epoch or was stopped)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise CheckpointError(f"{path} cannot be read as a training state ({exc}); it may be damaged") from exc
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not an mmchange training state")
    return payload


def progress_from(payload: dict[str, Any]) -> TrainState:
    """The :class:`TrainState` stored in a loaded payload."""
    p = payload["progress"]
    return TrainState(p["epoch"], p["batch"], p["iteration"], p["iters_per_epoch"], p["best_f1"],
                      p["best_epoch"], p["loss_sum"], p["loss_count"], list(payload.get("history", [])))
