"""Configuration of the text branch: which captioner writes each date's caption and which encoder embeds it.

``settings()`` gives the JSON-safe identity of a configuration: every value that determines the
captions (or embeddings), with defaults resolved. The caption store keys its records by it, and
checkpoints keep it so that prediction captions unseen images the same way. Values that only
change how the work is executed (batch size, device, ``trust_remote_code``) are not part of it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmchange_core.config import DEVICE, SEED, between, non_negative, positive, setting
from mmchange_core.errors import MMChangeError
from mmchange_core.io.imagery import Imagery
from mmchange_core.text.prompts import DEFAULT_PROMPT, resolve_prompt
from mmchange_core.text.registry import CAPTIONERS, TEXT_ENCODERS

#: Default model of each captioner (``CaptionerConfig.model=None``).
DEFAULT_CAPTIONER_MODELS = {
    "vlm": "bczhou/tiny-llava-v1-hf",
    "clip-tags": "ViT-B-32",
    "basic": "pixel-statistics",
}
#: Default ``revision`` of each captioner: for clip-tags it is the open_clip pretrained tag (or file).
DEFAULT_CAPTIONER_REVISIONS: dict[str, str | None] = {"vlm": None, "clip-tags": "openai", "basic": None}

#: Version of each captioner's or encoder's own algorithm; bump when its output changes, so that
#: stores and checkpoints made by an older version are recognised as different.
ALGORITHMS = {
    "vlm": "transformers-generate/1",
    "clip-tags": "open_clip-zero-shot-tags/1",
    "basic": "pixel-statistics/1",
    "clip": "open_clip-eot-projected/1",
    "hashing": "feature-hashing/1",
}


def _normalise_model(model: str) -> str:
    """Local folders and files become absolute paths (stable keys); hub ids stay as given."""
    path = Path(model).expanduser()
    if path.exists():
        return str(path.resolve())
    return model


def settings_id(settings: dict[str, Any]) -> str:
    """A short stable hash of a settings dict (the store's index key)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class CaptionerConfig:
    """Which captioner describes each image, and how.

    ``name``: ``vlm`` (a transformers image-text-to-text model), ``clip-tags`` (open_clip zero-shot
    land-cover tags) or ``basic`` (offline pixel-statistics fallback, not a language model).
    ``model``: hub id or local folder (vlm), open_clip architecture or local folder (clip-tags);
    ``None`` picks the default. ``revision``: hub revision (vlm) or open_clip pretrained tag or
    checkpoint file (clip-tags). ``prompt``: free text or a key of :data:`PROMPTS`. Sampling follows
    the paper (temperature 0.2, top_p 0.9; temperature 0 means greedy decoding).
    """

    name: str = "vlm"
    model: str | None = None
    revision: str | None = None
    prompt: str = DEFAULT_PROMPT
    temperature: float = setting(0.2, non_negative())
    top_p: float = setting(0.9, between(0, 1))
    max_new_tokens: int = setting(64, positive())
    seed: int = setting(0, SEED)
    batch_size: int = setting(16, positive())
    trust_remote_code: bool = False

    def validate(self) -> None:
        """Raise a one-line error for an unknown captioner or an out-of-range value."""
        if self.name not in CAPTIONERS:
            raise MMChangeError(f"unknown captioner '{self.name}'; use one of {', '.join(CAPTIONERS)}")
        if self.batch_size < 1:
            raise MMChangeError(f"batch size must be at least 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise MMChangeError(f"max new tokens must be at least 1, got {self.max_new_tokens}")
        if not 0.0 < self.top_p <= 1.0:
            raise MMChangeError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.temperature < 0:
            raise MMChangeError(f"temperature must be 0 (greedy) or positive, got {self.temperature}")
        if self.name == "vlm" and not resolve_prompt(self.prompt):
            raise MMChangeError("the VLM prompt is empty; pass --prompt TEXT or a named prompt such as 'components'")

    @property
    def resolved_model(self) -> str:
        """The model actually used: the default when ``model`` is None, local paths made absolute."""
        return _normalise_model(self.model or DEFAULT_CAPTIONER_MODELS[self.name])

    @property
    def resolved_revision(self) -> str | None:
        """The hub revision (vlm) or pretrained tag/file (clip-tags), defaults resolved."""
        revision = self.revision or DEFAULT_CAPTIONER_REVISIONS[self.name]
        if revision and self.name == "clip-tags":
            return _normalise_model(revision)
        return revision

    def settings(self) -> dict[str, Any]:
        """JSON-safe dict of everything that determines the captions (defaults resolved)."""
        self.validate()
        base: dict[str, Any] = {"name": self.name, "algorithm": ALGORITHMS[self.name],
                                "model": self.resolved_model}
        if self.name == "vlm":
            base.update(revision=self.resolved_revision, prompt=resolve_prompt(self.prompt),
                        temperature=float(self.temperature), top_p=float(self.top_p),
                        max_new_tokens=int(self.max_new_tokens), seed=int(self.seed))
        elif self.name == "clip-tags":
            # A local open_clip folder carries its own weights; the pretrained tag is ignored for it.
            base.update(revision=None if Path(base["model"]).is_dir() else self.resolved_revision)
        return base


@dataclass
class TextEncoderConfig:
    """Which encoder turns captions into the [N, dim] text features the network consumes.

    ``clip``: open_clip ``model`` (architecture name or local folder) with ``pretrained`` weights
    (tag or checkpoint file), frozen, captions truncated at the context length (77), projected
    end-of-text embedding, not L2-normalised, as the authors' code. ``hashing``: an offline fallback
    (signed feature hashing of words, word pairs and numbers), used with the ``basic`` captioner.
    """

    name: str = "clip"
    model: str = "ViT-B-32"
    pretrained: str = "openai"
    dim: int = setting(512, positive())

    def validate(self) -> None:
        """Raise a one-line error for an unknown encoder or an invalid width."""
        if self.name not in TEXT_ENCODERS:
            raise MMChangeError(f"unknown text encoder '{self.name}'; use one of {', '.join(TEXT_ENCODERS)}")
        if self.dim < 64 or self.dim % 64:
            raise MMChangeError(f"text embedding width must be a positive multiple of 64, got {self.dim}")

    def settings(self) -> dict[str, Any]:
        """JSON-safe dict of everything that determines the embeddings."""
        self.validate()
        base: dict[str, Any] = {"name": self.name, "algorithm": ALGORITHMS[self.name], "dim": int(self.dim)}
        if self.name == "clip":
            model = _normalise_model(self.model)
            # A local model folder carries its own weights; ``pretrained`` is ignored for it.
            pretrained = "" if Path(model).is_dir() else _normalise_model(self.pretrained)
            base.update(model=model, pretrained=pretrained)
        return base


@dataclass
class CaptionRunConfig:
    """Everything ``mmchange caption`` needs (``--config cfg.yaml`` / ``--set captioner.top_p=0.8``)."""

    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    splits: list[str] | None = None
    captions: str | None = setting(None, renamed_from=["store"])  # the caption store file or folder
    overwrite: bool = False
    device: str = setting("auto", DEVICE)
    imagery: Imagery = field(default_factory=Imagery)
    """The bands a captioner sees as red, green and blue (``imagery.bands``/``imagery.rgb``, ``--bands``) and
    the radiometric rule: the composite of a multispectral image."""


def captioner_from_settings(settings: dict[str, Any]) -> CaptionerConfig:
    """Rebuild a :class:`CaptionerConfig` from :meth:`CaptionerConfig.settings` output."""
    return _from_settings(CaptionerConfig, settings, "captioner")


def encoder_from_settings(settings: dict[str, Any]) -> TextEncoderConfig:
    """Rebuild a :class:`TextEncoderConfig` from :meth:`TextEncoderConfig.settings` output."""
    return _from_settings(TextEncoderConfig, settings, "text encoder")


def _from_settings(cls: type, settings: dict[str, Any], what: str) -> Any:
    from mmchange_core.config import from_dict

    if not isinstance(settings, dict) or "name" not in settings:
        raise MMChangeError(f"invalid {what} description {settings!r}; expected a dict with a 'name'")
    name = settings["name"]
    algorithm = settings.get("algorithm")
    if name in ALGORITHMS and algorithm is not None and algorithm != ALGORITHMS[name]:
        raise MMChangeError(f"the {what} '{name}' of this description is version {algorithm}, but this mmchange "
                            f"implements {ALGORITHMS[name]}; re-caption with 'mmchange caption' and retrain")
    known = {f for f in cls.__dataclass_fields__}
    config = from_dict(cls, {k: v for k, v in settings.items() if k in known})
    config.validate()
    return config
