"""Error overlays coloured as in the paper's figures: white TP, black TN, red FP, blue FN."""

from __future__ import annotations

import numpy as np

TP_COLOUR = (255, 255, 255)
TN_COLOUR = (0, 0, 0)
FP_COLOUR = (255, 0, 0)
FN_COLOUR = (0, 0, 255)


def error_overlay(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 3]`` image of a binary prediction against its label."""
    pred = np.asarray(pred).astype(bool)
    target = np.asarray(target).astype(bool)
    out = np.zeros(pred.shape + (3,), np.uint8)  # TN stays black
    out[pred & target] = TP_COLOUR
    out[pred & ~target] = FP_COLOUR
    out[~pred & target] = FN_COLOUR
    return out
