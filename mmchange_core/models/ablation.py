"""Stand-ins for removed modules in the paper's ablations (Table II).

The paper replaces a removed module by "1x1 convolution and element-wise addition for dimension
alignment and feature fusion". Concretely:

- without IFR: each scale is ``conv1x1(|f_A - f_B|)``;
- without TDE: each date's token map (laid out as in TDE) gets its own 1x1 conv to 64 channels and the
  two are added, at every scale (separate weights keep the text path able to express a difference);
- without ITFF: each scale is ``conv1x1(F + T)``, one conv shared by all scales like ITFF.
"""

from __future__ import annotations

import torch
from torch import nn

from mmchange_core.models.tde import text_tokens, tokens_to_map


class DifferenceProjection(nn.Module):
    """IFR stand-in: ``conv1x1(|a - b|)`` per scale."""

    def __init__(self, dim: int = 64, num_scales: int = 4) -> None:
        super().__init__()
        self.scales = nn.ModuleList(nn.Conv2d(dim, dim, 1) for _ in range(num_scales))

    def forward(self, feats_a: list[torch.Tensor], feats_b: list[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(torch.abs(a - b)) for conv, a, b in zip(self.scales, feats_a, feats_b)]


class TextProjection(nn.Module):
    """TDE stand-in: ``conv1x1_A(map(t_A)) + conv1x1_B(map(t_B))`` at each requested size."""

    def __init__(self, text_dim: int = 512, width: int = 64) -> None:
        super().__init__()
        num_tokens = text_dim // 64
        self.proj_a = nn.Conv2d(num_tokens, width, 1)
        self.proj_b = nn.Conv2d(num_tokens, width, 1)

    def forward(self, text_a: torch.Tensor, text_b: torch.Tensor,
                sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        tok_a, tok_b = text_tokens(text_a), text_tokens(text_b)
        return [self.proj_a(tokens_to_map(tok_a, s)) + self.proj_b(tokens_to_map(tok_b, s)) for s in sizes]


class AdditiveFusion(nn.Module):
    """ITFF stand-in: ``conv1x1(image + text)``."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 1)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.conv(image + text)
