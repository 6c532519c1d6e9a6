"""Fine-tuning: start a run from the weights of any checkpoint (``weights``) and keep parts fixed (``freeze``).

``weights`` is read through the one model seam (:func:`~mmchange_core.inference.backends.open_model`): an
mmchange ``.safetensors`` checkpoint, ``hf://OWNER/NAME[@REV]`` or an authors' ``.pth``/``.pth.tar``
(converted in memory). :func:`weights_mismatches` is the one comparison of those weights with the run's
config: every :class:`~mmchange_core.models.config.ModelConfig` field, the text pipeline and the input bands
(a run that sets no imagery inherits the weights' bands, radiometry and normalisation). A mismatch stops the run before
anything is written (:func:`check_weights`). The run's checkpoints record the parent's name and sha256
(:meth:`ParentWeights.record`), which ``mmchange push`` shows on the model card.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmchange_core.errors import CheckpointError, InputError, MMChangeError
from mmchange_core.inference.backends import ModelFile, open_model
from mmchange_core.models.checkpoint import CheckpointMeta
from mmchange_core.models.config import VARIANTS, ModelConfig
from mmchange_core.models.hub import is_hub_spec
from mmchange_core.models.mmchange import MMChange
from mmchange_core.training.config import TrainConfig

#: The ``training`` metadata key of a fine-tuned checkpoint: ``{"name": ..., "sha256": ...}`` of its parent.
PARENT_KEY = "parent"
_TEXT_PARTS = (("captioner", "captioner"), ("encoder", "text encoder"))


@dataclass
class ParentWeights:
    """The checkpoint a fine-tuning run starts from: the spec as given and the model file it resolved to."""

    spec: str
    model_file: ModelFile

    @property
    def meta(self) -> CheckpointMeta:
        """The parent's metadata (for an authors' ``.pth``: the config inferred by the conversion)."""
        return self.model_file.meta

    @property
    def name(self) -> str:
        """How checkpoints and model cards name the parent: a Hub spec as given, else the file's name."""
        return self.spec if is_hub_spec(self.spec) else Path(self.spec).name

    def record(self) -> dict[str, str]:
        """``{"name", "sha256"}``: the provenance written to ``CheckpointMeta.training["parent"]``."""
        return {"name": self.name, "sha256": self.model_file.sha256()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The parent's weights in mmchange's layout; the global RNG is left as it was (the model is built
        with a random init before the weights replace it)."""
        with torch.random.fork_rng(devices=[]):
            network, _ = self.model_file.network()
        return network.state_dict()


def open_weights(spec: str) -> ParentWeights:
    """Resolve ``spec`` once (``hf://`` into the Hub cache) and read its metadata; one line when it cannot be
    trained from (missing, damaged, an exported ``.onnx``)."""
    try:
        model_file = open_model(spec)
    except MMChangeError as exc:
        raise _retyped(exc, f"--weights {spec}: {exc}") from None
    if model_file.backend.name != "torch":
        raise InputError(f"--weights {spec} is an exported {model_file.backend.name} model, which cannot be trained; "
                         f"give the .safetensors checkpoint it was exported from, an authors' .pth or hf://OWNER/NAME")
    return ParentWeights(spec, model_file)


def _retyped(exc: MMChangeError, message: str) -> MMChangeError:
    """``exc``'s error type with ``message`` (a plain CheckpointError when that type takes other arguments)."""
    try:
        return type(exc)(message, exit_code=exc.exit_code)
    except TypeError:
        return CheckpointError(message, exit_code=exc.exit_code)


# --------------------------------------------------------------------------------------------------
# do the weights fit the run?


def run_model_fields(config: TrainConfig, text_description: dict[str, Any] | None) -> dict[str, Any]:
    """Every :class:`ModelConfig` field of the network this run builds (None: the run does not use it).

    A field that is also a :class:`TrainConfig` key comes from the config; ``text_dim`` is the width of the
    run's text encoder (None without text); ``in_channels`` the number of the config's ``imagery.bands``;
    ``num_classes`` is not compared (None): weights of another number of classes fine-tune with new heads
    (:func:`load_parent_weights`); any other field keeps its ModelConfig default.
    """
    uses_text = VARIANTS[config.variant][0] if config.variant in VARIANTS else False
    values: dict[str, Any] = {}
    for f in dataclasses.fields(ModelConfig):
        if f.name == "text_dim":
            values[f.name] = int(text_description["encoder"]["dim"]) if uses_text and text_description else None
        elif f.name == "in_channels":
            values[f.name] = config.imagery.channels
        elif f.name == "num_classes":
            values[f.name] = None
        elif hasattr(config, f.name):
            values[f.name] = getattr(config, f.name)
        else:
            values[f.name] = f.default
    return values


def _settings(description: dict[str, Any], part: str) -> dict[str, Any]:
    """One part of a text description with its defaults resolved (as the caption store keys on it)."""
    from mmchange_core.text.store import normalise_description

    try:
        return normalise_description(description)[part]
    except MMChangeError:  # e.g. another version of a captioner's algorithm: compared as recorded
        return dict(description[part])


def _readable(settings: dict[str, Any]) -> str:
    model = settings.get("model")
    return f"{settings.get('name')}:{model}" if model else str(settings.get("name"))


def _text_mismatches(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """The captioner and text encoder of the weights (``theirs``) that differ from the run's (``ours``)."""
    found = []
    for part, label in _TEXT_PARTS:
        a, b = _settings(theirs, part), _settings(ours, part)
        if a == b:
            continue
        if _readable(a) != _readable(b):
            found.append(f"{label} {_readable(a)} != {_readable(b)}")
        else:
            keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            found.append(f"{label} {_readable(a)} settings differ ({', '.join(keys)})")
    return found


def weights_mismatches(meta: CheckpointMeta, config: TrainConfig,
                       text_description: dict[str, Any] | None = None) -> list[str]:
    """Each way the weights described by ``meta`` do not fit a run of ``config``, as ``"what theirs != ours"``.

    Compared: every :class:`ModelConfig` field (iterated, so new fields are covered), the captioner and text
    encoder (when the run uses text and both sides record them: ``text_description`` is the run's, from its
    caption store) and the input bands (``imagery.bands``).
    """
    found = []
    ours = run_model_fields(config, text_description)
    for f in dataclasses.fields(ModelConfig):
        theirs = getattr(meta.model, f.name)
        if ours[f.name] is not None and theirs != ours[f.name]:
            found.append(f"{f.name} {theirs} != {ours[f.name]}")
    if text_description is not None and meta.text_description is not None and ours["text_dim"] is not None:
        found += _text_mismatches(meta.text_description, text_description)
    # the input bands: the weights learned what each input channel is (unset bands on RGB data are bands 1-3)
    theirs_bands, ours_bands = meta.imagery.bands, config.imagery.bands
    if theirs_bands != ours_bands and not {theirs_bands, ours_bands} <= {None, (1, 2, 3)}:
        show = lambda bands: "RGB" if bands is None else ",".join(map(str, bands))  # noqa: E731
        found.append(f"bands {show(theirs_bands)} != {show(ours_bands)}")
    return found


def _remedy(meta: CheckpointMeta, config: TrainConfig, mismatches: list[str], caption_hint: str | None) -> str:
    """What to do about ``mismatches``: the ``--set`` items that make the run fit, or other weights."""
    sets = [f"--set {f.name}={getattr(meta.model, f.name)}" for f in dataclasses.fields(ModelConfig)
            if hasattr(config, f.name) and any(m.startswith(f"{f.name} ") for m in mismatches)]
    steps = [f"train with {' '.join(sets)}"] if sets else []
    text = any(m.startswith(("text_dim ", "captioner ", "text encoder ")) for m in mismatches)
    if text and meta.text_description is not None:
        steps.append(f"caption the dataset with the weights' text pipeline ({caption_hint})" if caption_hint
                     else "caption the dataset with the weights' captioner and text encoder")
    elif text:  # weights that do not record their text pipeline (an authors' checkpoint): only the width is known
        steps.append(f"caption the dataset with a text encoder of width {meta.model.text_dim}")
    return ", ".join(steps) + (" or pick other weights" if steps else "pick other weights")


def check_weights(parent: ParentWeights, config: TrainConfig, text_description: dict[str, Any] | None = None,
                  caption_hint: str | None = None) -> None:
    """One InputError line naming every mismatch of ``parent`` with the run (see :func:`weights_mismatches`);
    ``caption_hint``: the ``mmchange caption`` command that makes the weights' captions."""
    mismatches = weights_mismatches(parent.meta, config, text_description)
    if mismatches:
        raise InputError(f"weights {parent.spec} do not fit this run: {'; '.join(mismatches)}; "
                         f"{_remedy(parent.meta, config, mismatches, caption_hint)}")


def load_parent_weights(model: MMChange, state: dict[str, torch.Tensor]) -> list[str]:
    """Load a parent's weights into ``model``; class heads whose shape differs (another number of classes) keep
    their fresh initialisation. Returns the names of the tensors left out."""
    own = model.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in state if k not in kept)
    heads = ("decoder.cls.", ".cls.", "conv_context.")
    if any(not any(h in k for h in heads) for k in skipped) or set(own) - set(state):
        model.load_state_dict(state)  # not a head: the strict load names the problem
    model.load_state_dict({**own, **kept})
    return skipped


# --------------------------------------------------------------------------------------------------
# freezing


def frozen_part(model: MMChange, freeze: str) -> nn.Module | None:
    """The module ``freeze`` keeps fixed: the ResNet trunk (``trunk``), the whole Siamese image encoder
    (``encoder``: trunk, projections and neighbour aggregation), or None (``none``)."""
    if freeze == "trunk":
        return model.encoder.trunk
    if freeze == "encoder":
        return model.encoder
    if freeze == "none":
        return None
    raise InputError(f"freeze {freeze!r}: choose none, trunk or encoder")


def freeze_model(model: MMChange, freeze: str) -> int:
    """Stop gradients to the frozen part and put it in eval mode; returns how many weights it holds."""
    part = frozen_part(model, freeze)
    if part is None:
        return 0
    for parameter in part.parameters():
        parameter.requires_grad_(False)
    part.eval()
    return sum(p.numel() for p in part.parameters())


def hold_frozen(model: MMChange, freeze: str) -> None:
    """Put the frozen part back in eval mode after ``model.train()``, so BatchNorm running statistics stay fixed."""
    part = frozen_part(model, freeze)
    if part is not None:
        part.eval()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimiser updates (frozen ones are left out, so weight decay cannot move them)."""
    return [p for p in model.parameters() if p.requires_grad]
