"""The onnxruntime backend: an exported ``.onnx`` runs through every command with the torch path's results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmchange_core.benchmark import BenchmarkConfig, run_benchmark
from mmchange_core.errors import InputError
from mmchange_core.inference.drift import measure_drift
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.inference.onnx_runner import OnnxRunner
from tests.inference_helpers import scene, write_pair
from tests.onnx_helpers import exported

pytestmark = pytest.mark.slow  # shares the session's tiny exports (tens of seconds for the first test)


def one_line_error(result, *fragments: str) -> None:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def predict_both(cli, kind: str, folder: Path, height: int, width: int) -> tuple[np.ndarray, ...]:
    path_a, path_b = write_pair(folder, height, width, seed=height)
    probs, masks = [], []
    for name, checkpoint in (("torch", exported(kind).checkpoint), ("onnx", exported(kind).onnx)):
        mask, prob = folder / f"{name}.png", folder / f"{name}.tif"
        result = cli("predict", path_a, path_b, "-o", mask, "--prob", prob, "--checkpoint", checkpoint,
                     "--device", "cpu", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["threshold"] == 0.45  # the checkpoint's, from the ONNX metadata too
        probs.append(np.asarray(Image.open(prob), dtype=np.float32))
        masks.append(np.asarray(Image.open(mask)) > 0)
    return probs[0], probs[1], masks[0], masks[1]


@pytest.mark.parametrize(("kind", "height", "width"), [("image", 150, 170), ("image", 128, 192), ("text", 100, 140)])
def test_predict_with_the_onnx_model_matches_the_checkpoint(cli, tmp_path, kind, height, width) -> None:
    """Windows of 64 px: 150x170 is no multiple of the tile (edge windows overlap more), 128x192 is."""
    prob_torch, prob_onnx, mask_torch, mask_onnx = predict_both(cli, kind, tmp_path, height, width)
    assert prob_onnx.shape == (height, width)
    assert np.abs(prob_torch - prob_onnx).max() < 1e-4
    assert (mask_torch == mask_onnx).mean() >= 0.9999  # at the checkpoint's threshold (0.45)
    median = float(np.median(prob_torch))  # a threshold with half of the pixels on each side, many close to it
    assert ((prob_torch > median) == (prob_onnx > median)).mean() >= 0.9999


@pytest.fixture
def labelled(tmp_path) -> Path:
    """Two labelled pairs (the changed block of :func:`scene` is the label), one not tile-shaped."""
    root = tmp_path / "data"
    for name, (height, width) in (("p1.png", (96, 130)), ("p2.png", (64, 64))):
        write_pair(root, height, width, name=name, seed=width)
        label = np.zeros((height, width), dtype=np.uint8)
        label[height // 4:height // 2, width // 3:2 * width // 3] = 255
        (root / "label").mkdir(exist_ok=True)
        Image.fromarray(label).save(root / "label" / name)
    return root


def test_eval_and_drift_check_agree_with_the_checkpoint(cli, tmp_path, labelled) -> None:
    metrics = []
    for checkpoint in (exported("image").checkpoint, exported("image").onnx):
        result = cli("eval", "--checkpoint", checkpoint, "--dataset", labelled, "--device", "cpu", "--json",
                     "--project", tmp_path / "runs")
        assert result.exit_code == 0, result.output
        metrics.append(json.loads(result.stdout))
    pixels = sum(metrics[0][key] for key in ("tp", "fp", "fn", "tn"))
    for key in ("tp", "fp", "fn", "tn"):
        assert abs(metrics[0][key] - metrics[1][key]) <= 0.0001 * pixels
    assert metrics[0]["f1"] == pytest.approx(metrics[1]["f1"], abs=1e-3)
    drift = measure_drift(exported("image").checkpoint, labelled, "all", device="cpu",
                          candidate=exported("image").onnx)
    assert drift.agreement >= 0.9999 and drift.max_abs_prob_diff < 1e-4 and drift.precision == "fp32"


def test_benchmark_times_onnxruntime_beside_torch(cli) -> None:
    config = BenchmarkConfig(checkpoint=str(exported("image").onnx), size=64, batch_size=[2], precision=["fp32"],
                             warmup=1, repeats=1, min_run_seconds=0.0, device="cpu")
    report = run_benchmark(config)
    assert [(r.backend, r.batch, r.precision) for r in report.rows] == [("torch", 2, "fp32"), ("onnx", 2, "fp32")]
    assert all(r.pairs_per_s > 0 for r in report.rows)
    result = cli("benchmark", "--checkpoint", exported("image").onnx, "--backend", "onnx", "--size", "64",
                 "--batch-size", "1", "--repeats", "1", "--device", "cpu", "--set", "min_run_seconds=0", "--json")
    assert result.exit_code == 0, result.output
    assert [row["backend"] for row in json.loads(result.stdout)["rows"]] == ["onnx"]


@pytest.mark.parametrize(("args", "fragment"), [
    (["--precision", "bf16"], "--precision bf16 does not apply to the ONNX model"),
    (["--compile"], "--compile does not apply to the ONNX model"),
])
def test_torch_only_options_are_refused_in_one_line(cli, tmp_path, args, fragment) -> None:
    path_a, path_b = write_pair(tmp_path, 64, 64)
    result = cli("predict", path_a, path_b, "-o", tmp_path / "m.png", "--checkpoint", exported("image").onnx,
                 "--device", "cpu", *args)
    one_line_error(result, fragment)
    assert not (tmp_path / "m.png").exists()


def test_missing_onnxruntime_names_the_extra(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # "import onnxruntime" now raises ImportError
    with pytest.raises(InputError, match=r'onnxruntime is not installed .*pip install "mmchange\[onnx\]"'):
        OnnxRunner(exported("image").onnx)
    path_a, path_b = write_pair(tmp_path, 64, 64)
    result = cli("predict", path_a, path_b, "-o", tmp_path / "m.png", "--checkpoint", exported("image").onnx)
    one_line_error(result, "onnxruntime is not installed", 'pip install "mmchange[onnx]"')


def test_detector_api_reads_the_onnx_metadata() -> None:
    detector = ChangeDetector.from_checkpoint(exported("text").onnx, device="cpu")
    assert isinstance(detector.runner, OnnxRunner) and detector.uses_text
    assert (detector.tile_size, detector.threshold) == (64, 0.45)
    assert detector.text_pipeline().describe() == exported("text").meta.text_description
    image_a, image_b = scene(64, 96)
    torch_detector = ChangeDetector.from_checkpoint(exported("text").checkpoint, device="cpu")
    captions = ["a field", "a new road across the field"]
    np.testing.assert_allclose(detector.probabilities(image_a, image_b, captions),
                               torch_detector.probabilities(image_a, image_b, captions), atol=1e-4)


# a foreign model: mmchange's metadata on a graph whose inputs or outputs differ from an export
_IMAGE = ("float", ["N", 3, "H", "W"])
_MAP = ("float", ["N", 1, "H", "W"])


@pytest.mark.parametrize("options, difference", [
    (dict(outputs={"out0": _MAP}), "has no output 'logits' (outputs: out0)"),
    (dict(outputs={"logits": ("float", ["N", "H", "W"])}),
     "has output 'logits' of rank 3 (shape [N, H, W]), but mmchange exports float32 [N, 1, H, W]"),
    (dict(outputs={"logits": ("double", ["N", 1, "H", "W"])}),
     "has output 'logits' of type tensor(double), but mmchange exports float32 [N, 1, H, W]"),
    (dict(outputs={"logits": _MAP, "probability": ("double", ["N", 1, "H", "W"])}),
     "has output 'probability' of type tensor(double), but mmchange exports float32 [N, 1, H, W]"),
    (dict(inputs={"image_a": ("double", ["N", 3, "H", "W"]), "image_b": _IMAGE}),
     "has input 'image_a' of type tensor(double), but mmchange exports float32 [N, 3, H, W]"),
    (dict(inputs={"image_a": _IMAGE, "image_b": ("float", ["N", 3, "H"])}),
     "has input 'image_b' of rank 3 (shape [N, 3, H]), but mmchange exports float32 [N, 3, H, W]"),
    (dict(inputs={"image_a": ("float", ["N", 4, "H", "W"]), "image_b": _IMAGE}),
     "has input 'image_a' of shape [N, 4, H, W] (axis 1 is 4, not 3), but mmchange exports float32 [N, 3, H, W]"),
    (dict(inputs={"input0": _IMAGE, "image_b": _IMAGE}),
     "has no input 'image_a' (inputs: input0, image_b), which its metadata's image-only model needs"),
    (dict(inputs={"image_a": _IMAGE, "image_b": _IMAGE, "mask": _MAP}),
     "has an input 'mask' that its metadata's image-only model does not take (inputs: image_a, image_b, mask)"),
    (dict(inputs={"image_a": _IMAGE, "image_b": _IMAGE}, text=True),
     "has no input 'text_a' (inputs: image_a, image_b), which its metadata's text model needs"),
    (dict(inputs={"image_a": _IMAGE, "image_b": _IMAGE, "text_a": ("float", [1, 32]),
                  "text_b": ("float", [1, 32])}, text=True),
     "has input 'text_a' of shape [1, 32] (axis 1 is 32, not 64), but mmchange exports float32 [1, 64] or [N, 64]"),
    (dict(inputs={"image_a": _IMAGE, "image_b": _IMAGE, "text_a": ("float", [64]), "text_b": ("float", [1, 64])},
          text=True),
     "has input 'text_a' of rank 1 (shape [64]), but mmchange exports float32 [1, 64] or [N, 64]"),
    (dict(inputs={"image_a": _IMAGE, "image_b": _IMAGE, "text_a": ("float", [3, 64]), "text_b": ("float", [1, 64])},
          text=True),
     ("has input 'text_a' of shape [3, 64] (axis 0 is 3, not 1 or dynamic), but mmchange exports float32 [1, 64] "
      "or [N, 64]")),
])
def test_a_foreign_model_is_refused_at_load_naming_the_difference(tmp_path, options, difference) -> None:
    from mmchange_core.errors import CheckpointError
    from tests.onnx_helpers.foreign import foreign_model

    model = foreign_model(tmp_path / "model.onnx", **options)
    with pytest.raises(CheckpointError) as caught:
        OnnxRunner(model, "cpu")
    assert str(caught.value) == f"{model} {difference}; export it with 'mmchange export'"


@pytest.mark.parametrize("text", [False, True])
def test_a_model_with_the_exported_signature_loads_and_runs(tmp_path, text: bool) -> None:
    """Dynamic axes may carry any names; a text model's text inputs may have a dynamic first axis."""
    import torch

    from tests.onnx_helpers.foreign import foreign_model

    inputs = {"image_a": ("float", ["b", 3, "h", "w"]), "image_b": ("float", [None, 3, None, None])}
    if text:
        inputs.update(text_a=("float", ["one", 64]), text_b=("float", [1, 64]))
    runner = OnnxRunner(foreign_model(tmp_path / "model.onnx", inputs, text=text), "cpu")
    embedding = torch.zeros(1, 64) if text else None
    assert runner.logits(torch.zeros(2, 3, 64, 96), torch.zeros(2, 3, 64, 96), embedding, embedding).shape == \
        (2, 1, 64, 96)


