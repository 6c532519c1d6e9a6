"""The default text models (TinyLLaVA captioner, open_clip ViT-B-32/openai encoder) in an offline hub cache.

A user without internet access copies pre-downloaded weights into the Hugging Face cache; this module
lays out such a cache under the default model ids (with :func:`tests.models_helpers.hub_cache.add_snapshot`),
so that commands run with *no* model option find them. The weights are random: tests check the
plumbing, not caption quality.

- ``bczhou/tiny-llava-v1-hf``: the tiny LLaVA of :func:`tests.text_helpers.tiny_models.build_tiny_llava`
  (under 1 MB);
- open_clip ``ViT-B-32`` / ``openai``: a randomly initialised full ViT-B-32 state dict (151 M
  parameters, 605 MB in float32, about 5-10 s to build on 2 cores) at the hub path that
  ``open_clip.get_pretrained_cfg("ViT-B-32", "openai")["hf_hub"]`` names.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.models_helpers.hub_cache import add_snapshot
from tests.text_helpers.tiny_models import build_tiny_llava

#: The default VLM captioner's hub id (``DEFAULT_CAPTIONER_MODELS["vlm"]`` in mmchange_core/text/config.py).
DEFAULT_VLM = "bczhou/tiny-llava-v1-hf"
#: The default clip text encoder: open_clip architecture and pretrained tag.
DEFAULT_CLIP = ("ViT-B-32", "openai")


def add_default_vlm(cache: Path, work: Path) -> str:
    """The tiny LLaVA saved as the ``main`` commit of :data:`DEFAULT_VLM` in ``cache``; ``work`` is scratch."""
    return add_snapshot(cache, DEFAULT_VLM, build_tiny_llava(work / "tiny-llava"))


def add_default_clip(cache: Path, work: Path, seed: int = 0) -> str:
    """A random full open_clip ViT-B-32 state dict where the weights of the ``openai`` tag live in ``cache``."""
    import open_clip
    from safetensors.torch import save_file

    from mmchange_core.text.openclip import HUB_WEIGHT_FILES

    name, tag = DEFAULT_CLIP
    repo, filename = os.path.split(open_clip.get_pretrained_cfg(name, tag)["hf_hub"])
    folder = work / "open-clip"
    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)  # random init (open_clip logs that it is)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / (filename or HUB_WEIGHT_FILES[0])))
    del model
    try:
        return add_snapshot(cache, repo, folder)
    finally:
        shutil.rmtree(folder)  # the blob in the cache is the only copy kept


def build_default_text_models(cache: Path, work: Path) -> Path:
    """A hub cache holding both default text models; returns ``cache``."""
    add_default_vlm(cache, work)
    add_default_clip(cache, work)
    return cache


def offline_hub_env(cache: Path) -> dict[str, str]:
    """Environment variables that point a subprocess at ``cache`` only, offline (also drop HF_TOKEN)."""
    return {"HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "hf_home"), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


@pytest.fixture(scope="session")
def default_text_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An offline hub cache with both default text models, built once per test session.

    It holds 605 MB, so it is removed at the end of the session (pytest keeps its last three temp folders).
    """
    root = tmp_path_factory.mktemp("hf")
    yield build_default_text_models(root / "hub", root / "scratch")
    shutil.rmtree(root, ignore_errors=True)
