"""Adversarial inputs through the CLI: every one is refused with exit code 1, one ``error:`` line that
names the file or value, no traceback, and an unchanged folder tree (nothing written, nothing damaged).

Fixtures (a random-weight checkpoint, 64x64 images, a tiny dataset) are built once per module;
hypothesis draws the bad bytes, label values, option values, truncation points and suffixes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from mmchange_cli.app import app
from mmchange_core.errors import CheckpointError, InputError
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.inference.predict import PairOutputs, predict_files
from mmchange_core.io.jsonio import strict_json
from mmchange_core.models import build_model, save_checkpoint
from mmchange_core.models.checkpoint import load_checkpoint

SETTINGS = settings(max_examples=6, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SIZE = 64


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A checkpoint, NaN/Inf-weight copies, two image folders and a small labelled dataset."""
    root = tmp_path_factory.mktemp("adversarial")
    torch.manual_seed(0)
    model = build_model("resnet18", "image-only")
    save_checkpoint(root / "ck.safetensors", model)
    for name, value in (("nan", math.nan), ("inf", math.inf)):
        with torch.no_grad():
            broken = build_model("resnet18", "image-only")
            broken.load_state_dict(model.state_dict())
            next(broken.parameters()).view(-1)[3] = value
        save_checkpoint(root / f"{name}.safetensors", broken)
    rng = np.random.default_rng(0)
    for folder in ("A", "B"):
        (root / folder).mkdir()
        for name in ("x.png", "y.png"):
            Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / folder / name)
    make_dataset(root / "data", np.array([0, 255], np.uint8))
    (root / "empty.png").write_bytes(b"")
    (root / "folder.png").mkdir()
    os.mkfifo(root / "fifo.png")
    os.mkfifo(root / "fifo.safetensors")
    return root


