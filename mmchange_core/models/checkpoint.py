"""mmchange checkpoints: safetensors weights plus typed metadata (:class:`CheckpointMeta`).

A checkpoint alone rebuilds its model and says how to use it: the model config, the training crop
(the default window), the input normalisation, the decision threshold and the text pipeline travel
in the safetensors header. This module is the one place that writes and reads that header; loading
never unpickles anything and writes are atomic.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from mmchange_core.config import SIZE, THRESHOLD, ConfigError, check_value, from_dict, to_dict
from mmchange_core.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from mmchange_core.environment import __version__
from mmchange_core.errors import CheckpointError, InputError, MMChangeError
from mmchange_core.io.atomic import atomic_write_bytes
from mmchange_core.io.classes import ClassScheme
from mmchange_core.io.imagery import Imagery
from mmchange_core.io.images import check_regular_file
from mmchange_core.io.jsonio import strict_json
from mmchange_core.models.config import ModelConfig
from mmchange_core.models.hub import is_hub_spec, parse_hub_spec, resolve_checkpoint
from mmchange_core.models.mmchange import MMChange

FORMAT = "mmchange-checkpoint"
#: Version 2: one ``meta`` JSON holding a :class:`CheckpointMeta`. Version 1 (read only): a
#: ``model_config`` JSON plus a free-form ``meta`` JSON.
FORMAT_VERSION = "2"
READABLE_VERSIONS = ("1", "2")
#: Decision threshold and tile side of checkpoints that do not record them (e.g. converted ones).
DEFAULT_THRESHOLD = 0.5
DEFAULT_TILE_SIZE = 256
#: Model-config keys that older versions stored with a fixed value; dropped when ModelConfig lacks them.
_RETIRED_MODEL_KEYS = {"width": 64}


def validate_threshold(value: float) -> float:
    """``value`` if it is a usable decision threshold (the one rule, :data:`~mmchange_core.config.THRESHOLD`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"config key 'threshold' is {value!r}; it must be {THRESHOLD.allowed}")
    return float(check_value("threshold", value, THRESHOLD))