# --------------------------------------------------------------------------------------------------
# text: one caption embedding shared by the batch, or one per window


def _windows(batch: int, seed: int) -> tuple:
    import torch

    generator = torch.Generator().manual_seed(seed)
    images = [torch.randn(batch, 3, 64, 64, generator=generator) for _ in range(2)]
    # large embeddings: the tiny random network's text branch moves its logits by ~1e-4 per unit of text, by ~0.1 here
    texts = [100 * torch.randn(batch, 64, generator=generator) for _ in range(2)]
    return images, texts


def test_windows_of_different_captions_run_in_one_onnxruntime_batch() -> None:
    """3 windows of 3 pairs, each with its own captions: one onnxruntime call equals the torch network on each
    window alone with its own text."""
    import torch

    from mmchange_core.models import load_checkpoint

    network, _ = load_checkpoint(exported("text").checkpoint)
    runner = OnnxRunner(exported("text").onnx, "cpu")
    assert runner.shared_text_only == set()
    (img_a, img_b), (text_a, text_b) = _windows(3, seed=11)
    batched = runner.logits(img_a, img_b, text_a, text_b).numpy()
    assert batched.shape == (3, 1, 64, 64)
    with torch.no_grad():
        for i in range(3):
            alone = network(img_a[i:i + 1], img_b[i:i + 1], text_a[i:i + 1], text_b[i:i + 1], main_only=True)[0]
            assert np.abs(batched[i:i + 1] - alone.numpy()).max() <= 1e-4
    # the text of each window is its own: other captions give other logits
    rolled = runner.logits(img_a, img_b, text_a.roll(1, 0), text_b.roll(1, 0)).numpy()
    assert np.abs(rolled - batched).max() > 1e-2


