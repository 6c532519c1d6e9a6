"""Where model weights come from: the Hugging Face cache, offline mode and local folders.

Nothing here downloads by itself; the loaders ask the hub (or its cache only, when
``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set) and turn a miss into one actionable line.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

T = TypeVar("T")

_TRUE = {"1", "on", "yes", "true"}


def offline_mode() -> bool:
    """True when the environment asks for cached files only (read at call time, not at import)."""
    if any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub``, default ``~/.cache/huggingface/hub``).

    Read at call time and passed to every download, so the folder named in error messages is the
    one actually searched.
    """
    explicit = os.environ.get("HF_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return Path.home() / ".cache" / "huggingface" / "hub"


WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def looks_like_path(value: str) -> bool:
    """True for values meant as a file or folder rather than a hub id or tag."""
    return value.startswith(("/", "./", "../", "~")) or Path(value).suffix.lower() in WEIGHT_SUFFIXES


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence transformers' per-shard progress bars and info logs while a model loads."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if was_enabled:
            hf_logging.enable_progress_bar()


def hub_endpoint() -> str:
    """The hub URL (``$HF_ENDPOINT``, default https://huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers a TCP connection within ``timeout`` seconds.

    Checked before a download is attempted so that a machine without internet access gets the
    one-line error at once instead of minutes of retries. Behind an HTTP(S) proxy the direct probe
    says nothing, so it is skipped (reported reachable).
    """
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return True
    parsed = urlparse(hub_endpoint())
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def cache_first(load: Callable[[bool], T], *, local: bool, unreachable: Callable[[Exception], Exception]) -> T:
    """``load(local_files_only)`` from the cache first; download only when online and the hub answers.

    Cached weights therefore load without contacting the hub. ``unreachable(exc)`` builds the error
    raised when the files are not cached and cannot be downloaded.
    """
    try:
        return load(True)
    except OSError as exc:
        if local or offline_mode():
            raise
        if not hub_reachable():
            raise unreachable(exc) from exc
    return load(False)
