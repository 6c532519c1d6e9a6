"""Device and numeric precision selection with clear errors (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""

from __future__ import annotations

import torch

from mmchange_core.errors import MMChangeError

#: Precisions that name a dtype (autocast for bf16 and fp16).
EXPLICIT_PRECISIONS = ("fp32", "bf16", "fp16")
#: Every precision option: ``auto`` resolves per device (:func:`resolve_precision`).
PRECISIONS = ("auto", *EXPLICIT_PRECISIONS)
#: A trained detector also runs at ``int8`` on the CPU: a calibrated, certified int8 export run by onnxruntime
#: (:mod:`mmchange_core.inference.int8`); ``auto`` then picks it where a certified one exists.
DETECTOR_PRECISIONS = (*PRECISIONS, "int8")


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


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on a GPU, fp32 on the CPU; otherwise validated as given (no fp16 on the CPU)."""
    if precision not in PRECISIONS:
        raise MMChangeError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise MMChangeError("fp16 is not supported on the CPU; use --precision bf16 or fp32")
    return precision
