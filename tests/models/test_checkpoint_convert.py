"""Checkpoints (safetensors + config), reference conversion and ImageNet weight loading (metadata: test_checkpoint_meta)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from mmchange_core.errors import CheckpointError, MissingWeightsError
from mmchange_core.models import (
    CheckpointMeta,
    StateDictMismatchError,
    build_model,
    convert_reference_state_dict,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    update_checkpoint_meta,
)
from mmchange_core.models.pretrained import imagenet_weights_path
from tests.models_helpers.reference_fixture import reference_state_dict


def test_checkpoint_round_trip_rebuilds_model(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model("resnet18", "no-tde", text_dim=256).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, CheckpointMeta(model=model.config, threshold=0.4))
    loaded, meta = load_checkpoint(path)
    assert loaded.config == meta.model == model.config
    assert meta.threshold == 0.4
    x = torch.randn(1, 3, 64, 64)
    t = torch.randn(1, 256)
    with torch.no_grad():
        assert torch.equal(model(x, x.flip(-1), t, -t)[0], loaded(x, x.flip(-1), t, -t)[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"], "temporary files left behind"


def test_update_checkpoint_meta_keeps_weights(tmp_path: Path) -> None:
    model = build_model("resnet18", "image-only")
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    meta = update_checkpoint_meta(path, threshold=0.35)
    assert meta.threshold == 0.35 and read_checkpoint_meta(path) == meta
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded.decoder.cls.weight, model.decoder.cls.weight)


def test_loading_non_checkpoints_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint_meta(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.pth"
    torch.save({"a": torch.zeros(1)}, junk)
    with pytest.raises(CheckpointError, match="mmchange convert"):
        load_checkpoint(junk)


def test_convert_round_trip_via_cli(tmp_path: Path, spec_dir: Path, cli) -> None:
    reference = reference_state_dict(spec_dir)
    reference = {k: v.float() if v.is_floating_point() else v for k, v in reference.items()}
    src = tmp_path / "authors.pth.tar"
    torch.save({"epoch": 3, "arch": "BaseNet", "state_dict": reference}, src)
    result = cli("convert", src, "-o", tmp_path / "out.safetensors", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["backbone"] == "resnet50" and info["text_dim"] == 512
    model, meta = load_checkpoint(tmp_path / "out.safetensors")
    converted, _ = convert_reference_state_dict(reference)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in converted.items())
    assert meta.training["source"]["converted_from"].endswith("authors.pth.tar")
    assert meta.model == model.config and meta.tile_size == 256 and meta.threshold == 0.5


def test_convert_detects_resnet18_reference_layout() -> None:
    ours = build_model("resnet18").state_dict()
    # Invert the key mapping for a resnet18 network to fabricate an authors'-format state dict.
    from mmchange_core.models.convert import map_reference_key

    candidates = []
    for key in ours:
        for ref in _reference_candidates(key):
            if map_reference_key(ref) == key:
                candidates.append((ref, ours[key]))
                break
        else:
            raise AssertionError(f"no reference key maps to {key}")
    converted, config = convert_reference_state_dict(dict(candidates))
    assert config.backbone == "resnet18"
    assert set(converted) == set(ours)


def _reference_candidates(key: str) -> list[str]:
    table = [("encoder.trunk.", "Image_encoder.backbone.model."), ("encoder.aggregation.", "Image_encoder.fe."),
             ("ifr.sge.", "IFR.enh."), ("tde.attention.", "TDE.att."), ("tde.text_upsampler.", "TDE.Up_conv1."),
             ("tde.downsampler.", "TDE.Up_conv2."), ("tde.interaction.", "TDE.FIM."), ("tde.fuse.", "TDE.conv."),
             ("itff.", "ITFF."), ("decoder.", "decoder.")]
    out = []
    if key.startswith("encoder.proj.c"):
        out.append("Image_encoder.backbone.conv" + key[len("encoder.proj.c"):])
    if key.startswith("ifr.scales."):
        idx, rest = key[len("ifr.scales."):].split(".", 1)
        out.append(f"IFR.ff{int(idx) + 2}.{rest}")
    for ours, ref in table:
        if key.startswith(ours):
            out.append(ref + key[len(ours):].replace(".sge.", ".enh."))
    return out


def test_wrong_state_dict_lists_missing_and_unexpected(tmp_path: Path, cli) -> None:
    wrong = torchvision.models.resnet18().state_dict()
    with pytest.raises(StateDictMismatchError) as info:
        convert_reference_state_dict(wrong)
    assert info.value.missing and info.value.unexpected
    assert "missing key" in str(info.value) and "unexpected key" in str(info.value)
    src = tmp_path / "wrong.pth"
    torch.save(wrong, src)
    result = cli("convert", src, "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 1
    assert "missing" in result.output and "unexpected" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.safetensors").exists()


def test_imagenet_weights_from_cache_and_clear_error_when_missing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.hub.set_dir(str(tmp_path / "torch" / "hub"))
    try:
        path = imagenet_weights_path("resnet18")
        assert path.name == "resnet18-f37072fd.pth"

        def offline(*args, **kwargs):
            raise OSError("network unreachable")

        monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict",
                            offline)
        with pytest.raises(MissingWeightsError) as info:
            build_model("resnet18", pretrained_backbone=True)
        message = str(info.value)
        assert path.name in message and str(path.parent) in message and "--no-pretrained" in message

        torch.manual_seed(3)
        trunk_state = torchvision.models.resnet18().state_dict()
        path.parent.mkdir(parents=True)
        torch.save(trunk_state, path)
        model = build_model("resnet18", pretrained_backbone=True)
        assert torch.equal(model.encoder.trunk.layer4[1].conv2.weight, trunk_state["layer4.1.conv2.weight"])
    finally:
        torch.hub.set_dir(str(Path(torch.hub._get_torch_home()) / "hub"))
