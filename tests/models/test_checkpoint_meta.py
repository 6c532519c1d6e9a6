"""Typed checkpoint metadata: round trip, the previous format, and one-line errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mmchange_core.errors import CheckpointError, InputError
from mmchange_core.models import (
    CheckpointMeta,
    ModelConfig,
    Normalization,
    build_model,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    update_checkpoint_meta,
)
from mmchange_core.text import CaptionerConfig, TextEncoderConfig, TextPipeline
from tests.models_helpers import write_v1

TEXT = TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(name="hashing", dim=64), device="cpu").describe()
MODEL = ModelConfig(backbone="resnet18", variant="full", text_dim=64)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", "full", text_dim=64).eval()


def full_meta() -> CheckpointMeta:
    """Every field set to a value other than its default."""
    return CheckpointMeta(
        model=MODEL, tile_size=64, normalization=Normalization(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)),
        threshold=0.37, threshold_tuning={"split": "val", "threshold": 0.37, "f1": 0.8},
        text_description=TEXT, training={"dataset": "/data/levir", "iterations": 12, "epoch": 3, "best_val_f1": None})


def test_every_field_round_trips_and_weights_load(model, tmp_path: Path) -> None:
    meta = full_meta()
    path = save_checkpoint(tmp_path / "m.safetensors", model, meta)
    loaded, loaded_meta = load_checkpoint(path)
    # the text description read back from the file (not the one the test wrote) rebuilds the same pipeline
    read_back = read_checkpoint_meta(path).text_description
    assert read_back == loaded_meta.text_description == TEXT
    assert TextPipeline.from_description(read_back, device="cpu").describe() == TEXT
    assert (loaded_meta.captioner_id, loaded_meta.encoder_id, loaded_meta.encoder_dim) == \
        ("basic:pixel-statistics", "hashing", 64)
    assert read_checkpoint_meta(path) == meta
    assert loaded_meta == meta
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_update_replaces_fields_atomically_and_keeps_the_rest(model, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", model, full_meta())
    updated = update_checkpoint_meta(path, threshold=0.42, threshold_tuning={"split": "val"})
    assert updated.threshold == 0.42 and updated.threshold_tuning == {"split": "val"}
    assert updated.tile_size == 64 and updated.text_description == TEXT
    with pytest.raises(InputError, match="between 0 and 1"):
        update_checkpoint_meta(path, threshold=1.0)
    assert read_checkpoint_meta(path).threshold == 0.42  # the failed update left the file as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_resolve_uses_the_override_else_the_stored_value() -> None:
    meta = full_meta()
    assert meta.resolve_threshold() == 0.37 and meta.resolve_threshold(0.6) == 0.6
    assert meta.resolve_tile_size() == 64 and meta.resolve_tile_size(512) == 512
    with pytest.raises(InputError, match="between 0 and 1"):
        meta.resolve_threshold(0.0)
    with pytest.raises(InputError, match="multiple of 32"):
        meta.resolve_tile_size(100)
    defaults = CheckpointMeta(model=MODEL)
    assert defaults.resolve_threshold() == 0.5 and defaults.resolve_tile_size() == 256
    assert defaults.captioner_id is None and defaults.encoder_dim is None


def test_previous_format_loads_with_its_keys_mapped(model, tmp_path: Path) -> None:
    store = {"path": "/data/captions.jsonl", "records": 8, "sha256": "ab" * 32}
    trained = write_v1(tmp_path / "trained.safetensors", model, {
        "threshold": 0.45, "threshold_tuning": {"split": "val", "threshold": 0.45}, "text": TEXT,
        "caption_store": store, "input": {"normalization": "imagenet", "crop_size": 64},
        "train": {"dataset": "/data", "iterations": 6, "best_epoch": 1}, "mmchange_version": "0.0.9"})
    loaded, meta = load_checkpoint(trained)
    assert loaded.config == MODEL
    assert meta == CheckpointMeta(model=MODEL, tile_size=64, threshold=0.45,
                                  threshold_tuning={"split": "val", "threshold": 0.45}, text_description=TEXT,
                                  mmchange_version="0.0.9",
                                  training={"dataset": "/data", "iterations": 6, "best_epoch": 1,
                                            "caption_store": store})
    converted = write_v1(tmp_path / "converted.safetensors", model,
                         {"source": {"converted_from": "a.pth"}, "mmchange_version": "0.1.0"})
    meta = read_checkpoint_meta(converted)
    assert (meta.tile_size, meta.threshold, meta.text_description) == (256, 0.5, None)
    assert meta.training == {"source": {"converted_from": "a.pth"}}
    assert update_checkpoint_meta(converted, threshold=0.3).threshold == 0.3  # rewritten in the new format
    assert read_checkpoint_meta(converted).training == {"source": {"converted_from": "a.pth"}}


def _v2(meta: dict | None = None, **header: str) -> dict[str, str]:
    base = {"format": "mmchange-checkpoint", "format_version": "2"}
    if meta is not None:
        base["meta"] = json.dumps(meta)
    return {**base, **header}


def _good() -> dict:
    return full_meta().to_json_dict()


def _with(**changes) -> dict:
    return {**_good(), **changes}


BAD_HEADERS = {
    "foreign": ({"format": "pt"}, "another tool"),
    "no header": (None, "another tool"),
    "newer version": (_v2(_good(), format_version="3"), "format version '3'.*upgrade mmchange"),
    "no meta": (_v2(), "no 'meta' entry"),
    "v1 without model_config": ({"format": "mmchange-checkpoint", "format_version": "1", "meta": "{}"},
                                "no model config"),
    "v2 without model": (_v2({k: v for k, v in _good().items() if k != "model"}), "no model config"),
    "not json": (_v2() | {"meta": "{threshold: 0.5"}, "not valid JSON"),
    "meta not an object": (_v2([1, 2]), "must be a JSON object"),
    "threshold text": (_v2(_with(threshold="high")), "threshold.*expected a number"),
    "threshold out of range": (_v2(_with(threshold=1.5)), "'threshold' is 1.5; it must be strictly between 0 and 1"),
    "tile size": (_v2(_with(tile_size=100)), "'tile_size' is 100; it must be a positive multiple of 32"),
    "tile size negative": (_v2(_with(tile_size=-64)), "'tile_size' is -64; it must be a positive multiple of 32"),
    "unknown backbone": (_v2(_with(model={"backbone": "vgg16", "variant": "full", "text_dim": 64})),
                         "unknown backbone 'vgg16'"),
    "unknown key": (_v2(_with(colour="red")), "unknown config key 'colour'"),
    "encoder dim": (_v2(_with(text_description={**TEXT, "encoder": {**TEXT["encoder"], "dim": -3}})),
                    "dim must be a positive integer"),
    "dim differs from model": (_v2(_with(text_description={**TEXT, "encoder": {**TEXT["encoder"], "dim": 128}})),
                               "dim 128 differs from the model's text_dim 64"),
    "text without encoder": (_v2(_with(text_description={"captioner": TEXT["captioner"]})), "'encoder' settings"),
    "std zero": (_v2(_with(normalization={"mean": [0, 0, 0], "std": [1, 0, 1]})), "stds must be positive"),
    "two channels": (_v2(_with(normalization={"mean": [0, 0], "std": [1, 1]})),
                     "takes 3 input bands but its normalization has 2 means"),
    "means without stds": (_v2(_with(normalization={"mean": [0, 0, 0], "std": [1, 1]})), "one mean and one std"),
    "bands of another count": (_v2(_with(imagery={"bands": [4, 3, 2, 8]})), "takes 3 input bands but its imagery"),
    "unknown radiometry": (_v2(_with(imagery={"radiometry": {"rule": "gamma"}})), "radiometry rule 'gamma'"),
    "training not a mapping": (_v2(_with(training=[1])), "training.*expected a mapping"),
    "old normalization": ({"format": "mmchange-checkpoint", "format_version": "1",
                           "model_config": json.dumps(MODEL.__dict__),
                           "meta": json.dumps({"input": {"normalization": "sentinel2"}})},
                          "unknown normalization 'sentinel2'"),
}


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
def test_missing_foreign_or_invalid_metadata_is_one_line(case: str, model, tmp_path: Path) -> None:
    header, pattern = BAD_HEADERS[case]
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=header)
    for read in (read_checkpoint_meta, load_checkpoint):
        with pytest.raises(CheckpointError, match=pattern) as info:
            read(path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message


@pytest.mark.parametrize("keep", [0, 5, 60, -100])
def test_truncated_file_is_reported_as_truncated(keep: int, model, tmp_path: Path) -> None:
    whole = save_checkpoint(tmp_path / "whole.safetensors", model, full_meta()).read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(whole[:keep])
    with pytest.raises(CheckpointError, match="truncated") as info:
        read_checkpoint_meta(path) if keep != -100 else load_checkpoint(path)
    assert "convert" not in str(info.value) and "\n" not in str(info.value)


def test_non_safetensors_file_points_to_convert(tmp_path: Path) -> None:
    path = tmp_path / "authors.pth"
    torch.save({"a": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint.*mmchange convert"):
        read_checkpoint_meta(path)


def test_info_shows_the_checkpoint_metadata(model, tmp_path: Path, cli) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", model, full_meta())
    result = cli("info", "--checkpoint", path, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["checkpoint"]["backend"] == "torch"  # the runtime the backend seam picked for the file
    assert CheckpointMeta.from_json_dict({k: v for k, v in data["checkpoint"].items()
                                          if k not in ("path", "backend")}) == full_meta()
    assert (data["backbone"], data["variant"], data["size"]) == ("resnet18", "full", 64)  # the checkpoint's network
    text = cli("info", "-c", path)
    assert text.exit_code == 0, text.output
    for expected in ("tile size (training crop)", "0.37 (tuned on split 'val')", "basic:pixel-statistics",
                     "hashing (dim 64)", "training.iterations"):
        assert expected in text.stdout, expected
    bad = cli("info", "-c", tmp_path / "missing.safetensors")
    assert bad.exit_code == 1 and "checkpoint not found" in bad.output and "Traceback" not in bad.output
