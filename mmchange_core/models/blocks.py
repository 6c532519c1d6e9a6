"""Small building blocks shared by the MMChange modules."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 3, *, stride: int = 1,
                 padding: int | None = None, relu: bool = True) -> nn.Sequential:
    """Conv (with bias) -> BatchNorm -> ReLU, the "CBR" unit used throughout the reference."""
    if padding is None:
        padding = kernel_size // 2
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SpatialGroupEnhance(nn.Module):
    """Spatial Group-wise Enhance (SGE): gate each channel group by its standardised similarity map.

    The per-group scale and shift start at zero, so a fresh module outputs exactly ``x / 2``.
    """

    def __init__(self, groups: int = 8) -> None:
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, groups, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = self.groups
        xg = x.reshape(b * g, c // g, h, w)
        sim = (xg * xg.mean(dim=(2, 3), keepdim=True)).sum(dim=1).reshape(b * g, h * w)
        sim = sim - sim.mean(dim=1, keepdim=True)
        if h * w > 1:
            std = sim.std(dim=1, keepdim=True) + 1e-5
        else:  # a single pixel has no spread; the reference would give NaN here
            std = torch.ones_like(sim)
        sim = (sim / std).reshape(b, g, h, w) * self.weight + self.bias
        gate = torch.sigmoid(sim).reshape(b * g, 1, h, w)
        return (xg * gate).reshape(b, c, h, w)
