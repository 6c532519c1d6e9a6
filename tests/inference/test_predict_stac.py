"""``mmchange predict --stac``: a STAC Item per pair beside its mask, with the inputs, the model and every output."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.inference_helpers import image_only_checkpoint, scene, write_pair  # noqa: F401  (fixture)

pystac = pytest.importorskip("pystac")
rasterio = pytest.importorskip("rasterio")
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402
from rasterio.warp import transform_bounds  # noqa: E402

from mmchange_core import __version__  # noqa: E402
from mmchange_core.io.stac import stac_problems  # noqa: E402

UTM31 = CRS.from_epsg(32631)
TRANSFORM = from_origin(500000.0, 4600000.0, 10.0, 10.0)
H, W = 96, 128


def geotiff_pair(folder: Path, name: str = "t.tif", seed: int = 0) -> tuple[Path, Path]:
    """A small UTM GeoTIFF pair ``folder/A/name``, ``folder/B/name``."""
    paths = []
    for sub, image in zip(("A", "B"), scene(H, W, seed)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        path = folder / sub / name
        with rasterio.open(path, "w", driver="GTiff", height=H, width=W, count=3, dtype="uint8", crs=UTM31,
                           transform=TRANSFORM) as dst:
            dst.write(np.moveaxis(image, -1, 0))
        paths.append(path)
    return paths[0], paths[1]


def resolved_assets(item_path: Path) -> dict[str, Path]:
    item = pystac.Item.from_file(str(item_path))
    return {key: Path(asset.get_absolute_href()).resolve() for key, asset in item.assets.items()}


def test_pair_item_describes_inputs_model_and_every_output(image_only_checkpoint, tmp_path, cli) -> None:
    path_a, path_b = geotiff_pair(tmp_path)
    out = tmp_path / "out"
    args = ("predict", path_a, path_b, "-o", out / "change.tif", "--checkpoint", image_only_checkpoint,
            "--tile-size", "64", "--threshold", "0.5", "--prob", out / "prob.tif", "--vector", out / "change.geojson",
            "--stac", "--json")
    result = cli(*args)
    assert result.exit_code == 0, result.output
    item_path = out / "change.stac.json"
    assert json.loads(result.stdout)["stac"] == str(item_path)

    item = pystac.Item.from_file(str(item_path))
    assert resolved_assets(item_path) == {
        "image_a": path_a.resolve(), "image_b": path_b.resolve(), "mask": (out / "change.tif").resolve(),
        "prob": (out / "prob.tif").resolve(), "vector": (out / "change.geojson").resolve()}
    assert all(not Path(a.href).is_absolute() for a in item.assets.values())  # relative to the Item
    props = item.properties
    assert props["mmchange:checkpoint"] == str(image_only_checkpoint)  # as given on the command line
    assert props["mmchange:checkpoint_file"] == image_only_checkpoint.name
    assert (props["mmchange:backend"], props["mmchange:device"], props["mmchange:precision"]) == ("torch", "cpu", "fp32")
    assert props["mmchange:checkpoint_sha256"] == hashlib.sha256(image_only_checkpoint.read_bytes()).hexdigest()
    assert (props["mmchange:threshold"], props["mmchange:tile_size"]) == (0.5, 64)
    assert props["mmchange:mmchange_version"] == __version__ and "mmchange:overlap" in props
    bounds = (500000.0, 4600000.0 - 10 * H, 500000.0 + 10 * W, 4600000.0)
    np.testing.assert_allclose(item.bbox, transform_bounds(UTM31, "EPSG:4326", *bounds, densify_pts=21), atol=1e-7)
    assert props["proj:code"] == "EPSG:32631" and props["proj:shape"] == [H, W]
    assert stac_problems(item_path) == []

    before = item_path.read_bytes()  # a rerun skips the finished pair and keeps its Item
    again = cli(*args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["status"] == "skipped" and item_path.read_bytes() == before


def test_folder_mode_writes_one_item_per_pair_and_a_png_pair_has_no_footprint(image_only_checkpoint, tmp_path,
                                                                               cli) -> None:
    geotiff_pair(tmp_path, "x.tif")
    write_pair(tmp_path, 64, 64, name="p.png")  # a second pair, plain PNGs
    out = tmp_path / "out"
    result = cli("predict", tmp_path / "A", tmp_path / "B", "-o", out, "--checkpoint", image_only_checkpoint,
                 "--tile-size", "64", "--stac", "--json")
    assert result.exit_code == 0, result.output
    pairs = json.loads(result.stdout)["pairs"]
    assert sorted(Path(p["stac"]).name for p in pairs) == ["p.stac.json", "x.stac.json"]
    assert sorted(p.name for p in out.glob("*.stac.json")) == ["p.stac.json", "x.stac.json"]
    for name in ("x", "p"):
        assets = resolved_assets(out / f"{name}.stac.json")
        suffix = ".png" if name == "p" else ".tif"
        assert assets["mask"] == (out / f"{name}{suffix}").resolve()
        assert assets["image_a"] == (tmp_path / "A" / f"{name}{suffix}").resolve()
        assert stac_problems(out / f"{name}.stac.json") == []
    plain = json.loads((out / "p.stac.json").read_text())
    assert plain["geometry"] is None and "bbox" not in plain       # no georeference: no footprint
    assert json.loads((out / "x.stac.json").read_text())["geometry"]["type"] == "Polygon"


def test_report_is_an_asset_and_a_temporary_prob_is_not(image_only_checkpoint, tmp_path, cli) -> None:
    path_a, path_b = write_pair(tmp_path, 64, 64)
    out = tmp_path / "out"
    result = cli("predict", path_a, path_b, "-o", out / "m.png", "--checkpoint", image_only_checkpoint,
                 "--tile-size", "64", "--report", out / "r.html", "--stac")
    assert result.exit_code == 0, result.output
    assets = resolved_assets(out / "m.stac.json")
    assert set(assets) == {"image_a", "image_b", "mask", "report"}
    assert assets["report"] == (out / "r.html").resolve() and all(p.is_file() for p in assets.values())


def test_missing_pystac_fails_in_one_line_before_any_work(image_only_checkpoint, tmp_path, cli,
                                                          monkeypatch) -> None:
    path_a, path_b = geotiff_pair(tmp_path)
    monkeypatch.setitem(sys.modules, "pystac", None)  # import pystac -> ImportError
    out = tmp_path / "out"
    result = cli("predict", path_a, path_b, "-o", out / "change.tif", "--checkpoint", image_only_checkpoint,
                 "--stac")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert "pip install \"mmchange[cog]\"" in result.output and "--stac" in result.output
    assert not out.exists()


def test_an_output_on_the_item_path_is_refused_before_any_work(image_only_checkpoint, tmp_path, cli) -> None:
    path_a, path_b = geotiff_pair(tmp_path)
    out = tmp_path / "out"
    result = cli("predict", path_a, path_b, "-o", out / "change.tif", "--checkpoint", image_only_checkpoint,
                 "--vector", out / "change.stac.json", "--stac")
    assert result.exit_code != 0 and "change.stac.json" in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()
