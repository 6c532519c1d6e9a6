"""``mmchange predict`` with text models: on-the-fly captions (basic + hashing), captions files, caching."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.io.images import read_mask
from mmchange_core.models import CheckpointMeta, build_model, save_checkpoint
from mmchange_core.text import CaptionerConfig, TextEncoderConfig, TextPipeline
from tests.cli_helpers import assert_cli_error
from tests.inference_helpers import scene, write_pair


@pytest.fixture(scope="session")
def text_checkpoint(tmp_path_factory):
    """A random-weight resnet18 full model whose metadata records the offline basic + hashing pipeline."""
    torch.manual_seed(1)
    pipeline = TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(name="hashing", dim=64), device="cpu")
    path = tmp_path_factory.mktemp("ckpt") / "text.safetensors"
    model = build_model("resnet18", "full", text_dim=64)
    save_checkpoint(path, model, CheckpointMeta(model=model.config, text_description=pipeline.describe()))
    return path, pipeline


def test_captions_on_the_fly_with_the_checkpoint_captioner(text_checkpoint, tmp_path, cli) -> None:
    checkpoint, pipeline = text_checkpoint
    path_a, path_b = write_pair(tmp_path, 96, 160)
    result = cli("predict", path_a, path_b, "-o", tmp_path / "mask.png", "--checkpoint", checkpoint,
                 "--tile-size", "64", "--overlap", "16", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    image_a, image_b = (np.asarray(Image.open(p)) for p in (path_a, path_b))
    expected = pipeline.caption([image_a, image_b])
    assert data["captions"] == expected and expected[0] != expected[1]
    predictor = ChangeDetector.from_checkpoint(checkpoint, tile_size=64, overlap=16)
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.png"),
                                  predictor.probabilities(image_a, image_b, captions=expected) > 0.5)
    # the text really reaches the network: other captions give other probabilities
    swapped = predictor.probabilities(image_a, image_b, captions=expected[::-1])
    assert not np.array_equal(swapped, predictor.probabilities(image_a, image_b))


def test_captions_file_replaces_captioning(text_checkpoint, tmp_path, cli) -> None:
    checkpoint, _ = text_checkpoint
    path_a, path_b = write_pair(tmp_path, 64, 64)
    (tmp_path / "captions.yaml").write_text('A/pair.png: "farmland with a dirt road"\n'
                                            'B/pair.png: "a new warehouse on the farmland"\n', encoding="utf-8")
    result = cli("predict", path_a, path_b, "-o", tmp_path / "mask.png", "--checkpoint", checkpoint,
                 "--captions", tmp_path / "captions.yaml", "--json", "--prob", tmp_path / "p.tif")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["captions"] == ["farmland with a dirt road", "a new warehouse on the farmland"]
    predictor = ChangeDetector.from_checkpoint(checkpoint)
    expected = predictor.probabilities(*(np.asarray(Image.open(p)) for p in (path_a, path_b)),
                                       captions=["farmland with a dirt road", "a new warehouse on the farmland"])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "p.tif")), expected)
    (tmp_path / "partial.yaml").write_text('A/pair.png: "farmland"\n', encoding="utf-8")
    result = cli("predict", path_a, path_b, "-o", tmp_path / "mask.png", "--checkpoint", checkpoint,
                 "--captions", tmp_path / "partial.yaml")
    assert_cli_error(result, "has no caption for", "B/pair.png")


def test_folder_mode_caches_captions_for_reruns(text_checkpoint, tmp_path, cli) -> None:
    checkpoint, _ = text_checkpoint
    write_pair(tmp_path, 64, 64, "x.png", seed=3)
    write_pair(tmp_path, 64, 96, "y.png", seed=4)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mmchange_captions.jsonl").write_text("a dataset's store\n")  # predict never appends to it
    first = cli("predict", tmp_path / "A", tmp_path / "B", "-o", out, "--checkpoint", checkpoint, "--json")
    assert first.exit_code == 0, first.output
    assert (out / "mmchange_captions.jsonl").read_text() == "a dataset's store\n"
    store = out / "mmchange_predict_captions.jsonl"
    lines = store.read_text().splitlines()
    assert sum('"caption"' in line for line in lines) >= 4
    second = cli("predict", tmp_path / "A", tmp_path / "B", "-o", out, "--checkpoint", checkpoint, "--json")
    assert second.exit_code == 0, second.output
    captions = [p["captions"] for p in json.loads(first.stdout)["pairs"]]
    assert captions == [p["captions"] for p in json.loads(second.stdout)["pairs"]]
    new_lines = store.read_text().splitlines()[len(lines):]
    assert not any('"caption"' in line for line in new_lines)     # nothing captioned again


def test_text_checkpoint_without_text_description_is_refused(tmp_path, cli) -> None:
    path = tmp_path / "no_text.safetensors"
    save_checkpoint(path, build_model("resnet18", "full", text_dim=64))
    image_a, image_b = scene(64, 64)
    Image.fromarray(image_a).save(tmp_path / "a.png")
    Image.fromarray(image_b).save(tmp_path / "b.png")
    result = cli("predict", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "m.png", "--checkpoint", path)
    assert_cli_error(result, "records no text pipeline")
