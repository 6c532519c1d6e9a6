"""The text branch of MMChange: caption each date's image and embed the caption.

- captioners: ``vlm`` (a transformers image-text-to-text model, TinyLLaVA by default), ``clip-tags``
  (open_clip zero-shot land-cover tags) and ``basic`` (an offline pixel-statistics fallback);
- text encoders: ``clip`` (open_clip ViT-B/32, OpenAI weights) and ``hashing`` (offline fallback);
- :class:`CaptionStore`: the append-only, resumable store of captions and embeddings;
- :func:`caption_dataset`: the ``mmchange caption`` library call.
"""

from mmchange_core.text.captioning import CaptionReport, caption_dataset
from mmchange_core.text.config import CaptionerConfig, CaptionRunConfig, TextEncoderConfig
from mmchange_core.text.pipeline import TextPipeline
from mmchange_core.text.prompts import PROMPTS, resolve_prompt
from mmchange_core.text.store import STORE_FILENAME, CaptionStore, MissingCaptionsError, StaleCaptionsError

__all__ = [
    "PROMPTS",
    "STORE_FILENAME",
    "CaptionReport",
    "CaptionRunConfig",
    "CaptionStore",
    "CaptionerConfig",
    "MissingCaptionsError",
    "StaleCaptionsError",
    "TextEncoderConfig",
    "TextPipeline",
    "caption_dataset",
    "resolve_prompt",
]
