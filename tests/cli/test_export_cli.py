"""``mmchange export`` on the command line: int8 calibrated and checked on labelled pairs, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mmchange_core.models.export import read_onnx_properties
from tests.inference_helpers import write_pair
from tests.onnx_helpers import exported

pytestmark = pytest.mark.slow  # shares the session's tiny export (tens of seconds for the first test)


def test_int8_export_reports_its_speed_and_its_check_against_fp32(cli, tmp_path) -> None:
    data = tmp_path / "data"
    for name, size in (("a.png", 96), ("b.png", 64)):
        write_pair(data, size, size, name=name, seed=size)
        label = np.zeros((size, size), dtype=np.uint8)
        label[size // 4:size // 2, size // 3:2 * size // 3] = 255
        (data / "label").mkdir(exist_ok=True)
        Image.fromarray(label).save(data / "label" / name)
    fp32 = exported("image").onnx
    result = cli("export", fp32, "-o", tmp_path / "int8.onnx", "--quantize", "int8", "--calibrate", data,
                 "--check", data, "--check-split", "all", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["quantization"] == "int8" and report["calibration"]["windows"] > 0
    assert report["seconds_per_batch"] > 0 and report["fp32_seconds_per_batch"] > 0 and report["speedup"] > 0
    check = report["check"]
    assert check["pairs"] == 2 and check["candidate"].endswith("int8.onnx")
    assert 0.5 < check["agreement"] <= 1.0 and check["max_abs_prob_diff"] > 0  # int8 really is another graph
    assert read_onnx_properties(tmp_path / "int8.onnx")["mmchange_quantization"] == "int8"
    prob = cli("predict", data / "A" / "a.png", data / "B" / "a.png", "-o", tmp_path / "m.png",
               "--checkpoint", tmp_path / "int8.onnx", "--device", "cpu")
    assert prob.exit_code == 0, prob.output


@pytest.mark.parametrize(("args", "fragment"), [
    (["--opset", "11"], "--opset 11 cannot be exported"),
    (["--quantize", "fp16"], "config key 'quantize' is 'fp16'; it must be one of int8, int8-dynamic"),
    (["--quantize", "int8"], "--quantize int8 (static, onnxruntime's fast int8 kernels) needs calibration pairs"),
    (["--calibrate", "somewhere"], "--calibrate is used by --quantize int8 only"),
])
def test_bad_options_fail_in_one_line_before_any_export(cli, tmp_path, args, fragment) -> None:
    result = cli("export", tmp_path / "missing.safetensors", "-o", tmp_path / "m.onnx", *args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and fragment in lines[0], result.output
    assert not (tmp_path / "m.onnx").exists()
