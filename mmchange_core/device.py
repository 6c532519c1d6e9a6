"""Device selection with clear errors (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""

from __future__ import annotations

import torch

from mmchange_core.errors import MMChangeError


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn a device option into a ``torch.device``; ``auto`` picks the first GPU when there is one."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise MMChangeError(f"unknown device '{spec}'; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MMChangeError(f"device '{spec}' requested but no CUDA GPU is visible; use --device cpu")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise MMChangeError(
                f"device '{spec}' requested but only {torch.cuda.device_count()} GPU(s) are visible"
            )
    return device
