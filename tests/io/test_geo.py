"""GeoTIFF prediction: CRS and transform kept, grid checks, rasterio conversions, and life without rasterio."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from tests.cli_helpers import assert_cli_error
from tests.inference_helpers import image_only_checkpoint, scene  # noqa: F401  (fixture)

rasterio = pytest.importorskip("rasterio")
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

UTM31 = CRS.from_epsg(32631)
TRANSFORM = from_origin(500000.0, 4600000.0, 10.0, 10.0)


def write_geotiff(path, bands: np.ndarray, crs=UTM31, transform=TRANSFORM, **extra) -> None:
    """Write ``[count, H, W]`` bands as a GeoTIFF."""
    count, height, width = bands.shape
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=count, dtype=bands.dtype.name,
                       crs=crs, transform=transform, **extra) as dst:
        dst.write(bands)


@pytest.fixture
def geo_pair(tmp_path):
    image_a, image_b = scene(200, 300)
    for sub, image in (("A", image_a), ("B", image_b)):
        (tmp_path / sub).mkdir()
        write_geotiff(tmp_path / sub / "tile.tif", np.moveaxis(image, -1, 0))
    return tmp_path / "A" / "tile.tif", tmp_path / "B" / "tile.tif"


def test_geotiff_round_trip_keeps_crs_and_transform(image_only_checkpoint, geo_pair, tmp_path, cli) -> None:
    out = tmp_path / "out"
    result = cli("predict", *geo_pair, "-o", out, "--checkpoint", image_only_checkpoint, "--tile-size", "128",
                 "--threshold", "0.5", "--prob", out / "prob.tif", "--overlay", out / "overlay.tif",
                 "--vector", out / "changes.geojson", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["crs"] == "EPSG:32631" and data["outputs"]["mask"] == str(out / "tile.tif")
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning), rasterio.open(out / "overlay.tif") as ds:
        assert (ds.count, ds.dtypes[0], ds.crs) == (3, "uint8", None) and ds.width > 2 * 300   # a picture: A | B
    for name, dtype, count in (("tile.tif", "uint8", 1), ("prob.tif", "float32", 1)):
        with rasterio.open(out / name) as ds:
            assert ds.crs == UTM31 and ds.transform == TRANSFORM, name
            assert (ds.width, ds.height, ds.count, ds.dtypes[0]) == (300, 200, count, dtype)
            values = ds.read()
        if name == "tile.tif":
            mask = values[0]
            assert set(np.unique(mask)) <= {0, 255}
        elif name == "prob.tif":
            np.testing.assert_array_equal(mask == 255, values[0] > 0.5)
    collection = json.loads((out / "changes.geojson").read_text())
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32631"
    for feature in collection["features"]:
        ring = np.asarray(feature["geometry"]["coordinates"][0])
        assert (500000 <= ring[:, 0]).all() and (ring[:, 0] <= 503000).all()
        assert (4598000 <= ring[:, 1]).all() and (ring[:, 1] <= 4600000).all()
        assert feature["properties"]["area"] == feature["properties"]["pixels"] * 100.0   # m^2
    assert sum(f["properties"]["pixels"] for f in collection["features"]) == int((mask == 255).sum())


@pytest.mark.parametrize("what", ["crs", "transform"])
def test_different_grids_are_refused(what, image_only_checkpoint, geo_pair, tmp_path, cli) -> None:
    other = tmp_path / "other.tif"
    with rasterio.open(geo_pair[1]) as src:
        bands = src.read()
    if what == "crs":
        write_geotiff(other, bands, crs=CRS.from_epsg(32632))
        expected = ("different CRS", "EPSG:32631", "EPSG:32632")
    else:
        write_geotiff(other, bands, transform=from_origin(500020.0, 4600000.0, 10.0, 10.0))
        expected = ("different geotransforms",)
    result = cli("predict", geo_pair[0], other, "-o", tmp_path / "m.tif", "--checkpoint", image_only_checkpoint)
    assert_cli_error(result, *expected)


def test_rasterio_inputs_are_converted_with_one_warning_each(image_only_checkpoint, tmp_path, cli) -> None:
    image_a, image_b = scene(96, 96)
    write_geotiff(tmp_path / "gray16.tif", (image_a[None, ..., 0].astype(np.uint16) * 200))
    write_geotiff(tmp_path / "gray16b.tif", (image_b[None, ..., 0].astype(np.uint16) * 200))
    rgba = np.concatenate([np.moveaxis(image_b, -1, 0), np.full((1, 96, 96), 255, np.uint8)])
    write_geotiff(tmp_path / "rgba.tif", rgba, photometric="RGB", alpha="YES")
    write_geotiff(tmp_path / "rgb.tif", np.moveaxis(image_a, -1, 0), photometric="RGB")
    result = cli("predict", tmp_path / "gray16.tif", tmp_path / "gray16b.tif", "-o", tmp_path / "m.tif",
                 "--checkpoint", image_only_checkpoint)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning:") == 3, result.stderr   # grey A, grey B, and the one radiometric rule
    assert result.stderr.count("grayscale image converted to RGB") == 2
    assert "uint16 data scaled to 8 bits by the joint radiometric rule" in result.stderr
    result = cli("predict", tmp_path / "rgb.tif", tmp_path / "rgba.tif", "-o", tmp_path / "m2.tif",
                 "--checkpoint", image_only_checkpoint)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning:") == 1 and "RGBA image converted to RGB" in result.stderr, result.stderr
    from mmchange_core.io.raster import open_source

    with open_source(tmp_path / "gray16.tif") as source:
        rows = source.read_rows(0, 96)
    assert rows.dtype == np.uint8 and rows.shape == (96, 96, 3) and rows.max() == 255 and rows.min() == 0


def test_dates_of_different_data_types_are_refused(image_only_checkpoint, tmp_path, cli) -> None:
    image_a, image_b = scene(96, 96)
    write_geotiff(tmp_path / "gray16.tif", (image_a[None, ..., 0].astype(np.uint16) * 200))
    write_geotiff(tmp_path / "rgb.tif", np.moveaxis(image_b, -1, 0), photometric="RGB")
    result = cli("predict", tmp_path / "gray16.tif", tmp_path / "rgb.tif", "-o", tmp_path / "m.tif",
                 "--checkpoint", image_only_checkpoint)
    assert_cli_error(result, "rgb.tif holds uint8 values but gray16.tif holds uint16", "same data type")
    assert not (tmp_path / "m.tif").exists()


def test_without_rasterio_geotiff_names_the_extra_and_plain_images_still_work(
        image_only_checkpoint, geo_pair, tmp_path, cli, monkeypatch) -> None:
    image_a, image_b = scene(64, 64)
    Image.fromarray(image_a).save(tmp_path / "plain_a.tif")
    Image.fromarray(image_b).save(tmp_path / "plain_b.tif")
    monkeypatch.setitem(sys.modules, "rasterio", None)    # as if the geo extra were not installed
    result = cli("predict", *geo_pair, "-o", tmp_path / "m.tif", "--checkpoint", image_only_checkpoint)
    assert_cli_error(result, 'pip install "mmchange[geo]"', "tile.tif", "rasterio is not installed")
    from mmchange_core.errors import InputError
    from mmchange_core.io.raster import open_source

    with pytest.raises(InputError, match=r'pip install "mmchange\[geo\]"'):
        open_source(geo_pair[0])
    out = tmp_path / "plain"
    result = cli("predict", tmp_path / "plain_a.tif", tmp_path / "plain_b.tif", "-o", out / "m.tif",
                 "--checkpoint", image_only_checkpoint, "--threshold", "0.5", "--vector", out / "v.geojson")
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(out / "m.tif"))
    assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
    features = json.loads((out / "v.geojson").read_text())["features"]
    assert sum(f["properties"]["pixels"] for f in features) == int((mask == 255).sum())


def test_geotiff_is_streamed_in_strips(image_only_checkpoint, geo_pair, tmp_path, monkeypatch) -> None:
    """Windows are read through rasterio strip by strip: never the whole raster at full resolution."""
    from mmchange_core.inference.predict import PredictConfig, predict_pair
    from mmchange_core.inference.settings import DetectorSettings
    from mmchange_core.data.windows import TileGrid
    from mmchange_core.io.raster import RasterioSource

    reads = []
    original = RasterioSource._read

    def spy(self, window, out_shape=None):
        data = original(self, window, out_shape)
        reads.append(data.shape[:2])
        return data

    monkeypatch.setattr(RasterioSource, "_read", spy)
    predict_pair(image_only_checkpoint, *geo_pair, tmp_path / "m.tif", prob=tmp_path / "p.tif",
                 config=PredictConfig(detector=DetectorSettings(tile_size=128, overlap=32)))
    rows = TileGrid.plan(200, 300, 128, 32).rows
    assert reads == [(128, 300)] * (2 * rows)     # one 128-row strip per window row and date, nothing else
