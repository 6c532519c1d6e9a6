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


def adapt_first_conv(weight: torch.Tensor, in_channels: int, rgb: tuple[int, int, int] | None) -> torch.Tensor:
    """An RGB first-convolution ``weight`` ``[O, 3, k, k]`` for ``in_channels`` input bands.

    The bands at positions ``rgb`` (red, green, blue) get the RGB filters; every other band gets their
    mean; the whole kernel is then scaled by 3 / ``in_channels`` so that, for bands of similar scale,
    the first activations keep the scale the pretrained trunk expects (the rule of timm's and torchgeo's
    ``adapt_input_conv``, with the RGB filters kept where the RGB bands are instead of repeated cyclically).
    """
    if in_channels == 3 and rgb in (None, (0, 1, 2)):
        return weight
    adapted = weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
    if rgb is not None:
        for source, position in enumerate(rgb):
            adapted[:, position] = weight[:, source]
    return adapted * (3.0 / in_channels)


def load_trunk_weights(trunk: nn.Module, backbone: str, source: str | Path | bool = True,
                       rgb: tuple[int, int, int] | None = None) -> None:
    """Load ImageNet weights (or a local ``.pth`` file given as ``source``) into a trunk; fc is dropped.

    A trunk of other than 3 input bands gets the RGB first convolution adapted by :func:`adapt_first_conv`
    (``rgb``: the positions of the red, green and blue bands among its inputs, None: none of them are RGB).
    """
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
    in_channels = trunk.conv1.in_channels
    if "conv1.weight" in state and state["conv1.weight"].shape[1] == 3 and (in_channels != 3 or rgb is not None):
        state["conv1.weight"] = adapt_first_conv(state["conv1.weight"], in_channels, rgb)
    missing, unexpected = trunk.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MissingWeightsError(
            f"backbone weights do not fit {backbone}: missing {missing[:3]}, unexpected {unexpected[:3]}; "
            f"use torchvision's {backbone} ImageNet checkpoint or --no-pretrained")
