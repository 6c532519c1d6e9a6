"""Learning-rate schedule of the paper: linear warm-up, then per-iteration poly decay.

``lr(it) = base * (0.1 + 0.9 * (it + 1) / 200)`` while ``it < 200`` in the first epoch, otherwise
``base * (1 - it / max_it) ** 0.9`` with ``max_it = ceil(total / iters_per_epoch) * iters_per_epoch``
(A2Net/MMChange ``adjust_learning_rate``; total = 40,000 in the paper). ``it`` counts optimizer
steps from 0 over the whole run; the scheduler is stepped once per iteration.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def run_length(total_iters: int, iters_per_epoch: int) -> tuple[int, int]:
    """(epochs, max_it): whole epochs covering at least ``total_iters`` iterations."""
    if iters_per_epoch <= 0:
        raise ValueError("iters_per_epoch must be positive")
    epochs = max(1, math.ceil(total_iters / iters_per_epoch))
    return epochs, epochs * iters_per_epoch


def lr_factor(it: int, iters_per_epoch: int, max_it: int, *, warmup_iters: int = 200, power: float = 0.9,
              warmup_start: float = 0.1) -> float:
    """Multiplier of the base learning rate at iteration ``it`` (0-based)."""
    if it < warmup_iters and it < iters_per_epoch:  # warm-up happens in epoch 0 only
        return warmup_start + (1 - warmup_start) * (it + 1) / warmup_iters
    return max(0.0, 1 - it / max_it) ** power


class WarmupPolyLR(LRScheduler):
    """:func:`lr_factor` as a torch scheduler (its position is part of ``state_dict``)."""

    def __init__(self, optimizer: Optimizer, iters_per_epoch: int, max_it: int, *, warmup_iters: int = 200,
                 power: float = 0.9, warmup_start: float = 0.1, last_epoch: int = -1) -> None:
        self.iters_per_epoch = iters_per_epoch
        self.max_it = max_it
        self.warmup_iters = warmup_iters
        self.power = power
        self.warmup_start = warmup_start
        super().__init__(optimizer, last_epoch)

    def factor(self, it: int) -> float:
        """Learning-rate multiplier at iteration ``it``."""
        return lr_factor(it, self.iters_per_epoch, self.max_it, warmup_iters=self.warmup_iters,
                         power=self.power, warmup_start=self.warmup_start)

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]
