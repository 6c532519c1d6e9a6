"""Captioners: turn uint8 RGB images into one caption each (``vlm``, ``clip-tags``, ``basic``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from mmchange_core.errors import MMChangeError
from mmchange_core.text.config import CaptionerConfig


class Captioner(Protocol):
    """Anything that captions a batch of uint8 ``[H, W, 3]`` RGB images."""

    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        """One caption per image, in order."""
        ...


def build_captioner(config: CaptionerConfig, device: torch.device) -> Captioner:
    """Instantiate (and load the model of) the captioner named by ``config``."""
    config.validate()
    if config.name == "basic":
        from mmchange_core.text.captioners.basic import BasicCaptioner

        return BasicCaptioner(config.resolved_model)
    if config.name == "clip-tags":
        from mmchange_core.text.captioners.clip_tags import ClipTagsCaptioner

        return ClipTagsCaptioner(config, device)
    if config.name == "vlm":
        from mmchange_core.text.captioners.vlm import VLMCaptioner

        return VLMCaptioner(config, device)
    raise MMChangeError(f"unknown captioner '{config.name}'; use vlm, clip-tags or basic")
