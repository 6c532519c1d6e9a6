"""``mmchange predict``: sliding-window exactness, any size, outputs, folders and bad input.

Tiny random-weight resnet18 checkpoints, small synthetic images in tmp folders, all on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmchange_core.data.normalize import normalize_batch
from mmchange_core.errors import InputError
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.io.caption_file import CaptionFile
from mmchange_core.io.images import read_mask
from mmchange_core.reporting.overlay import GAP, OUTLINE_COLOR, overlay_geometry
from mmchange_core.io.vector import polygonize_numpy
from tests.cli_helpers import assert_cli_error
from tests.inference_helpers import image_only_checkpoint, scene, write_pair  # noqa: F401 (fixture)


def direct_probabilities(predictor: ChangeDetector, image_a: np.ndarray, image_b: np.ndarray) -> np.ndarray:
    """One network call on the whole images (no tiling)."""
    to_batch = lambda im: normalize_batch(torch.from_numpy(im).permute(2, 0, 1)[None])  # noqa: E731
    return predictor.runner.probabilities(to_batch(image_a), to_batch(image_b))[0, 0].numpy()


def test_sliding_window_on_a_tile_sized_input_equals_direct_inference(image_only_checkpoint, tmp_path, cli) -> None:
    image_a, image_b = scene(256, 256)
    predictor = ChangeDetector.from_checkpoint(image_only_checkpoint, tile_size=256, overlap=64)
    direct = direct_probabilities(predictor, image_a, image_b)
    np.testing.assert_array_equal(predictor.probabilities(image_a, image_b), direct)
    # the same through the command line: float probabilities and the thresholded mask
    path_a, path_b = write_pair(tmp_path, 256, 256)
    result = cli("predict", path_a, path_b, "-o", tmp_path / "mask.png", "--checkpoint", image_only_checkpoint,
                 "--prob", tmp_path / "prob.tif", "--overlap", "64")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "prob.tif") as img:
        np.testing.assert_array_equal(np.asarray(img), direct)
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.png"), direct > 0.5)


def test_a_1000x700_input_works(image_only_checkpoint, tmp_path, cli) -> None:
    path_a, path_b = write_pair(tmp_path, 700, 1000)
    result = cli("predict", path_a, path_b, "-o", tmp_path / "out", "--checkpoint", image_only_checkpoint,
                 "--prob", tmp_path / "prob.tif", "--batch-size", "3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["width"], data["height"], data["windows"]) == (1000, 700, 15)
    mask = np.asarray(Image.open(data["outputs"]["mask"]))
    with Image.open(tmp_path / "prob.tif") as img:
        prob = np.asarray(img)
    assert mask.shape == prob.shape == (700, 1000) and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask == 255, prob > data["threshold"])
    assert data["changed_pixels"] == int((mask == 255).sum())
    assert np.isfinite(prob).all() and 0 <= prob.min() and prob.max() <= 1


def test_outputs_prob_overlay_vector(image_only_checkpoint, tmp_path, cli) -> None:
    path_a, path_b = write_pair(tmp_path, 240, 320)
    predictor = ChangeDetector.from_checkpoint(image_only_checkpoint, tile_size=128, overlap=32)
    image_a, image_b = (np.asarray(Image.open(p)) for p in (path_a, path_b))
    prob = predictor.probabilities(image_a, image_b)
    threshold = float(np.quantile(prob, 0.6))             # a structured mask from a random network
    out = tmp_path / "out"
    result = cli("predict", path_a, path_b, "-o", out / "mask.png", "--checkpoint", image_only_checkpoint,
                 "--tile-size", "128", "--overlap", "32", "--threshold", str(threshold), "--prob", out / "prob.png",
                 "--overlay", out / "overlay.png", "--vector", out / "changes.geojson", "--min-area", "20")
    assert result.exit_code == 0, result.output
    mask = read_mask(out / "mask.png")
    np.testing.assert_array_equal(mask, prob > threshold)
    assert 0.3 < mask.mean() < 0.5
    np.testing.assert_array_equal(np.asarray(Image.open(out / "prob.png")), np.rint(prob * 255).astype(np.uint8))
    overlay = np.asarray(Image.open(out / "overlay.png"))   # header, then A | B (320 px each, GAP apart), key
    top = next(t for t in range(overlay.shape[0] - 240) if (overlay[t, :320] == image_a[0]).all(axis=1).mean() > 0.5)
    body = overlay[top:top + 240]
    for half, image in ((body[:, :320], image_a), (body[:, 320 + GAP:640 + GAP], image_b)):
        drawn = (half != image).any(axis=2)
        assert drawn.any() and (drawn <= mask).all()           # outlines only on changed pixels
        assert (half[drawn] == OUTLINE_COLOR).all()
        assert not drawn[mask].all()                             # the interior is left as it was
    data = json.loads((out / "changes.geojson").read_text())
    assert "crs" not in data
    kept = sorted(p.pixels for p in polygonize_numpy(mask) if p.pixels >= 20)
    assert sorted(f["properties"]["pixels"] for f in data["features"]) == kept and kept
    coords = np.concatenate([np.asarray(f["geometry"]["coordinates"][0]) for f in data["features"]])
    assert coords.min() >= 0 and coords[:, 0].max() <= 320 and coords[:, 1].max() <= 240
    assert "polygons" in result.stdout


def test_folder_mode_matches_names_and_reports_failures(image_only_checkpoint, tmp_path, cli) -> None:
    write_pair(tmp_path, 64, 96, "one.png", seed=1)
    write_pair(tmp_path, 100, 70, "two.jpg", seed=2)
    Image.fromarray(scene(64, 64)[0]).save(tmp_path / "A" / "only_a.png")
    Image.fromarray(scene(64, 64)[0]).save(tmp_path / "B" / "only_b.png")
    result = cli("predict", tmp_path / "A", tmp_path / "B", "-o", tmp_path / "masks", "--checkpoint",
                 image_only_checkpoint, "--overlay", tmp_path / "overlays", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [p["name"] for p in data["pairs"]] == ["one", "two"]
    assert data["only_in_a"] == ["only_a.png"] and data["only_in_b"] == ["only_b.png"]
    assert read_mask(tmp_path / "masks" / "two.png").shape == (100, 70)
    shown_h, shown_w, _ = overlay_geometry(64, 96)             # small pairs are enlarged, A | B side by side
    assert np.asarray(Image.open(tmp_path / "overlays" / "one.png")).shape[1:] == (2 * shown_w + GAP, 3)
    assert "only_a.png: only in" in result.stderr
    # a pair of different sizes fails alone; the others are still predicted; exit code 1
    Image.fromarray(scene(64, 80)[0]).save(tmp_path / "A" / "three.png")
    Image.fromarray(scene(80, 64)[0]).save(tmp_path / "B" / "three.png")
    result = cli("predict", tmp_path / "A", tmp_path / "B", "-o", tmp_path / "masks2", "--checkpoint",
                 image_only_checkpoint)
    assert_cli_error(result, "1 of 3 pairs failed")
    assert "size mismatch" in result.stdout and "unmatched" in result.stdout
    assert sorted(p.name for p in (tmp_path / "masks2").iterdir()) == ["mmchange_manifest.jsonl", "one.png", "two.png"]


@pytest.fixture
def good_pair(tmp_path) -> tuple[Path, Path]:
    return write_pair(tmp_path, 64, 64)


@pytest.mark.parametrize("case", ["missing", "unreadable", "size", "threshold", "tile", "suffix", "captions",
                                  "overwrite"])
def test_bad_input_exits_non_zero_without_traceback(case, image_only_checkpoint, good_pair, tmp_path, cli) -> None:
    path_a, path_b = good_pair
    args = [path_a, path_b, "-o", tmp_path / "mask.png", "--checkpoint", image_only_checkpoint]
    expected: tuple[str, ...]
    if case == "missing":
        args[1] = tmp_path / "nope.png"
        expected = ("image not found", "nope.png")
    elif case == "unreadable":
        (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        args[0] = tmp_path / "broken.png"
        expected = ("cannot read image", "broken.png")
    elif case == "size":
        Image.fromarray(scene(48, 80)[1]).save(tmp_path / "small.png")
        args[1] = tmp_path / "small.png"
        expected = ("size mismatch", "64x64", "80x48")
    elif case == "threshold":
        args += ["--threshold", "1.5"]
        expected = ("config key 'detector.threshold' is 1.5; it must be strictly between 0 and 1",)
    elif case == "tile":
        args += ["--tile-size", "100"]
        expected = ("config key 'detector.tile_size' is 100; it must be a positive multiple of 32",)
    elif case == "suffix":
        args[3] = tmp_path / "mask.jpg"
        expected = ("mask.jpg: unsupported file type ('.jpg')", ".png, .tif, .tiff")
    elif case == "overwrite":
        args[3] = path_b
        expected = ("would overwrite the input", str(path_b))
    else:
        args[4:6] = ["--checkpoint", tmp_path / "missing.safetensors"]
        expected = ("checkpoint not found",)
    result = cli("predict", *args)
    assert_cli_error(result, *expected)


def test_grayscale_rgba_and_16bit_inputs_are_converted_with_a_warning(image_only_checkpoint, tmp_path, cli) -> None:
    image_a, image_b = scene(64, 64)
    Image.fromarray(image_a[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([image_b, np.full((64, 64), 255, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(image_b[..., 1].astype(np.uint16) * 250).save(tmp_path / "deep.png")
    Image.fromarray(image_a[..., 1].astype(np.uint16) * 200).save(tmp_path / "deep_a.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    for first, second, note, warnings in (("gray.png", "rgba.png", "alpha channel dropped", 2),
                                          ("deep_a.png", "deep.png", "scaled to 8 bits by the joint", 3)):
        result = cli("predict", tmp_path / first, tmp_path / second, "-o", tmp_path / "m.png",
                     "--checkpoint", image_only_checkpoint)
        assert result.exit_code == 0, result.output
        assert result.stderr.count("warning:") == warnings, result.stderr
        assert "grayscale image converted to RGB" in result.stderr and note in result.stderr
    mixed = cli("predict", tmp_path / "gray.png", tmp_path / "deep.png", "-o", tmp_path / "mixed.png",
                "--checkpoint", image_only_checkpoint)
    assert mixed.exit_code == 1 and "deep.png holds uint16 values but gray.png holds uint8" in mixed.output


def test_caption_file_lookup_and_errors(tmp_path) -> None:
    (tmp_path / "2019").mkdir()
    (tmp_path / "caps.yaml").write_text('before.png: "fields and a road"\nafter.png: "houses and a road"\n'
                                        '2019/x.png: "a lake"\n"2020/x.png": "a dry lake bed"\n', encoding="utf-8")
    captions = CaptionFile.load(tmp_path / "caps.yaml")
    assert captions.pair("/data/before.png", "/data/after.png") == ("fields and a road", "houses and a road")
    assert captions.pair(tmp_path / "2019" / "x.png", "/elsewhere/2020/x.png") == ("a lake", "a dry lake bed")
    (tmp_path / "same.json").write_text(json.dumps({"x.png": "one caption"}), encoding="utf-8")
    with pytest.raises(InputError, match="ambiguous"):
        CaptionFile.load(tmp_path / "same.json").pair("a/x.png", "b/x.png")
    with pytest.raises(InputError, match="no caption for .*missing.png"):
        captions.pair("before.png", "missing.png")
    (tmp_path / "bad.yaml").write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(InputError, match="must map image file names to captions"):
        CaptionFile.load(tmp_path / "bad.yaml")


def test_predict_on_real_oscd_pairs_of_different_sizes(image_only_checkpoint, real_data, tmp_path, cli) -> None:
    oscd = real_data / "OSCD-rgb"
    if not oscd.is_dir():
        pytest.skip(f"OSCD samples not found in {real_data}")
    names = ["bercy.png", "rennes.png"]                        # 395x360 and 339x563
    for sub in ("A", "B"):
        (tmp_path / sub).mkdir()
        for name in names:
            (tmp_path / sub / name).symlink_to(oscd / sub / name)
    result = cli("predict", tmp_path / "A", tmp_path / "B", "-o", tmp_path / "out", "--checkpoint",
                 image_only_checkpoint, "--json")
    assert result.exit_code == 0, result.output
    pairs = json.loads(result.stdout)["pairs"]
    assert len(pairs) == 2
    for pair in pairs:
        with Image.open(oscd / "label" / f"{pair['name']}.png") as label:
            assert (pair["width"], pair["height"]) == label.size
        assert read_mask(pair["outputs"]["mask"]).shape == (pair["height"], pair["width"])
