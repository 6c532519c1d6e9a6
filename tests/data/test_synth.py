"""The synthetic generator: layout, determinism, labels that mark real change, the text-signal option."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmchange_core.data.layouts import detect_layout
from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset, synthesize_pair
from mmchange_core.errors import InputError
from mmchange_core.io.images import read_mask, read_rgb


def test_dataset_layout_determinism_and_resume(tmp_path: Path) -> None:
    config = SynthConfig(pairs=10, size=64, seed=4)
    report = make_synthetic_dataset(tmp_path / "ds", config)
    assert report.counts == {"train": 6, "val": 2, "test": 2} and report.written == 10
    layout = detect_layout(tmp_path / "ds")
    assert layout.kind == "split-folders"
    pair = layout.require_labels("test")[0]
    assert read_rgb(pair.image_a).shape == (64, 64, 3) and read_mask(pair.label).shape == (64, 64)
    manifest = json.loads((tmp_path / "ds" / "synth.json").read_text())
    assert manifest["config"]["seed"] == 4
    # same settings: completes what is missing, byte-identical pairs
    (tmp_path / "ds" / "test" / "label" / pair.label.name).unlink()
    before = pair.image_a.read_bytes()
    again = make_synthetic_dataset(tmp_path / "ds", config)
    assert (again.written, again.skipped) == (1, 9) and pair.image_a.read_bytes() == before
    with pytest.raises(InputError, match="other settings"):
        make_synthetic_dataset(tmp_path / "ds", SynthConfig(pairs=10, size=64, seed=5))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        make_synthetic_dataset(tmp_path / "other", config)
    with pytest.raises(InputError, match="at least 3"):
        SynthConfig(pairs=2)


def test_labels_mark_real_change_and_nuisance_is_present() -> None:
    config = SynthConfig(pairs=30, size=96, seed=1)
    inside, outside, empty = [], [], 0
    for i in range(30):
        p = synthesize_pair(i, config)
        a = synthesize_pair(i, config)
        assert np.array_equal(p.image_a, a.image_a) and np.array_equal(p.label, a.label)
        diff = np.abs(p.image_a.astype(int) - p.image_b.astype(int)).mean(axis=2)
        assert diff.mean() > 1.0  # unlabelled nuisance changes every pair
        if p.label.any():
            inside.append(diff[p.label].mean())
            outside.append(diff[~p.label].mean())
        else:
            empty += 1
    assert empty >= 1  # some pairs have no labelled change at all
    assert np.mean(inside) > 2 * np.mean(outside)


def _shift_ratio(text_signal: bool) -> float:
    """Mean land-cover share shift (basic captioner statistics) of changed over unchanged pairs."""
    from mmchange_core.text.captioners.basic import pixel_statistics

    config = SynthConfig(pairs=40, size=64, seed=5, text_signal=text_signal)
    changed, unchanged = [], []
    for i in range(config.pairs):
        p = synthesize_pair(i, config)
        a, b = pixel_statistics(p.image_a).shares(), pixel_statistics(p.image_b).shares()
        shift = sum(abs(a[k] - b[k]) for k in a)
        (changed if p.label.any() else unchanged).append(shift)
    return float(np.mean(changed) / np.mean(unchanged))


def test_text_signal_makes_land_cover_follow_the_change() -> None:
    with_signal, without = _shift_ratio(True), _shift_ratio(False)
    assert with_signal > 1.5
    assert with_signal > without + 0.5


def test_an_output_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="fifo exists and is not a folder; choose a new folder"):
        make_synthetic_dataset(fifo, SynthConfig(pairs=3, size=64))
