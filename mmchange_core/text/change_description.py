"""One generated sentence on what changed between two dates, from a VLM captioner (``predict --describe-change``).

Both dates are put side by side, before on the left, with a thin white separator, and the
captioner's own model is asked :data:`CHANGE_QUESTION` in the captioner's prompt format
(:func:`~mmchange_core.text.captioners.vlm.build_prompt`), with its seeded sampling. The sentence
comes from a language model and may be wrong; the summary in words marks it as generated.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from mmchange_core.errors import MMChangeError
from mmchange_core.text.captioners.vlm import VLMCaptioner, build_prompt

#: What the model is asked about the composed picture.
CHANGE_QUESTION = ("The left image was taken before the right one. "
                   "Describe in one sentence what changed between them.")
#: Width in pixels of the white separator between the two dates.
SEPARATOR = 4


def side_by_side(image_a: np.ndarray, image_b: np.ndarray, gap: int = SEPARATOR) -> np.ndarray:
    """``image_a | image_b`` as one uint8 RGB picture: ``gap`` white columns between them, tops aligned, the
    shorter one padded with white below."""
    for index, image in enumerate((image_a, image_b)):
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise MMChangeError(f"image {index} must be a uint8 RGB array [H, W, 3], got shape "
                                f"{getattr(image, 'shape', None)} and dtype {getattr(image, 'dtype', None)}")
    height = max(image_a.shape[0], image_b.shape[0])
    width_a, width_b = image_a.shape[1], image_b.shape[1]
    canvas = np.full((height, width_a + gap + width_b, 3), 255, dtype=np.uint8)
    canvas[:image_a.shape[0], :width_a] = image_a
    canvas[:image_b.shape[0], width_a + gap:] = image_b
    return canvas


def describe_change(captioner: Any, image_a: np.ndarray, image_b: np.ndarray) -> str:
    """One sentence on what changed from ``image_a`` (before) to ``image_b`` (after), by ``captioner``'s VLM.

    ``captioner`` must be a :class:`~mmchange_core.text.captioners.vlm.VLMCaptioner` (the ``vlm``
    captioner of a :class:`~mmchange_core.text.TextPipeline`); it is left as it was (its own prompt
    is not changed).
    """
    if not isinstance(captioner, VLMCaptioner):
        raise MMChangeError(f"describing the change needs a VLM captioner (captioner 'vlm'), "
                            f"not {type(captioner).__name__}")
    asker = copy.copy(captioner)  # shares the loaded model; only the prompt differs
    asker.prompt = build_prompt(captioner.processor, CHANGE_QUESTION)
    return asker.caption([side_by_side(image_a, image_b)])[0]
