"""``vlm``: captions from a transformers image-text-to-text model (default TinyLLaVA, LLaVA format).

The default, ``bczhou/tiny-llava-v1-hf``, is TinyLLaVA-1.4B converted to transformers' native
``LlavaForConditionalGeneration`` (CLIP ViT-L/14-336 vision tower, TinyLlama-1.1B language model),
so no remote code runs unless ``trust_remote_code`` is set. Any model that
``AutoModelForImageTextToText`` and ``AutoProcessor`` load works the same way, from the hub cache or
a local folder saved with ``save_pretrained``.

Generation is batched with left padding (so every prompt ends where generation starts), runs in
bfloat16 on GPUs that support it (float16 on older GPUs, float32 on CPU), and samples with the
paper's temperature 0.2 and top_p 0.9 (temperature 0 means greedy) from a seeded generator. The
seed is applied per batch inside a forked RNG, so a caller's random state is left untouched and a
rerun with the same images in the same batches gives the same captions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmchange_core.errors import InputError, MissingWeightsError, MMChangeError
from mmchange_core.text.config import CaptionerConfig
from mmchange_core.text.hub import cache_first, hub_cache_dir, looks_like_path, offline_mode, quiet_loading
from mmchange_core.text.prompts import resolve_prompt

#: Prompt format of LLaVA-1.5-style models whose processor has no chat template (TinyLLaVA-v1-hf).
LLAVA_PROMPT = "USER: {image}\n{question} ASSISTANT:"


def vlm_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on GPUs that support it, float16 on older GPUs, float32 on CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _missing_weights(model_id: str, revision: str | None, exc: Exception) -> MMChangeError:
    if Path(model_id).expanduser().is_dir():
        return InputError(f"cannot load a VLM from folder {model_id} ({_short(exc)}); it needs the files written "
                          f"by save_pretrained: config.json, the weights and the processor/tokenizer files")
    rev = f" --revision {revision}" if revision else ""
    offline = " (offline mode is on: HF_HUB_OFFLINE)" if offline_mode() else " (not cached, and the hub is unreachable)"
    return MissingWeightsError(
        f"VLM weights for '{model_id}' are not available{offline}: run 'hf download {model_id}{rev}' on a machine "
        f"with internet access and copy the result into the Hugging Face cache {hub_cache_dir()} (or download it "
        f"into a folder and pass --model FOLDER); '--captioner basic' needs no weights")


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def load_vlm(model_id: str, revision: str | None, trust_remote_code: bool, dtype: torch.dtype) -> tuple[Any, Any]:
    """(processor, model) through the Auto classes, with one-line errors for every user-side failure."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if looks_like_path(model_id) and not Path(model_id).expanduser().is_dir():
        raise InputError(f"VLM model folder not found: {model_id}; pass an existing folder or a hub id")
    folder = Path(model_id).expanduser()
    local = folder.is_dir()
    source = str(folder) if local else model_id

    def load(local_files_only: bool) -> tuple[Any, Any]:
        kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code,
                                  "local_files_only": local_files_only, "cache_dir": str(hub_cache_dir())}
        with quiet_loading():
            processor = AutoProcessor.from_pretrained(source, **kwargs)
            model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, **kwargs)
        return processor, model

    try:
        processor, model = cache_first(load, local=local,
                                       unreachable=lambda exc: _missing_weights(model_id, revision, exc))
    except OSError as exc:
        raise _missing_weights(model_id, revision, exc) from exc
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise MMChangeError(f"model '{model_id}' needs its own Python code; rerun with --trust-remote-code "
                                f"if you trust its authors") from exc
        if local:
            raise _missing_weights(model_id, revision, exc) from exc
        raise MMChangeError(f"'{model_id}' is not an image-text-to-text model that transformers can load "
                            f"({_short(exc)}); pick a LLaVA-style model or use --captioner clip-tags/basic") from exc
    return processor, model


