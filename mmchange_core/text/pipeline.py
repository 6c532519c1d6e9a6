"""``TextPipeline``: caption images and embed captions with one captioner and one text encoder.

Models are loaded lazily, on first use, so building a pipeline (for example from a checkpoint's
description) is free until text is actually needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mmchange_core.device import resolve_device
from mmchange_core.errors import MMChangeError
from mmchange_core.text.captioners import Captioner, build_captioner
from mmchange_core.text.config import (
    CaptionerConfig,
    TextEncoderConfig,
    captioner_from_settings,
    encoder_from_settings,
)
from mmchange_core.text.encoders import TextEncoder, build_text_encoder


def _check_image(image: np.ndarray, index: int) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise MMChangeError(f"image {index} must be a uint8 RGB array [H, W, 3], got shape {shape} and dtype {dtype}")
    return image


class TextPipeline:
    """A captioner and a text encoder, as used for training, prediction and robustness."""

    def __init__(self, captioner: CaptionerConfig | None = None, encoder: TextEncoderConfig | None = None,
                 device: str | torch.device = "auto") -> None:
        self.captioner_config = captioner if captioner is not None else CaptionerConfig()
        self.encoder_config = encoder if encoder is not None else TextEncoderConfig()
        self.captioner_config.validate()
        self.encoder_config.validate()
        self.device = resolve_device(device)
        self._captioner: Captioner | None = None
        self._encoder: TextEncoder | None = None

    @property
    def captioner(self) -> Captioner:
        """The captioner, loaded on first use."""
        if self._captioner is None:
            self._captioner = build_captioner(self.captioner_config, self.device)
        return self._captioner

    @property
    def encoder(self) -> TextEncoder:
        """The text encoder, loaded on first use."""
        if self._encoder is None:
            self._encoder = build_text_encoder(self.encoder_config, self.device)
        return self._encoder

    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        """One caption per uint8 ``[H, W, 3]`` RGB image."""
        images = [_check_image(image, i) for i, image in enumerate(images)]
        if not images:
            return []
        captions = self.captioner.caption(images)
        if len(captions) != len(images):  # pragma: no cover - guards third-party captioners
            raise MMChangeError(f"captioner returned {len(captions)} captions for {len(images)} images")
        return captions

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        """``[N, dim]`` float32 CPU embeddings of ``captions``."""
        dim = self.encoder_config.dim
        if not captions:
            return torch.zeros(0, dim)
        features = self.encoder.encode(list(captions)).detach().to("cpu", torch.float32)
        if features.shape != (len(captions), dim):
            raise MMChangeError(f"text encoder {self.encoder_config.name} gives {tuple(features.shape[1:])} features "
                                f"per caption but dim is {dim}; set --set encoder.dim={features.shape[-1]}")
        return features

    def embed_images(self, images: Sequence[np.ndarray]) -> tuple[list[str], torch.Tensor]:
        """Captions and their ``[N, dim]`` embeddings."""
        captions = self.caption(images)
        return captions, self.encode(captions)

    def describe(self) -> dict[str, dict[str, Any]]:
        """``{"captioner": ..., "encoder": ...}`` settings: enough to rebuild this pipeline elsewhere."""
        return {"captioner": self.captioner_config.settings(), "encoder": self.encoder_config.settings()}

    @classmethod
    def from_description(cls, description: dict[str, Any], device: str | torch.device = "auto",
                         batch_size: int | None = None, trust_remote_code: bool = False) -> TextPipeline:
        """Rebuild the pipeline that :meth:`describe` (or a checkpoint's ``meta["text"]``) describes.

        ``batch_size`` and ``trust_remote_code`` are not part of a description (they do not change
        the captions) and can be given here.
        """
        if not isinstance(description, dict) or "captioner" not in description or "encoder" not in description:
            raise MMChangeError("this text description lacks 'captioner' or 'encoder'; the checkpoint was trained "
                                "without text or its metadata is damaged")
        captioner = captioner_from_settings(description["captioner"])
        if batch_size is not None:
            captioner.batch_size = batch_size
        captioner.trust_remote_code = trust_remote_code
        return cls(captioner, encoder_from_settings(description["encoder"]), device=device)
