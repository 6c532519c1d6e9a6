"""Class-aware synthetic pairs (``mmchange synth --classes``): palette labels of the classes in the written
``classes.yaml`` (new building, demolished building, vegetation lost), objects that really are what their class
says at each date, captions of each date that follow the changes, determinism, and the default output untouched."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmchange_core.data.layouts import detect_layout
from mmchange_core.data.synth import (
    CAPTIONS_FILE,
    CHANGE_CLASSES,
    CLASS_FILE,
    MANIFEST,
    SynthConfig,
    SynthSeriesConfig,
    make_synthetic_dataset,
    synthesize_pair,
)
from mmchange_core.errors import InputError
from mmchange_core.io.caption_file import CaptionFile
from mmchange_core.io.classes import load_class_file
from tests.cli_helpers import assert_cli_error

SMALL = {"pairs": 6, "size": 64, "seed": 2, "classes": True}
NEW, DEMOLISHED, LOST = 1, 2, 3


def _label(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "P"  # a palette PNG: the index is the value, the palette the classes' colours
        return np.asarray(img)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_written_labels_hold_the_class_file_values_and_every_class(tmp_path: Path) -> None:
    report = make_synthetic_dataset(tmp_path / "ds", SynthConfig(**SMALL))
    root = tmp_path / "ds"
    scheme = load_class_file(root / CLASS_FILE)  # the class file mmchange train --classes reads
    assert scheme == CHANGE_CLASSES
    assert [(c.value, c.name) for c in scheme.classes] == [
        (0, "no change"), (1, "new building"), (2, "demolished building"), (3, "vegetation lost")]
    layout = detect_layout(root)
    pairs = [p for split in ("train", "val", "test") for p in layout.require_labels(split)]
    assert len(pairs) == 6
    found: set[int] = set()
    for pair in pairs:
        label = _label(pair.label)
        values = set(np.unique(label).tolist())
        assert values <= set(scheme.values)
        assert len(values - {0}) >= 2  # two or three change classes in every pair
        found |= values
        assert scheme.labels_to_index(label, pair.label).shape == (64, 64)
        with Image.open(pair.label) as img:
            assert img.getpalette()[3 * LOST:3 * LOST + 3] == list(scheme.colours[LOST])
    assert found == {0, NEW, DEMOLISHED, LOST}
    assert set(report.class_fractions) == {"new building", "demolished building", "vegetation lost"}
    assert all(share > 0.01 for share in report.class_fractions.values())  # reasonably balanced
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["config"]["classes"] is True and manifest["classes"] == CLASS_FILE


def test_objects_are_what_their_class_says_at_each_date() -> None:
    config = SynthConfig(**SMALL)
    sizes: dict[int, list[int]] = {NEW: [], DEMOLISHED: [], LOST: []}
    inside, outside = [], []
    for index in range(6):
        pair = synthesize_pair(index, config)
        label, maps = pair.label, pair.maps
        new, demolished, lost = (label == NEW), (label == DEMOLISHED), (label == LOST)
        # a new building is not a building at A and is one at B; a demolished one the reverse
        assert not (maps["building_A"] & new).any() and maps["building_B"][new].all()
        assert maps["building_A"][demolished].all() and not (maps["building_B"] & demolished).any()
        # vegetation lost: vegetation at A, not at B, never a building
        assert maps["vegetation_A"][lost].all() and not (maps["vegetation_B"] & lost).any()
        assert not ((maps["building_A"] | maps["building_B"]) & lost).any()
        # and the pixels show it: the images change more inside the labels than outside (where only nuisance is)
        diff = np.abs(pair.image_a.astype(int) - pair.image_b.astype(int)).mean(axis=2)
        assert diff[label > 0].mean() > 1.5 * diff[label == 0].mean()
        inside.append(diff[label > 0].mean())
        outside.append(diff[label == 0].mean())
        for change in pair.info["changes"]:
            sizes[change["value"]].append(change["pixels"])
    assert np.mean(inside) > 2 * np.mean(outside)
    # every object is large enough to learn at 64 px (at least about 8 x 8)
    assert all(sizes.values()) and min(min(v) for v in sizes.values()) >= 60


def _number(caption: str, what: str) -> int:
    match = re.search(rf"(\d+) {what}", caption)
    return int(match.group(1)) if match else 0


def test_captions_describe_each_date_and_follow_the_changes(tmp_path: Path) -> None:
    make_synthetic_dataset(tmp_path / "ds", SynthConfig(**SMALL))
    root = tmp_path / "ds"
    captions = CaptionFile.load(root / CAPTIONS_FILE)  # the mmchange predict --captions format
    config = SynthConfig(**SMALL)
    for index in range(6):
        split = config.split_of(index)
        caption_a, caption_b = captions.pair(root / split / "A" / f"{index:04d}.png",
                                             root / split / "B" / f"{index:04d}.png")
        info = synthesize_pair(index, config).info
        assert (caption_a, caption_b) == (info["captions"]["A"], info["captions"]["B"])
        meta = json.loads((root / split / "meta" / f"{index:04d}.json").read_text())
        assert meta["captions"] == {"A": caption_a, "B": caption_b}
        assert caption_a.startswith("an aerial image of a suburb with ") and caption_a != caption_b
        buildings_a = _number(caption_a, "building")
        buildings_b = _number(caption_b, "building")
        assert buildings_a == info["buildings"]["A"] == info["static"] + info["demolished"]
        assert buildings_b == buildings_a - info["demolished"] + info["new"]
        assert _number(caption_b, "demolition site") == info["demolished"]
        lost = info["vegetation_lost"]
        assert _number(caption_b, "cleared plot") == lost
        trees_a = _number(caption_a, "patch") if "no trees" not in caption_a else 0
        trees_b = _number(caption_b, "patch") if "no trees" not in caption_b else 0
        assert trees_a - trees_b == lost and "cleared plot" not in caption_a and "demolition" not in caption_a


def test_deterministic_per_seed_and_resumable(tmp_path: Path) -> None:
    config = SynthConfig(**SMALL)
    first, again = synthesize_pair(1, config), synthesize_pair(1, config)
    assert np.array_equal(first.image_a, again.image_a) and np.array_equal(first.label, again.label)
    assert first.info == again.info
    other = synthesize_pair(1, SynthConfig(**{**SMALL, "seed": 3}))
    assert not np.array_equal(first.label, other.label)
    make_synthetic_dataset(tmp_path / "one", config)
    make_synthetic_dataset(tmp_path / "two", config)
    written = _files(tmp_path / "one")
    assert written == _files(tmp_path / "two")
    (tmp_path / "one" / "val" / "label" / "0004.png").unlink()
    (tmp_path / "one" / CAPTIONS_FILE).unlink()
    resumed = make_synthetic_dataset(tmp_path / "one", config)
    assert (resumed.written, resumed.skipped) == (1, 5) and _files(tmp_path / "one") == written
    with pytest.raises(InputError, match="other settings"):
        make_synthetic_dataset(tmp_path / "one", SynthConfig(pairs=6, size=64, seed=2))


def test_the_default_output_has_no_classes() -> None:
    config = SynthConfig(pairs=3, size=64)
    assert "classes" not in config.record()  # the manifest of a default dataset is as before
    pair = synthesize_pair(0, config)
    assert pair.label.dtype == np.bool_ and pair.maps == {} and "captions" not in pair.info


@pytest.mark.parametrize(("make", "message"), [
    (lambda: SynthSeriesConfig(pairs=3, size=64, dates=3, classes=True), "series"),
    (lambda: SynthConfig(pairs=3, size=64, classes=True, text_signal=True), "leave --text-signal out"),
])
def test_bad_combinations_are_refused_in_one_line(make, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_multispectral_class_pairs_share_the_rgb_labels(tmp_path: Path) -> None:
    pytest.importorskip("rasterio")
    config = SynthConfig(pairs=3, size=64, seed=2, classes=True, bands=4)
    make_synthetic_dataset(tmp_path / "ms", config)
    root = tmp_path / "ms"
    rgb = synthesize_pair(0, SynthConfig(pairs=3, size=64, seed=2, classes=True))
    assert np.array_equal(_label(root / "train" / "label" / "0000.png"), rgb.label)  # the same places
    meta = json.loads((root / "train" / "meta" / "0000.json").read_text())
    assert meta["bands"] == 4 and meta["captions"] == rgb.info["captions"]
    assert {c["kind"] for c in meta["changes"]} <= {"new", "demolished", "vegetation_lost"}
    assert "train/A/0000.tif" in CaptionFile.load(root / CAPTIONS_FILE).captions


def test_cli_classes(cli, tmp_path: Path) -> None:
    result = cli("synth", tmp_path / "ds", "--classes", "--pairs", 3, "--size", 64, "--seed", 5, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert Path(summary["class_file"]) == tmp_path / "ds" / CLASS_FILE
    assert set(summary["class_fractions"]) == {"new building", "demolished building", "vegetation lost"}
    assert load_class_file(tmp_path / "ds" / CLASS_FILE) == CHANGE_CLASSES
    assert set(np.unique(_label(tmp_path / "ds" / "test" / "label" / "0002.png")).tolist()) <= {0, 1, 2, 3}
    plain = cli("synth", tmp_path / "plain", "--classes", "--pairs", 3, "--size", 64)
    assert plain.exit_code == 0 and "vegetation lost" in plain.stdout and "classes.yaml" in plain.stdout
    assert_cli_error(cli("synth", tmp_path / "series", "--classes", "--dates", 3, "--pairs", 3, "--size", 64),
                     "--classes", "--dates")
