"""Robustness perturbations are deterministic, seeded and do what their documentation says."""

from __future__ import annotations

import numpy as np

from mmchange_core.evaluation.perturbations import Perturbation, conditions


def _image() -> np.ndarray:
    return (np.arange(32 * 32 * 3) % 200 + 20).astype(np.uint8).reshape(32, 32, 3)


def test_noise_is_seeded_per_image_and_has_the_documented_sigma() -> None:
    p = Perturbation(noise=True, seed=3)
    img = _image()
    a1, a2 = p.apply(img, "A", "x.png"), p.apply(img, "A", "x.png")
    assert np.array_equal(a1, a2)
    assert not np.array_equal(a1, p.apply(img, "A", "y.png"))
    assert not np.array_equal(a1, Perturbation(noise=True, seed=4).apply(img, "A", "x.png"))
    diff = a1.astype(float) - img
    assert 8.5 < diff.std() < 11.5


def test_light_changes_date_b_only() -> None:
    p = Perturbation(light=True)
    img = _image()
    assert np.array_equal(p.apply(img, "A", "k"), img)
    b = p.apply(img, "B", "k")
    assert b.mean() < 0.75 * img.mean()
    expected = np.clip(np.rint(255 * 0.7 * (img / 255.0) ** 1.3), 0, 255)
    assert np.array_equal(b, expected.astype(np.uint8))


def test_conditions_and_severity() -> None:
    names = [c.name for c in conditions(noise=True, light=True)]
    assert names == ["clean", "noise", "light", "noise+light"]
    assert [c.name for c in conditions(noise=True, light=False)] == ["clean", "noise"]
    assert Perturbation(noise=True, light=True, severity=0).is_identity
    strong = Perturbation(noise=True, light=True, severity=2)
    assert strong.sigma == 20 and abs(strong.gain - 0.4) < 1e-9 and abs(strong.gamma - 1.6) < 1e-9
    assert Perturbation(noise=True, severity=0.5).tag() == "noise-s0.5-seed0"