def make_dataset(root: Path, label_values: np.ndarray) -> Path:
    """A flat A/B/label dataset with one 64x64 pair whose label holds ``label_values``."""
    rng = np.random.default_rng(1)
    for folder in ("A", "B", "label"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for folder in ("A", "B"):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / folder / "p.png")
    label = np.resize(label_values, SIZE * SIZE).reshape(SIZE, SIZE).astype(np.uint8)
    Image.fromarray(label).save(root / "label" / "p.png")
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` with its type, size, inode and mtime: any write or new file shows."""
    entries = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        entries[str(path.relative_to(root))] = (info.st_mode >> 12, info.st_size, info.st_ino, info.st_mtime_ns)
    return entries


def _timeout(signum, frame):  # noqa: ANN001 - a signal handler
    raise TimeoutError("the command blocked (a FIFO was opened?)")


def refused(root: Path, *args: object, names: tuple[str, ...]) -> str:
    """Run ``mmchange args`` in ``root`` and check the refusal; returns the error line."""
    before = snapshot(root)
    cwd = os.getcwd()
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(60)
    try:
        os.chdir(root)  # relative default folders (runs/) land in the snapshot
        result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(cwd)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert [line.startswith("error:") for line in lines].count(True) == 1, result.stderr
    assert "Traceback" not in result.output and "--debug" not in lines[-1], result.stderr
    assert any(name in lines[-1] for name in names), (names, lines[-1])
    assert snapshot(root) == before, f"files changed by: {args}"
    return lines[-1]


def predict(root: Path, *extra: object, a: str = "A/x.png", b: str = "B/x.png", out: str = "out.png",
            ckpt: str = "ck.safetensors") -> list[object]:
    return ["predict", a, b, "-o", out, "-c", ckpt, *extra]


# --------------------------------------------------------------------------------------- images


@SETTINGS
@given(prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"\xff\xd8\xff\xe0"]),
       body=st.binary(max_size=512), suffix=st.sampled_from([".png", ".jpg", ".tif"]))
def test_random_bytes_as_an_image_are_refused(work: Path, prefix: bytes, body: bytes, suffix: str) -> None:
    bad = work / "scratch" / f"bad{suffix}"
    bad.parent.mkdir(exist_ok=True)
    bad.write_bytes(prefix + body)
    refused(work, *predict(work, a=f"scratch/bad{suffix}"), names=(f"bad{suffix}",))


@pytest.mark.parametrize("image", ["empty.png", "folder.png", "fifo.png", "missing.png"])
def test_empty_folder_fifo_or_missing_image_is_refused(work: Path, image: str) -> None:
    refused(work, *predict(work, b=image), names=(image,))


@settings(SETTINGS, max_examples=3)
@given(values=st.sets(st.integers(0, 255), min_size=3, max_size=6))
def test_label_with_more_than_two_values_is_refused(work: Path, values: set[int]) -> None:
    root = work / "labels"
    shutil.rmtree(root, ignore_errors=True)
    make_dataset(root / "data", np.array(sorted(values), np.uint8))
    message = refused(root, "eval", "-c", work / "ck.safetensors", "-d", "data", "--split", "all", "--workers", "0",
                      names=("p.png",))
    assert f"{len(values)} distinct values" in message and "--change-value" in message


# --------------------------------------------------------------------------------------- options


BAD_OPTIONS = {
    "--min-area": st.one_of(st.sampled_from([math.nan, math.inf]), st.floats(max_value=-1e-9, allow_nan=False)),
    "--overlap": st.integers(max_value=-1),
    "--tile-size": st.integers(-1000, 10_000).filter(lambda v: v <= 0 or v % 32),
    "--batch-size": st.integers(max_value=0),
}


@SETTINGS
@given(data=st.data(), option=st.sampled_from(sorted(BAD_OPTIONS)))
def test_out_of_range_option_values_are_refused(work: Path, data: st.DataObject, option: str) -> None:
    value = data.draw(BAD_OPTIONS[option])
    key = option.lstrip("-").replace("-", "_")
    group = "" if key == "min_area" else "detector."  # the detector settings are one group (config key detector.*)
    refused(work, *predict(work, option, value), names=(f"'{group}{key}' is",))


@SETTINGS
@example(value=0.0)  # every pixel would be change (a pixel is change when its probability is > threshold)
@example(value=1.0)  # no pixel would be change
@given(value=st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]), st.floats(max_value=0.0, allow_nan=False),
                       st.floats(min_value=1.0, allow_nan=False)))
def test_a_threshold_not_strictly_between_0_and_1_is_refused(work: Path, value: float) -> None:
    line = refused(work, *predict(work, "--threshold", value), names=("threshold",))
    assert str(value) in line, line  # the value as given
    if math.isfinite(value):
        assert "between 0 and 1" in line, line  # and the range it must lie in


@pytest.mark.parametrize("args, name", [
    (["eval", "-c", "ck.safetensors", "-d", "data", "--threshold", "nan"], "'detector.threshold' is nan"),
    (["eval", "-c", "ck.safetensors", "-d", "data", "--overlap", "-1"], "'detector.overlap' is -1"),
    (["eval", "-c", "ck.safetensors", "-d", "data", "--name", "../escape"], "'name' is '../escape'"),
    (["robustness", "-c", "ck.safetensors", "-d", "data", "--severity", "inf"], "'severities' is inf"),
    (["robustness", "-c", "ck.safetensors", "-d", "data", "--seed", "-1"], "'seed' is -1"),
    (["benchmark", "--batch-size", "0"], "'batch_size' is 0"),
    (["train", "-d", "data", "--iters", "0"], "'iters' is 0"),
    (["eval", "-c", "ck.safetensors", "-d", "no_such_dataset"], "no_such_dataset"),
    (["demo", "--output", "A/x.png"], "A/x.png"),
])
def test_bad_values_of_every_command_are_refused_before_any_folder(work: Path, args: list[str], name: str) -> None:
    refused(work, *args, names=(name,))


# --------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_checkpoint_with_non_finite_weights_is_refused_at_load(work: Path, kind: str) -> None:
    message = refused(work, *predict(work, ckpt=f"{kind}.safetensors"), names=(f"{kind}.safetensors",))
    assert "weight tensor '" in message and "NaN or infinite" in message
    with pytest.raises(CheckpointError, match="holds NaN or infinite values"):
        load_checkpoint(work / f"{kind}.safetensors")


@SETTINGS
@given(fraction=st.floats(0.0, 0.999))
def test_truncated_checkpoint_is_reported_as_truncated(work: Path, fraction: float) -> None:
    data = (work / "ck.safetensors").read_bytes()
    cut = work / "scratch" / "cut.safetensors"
    cut.parent.mkdir(exist_ok=True)
    cut.write_bytes(data[:int(len(data) * fraction)])
    message = refused(work, *predict(work, ckpt="scratch/cut.safetensors"), names=("cut.safetensors",))
    assert "truncated or corrupt" in message and "convert" not in message


@pytest.mark.parametrize("ckpt", ["folder.png", "fifo.safetensors", "empty.png", "missing.safetensors"])
def test_checkpoint_that_is_no_file_is_refused(work: Path, ckpt: str) -> None:
    refused(work, *predict(work, ckpt=ckpt), names=(ckpt,))


@pytest.mark.parametrize("option", ["--config", "--captions"])
@pytest.mark.parametrize("path", ["folder.png", "fifo.png", "missing.yaml"])
def test_config_or_captions_file_that_is_no_file_is_refused(work: Path, option: str, path: str) -> None:
    refused(work, *predict(work, option, path), names=(path,))


def test_a_pth_that_is_not_the_authors_checkpoint_is_refused_in_one_line(work: Path) -> None:
    """A .pth is run as an authors' checkpoint (converted in memory); another state dict is named and refused."""
    torch.save({"w": torch.zeros(2)}, work / "scratch.pth")
    try:
        message = refused(work, *predict(work, ckpt="scratch.pth"), names=("scratch.pth",))
    finally:
        (work / "scratch.pth").unlink()
    assert "not in the authors' MMChange format" in message and "mmchange checkpoint (.safetensors)" in message


def test_non_finite_scores_write_no_mask_and_no_probability(work: Path, tmp_path: Path) -> None:
    """Weights that pass loading but give NaN scores (here set after loading) stop before any output."""
    model, meta = load_checkpoint(work / "ck.safetensors")
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.fill_(math.nan)
    detector = ChangeDetector(model, meta, device="cpu")
    outputs = PairOutputs(mask=tmp_path / "mask.png", prob=tmp_path / "prob.tif", overlay=tmp_path / "o.png",
                          vector=tmp_path / "v.geojson")
    with pytest.raises(InputError, match="NaN or infinite change scores"):
        predict_files(detector, work / "A" / "x.png", work / "B" / "x.png", outputs)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------- outputs


@SETTINGS
@given(option=st.sampled_from(["-o", "--prob", "--overlay"]), target=st.sampled_from(["A/x.png", "B/x.png"]))
def test_an_output_onto_an_input_is_refused(work: Path, option: str, target: str) -> None:
    args = predict(work, out="out.png" if option != "-o" else target)
    if option != "-o":
        args += [option, target]
    refused(work, *args, names=(target,))


@SETTINGS
@given(suffix=st.text(string.ascii_letters + string.digits, min_size=1, max_size=6))
def test_unknown_output_suffix_lists_the_supported_ones(work: Path, suffix: str) -> None:
    if f".{suffix.lower()}" in (".png", ".tif", ".tiff"):
        return
    message = refused(work, *predict(work, out=f"out.{suffix}"), names=(f"out.{suffix}",))
    assert ".png, .tif, .tiff" in message


def test_two_outputs_on_one_path_are_refused(work: Path) -> None:
    refused(work, *predict(work, "--prob", "same.png", out="same.png"), names=("same.png",))


def test_folder_inputs_mapping_to_one_output_are_refused_before_any_pair_runs(work: Path) -> None:
    folders = work / "collide"
    for folder in ("A", "B"):
        (folders / folder).mkdir(parents=True, exist_ok=True)
        for name in ("z.png", "z.jpg", "w.png"):
            shutil.copy(work / "A" / "x.png", folders / folder / name)
    message = refused(work, "predict", "collide/A", "collide/B", "-o", "masks", "-c", "ck.safetensors",
                      names=("masks/z.png",))
    assert "z.jpg" in message and "z.png" in message
    refused(work, "predict", "collide/A", "collide/B", "-o", "collide/B", "-c", "ck.safetensors",
            names=("collide/B",))


def test_eval_masks_into_the_dataset_are_refused(work: Path) -> None:
    refused(work, "eval", "-c", "ck.safetensors", "-d", "data", "--save-pred", "data/label", names=("data/label",))
    refused(work, "eval", "-c", "ck.safetensors", "-d", "data", "--save-pred", "data/label/p.png",
            names=("data/label/p.png",))


def test_convert_onto_its_source_is_refused(work: Path) -> None:
    shutil.copy(work / "ck.safetensors", work / "authors.safetensors")
    try:
        message = refused(work, "convert", "authors.safetensors", "-o", "authors.safetensors",
                          names=("authors.safetensors",))
    finally:
        (work / "authors.safetensors").unlink()
    assert "would overwrite the input" in message


def test_output_below_a_file_is_refused(work: Path) -> None:
    refused(work, *predict(work, "--prob", "A/x.png/prob.tif"), names=("A/x.png",))


# --------------------------------------------------------------------------------------- JSON


@SETTINGS
@given(value=st.one_of(st.floats(), st.sampled_from([np.float32("nan"), np.float64("inf")])))
def test_json_output_is_strict(value: float) -> None:
    text = strict_json({"metrics": {"f1": value}, "rows": [value, (value,)]})
    parsed = json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in {text}"))
    expected = float(value) if math.isfinite(value) else None
    assert parsed == {"metrics": {"f1": expected}, "rows": [expected, [expected]]}
