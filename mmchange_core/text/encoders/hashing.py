"""``hashing``: an offline text encoder by signed feature hashing (no weights, deterministic).

It is the fallback that pairs with the ``basic`` captioner for tests, demos and machines without
CLIP weights. A caption is split into phrases at punctuation; the features are

- every content word and every pair of neighbouring content words (weight 1 each; stopwords such
  as "about" or "percent" are left out);
- every number from 0 to 100 bound to the content words of its phrase before it ("built-up area
  about 61 percent" -> ``built-up area`` = 61). The value is spread linearly over the two nearest
  levels of a 10-step scale (61 -> 90 % on level 60, 10 % on level 70) with weight
  :data:`NUMBER_WEIGHT`, so nearby values give nearby features and distant values orthogonal ones.

Each feature is hashed (BLAKE2b) to one of ``dim`` slots with a hashed sign; the vector is scaled to
norm :data:`OUTPUT_NORM`, about the size of CLIP's unnormalised text embeddings.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from mmchange_core.text.config import TextEncoderConfig

#: Weight of each numeric feature relative to a word feature: numbers carry the land-cover shares.
NUMBER_WEIGHT = 3.0
#: Spacing of the numeric levels.
NUMBER_STEP = 10.0
#: L2 norm of every non-empty embedding.
OUTPUT_NORM = 8.0

_TOKEN = re.compile(r"[a-z]+(?:[-'][a-z]+)*|\d+(?:\.\d+)?|[.,;:!?()]")
_STOPWORDS = frozenset(
    "a an the of and or with about around roughly approximately nearly some is are was were this these "
    "that it its in on at to by for from percent per cent".split())


def _phrases(text: str) -> Iterator[list[str]]:
    phrase: list[str] = []
    for token in _TOKEN.findall(text.lower()):
        if token in ".,;:!?()":
            if phrase:
                yield phrase
            phrase = []
        else:
            phrase.append(token)
    if phrase:
        yield phrase


def _is_number(token: str) -> bool:
    return token[0].isdigit()


def caption_features(text: str) -> dict[str, float]:
    """The weighted hashing features of one caption (before hashing)."""
    features: dict[str, float] = {}

    def add(name: str, weight: float) -> None:
        features[name] = features.get(name, 0.0) + weight

    for phrase in _phrases(text):
        words: list[str] = []
        for i, token in enumerate(phrase):
            if _is_number(token):
                value = float(token)
                context = " ".join(w for w in words if w not in _STOPWORDS)
                if 0.0 <= value <= 100.0 and context:
                    low = math.floor(value / NUMBER_STEP) * NUMBER_STEP
                    frac = (value - low) / NUMBER_STEP
                    add(f"n:{context}={low:g}", NUMBER_WEIGHT * (1.0 - frac))
                    if frac > 0:
                        add(f"n:{context}={low + NUMBER_STEP:g}", NUMBER_WEIGHT * frac)
                else:
                    add(f"w:{token}", 1.0)
                continue
            words.append(token)
            if token in _STOPWORDS:
                continue
            add(f"w:{token}", 1.0)
            if i > 0 and not _is_number(phrase[i - 1]) and phrase[i - 1] not in _STOPWORDS:
                add(f"b:{phrase[i - 1]} {token}", 1.0)
    return features


def _slot(name: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return (value >> 1) % dim, (1.0 if value & 1 else -1.0)


class HashingTextEncoder:
    """Deterministic [N, dim] float32 features of captions; needs no model and no weights."""

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim

    @classmethod
    def from_config(cls, config: TextEncoderConfig, device: torch.device) -> HashingTextEncoder:
        """The registry's factory: only ``config.dim`` matters (no weights, any device)."""
        return cls(config.dim)

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        """Embeddings of ``captions`` as a float32 CPU tensor ``[N, dim]`` (zeros for empty text)."""
        out = np.zeros((len(captions), self.dim), dtype=np.float64)
        for row, text in enumerate(captions):
            for name, weight in caption_features(text).items():
                slot, sign = _slot(name, self.dim)
                out[row, slot] += sign * weight
            norm = np.linalg.norm(out[row])
            if norm > 0:
                out[row] *= OUTPUT_NORM / norm
        return torch.from_numpy(out.astype(np.float32))
