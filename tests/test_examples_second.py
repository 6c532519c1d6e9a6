"""examples/second_to_change.py: SECOND-style semantic maps of two dates into from-to change labels and a class file
that mmchange reads; the expected labels are worked out by hand from tiny maps."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmchange_core.io.classes import load_class_file
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "examples" / "second_to_change.py"

# 0 unchanged, 1 water, 2 ground, 3 low vegetation, 4 tree, 5 building, 6 playground
BEFORE_1 = np.array([[4, 4, 4, 0],
                     [4, 4, 4, 1],
                     [3, 3, 0, 0],
                     [3, 3, 5, 0]], np.uint8)
AFTER_1 = np.array([[5, 5, 5, 0],
                    [5, 5, 5, 6],
                    [2, 2, 0, 2],    # (2, 3): changed in the second map only: inconsistent, no change
                    [2, 2, 5, 0]], np.uint8)  # (3, 2): building in both: no change
BEFORE_2 = np.array([[4, 4, 0, 0],
                     [5, 5, 5, 0],
                     [0, 0, 0, 0],
                     [0, 0, 0, 0]], np.uint8)
AFTER_2 = np.array([[5, 5, 0, 0],
                    [2, 2, 2, 0],
                    [0, 0, 0, 0],
                    [0, 0, 0, 0]], np.uint8)
# by hand: value = 10 x from + to; tree -> building 45, low vegetation -> ground 32, water -> playground 16,
# building -> ground 52
EXPECTED_1 = np.array([[45, 45, 45, 0],
                       [45, 45, 45, 16],
                       [32, 32, 0, 0],
                       [32, 32, 0, 0]], np.uint8)
EXPECTED_2 = np.array([[45, 45, 0, 0],
                       [52, 52, 52, 0],
                       [0, 0, 0, 0],
                       [0, 0, 0, 0]], np.uint8)
# pixels over both pairs: 45: 8, 32: 4, 52: 3, 16: 1; --top 2 keeps 45 and 32, the rest is other change (1)
TOP_2 = {1: np.where(np.isin(EXPECTED_1, (16, 52)), 1, EXPECTED_1),
         2: np.where(np.isin(EXPECTED_2, (16, 52)), 1, EXPECTED_2)}

SECOND_COLOURS = ((255, 255, 255), (0, 0, 255), (128, 128, 128), (0, 128, 0), (0, 255, 0), (128, 0, 0), (255, 0, 0))


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("second_to_change", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _maps(folder: Path) -> tuple[Path, Path]:
    """Pair 1 as grey PNGs, pair 2 as SECOND's RGB colours (first date) and a palette PNG (second date)."""
    label1, label2 = folder / "label1", folder / "label2"
    label1.mkdir(parents=True)
    label2.mkdir(parents=True)
    Image.fromarray(BEFORE_1).save(label1 / "1.png")
    Image.fromarray(AFTER_1).save(label2 / "1.png")
    Image.fromarray(np.array(SECOND_COLOURS, np.uint8)[BEFORE_2]).save(label1 / "2.png")
    palette = Image.fromarray(AFTER_2)
    palette.putpalette([c for rgb in SECOND_COLOURS for c in rgb])
    palette.save(label2 / "2.png")
    return label1, label2


def _run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "P"
        return np.asarray(img)


def test_from_to_values_by_hand(example) -> None:
    values, inconsistent = example.from_to(BEFORE_1, AFTER_1)
    assert np.array_equal(values, EXPECTED_1) and inconsistent == 1
    values, inconsistent = example.from_to(BEFORE_2, AFTER_2)
    assert np.array_equal(values, EXPECTED_2) and inconsistent == 0
    assert example.PAIRS[45] == "tree -> building" and len(example.PAIRS) == 30


def test_every_occurring_pair_is_a_class(tmp_path: Path) -> None:
    label1, label2 = _maps(tmp_path)
    run = _run(label1, label2, tmp_path / "change")
    assert run.returncode == 0, run.stderr
    assert np.array_equal(_read(tmp_path / "change" / "1.png"), EXPECTED_1)
    assert np.array_equal(_read(tmp_path / "change" / "2.png"), EXPECTED_2)
    scheme = load_class_file(tmp_path / "change" / "classes.yaml")  # as mmchange train --classes reads it
    assert [(c.value, c.name) for c in scheme.classes] == [
        (0, "no change"), (16, "water -> playground"), (32, "low vegetation -> ground"), (45, "tree -> building"),
        (52, "building -> ground")]
    assert "1 pixel(s) changed in one map only" in run.stdout


def test_top_n_lumps_the_rest_into_other_change_and_like_reuses_the_classes(tmp_path: Path) -> None:
    label1, label2 = _maps(tmp_path)
    run = _run(label1, label2, tmp_path / "train", "--top", 2)
    assert run.returncode == 0, run.stderr
    for name, expected in TOP_2.items():
        label = _read(tmp_path / "train" / f"{name}.png")
        assert np.array_equal(label, expected)
    scheme = load_class_file(tmp_path / "train" / "classes.yaml")
    assert [(c.value, c.name) for c in scheme.classes] == [
        (0, "no change"), (32, "low vegetation -> ground"), (45, "tree -> building"), (1, "other change")]
    with Image.open(tmp_path / "train" / "1.png") as img:  # the palette holds the class file's colours
        assert tuple(img.getpalette()[3 * 45:3 * 45 + 3]) == scheme.colours[scheme.values.index(45)]
    # another split with the training split's classes: building -> ground is other change there too
    run = _run(label1 / "2.png", label2 / "2.png", tmp_path / "val", "--like", tmp_path / "train" / "classes.yaml")
    assert run.returncode == 0, run.stderr
    assert np.array_equal(_read(tmp_path / "val" / "2.png"), TOP_2[2])
    assert load_class_file(tmp_path / "val" / "classes.yaml") == scheme


def test_bad_maps_are_refused_in_one_line(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / "bad.png")
    Image.fromarray(BEFORE_1).save(tmp_path / "ok.png")
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "wide.png")
    for args, message in (((tmp_path / "bad.png", tmp_path / "ok.png"), "has value 7"),
                          ((tmp_path / "ok.png", tmp_path / "wide.png"), "same size"),
                          ((tmp_path / "ok.png", tmp_path / "ok.png", "--top", 0), "at least 1")):
        run = _run(*args[:2], tmp_path / "out", *args[2:])
        assert run.returncode == 2 and message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
