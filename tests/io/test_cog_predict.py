"""End to end: predict on GeoTIFFs with nodata writes valid COGs whose nodata marks where the input had none."""

from __future__ import annotations

import numpy as np
import pytest

from tests.inference_helpers import image_only_checkpoint, scene  # noqa: F401  (fixture)

rasterio = pytest.importorskip("rasterio")
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from mmchange_core.inference.predict import PredictConfig, predict_pair  # noqa: E402
from mmchange_core.inference.settings import DetectorSettings
from mmchange_core.io.cog import validate_cog  # noqa: E402

UTM31 = CRS.from_epsg(32631)
TRANSFORM = from_origin(500000.0, 4600000.0, 10.0, 10.0)


def test_predict_writes_cogs_with_nodata_where_an_input_has_none(image_only_checkpoint, tmp_path) -> None:
    image_a, image_b = scene(200, 300)
    image_a = np.maximum(image_a, 1)
    image_a[:40] = 0                      # date A has no data in its first 40 rows (nodata = 0 in every band)
    image_b = np.maximum(image_b, 1)
    image_b[150:, 250:] = 0               # date B has none in a corner
    for sub, image in (("A", image_a), ("B", image_b)):
        (tmp_path / sub).mkdir()
        with rasterio.open(tmp_path / sub / "t.tif", "w", driver="GTiff", height=200, width=300, count=3,
                           dtype="uint8", crs=UTM31, transform=TRANSFORM, nodata=0) as dst:
            dst.write(np.moveaxis(image, -1, 0))
    expected_bad = np.zeros((200, 300), bool)
    expected_bad[:40] = True
    expected_bad[150:, 250:] = True

    out = tmp_path / "out"
    predict_pair(image_only_checkpoint, tmp_path / "A" / "t.tif", tmp_path / "B" / "t.tif", out / "t.tif",
                 prob=out / "p.tif", config=PredictConfig(detector=DetectorSettings(tile_size=128, threshold=0.5)))
    for name in ("t.tif", "p.tif"):
        assert validate_cog(out / name) == [], name
    with rasterio.open(out / "t.tif") as ds:
        assert ds.crs == UTM31 and ds.transform == TRANSFORM
        np.testing.assert_array_equal(ds.dataset_mask() == 0, expected_bad)
        assert (ds.read(1)[expected_bad] == 0).all() and set(np.unique(ds.read(1))) <= {0, 255}
    with rasterio.open(out / "p.tif") as ds:
        np.testing.assert_array_equal(np.isnan(ds.read(1)), expected_bad)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") and "stage" in p.name) == []
