"""Inference-time folding of BatchNorm into the preceding convolution.

In eval mode a BatchNorm is an affine map, so ``bn(conv(x))`` equals a single convolution with
rescaled weights and a bias. Folding removes one memory-bound pass per BatchNorm; the result
differs from the unfolded network only by floating-point rounding.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

#: Attribute pairs (conv, bn) used by torchvision's ResNet stem and blocks.
_NAMED_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


def _fold_sequential(seq: nn.Sequential) -> int:
    folded = 0
    modules = list(seq._modules.items())
    for (name_a, a), (name_b, b) in zip(modules, modules[1:]):
        if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and b.track_running_stats:
            seq._modules[name_a] = fuse_conv_bn_eval(a, b)
            seq._modules[name_b] = nn.Identity()
            folded += 1
    return folded


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return ``model`` (a copy unless ``inplace``) in eval mode with every conv->BN pair folded."""
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
        for conv_name, bn_name in _NAMED_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
    return model
