"""The training loss of the paper: BCE + Dice on each of the four outputs, summed.

The reference applies BCE to probabilities; here both terms are computed from logits in float32
(``binary_cross_entropy_with_logits`` and a sigmoid), which is the same function but stays finite
under bf16/fp16 autocast. Dice sums run over the whole batch, as in the reference:
``1 - (2 * sum(p * y) + 1e-5) / (sum(p) + sum(y) + 1e-5)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

DICE_SMOOTH = 1e-5


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean BCE plus batch Dice loss of one logit map ``[B, 1, H, W]`` against a 0/1 target."""
    logits = logits.float()
    target = target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    dice = 1 - (2 * (prob * target).sum() + DICE_SMOOTH) / (prob.sum() + target.sum() + DICE_SMOOTH)
    return bce + dice


def deep_supervision_loss(outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Sum of :func:`bce_dice_loss` over the main output and the side outputs."""
    return sum((bce_dice_loss(out, target) for out in outputs), torch.zeros((), device=target.device))
