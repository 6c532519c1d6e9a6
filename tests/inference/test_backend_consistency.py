"""fp32 backends agree on real imagery: torch (mmchange's CPU path) and onnxruntime on ../shared/data/real tiles.

The tiny checkpoints of ``tests/onnx_helpers`` (random weights, randomised BatchNorm statistics) and their
session exports; every LEVIR-CD sample pair (256 x 256) goes through both in 128 px windows. Probabilities
agree within 1e-4 and masks on at least 99.99% of the pixels.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from tests.onnx_helpers import exported  # noqa: E402

from mmchange_core.data.layouts import detect_layout  # noqa: E402
from mmchange_core.data.dataset import read_labelled_pair  # noqa: E402
from mmchange_core.inference.detector import ChangeDetector  # noqa: E402


@pytest.mark.parametrize("kind", ["image", "text"])
def test_torch_and_onnxruntime_agree_on_real_tiles(real_data, kind) -> None:
    levir = real_data / "LEVIR-CD-samples"
    if not levir.is_dir():
        pytest.skip(f"LEVIR-CD samples not found in {real_data}")
    model = exported(kind)
    windows = dict(tile_size=128, overlap=32)  # 9 windows of each 256 px tile
    torch_fp32 = ChangeDetector.load(model.checkpoint, device="cpu", precision="fp32", **windows)
    onnx_fp32 = ChangeDetector.load(model.onnx, device="cpu", **windows)
    assert (torch_fp32.backend, onnx_fp32.backend) == ("torch", "onnxruntime")
    layout = detect_layout(levir)
    pairs = [pair for split in layout.splits for pair in layout.pairs(split)]
    assert len(pairs) >= 8
    rng = np.random.default_rng(0)
    agree = total = 0
    worst = 0.0
    for pair in pairs:
        image_a, image_b, _ = read_labelled_pair(pair)
        texts = (None, None)
        if kind == "text":  # one caption embedding per date, as the caption store gives
            texts = tuple(rng.normal(size=model.meta.model.text_dim).astype(np.float32) for _ in range(2))
        prob_torch, mask_torch = torch_fp32.decision_map(image_a, image_b, *texts)
        prob_onnx, mask_onnx = onnx_fp32.decision_map(image_a, image_b, *texts)
        worst = max(worst, float(np.abs(prob_torch - prob_onnx).max()))
        agree += int((mask_torch == mask_onnx).sum())
        total += mask_torch.size
    assert worst <= 1e-4, worst
    assert agree / total >= 0.9999, agree / total
