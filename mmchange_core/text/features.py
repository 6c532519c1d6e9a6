"""Text embeddings of image pairs, read from a dataset's caption store (``mmchange caption``).

Training and evaluation look up, for every pair, the embeddings of date A's and date B's caption
under the keys :meth:`ImagePair.relative` gives. Captions are never made here: a missing one raises
the store's :class:`MissingCaptionsError`, which says how many are missing and which
``mmchange caption`` command makes them. Before any work, :func:`verify_pair_captions` checks that
every image is the one its caption was made from (sha256), so a stale caption or the store of
another dataset is never used silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmchange_core.data.layouts import ImagePair
from mmchange_core.errors import InputError
from mmchange_core.models.checkpoint import CheckpointMeta

#: ``provider(pairs) -> (emb_a, emb_b)``, each ``[len(pairs), D]`` float32.
TextProvider = Callable[[Sequence[ImagePair]], tuple[np.ndarray, np.ndarray]]


def open_caption_store(root: Path, store: str | Path | None = None) -> Any:
    """The :class:`~mmchange_core.text.CaptionStore` of dataset ``root`` (or the file ``store``)."""
    from mmchange_core.text import CaptionStore

    return CaptionStore.open(Path(root), Path(store) if store else None)


def verify_pair_captions(store: Any, root: Path, pairs: Sequence[ImagePair], description: dict | None = None, *,
                         accept_stale: bool = False, warn: Callable[[str], None] | None = None) -> None:
    """Stop (:class:`~mmchange_core.text.StaleCaptionsError`) when an image of ``pairs`` changed since it was captioned.

    With ``accept_stale`` the old captions are used and ``warn`` gets a one-line note naming them.
    """
    images = {key: path for pair in pairs for key, path in zip(pair.relative(root), (pair.image_a, pair.image_b))}
    stale = store.verify(list(images.items()), description, accept_stale=accept_stale)
    if stale and warn is not None:
        warn(f"using the captions of {len(stale)} image(s) that changed since they were captioned in {store.path} "
             f"(e.g. {', '.join(stale[:3])}), as --accept-stale-captions asks")


def pair_embeddings(store: Any, root: Path, pairs: Sequence[ImagePair],
                    description: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(emb_a, emb_b)`` of ``pairs``; ``description`` selects the caption settings (None = latest)."""
    keys_a, keys_b = zip(*(pair.relative(root) for pair in pairs)) if pairs else ((), ())
    embeddings = np.asarray(store.embeddings_for(list(keys_a) + list(keys_b), description), dtype=np.float32)
    n = len(pairs)
    return embeddings[:n], embeddings[n:]


def store_text_provider(store: Any, root: Path, description: dict | None = None) -> TextProvider:
    """A :data:`TextProvider` that reads the embeddings of ``pairs`` from ``store``."""

    def provide(pairs: Sequence[ImagePair]) -> tuple[np.ndarray, np.ndarray]:
        return pair_embeddings(store, root, pairs, description)

    return provide


def checkpoint_text_provider(meta: CheckpointMeta, root: Path, store: str | None = None,
                             pairs: Sequence[ImagePair] = (), *, accept_stale: bool = False,
                             warn: Callable[[str], None] | None = None) -> TextProvider | None:
    """Embeddings for a checkpoint's text model from the dataset's caption store (None: image-only).

    The captions of ``pairs`` (those the caller will use) are checked against the images first
    (:func:`verify_pair_captions`), so a stale caption stops the command before any work.
    """
    description = meta.text_description
    if not description:
        return None
    try:
        caption_store = open_caption_store(root, store)
    except ImportError as exc:
        raise InputError("this checkpoint uses text but mmchange's text module is not available; "
                         "install mmchange with its text support") from exc
    verify_pair_captions(caption_store, root, pairs, description, accept_stale=accept_stale, warn=warn)
    return store_text_provider(caption_store, root, description)
