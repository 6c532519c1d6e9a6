"""Input normalisation: per-band mean and std on [0, 1] pixels; ImageNet's for RGB, as the reference uses.

The reference lists the statistics in BGR order (cv2 loading) and reverses the channels, which is
the standard RGB ImageNet normalisation below. Multispectral models use their training split's
statistics (:mod:`mmchange_core.data.band_stats`), stored in the checkpoint.
"""

from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_tensor(image: np.ndarray, mean: tuple[float, ...] = IMAGENET_MEAN,
              std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """uint8 ``[H, W, C]`` -> normalised float32 ``[C, H, W]`` (``mean``/``std``: one per band)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    return x.sub_(torch.tensor(mean).view(-1, 1, 1)).div_(torch.tensor(std).view(-1, 1, 1))


def normalize_batch(images: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN,
                    std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """uint8 or [0, 255] float ``[B, C, H, W]`` -> normalised float ``[B, C, H, W]`` (on its device)."""
    x = images.float() / 255.0
    mean = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def denormalize(x: torch.Tensor) -> np.ndarray:
    """Normalised ``[3, H, W]`` -> uint8 ``[H, W, 3]`` (for visualisations)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    img = ((x * std + mean).clamp(0, 1) * 255).round().byte()
    return img.permute(1, 2, 0).cpu().numpy()
