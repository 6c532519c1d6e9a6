"""The model configuration: everything needed to rebuild a network from a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

BACKBONES = ("resnet18", "resnet34", "resnet50")
#: Channels of every feature map after the encoder's projections (fixed by the architecture).
WIDTH = 64
#: Most input bands a network takes (Sentinel-2 has 13; hyperspectral stacks need another architecture).
MAX_IN_CHANNELS = 32

#: Variant name -> (uses text, has IFR, has TDE, has ITFF). Paper Table II, top to bottom.
VARIANTS: dict[str, tuple[bool, bool, bool, bool]] = {
    "image-only": (False, False, False, False),
    "no-modules": (True, False, False, False),
    "no-ifr": (True, False, True, True),
    "no-tde": (True, True, False, True),
    "no-itff": (True, True, True, False),
    "full": (True, True, True, True),
}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an MMChange network.

    ``text_dim`` is the text-embedding width (512 for CLIP ViT-B/32); any multiple of 64 works.
    ``in_channels`` is the number of input bands (3: RGB, the paper's network; more for multispectral).
    """

    backbone: str = "resnet50"
    variant: str = "full"
    text_dim: int = 512
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone '{self.backbone}'; choose one of {', '.join(BACKBONES)}")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant '{self.variant}'; choose one of {', '.join(VARIANTS)}")
        if self.text_dim <= 0 or self.text_dim % 64:
            raise ValueError(f"text_dim must be a positive multiple of 64, got {self.text_dim}")
        if isinstance(self.in_channels, bool) or not isinstance(self.in_channels, int) or \
                not 1 <= self.in_channels <= MAX_IN_CHANNELS:
            raise ValueError(f"in_channels must be 1..{MAX_IN_CHANNELS} input bands, got {self.in_channels}")

    @property
    def uses_text(self) -> bool:
        """Whether the network consumes text embeddings."""
        return VARIANTS[self.variant][0]
