"""Fine-tuning (``train --weights``, ``--freeze``): the run starts from the weights, weights that do not fit are
refused in one line before anything is written, frozen parts stay bit-identical, the parent is recorded and
shown on the model card, resume keeps its own weights, and an authors' .pth is accepted."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import mmchange_core.inference.backends as backends
import mmchange_core.training.finetune as finetune
import mmchange_core.training.loop as train_module
from mmchange_core.config import ConfigError
from mmchange_core.errors import CheckpointError, InputError
from mmchange_core.io.imagery import Imagery, Radiometry
from mmchange_core.models import (
    CheckpointMeta,
    ModelConfig,
    build_model,
    save_checkpoint,
)
from mmchange_core.models.convert import map_reference_key
from mmchange_core.training.config import TrainConfig
from mmchange_core.training.finetune import weights_mismatches
from mmchange_core.training.loop import TrainObserver, resume_config, train
from tests.data_helpers import caption_basic, synth_dataset, tiny_config


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training pairs, 1 validation pair, captioned by the offline basic captioner + hashing encoder."""
    root = synth_dataset(tmp_path_factory.mktemp("finetune") / "ds", pairs=6, size=64)
    caption_basic(root)
    return root


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image-only resnet18 checkpoint whose weights (and BatchNorm statistics) differ from any fresh init."""
    torch.manual_seed(7)
    model = build_model("resnet18", "image-only")
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.uniform_(-0.1, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    return save_checkpoint(tmp_path_factory.mktemp("parent") / "parent.safetensors", model,
                           CheckpointMeta(model=model.config, tile_size=64))


def _config(data: Path, project: Path, **changes) -> TrainConfig:
    """A 1-iteration image-only run (4 pairs, batch 4) without validation."""
    values: dict = {"batch_size": 4, "iters": 1, "val_split": None}
    values.update(changes)
    return tiny_config(data, project, **values)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Messages(TrainObserver):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def on_message(self, text: str) -> None:
        self.lines.append(text)


# --------------------------------------------------------------------------------------------------
# (a) the run starts from the weights, not from ImageNet


def test_training_starts_from_the_weights(data: Path, parent: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    real_build = train_module.build_model

    def build(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - records the ImageNet request
        built.append(kwargs.get("pretrained_backbone"))
        return real_build(*args, **kwargs)

    first: list[list[torch.Tensor]] = []
    real_step = train_module.optimizer_step

    def step(loss, optimizer, scaler):  # noqa: ANN001, ANN202 - the weights the first step starts from
        if not first:
            first.append([p.detach().clone() for group in optimizer.param_groups for p in group["params"]])
        return real_step(loss, optimizer, scaler)

    monkeypatch.setattr(train_module, "build_model", build)
    monkeypatch.setattr(train_module, "optimizer_step", step)
    result = train(_config(data, tmp_path, pretrained=True, weights=str(parent)))  # weights replace ImageNet
    assert result.completed and built == [False]
    theirs = load_file(parent)
    names = [name for name, _ in build_model("resnet18", "image-only").named_parameters()]
    assert len(first[0]) == len(names)
    assert all(torch.equal(p, theirs[name]) for p, name in zip(first[0], names))
    ours = load_file(result.last_checkpoint)
    assert not torch.equal(ours["decoder.cls.weight"], theirs["decoder.cls.weight"])  # and it trained


# --------------------------------------------------------------------------------------------------
# (b) weights that do not fit: one line naming each mismatch, nothing written


def _refused(config: object, project: Path, *names: str) -> str:
    with pytest.raises(InputError) as info:
        train(config)
    message = str(info.value)
    assert "\n" not in message and "do not fit this run" in message
    for name in names:
        assert name in message, (name, message)
    assert not (project / "train").exists()  # no run folder, no file
    return message


def test_each_mismatch_is_refused_in_one_line_and_nothing_is_written(data: Path, parent: Path,
                                                                     tmp_path: Path) -> None:
    project = tmp_path / "runs"
    message = _refused(_config(data, project, weights=str(parent), backbone="resnet34"), project,
                       "backbone resnet18 != resnet34")
    assert message.endswith("train with --set backbone=resnet18 or pick other weights")
    message = _refused(_config(data, project, weights=str(parent), variant="full"), project,
                       "variant image-only != full")
    assert "--set variant=image-only" in message
    both = _refused(_config(data, project, weights=str(parent), backbone="resnet50", variant="no-tde"), project,
                    "backbone resnet18 != resnet50", "variant image-only != no-tde",
                    "--set backbone=resnet18 --set variant=image-only")
    assert both.count(" != ") == 2


def test_a_text_pipeline_mismatch_is_refused_naming_the_captioner(data: Path, tmp_path: Path) -> None:
    from mmchange_core.text import CaptionStore

    ours = CaptionStore.open(data).text_description()
    theirs = {"captioner": {"name": "clip-tags", "model": "ViT-B-32"}, "encoder": ours["encoder"]}
    model = build_model("resnet18", "full")
    weights = save_checkpoint(tmp_path / "text.safetensors", model,
                              CheckpointMeta(model=model.config, tile_size=64, text_description=theirs))
    project = tmp_path / "runs"
    message = _refused(_config(data, project, weights=str(weights), variant="full"), project,
                       "captioner clip-tags:ViT-B-32 != basic:pixel-statistics", "mmchange caption",
                       "--captioner clip-tags")
    assert "text encoder" not in message  # the encoders are the same
    other_encoder = {"captioner": ours["captioner"], "encoder": {"name": "hashing", "dim": 256}}
    wider = build_model("resnet18", "full", text_dim=256)
    weights = save_checkpoint(tmp_path / "wide.safetensors", wider,
                              CheckpointMeta(model=wider.config, tile_size=64, text_description=other_encoder))
    _refused(_config(data, project, weights=str(weights), variant="full"), project,
             "text_dim 256 != 512", "text encoder hashing settings differ (dim)")
    # an authors' checkpoint records no text pipeline: only its width is compared
    authors = SimpleNamespace(spec="MMChange.pth", meta=CheckpointMeta(model=ModelConfig("resnet18", "full", 768)))
    with pytest.raises(InputError, match=r"fit this run: text_dim 768 != 512; caption the dataset with a text "
                                         r"encoder of width 768 or pick other weights$"):
        finetune.check_weights(authors, _config(data, project, variant="full"), ours)


def test_every_model_config_field_and_the_bands_are_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fields added to ModelConfig later are compared without a change here; so are the input bands."""

    @dataclass(frozen=True)
    class Wider(ModelConfig):
        groups: int = 1

    monkeypatch.setattr(finetune, "ModelConfig", Wider)
    config = tiny_config(Path("ds"), Path("runs"))
    meta = SimpleNamespace(model=Wider("resnet18", "image-only", groups=2), text_description=None, imagery=Imagery())
    assert weights_mismatches(meta, config) == ["groups 2 != 1"]  # not a config key: the default is built
    with_key = SimpleNamespace(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)}, groups=2)
    assert weights_mismatches(meta, with_key) == []
    with pytest.raises(InputError, match=r"do not fit this run: groups 2 != 1; train with --set groups=2 or"):
        finetune.check_weights(SimpleNamespace(meta=meta, spec="w.safetensors"),
                               SimpleNamespace(**{**vars(with_key), "groups": 1}))

    meta.model = Wider("resnet18", "image-only", groups=2, in_channels=3)
    meta.imagery = Imagery(bands=(4, 3, 2))   # the same count, other bands: the weights learned other inputs
    assert weights_mismatches(meta, with_key) == ["bands 4,3,2 != RGB"]
    with_key.imagery = Imagery(bands=(4, 3, 2), radiometry=Radiometry("fixed"))
    assert weights_mismatches(meta, with_key) == []   # another radiometric rule is the run's choice
    meta.imagery, with_key.imagery = Imagery(), Imagery(bands=(1, 2, 3))
    assert weights_mismatches(meta, with_key) == []   # RGB read by colour or named 1,2,3: the same inputs


