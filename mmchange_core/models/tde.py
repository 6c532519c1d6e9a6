"""Text Difference Enhancement (TDE): turns two CLIP embeddings into four text feature maps.

Each embedding [B, D] is cut into D/64 "tokens" of 64 values. The absolute difference of the two
token sets goes through projection-free multi-head self-attention. Token sets are then laid out as
images (each 64-vector along the width, replicated down the height), fused by a feature interaction
module, gated by the attended difference and downsampled to the four image scales.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmchange_core.models.blocks import conv_bn_relu

TOKEN_DIM = 64


def text_tokens(text: torch.Tensor) -> torch.Tensor:
    """[B, D] -> [B, D/64, 64]: contiguous 64-value chunks of the embedding."""
    b, d = text.shape
    return text.reshape(b, d // TOKEN_DIM, TOKEN_DIM)


def tokens_to_map(tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, N, 64] -> [B, N, H, W] by bilinear resizing of a one-row image (rows are replicated)."""
    return F.interpolate(tokens.unsqueeze(2), size=size, mode="bilinear", align_corners=False)


class ChunkSelfAttention(nn.Module):
    """Multi-head self-attention with no Q/K/V projections (q = k = v = input), then ``fc_o``."""

    def __init__(self, dim: int = TOKEN_DIM, heads: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.fc_o = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.fc_o.weight, std=0.001)
        nn.init.zeros_(self.fc_o.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q = x.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)  # b, h, n, dk
        att = torch.softmax(q @ q.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
        out = (self.dropout(att) @ q).transpose(1, 2).reshape(b, n, d)
        return self.fc_o(out)


class TextUpsampler(nn.Module):
    """Token set -> 64-channel map at the finest image scale (reference ``UpconvNet``)."""

    def __init__(self, num_tokens: int, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_tokens, width, 3, padding=1)
        self.conv = conv_bn_relu(width, width)

    def forward(self, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.conv(self.conv1(tokens_to_map(tokens, size)))


class FeatureInteraction(nn.Module):
    """Difference-guided fusion of two maps (reference ``FeatureInteractionModule``)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.conv_sub = conv_bn_relu(width, width)
        self.conv_diff_enh1 = conv_bn_relu(width, width)
        self.conv_diff_enh2 = conv_bn_relu(width, width)
        self.conv_cat = conv_bn_relu(2 * width, width)
        self.conv_dr = conv_bn_relu(width, width, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sub = self.conv_sub(torch.abs(a - b))
        a = self.conv_diff_enh1(a * sub + a)
        b = self.conv_diff_enh2(b * sub + b)
        return self.conv_dr(sub + self.conv_cat(torch.cat([a, b], dim=1)))


class TextDownsampler(nn.Module):
    """Three stride-2 steps; as in the reference, ``conv2`` and the CBR are reused across steps."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.conv = conv_bn_relu(width, width)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        t2 = self.conv(self.conv1(x))
        t3 = self.conv(self.conv2(t2))
        t4 = self.conv(self.conv2(t3))
        return [t2, t3, t4]


class TextDifferenceEnhancement(nn.Module):
    """TDE: two text embeddings -> text maps 64@{H/4, H/8, H/16, H/32}."""

    def __init__(self, text_dim: int = 512, width: int = 64) -> None:
        super().__init__()
        num_tokens = text_dim // TOKEN_DIM
        self.attention = ChunkSelfAttention(TOKEN_DIM, heads=8)
        self.text_upsampler = TextUpsampler(num_tokens, width)
        self.interaction = FeatureInteraction(width)
        self.fuse = conv_bn_relu(width, width)
        self.downsampler = TextDownsampler(width)

    def forward(self, text_a: torch.Tensor, text_b: torch.Tensor,
                size: tuple[int, int]) -> list[torch.Tensor]:
        tok_a, tok_b = text_tokens(text_a), text_tokens(text_b)
        diff = self.attention(torch.abs(tok_a - tok_b))
        map_a = self.text_upsampler(tok_a, size)
        map_b = self.text_upsampler(tok_b, size)
        map_diff = self.text_upsampler(diff, size)
        t1 = self.fuse(self.interaction(map_a, map_b) * map_diff)
        return [t1, *self.downsampler(t1)]
