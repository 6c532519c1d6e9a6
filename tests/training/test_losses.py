"""BCE + Dice and its deep-supervision sum against values worked out by hand on tiny maps.

Logits 0, ln 3 and -ln 3 have sigmoids 1/2, 3/4 and 1/4, so every term has a closed form.
"""

from __future__ import annotations

import math

import pytest
import torch

from mmchange_core.training.losses import DICE_SMOOTH as S
from mmchange_core.training.losses import bce_dice_loss, deep_supervision_loss

LN3 = math.log(3)
# p = [[1/2, 3/4], [1/4, 1/2]] against y = [[1, 1], [0, 0]]
LOGITS = torch.tensor([[[[0.0, LN3], [-LN3, 0.0]]]])
TARGET = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
# BCE: mean of ln 2, ln 4/3, ln 4/3, ln 2 = ln(8/3) / 2; Dice: sum(p y) = 5/4, sum(p) = 2, sum(y) = 2
HAND = math.log(8 / 3) / 2 + 1 - (2 * 1.25 + S) / (2 + 2 + S)
# all logits 0 (p = 1/2 everywhere): BCE ln 2; Dice: sum(p y) = 1, sum(p) = 2, sum(y) = 2
FLAT = math.log(2) + 1 - (2 * 1.0 + S) / (2 + 2 + S)


def test_bce_plus_dice_of_a_2x2_map() -> None:
    loss = bce_dice_loss(LOGITS, TARGET)
    assert loss.shape == () and loss.item() == pytest.approx(HAND, rel=1e-6)   # 0.8654 = 0.4904 + 0.3750


def test_dice_sums_over_the_whole_batch() -> None:
    # two 1x1 samples: p = 1/2 with y = 1, and p = 3/4 with y = 0
    logits = torch.tensor([0.0, LN3]).view(2, 1, 1, 1)
    target = torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)
    bce = (math.log(2) + math.log(4)) / 2
    batch_dice = 1 - (2 * 0.5 + S) / (1.25 + 1 + S)   # 0.556; a per-sample mean would give (1/3 + ~1) / 2
    assert bce_dice_loss(logits, target).item() == pytest.approx(bce + batch_dice, rel=1e-6)


def test_a_confident_empty_prediction_on_an_empty_target_costs_nothing() -> None:
    # sigmoid(-100) underflows to ~0: BCE ~0, and the smoothing term makes Dice 1 - S / S = 0, not NaN
    loss = bce_dice_loss(torch.full((1, 1, 2, 2), -100.0), torch.zeros(1, 1, 2, 2))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_half_precision_logits_are_scored_in_float32() -> None:
    # 256 x 256 pixels at p = sigmoid(10): the probability sum, 65,533, overflows float16 (max 65,504)
    logits = torch.full((1, 1, 256, 256), 10.0, dtype=torch.float16)
    loss = bce_dice_loss(logits, torch.ones(1, 1, 256, 256))
    p = 1 / (1 + math.exp(-10))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(-math.log(p) + (1 - p) / (1 + p), rel=5e-3)   # 6.8e-5 (float32 1 - p)


def test_deep_supervision_gives_every_output_weight_one() -> None:
    flat = torch.zeros_like(LOGITS)
    assert deep_supervision_loss([LOGITS, flat], TARGET).item() == pytest.approx(HAND + FLAT, rel=1e-6)
    four = deep_supervision_loss([LOGITS, flat, flat, flat], TARGET)   # main output + three side outputs
    assert four.item() == pytest.approx(HAND + 3 * FLAT, rel=1e-6)     # a sum, not a mean


def test_side_outputs_must_match_the_label_size() -> None:
    # the network upsamples its side outputs itself; a smaller map is refused, never broadcast
    half = torch.zeros(1, 1, 1, 1)
    with pytest.raises(ValueError, match="size"):
        deep_supervision_loss([LOGITS, half], TARGET)
