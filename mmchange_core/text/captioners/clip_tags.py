"""``clip-tags``: open_clip zero-shot land-cover tags turned into a sentence.

The CLIP-Interrogator-style alternative of paper Table V. Each image is compared with a fixed
remote-sensing land-cover vocabulary (every term averaged over a few prompt templates); the most
similar terms, at most :data:`MAX_TAGS` and each with at least :data:`MIN_PROBABILITY` of the
softmax, become the caption: "These are buildings, roads and trees." Changing the vocabulary,
templates or thresholds changes the captions, so they are versioned with the captioner's algorithm
id in :mod:`mmchange_core.text.config`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from mmchange_core.text.config import CaptionerConfig
from mmchange_core.text.openclip import load_open_clip

#: Land-cover and object classes of remote-sensing imagery, as plural noun phrases.
VOCABULARY = (
    "buildings", "houses", "factories", "roads", "highways", "parking lots", "bridges", "railways", "runways",
    "trees", "forests", "grasslands", "farmlands", "bare fields", "sand", "deserts", "rivers", "lakes", "seas",
    "beaches", "wetlands", "construction sites", "sports fields", "swimming pools", "greenhouses", "ships",
    "cars", "snowfields", "mountains", "shrubs",
)
TEMPLATES = ("a satellite image of {}.", "an aerial photograph of {}.", "a remote sensing image showing {}.")
MAX_TAGS = 3
MIN_PROBABILITY = 0.1
#: CLIP's logit scale for zero-shot classification.
LOGIT_SCALE = 100.0


def tags_sentence(tags: Sequence[str]) -> str:
    """"These are a, b and c." for one or more tags."""
    if len(tags) == 1:
        return f"These are {tags[0]}."
    return f"These are {', '.join(tags[:-1])} and {tags[-1]}."


class ClipTagsCaptioner:
    """Zero-shot land-cover tags from an open_clip model."""

    def __init__(self, config: CaptionerConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        bundle = load_open_clip(config.resolved_model, config.resolved_revision, device)
        self.model, self.preprocess = bundle.model, bundle.preprocess
        with torch.inference_mode():
            per_template = []
            for template in TEMPLATES:
                tokens = bundle.tokenizer([template.format(term) for term in VOCABULARY]).to(device)
                per_template.append(self.model.encode_text(tokens, normalize=True).float())
            classes = torch.stack(per_template).mean(dim=0)
            self.classes = classes / classes.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def _tags(self, images: Sequence[np.ndarray]) -> list[list[str]]:
        pixels = torch.stack([self.preprocess(Image.fromarray(image)) for image in images]).to(self.device)
        features = self.model.encode_image(pixels, normalize=True).float()
        probabilities = (LOGIT_SCALE * features @ self.classes.T).softmax(dim=-1).cpu()
        result = []
        for row in probabilities:
            order = torch.argsort(row, descending=True, stable=True)[:MAX_TAGS].tolist()
            chosen = [VOCABULARY[i] for i in order if row[i] >= MIN_PROBABILITY] or [VOCABULARY[order[0]]]
            result.append(chosen)
        return result

    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        """One "These are ..." sentence per uint8 RGB image."""
        size = max(1, self.config.batch_size)
        captions: list[str] = []
        for start in range(0, len(images), size):
            captions.extend(tags_sentence(tags) for tags in self._tags(images[start:start + size]))
        return captions
