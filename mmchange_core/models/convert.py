"""Convert the authors' MMChange state dicts (``BaseNet``) into mmchange's module layout.

Key names follow ``reference_state_dict.tsv``. Keys the reference never uses (the duplicate
``backbone.*``, the trunk's ``fc``, the ``conv0`` projection and TDE's unused convs) are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mmchange_core.errors import CheckpointError, InputError
from mmchange_core.io.images import check_regular_file
from mmchange_core.io.outputs import CHECKPOINT_SUFFIXES, OutputPlan
from mmchange_core.models.config import ModelConfig
from mmchange_core.models.mmchange import MMChange

if TYPE_CHECKING:
    from mmchange_core.models.checkpoint import CheckpointMeta

#: Ordered (pattern, replacement) rules from reference keys to mmchange keys.
KEY_RULES: list[tuple[re.Pattern[str], str]] = [(re.compile(p), r) for p, r in [
    (r"^Image_encoder\.backbone\.model\.", "encoder.trunk."),
    (r"^Image_encoder\.backbone\.conv([1-4])\.", r"encoder.proj.c\1."),
    (r"^Image_encoder\.fe\.(conv_aggregation_s\d)\.enh\.", r"encoder.aggregation.\1.sge."),
    (r"^Image_encoder\.fe\.", "encoder.aggregation."),
    (r"^IFR\.enh\.", "ifr.sge."),
    (r"^TDE\.att\.", "tde.attention."),
    (r"^TDE\.Up_conv1\.", "tde.text_upsampler."),
    (r"^TDE\.Up_conv2\.", "tde.downsampler."),
    (r"^TDE\.FIM\.", "tde.interaction."),
    (r"^TDE\.conv\.", "tde.fuse."),
    (r"^ITFF\.", "itff."),
    (r"^decoder\.", "decoder."),
]]
_IFR_SCALE = re.compile(r"^IFR\.ff([2-5])\.")

#: Reference keys that the forward pass never touches.
UNUSED_KEYS = re.compile(
    r"^(backbone\.|Image_encoder\.backbone\.model\.fc\.|Image_encoder\.backbone\.conv0\.|"
    r"TDE\.Up_conv1\.conv[23]\.|TDE\.Up_conv2\.conv3\.)")


class StateDictMismatchError(CheckpointError):
    """A state dict that is not in the authors' format; lists what is missing and unexpected."""

    def __init__(self, missing: list[str], unexpected: list[str], mismatched: list[str]) -> None:
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if keys:
                more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
                parts.append(f"{len(keys)} {label} key(s): {', '.join(keys[:5])}{more}")
        super().__init__("state dict is not in the authors' MMChange format: " + "; ".join(parts))


def map_reference_key(key: str) -> str | None:
    """The mmchange key for a reference key, or None when the key is unknown."""
    match = _IFR_SCALE.match(key)
    if match:
        return f"ifr.scales.{int(match.group(1)) - 2}." + key[match.end():]
    for pattern, replacement in KEY_RULES:
        if pattern.match(key):
            return pattern.sub(replacement, key, count=1)
    return None


def infer_reference_config(state_dict: Mapping[str, torch.Tensor]) -> ModelConfig:
    """Backbone depth and text width of a reference state dict, from its key names and shapes."""
    prefix = "Image_encoder.backbone.model."
    if f"{prefix}layer1.0.conv3.weight" in state_dict:
        backbone = "resnet50"
    else:
        blocks = {int(k[len(prefix) + 7:].split(".")[0]) for k in state_dict
                  if k.startswith(f"{prefix}layer3.")}
        backbone = "resnet34" if len(blocks) == 6 else "resnet18"
    up = state_dict.get("TDE.Up_conv1.conv1.weight")
    text_dim = int(up.shape[1]) * 64 if up is not None and up.ndim == 4 else 512
    return ModelConfig(backbone=backbone, variant="full", text_dim=text_dim)


def _unwrap(obj: object) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError("the file holds no state dict (expected a mapping of names to tensors)")
    return {str(k).removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def convert_reference_state_dict(state_dict: Mapping[str, torch.Tensor],
                                 config: ModelConfig | None = None) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """Map an authors' state dict onto mmchange's layout.

    Returns the converted state dict and the inferred :class:`ModelConfig`. Raises
    :class:`StateDictMismatchError` listing missing, unexpected and wrongly shaped keys when the
    input is not in the authors' format.
    """
    state_dict = _unwrap(state_dict)
    config = config or infer_reference_config(state_dict)
    target = MMChange(config).state_dict()
    converted: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in state_dict.items():
        new_key = map_reference_key(key)
        if new_key in target:
            converted[new_key] = value
        elif not UNUSED_KEYS.match(key):
            unexpected.append(key)
    missing = [k for k in target if k not in converted]
    mismatched = [k for k, v in converted.items() if tuple(v.shape) != tuple(target[k].shape)]
    if missing or unexpected or mismatched:
        raise StateDictMismatchError(missing, unexpected, mismatched)
    return converted, config


def load_reference_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an authors' ``.pth``/``.pth.tar`` (or a safetensors file) without unpickling code."""
    path = Path(path)
    try:
        check_regular_file(path, "checkpoint")
    except InputError as exc:
        raise CheckpointError(str(exc)) from None
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is truncated or corrupt ({path.stat().st_size} bytes; {exc}); copy it "
                                  f"again") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"cannot read {path} as a PyTorch state dict ({reason}); the file is truncated or "
                              f"corrupt, or holds more than tensors: re-save it as a plain state dict") from exc
    return _unwrap(obj)


def load_reference_model(path: str | Path) -> tuple[MMChange, CheckpointMeta]:
    """The network (eval mode) and metadata of an authors' checkpoint file, converted in memory."""
    from mmchange_core.models.checkpoint import CheckpointMeta, check_finite_weights

    converted, config = convert_reference_state_dict(load_reference_file(path))
    check_finite_weights(converted, path)
    model = MMChange(config)
    model.load_state_dict(converted)
    meta = CheckpointMeta(model=config, training={"source": {"converted_from": str(path),
                                                             "format": "authors' MMChange BaseNet"}})
    return model.eval(), meta


def convert_reference_checkpoint(path: str | Path, out: str | Path) -> tuple[Path, ModelConfig]:
    """Convert an authors' checkpoint file into an mmchange checkpoint at ``out``."""
    from mmchange_core.models.checkpoint import save_checkpoint

    OutputPlan([Path(path)]).add(Path(out), "convert output", CHECKPOINT_SUFFIXES)
    model, meta = load_reference_model(path)
    return save_checkpoint(out, model, meta), meta.model
