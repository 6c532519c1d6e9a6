"""The model configuration: everything needed to rebuild a network from a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

BACKBONES = ("resnet18", "resnet34", "resnet50")
#: Channels of every feature map after the encoder's projections (fixed by the architecture).
WIDTH = 64
#: Most input bands a network takes (Sentinel-2 has 13; hyperspectral stacks need another architecture).
MAX_IN_CHANNELS = 32
#: Most classes (no change included) a class-aware network predicts.
MAX_CLASSES = 32

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
    ``num_classes`` counts "no change" too: 2 is the paper's binary network (one sigmoid output per
    head); K > 2 gives K-class heads (softmax, cross-entropy), as a class file asks.
    """

    backbone: str = "resnet50"
    variant: str = "full"
    text_dim: int = 512
    in_channels: int = 3
    num_classes: int = 2

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
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or \
                not 2 <= self.num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be 2..{MAX_CLASSES} (no change included), got {self.num_classes}")

    @property
    def outputs(self) -> int:
        """Logit channels of each head: 1 for the binary network, else one per class."""
        return 1 if self.num_classes == 2 else self.num_classes

    @property
    def uses_text(self) -> bool:
        """Whether the network consumes text embeddings."""
        return VARIANTS[self.variant][0]
