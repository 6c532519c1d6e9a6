"""Captioners and text encoders by name, each imported only when it is built.

A registry maps a name to ``"module:factory"``; the factory is called with ``(config, device)``.
Lazy imports keep ``basic`` and ``hashing`` free of transformers and open_clip.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import torch

CAPTIONERS: dict[str, str] = {
    "vlm": "mmchange_core.text.captioners.vlm:VLMCaptioner",
    "clip-tags": "mmchange_core.text.captioners.clip_tags:ClipTagsCaptioner",
    "basic": "mmchange_core.text.captioners.basic:BasicCaptioner.from_config",
}
TEXT_ENCODERS: dict[str, str] = {
    "clip": "mmchange_core.text.encoders.clip:ClipTextEncoder",
    "hashing": "mmchange_core.text.encoders.hashing:HashingTextEncoder.from_config",
}


def build(registry: Mapping[str, str], config: Any, device: torch.device) -> Any:
    """Validate ``config`` (a one-line error for an unknown name) and build ``registry[config.name]``."""
    config.validate()
    module, _, path = registry[config.name].partition(":")
    factory: Any = importlib.import_module(module)
    for attribute in path.split("."):
        factory = getattr(factory, attribute)
    return factory(config, device)
