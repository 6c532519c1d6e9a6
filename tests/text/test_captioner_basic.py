"""The offline text path: basic captioner, hashing encoder, prompts, configs and TextPipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmchange_core.errors import MMChangeError
from mmchange_core.text import PROMPTS, CaptionerConfig, TextEncoderConfig, TextPipeline, resolve_prompt
from mmchange_core.text.captioners.basic import pixel_statistics
from mmchange_core.text.encoders.hashing import HashingTextEncoder, caption_features
from tests.text_helpers import land_cover_image


def _pipeline() -> TextPipeline:
    return TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(name="hashing"), device="cpu")


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_pixel_statistics_recover_the_land_cover_mix() -> None:
    stats = pixel_statistics(land_cover_image({"vegetation": 0.5, "water": 0.25, "built": 0.25}, size=64))
    assert stats.vegetation == pytest.approx(50, abs=3)
    assert stats.water == pytest.approx(25, abs=3)
    assert stats.built_up == pytest.approx(25, abs=3)
    assert stats.bare == pytest.approx(0, abs=3)
    flat = pixel_statistics(np.full((32, 32, 3), 200, np.uint8))
    assert flat.texture == 0 and flat.brightness == pytest.approx(78.4, abs=0.1)


def test_basic_captions_are_deterministic_and_differ_for_different_images() -> None:
    pipe = _pipeline()
    green = land_cover_image({"vegetation": 0.9, "bare": 0.1}, size=60, seed=1)
    town = land_cover_image({"built": 0.8, "bare": 0.2}, size=60, seed=2)
    lake = land_cover_image({"water": 0.7, "vegetation": 0.3}, size=60, seed=3)
    captions = pipe.caption([green, town, lake])
    assert captions == pipe.caption([green, town, lake])
    assert len(set(captions)) == 3
    assert captions[0].startswith("Mostly vegetation.") and "vegetation about 90 percent" in captions[0].lower()
    assert captions[1].startswith("Mostly built-up area.") and "built-up area about 80 percent" in captions[1]
    assert "water about 70 percent" in captions[2]
    for word in ("brightness", "texture", "bare land"):
        assert all(word in c for c in captions)


def test_hashing_embeddings_carry_the_land_cover_shares() -> None:
    pipe = _pipeline()
    images = [land_cover_image({"vegetation": 0.9, "bare": 0.1}, seed=1),
              land_cover_image({"vegetation": 0.85, "bare": 0.15}, seed=4),
              land_cover_image({"built": 0.8, "bare": 0.2}, seed=2),
              land_cover_image({"water": 0.7, "vegetation": 0.3}, seed=3)]
    captions, emb = pipe.embed_images(images)
    assert emb.shape == (4, 512) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=1), torch.full((4,), 8.0))
    similar = _cos(emb[0], emb[1])
    assert similar > 0.7
    for other in (2, 3):
        assert _cos(emb[0], emb[other]) < similar - 0.15
    assert torch.equal(emb, pipe.encode(captions))


def test_hashing_numbers_bind_to_their_phrase_and_interpolate() -> None:
    feats = caption_features("Built-up area about 61 percent, water about 5 percent.")
    assert feats["n:built-up area=60"] == pytest.approx(2.7)
    assert feats["n:built-up area=70"] == pytest.approx(0.3)
    assert "w:percent" not in feats and "w:about" not in feats
    enc = HashingTextEncoder(256)
    e30, e33, e80 = enc.encode(["vegetation about 30 percent", "vegetation about 33 percent",
                                "vegetation about 80 percent"])
    assert _cos(e30, e33) > _cos(e30, e80) + 0.3
    assert torch.equal(enc.encode([""]), torch.zeros(1, 256))


def test_prompts_of_the_paper() -> None:
    assert resolve_prompt("components") == "What are the components in this picture?"
    assert CaptionerConfig().prompt == PROMPTS["components"]
    assert resolve_prompt("Prompt1") == "What are these?"
    assert resolve_prompt("prompt2") == "What is the geographical type of this map?"
    assert resolve_prompt("prominent-features") == "What are the prominent features of this image?"
    assert resolve_prompt("prompt4") == "What are the artificial features in this picture?"
    assert resolve_prompt("  Describe   the roofs. ") == "Describe the roofs."


def test_description_round_trip_and_settings() -> None:
    pipe = TextPipeline(CaptionerConfig(name="vlm", prompt="prompt3", seed=7, batch_size=4),
                        TextEncoderConfig(), device="cpu")
    description = pipe.describe()
    cap = description["captioner"]
    assert cap["model"] == "bczhou/tiny-llava-v1-hf" and cap["prompt"] == PROMPTS["prominent-features"]
    assert (cap["temperature"], cap["top_p"], cap["seed"], cap["max_new_tokens"]) == (0.2, 0.9, 7, 64)
    assert "batch_size" not in cap  # execution detail, not part of the identity
    assert description["encoder"] == {"name": "clip", "algorithm": "open_clip-eot-projected/1", "dim": 512,
                                      "model": "ViT-B-32", "pretrained": "openai"}
    rebuilt = TextPipeline.from_description(description, device="cpu", batch_size=2)
    assert rebuilt.describe() == description and rebuilt.captioner_config.batch_size == 2
    basic = _pipeline().describe()
    assert basic["captioner"] == {"name": "basic", "algorithm": "pixel-statistics/1", "model": "pixel-statistics"}
    stale = {"captioner": {**basic["captioner"], "algorithm": "pixel-statistics/0"}, "encoder": basic["encoder"]}
    with pytest.raises(MMChangeError, match="re-caption"):
        TextPipeline.from_description(stale)


def test_invalid_configs_and_images_give_one_line_errors() -> None:
    with pytest.raises(MMChangeError, match="unknown captioner 'gpt'"):
        TextPipeline(CaptionerConfig(name="gpt"), TextEncoderConfig(name="hashing"))
    with pytest.raises(MMChangeError, match="multiple of 64"):
        TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(name="hashing", dim=100))
    with pytest.raises(MMChangeError, match="uint8 RGB"):
        _pipeline().caption([np.zeros((8, 8), np.uint8)])
    with pytest.raises(MMChangeError, match="no model 'x'"):
        TextPipeline(CaptionerConfig(name="basic", model="x"), TextEncoderConfig(name="hashing")).caption(
            [np.zeros((8, 8, 3), np.uint8)])
    assert _pipeline().encode([]).shape == (0, 512)
