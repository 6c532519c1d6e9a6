"""A strided convolution computed as one matrix product per kernel tap, for CPU inference.

The c4 projection of the resnet50 encoder (2048 -> 320 channels, 5x5, stride 4) runs at half the
trunk's arithmetic rate in oneDNN's direct kernel on small CPUs. On channels_last input each tap
``(ky, kx)`` is a plain matrix product of the strided pixel grid it reads (``[pixels, C]``) with
that tap's ``[C, O]`` weights, and MKL's GEMM runs those at the trunk's rate: 2 CPU cores, the
32x32 maps of 8 images (4 window pairs of 256 px), 88-101 ms instead of 161-180 ms. Taps that would read the zero padding skip those output rows
and columns, so no padded copy of the input is made. Same function; only the summation order differs.
"""

from __future__ import annotations

from torch import nn

import torch


def _valid_range(size: int, out_size: int, tap: int, stride: int, padding: int) -> tuple[int, int]:
    """Output indices ``[lo, hi)`` whose input index ``stride * i + tap - padding`` lies inside ``[0, size)``."""
    lo = max(0, -(-(padding - tap) // stride))
    hi = min(out_size, (size - 1 + padding - tap) // stride + 1)
    return lo, max(lo, hi)


def tapwise_computable(conv: nn.Conv2d) -> bool:
    """Whether :class:`TapwiseConv2d` computes ``conv``: ungrouped, undilated, explicitly zero-padded."""
    return (conv.groups == 1 and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str))


class TapwiseConv2d(nn.Module):
    """Inference replacement of a zero-padded, undilated, ungrouped ``nn.Conv2d`` (see module docs)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not tapwise_computable(conv):
            raise ValueError("TapwiseConv2d takes ungrouped, undilated, zero-padded convolutions")
        self.register_buffer("taps", conv.weight.detach().permute(2, 3, 1, 0).contiguous())  # [kh, kw, C, O]
        bias = conv.bias.detach().clone() if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
        self.register_buffer("bias", bias)
        self.stride = conv.stride
        self.padding = conv.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        kh, kw, _, out_ch = self.taps.shape
        (sy, sx), (py, px) = self.stride, self.padding
        out_h, out_w = (height + 2 * py - kh) // sy + 1, (width + 2 * px - kw) // sx + 1
        pixels = x.permute(0, 2, 3, 1)  # NHWC view (no copy for channels_last input)
        taps = self.taps.to(x.dtype)
        out = self.bias.to(x.dtype).expand(batch, out_h, out_w, out_ch).contiguous()
        flat = out.view(-1, out_ch)
        for ky in range(kh):
            i0, i1 = _valid_range(height, out_h, ky, sy, py)
            if i0 == i1:
                continue
            r0 = sy * i0 + ky - py
            for kx in range(kw):
                j0, j1 = _valid_range(width, out_w, kx, sx, px)
                if j0 == j1:
                    continue
                c0 = sx * j0 + kx - px
                grid = pixels[:, r0:r0 + sy * (i1 - i0 - 1) + 1:sy, c0:c0 + sx * (j1 - j0 - 1) + 1:sx, :]
                grid = grid.reshape(-1, channels)
                if (i0, i1, j0, j1) == (0, out_h, 0, out_w):
                    flat.addmm_(grid, taps[ky, kx])
                else:
                    out[:, i0:i1, j0:j1, :] += (grid @ taps[ky, kx]).view(batch, i1 - i0, j1 - j0, out_ch)
        return out.permute(0, 3, 1, 2)  # NCHW shape, channels_last memory


def use_tapwise_convs(model: nn.Module, min_in_channels: int = 1024, min_stride: int = 4) -> int:
    """Replace, in place, strided wide convolutions (the resnet50 c4 projection) by :class:`TapwiseConv2d`.

    Returns how many were replaced. Meant for CPU inference on channels_last input.
    """
    replaced = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if (type(child) is nn.Conv2d and tapwise_computable(child) and child.in_channels >= min_in_channels
                    and min(child.stride) >= min_stride):
                setattr(module, name, TapwiseConv2d(child))
                replaced += 1
    return replaced
