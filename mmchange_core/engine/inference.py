"""One place that runs a trained network on batches: device, precision and memory format.

Evaluation, prediction, robustness and benchmarks all go through :class:`InferenceRunner`, so a
speed-up here (autocast, channels_last, compilation) reaches every command.
"""

from __future__ import annotations

import contextlib

import torch

from mmchange_core.device import resolve_device
from mmchange_core.errors import MMChangeError
from mmchange_core.models.mmchange import MMChange

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> fp32 (numerically faithful default); otherwise validated as given."""
    if precision not in PRECISIONS:
        raise MMChangeError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise MMChangeError("fp16 is not supported on the CPU; use --precision bf16 or fp32")
    return precision


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """An autocast context for bf16/fp16, or a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class InferenceRunner:
    """Runs an MMChange model in eval mode and returns the main change logits in float32."""

    def __init__(self, model: MMChange, device: str | torch.device = "auto", precision: str = "auto") -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()

    @property
    def uses_text(self) -> bool:
        """Whether the model needs text embeddings."""
        return self.model.uses_text

    @torch.no_grad()
    def logits(self, img_a: torch.Tensor, img_b: torch.Tensor, text_a: torch.Tensor | None = None,
               text_b: torch.Tensor | None = None) -> torch.Tensor:
        """Main change logits ``[B, 1, H, W]`` (float32, on the runner's device)."""
        img_a = img_a.to(self.device, non_blocking=True)
        img_b = img_b.to(self.device, non_blocking=True)
        if self.model.uses_text:
            text_a = text_a.to(self.device, non_blocking=True).float()
            text_b = text_b.to(self.device, non_blocking=True).float()
        else:
            text_a = text_b = None
        with autocast_context(self.precision, self.device):
            main = self.model(img_a, img_b, text_a, text_b)[0]
        return main.float()

    def probabilities(self, img_a: torch.Tensor, img_b: torch.Tensor, text_a: torch.Tensor | None = None,
                      text_b: torch.Tensor | None = None) -> torch.Tensor:
        """Change probabilities ``[B, 1, H, W]``."""
        return torch.sigmoid(self.logits(img_a, img_b, text_a, text_b))
