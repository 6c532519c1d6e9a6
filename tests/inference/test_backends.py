"""The backend seam: one resolution of a model spec, the runtime picked by the file's format, a registry of backends."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mmchange_core.inference.backends as backends
from mmchange_core.errors import CheckpointError, InputError
from mmchange_core.inference.backends import ModelFile, OnnxBackend, ReferenceBackend, TorchBackend, open_model
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.inference.settings import DetectorSettings
from mmchange_core.models import CheckpointMeta, build_model, save_checkpoint
from mmchange_core.models.convert import convert_reference_checkpoint
from mmchange_core.runs import latest_checkpoint
from tests.inference_helpers import image_only_checkpoint, scene  # noqa: F401  (fixture)
from tests.models_helpers.reference_fixture import reference_state_dict


def test_each_format_goes_to_its_backend(tmp_path: Path, image_only_checkpoint: Path) -> None:
    assert isinstance(open_model(image_only_checkpoint).backend, TorchBackend)
    assert type(backends.backend_for(tmp_path / "model.onnx")) is OnnxBackend
    assert type(backends.backend_for(tmp_path / "MMChange.pth")) is ReferenceBackend
    assert type(backends.backend_for(tmp_path / "best_model.pth.tar")) is ReferenceBackend
    assert type(backends.backend_for(tmp_path / "best.safetensors")) is TorchBackend


def test_an_authors_pth_runs_as_its_conversion_does(spec_dir: Path, tmp_path: Path) -> None:
    """The authors' .pth, converted in memory by the seam, gives the probabilities of the converted checkpoint."""
    pth = tmp_path / "MMChange_best.pth"
    torch.save(reference_state_dict(spec_dir), pth)
    converted, _ = convert_reference_checkpoint(pth, tmp_path / "converted.safetensors")
    settings = DetectorSettings(device="cpu", tile_size=64)
    direct = ChangeDetector.load(pth, settings)
    via_file = ChangeDetector.load(converted, settings)
    assert direct.backend == via_file.backend == "torch" and direct.meta.model == via_file.meta.model
    image_a, image_b = scene(64, 96)
    text = np.random.default_rng(0).normal(size=(2, direct.meta.model.text_dim)).astype(np.float32)
    assert np.array_equal(direct.probability_map(image_a, image_b, text[0], text[1]),
                          via_file.probability_map(image_a, image_b, text[0], text[1]))
    with pytest.raises(CheckpointError, match="convert it first"):
        open_model(pth).update_meta(threshold=0.4)


def test_a_hub_spec_is_resolved_once_per_load(monkeypatch, image_only_checkpoint: Path) -> None:
    calls: list[str] = []

    def resolve(spec):  # noqa: ANN001, ANN202 - the Hub cache stands in as the local file
        calls.append(str(spec))
        return image_only_checkpoint

    monkeypatch.setattr(backends, "resolve_checkpoint", resolve)
    detector = ChangeDetector.load("hf://alice/tiny-cd", device="cpu")
    assert calls == ["hf://alice/tiny-cd"]
    assert detector.name == "hf://alice/tiny-cd" and detector.record()["checkpoint"] == "hf://alice/tiny-cd"
    assert detector.model_file is not None and detector.model_file.from_hub


def test_a_new_backend_is_one_registered_class(monkeypatch, tmp_path: Path, image_only_checkpoint: Path) -> None:
    """A runtime added to BACKENDS serves every command's constructor without another change."""
    class TracedBackend(TorchBackend):
        name = "traced"
        suffixes = (".traced",)

        def claims(self, path: Path) -> bool:
            return path.suffix == ".traced"

        def runner(self, model: ModelFile, settings: DetectorSettings, **options):  # noqa: ANN003, ANN201
            runner = super().runner(model, settings, **options)
            runner.traced = True
            return runner

    monkeypatch.setattr(backends, "BACKENDS", [TracedBackend(), *backends.BACKENDS])
    traced = tmp_path / "model.traced"
    traced.write_bytes(image_only_checkpoint.read_bytes())
    detector = ChangeDetector.load(traced, device="cpu")
    assert getattr(detector.runner, "traced", False) and detector.model_file.backend.name == "traced"


def test_the_latest_training_run_is_the_default_model(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="train one first .* or pass --checkpoint"):
        open_model(None, project=tmp_path)
    torch.manual_seed(0)
    model = build_model("resnet18", "image-only")
    older = save_checkpoint(tmp_path / "train" / "exp" / "best.safetensors", model, CheckpointMeta(model=model.config))
    newer = save_checkpoint(tmp_path / "train" / "exp2" / "best.safetensors", model,
                            CheckpointMeta(model=model.config))
    stamp = time.time()
    os.utime(older, (stamp, stamp))
    os.utime(newer, (stamp - 60, stamp - 60))  # exp2 was written first: exp is the most recent run
    assert latest_checkpoint(tmp_path) == older
    chosen = open_model(None, project=tmp_path)
    assert chosen.path == older and "no --checkpoint given" in chosen.chosen and str(older) in chosen.chosen
    detector = ChangeDetector.load(chosen, device="cpu")
    assert detector.record()["checkpoint_chosen"] == chosen.chosen
