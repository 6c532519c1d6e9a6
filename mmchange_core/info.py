"""``mmchange info`` as a library call: a network's size and cost per module, a model file's metadata, the machine.

Any model file goes through the backend seam (:func:`~mmchange_core.inference.backends.open_model`):
a checkpoint, ``hf://OWNER/NAME[@REV]``, an exported ``.onnx`` or an authors' ``.pth``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmchange_core.config import to_dict
from mmchange_core.environment import environment_report
from mmchange_core.inference.backends import ModelFile, open_model
from mmchange_core.models.complexity import Complexity, describe_model

#: The square input ``mmchange info`` measures when neither ``--size`` nor a checkpoint says otherwise.
DEFAULT_INFO_SIZE = 256


@dataclass
class ModelInfo:
    """What ``mmchange info`` shows: the measured network, the model file (if any) and the environment."""

    # duplicates (deliberate): field declarations, alike in shape only to other result dataclasses
    backbone: str
    variant: str
    size: int
    complexity: Complexity
    environment: dict[str, Any]
    model: ModelFile | None = None

    def to_dict(self) -> dict[str, Any]:
        """The result as ``mmchange info --json`` prints it."""
        data = to_dict(self.complexity)
        data["params_m"] = round(self.complexity.params_m, 4)
        if self.model is not None:
            data["checkpoint"] = {"path": self.model.spec, "backend": self.model.backend.name,
                                  **self.model.meta.to_json_dict()}
            data["checkpoint_file"] = str(self.model.path)  # the local file (for hf://..., in the Hugging Face cache)
        data["environment"] = self.environment
        return data


def model_info(checkpoint: str | Path | None = None, *, backbone: str = "resnet50", variant: str = "full",
               size: int | None = None, text_dim: int = 512) -> ModelInfo:
    """Measure ``backbone``/``variant`` at ``size`` (with a ``checkpoint``: its network and tile size instead)."""
    model = open_model(checkpoint) if checkpoint is not None else None
    if model is not None:
        backbone, variant, text_dim = model.meta.model.backbone, model.meta.model.variant, model.meta.model.text_dim
    if size is None:
        size = model.meta.tile_size if model is not None else DEFAULT_INFO_SIZE
    return ModelInfo(backbone, variant, size, describe_model(backbone, variant, size, text_dim),
                     environment_report(), model)
