"""A 4-band 16-bit model through predict, eval and the API: the checkpoint's bands and one radiometric rule,
bit for bit the same in every command; bands the input lacks are refused before any output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.io.imagery import Imagery
from mmchange_core.io.images import read_mask
from mmchange_core.models import build_model, save_checkpoint
from mmchange_core.models.checkpoint import CheckpointMeta, Normalization
from tests.cli_helpers import assert_cli_error

pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def rgbn_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 64 px pairs of 4-band (red, green, blue, NIR) uint16 reflectance GeoTIFFs."""
    root = tmp_path_factory.mktemp("rgbn") / "ds"
    make_synthetic_dataset(root, SynthConfig(pairs=6, size=64, seed=3, bands=4))
    return root


@pytest.fixture(scope="module")
def rgbn_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight 4-band resnet18 that reads bands 1-4 with the joint radiometric rule."""
    torch.manual_seed(0)
    model = build_model("resnet18", "image-only", in_channels=4)
    meta = CheckpointMeta(model=model.config, tile_size=64, imagery=Imagery(bands=(1, 2, 3, 4)),
                          normalization=Normalization((0.3, 0.3, 0.3, 0.4), (0.2, 0.2, 0.2, 0.25)))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "rgbn.safetensors", model, meta)


def _pair(root: Path) -> tuple[Path, Path]:
    image_a = sorted((root / "test" / "A").iterdir())[0]
    return image_a, root / "test" / "B" / image_a.name


def test_predict_eval_and_the_api_agree_bit_for_bit(rgbn_dataset: Path, rgbn_checkpoint: Path, tmp_path: Path,
                                                    cli) -> None:
    image_a, image_b = _pair(rgbn_dataset)
    detector = ChangeDetector.load(rgbn_checkpoint, device="cpu")
    api = detector.predict(image_a, image_b)
    threshold = repr(float(np.median(api.probability)))
    assert detector.imagery.bands == (1, 2, 3, 4)
    result = cli("predict", image_a, image_b, "-o", tmp_path / "mask.png", "-c", rgbn_checkpoint, "--device", "cpu",
                 "--threshold", threshold, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["imagery"]["bands"] == [1, 2, 3, 4]
    predicted = read_mask(tmp_path / "mask.png")
    assert 0.2 < predicted.mean() < 0.8
    np.testing.assert_array_equal(predicted, api.probability > float(threshold))
    preds = tmp_path / "eval_pred"
    evaluated = cli("eval", "-c", rgbn_checkpoint, "-d", rgbn_dataset, "--save-pred", preds, "--device", "cpu",
                    "-w", "0", "--project", tmp_path / "runs", "--threshold", threshold, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    saved = sorted(preds.glob(f"{image_a.stem}.*"))
    assert saved, list(preds.iterdir())
    np.testing.assert_array_equal(read_mask(saved[0]), predicted)


def test_input_without_the_checkpoints_bands_is_refused_before_any_output(rgbn_checkpoint: Path, tmp_path: Path,
                                                                           cli) -> None:
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for name in ("a.png", "b.png"):
        Image.fromarray(rgb).save(tmp_path / name)
    result = cli("predict", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "out" / "mask.png",
                 "-c", rgbn_checkpoint, "--device", "cpu")
    assert_cli_error(result, "a.png has 3 bands, so band 4 of --bands 1,2,3,4 does not exist")
    assert not (tmp_path / "out").exists()


def test_a_band_override_of_another_count_is_refused(rgbn_dataset: Path, rgbn_checkpoint: Path, tmp_path: Path,
                                                     cli) -> None:
    image_a, image_b = _pair(rgbn_dataset)
    result = cli("predict", image_a, image_b, "-o", tmp_path / "mask.png", "-c", rgbn_checkpoint, "--device", "cpu",
                 "--bands", "3,2,1")
    assert_cli_error(result, "--bands 3,2,1 gives 3 bands, but the model reads 4")
    assert not (tmp_path / "mask.png").exists()
    swapped = cli("predict", image_a, image_b, "-o", tmp_path / "swapped.png", "-c", rgbn_checkpoint,
                  "--device", "cpu", "--bands", "3,2,1,4", "--json")
    assert swapped.exit_code == 0, swapped.output
    assert json.loads(swapped.stdout)["settings"]["bands"] == [3, 2, 1, 4]


def test_onnx_and_int8_exports_read_four_bands(rgbn_dataset: Path, rgbn_checkpoint: Path, tmp_path: Path,
                                               cli) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    fp32 = tmp_path / "rgbn.onnx"
    result = cli("export", rgbn_checkpoint, "-o", fp32)
    assert result.exit_code == 0, result.output
    int8 = tmp_path / "rgbn_int8.onnx"
    result = cli("export", fp32, "-o", int8, "--quantize", "int8", "--calibrate", rgbn_dataset, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["calibration"]["windows"] > 0
    image_a, image_b = _pair(rgbn_dataset)
    torch_probs = ChangeDetector.load(rgbn_checkpoint, device="cpu").predict(image_a, image_b).probability
    onnx_detector = ChangeDetector.load(fp32, device="cpu")
    assert onnx_detector.meta.imagery == ChangeDetector.load(rgbn_checkpoint, device="cpu").meta.imagery  # in the file
    onnx_probs = onnx_detector.predict(image_a, image_b).probability
    assert np.abs(torch_probs - onnx_probs).max() < 1e-4   # the same bands and scale reach both runtimes
    quantized = cli("predict", image_a, image_b, "-o", tmp_path / "q.png", "-c", int8, "--device", "cpu")
    assert quantized.exit_code == 0, quantized.output
