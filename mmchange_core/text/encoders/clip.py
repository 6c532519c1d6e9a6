"""``clip``: the authors' text encoder, OpenAI CLIP ViT-B/32 through open_clip.

Frozen and in float32 on every device; captions are tokenised by open_clip's bundled BPE tokenizer
and cut at the context length (77 tokens, the end-of-text token kept last, like
``clip.tokenize(truncate=True)``); the output is the projected end-of-text embedding
(``encode_text(normalize=False)``), not L2-normalised, as the reference uses it. The authors ran
the encoder in float16 on GPU and cast to float; float32 differs from that by rounding only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mmchange_core.errors import MMChangeError
from mmchange_core.text.config import TextEncoderConfig
from mmchange_core.text.openclip import load_open_clip

#: Captions per forward pass.
ENCODE_BATCH = 256


class ClipTextEncoder:
    """Projected, unnormalised CLIP text embeddings ``[N, dim]`` (float32, CPU)."""

    def __init__(self, config: TextEncoderConfig, device: torch.device) -> None:
        self.device = device
        bundle = load_open_clip(config.model, config.pretrained, device)
        self.model, self.tokenizer = bundle.model, bundle.tokenizer
        projection = getattr(self.model, "text_projection", None)
        width = projection.shape[-1] if isinstance(projection, torch.Tensor) else getattr(
            projection, "out_features", None)
        if width is not None and width != config.dim:
            raise MMChangeError(f"open_clip model {config.model} gives {width}-wide text embeddings but the encoder "
                                f"dim is {config.dim}; set --set encoder.dim={width}")
        self.dim = config.dim

    @torch.inference_mode()
    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        """Embeddings of ``captions`` (each truncated to the model's context length)."""
        chunks = []
        for start in range(0, len(captions), ENCODE_BATCH):
            tokens = self.tokenizer(list(captions[start:start + ENCODE_BATCH])).to(self.device)
            features = self.model.encode_text(tokens, normalize=False)
            chunks.append(features.float().cpu())
        return torch.cat(chunks) if chunks else torch.zeros(0, self.dim)