def validate_tile_size(value: int) -> int:
    """``value`` if it is a usable window side (the one size rule, :data:`~mmchange_core.config.SIZE`)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"config key 'tile_size' is {value!r}; it must be {SIZE.allowed}")
    return check_value("tile_size", value, SIZE)


@dataclass(frozen=True)
class Normalization:
    """Per-band mean and std applied to [0, 1] pixels before the network (ImageNet's RGB ones by default;
    a multispectral model's are computed from its training split)."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not self.mean or len(self.mean) != len(self.std):
            raise InputError(f"normalization needs one mean and one std per band, got {list(self.mean)} and "
                             f"{list(self.std)}")
        if any(s <= 0 for s in self.std):
            raise InputError(f"normalization stds must be positive, got {list(self.std)}")


def _check_text_description(text: dict[str, Any], model: ModelConfig) -> None:
    for part in ("captioner", "encoder"):
        settings = text.get(part)
        if not isinstance(settings, dict) or not isinstance(settings.get("name"), str):
            raise InputError(f"text description needs '{part}' settings with a 'name', got {settings!r}")
    dim = text["encoder"].get("dim")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise InputError(f"text encoder dim must be a positive integer, got {dim!r}")
    if model.uses_text and dim != model.text_dim:
        raise InputError(f"text encoder dim {dim} differs from the model's text_dim {model.text_dim}")


@dataclass(frozen=True)
class CheckpointMeta:
    """Everything a checkpoint says about its network and how to use it; values are checked on creation.

    ``tile_size``: the training crop, the default window for prediction and evaluation.
    ``text_description``: the ``{"captioner": ..., "encoder": ...}`` settings that
    ``TextPipeline.from_description`` takes (None: trained without text, or converted).
    ``imagery``: the bands read from each file and the radiometric rule (reused by every command).
    ``classes``: the class file's classes (value, name, colour) of a class-aware network; None for the
    paper's binary network trained without a class file.
    ``mmchange_version``: the version that wrote the file (:func:`save_checkpoint` stamps it).
    ``training``: free-form provenance (dataset, iterations, epoch, caption store, source file...).
    """

    model: ModelConfig
    tile_size: int = DEFAULT_TILE_SIZE
    normalization: Normalization = field(default_factory=Normalization)
    threshold: float = DEFAULT_THRESHOLD
    threshold_tuning: dict[str, Any] | None = None
    text_description: dict[str, Any] | None = None
    imagery: Imagery = field(default_factory=Imagery)
    classes: ClassScheme | None = None
    mmchange_version: str = __version__
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_tile_size(self.tile_size)
        validate_threshold(self.threshold)
        bands = self.model.in_channels
        if self.imagery.channels != bands:
            raise InputError(f"the model takes {bands} input bands but its imagery settings read "
                             f"{self.imagery.channels} ({self.imagery.describe()})")
        if len(self.normalization.mean) != bands:
            raise InputError(f"the model takes {bands} input bands but its normalization has "
                             f"{len(self.normalization.mean)} means")
        if self.text_description is not None:
            _check_text_description(self.text_description, self.model)
        count = 2 if self.classes is None else len(self.classes)
        if count != self.model.num_classes:
            raise InputError(f"the model predicts {self.model.num_classes} classes but its class list has {count}")

    @property
    def class_scheme(self) -> ClassScheme:
        """The classes, the binary pair (no change, change) when trained without a class file."""
        return self.classes if self.classes is not None else ClassScheme.binary()

    def resolve_threshold(self, override: float | None = None) -> float:
        """``override`` (checked) when given, else the checkpoint's threshold (tuned by ``mmchange eval``)."""
        return self.threshold if override is None else validate_threshold(override)

    def resolve_tile_size(self, override: int | None = None) -> int:
        """``override`` (checked) when given, else the crop the checkpoint was trained on."""
        return self.tile_size if override is None else validate_tile_size(override)

    @property
    def captioner_id(self) -> str | None:
        """``name:model`` of the captioner the text branch was trained with (None without text)."""
        return None if self.text_description is None else _readable_id(self.text_description["captioner"])

    @property
    def encoder_id(self) -> str | None:
        """``name:model`` (or ``name``) of the text encoder (None without text)."""
        return None if self.text_description is None else _readable_id(self.text_description["encoder"])

    @property
    def encoder_dim(self) -> int | None:
        """Width of the text embeddings (None without text)."""
        return None if self.text_description is None else int(self.text_description["encoder"]["dim"])

    def summary(self) -> dict[str, str]:
        """One readable line per item, for ``mmchange info --checkpoint``."""
        tuning = self.threshold_tuning or {}
        tuned = f" (tuned on split '{tuning['split']}')" if "split" in tuning else ""
        return {
            "model": f"{self.model.backbone}, variant {self.model.variant}, text_dim {self.model.text_dim}, "
                     f"{self.model.in_channels} input bands",
            "tile size (training crop)": str(self.tile_size),
            "threshold": f"{self.threshold:g}{tuned}",
            "normalization": f"mean {list(self.normalization.mean)}, std {list(self.normalization.std)}",
            "imagery": self.imagery.describe(),
            "classes": ", ".join(f"{c.value} {c.name}" for c in self.class_scheme.classes),
            "captioner": self.captioner_id or "none",
            "text encoder": f"{self.encoder_id} (dim {self.encoder_dim})" if self.encoder_id else "none",
            "written by": f"mmchange {self.mmchange_version}",
            **{f"training.{key}": strict_json(value, default=str) for key, value in self.training.items()},
        }

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON-safe form stored in the safetensors header (and shown by ``mmchange info``)."""
        return to_dict(self)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> CheckpointMeta:
        """Parse :meth:`to_json_dict` output, checking every key, type and range."""
        if not isinstance(data.get("model"), dict):
            raise CheckpointError("the metadata has no model config")
        model = {k: v for k, v in data["model"].items()
                 if not (k in _RETIRED_MODEL_KEYS and k not in ModelConfig.__dataclass_fields__
                         and v == _RETIRED_MODEL_KEYS[k])}
        try:
            return from_dict(cls, {**data, "model": model})
        except (ValueError, TypeError) as exc:  # ModelConfig's own checks
            raise InputError(str(exc)) from exc


def _readable_id(settings: dict[str, Any]) -> str:
    model = settings.get("model")
    return f"{settings['name']}:{model}" if model else str(settings["name"])


def _json_object(text: str, key: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise InputError(f"'{key}' must be a JSON object, got {value!r}")
    return value


def _from_version_1(header: dict[str, str]) -> dict[str, Any]:
    """Map a version-1 header (``model_config`` + free-form ``meta``) onto :class:`CheckpointMeta` keys."""
    if "model_config" not in header:
        raise CheckpointError("the metadata has no model config")
    old = _json_object(header.get("meta", "{}"), "meta")
    data: dict[str, Any] = {"model": json.loads(header["model_config"]),
                            "mmchange_version": old.pop("mmchange_version", "unknown")}
    for old_key, new_key in (("threshold", "threshold"), ("threshold_tuning", "threshold_tuning"),
                             ("text", "text_description")):
        if old_key in old:
            data[new_key] = old.pop(old_key)
    inputs = old.pop("input", None) or {}
    if "crop_size" in inputs:
        data["tile_size"] = inputs["crop_size"]
    if inputs.get("normalization", "imagenet") != "imagenet":
        raise InputError(f"unknown normalization {inputs['normalization']!r} (version 1 knew only 'imagenet')")
    training = dict(old.pop("train", None) or {})
    training.update((key, value) for key, value in old.items() if value is not None)  # caption_store, source...
    data["training"] = training
    return data


def check_finite_weights(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Raise a :class:`CheckpointError` naming ``path`` and the first tensor holding NaN or Inf."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: weight tensor '{name}' holds NaN or infinite values, so its predictions "
                                  f"cannot be trusted (training diverged or the file is damaged); use another "
                                  f"checkpoint, e.g. an earlier one of the run")


def _read(path: Path, weights: bool) -> tuple[CheckpointMeta, dict[str, torch.Tensor]]:
    """The checkpoint's metadata and (when ``weights``) its tensors, or a one-line CheckpointError."""
    try:
        check_regular_file(path, "checkpoint")
    except InputError as exc:
        raise CheckpointError(str(exc)) from None
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) == 9 and head[8:9] != b"{":  # a safetensors file starts with a length and a JSON header
        raise CheckpointError(f"{path} is not a safetensors checkpoint; convert an authors' .pth/.pth.tar "
                              f"checkpoint with 'mmchange convert {path} -o model.safetensors'")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            state = {k: handle.get_tensor(k) for k in handle.keys()} if weights else {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupt ({path.stat().st_size} bytes; {exc}): copy it "
                              f"again or use the run's other checkpoint (best/last.safetensors)") from exc
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file from another tool (no 'format: {FORMAT}' metadata); "
                              f"use a checkpoint written by 'mmchange train' or 'mmchange convert'")
    version = header.get("format_version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}, but this mmchange reads "
                              f"{' and '.join(READABLE_VERSIONS)}; upgrade mmchange to read it")
    try:
        if version == "1":
            data = _from_version_1(header)
        elif "meta" not in header:
            raise CheckpointError("the header has no 'meta' entry")
        else:
            data = _json_object(header["meta"], "meta")
        meta = CheckpointMeta.from_json_dict(data)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON ({exc}); the file is damaged, "
                              f"use a checkpoint written by 'mmchange train' or 'mmchange convert'") from exc
    except MMChangeError as exc:
        raise CheckpointError(f"{path}: invalid checkpoint metadata: {exc}; the file is damaged or was edited, "
                              f"use a checkpoint written by 'mmchange train' or 'mmchange convert'") from exc
    check_finite_weights(state, path)
    return meta, state