# --------------------------------------------------------------------------------------------------
# (c) freezing


@pytest.mark.parametrize("freeze, prefix", [("trunk", "encoder.trunk."), ("encoder", "encoder.")])
def test_frozen_weights_and_batchnorm_statistics_stay_bit_identical(data: Path, parent: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    freeze: str, prefix: str) -> None:
    modes: list[tuple[bool, bool]] = []
    real_forward = train_module._forward_loss

    def forward(net, batch, device, precision, config):  # noqa: ANN001, ANN202 - modes at every step
        frozen = net.encoder.trunk if freeze == "trunk" else net.encoder
        modes.append((any(m.training for m in frozen.modules()), net.decoder.training))
        return real_forward(net, batch, device, precision, config)

    given: list[set[int]] = []
    real_optimizer = train_module.build_optimizer

    def optimizer(parameters, config, device):  # noqa: ANN001, ANN202 - what the optimiser is given
        parameters = list(parameters)
        given.append({id(p) for p in parameters})
        return real_optimizer(parameters, config, device)

    monkeypatch.setattr(train_module, "_forward_loss", forward)
    monkeypatch.setattr(train_module, "build_optimizer", optimizer)
    # validation after epoch 0 sets the network to eval; epoch 1 must train with the frozen part still in eval
    result = train(_config(data, tmp_path, weights=str(parent), freeze=freeze, iters=2, val_split="val",
                           val_start_epoch=0))
    assert result.completed and result.iterations == 2 and len(result.history) == 2
    assert modes == [(False, True)] * 2
    theirs, ours = load_file(parent), load_file(result.last_checkpoint)
    frozen = [k for k in theirs if k.startswith(prefix)]
    trained = [k for k in theirs if not k.startswith(prefix)]
    assert frozen and all(torch.equal(ours[k], theirs[k]) for k in frozen)  # weights and BN statistics
    assert any(k.endswith("running_mean") for k in frozen)
    changed = [k for k in trained if not torch.equal(ours[k], theirs[k])]
    assert len(changed) > 0.9 * len(trained), [k for k in trained if k not in changed][:5]
    model = build_model("resnet18", "image-only")
    frozen_count = sum(1 for name, _ in model.named_parameters() if name.startswith(prefix))
    assert len(given[0]) == sum(1 for _ in model.parameters()) - frozen_count  # frozen: not in the optimiser


