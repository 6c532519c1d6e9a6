"""Fused conv + bias (+ residual) + ReLU: the op's contract and the rewritten network's outputs.

On the CPU the op runs the plain PyTorch ops, so the fused network must equal the folded one
exactly; that checks the rewiring (residuals, downsampling, which ReLUs disappear). The cuDNN
kernel itself is checked on a GPU by ``benchmarks/fused_conv_check.py``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.errors import MMChangeError
from mmchange_core.models import build_model
from mmchange_core.models.fused_conv import (
    FusedBasicBlock,
    FusedBottleneck,
    FusedConvReLU,
    conv2d_bias_relu,
    fuse_conv_activations,
)
from mmchange_core.models.fusion import fold_batchnorm
from tests.inference_helpers import randomise_batchnorm


def _count(model: torch.nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("with_residual", [False, True])
def test_op_matches_plain_ops_and_passes_opcheck(channels_last: bool, with_residual: bool) -> None:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 8, 12, 10).contiguous(memory_format=fmt)
    w, b = torch.randn(16, 8, 3, 3), torch.randn(16)
    residual = torch.randn(2, 16, 6, 5).contiguous(memory_format=fmt) if with_residual else None
    out = conv2d_bias_relu(x, w, b, residual, [2, 2], [2, 2], [2, 2], 1)
    ref = F.conv2d(x, w, b, 2, 2, 2)
    ref = F.relu(ref if residual is None else ref + residual)
    assert torch.equal(out, ref)
    assert out.is_contiguous(memory_format=fmt)
    assert (out >= 0).all() and (out == 0).any()
    # schema, fake (meta) implementation against the real one, and torch.compile's tracing path
    torch.library.opcheck(conv2d_bias_relu, (x, w, b, residual, [2, 2], [2, 2], [2, 2], 1),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("backbone,block,convs", [("resnet18", FusedBasicBlock, 16), ("resnet50", FusedBottleneck, 48)])
def test_fused_network_equals_folded_network(backbone: str, block: type, convs: int) -> None:
    model = build_model(backbone).eval()
    randomise_batchnorm(model)
    folded = fold_batchnorm(model)
    trunk_only = fold_batchnorm(model)
    everything = fold_batchnorm(model)
    assert fuse_conv_activations(trunk_only, "trunk") == convs
    n_all = fuse_conv_activations(everything, "all")
    assert n_all > convs  # the heads' conv-BN-ReLU units too
    assert _count(everything, block) == _count(trunk_only, block) > 0
    assert _count(everything, FusedConvReLU) == n_all
    # the 3-channel stem has no fused kernel and stays as it is
    assert isinstance(everything.encoder.trunk.conv1, torch.nn.Conv2d)
    x, t = torch.randn(2, 3, 64, 96), torch.randn(2, 512)
    with torch.no_grad():
        ref = folded(x, x.flip(-1), t, -t)
        for net in (trunk_only, everything):
            for a, b in zip(ref, net(x, x.flip(-1), t, -t)):
                assert torch.equal(a, b)


def test_unfolded_blocks_are_left_alone_and_scope_is_checked() -> None:
    model = build_model("resnet18").eval()
    assert fuse_conv_activations(model, "trunk") == 0  # BatchNorm still there: nothing to fuse
    with pytest.raises(ValueError, match="unknown fusion scope"):
        fuse_conv_activations(model, "heads")


def test_runner_fuses_on_request_and_keeps_outputs() -> None:
    model = build_model("resnet50").eval()
    randomise_batchnorm(model)
    plain = InferenceRunner(model, "cpu")
    assert plain.fused_convs == "off"  # auto: the CPU gains nothing from it
    fused = InferenceRunner(model, "cpu", fused_convs="all")
    assert fused.fused_convs == "all" and _count(fused.network, FusedBottleneck) == 16
    assert _count(model, FusedConvReLU) == 0, "the given model must be untouched"
    x, t = torch.randn(1, 3, 64, 64), torch.randn(1, 512)
    # equal up to rounding (the plain CPU runner computes the c4 projection tap by tap)
    assert (plain.logits(x, x.flip(-1), t, t) - fused.logits(x, x.flip(-1), t, t)).abs().max() < 1e-4
    assert InferenceRunner(model, "cpu", fold_bn=False, fused_convs="all").fused_convs == "off"
    with pytest.raises(MMChangeError, match="unknown fused_convs 'yes'"):
        InferenceRunner(model, "cpu", fused_convs="yes")


def test_op_computes_in_the_weight_dtype_like_autocast() -> None:
    x = torch.randn(1, 8, 6, 6)
    w, b = torch.randn(8, 8, 1, 1).bfloat16(), torch.randn(8).bfloat16()
    residual = torch.randn(1, 8, 6, 6)
    out = conv2d_bias_relu(x, w, b, residual, [1, 1], [0, 0], [1, 1], 1)
    assert out.dtype == torch.bfloat16
    ref = F.relu(F.conv2d(x.bfloat16(), w, b) + residual.bfloat16())
    assert torch.equal(out, ref)
    torch.library.opcheck(conv2d_bias_relu, (x, w, b, residual, [1, 1], [0, 0], [1, 1], 1),
                          test_utils=("test_schema", "test_faketensor"))
