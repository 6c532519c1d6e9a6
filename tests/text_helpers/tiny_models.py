"""Tiny random models saved like real ones, so tests run the real loading and generation paths offline.

- a LLaVA model (CLIPVisionConfig + LlamaConfig in a LlavaConfig) with a locally built word-level
  tokenizer (PreTrainedTokenizerFast) and a LlavaProcessor with a CLIPImageProcessor, written with
  ``save_pretrained`` to a folder that ``mmchange caption --model FOLDER`` loads;
- an open_clip model folder (``open_clip_config.json`` + safetensors weights, random) that the
  ``clip`` encoder and the ``clip-tags`` captioner load as a local model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

WORDS = ("the a an of and with in on this these there is are what picture components image buildings roads "
         "trees water river lake field fields farmland houses bare land grass cars road building").split()
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
PUNCTUATION = ["user", "assistant", ":", "?", ".", ","]
#: Embedding width of the tiny open_clip model (the text encoder dim must be a multiple of 64).
CLIP_DIM = 64


def build_tiny_llava(folder: Path, seed: int = 0) -> Path:
    """Save a random 2-layer LLaVA model with its tokenizer and processor into ``folder``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    vocab = {token: i for i, token in enumerate(SPECIAL + PUNCTUATION + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", pad_token="<pad>",
                                        extra_special_tokens={"image_token": "<image>"})
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=32, patch_size=8, projection_dim=32),
        text_config=LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                                pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"]),
        image_token_index=vocab["<image>"], vision_feature_layer=-2, vision_feature_select_strategy="default",
        pad_token_id=vocab["<pad>"])
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_open_clip(folder: Path, seed: int = 0) -> Path:
    """Save a random 1-layer open_clip model (ViT image tower, 77-token text tower) into ``folder``."""
    import open_clip
    from safetensors.torch import save_file

    model_cfg = {
        "embed_dim": CLIP_DIM,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": model_cfg,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
    }))
    torch.manual_seed(seed)
    model = open_clip.CLIP(**model_cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny LLaVA model folder (built once per test session)."""
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny open_clip model folder (built once per test session)."""
    return build_tiny_open_clip(tmp_path_factory.mktemp("tiny-clip"))
