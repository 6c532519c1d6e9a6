"""Joint augmentations: both dates, the label and the text move together; draws follow the generator."""

from __future__ import annotations

import torch

from mmchange_core.data.transforms import (
    RandomBorderCropResize,
    RandomFlip,
    RandomTemporalSwap,
    paper_augmentation,
)


def _sample(size: int = 32) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    label = torch.zeros(1, size, size)
    label[:, 4:12, 20:30] = 1
    return {"image_a": torch.randn(3, size, size, generator=gen), "image_b": torch.randn(3, size, size, generator=gen),
            "label": label, "text_a": torch.arange(8.0), "text_b": -torch.arange(8.0)}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_flips_move_images_and_label_together() -> None:
    s = _sample()
    out = RandomFlip(-1, p=1.0)(s, _gen())
    assert torch.equal(out["image_a"], s["image_a"].flip(-1)) and torch.equal(out["image_b"], s["image_b"].flip(-1))
    assert torch.equal(out["label"], s["label"].flip(-1))
    out = RandomFlip(-2, p=1.0)(s, _gen())
    assert torch.equal(out["label"], s["label"].flip(-2))
    assert torch.equal(out["text_a"], s["text_a"])  # text has no geometry
    assert RandomFlip(-1, p=0.0)(s, _gen()) is s


def test_temporal_swap_exchanges_images_and_text() -> None:
    s = _sample()
    out = RandomTemporalSwap(p=1.0)(s, _gen())
    assert torch.equal(out["image_a"], s["image_b"]) and torch.equal(out["image_b"], s["image_a"])
    assert torch.equal(out["text_a"], s["text_b"]) and torch.equal(out["text_b"], s["text_a"])
    assert torch.equal(out["label"], s["label"])
    image_only = {k: v for k, v in s.items() if not k.startswith("text")}
    assert set(RandomTemporalSwap(p=1.0)(image_only, _gen())) == set(image_only)


def test_border_crop_resize_keeps_shape_and_binary_label() -> None:
    s = _sample()
    changed = False
    for seed in range(10):
        out = RandomBorderCropResize(8, p=1.0)(s, _gen(seed))
        assert out["image_a"].shape == s["image_a"].shape and out["label"].shape == s["label"].shape
        assert set(out["label"].unique().tolist()) <= {0.0, 1.0}
        changed |= not torch.equal(out["label"], s["label"])
    assert changed


def test_paper_augmentation_is_a_function_of_the_seed() -> None:
    s = _sample()
    aug = paper_augmentation()
    first = aug(s, _gen(42))
    again = aug(s, _gen(42))
    assert all(torch.equal(first[k], again[k]) for k in s)
    outcomes = {tuple(aug(s, _gen(seed))["label"].flatten()[:400].tolist()) for seed in range(12)}
    assert len(outcomes) > 3  # different seeds give different draws