def complete_processor(processor: Any, model: Any) -> None:
    """Fill in what processors saved by older transformers lack (TinyLLaVA-v1-hf's has no patch size).

    Current LLaVA processors expand ``<image>`` into one token per vision feature, which needs the
    vision tower's patch size, the feature selection strategy and the CLS-token count; processors
    uploaded before transformers 4.45 carry none of them, so they are taken from the model config.
    """
    vision = getattr(model.config, "vision_config", None)
    if getattr(processor, "patch_size", 0) is not None or vision is None or not hasattr(vision, "patch_size"):
        return
    processor.patch_size = vision.patch_size
    if getattr(processor, "vision_feature_select_strategy", None) is None:
        processor.vision_feature_select_strategy = getattr(model.config, "vision_feature_select_strategy", "default")
    if not getattr(processor, "num_additional_image_tokens", 0):
        # CLIP vision towers prepend a CLS token; SigLIP-style towers do not.
        processor.num_additional_image_tokens = 1 if str(vision.model_type).startswith("clip") else 0


def build_prompt(processor: Any, question: str) -> str:
    """The full prompt: the processor's chat template when it has one, else LLaVA-1.5's format."""
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image_token = getattr(processor, "image_token", None) or "<image>"
    return LLAVA_PROMPT.format(image=image_token, question=question)


class VLMCaptioner:
    """Batched, seeded caption generation with a vision-language model."""

    def __init__(self, config: CaptionerConfig, device: torch.device,
                 components: tuple[Any, Any] | None = None) -> None:
        """Load ``config``'s model, or use ``components`` = (processor, model) built elsewhere (benchmarks)."""
        self.config = config
        self.device = device
        if components is None:
            self.dtype = vlm_dtype(device)
            self.processor, model = load_vlm(config.resolved_model, config.resolved_revision,
                                             config.trust_remote_code, self.dtype)
        else:
            self.processor, model = components
            self.dtype = next(model.parameters()).dtype
        self.model = model.to(device).eval().requires_grad_(False)
        complete_processor(self.processor, self.model)
        #: Extra ``generate`` arguments, e.g. ``{"min_new_tokens": 32}`` for fixed-length benchmarks.
        self.generation_overrides: dict[str, Any] = {}
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None:
            raise MMChangeError(f"the processor of '{config.resolved_model}' has no tokenizer; it cannot caption")
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self.pad_token_id = tokenizer.pad_token_id
        self.prompt = build_prompt(self.processor, resolve_prompt(config.prompt))

    def generation_kwargs(self) -> dict[str, Any]:
        """Arguments of ``generate``: the paper's sampling, or greedy decoding at temperature 0."""
        cfg = self.config
        kwargs: dict[str, Any] = {"max_new_tokens": cfg.max_new_tokens, "pad_token_id": self.pad_token_id}
        if cfg.temperature > 0:
            # Nucleus sampling only, as LLaVA/TinyLLaVA generate: top_k=0 turns off transformers' default top-k 50.
            kwargs.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False)
        kwargs.update(self.generation_overrides)
        return kwargs

    def inputs(self, images: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Processor outputs for one batch, on the model's device (pixels in the model's dtype)."""
        batch = self.processor(images=[Image.fromarray(image) for image in images],
                               text=[self.prompt] * len(images), return_tensors="pt", padding=True)
        moved = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            moved[key] = value
        return moved

    @torch.inference_mode()
    def _generate(self, images: Sequence[np.ndarray]) -> list[str]:
        inputs = self.inputs(images)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed)
            output = self.model.generate(**inputs, **self.generation_kwargs())
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]

    def caption(self, images: Sequence[np.ndarray]) -> list[str]:
        """One caption per uint8 RGB image, generated ``batch_size`` images at a time."""
        size = max(1, self.config.batch_size)
        captions: list[str] = []
        for start in range(0, len(images), size):
            captions.extend(self._generate(images[start:start + size]))
        return captions
