"""``build_model``: the one entry point for constructing MMChange networks."""

from __future__ import annotations

from pathlib import Path

from mmchange_core.models.config import ModelConfig
from mmchange_core.models.mmchange import MMChange
from mmchange_core.models.pretrained import load_trunk_weights


def build_model(backbone: str = "resnet50", variant: str = "full", *, text_dim: int = 512,
                pretrained_backbone: bool | str | Path = False, in_channels: int = 3,
                rgb: tuple[int, int, int] | None = None, num_classes: int = 2) -> MMChange:
    """Build an MMChange network.

    Args:
        backbone: ``resnet18``, ``resnet34`` or ``resnet50`` (the paper's default).
        variant: ``full`` or a Table II ablation: ``image-only``, ``no-modules``, ``no-ifr``,
            ``no-tde``, ``no-itff``.
        text_dim: width of the text embeddings (512 for CLIP ViT-B/32; any multiple of 64).
        pretrained_backbone: ``True`` loads torchvision's ImageNet weights (IMAGENET1K_V1) into the
            trunk; a path loads a local torchvision-format ``.pth`` instead.
        in_channels: input bands (3: RGB; more for multispectral models).
        rgb: positions of the red, green and blue bands among the inputs, for the pretrained first
            convolution (:func:`~mmchange_core.models.pretrained.adapt_first_conv`); None: none are RGB.
        num_classes: classes with "no change" (2: the paper's binary heads; K > 2: K-class heads).
    """
    model = MMChange(ModelConfig(backbone=backbone, variant=variant, text_dim=text_dim, in_channels=in_channels,
                                 num_classes=num_classes))
    if pretrained_backbone:
        load_trunk_weights(model.encoder.trunk, backbone, pretrained_backbone, rgb)
    return model
