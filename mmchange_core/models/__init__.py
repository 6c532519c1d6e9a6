"""MMChange networks: factory, checkpoints, reference conversion and complexity counts."""

from mmchange_core.models.checkpoint import (
    CheckpointMeta,
    Normalization,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    update_checkpoint_meta,
    validate_threshold,
    validate_tile_size,
)
from mmchange_core.models.complexity import Complexity, count_parameters, measure_complexity
from mmchange_core.models.config import BACKBONES, VARIANTS, ModelConfig
from mmchange_core.models.convert import (
    StateDictMismatchError,
    convert_reference_checkpoint,
    convert_reference_state_dict,
)
from mmchange_core.models.factory import build_model
from mmchange_core.models.mmchange import MMChange

__all__ = [
    "BACKBONES",
    "VARIANTS",
    "CheckpointMeta",
    "Complexity",
    "MMChange",
    "ModelConfig",
    "Normalization",
    "StateDictMismatchError",
    "build_model",
    "convert_reference_checkpoint",
    "convert_reference_state_dict",
    "count_parameters",
    "load_checkpoint",
    "measure_complexity",
    "read_checkpoint_meta",
    "save_checkpoint",
    "update_checkpoint_meta",
    "validate_threshold",
    "validate_tile_size",
]
