"""Training augmentations of the paper, applied jointly to both dates, the label and the text.

A sample is a dict of tensors: ``image_a``/``image_b`` (normalised float ``[3, H, W]``), ``label``
(float ``[1, H, W]`` of 0/1) and, for text models, ``text_a``/``text_b`` (``[D]``). Every transform
takes the sample and a ``torch.Generator``, so the randomness of a sample is a pure function of its
seed: results do not depend on the number of DataLoader workers, and a resumed run draws exactly what
the interrupted one would have drawn.

Order (architecture.md, section c): border crop-resize (p=0.5, 0..8 pixels per side), vertical flip
(p=0.5), horizontal flip (p=0.5), temporal swap (p=0.5). Unlike the reference, the temporal swap
exchanges the text embeddings together with the images, so each caption stays with its image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F

Sample = dict[str, torch.Tensor]

IMAGE_KEYS = ("image_a", "image_b")
SPATIAL_KEYS = ("image_a", "image_b", "label")


class SampleTransform(Protocol):
    """A transform of a training sample driven by an explicit random generator."""

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample: ...


def _chance(p: float, generator: torch.Generator) -> bool:
    return bool(torch.rand((), generator=generator) < p)


class RandomBorderCropResize:
    """With probability ``p``, cut 0..``max_border`` pixels from each side (symmetrically) and resize back.

    Images use bilinear interpolation, the label nearest neighbour (as the reference's cv2 calls).
    """

    def __init__(self, max_border: int = 8, p: float = 0.5) -> None:
        self.max_border = max_border
        self.p = p

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        if not _chance(self.p, generator):
            return sample
        bx = int(torch.randint(0, self.max_border + 1, (), generator=generator))
        by = int(torch.randint(0, self.max_border + 1, (), generator=generator))
        if bx == 0 and by == 0:
            return sample
        out = dict(sample)
        h, w = sample["label"].shape[-2:]
        for key in SPATIAL_KEYS:
            crop = sample[key][:, by:h - by, bx:w - bx].unsqueeze(0)
            if key == "label":
                resized = F.interpolate(crop, size=(h, w), mode="nearest")
            else:
                resized = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
            out[key] = resized.squeeze(0)
        return out


class RandomFlip:
    """With probability ``p``, flip both dates and the label along ``dim`` (-2 vertical, -1 horizontal)."""

    def __init__(self, dim: int, p: float = 0.5) -> None:
        self.dim = dim
        self.p = p

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        if not _chance(self.p, generator):
            return sample
        out = dict(sample)
        for key in SPATIAL_KEYS:
            out[key] = torch.flip(sample[key], dims=[self.dim])
        return out


class RandomTemporalSwap:
    """With probability ``p``, exchange the two dates: images AND their text embeddings."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        if not _chance(self.p, generator):
            return sample
        out = dict(sample)
        for first, second in (("image_a", "image_b"), ("text_a", "text_b")):
            if first in sample:
                out[first], out[second] = sample[second], sample[first]
        return out


class Compose:
    """Apply transforms in order with one shared generator."""

    def __init__(self, transforms: Sequence[SampleTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        for transform in self.transforms:
            sample = transform(sample, generator)
        return sample


def paper_augmentation(max_border: int = 8, flip_p: float = 0.5, swap_p: float = 0.5,
                       crop_p: float = 0.5) -> Compose:
    """The paper's training augmentation (probabilities may be set to 0 to switch a step off)."""
    return Compose([
        RandomBorderCropResize(max_border, crop_p),
        RandomFlip(-2, flip_p),
        RandomFlip(-1, flip_p),
        RandomTemporalSwap(swap_p),
    ])
