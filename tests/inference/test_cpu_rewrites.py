"""CPU inference rewrites: per-tap strided convolution and CoT's folded tap mean give the same function."""

from __future__ import annotations

import pytest
import torch

from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.models import build_model
from mmchange_core.models.ifr import ContextualAttention
from mmchange_core.models.tapwise_conv import TapwiseConv2d, use_tapwise_convs
from tests.inference_helpers import randomise_batchnorm


@pytest.mark.parametrize("kernel,stride,padding,size", [
    (5, 4, 2, (32, 32)),   # the c4 projection at 256 px
    (5, 4, 2, (16, 40)),   # non-square
    (3, 2, 1, (15, 9)),    # odd sizes: the last taps fall off the bottom/right edge
    (5, 4, 2, (3, 5)),     # fewer pixels than the kernel
    (4, 3, 0, (13, 11)),   # no padding
    (1, 4, 0, (8, 8)),
])
def test_tapwise_conv_equals_conv2d(kernel: int, stride: int, padding: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 8, kernel, stride, padding)
    tapwise = TapwiseConv2d(conv)
    for fmt in (torch.channels_last, torch.contiguous_format):
        x = torch.randn(2, 16, *size).contiguous(memory_format=fmt)
        with torch.no_grad():
            ref, out = conv(x), tapwise(x)
        assert out.shape == ref.shape
        assert (out - ref).abs().max() < 1e-5


def test_tapwise_conv_refuses_what_it_cannot_compute_and_picks_wide_strided_convs() -> None:
    with pytest.raises(ValueError, match="ungrouped, undilated"):
        TapwiseConv2d(torch.nn.Conv2d(8, 8, 3, dilation=2))
    model = build_model("resnet50").eval()
    assert use_tapwise_convs(model) == 1  # the c4 projection (2048 channels, stride 4) only
    assert isinstance(model.encoder.proj["c4"][0], TapwiseConv2d)
    assert use_tapwise_convs(build_model("resnet18").eval()) == 0  # 512 channels: left to oneDNN


def test_folded_tap_mean_keeps_the_attention_output() -> None:
    torch.manual_seed(0)
    att = ContextualAttention(16).eval()
    randomise_batchnorm(att)
    x = torch.randn(2, 16, 12, 10)
    with torch.no_grad():
        ref = att(x)
        att.fold_tap_mean()
        assert att.attention_embed[-1].out_channels == 16
        assert (att(x) - ref).abs().max() < 1e-5


def test_cpu_runner_applies_the_rewrites_and_keeps_outputs() -> None:
    model = build_model("resnet50").eval()
    randomise_batchnorm(model)
    runner = InferenceRunner(model, "cpu")
    assert isinstance(runner.network.encoder.proj["c4"][0], TapwiseConv2d)
    assert all(m.tap_mean_folded for m in runner.network.modules() if isinstance(m, ContextualAttention))
    assert not any(m.tap_mean_folded for m in model.modules() if isinstance(m, ContextualAttention))
    assert runner.network.itff.pa.depthwise and not model.itff.pa.depthwise
    x, t = torch.randn(1, 3, 64, 64), torch.randn(1, 512)
    with torch.no_grad():
        ref = model(x, x.flip(-1), t, -t)[0]
    assert (runner.logits(x, x.flip(-1), t, -t) - ref).abs().max() < 1e-4


@pytest.mark.parametrize("size", [(12, 10), (3, 5)])  # reflect padding, and replicate for tiny maps
def test_depthwise_split_keeps_the_pixel_attention(size: tuple[int, int]) -> None:
    from mmchange_core.models.itff import PixelAttention

    torch.manual_seed(0)
    pa = PixelAttention(8).eval()
    x = torch.randn(2, 8, *size)
    guide = torch.randn(2, 1, *size) + torch.randn(2, 8, 1, 1)
    with torch.no_grad():
        ref = pa(x, guide)
        pa.split_depthwise()
        out = pa(x, guide)
    assert (out - ref).abs().max() < 1e-5
