"""The configuration of ``mmchange train``: its dataclasses (defaults are the paper's protocol) and checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmchange_core.config import (
    DEVICE,
    PRECISION,
    SEED,
    SIZE,
    ConfigError,
    Rule,
    between,
    choice,
    non_negative,
    positive,
    setting,
    validate,
)
from mmchange_core.data.decoded_cache import CacheSettings
from mmchange_core.io.classes import load_class_file
from mmchange_core.io.imagery import Imagery
from mmchange_core.models.config import BACKBONES, VARIANTS
from mmchange_core.runs import RUN_NAME

#: What ``freeze`` may keep fixed while fine-tuning: nothing, the ResNet trunk, or the whole image encoder.
FREEZE_PARTS = ("none", "trunk", "encoder")
#: ``weights``: any checkpoint spec a model is read from (not empty text).
WEIGHTS = Rule(lambda v: bool(str(v).strip()),
               "a checkpoint to start from: a .safetensors file, an authors' .pth/.pth.tar or hf://OWNER/NAME[@REV]")


@dataclass
class AugmentConfig:
    """Training augmentation (set a probability to 0 to switch a step off)."""

    crop_border: int = setting(8, non_negative())
    crop_p: float = setting(0.5, between(0, 1))
    flip_p: float = setting(0.5, between(0, 1))
    swap_p: float = setting(0.5, between(0, 1))


@dataclass
class TrainConfig:
    """Everything ``mmchange train`` does; the defaults are the paper's protocol."""

    dataset: str = ""  # levir | whu | sysu | a dataset folder | a .csv/.json pair list
    change_value: int | None = setting(None, non_negative())  # label value of change (None: see read_mask)
    # a class file (YAML: value, name and colour of each class; 0 = no change): K-class heads trained with
    # cross-entropy; null: the paper's binary change (or the classes of the weights fine-tuned from)
    classes: str | None = None
    backbone: str = setting("resnet50", choice(*BACKBONES))
    variant: str = setting("full", choice(*VARIANTS))
    pretrained: bool = True  # ImageNet trunk weights (torchvision IMAGENET1K_V1); ignored with weights
    # the file bands read (imagery.bands, --bands), the RGB ones among them and the radiometric rule; stored
    # in the checkpoint and reused by every command (see mmchange_core/io/imagery.py)
    imagery: Imagery = field(default_factory=Imagery)
    # input normalisation: auto = ImageNet's RGB statistics for 3 bands, the training split's own per-band
    # statistics otherwise; imagenet (3 bands only) or dataset force one of them
    normalization: str = setting("auto", choice("auto", "imagenet", "dataset"))
    # fine-tuning: start from the weights of this checkpoint (file, hf://OWNER/NAME[@REV], authors' .pth)
    weights: str | None = setting(None, WEIGHTS)
    freeze: str = setting("none", choice(*FREEZE_PARTS))  # keep the trunk or the whole image encoder fixed
    iters: int = setting(40000, positive())  # rounded up to whole epochs
    batch_size: int = setting(32, positive())  # in total, over all processes
    crop_size: int = setting(256, SIZE)  # larger images are cut into non-overlapping tiles of this size
    lr: float = setting(5e-4, positive())
    betas: tuple[float, float] = setting((0.9, 0.99), between(0, 1))
    eps: float = setting(1e-8, positive())
    weight_decay: float = setting(1e-4, non_negative())
    warmup_iters: int = setting(200, non_negative())
    poly_power: float = setting(0.9, non_negative())
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train_split: str = "train"
    val_split: str | None = "val"  # null: no validation, "best" is the last epoch
    val_start_epoch: int = setting(1, non_negative())  # the reference skips validation after epoch 0
    log_every: int = setting(50, positive())  # iterations between the loss/lr rows of metrics.csv and TensorBoard
    precision: str = setting("fp32", PRECISION)  # auto: bf16 on GPUs; fp16 with a gradient scaler
    compile: bool = False  # torch.compile the training network (GPU)
    channels_last: bool = True  # memory format on GPUs
    workers: int = setting(4, non_negative(), renamed_from=["num_workers"])
    # decode each training pair once into an uncompressed memory-mapped copy (null: when images are cut into
    # several crops); cache_dir null: $MMCHANGE_CACHE/decoded; cache_limit_gb null: 20
    decoded_cache: bool | None = None
    cache_dir: str | None = None
    cache_limit_gb: float | None = setting(None, positive())
    device: str = setting("auto", DEVICE)
    seed: int = setting(2333, SEED)
    captions: str | None = setting(None, renamed_from=["caption_store"])  # default: the dataset folder's store
    accept_stale_captions: bool = False  # use captions of images that changed since they were captioned
    # at the end of a completed run: the best checkpoint's int8 export (best.int8.onnx), calibrated on the training
    # split, with its accuracy certificate measured on the validation split (needs the onnx extra)
    int8: bool = True
    name: str | None = setting(None, RUN_NAME)
    project: str = "runs"


def cache_settings(config: TrainConfig) -> CacheSettings:
    """The decoded-cache settings of ``config`` (see :mod:`mmchange_core.data.decoded_cache`)."""
    return CacheSettings(config.decoded_cache, config.cache_dir, config.cache_limit_gb)


def validate_config(config: TrainConfig) -> None:
    """The declared ranges (as at load, for configs built in Python) and that a dataset is given."""
    validate(config)
    if not config.dataset:
        raise ConfigError("no dataset given; pass --dataset levir|whu|sysu|PATH")
    if config.normalization == "imagenet" and config.imagery.channels != 3:
        raise ConfigError(f"normalization 'imagenet' has RGB statistics, but imagery.bands reads "
                          f"{config.imagery.channels} bands; use normalization auto or dataset")
    if config.classes is not None:
        if config.change_value is not None:
            raise ConfigError("--classes reads the class values of each label; leave out --change-value")
        load_class_file(config.classes)  # a bad class file stops here, before any data is read
