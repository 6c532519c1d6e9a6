"""Training and validation samples: tiles of labelled image pairs as tensors, plus text embeddings.

:class:`ChangeDetectionDataset` checks every pair when it is built (reading image headers only):
A, B and label must exist, be readable and have the same size, and be at least one crop large.
Images larger than the crop are cut into non-overlapping tiles (:mod:`mmchange_core.data.windows`),
so LEVIR-CD's 1024 x 1024 tiles become the paper's 256 x 256 crops. Labels are read by
:func:`mmchange_core.io.images.read_mask` (0/255, 0/1, palette, RGB, 16-bit, GeoTIFF; the pair's
``change_value`` when given).

A sample key is an index, or ``(index, epoch)`` as :class:`EpochSampler` yields it; the key and the
dataset's seed determine the augmentation draws, so samples are reproducible whatever the number
of DataLoader workers and across resumed runs.

With a decoded cache (:mod:`mmchange_core.data.decoded_cache`, on by default in training when images
are cut into several crops) each pair is decoded once and its crops are read from a memory-mapped
copy; the samples are bit-identical to the uncached ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from mmchange_core.config import SIZE, SIZE_MULTIPLE, check_value
from mmchange_core.data.decoded_cache import CacheError, CacheSettings, DecodedCache, size_text, split_pixels
from mmchange_core.data.layouts import DatasetLayout, ImagePair
from mmchange_core.data.normalize import IMAGENET_MEAN, IMAGENET_STD, to_tensor
from mmchange_core.data.windows import TileGrid, Window
from mmchange_core.data.transforms import Sample, SampleTransform
from mmchange_core.errors import InputError
from mmchange_core.io.imagery import Imagery
from mmchange_core.io.classes import ClassScheme
from mmchange_core.io.images import image_size, read_class_label, read_mask
from mmchange_core.io.raster import read_images


def check_label_set(pairs: Sequence[ImagePair], classes: ClassScheme | None, what: str = "the dataset") -> None:
    """Refuse, before any work, labels that do not fit the network's classes (one line naming file and value).

    Binary networks: each label must have at most two values (:func:`read_mask`). K-class networks:
    every value must be in the class file, and a label set holding only two values overall (no change
    and one other, e.g. 0/255 or 0/1) is a binary label set, refused: train a binary model for it, or
    relabel it with the class file's values.
    """
    found: set[int] = set()
    for pair in pairs:
        label = read_label(pair, classes)
        if is_multiclass(classes):
            found.update(np.flatnonzero(np.bincount(label.reshape(-1), minlength=len(classes))).tolist())
    if is_multiclass(classes) and pairs and len(found) <= 2 and len(pairs) > 1:
        shown = ", ".join(str(classes.values[i]) for i in sorted(found))
        raise InputError(f"the labels of {what} hold only the values {shown}: a binary label set, but the model has "
                         f"{len(classes)} classes ({', '.join(classes.names)}); train a binary model for it (no "
                         f"--classes) or relabel it with the class file's values")


def check_pair_sizes(pair: ImagePair) -> tuple[int, int]:
    """(height, width) shared by A, B and the label of ``pair`` (headers only); a mismatch names the odd file."""
    size_a = image_size(pair.image_a)
    for path in (pair.image_b, pair.label):
        if path is None:
            continue
        size = image_size(path)
        if size != size_a:
            raise InputError(f"{path} is {size[1]}x{size[0]} but {pair.image_a} is {size_a[1]}x{size_a[0]}; "
                             f"A, B and label of a pair must have the same size")
    return size_a


def is_multiclass(classes: ClassScheme | None) -> bool:
    """Whether ``classes`` asks for class labels (more than two classes) rather than a binary change label."""
    return classes is not None and not classes.is_binary


def read_label(pair: ImagePair, classes: ClassScheme | None = None) -> np.ndarray:
    """The label of ``pair``: bool change ``[H, W]`` for binary networks, uint8 class indices for K classes."""
    if pair.label is None:
        raise InputError(f"{pair.image_a} has no label; training and evaluation need a label for every pair")
    if is_multiclass(classes):
        return read_class_label(pair.label, classes)
    return read_mask(pair.label, pair.change_value)


def read_labelled_pair(pair: ImagePair, imagery: Imagery | None = None,
                       classes: ClassScheme | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A and B as uint8 ``[H, W, C]`` (the bands and radiometric rule of ``imagery``, one scale for both dates,
    as prediction reads them) and the label: bool change ``[H, W]``, or uint8 class indices when
    ``classes`` lists more than two classes.

    Sizes are compared on the headers before any pixel is decoded; a mismatch names the odd file.
    """
    if pair.label is None:
        raise InputError(f"{pair.image_a} has no label; training and evaluation need a label for every pair")
    size = check_pair_sizes(pair)
    image_a, image_b = read_images([pair.image_a, pair.image_b], None, imagery)
    label = read_label(pair, classes)
    for path, array in ((pair.image_a, image_a), (pair.image_b, image_b), (pair.label, label)):
        if array.shape[:2] != size:
            raise InputError(f"{path} changed while it was read (now {array.shape[1]}x{array.shape[0]}, "
                             f"was {size[1]}x{size[0]}); run the command again")
    return image_a, image_b, label


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for the augmentation of sample ``index`` in ``epoch``."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


