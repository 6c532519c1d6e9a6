"""Dilated trunk stages computed as ordinary convolutions on sub-sampled grids (space-to-batch).

A 3x3 convolution with dilation ``d`` on an ``H x W`` map equals an undilated 3x3 convolution on
each of the ``d * d`` interleaved sub-grids (``x[..., i::d, j::d]``), each zero-padded by one pixel.
1x1 convolutions, (folded) BatchNorm, ReLU and residual additions act per pixel, so a whole
residual block with dilation ``d`` can run on the sub-grids stacked along the batch axis. The
result is exactly the dilated computation (up to floating-point summation order), but uses the
fast undilated convolution kernels; this is how TensorFlow implements atrous convolution.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.models.resnet import ResNet


def to_subgrids(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B * f * f, C, H / f, W / f]`` (sub-grid ``(i, j)`` is ``x[..., i::f, j::f]``)."""
    if factor == 1:
        return x
    b, c, h, w = x.shape
    y = x.reshape(b, c, h // factor, factor, w // factor, factor).permute(3, 5, 0, 1, 2, 4)
    return y.reshape(factor * factor * b, c, h // factor, w // factor)


def from_subgrids(y: torch.Tensor, factor: int) -> torch.Tensor:
    """Inverse of :func:`to_subgrids`."""
    if factor == 1:
        return y
    n, c, hs, ws = y.shape
    b = n // (factor * factor)
    x = y.reshape(factor, factor, b, c, hs, ws).permute(2, 3, 4, 0, 5, 1)
    return x.reshape(b, c, hs * factor, ws * factor)


def _block_dilation(block: nn.Module) -> int:
    """The common dilation of a block's spatial convs; 1 when they differ (the block stays as it is).

    torchvision's Bottleneck has one 3x3 conv, so its dilation carries over; the reference's
    BasicBlock dilates only its first 3x3 conv, so those blocks cannot move to sub-grids.
    """
    dilations = {m.dilation[0] for m in block.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1}
    return dilations.pop() if len(dilations) == 1 else 1


def _undilated(block: nn.Module) -> nn.Module:
    block = copy.deepcopy(block)
    for module in block.modules():
        if isinstance(module, nn.Conv2d) and module.dilation[0] > 1:
            module.dilation = (1, 1)
            module.padding = (module.kernel_size[0] // 2, module.kernel_size[1] // 2)
    return block


class SubgridTrunk(nn.Module):
    """Runs a dilated torchvision ResNet with every dilated block on sub-grids (same outputs).

    Returns the outputs of layer1..layer4, like :func:`~mmchange_core.models.encoder.trunk_features`.
    """

    def __init__(self, trunk: ResNet) -> None:
        super().__init__()
        self.stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool)
        self.layer1, self.layer2 = trunk.layer1, trunk.layer2
        self.stages = nn.ModuleList()
        self.factors: list[list[int]] = []
        for layer in (trunk.layer3, trunk.layer4):
            blocks = list(layer)
            self.factors.append([_block_dilation(b) for b in blocks])
            self.stages.append(nn.ModuleList(_undilated(b) if _block_dilation(b) > 1 else b for b in blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.layer1(self.stem(x))
        c2 = self.layer2(c1)
        outputs = [c1, c2]
        y, current = c2, 1
        for blocks, factors in zip(self.stages, self.factors):
            for block, factor in zip(blocks, factors):
                if factor != current:
                    nhwc = y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
                    y = to_subgrids(from_subgrids(y, current), factor)
                    if nhwc:
                        y = y.contiguous(memory_format=torch.channels_last)
                    current = factor
                y = block(y)
            outputs.append(from_subgrids(y, current))
        return outputs