def read_checkpoint_meta(path: str | Path) -> CheckpointMeta:
    """The checkpoint's metadata, without reading its weights (``path``: a file or ``hf://OWNER/NAME[@REV]``)."""
    return read_checkpoint_file_meta(resolve_checkpoint(path))


def read_checkpoint_file_meta(path: Path) -> CheckpointMeta:
    """The metadata of the local checkpoint file ``path`` (a spec already resolved), without its weights."""
    return _read(Path(path), weights=False)[0]


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[MMChange, CheckpointMeta]:
    """Rebuild the model stored at ``path`` (a file or ``hf://OWNER/NAME[@REV]``, in eval mode) with its metadata."""
    return load_checkpoint_file(resolve_checkpoint(path), device)


def load_checkpoint_file(path: Path, device: str | torch.device = "cpu") -> tuple[MMChange, CheckpointMeta]:
    """The model and metadata of the local checkpoint file ``path`` (a spec already resolved)."""
    path = Path(path)
    meta, state = _read(path, weights=True)
    model = MMChange(meta.model)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the stored config "
                              f"(missing {len(missing)} e.g. {missing[:2]}, unexpected {len(unexpected)} "
                              f"e.g. {unexpected[:2]})")
    return model.to(device).eval(), meta


def _write(path: str | Path, state: dict[str, torch.Tensor], meta: CheckpointMeta) -> Path:
    meta = dataclasses.replace(meta, mmchange_version=__version__)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "meta": strict_json(meta.to_json_dict())}
    return atomic_write_bytes(path, save(state, metadata=header))


def save_checkpoint(path: str | Path, model: MMChange, meta: CheckpointMeta | None = None) -> Path:
    """Write ``model``'s weights and ``meta`` (default: defaults for its config) to ``path`` atomically."""
    meta = meta if meta is not None else CheckpointMeta(model=model.config)
    if meta.model != model.config:
        raise ValueError(f"metadata describes {meta.model}, but the model is {model.config}")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return _write(path, state, meta)


def check_updatable(path: str | Path) -> None:
    """An InputError when ``path`` is a Hub checkpoint: it lives in the shared cache and must not change."""
    if is_hub_spec(path):
        spec = parse_hub_spec(path)
        raise InputError(f"{spec} is a Hub checkpoint, read from the shared Hugging Face cache, so its metadata "
                         f"cannot change in place; download a copy with 'hf download {spec.repo_id} "
                         f"model.safetensors --local-dir DIR' and pass DIR/model.safetensors")


def update_checkpoint_meta(path: str | Path, **changes: Any) -> CheckpointMeta:
    """Replace metadata fields (e.g. ``threshold=0.4``), keeping the weights; rewrites the file atomically."""
    if "model" in changes:
        raise ValueError("the model config cannot change without new weights; use save_checkpoint")
    check_updatable(path)
    meta, state = _read(Path(path), weights=True)
    _write(path, state, dataclasses.replace(meta, **changes))
    return read_checkpoint_meta(path)
