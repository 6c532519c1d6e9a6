"""Text encoders: turn captions into ``[N, dim]`` float32 features (``clip``, ``hashing``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from mmchange_core.text.config import TextEncoderConfig
from mmchange_core.text.registry import TEXT_ENCODERS, build


class TextEncoder(Protocol):
    """Anything that embeds captions as a float32 CPU tensor ``[N, dim]``."""

    dim: int

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        """Embeddings of ``captions``, in order."""
        ...


def build_text_encoder(config: TextEncoderConfig, device: torch.device) -> TextEncoder:
    """Instantiate (and load the weights of) the text encoder named by ``config``."""
    return build(TEXT_ENCODERS, config, device)
