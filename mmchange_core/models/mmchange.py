"""The MMChange network: Siamese encoder, IFR, TDE, ITFF and the supervised-attention decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmchange_core.config import SIZE_MULTIPLE
from mmchange_core.models.ablation import AdditiveFusion, DifferenceProjection, TextProjection
from mmchange_core.models.config import VARIANTS, WIDTH, ModelConfig
from mmchange_core.models.decoder import ChangeDecoder
from mmchange_core.models.encoder import SiameseEncoder
from mmchange_core.models.ifr import ImageFeatureRefinement
from mmchange_core.models.itff import ImageTextFusion
from mmchange_core.models.tde import TextDifferenceEnhancement

#: Output strides of the main logit map and the three side outputs.
OUTPUT_STRIDES = (4, 8, 16, 32)


class MMChange(nn.Module):
    """Bitemporal change detector guided by the two dates' text embeddings.

    ``forward(img_a, img_b, text_a, text_b)`` takes normalised images [B, C, H, W] (C = ``config.in_channels``,
    3 for RGB; H, W multiples of 32) and text embeddings [B, D]; it returns four logit maps [B, O, H, W] (O = ``config.outputs``: 1 for the binary
    network, K for K classes): the main prediction
    followed by the three deep-supervision side outputs. Text embeddings of batch 1 are shared by
    every pair of the batch (one TDE pass), as for the windows of one large scene.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        uses_text, has_ifr, has_tde, has_itff = VARIANTS[config.variant]
        width = WIDTH
        self.encoder = SiameseEncoder(config.backbone, width, in_channels=config.in_channels)
        self.ifr: nn.Module = ImageFeatureRefinement(width) if has_ifr else DifferenceProjection(width)
        self.tde: nn.Module | None = None
        self.itff: nn.Module | None = None
        if uses_text:
            self.tde = (TextDifferenceEnhancement(config.text_dim, width) if has_tde
                        else TextProjection(config.text_dim, width))
            self.itff = ImageTextFusion(width) if has_itff else AdditiveFusion(width)
        self.decoder = ChangeDecoder(width, config.outputs)

    @property
    def uses_text(self) -> bool:
        """Whether ``forward`` needs text embeddings."""
        return self.tde is not None

    def _check_inputs(self, img_a: torch.Tensor, img_b: torch.Tensor, text_a: torch.Tensor | None,
                      text_b: torch.Tensor | None) -> None:
        bands = self.config.in_channels
        if img_a.ndim != 4 or img_a.shape[1] != bands or img_a.shape != img_b.shape:
            raise ValueError(
                f"MMChange takes two image batches of the same shape [B, {bands}, H, W]; "
                f"got {tuple(img_a.shape)} and {tuple(img_b.shape)}")
        h, w = img_a.shape[-2:]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or h == 0 or w == 0:
            raise ValueError(
                f"MMChange takes images whose height and width are multiples of {SIZE_MULTIPLE} (for example 256x256); "
                f"got {h}x{w}. Pad or crop the input, or use sliding-window prediction.")
        if not self.uses_text:
            return
        if text_a is None or text_b is None:
            raise ValueError(f"variant '{self.config.variant}' needs text embeddings for both dates "
                             f"(use variant 'image-only' to run without text)")
        batch = img_a.shape[0]
        for name, text in (("text_a", text_a), ("text_b", text_b)):
            if text.ndim != 2 or text.shape[1] != self.config.text_dim or text.shape[0] not in (1, batch):
                raise ValueError(f"{name} must have shape [B, {self.config.text_dim}] (B = {batch}) or "
                                 f"[1, {self.config.text_dim}]; got {list(text.shape)}")
        if text_a.shape[0] != text_b.shape[0]:
            raise ValueError(f"text_a and text_b must have the same batch size; got {text_a.shape[0]} and "
                             f"{text_b.shape[0]}")

    def encode_images(self, img_a: torch.Tensor, img_b: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Encode both dates with the shared encoder.

        In training they go separately, as in the reference, so BatchNorm sees per-date batch
        statistics. In eval mode on a GPU both dates go through as one batch (same result, fewer
        launches); on a CPU two batches are about 2% faster than one of twice the size (caches).
        """
        if self.training or not img_a.is_cuda:
            return self.encoder(img_a), self.encoder(img_b)
        feats = self.encoder(torch.cat([img_a, img_b], dim=0))
        n = img_a.shape[0]
        return [f[:n] for f in feats], [f[n:] for f in feats]

    def text_maps(self, text_a: torch.Tensor, text_b: torch.Tensor,
                  sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """The text branch's maps for the four fused scales (TDE or its ablation stand-in).

        They depend on the text and the map sizes only, so windows of one scene can share them.
        """
        if self.tde is None:
            raise ValueError(f"variant '{self.config.variant}' has no text branch")
        if isinstance(self.tde, TextDifferenceEnhancement):
            return self.tde(text_a, text_b, tuple(sizes[0]))
        return self.tde(text_a, text_b, [tuple(s) for s in sizes])

    @staticmethod
    def fused_sizes(height: int, width: int) -> list[tuple[int, int]]:
        """Sizes of the four fused maps (strides 4, 8, 16, 32) for an input of ``height x width``."""
        return [(height // s, width // s) for s in OUTPUT_STRIDES]

    def forward(self, img_a: torch.Tensor, img_b: torch.Tensor, text_a: torch.Tensor | None = None,
                text_b: torch.Tensor | None = None, *, text_maps: list[torch.Tensor] | None = None,
                main_only: bool = False) -> tuple[torch.Tensor, ...]:
        """Four logit maps (main first), or only the main one with ``main_only``.

        ``text_maps`` (from :meth:`text_maps`) replaces the text branch's work, e.g. when many
        windows of one scene share the same captions.
        """
        self._check_inputs(img_a, img_b, text_a, text_b)
        feats_a, feats_b = self.encode_images(img_a, img_b)
        fused = self.ifr(feats_a, feats_b)
        if self.tde is not None and self.itff is not None:
            if text_maps is None:
                text_maps = self.text_maps(text_a.to(dtype=fused[0].dtype), text_b.to(dtype=fused[0].dtype),
                                           [tuple(f.shape[-2:]) for f in fused])
            fused = [self.itff(f, t) for f, t in zip(fused, text_maps)]
        logits = self.decoder(fused)
        size = img_a.shape[-2:]
        if main_only:
            logits = logits[:1]
        return tuple(F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in logits)
