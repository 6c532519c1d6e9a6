"""Change labels of every format real datasets use are read as the intended mask, by one function."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from mmchange_core.data.dataset import ChangeDetectionDataset, read_labelled_pair
from mmchange_core.data.layouts import detect_layout
from mmchange_core.errors import InputError
from mmchange_core.evaluation.evaluate import evaluate
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.io.images import read_mask
from mmchange_core.models import build_model
from tests.data_helpers import write_image


def _grey(values: tuple[int, int], dtype: type = np.uint8) -> Callable[[np.ndarray, Path], Path]:
    def write(mask: np.ndarray, folder: Path) -> Path:
        path = folder / f"grey_{values[0]}_{values[1]}_{np.dtype(dtype).name}.png"
        Image.fromarray(np.where(mask, values[1], values[0]).astype(dtype)).save(path)
        return path
    return write


def _one_bit(mask: np.ndarray, folder: Path) -> Path:
    Image.fromarray(mask).convert("1").save(folder / "bit.png")
    return folder / "bit.png"


def _palette(colours: list[int]) -> Callable[[np.ndarray, Path], Path]:
    def write(mask: np.ndarray, folder: Path) -> Path:
        image = Image.fromarray(mask.astype(np.uint8), "P")
        image.putpalette(colours)
        image.save(folder / f"palette_{len(colours)}_{colours[3]}.png")
        return folder / f"palette_{len(colours)}_{colours[3]}.png"
    return write


def _rgb(colour: tuple[int, int, int], alpha: bool = False) -> Callable[[np.ndarray, Path], Path]:
    def write(mask: np.ndarray, folder: Path) -> Path:
        rgb = np.zeros((*mask.shape, 4 if alpha else 3), np.uint8)
        rgb[mask, :3] = colour
        if alpha:
            rgb[..., 3] = 255
        path = folder / f"rgb_{'_'.join(map(str, colour))}_{alpha}.png"
        Image.fromarray(rgb).save(path)
        return path
    return write


def _tiff_pillow(mask: np.ndarray, folder: Path) -> Path:
    Image.fromarray(mask.astype(np.float32)).save(folder / "float.tif")
    return folder / "float.tif"


WRITERS = {
    "grey 0/255": _grey((0, 255)), "grey 0/1": _grey((0, 1)), "grey 1/2 (OSCD)": _grey((1, 2)),
    "16-bit 0/65535": _grey((0, 65535), np.uint16), "16-bit 0/1": _grey((0, 1), np.uint16), "1-bit": _one_bit,
    "palette black/white": _palette([0, 0, 0, 255, 255, 255]), "palette black/red": _palette([0, 0, 0, 255, 0, 0]),
    "RGB white": _rgb((255, 255, 255)), "RGB red": _rgb((255, 0, 0)), "RGBA white": _rgb((255, 255, 255), True),
    "float TIFF 0/1": _tiff_pillow,
}


def _geotiff(dtype: str, values: tuple[int, int], **profile) -> Callable[[np.ndarray, Path], Path]:
    def write(mask: np.ndarray, folder: Path) -> Path:
        rasterio = pytest.importorskip("rasterio")
        from rasterio.crs import CRS
        from rasterio.transform import from_origin

        path = folder / f"geo_{dtype}.tif"
        with rasterio.open(path, "w", driver="GTiff", height=mask.shape[0], width=mask.shape[1], count=1, dtype=dtype,
                           crs=CRS.from_epsg(32631), transform=from_origin(5e5, 4.6e6, 10, 10), **profile) as dst:
            dst.write(np.where(mask, values[1], values[0]).astype(dtype)[None])
        return path
    return write


WRITERS.update({"GeoTIFF uint8 0/1 deflate": _geotiff("uint8", (0, 1), compress="deflate"),
                "GeoTIFF uint16 0/255 tiled lzw": _geotiff("uint16", (0, 255), compress="lzw", tiled=True,
                                                           blockxsize=16, blockysize=16)})

MASKS = arrays(np.bool_, st.tuples(st.integers(1, 40), st.integers(1, 40)))


@pytest.mark.parametrize("fmt", WRITERS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mask=MASKS)
def test_every_label_format_reads_as_the_intended_mask(fmt: str, mask: np.ndarray, tmp_path: Path) -> None:
    path = WRITERS[fmt](mask, tmp_path)
    got = read_mask(path)
    assert got.dtype == np.bool_ and got.shape == mask.shape
    if fmt == "grey 1/2 (OSCD)" and not mask.any():
        assert got.all()  # a single non-zero value is change: a 1/2-coded dataset says --change-value 2
        np.testing.assert_array_equal(read_mask(path, change_value=2), mask)
        return
    np.testing.assert_array_equal(got, mask, err_msg=fmt)


def test_a_jpeg_label_is_split_at_128(tmp_path: Path) -> None:
    mask = np.zeros((64, 64), bool)
    mask[16:48, 8:40] = True
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "l.jpg", quality=90)
    assert np.asarray(Image.open(tmp_path / "l.jpg")).max() > 0  # really lossy values, not only 0/255
    np.testing.assert_array_equal(read_mask(tmp_path / "l.jpg"), mask)


@pytest.mark.parametrize("fmt", ["grey", "RGB"])
def test_more_than_two_values_name_the_file_and_values_and_change_value_picks_one(fmt: str, tmp_path: Path) -> None:
    classes = np.arange(16 * 16).reshape(16, 16) % 4
    path = tmp_path / "classes.png"
    if fmt == "grey":
        Image.fromarray(classes.astype(np.uint8)).save(path)
        shown, change_value = "0, 1, 2, 3", 2
    else:
        rgb = np.zeros((16, 16, 3), np.uint8)
        rgb[classes == 1] = (255, 0, 0)
        rgb[classes == 2] = (0, 255, 0)
        rgb[classes == 3] = (0, 0, 255)
        Image.fromarray(rgb).save(path)
        shown, change_value = "(0, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 0)", 255 * 256
    with pytest.raises(InputError) as info:
        read_mask(path)
    message = str(info.value)
    assert "classes.png" in message and f"4 distinct values ({shown})" in message and "--change-value" in message
    np.testing.assert_array_equal(read_mask(path, change_value=change_value), classes == 2)


def test_one_value_labels(tmp_path: Path) -> None:
    for value, change in ((0, False), (255, True), (1, True)):
        Image.fromarray(np.full((4, 5), value, np.uint8)).save(tmp_path / "c.png")
        np.testing.assert_array_equal(read_mask(tmp_path / "c.png"), np.full((4, 5), change))


@pytest.fixture(scope="module")
def label_variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One dataset (test split, 2 pairs) with the same labels stored as 0/255, 0/1, palette and RGB."""
    rng = np.random.default_rng(0)
    images = [(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
              for _ in range(2)]
    masks = [np.zeros((64, 64), bool) for _ in range(2)]
    masks[0][8:30, 10:50] = True
    masks[1][40:60, 0:20] = True
    roots = {}
    base = tmp_path_factory.mktemp("labels")
    for fmt in ("grey 0/255", "grey 0/1", "palette black/white", "RGB red"):
        root = base / fmt.replace(" ", "_").replace("/", "-")
        for i, ((a, b), mask) in enumerate(zip(images, masks)):
            write_image(root / "test" / "A" / f"{i}.png", a)
            write_image(root / "test" / "B" / f"{i}.png", b)
            (root / "test" / "label").mkdir(parents=True, exist_ok=True)
            WRITERS[fmt](mask, root / "test" / "label").rename(root / "test" / "label" / f"{i}.png")
        roots[fmt] = root
    return roots


def test_eval_and_training_samples_agree_across_label_formats(label_variants: dict[str, Path]) -> None:
    torch.manual_seed(0)
    detector = ChangeDetector(build_model("resnet18", "image-only"), device="cpu", tile_size=64)
    results = {fmt: evaluate(detector, detect_layout(root), "test", threshold=0.0)
               for fmt, root in label_variants.items()}
    reference = results["grey 0/255"]
    assert reference.stats.tp > 0   # threshold 0 predicts change everywhere: TP counts the label's change pixels
    for fmt, result in results.items():
        assert result.stats == reference.stats and result.metrics()["f1"] == reference.metrics()["f1"], fmt
    labels = {fmt: ChangeDetectionDataset(detect_layout(root), "test", 64).load(0)["label"]
              for fmt, root in label_variants.items()}
    for fmt, label in labels.items():
        assert torch.equal(label, labels["grey 0/255"]) and label.sum() > 0, fmt


def test_change_value_reaches_the_pairs(tmp_path: Path) -> None:
    classes = np.arange(32 * 32).reshape(32, 32) % 3
    rng = np.random.default_rng(1)
    for sub in ("A", "B"):
        write_image(tmp_path / sub / "x.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    write_image(tmp_path / "label" / "x.png", classes.astype(np.uint8))
    with pytest.raises(InputError, match="x.png has 3 distinct values \\(0, 1, 2\\)"):
        read_labelled_pair(detect_layout(tmp_path).pairs("all")[0])
    pair = detect_layout(tmp_path, change_value=1).pairs("all")[0]
    np.testing.assert_array_equal(read_labelled_pair(pair)[2], classes == 1)
