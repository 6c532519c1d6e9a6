"""The configuration of ``mmchange train``: its dataclasses (defaults are the paper's protocol) and checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmchange_core.config import ConfigError
from mmchange_core.models.config import ModelConfig


@dataclass
class AugmentConfig:
    """Training augmentation (set a probability to 0 to switch a step off)."""

    crop_border: int = 8
    crop_p: float = 0.5
    flip_p: float = 0.5
    swap_p: float = 0.5


@dataclass
class TrainConfig:
    """Everything ``mmchange train`` does; the defaults are the paper's protocol."""

    dataset: str = ""  # levir | whu | sysu | a dataset folder
    backbone: str = "resnet50"
    variant: str = "full"
    pretrained: bool = True  # ImageNet trunk weights (torchvision IMAGENET1K_V1)
    iters: int = 40000  # rounded up to whole epochs
    batch_size: int = 32  # in total, over all processes
    crop_size: int = 256  # larger images are cut into non-overlapping tiles of this size
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    weight_decay: float = 1e-4
    warmup_iters: int = 200
    poly_power: float = 0.9
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train_split: str = "train"
    val_split: str | None = "val"  # null: no validation, "best" is the last epoch
    val_start_epoch: int = 1  # the reference skips validation after epoch 0
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler)
    channels_last: bool = True  # memory format on GPUs
    num_workers: int = 4
    device: str = "auto"
    seed: int = 2333
    caption_store: str | None = None  # default: the store inside the dataset folder
    name: str | None = None
    project: str = "runs"


def validate_config(config: TrainConfig) -> None:
    """Fail early, with the key's name, on values that cannot work."""
    try:
        ModelConfig(backbone=config.backbone, variant=config.variant)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if not config.dataset:
        raise ConfigError("no dataset given; pass --dataset levir|whu|sysu|PATH")
    for key in ("iters", "batch_size", "crop_size"):
        if getattr(config, key) <= 0:
            raise ConfigError(f"config key '{key}' must be positive, got {getattr(config, key)}")
    if config.crop_size % 32:
        raise ConfigError(f"config key 'crop_size' must be a multiple of 32, got {config.crop_size}")
    if config.lr <= 0:
        raise ConfigError(f"config key 'lr' must be positive, got {config.lr}")
    if config.num_workers < 0:
        raise ConfigError(f"config key 'num_workers' must be 0 or more, got {config.num_workers}")
    if config.precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"config key 'precision': '{config.precision}' is not fp32, bf16 or fp16")
