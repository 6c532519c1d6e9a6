"""Networks of N input bands: the first convolution from RGB weights, checkpoints, ONNX."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmchange_core.errors import InputError
from mmchange_core.io.imagery import Imagery, Radiometry
from mmchange_core.models import build_model, save_checkpoint
from mmchange_core.models.checkpoint import CheckpointMeta, Normalization, load_checkpoint, read_checkpoint_meta
from mmchange_core.models.config import ModelConfig
from mmchange_core.models.encoder import build_trunk
from mmchange_core.models.pretrained import adapt_first_conv, load_trunk_weights


def test_rgb_filters_go_to_the_rgb_bands_and_the_others_get_their_mean() -> None:
    weight = torch.randn(8, 3, 7, 7, generator=torch.Generator().manual_seed(0))
    adapted = adapt_first_conv(weight, 5, (3, 2, 1))   # bands: nir, blue, green, red, swir
    scale = 3 / 5
    assert adapted.shape == (8, 5, 7, 7)
    for source, position in ((0, 3), (1, 2), (2, 1)):
        assert torch.allclose(adapted[:, position], weight[:, source] * scale)
    mean = (weight[:, 0] + weight[:, 1] + weight[:, 2]) / 3
    for position in (0, 4):
        assert torch.allclose(adapted[:, position], mean * scale, atol=1e-6)
    assert adapt_first_conv(weight, 3, None) is weight


def test_activations_keep_their_scale_for_bands_of_equal_statistics() -> None:
    weight = torch.randn(16, 3, 7, 7, generator=torch.Generator().manual_seed(1))
    x3 = torch.ones(1, 3, 32, 32)
    x13 = torch.ones(1, 13, 32, 32)
    out3 = torch.nn.functional.conv2d(x3, weight)
    out13 = torch.nn.functional.conv2d(x13, adapt_first_conv(weight, 13, (3, 2, 1)))
    assert torch.allclose(out3, out13, rtol=1e-4, atol=1e-4)   # equal inputs on every band: equal activations


def test_pretrained_weights_load_into_a_trunk_of_four_bands(tmp_path: Path) -> None:
    rgb = build_trunk("resnet18")
    state = {k: v for k, v in rgb.state_dict().items()}
    path = tmp_path / "rn18.pth"
    torch.save(state, path)
    four = build_trunk("resnet18", in_channels=4)
    load_trunk_weights(four, "resnet18", path, rgb=(0, 1, 2))
    assert four.conv1.weight.shape[1] == 4
    assert torch.allclose(four.conv1.weight[:, 0], state["conv1.weight"][:, 0] * 0.75)
    assert torch.equal(four.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_a_model_of_13_bands_runs_and_its_checkpoint_keeps_bands_and_statistics(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", "image-only", in_channels=13).eval()
    x = torch.randn(1, 13, 64, 64)
    with torch.no_grad():
        out = model(x, x)
    logits = out[0] if isinstance(out, (tuple, list)) else out
    assert logits.shape[-2:] == (64, 64)
    imagery = Imagery(bands=tuple(range(1, 14)), rgb=(4, 3, 2), radiometry=Radiometry("fixed", 0, 10000))
    norm = Normalization(mean=tuple(0.1 + 0.01 * i for i in range(13)), std=tuple(0.2 for _ in range(13)))
    path = save_checkpoint(tmp_path / "s2.safetensors", model,
                           CheckpointMeta(model=model.config, imagery=imagery, normalization=norm))
    meta = read_checkpoint_meta(path)
    assert meta.imagery == imagery and meta.normalization == norm and meta.model.in_channels == 13
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded.encoder.trunk.conv1.weight, model.encoder.trunk.conv1.weight)


def test_bands_and_normalization_must_fit_the_model() -> None:
    config = ModelConfig(backbone="resnet18", variant="image-only", in_channels=4)
    with pytest.raises(InputError, match="takes 4 input bands but its imagery settings read 3"):
        CheckpointMeta(model=config, normalization=Normalization((0.5,) * 4, (0.2,) * 4))
    with pytest.raises(InputError, match="takes 4 input bands but its normalization has 3"):
        CheckpointMeta(model=config, imagery=Imagery(bands=(1, 2, 3, 4)))
    with pytest.raises(ValueError, match="in_channels must be"):
        ModelConfig(in_channels=0)


def test_the_default_model_is_unchanged_by_the_band_setting() -> None:
    torch.manual_seed(0)
    default = build_model("resnet18", "image-only")
    torch.manual_seed(0)
    explicit = build_model("resnet18", "image-only", in_channels=3)
    assert default.config == explicit.config == ModelConfig(backbone="resnet18", variant="image-only")
    for (name, a), (_, b) in zip(default.state_dict().items(), explicit.state_dict().items()):
        assert torch.equal(a, b), name