@dataclass(frozen=True)
class TileRef:
    """One training sample: a window of one pair."""

    pair: int
    window: Window


class ChangeDetectionDataset(Dataset):
    """Labelled tiles of one split as normalised tensors, with the pair's text embeddings when given.

    Args:
        layout: the detected dataset.
        split: ``train``, ``val``, ``test`` (or ``all`` for unsplit datasets).
        crop_size: tile side in pixels (multiple of 32); images must be at least this large.
        text: per-pair embeddings ``(emb_a, emb_b)``, each ``[num_pairs, D]``, or None (image-only).
        transform: augmentation (see :mod:`mmchange_core.data.transforms`), or None.
        seed: base seed of the augmentation draws.
        cache: where and whether pairs are cached decoded (None: never; see :class:`CacheSettings`).
        imagery: the bands read and the radiometric rule (default: RGB, 8-bit as is, joint stretch otherwise).
        normalization: per-band ``(mean, std)`` on [0, 1] pixels (default: ImageNet's RGB statistics).
    """

    def __init__(self, layout: DatasetLayout, split: str, crop_size: int = 256, *,
                 text: tuple[np.ndarray, np.ndarray] | None = None, transform: SampleTransform | None = None,
                 seed: int = 0, cache: CacheSettings | None = None, imagery: Imagery | None = None,
                 normalization: tuple[tuple[float, ...], tuple[float, ...]] = (IMAGENET_MEAN, IMAGENET_STD),
                 classes: ClassScheme | None = None) -> None:
        check_value("crop_size", crop_size, SIZE)
        self.imagery = imagery or Imagery()
        #: The class file's classes: labels are class indices when it lists more than two.
        self.classes = classes
        self.mean, self.std = (tuple(v) for v in normalization)
        if len(self.mean) != self.imagery.channels:
            raise ValueError(f"normalization has {len(self.mean)} bands, the imagery settings read "
                             f"{self.imagery.channels}")
        self.root = layout.root
        self.split = split
        self.crop_size = crop_size
        self.pairs = layout.require_labels(split)
        self.transform = transform
        self.seed = seed
        self.tiles: list[TileRef] = []
        self.sizes: list[tuple[int, int]] = []
        for i, pair in enumerate(self.pairs):
            h, w = check_pair_sizes(pair)
            if h < crop_size or w < crop_size:
                raise InputError(f"{pair.image_a} is {w}x{h}, smaller than the crop size {crop_size}; "
                                 f"use a smaller --crop-size (a multiple of {SIZE_MULTIPLE})")
            self.sizes.append((h, w))
            self.tiles.extend(TileRef(i, win) for win in TileGrid.plan(h, w, crop_size, overlap=0).windows())
        self.text = None
        if text is not None:
            emb_a, emb_b = (np.ascontiguousarray(t, dtype=np.float32) for t in text)
            if emb_a.shape != emb_b.shape or emb_a.shape[0] != len(self.pairs):
                raise ValueError(f"text embeddings must be two [{len(self.pairs)}, D] arrays, got "
                                 f"{emb_a.shape} and {emb_b.shape}")
            self.text = (emb_a, emb_b)
        self.cache: DecodedCache | None = None
        self.cache_note = ""
        if cache is not None:
            self._use_cache(cache)

    def _cache_key(self, pair: ImagePair) -> str | None:
        imagery = json.dumps(self.imagery.to_dict(), sort_keys=True)
        classes = json.dumps(self.classes.to_dict(), sort_keys=True) if is_multiclass(self.classes) else "binary"
        return DecodedCache.key((pair.image_a, pair.image_b, pair.label),
                                f"change_value={pair.change_value}|imagery={imagery}|classes={classes}")

    def _use_cache(self, settings: CacheSettings) -> None:
        """Plan the decoded cache (room, recency); off with a note when ``enabled`` is None and it cannot be used."""
        if not (self.tiled if settings.enabled is None else settings.enabled):
            return
        cache = settings.open(self.imagery.channels)
        keys = [self._cache_key(pair) for pair in self.pairs]
        try:
            size = cache.prepare([(key, shape) for key, shape in zip(keys, self.sizes) if key is not None])
        except CacheError as exc:
            if settings.enabled:
                raise
            self.cache_note = f"; decoded cache off: {exc}"
            return
        self.cache = cache
        self.cache_note = f"; decoded once into {cache.folder} ({size_text(size)})"

    @property
    def text_dim(self) -> int | None:
        """Width of the text embeddings, or None without text."""
        return None if self.text is None else int(self.text[0].shape[1])

    @property
    def tiled(self) -> bool:
        """Whether images are cut into several tiles."""
        return len(self.tiles) != len(self.pairs)

    def describe(self) -> str:
        """One line: pairs, tiles and crop size."""
        sizes = sorted(set(self.sizes))
        shapes = f"{sizes[0][1]}x{sizes[0][0]}" if len(sizes) == 1 else f"{len(sizes)} sizes"
        tiles = f" -> {len(self.tiles)} tiles of {self.crop_size}x{self.crop_size}" if self.tiled else ""
        return f"{self.split}: {len(self.pairs)} pairs ({shapes}){tiles}{self.cache_note}"

    def __len__(self) -> int:
        return len(self.tiles)

    def _crop(self, pair: ImagePair, size: tuple[int, int], window: tuple[slice, slice]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A, B and label of ``window`` of ``pair``: from the decoded cache, or decoded now."""
        key = self._cache_key(pair) if self.cache is not None else None  # stat: a changed file gets a new entry
        if self.cache is not None and key is not None:
            pixels = self.cache.pixels(key, size, lambda: read_labelled_pair(pair, self.imagery, self.classes))
            image_a, image_b, label = split_pixels(pixels[window], keep_label=is_multiclass(self.classes))
            return image_a, image_b, label
        image_a, image_b, label = read_labelled_pair(pair, self.imagery, self.classes)  # checked again: the files may have changed
        return image_a[window], image_b[window], label[window]

    def load(self, index: int) -> Sample:
        """Sample ``index`` without augmentation."""
        ref = self.tiles[index]
        pair = self.pairs[ref.pair]
        image_a, image_b, label = self._crop(pair, self.sizes[ref.pair], ref.window.slices())
        sample: Sample = {
            "image_a": to_tensor(image_a, self.mean, self.std),
            "image_b": to_tensor(image_b, self.mean, self.std),
            "label": torch.from_numpy(np.ascontiguousarray(label)).float().unsqueeze(0),  # 0/1, or class indices
        }
        if self.text is not None:
            sample["text_a"] = torch.from_numpy(self.text[0][ref.pair])
            sample["text_b"] = torch.from_numpy(self.text[1][ref.pair])
        return sample

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        sample = self.load(index)
        if self.transform is not None:
            generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index))
            sample = self.transform(sample, generator)
        return sample


class EpochSampler(DistributedSampler):
    """A DistributedSampler that yields ``(index, epoch)`` keys and can start part-way into an epoch.

    The order of an epoch depends only on ``seed`` and the epoch (as in ``DistributedSampler``), so
    skipping the first ``start`` samples reproduces the rest of an interrupted epoch exactly.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=False)
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Start epoch ``epoch`` at its ``start``-th sample (of this process)."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = list(super().__iter__())[self.start:]
        return iter([(i, self.epoch) for i in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start
