"""Convolution, bias, optional residual and ReLU as one cuDNN kernel, for inference on GPUs.

After BatchNorm folding, every ResNet block computes ``relu(conv(x) + bias [+ residual])``. Run as
separate kernels, the convolution writes its output and element-wise kernels read and write it again
(``torch.compile`` fuses the element-wise part, but still into a second pass). cuDNN's fused
convolution (``torch.cudnn_convolution_relu`` / ``cudnn_convolution_add_relu``) applies bias,
residual and ReLU in the convolution's epilogue, so each activation is written once. The result is
the same function (the sum is rounded once instead of twice). On the CPU, and wherever cuDNN is
absent, the op runs the plain PyTorch ops.

The op is a ``torch.library`` custom op with a fake (meta) implementation, so ``torch.compile``
treats it as one opaque kernel and CUDA graphs capture it like any other.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet as tv_resnet


#: Shapes for which cuDNN found no fused engine (they run as separate kernels).
_UNSUPPORTED: set[tuple] = set()


def _output_format(x: torch.Tensor) -> torch.memory_format:
    """The memory format of the op's output: NHWC when the input is NHWC (as cuDNN chooses)."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _output_shape(x: torch.Tensor, weight: torch.Tensor, stride: Sequence[int], padding: Sequence[int],
                  dilation: Sequence[int]) -> list[int]:
    size = [x.shape[0], weight.shape[0]]
    for i in range(2):
        extent = dilation[i] * (weight.shape[2 + i] - 1) + 1
        size.append((x.shape[2 + i] + 2 * padding[i] - extent) // stride[i] + 1)
    return size


@torch.library.custom_op("mmchange::conv2d_bias_relu", mutates_args=())
def conv2d_bias_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None,
                     stride: list[int], padding: list[int], dilation: list[int], groups: int) -> torch.Tensor:
    """``relu(conv2d(x, weight, bias) + residual)`` (``residual`` optional), fused by cuDNN on GPUs.

    Inputs are cast to the weight's dtype first, as autocast does for a convolution (under autocast
    some head inputs arrive in float32 while the weights are bf16).
    """
    fmt = _output_format(x)
    x = x.to(weight.dtype)
    bias = bias.to(weight.dtype)
    residual = None if residual is None else residual.to(weight.dtype)
    key = (tuple(x.shape), tuple(weight.shape), x.dtype, fmt, tuple(stride), tuple(padding), tuple(dilation),
           groups, residual is None)
    if x.is_cuda and torch.backends.cudnn.is_available() and key not in _UNSUPPORTED:
        weight = weight.contiguous(memory_format=fmt)
        try:
            if residual is None:
                out = torch.cudnn_convolution_relu(x, weight, bias, stride, padding, dilation, groups)
            else:
                out = torch.cudnn_convolution_add_relu(x, weight, residual.contiguous(memory_format=fmt), 1.0,
                                                       bias, stride, padding, dilation, groups)
            return out.contiguous(memory_format=fmt)
        except RuntimeError as exc:  # no fused cuDNN engine for this shape: plain ops from now on
            _UNSUPPORTED.add(key)
            warnings.warn(f"cuDNN has no fused kernel for conv {tuple(weight.shape)} on {tuple(x.shape)} "
                          f"({str(exc).splitlines()[0][:120]}); using separate kernels", stacklevel=2)
    out = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    out = F.relu(out if residual is None else out + residual)
    return out.contiguous(memory_format=fmt)


@conv2d_bias_relu.register_fake
def _conv2d_bias_relu_fake(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None,
                           stride: list[int], padding: list[int], dilation: list[int], groups: int) -> torch.Tensor:
    shape = _output_shape(x, weight, stride, padding, dilation)
    return x.new_empty(shape, dtype=weight.dtype).contiguous(memory_format=_output_format(x))


def fusable(conv: nn.Module) -> bool:
    """Whether a conv can run fused: a plain 2-D conv with a bias and channel counts cuDNN's fused
    kernels take (multiples of 8; the 3-channel stem stays as it is)."""
    return (type(conv) is nn.Conv2d and conv.bias is not None and conv.groups == 1
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
            and conv.in_channels % 8 == 0 and conv.out_channels % 8 == 0)


class FusedConvReLU(nn.Module):
    """``relu(conv(x) [+ residual])`` through :func:`conv2d_bias_relu`; weights are buffers (inference only)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.register_buffer("weight", conv.weight.detach().clone())
        self.register_buffer("bias", conv.bias.detach().clone())
        self.stride = list(conv.stride)
        self.padding = list(conv.padding)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        return conv2d_bias_relu(x, self.weight, self.bias, residual, self.stride, self.padding, self.dilation,
                                self.groups)


class FusedBottleneck(nn.Module):
    """A folded torchvision Bottleneck with its three ReLUs fused into the convolutions."""

    def __init__(self, block: tv_resnet.Bottleneck) -> None:
        super().__init__()
        self.conv1 = FusedConvReLU(block.conv1)
        self.conv2 = FusedConvReLU(block.conv2)
        self.conv3 = FusedConvReLU(block.conv3)
        self.downsample = block.downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv3(self.conv2(self.conv1(x)), identity)


class FusedBasicBlock(nn.Module):
    """A folded torchvision BasicBlock (or the dilated variant) with both ReLUs fused."""

    def __init__(self, block: tv_resnet.BasicBlock) -> None:
        super().__init__()
        self.conv1 = FusedConvReLU(block.conv1)
        self.conv2 = FusedConvReLU(block.conv2)
        self.downsample = block.downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv2(self.conv1(x), identity)


def _folded(block: nn.Module) -> bool:
    """Whether a ResNet block's BatchNorms were folded (fusing needs the conv to carry the bias)."""
    return all(isinstance(getattr(block, name, nn.Identity()), nn.Identity) for name in ("bn1", "bn2", "bn3"))


def _fuse_sequential(seq: nn.Sequential) -> int:
    """Fuse each ``Conv2d, Identity (folded BN), ReLU`` run of a Sequential; returns how many."""
    fused = 0
    names = list(seq._modules)
    for i in range(len(names) - 2):
        conv, bn, act = (seq._modules[n] for n in names[i:i + 3])
        if isinstance(bn, nn.Identity) and isinstance(act, nn.ReLU) and fusable(conv):
            seq._modules[names[i]] = FusedConvReLU(conv)
            seq._modules[names[i + 2]] = nn.Identity()
            fused += 1
    return fused


def fuse_conv_activations(model: nn.Module, scope: str = "all") -> int:
    """Replace, in place, the folded conv(+residual)+ReLU patterns of ``model`` by fused ops.

    ``scope`` is ``trunk`` (ResNet blocks only) or ``all`` (also conv-BN-ReLU units of the heads).
    BatchNorm must already be folded (:func:`~mmchange_core.models.fusion.fold_batchnorm`). Returns
    the number of convolutions fused.
    """
    if scope not in ("trunk", "all"):
        raise ValueError(f"unknown fusion scope '{scope}'; choose trunk or all")
    fused = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, tv_resnet.Bottleneck) and _folded(child) and all(
                    fusable(c) for c in (child.conv1, child.conv2, child.conv3)):
                setattr(module, name, FusedBottleneck(child))
                fused += 3
            elif isinstance(child, tv_resnet.BasicBlock) and _folded(child) and all(
                    fusable(c) for c in (child.conv1, child.conv2)):
                setattr(module, name, FusedBasicBlock(child))
                fused += 2
        if scope == "all" and isinstance(module, nn.Sequential):
            fused += _fuse_sequential(module)
    return fused
