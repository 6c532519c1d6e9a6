"""K-class networks through ONNX: the export keeps the K logit channels and the class metadata, and the
onnxruntime backend gives the torch network's change probability and classes."""

from __future__ import annotations

import numpy as np
import pytest

from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.inference.onnx_runner import OnnxRunner
from mmchange_core.models.export import read_onnx_meta
from tests.onnx_helpers import exported

pytest.importorskip("onnxruntime")


def scenes(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    b = a.copy()
    b[height // 4:height // 2, width // 4:width // 2] = 255 - b[height // 4:height // 2, width // 4:width // 2]
    return a, b


def test_the_export_has_k_outputs_and_the_classes_in_its_metadata() -> None:
    model = exported("classes")
    meta = read_onnx_meta(model.onnx)
    assert meta.classes == model.meta.classes and meta.model.num_classes == 4
    runner = OnnxRunner(model.onnx)
    outputs = {o.name: o.shape for o in runner.session.get_outputs()}
    assert outputs["logits"][1] == 4 and outputs["probability"][1] == 4


def test_onnxruntime_gives_the_torch_networks_probability_and_classes() -> None:
    captions = ["a suburb with 3 buildings and trees", "a suburb with 4 buildings and bare ground"]
    onnx = ChangeDetector.from_checkpoint(exported("classes").onnx, device="cpu")
    torch_detector = ChangeDetector.from_checkpoint(exported("classes").checkpoint, device="cpu")
    a, b = scenes(96, 130)
    ours, theirs = onnx.predict(a, b, captions), torch_detector.predict(a, b, captions)
    np.testing.assert_allclose(ours.probability, theirs.probability, atol=1e-4)
    assert ours.classes is not None and set(np.unique(ours.classes)) <= {0, 1, 2, 5}  # the class file's values
    assert (ours.classes == theirs.classes).mean() >= 0.9999
    # the rule: change where 1 - p(no change) > threshold, of the most probable change class
    assert ((ours.classes > 0) == (ours.probability > onnx.threshold)).all()


def test_eval_through_onnxruntime_counts_the_torch_networks_classes(tmp_path) -> None:
    """eval of the K-class export equals eval of its checkpoint up to fp32 rounding, on a class-labelled split."""
    from PIL import Image

    from mmchange_core.evaluation.evaluate import evaluate
    from mmchange_core.text.features import checkpoint_text_provider
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, caption_dataset

    root = tmp_path / "ds"
    rng = np.random.default_rng(2)
    values = np.asarray(exported("classes").meta.classes.values, np.uint8)
    for i in range(2):
        a, b = scenes(64, 96, seed=i)
        for sub, array in (("A", a), ("B", b), ("label", rng.choice(values, (64, 96)))):
            (root / "test" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / "test" / sub / f"{i}.png")
    caption_dataset(root, captioner=CaptionerConfig(name="basic"), encoder=TextEncoderConfig(name="hashing", dim=64),
                    device="cpu")
    results = []
    for path in (exported("classes").checkpoint, exported("classes").onnx):
        detector = ChangeDetector.from_checkpoint(path, device="cpu")
        provider = checkpoint_text_provider(detector.meta, root)
        results.append(evaluate(detector, root, "test", text_provider=provider))
    torch_result, onnx_result = results
    assert torch_result.multiclass and onnx_result.multiclass
    differing = np.abs(torch_result.confusion.matrix - onnx_result.confusion.matrix).sum()
    assert differing <= 2 * 0.0001 * torch_result.confusion.total  # a pixel moved between cells counts twice
    assert onnx_result.metrics()["mean_f1"] == pytest.approx(torch_result.metrics()["mean_f1"], abs=1e-3)
