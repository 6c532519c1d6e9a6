"""ImageNet trunk weights through torchvision's weights API (``IMAGENET1K_V1``).

Weights come from torch's hub cache (``$TORCH_HOME/hub/checkpoints``). When they are neither cached
nor downloadable, a one-line error names the expected file, the cache folder and the option that
skips them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, ResNet34_Weights, ResNet50_Weights

from mmchange_core.errors import MissingWeightsError

IMAGENET_WEIGHTS = {
    "resnet18": ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": ResNet50_Weights.IMAGENET1K_V1,
}


def imagenet_weights_path(backbone: str) -> Path:
    """Where torchvision caches the ImageNet weights of ``backbone``."""
    url = IMAGENET_WEIGHTS[backbone].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def load_imagenet_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """The torchvision ImageNet state dict for ``backbone``, from the cache or downloaded into it."""
    weights = IMAGENET_WEIGHTS[backbone]
    path = imagenet_weights_path(backbone)
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as exc:  # no network, proxy refusal, partial download...
        raise MissingWeightsError(
            f"ImageNet weights for {backbone} are not cached and could not be downloaded: put "
            f"{path.name} ({weights.url}) into {path.parent}, or skip them with --no-pretrained "
            f"(pretrained_backbone=False)") from exc


def load_trunk_weights(trunk: nn.Module, backbone: str, source: str | Path | bool = True) -> None:
    """Load ImageNet weights (or a local ``.pth`` file given as ``source``) into a trunk; fc is dropped."""
    if source is True:
        state = load_imagenet_state_dict(backbone)
    else:
        path = Path(source)
        if not path.is_file():
            raise MissingWeightsError(f"backbone weights file not found: {path}; pass an existing .pth "
                                      f"file or use --no-pretrained")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = trunk.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MissingWeightsError(
            f"backbone weights do not fit {backbone}: missing {missing[:3]}, unexpected {unexpected[:3]}; "
            f"use torchvision's {backbone} ImageNet checkpoint or --no-pretrained")
