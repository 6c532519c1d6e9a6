"""The optimiser of ``mmchange train`` and one optimisation step, shared with ``mmchange benchmark --train``."""

from __future__ import annotations

from collections.abc import Iterable
import torch

from mmchange_core.training.config import TrainConfig


def build_optimizer(parameters: Iterable[torch.nn.Parameter], config: TrainConfig,
                    device: torch.device) -> torch.optim.Adam:
    """Adam with the config's lr, betas, eps and weight decay; the fused kernel on GPUs and CPUs."""
    return torch.optim.Adam(parameters, lr=config.lr, betas=tuple(config.betas), eps=config.eps,
                            weight_decay=config.weight_decay, fused=device.type in ("cuda", "cpu") or None)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """Backward pass of ``loss`` (scaled for fp16) and one optimiser step from fresh gradients."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
