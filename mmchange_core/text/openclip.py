"""Loading open_clip models (the ``clip`` text encoder and the ``clip-tags`` captioner) offline-first.

``model`` is an open_clip architecture name (``ViT-B-32``) with ``pretrained`` a tag (``openai``)
or a checkpoint file, or a local folder holding ``open_clip_config.json`` and its weights (the
layout open_clip's hub models use). Tagged weights come from the Hugging Face cache; with
``HF_HUB_OFFLINE`` set only the cache is read. open_clip's own BPE tokenizer ships with the
package, so tokenising never needs the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmchange_core.errors import InputError, MissingWeightsError
from mmchange_core.text.hub import (
    WEIGHT_SUFFIXES,
    cache_first,
    hub_cache_dir,
    looks_like_path,
    offline_mode,
    quiet_loading,
)

#: Weight file names open_clip looks for in a hub repository or a local folder, preferred first.
HUB_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass
class OpenClipBundle:
    """A loaded open_clip model with its image preprocessing and tokenizer."""

    model: Any
    preprocess: Any
    tokenizer: Any
    name: str


def _folder_weights(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in WEIGHT_SUFFIXES)


def _tag_checkpoint(name: str, tag: str) -> str:
    """The cached (or downloaded) file of open_clip's pretrained ``tag`` for architecture ``name``."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise InputError(f"unknown open_clip pretrained tag '{tag}' for {name} (known: {known}); pass a tag "
                         f"or a checkpoint file")
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import hf_hub_download

        repo, filename = os.path.split(hub)  # "org/name/" -> default file names; "org/name/file" -> that file
        candidates = [filename] if filename else list(HUB_WEIGHT_FILES)
        offline = " (offline mode is on: HF_HUB_OFFLINE)" if offline_mode() else " (not cached, and the hub is unreachable)"

        def missing(exc: Exception) -> MissingWeightsError:
            return MissingWeightsError(
                f"open_clip weights {name}/{tag} are not available{offline}: run 'hf download {repo} {candidates[0]}' "
                f"on a machine with internet access and copy the result into the Hugging Face cache "
                f"{hub_cache_dir()}, or pass the downloaded file as the pretrained value (for example "
                f"--text-pretrained FILE); '--text-encoder hashing' and '--captioner basic' need no weights")

        def load(local_files_only: bool) -> str:
            error: Exception | None = None
            for candidate in candidates:
                try:
                    return hf_hub_download(repo, candidate, local_files_only=local_files_only,
                                           cache_dir=str(hub_cache_dir()))
                except Exception as exc:  # noqa: BLE001 - cache miss, missing file or network error
                    error = exc
            raise OSError(str(error))

        try:
            return cache_first(load, local=False, unreachable=missing)
        except OSError as exc:
            raise missing(exc) from exc
    url = cfg.get("url", "")
    try:
        return open_clip.download_pretrained_from_url(url)
    except Exception as exc:  # noqa: BLE001
        raise MissingWeightsError(f"open_clip weights {name}/{tag} are not available: download {url} and pass the "
                                  f"file as the pretrained value (for example --text-pretrained FILE)") from exc


def load_open_clip(model: str, pretrained: str | None, device: torch.device) -> OpenClipBundle:
    """An open_clip model in eval mode (frozen) with its val preprocessing and tokenizer."""
    import open_clip

    folder = Path(model).expanduser()
    kwargs: dict[str, Any] = {}
    if folder.is_dir():
        if not (folder / "open_clip_config.json").is_file():
            raise InputError(f"{folder} has no open_clip_config.json; an open_clip model folder needs it and the weights")
        if not _folder_weights(folder):
            raise MissingWeightsError(f"no weights in open_clip model folder {folder}; put "
                                      f"{HUB_WEIGHT_FILES[0]} (or a .bin/.pt file) there")
        name = f"local-dir:{folder}"
    elif looks_like_path(model):
        raise InputError(f"open_clip model folder not found: {model}; pass an existing folder or a name such as ViT-B-32")
    else:
        name = model
        if name not in open_clip.list_models():
            raise InputError(f"unknown open_clip model '{model}'; use a name such as ViT-B-32 or a local folder")
        if not pretrained:
            raise InputError(f"open_clip model {name} needs pretrained weights: a tag such as openai or a file")
        path = Path(pretrained).expanduser()
        if path.is_file():
            kwargs["pretrained"] = str(path)
        elif looks_like_path(pretrained):
            raise MissingWeightsError(f"open_clip checkpoint file not found: {pretrained}; pass an existing file "
                                      f"or a pretrained tag such as openai")
        else:
            kwargs["pretrained"] = _tag_checkpoint(name, pretrained)
            kwargs["force_quick_gelu"] = bool(open_clip.get_pretrained_cfg(name, pretrained).get("quick_gelu"))
    try:
        with quiet_loading():
            clip_model, _, preprocess = open_clip.create_model_and_transforms(name, device=device, **kwargs)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        text = " ".join(str(exc).split())[:200]
        raise InputError(f"cannot load open_clip model {model} with weights {pretrained or folder} ({text}); check "
                         f"that the weights belong to this architecture") from exc
    clip_model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(name)
    return OpenClipBundle(clip_model, preprocess, tokenizer, name)
