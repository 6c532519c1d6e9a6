"""A2Net's top-down decoder with supervised attention modules (SAM) and three side outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmchange_core.models.blocks import conv_bn_relu


class SupervisedAttention(nn.Module):
    """Predict side logits, turn them into a class context and reweight the features.

    Binary (``outputs`` 1, the paper's): the context is (change, no-change) = (p, 1 - p) of a sigmoid.
    K classes: the context is the softmax over the K logit channels.
    """

    def __init__(self, width: int = 64, outputs: int = 1) -> None:
        super().__init__()
        self.cls = nn.Conv2d(width, outputs, 1)
        self.conv_context = conv_bn_relu(2 if outputs == 1 else outputs, width, 1)
        self.conv2 = conv_bn_relu(width, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.cls(x)
        if logits.shape[1] == 1:
            prob = torch.sigmoid(logits)
            context = self.conv_context(torch.cat([prob, 1 - prob], dim=1))
        else:
            context = self.conv_context(torch.softmax(logits, dim=1))
        return self.conv2(x * context), logits


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class ChangeDecoder(nn.Module):
    """Coarse-to-fine decoder; returns logits at strides 4 (main), 8, 16 and 32 (side outputs), each with
    ``outputs`` channels (1: binary change; K: one per class)."""

    def __init__(self, width: int = 64, outputs: int = 1) -> None:
        super().__init__()
        self.sam_p5 = SupervisedAttention(width, outputs)
        self.sam_p4 = SupervisedAttention(width, outputs)
        self.sam_p3 = SupervisedAttention(width, outputs)
        self.conv_p4 = conv_bn_relu(width, width)
        self.conv_p3 = conv_bn_relu(width, width)
        self.conv_p2 = conv_bn_relu(width, width)
        self.cls = nn.Conv2d(width, outputs, 1)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        d2, d3, d4, d5 = feats
        p5, m5 = self.sam_p5(d5)
        p4, m4 = self.sam_p4(self.conv_p4(d4 + _up2(p5)))
        p3, m3 = self.sam_p3(self.conv_p3(d3 + _up2(p4)))
        m2 = self.cls(self.conv_p2(d2 + _up2(p3)))
        return [m2, m3, m4, m5]
