"""The library API: ``ChangeDetector.from_checkpoint(...).predict(a, b)`` equals ``mmchange predict``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import mmchange_core
from mmchange_core.errors import InputError, MMChangeError
from mmchange_core.io.images import read_mask
from tests.inference_helpers import image_only_checkpoint, scene, write_pair  # noqa: F401 (fixture)


def test_predict_takes_paths_pil_and_arrays_and_equals_the_cli(image_only_checkpoint, tmp_path, cli) -> None:
    path_a, path_b = write_pair(tmp_path, 150, 221)
    detector = mmchange_core.ChangeDetector.from_checkpoint(image_only_checkpoint, device="cpu", tile_size=64)
    from_paths = detector.predict(path_a, path_b)
    assert from_paths.probability.shape == from_paths.mask.shape == (150, 221)
    assert from_paths.probability.dtype == np.float32 and from_paths.mask.dtype == np.bool_
    assert from_paths.georef is None and from_paths.threshold == detector.threshold == 0.5
    np.testing.assert_array_equal(from_paths.mask, from_paths.probability > 0.5)

    result = cli("predict", path_a, path_b, "-o", tmp_path / "mask.png", "-c", image_only_checkpoint,
                 "--tile-size", "64", "--device", "cpu")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.png"), from_paths.mask)

    image_a, image_b = Image.open(path_a), Image.open(path_b)
    from_pil = detector.predict(image_a, image_b)
    from_arrays = detector.predict(np.asarray(image_a), np.asarray(image_b))
    np.testing.assert_array_equal(from_pil.probability, from_paths.probability)
    np.testing.assert_array_equal(from_arrays.probability, from_paths.probability)
    np.testing.assert_array_equal(detector.probabilities(np.asarray(image_a), np.asarray(image_b)),
                                  from_paths.probability)


def test_predict_keeps_the_georeference(image_only_checkpoint, tmp_path) -> None:
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    transform = from_origin(500000.0, 4100000.0, 0.5, 0.5)
    paths = []
    for name, image in zip("ab", scene(96, 128)):
        path = tmp_path / f"{name}.tif"
        with rasterio.open(path, "w", driver="GTiff", height=96, width=128, count=3, dtype="uint8",
                           crs="EPSG:32633", transform=transform) as dst:
            dst.write(image.transpose(2, 0, 1))
        paths.append(path)
    result = mmchange_core.ChangeDetector.from_checkpoint(image_only_checkpoint, device="cpu").predict(*paths)
    assert result.georef is not None and "32633" in result.georef.crs_name()
    assert tuple(result.georef.transform)[:6] == tuple(transform)[:6]


def test_bad_inputs_are_one_line_errors(image_only_checkpoint) -> None:
    detector = mmchange_core.ChangeDetector.from_checkpoint(image_only_checkpoint, device="cpu")
    a, b = scene(64, 64)
    with pytest.raises(InputError, match="size mismatch"):
        detector.predict(a, b[:32])
    with pytest.raises(InputError, match="uint8"):
        detector.predict(a.astype(np.float32), b)
    with pytest.raises(MMChangeError, match="multiple of 32"):
        mmchange_core.ChangeDetector.from_checkpoint(image_only_checkpoint, device="cpu", tile_size=100)