def test_shared_text_still_equals_the_torch_runner() -> None:
    """[1, D] (and [D], and N equal rows) is one embedding per date shared by every window, as predict gives it."""
    from mmchange_core.inference.runner import InferenceRunner
    from mmchange_core.models import load_checkpoint

    network, _ = load_checkpoint(exported("text").checkpoint)
    runner = OnnxRunner(exported("text").onnx, "cpu")
    (img_a, img_b), (text_a, text_b) = _windows(3, seed=12)
    text_a, text_b = text_a[:1], text_b[:1]
    expected = InferenceRunner(network, "cpu").logits(img_a, img_b, text_a, text_b).float().numpy()
    for given_a, given_b in [(text_a, text_b), (text_a[0], text_b[0]), (text_a.expand(3, -1), text_b.expand(3, -1))]:
        assert np.abs(runner.logits(img_a, img_b, given_a, given_b).numpy() - expected).max() <= 1e-4


def test_a_file_with_fixed_one_row_text_loads_and_refuses_different_captions_in_one_line(tmp_path) -> None:
    """Files exported by earlier mmchange versions take text [1, D]: shared text runs, per-window text is refused."""
    from tests.onnx_helpers.foreign import foreign_model, text_inputs

    runner = OnnxRunner(foreign_model(tmp_path / "old.onnx", text_inputs(), text=True), "cpu")
    assert runner.shared_text_only == {"text_a", "text_b"}
    (img_a, img_b), (text_a, text_b) = _windows(3, seed=13)
    assert runner.logits(img_a, img_b, text_a[:1], text_b[:1]).shape == (3, 1, 64, 64)
    same = text_a[:1].expand(3, -1)
    assert runner.logits(img_a, img_b, same, same).shape == (3, 1, 64, 64)  # equal rows: one shared embedding
    with pytest.raises(InputError) as caught:
        runner.logits(img_a, img_b, text_a, text_b)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("old.onnx takes one text_a embedding shared by the batch")
    assert "export the model again with this mmchange to run windows of different captions in one batch" in message


@pytest.mark.parametrize("rows", [2, 4])
def test_a_text_batch_of_neither_one_nor_n_rows_is_refused_in_one_line(rows: int) -> None:
    runner = OnnxRunner(exported("text").onnx, "cpu")
    (img_a, img_b), (text_a, text_b) = _windows(4, seed=14)
    with pytest.raises(InputError) as caught:
        runner.logits(img_a[:3], img_b[:3], text_a[:rows], text_b[:1])
    assert str(caught.value) == (f"text_a has {rows} embeddings for a batch of 3 windows; give one shared by the batch "
                                 f"([1, 64]) or one per window ([3, 64])")
    with pytest.raises(InputError, match=r"^text_b has shape \[3, 32\]; the ONNX model takes \[1, 64\]"):
        runner.logits(img_a[:3], img_b[:3], text_a[:3], text_b[:3, :32])
