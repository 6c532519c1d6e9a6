"""The model-backed text path on tiny random models loaded through from_pretrained / open_clip folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmchange_core.errors import InputError, MissingWeightsError, MMChangeError
from mmchange_core.text import CaptionerConfig, TextEncoderConfig, TextPipeline
from mmchange_core.text.captioners.clip_tags import VOCABULARY, tags_sentence
from mmchange_core.text.captioners.vlm import build_prompt, vlm_dtype
from tests.text_helpers.tiny_models import CLIP_DIM, WORDS, tiny_clip_dir, tiny_llava_dir  # noqa: F401 (fixtures)

HASHING = TextEncoderConfig(name="hashing")


def _images(n: int) -> list[np.ndarray]:
    return [np.random.default_rng(i).integers(0, 256, (40, 30 + 5 * i, 3), dtype=np.uint8) for i in range(n)]


def _vlm(folder: Path, **kwargs) -> TextPipeline:
    return TextPipeline(CaptionerConfig(name="vlm", model=str(folder), **kwargs), HASHING, device="cpu")


def test_vlm_generates_seeded_captions_with_the_paper_prompt(tiny_llava_dir: Path) -> None:
    pipe = _vlm(tiny_llava_dir, max_new_tokens=6, batch_size=2, seed=3)
    captioner = pipe.captioner
    assert type(captioner.model).__name__ == "LlavaForConditionalGeneration"
    assert captioner.processor.tokenizer.padding_side == "left"
    assert captioner.prompt == "USER: <image>\nWhat are the components in this picture? ASSISTANT:"
    assert captioner.generation_kwargs()["temperature"] == 0.2 and captioner.generation_kwargs()["top_p"] == 0.9
    assert vlm_dtype(torch.device("cpu")) == torch.float32
    images = _images(3)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    captions = pipe.caption(images)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's RNG stream is untouched
    assert captions == pipe.caption(images)  # same seed, same batches -> same captions
    vocabulary = set(WORDS) | {"user", "assistant", ":", "?", ".", ","}
    for caption in captions:
        words = caption.split()
        assert 0 < len(words) <= 6 and set(words) <= vocabulary


def test_vlm_greedy_batches_match_single_images(tiny_llava_dir: Path) -> None:
    images = _images(3)
    batched = _vlm(tiny_llava_dir, temperature=0.0, max_new_tokens=5, batch_size=3).caption(images)
    single = _vlm(tiny_llava_dir, temperature=0.0, max_new_tokens=5, batch_size=1).caption(images)
    assert batched == single


def test_vlm_named_prompt_and_chat_template(tiny_llava_dir: Path) -> None:
    captioner = _vlm(tiny_llava_dir, prompt="prompt4", max_new_tokens=2).captioner
    assert "What are the artificial features in this picture?" in captioner.prompt
    processor = captioner.processor
    processor.chat_template = ("{% for m in messages %}<|{{ m.role }}|>{% for c in m.content %}"
                               "{% if c.type == 'image' %}<image>{% else %}{{ c.text }}{% endif %}{% endfor %}"
                               "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    assert build_prompt(processor, "What are these?") == "<|user|><image>What are these?<|assistant|>"


def test_vlm_missing_weights_and_folders_give_one_line_errors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError) as info:
        _vlm(Path("bczhou/tiny-llava-v1-hf")).caption(_images(1))
    message = str(info.value)
    assert "hf download bczhou/tiny-llava-v1-hf" in message and str(tmp_path / "hf" / "hub") in message
    assert "--model FOLDER" in message and "\n" not in message
    with pytest.raises(InputError, match="VLM model folder not found"):
        _vlm(tmp_path / "nowhere").caption(_images(1))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="save_pretrained"):
        _vlm(tmp_path / "empty").caption(_images(1))


def test_clip_encoder_is_projected_eot_unnormalised_and_truncates(tiny_clip_dir: Path) -> None:
    import open_clip

    pipe = TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(model=str(tiny_clip_dir), dim=CLIP_DIM),
                        device="cpu")
    long = "buildings and roads " * 60  # far beyond 77 tokens
    emb = pipe.encode(["These are buildings.", long, long + "and a lake"])
    assert emb.shape == (3, CLIP_DIM) and emb.dtype == torch.float32
    assert not torch.allclose(emb.norm(dim=1), torch.ones(3))
    assert torch.allclose(emb[1], emb[2])  # everything after the 77th token is cut off
    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{tiny_clip_dir}")
    tokens = open_clip.get_tokenizer(f"local-dir:{tiny_clip_dir}")(["These are buildings."])
    with torch.no_grad():
        reference = model.encode_text(tokens)
    assert torch.allclose(emb[0], reference[0], atol=1e-5)
    assert pipe.describe()["encoder"] == {"name": "clip", "algorithm": "open_clip-eot-projected/1", "dim": CLIP_DIM,
                                          "model": str(tiny_clip_dir), "pretrained": ""}
    wrong = TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(model=str(tiny_clip_dir)), device="cpu")
    with pytest.raises(MMChangeError, match="encoder.dim=64"):
        wrong.encode(["x"])


def test_clip_weights_missing_give_one_line_errors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    pipe = TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(), device="cpu")
    with pytest.raises(MissingWeightsError) as info:
        pipe.encode(["x"])
    message = str(info.value)
    assert "hf download timm/vit_base_patch32_clip_224.openai" in message and str(tmp_path / "hf" / "hub") in message
    with pytest.raises(MissingWeightsError, match="checkpoint file not found"):
        TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(pretrained="/no/such/ViT-B-32.pt"),
                     device="cpu").encode(["x"])
    with pytest.raises(InputError, match="unknown open_clip model 'ViT-X'"):
        TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(model="ViT-X"), device="cpu").encode(["x"])


def test_clip_tags_sentences_from_the_vocabulary(tiny_clip_dir: Path) -> None:
    pipe = TextPipeline(CaptionerConfig(name="clip-tags", model=str(tiny_clip_dir), batch_size=2), HASHING,
                        device="cpu")
    captions = pipe.caption(_images(3))
    assert len(captions) == 3
    for caption in captions:
        assert caption.startswith("These are ") and caption.endswith(".")
        tags = caption[len("These are "):-1].replace(" and ", ", ").split(", ")
        assert 1 <= len(tags) <= 3 and set(tags) <= set(VOCABULARY)
    assert tags_sentence(["buildings", "roads", "trees"]) == "These are buildings, roads and trees."
    assert pipe.describe()["captioner"]["model"] == str(tiny_clip_dir)


def test_vlm_processor_saved_without_patch_size_is_completed(tiny_llava_dir: Path, tmp_path: Path) -> None:
    """Processors uploaded by old transformers (like TinyLLaVA-v1-hf's) lack the image-token expansion data."""
    import json
    import shutil

    legacy = tmp_path / "legacy"
    shutil.copytree(tiny_llava_dir, legacy)
    config_file = legacy / "processor_config.json"
    data = json.loads(config_file.read_text())
    for key in ("patch_size", "vision_feature_select_strategy", "num_additional_image_tokens"):
        data.pop(key, None)
    config_file.write_text(json.dumps(data))
    images = _images(2)
    old = _vlm(legacy, temperature=0.0, max_new_tokens=3)
    assert old.captioner.processor.patch_size == 8 and old.captioner.processor.num_additional_image_tokens == 1
    assert old.caption(images) == _vlm(tiny_llava_dir, temperature=0.0, max_new_tokens=3).caption(images)
