"""The paper's learning-rate schedule against values worked out by hand.

Warm-up: ``0.1 + 0.9 * (it + 1) / 200`` for the first 200 iterations of epoch 0; then poly decay
``(1 - it / max_it) ** 0.9``, with ``max_it`` rounded up to whole epochs.
"""

from __future__ import annotations

import pytest
import torch

from mmchange_core.training.schedule import WarmupPolyLR, lr_factor, run_length

# the paper's run: 40,000 iterations, here with 1,000 iterations per epoch (40 whole epochs)
IPE, MAX_IT = 1000, 40_000


@pytest.mark.parametrize("it, expected", [
    (0, 0.1045),              # 0.1 + 0.9 * 1 / 200: the first step already moves off 0.1
    (99, 0.55),               # 0.1 + 0.9 * 100 / 200: half-way through warm-up
    (199, 1.0),               # 0.1 + 0.9 * 200 / 200: the last warm-up step reaches the base rate
    (200, 0.995498873),       # (1 - 200 / 40000) ** 0.9 = 0.995 ** 0.9: poly takes over
    (20_000, 0.535886731),    # 0.5 ** 0.9: mid decay
    (39_999, 7.2134995e-5),   # (1 / 40000) ** 0.9: the last iteration
    (40_000, 0.0),            # the end
    (40_001, 0.0),            # past the end: clamped to 0 (a negative base would give a complex power)
])
def test_factor_at_hand_computed_iterations(it: int, expected: float) -> None:
    assert lr_factor(it, IPE, MAX_IT) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_warm_up_happens_in_epoch_zero_only() -> None:
    # 100 iterations per epoch, 1,000 in all: iteration 150 lies in epoch 1, so poly already applies
    epochs, max_it = run_length(1000, 100)
    assert lr_factor(99, 100, max_it) == pytest.approx(0.55)            # still warming up in epoch 0
    assert lr_factor(150, 100, max_it) == pytest.approx(0.863926972)    # (1 - 150 / 1000) ** 0.9 = 0.85 ** 0.9


@pytest.mark.parametrize("total, per_epoch, expected", [
    (40_000, 1000, (40, 40_000)),   # exact
    (40_001, 1000, (41, 41_000)),   # one iteration more costs a whole epoch
    (10, 4, (3, 12)),               # 2.5 epochs round up to 3
    (0, 5, (1, 5)),                 # at least one epoch
])
def test_run_length_rounds_up_to_whole_epochs(total: int, per_epoch: int, expected: tuple[int, int]) -> None:
    assert run_length(total, per_epoch) == expected


def test_run_length_refuses_empty_epochs() -> None:
    with pytest.raises(ValueError, match="iters_per_epoch"):
        run_length(10, 0)


def test_scheduler_steps_once_per_iteration_and_resumes_from_its_state() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.01)
    scheduler = WarmupPolyLR(optimizer, IPE, MAX_IT)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.1045)     # iteration 0
    for _ in range(99):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.55)       # iteration 99
    state = scheduler.state_dict()
    resumed_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    resumed = WarmupPolyLR(resumed_optimizer, IPE, MAX_IT)
    resumed.load_state_dict(state)
    for _ in range(100):
        optimizer.step()
        scheduler.step()
        resumed_optimizer.step()
        resumed.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 1.0)        # iteration 199
    assert resumed_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