def test_freeze_is_checked_at_config_load() -> None:
    from mmchange_core.config import load_config
    from mmchange_core.training.config import TrainConfig

    with pytest.raises(ConfigError, match=r"^config key 'freeze' is 'decoder'; it must be one of none, trunk, "
                                          r"encoder$"):
        load_config(TrainConfig, overrides=["freeze=decoder"])
    with pytest.raises(ConfigError, match="config key 'weights' is ''; it must be a checkpoint to start from"):
        load_config(TrainConfig, overrides=["weights="])
    assert load_config(TrainConfig, overrides=["weights=hf://alice/cd@v1"]).weights == "hf://alice/cd@v1"


# --------------------------------------------------------------------------------------------------
# (d) provenance, and (5) resume


def test_the_parent_is_recorded_and_shown_on_the_card(data: Path, parent: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    hub = pytest.importorskip("huggingface_hub")
    from mmchange_core.models import read_checkpoint_meta
    from mmchange_core.models.card import model_card

    resolved: list[str] = []

    def resolve(spec):  # noqa: ANN001, ANN202 - the Hub cache stands in as the parent file
        resolved.append(str(spec))
        return parent

    monkeypatch.setattr(backends, "resolve_checkpoint", resolve)
    result = train(_config(data, tmp_path, weights="hf://alice/base-cd@v1", freeze="trunk"))
    assert resolved == ["hf://alice/base-cd@v1"]
    meta = read_checkpoint_meta(result.best_checkpoint)
    sha = _sha256(parent)
    assert meta.training["parent"] == {"name": "hf://alice/base-cd@v1", "sha256": sha}
    assert meta.training["freeze"] == "trunk" and meta.training["pretrained"] is None
    assert meta.summary()["training.parent"] == f'{{"name": "hf://alice/base-cd@v1", "sha256": "{sha}"}}'
    card = model_card(meta, "bob/tuned-cd")
    assert f"Fine-tuned from `hf://alice/base-cd@v1` (sha256 `{sha}`)" in card
    assert hub.ModelCard(card).data.base_model == "alice/base-cd"
    assert "Fine-tuned from" not in model_card(CheckpointMeta(model=meta.model), "bob/scratch")


def test_resume_keeps_its_own_weights_and_the_parent(data: Path, parent: Path, tmp_path: Path) -> None:
    copy = tmp_path / "base.safetensors"
    copy.write_bytes(parent.read_bytes())
    config = _config(data, tmp_path, weights=str(copy), freeze="trunk", batch_size=2, iters=2)  # 2 per epoch
    straight = train(dataclasses.replace(config, name="straight"))
    first = train(dataclasses.replace(config, name="stopped"), stop_after=1)
    assert not first.completed and first.iterations == 1
    copy.unlink()  # a resumed run never reads the weights again
    resumed = train(resume_config(first.run_dir), resume_dir=first.run_dir)
    assert resumed.completed and resumed.iterations == 2
    a, b = load_file(straight.last_checkpoint), load_file(resumed.last_checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit, so the weights were not applied again
    from mmchange_core.models import read_checkpoint_meta

    assert read_checkpoint_meta(resumed.last_checkpoint).training["parent"] == {"name": "base.safetensors",
                                                                                "sha256": _sha256(parent)}
    with pytest.raises(ConfigError, match="cannot change weights"):
        resume_config(first.run_dir, ["weights=other.safetensors"])


def test_runs_recorded_before_fine_tuning_still_resume() -> None:
    """state.pt of an older version has no weights/freeze keys: they count as their defaults."""
    from mmchange_core.config import to_dict
    from mmchange_core.training.config import TrainConfig

    recorded = {k: v for k, v in to_dict(TrainConfig(dataset="ds")).items() if k not in ("weights", "freeze")}
    assert train_module.config_changes(recorded, to_dict(TrainConfig(dataset="ds"))) == ""
    assert train_module.config_changes(recorded, to_dict(TrainConfig(dataset="ds", freeze="trunk"))) == \
        "freeze 'none' -> 'trunk'"


# --------------------------------------------------------------------------------------------------
# (e) the command line, and (f) an authors' .pth


def test_cli_missing_weights_is_one_line_without_traceback(data: Path, tmp_path: Path, cli) -> None:
    project = tmp_path / "runs"
    common = ["train", "--dataset", data, "--backbone", "resnet18", "--variant", "image-only", "--no-pretrained",
              "--crop-size", "64", "--batch-size", "4", "--iters", "1", "--device", "cpu", "--workers", "0",
              "--project", project]
    result = cli(*common, "--weights", tmp_path / "missing.safetensors")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "--weights" in lines[0] and "missing.safetensors" in lines[0] and "not found" in lines[0]
    result = cli(*common, "--freeze", "head")
    assert result.exit_code == 1 and "config key 'freeze' is 'head'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not project.exists()


def test_a_missing_or_damaged_weights_file_is_named(data: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"^--weights .*missing\.safetensors: checkpoint not found"):
        train(_config(data, tmp_path, weights=str(tmp_path / "missing.safetensors")))
    junk = tmp_path / "junk.pth"
    torch.save({"w": torch.zeros(2)}, junk)
    with pytest.raises(CheckpointError, match=r"^--weights .*junk\.pth: .*authors' MMChange"):
        train(_config(data, tmp_path, weights=str(junk)))
    assert not (tmp_path / "train").exists()


_REFERENCE_PREFIXES = [("encoder.trunk.", "Image_encoder.backbone.model."),
                       ("encoder.aggregation.", "Image_encoder.fe."), ("ifr.sge.", "IFR.enh."),
                       ("tde.attention.", "TDE.att."), ("tde.text_upsampler.", "TDE.Up_conv1."),
                       ("tde.downsampler.", "TDE.Up_conv2."),
                       ("tde.interaction.", "TDE.FIM."), ("tde.fuse.", "TDE.conv."), ("itff.", "ITFF."),
                       ("decoder.", "decoder.")]


def _authors_key(key: str) -> str:
    """The authors' name of an mmchange key (the inverse of convert.map_reference_key)."""
    candidates = []
    if key.startswith("encoder.proj.c"):
        candidates.append("Image_encoder.backbone.conv" + key[len("encoder.proj.c"):])
    if key.startswith("ifr.scales."):
        index, rest = key[len("ifr.scales."):].split(".", 1)
        candidates.append(f"IFR.ff{int(index) + 2}.{rest}")
    candidates += [ref + key[len(ours):].replace(".sge.", ".enh.") for ours, ref in _REFERENCE_PREFIXES
                   if key.startswith(ours)]
    return next(c for c in candidates if map_reference_key(c) == key)


def test_an_authors_pth_is_accepted(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(11)
    model = build_model("resnet18", "full")  # the authors' BaseNet is the full model, text width 512
    pth = tmp_path / "authors.pth.tar"
    torch.save({"epoch": 3, "state_dict": {_authors_key(k): v for k, v in model.state_dict().items()}}, pth)
    first: list[list[torch.Tensor]] = []
    real_step = train_module.optimizer_step

    def step(loss, optimizer, scaler):  # noqa: ANN001, ANN202
        if not first:
            first.append([p.detach().clone() for group in optimizer.param_groups for p in group["params"]])
        return real_step(loss, optimizer, scaler)

    monkeypatch.setattr(train_module, "optimizer_step", step)
    observer = _Messages()
    result = train(_config(data, tmp_path, weights=str(pth), variant="full"), observer=observer)
    assert result.completed and result.iterations == 1
    assert all(torch.equal(a, b) for a, b in zip(first[0], model.parameters()))
    from mmchange_core.models import read_checkpoint_meta

    meta = read_checkpoint_meta(result.best_checkpoint)
    assert meta.training["parent"] == {"name": "authors.pth.tar", "sha256": _sha256(pth)}
    assert meta.model == model.config and meta.text_description is not None  # the run's own captions
    assert any("do not record the captioner" in line for line in observer.lines)
    assert any(line.startswith("fine-tuning from authors.pth.tar (sha256 ") for line in observer.lines)


def test_torchrun_fine_tunes_with_a_frozen_trunk(data: Path, parent: Path, tmp_path: Path) -> None:
    """Two gloo processes: DDP wraps a model whose trunk needs no gradient; the trunk stays bit-identical."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    runs = tmp_path / "runs"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mmchange_cli", "train", "--dataset", str(data), "--backbone", "resnet18", "--variant",
               "image-only", "--iters", "2", "--batch-size", "4", "--crop-size", "64", "--device", "cpu",
               "--workers", "0", "--project", str(runs), "--weights", str(parent), "--freeze", "trunk", "--json",
               "--no-int8"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["completed"] and done.stderr.count("fine-tuning from parent.safetensors") == 1
    theirs, ours = load_file(parent), load_file(result["last_checkpoint"])
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs if k.startswith("encoder.trunk."))
    assert not torch.equal(ours["decoder.cls.weight"], theirs["decoder.cls.weight"])
