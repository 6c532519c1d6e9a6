"""Shapes, gradients, input checks and variants of the MMChange network."""

from __future__ import annotations

import pytest
import torch

from mmchange_core.models import BACKBONES, VARIANTS, build_model
from mmchange_core.models.blocks import SpatialGroupEnhance


def _inputs(size: int, text_dim: int = 512, batch: int = 1):
    gen = torch.Generator().manual_seed(0)
    img_a = torch.randn(batch, 3, size, size, generator=gen)
    img_b = torch.randn(batch, 3, size, size, generator=gen)
    text_a = torch.randn(batch, text_dim, generator=gen)
    text_b = torch.randn(batch, text_dim, generator=gen)
    return img_a, img_b, text_a, text_b


def _check_forward_backward(backbone: str, variant: str, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(backbone, variant).train()
    img_a, img_b, text_a, text_b = _inputs(size)
    img_a.requires_grad_(True)
    if not model.uses_text:
        text_a = text_b = None
    else:
        text_a.requires_grad_(True)
    outputs = model(img_a, img_b, text_a, text_b)
    assert len(outputs) == 4
    for out in outputs:
        assert out.shape == (1, 1, size, size)
        assert torch.isfinite(out).all()
    loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(o, torch.ones_like(o)) for o in outputs)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without finite gradient: {no_grad[:5]}"
    assert img_a.grad is not None and img_a.grad.abs().sum() > 0
    if text_a is not None:
        assert text_a.grad is not None and text_a.grad.abs().sum() > 0


@pytest.mark.parametrize("size", [256, 512])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_shapes_and_gradients(backbone: str, size: int) -> None:
    _check_forward_backward(backbone, "full", size)


@pytest.mark.parametrize("size", [256, 512])
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "full"])
def test_every_variant_shapes_and_gradients(variant: str, size: int) -> None:
    _check_forward_backward("resnet18", variant, size)


def test_non_square_multiple_of_32_and_other_text_dims() -> None:
    model = build_model("resnet18", text_dim=768).eval()
    img_a = torch.randn(2, 3, 96, 160)
    img_b = torch.randn(2, 3, 96, 160)
    text_a, text_b = torch.randn(2, 768), torch.randn(2, 768)
    with torch.no_grad():
        outputs = model(img_a, img_b, text_a, text_b)
    assert all(o.shape == (2, 1, 96, 160) for o in outputs)


@pytest.mark.parametrize("shape", [(1, 3, 250, 256), (1, 3, 256, 100)])
def test_sizes_not_multiple_of_32_are_rejected(shape) -> None:
    model = build_model("resnet18").eval()
    x = torch.randn(*shape)
    text = torch.randn(1, 512)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(x, x, text, text)


def test_text_is_required_except_for_image_only() -> None:
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match="needs text embeddings"):
        build_model("resnet18", "full").eval()(x, x)
    with pytest.raises(ValueError, match=r"text_a must have shape \[B, 512\]"):
        build_model("resnet18", "full").eval()(x, x, torch.randn(1, 256), torch.randn(1, 256))
    outputs = build_model("resnet18", "image-only").eval()(x, x, None, None)
    assert outputs[0].shape == (1, 1, 64, 64)


def test_bad_config_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model("resnet101")
    with pytest.raises(ValueError, match="unknown variant"):
        build_model("resnet18", "no-text")
    with pytest.raises(ValueError, match="multiple of 64"):
        build_model("resnet18", text_dim=500)


def test_eval_batches_dates_together_with_same_result() -> None:
    model = build_model("resnet18").eval()
    img_a, img_b, text_a, text_b = _inputs(64, batch=2)
    with torch.no_grad():
        joint = model(img_a, img_b, text_a, text_b)[0]
        feats_a, feats_b = model.encoder(img_a), model.encoder(img_b)
        separate = model.decoder(
            [model.itff(f, t) for f, t in zip(model.ifr(feats_a, feats_b),
                                               model.tde(text_a, text_b, (16, 16)))])[0]
        separate = torch.nn.functional.interpolate(separate, size=(64, 64), mode="bilinear")
    assert torch.allclose(joint, separate, atol=1e-5)


def test_sge_starts_as_half_identity_and_survives_single_pixel() -> None:
    sge = SpatialGroupEnhance(8)
    x = torch.randn(2, 64, 5, 7)
    assert torch.allclose(sge(x), x / 2)
    x1 = torch.randn(2, 64, 1, 1)
    assert torch.isfinite(sge(x1)).all()


@pytest.mark.parametrize("size", [32, 64])
def test_small_inputs_work(size: int) -> None:
    model = build_model("resnet18").eval()
    x = torch.randn(1, 3, size, size)
    t = torch.randn(1, 512)
    with torch.no_grad():
        outputs = model(x, x, t, t)
    assert all(o.shape == (1, 1, size, size) and torch.isfinite(o).all() for o in outputs)


def test_batch_one_text_is_shared_by_every_pair() -> None:
    model = build_model("resnet18").eval()
    img_a, img_b, text_a, text_b = _inputs(64, batch=3)
    with torch.no_grad():
        shared = model(img_a, img_b, text_a[:1], text_b[:1])[0]
        expanded = model(img_a, img_b, text_a[:1].expand(3, -1), text_b[:1].expand(3, -1))[0]
    assert shared.shape == (3, 1, 64, 64)
    assert torch.allclose(shared, expanded, atol=1e-6)
    with pytest.raises(ValueError, match="same batch size"):
        model(img_a, img_b, text_a[:1], text_b)
