"""examples/onnx_predict.py (numpy + onnxruntime + Pillow only) gives what ``mmchange predict`` gives."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT
from tests.inference_helpers import write_pair
from tests.onnx_helpers import exported

pytestmark = pytest.mark.slow  # shares the session's tiny export (tens of seconds for the first test)


def test_plain_onnxruntime_example_matches_mmchange_predict(cli, tmp_path) -> None:
    path_a, path_b = write_pair(tmp_path, 96, 128, seed=7)
    model = exported("image").onnx
    run = subprocess.run([sys.executable, "-I", str(REPO_ROOT / "examples" / "onnx_predict.py"), str(model),
                          str(path_a), str(path_b), str(tmp_path / "example.png"), str(tmp_path / "example.npy")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    # a 128 px tile holds the whole 96x128 pair: one window, as the example runs it
    result = cli("predict", path_a, path_b, "-o", tmp_path / "mmchange.png", "--prob", tmp_path / "mmchange.tif",
                 "--checkpoint", model, "--tile-size", "128", "--device", "cpu")
    assert result.exit_code == 0, result.output
    prob = np.asarray(Image.open(tmp_path / "mmchange.tif"), dtype=np.float32)
    example = np.load(tmp_path / "example.npy")
    assert example.shape == prob.shape == (96, 128)
    assert np.abs(example - prob).max() < 1e-4
    masks = [np.asarray(Image.open(tmp_path / name)) > 0 for name in ("example.png", "mmchange.png")]
    assert (masks[0] == masks[1]).mean() >= 0.9999
