"""The training loss of the paper: BCE + Dice on each of the four outputs, summed.

K-class networks (a class file) keep the paper's deep-supervision structure, each output scored by
cross-entropy plus the mean soft Dice of the change classes (each class's Dice over the whole batch),
so rare change classes weigh as much as common ones.

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


def ce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy plus the mean batch Dice loss of the change classes, for K-class logits ``[B, K, H, W]``
    against class indices ``[B, 1, H, W]`` (float or integer)."""
    logits = logits.float()
    index = target.long().reshape(logits.shape[0], *logits.shape[2:])
    ce = F.cross_entropy(logits, index)
    prob = torch.softmax(logits, dim=1)[:, 1:]
    onehot = F.one_hot(index, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
    dims = (0, 2, 3)
    dice = 1 - (2 * (prob * onehot).sum(dims) + DICE_SMOOTH) / (prob.sum(dims) + onehot.sum(dims) + DICE_SMOOTH)
    return ce + dice.mean()


def deep_supervision_loss(outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Sum over the main output and the side outputs of :func:`bce_dice_loss` (one channel) or :func:`ce_dice_loss`
    (K channels)."""
    loss = bce_dice_loss if outputs[0].shape[1] == 1 else ce_dice_loss
    return sum((loss(out, target) for out in outputs), torch.zeros((), device=target.device))
