"""Captioners: turn uint8 RGB images into one caption each (``vlm``, ``clip-tags``, ``basic``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from mmchange_core.text.config import CaptionerConfig
from mmchange_core.text.registry import CAPTIONERS, build


class Captioner(Protocol):
    """Anything that captions a batch of uint8 ``[H, W, 3]`` RGB images."""

    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        """One caption per image, in order."""
        ...


def build_captioner(config: CaptionerConfig, device: torch.device) -> Captioner:
    """Instantiate (and load the model of) the captioner named by ``config``."""
    return build(CAPTIONERS, config, device)
