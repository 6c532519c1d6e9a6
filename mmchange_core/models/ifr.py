"""Image Feature Refinement (IFR): per-scale difference refinement, then one SGE shared by all scales.

Each scale takes ``|f_A - f_B|`` (so the image path is symmetric in the two dates), applies a
Contextual Transformer (CoT) attention block and A2Net's progressive dilated cascade.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmchange_core.models.blocks import SpatialGroupEnhance


class ContextualAttention(nn.Module):
    """CoT attention: static context ``k1`` plus a softmax-over-space dynamic term ``k2``.

    As in the reference, the averaged attention logits are softmaxed over H*W and multiplied
    element-wise (not matrix-multiplied) with the value embedding.
    """

    def __init__(self, dim: int = 64, kernel_size: int = 3, factor: int = 4) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.key_embed = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=4, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(),
        )
        self.value_embed = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.attention_embed = nn.Sequential(
            nn.Conv2d(2 * dim, 2 * dim // factor, 1, bias=False),
            nn.BatchNorm2d(2 * dim // factor),
            nn.ReLU(),
            nn.Conv2d(2 * dim // factor, kernel_size * kernel_size * dim, 1),
        )
        #: Set by :meth:`fold_tap_mean` (inference): the last attention conv already averages the taps.
        self.tap_mean_folded = False

    def fold_tap_mean(self) -> None:
        """Fold the mean over the k*k attention taps into the last 1x1 conv (inference rewrite).

        The mean of k*k output channels of a 1x1 conv is a 1x1 conv with the averaged weights and
        bias, so the ``[B, k*k*C, H, W]`` intermediate is never made. Same function up to rounding.
        """
        if self.tap_mean_folded:
            return
        conv = self.attention_embed[-1]
        taps = self.kernel_size * self.kernel_size
        folded = nn.Conv2d(conv.in_channels, conv.out_channels // taps, 1).to(conv.weight.device, conv.weight.dtype)
        with torch.no_grad():
            folded.weight.copy_(conv.weight.reshape(-1, taps, conv.in_channels, 1, 1).mean(dim=1))
            folded.bias.copy_(conv.bias.reshape(-1, taps).mean(dim=1))
        self.attention_embed[-1] = folded
        self.tap_mean_folded = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k1 = self.key_embed(x)
        v = self.value_embed(x).reshape(b, c, h * w)
        att = self.attention_embed(torch.cat([k1, x], dim=1))
        if self.tap_mean_folded:
            att = att.reshape(b, c, h * w)
        else:
            att = att.reshape(b, c, self.kernel_size * self.kernel_size, h * w).mean(dim=2)
        k2 = (torch.softmax(att, dim=-1) * v).reshape(b, c, h, w)
        return k1 + k2


def _conv_bn(ch_in: int, ch_out: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(ch_in, ch_out, 3, padding=dilation, dilation=dilation),
                         nn.BatchNorm2d(ch_out))


class DifferenceRefinement(nn.Module):
    """One IFR scale: ``|a - b|`` -> CoT attention -> progressive dilated cascade (dilations 7, 5, 3, 1)."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.att = ContextualAttention(dim)
        self.conv_branch1 = _conv_bn(dim, dim, 7)
        self.conv_branch2 = nn.Conv2d(dim, dim, 1)
        self.conv_branch2_f = _conv_bn(dim, dim, 5)
        self.conv_branch3 = nn.Conv2d(dim, dim, 1)
        self.conv_branch3_f = _conv_bn(dim, dim, 3)
        self.conv_branch4 = nn.Conv2d(dim, dim, 1)
        self.conv_branch4_f = _conv_bn(dim, dim, 1)
        self.conv_branch5 = nn.Conv2d(dim, dim, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = self.att(torch.abs(a - b))
        y = self.conv_branch1(x)
        y = self.conv_branch2_f(F.relu(self.conv_branch2(x) + y))
        y = self.conv_branch3_f(F.relu(self.conv_branch3(x) + y))
        y = self.conv_branch4_f(F.relu(self.conv_branch4(x) + y))
        return F.relu(self.conv_branch5(x) + y)


class ImageFeatureRefinement(nn.Module):
    """IFR over the four scales, with a single SGE shared by all of them (as in the reference)."""

    def __init__(self, dim: int = 64, num_scales: int = 4) -> None:
        super().__init__()
        self.scales = nn.ModuleList(DifferenceRefinement(dim) for _ in range(num_scales))
        self.sge = SpatialGroupEnhance(8)

    def forward(self, feats_a: list[torch.Tensor], feats_b: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.sge(block(a, b)) for block, a, b in zip(self.scales, feats_a, feats_b)]
