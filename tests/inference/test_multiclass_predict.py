"""``mmchange predict`` with a K-class network: the mask is the class map (palette PNG, or a COG with a colour
table and the class names), equal to the API bit for bit; the probability is the change probability; overlays,
polygons, summaries, reports and STAC Items are by class; a series writes class maps too; binary outputs keep
their form (0/255 grey masks, no class fields).

A tiny random-weight 4-class resnet18 image-only checkpoint (tile 64) on small synthetic pairs, CPU only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.inference.predict import PredictConfig, predict_pair
from mmchange_core.inference.settings import DetectorSettings
from mmchange_core.io.classes import ChangeClass, ClassScheme
from mmchange_core.models.checkpoint import CheckpointMeta, save_checkpoint
from mmchange_core.models.config import ModelConfig
from mmchange_core.models.mmchange import MMChange
from tests.inference_helpers import image_only_checkpoint, scene, write_pair  # noqa: F401  (fixture)

rasterio = pytest.importorskip("rasterio")
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

#: Non-contiguous values: the class map holds the class file's values, not the network's channel indices.
SCHEME = ClassScheme((ChangeClass(0, "no change", (0, 0, 0)), ChangeClass(1, "new building", (230, 25, 75)),
                      ChangeClass(2, "demolished building", (0, 130, 200)), ChangeClass(9, "new road", (60, 180, 75))))
H, W = 96, 128
UTM32 = CRS.from_epsg(32632)
TRANSFORM = from_origin(600000.0, 5000000.0, 2.0, 2.0)   # 2 m pixels: 4 m² each
SETTINGS = {"tile_size": 64, "overlap": 16, "batch_size": 4, "device": "cpu"}


def spread_classes(model: MMChange, meta: CheckpointMeta) -> None:
    """Aim the final 1x1 classifier of a random network at the spread of its input features over a synthetic scene
    (centred, along their first two principal axes), so that it predicts every change class somewhere: a random
    network's features share one large common part that would otherwise pick one class everywhere."""
    image_a, image_b = scene(H, W, 0)
    features: list[torch.Tensor] = []
    hook = model.decoder.cls.register_forward_hook(lambda module, args, out: features.append(args[0].detach()))
    try:
        ChangeDetector(model, meta, device="cpu", tile_size=64, overlap=16).decision_map(image_a, image_b)
    finally:
        hook.remove()
    flat = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]) for f in features])
    mean = flat.mean(0)
    axes = torch.linalg.svd(flat - mean, full_matrices=False)[2]
    weight = torch.stack([torch.zeros_like(axes[0]), axes[0], -axes[0], axes[1]])
    weight *= 3 / float(((flat - mean) @ axes[0]).std())
    with torch.no_grad():
        model.decoder.cls.weight.copy_(weight[:, :, None, None])
        model.decoder.cls.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]) - weight @ mean)


@pytest.fixture(scope="module")
def kclass_checkpoint(tmp_path_factory) -> Path:
    """A random 4-class resnet18 image-only checkpoint with the class file :data:`SCHEME` that predicts every class."""
    torch.manual_seed(0)
    config = ModelConfig("resnet18", "image-only", num_classes=len(SCHEME))
    meta = CheckpointMeta(model=config, classes=SCHEME, tile_size=64)
    model = MMChange(config)
    spread_classes(model, meta)
    path = tmp_path_factory.mktemp("kclass") / "k4.safetensors"
    save_checkpoint(path, model, meta)
    return path


def geotiff_pair(folder: Path, nodata_rows: int = 0) -> tuple[Path, Path]:
    """A UTM GeoTIFF pair; date A has no data (0) in its first ``nodata_rows`` rows."""
    paths = []
    image_a, image_b = scene(H, W, 2)
    image_a, image_b = np.maximum(image_a, 1), np.maximum(image_b, 1)
    image_a[:nodata_rows] = 0
    for sub, image in (("A", image_a), ("B", image_b)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        path = folder / sub / "t.tif"
        with rasterio.open(path, "w", driver="GTiff", height=H, width=W, count=3, dtype="uint8", crs=UTM32,
                           transform=TRANSFORM, nodata=0 if nodata_rows else None) as dst:
            dst.write(np.moveaxis(image, -1, 0))
        paths.append(path)
    return paths[0], paths[1]


def median_threshold(checkpoint: Path, path_a: Path, path_b: Path) -> float:
    """A threshold at the median change probability, so the random network's class map is neither empty nor full."""
    probability = ChangeDetector.from_checkpoint(checkpoint, **SETTINGS).predict(path_a, path_b).probability
    return float(np.quantile(probability, 0.5))


@pytest.fixture(scope="module")
def png_run(kclass_checkpoint, tmp_path_factory) -> dict:
    """One ``mmchange predict`` of a PNG pair with every output, and the API's prediction of the same pair."""
    from typer.testing import CliRunner

    from mmchange_cli.app import app

    folder = tmp_path_factory.mktemp("png_run")
    path_a, path_b = write_pair(folder, H, W)
    threshold = median_threshold(kclass_checkpoint, path_a, path_b)
    out = folder / "out"
    args = ["predict", path_a, path_b, "-o", out / "mask.png", "--checkpoint", kclass_checkpoint,
            "--tile-size", "64", "--overlap", "16", "--batch-size", "4", "--threshold", repr(threshold),
            "--prob", out / "prob.tif", "--overlay", out / "overlay.png", "--vector", out / "change.geojson",
            "--report", out / "report.html", "--stac", "--json"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    api = ChangeDetector.from_checkpoint(kclass_checkpoint, threshold=threshold, **SETTINGS).predict(path_a, path_b)
    return {"out": out, "result": json.loads(result.stdout), "api": api, "threshold": threshold}


def test_png_mask_is_a_palette_image_of_class_values_equal_to_the_api(png_run) -> None:
    with Image.open(png_run["out"] / "mask.png") as img:
        assert img.mode == "P"
        assert img.getpalette()[:3 * 256] == SCHEME.palette()
        assert json.loads(img.text["MMCHANGE_CLASSES"]) == SCHEME.to_dict()["classes"]
        classes = np.asarray(img)
    api = png_run["api"]
    assert api.classes is not None
    np.testing.assert_array_equal(classes, api.classes)         # predict = API, bit for bit
    assert classes.dtype == np.uint8 and set(np.unique(classes)) <= set(SCHEME.values)
    assert set(np.unique(classes)) == set(SCHEME.values)       # every change class, and no change
    assert (classes == 0).any()
    with rasterio.open(png_run["out"] / "prob.tif") as ds:      # the change probability, 1 - p(no change)
        np.testing.assert_array_equal(ds.read(1), api.probability)
    np.testing.assert_array_equal(classes > 0, api.probability > png_run["threshold"])
    assert png_run["result"]["changed_pixels"] == int(np.count_nonzero(classes))


def test_summary_has_the_area_of_each_class_adding_up_to_the_change(png_run) -> None:
    summary = png_run["result"]["summary"]
    classes = np.asarray(Image.open(png_run["out"] / "mask.png"))
    entries = summary["classes"]
    assert [e["value"] for e in entries] == [1, 2, 9] and [e["name"] for e in entries] == list(SCHEME.names[1:])
    for entry in entries:
        assert entry["pixels"] == int((classes == entry["value"]).sum())
        assert entry["area"] is None and entry["area_text"].endswith(("pixels", "pixel"))
        assert entry["percent"] == pytest.approx(100 * entry["pixels"] / classes.size)
    assert sum(e["pixels"] for e in entries) == summary["changed_pixels"] == png_run["result"]["changed_pixels"]
    assert "By class: " in summary["text"]
    for entry in entries:
        if entry["pixels"]:
            assert f"{entry['name']} {entry['area_text']}" in summary["text"]
    assert summary["largest"]["class_name"] in SCHEME.names[1:]


def test_polygons_carry_their_class_and_cover_each_class(png_run) -> None:
    classes = np.asarray(Image.open(png_run["out"] / "mask.png"))
    features = json.loads((png_run["out"] / "change.geojson").read_text())["features"]
    assert len(features) == png_run["result"]["polygons"] == png_run["result"]["summary"]["polygons"]
    for cls in SCHEME.change_classes:
        mine = [f for f in features if f["properties"]["class_value"] == cls.value]
        assert all(f["properties"]["class_name"] == cls.name for f in mine)
        assert sum(f["properties"]["pixels"] for f in mine) == int((classes == cls.value).sum())


def test_overlay_draws_each_class_in_its_colour_with_a_legend(png_run) -> None:
    overlay = np.asarray(Image.open(png_run["out"] / "overlay.png").convert("RGB"))
    key = overlay[-60:]                                         # the legend strip under the dates
    for cls in SCHEME.change_classes:
        assert (key == cls.colour).all(axis=2).any(), cls.name   # a swatch of every class
    body = overlay[:-60]
    present = [cls for cls in SCHEME.change_classes if (np.asarray(Image.open(png_run["out"] / "mask.png"))
                                                         == cls.value).any()]
    for cls in present:
        assert (body == cls.colour).all(axis=2).any(), cls.name  # its outlines
    assert not (body == (255, 0, 0)).all(axis=2).any()          # not the binary red outline


def test_stac_item_lists_the_classes_and_the_report_shows_them(png_run) -> None:
    item = json.loads((png_run["out"] / "mask.stac.json").read_text())
    assert "https://stac-extensions.github.io/classification/v2.0.0/schema.json" in item["stac_extensions"]
    listed = item["assets"]["mask"]["classification:classes"]
    assert [(c["value"], c["title"], c["color_hint"]) for c in listed] == [
        (0, "no change", "000000"), (1, "new building", "E6194B"), (2, "demolished building", "0082C8"),
        (9, "new road", "3CB44B")]
    assert all(c["name"].replace("_", "").isalnum() for c in listed)
    assert item["properties"]["mmchange:class_areas"] == png_run["result"]["summary"]["classes"]
    html = (png_run["out"] / "report.html").read_text()
    assert "predicted classes" in html and "changed: demolished building" in html


def test_geotiff_mask_is_a_cog_with_a_colour_table_class_names_and_nodata(kclass_checkpoint, tmp_path) -> None:
    from mmchange_core.io.cog import validate_cog

    path_a, path_b = geotiff_pair(tmp_path, nodata_rows=10)
    threshold = median_threshold(kclass_checkpoint, path_a, path_b)
    out = tmp_path / "out"
    result = predict_pair(kclass_checkpoint, path_a, path_b, out / "t.tif", prob=out / "p.tif",
                          vector=out / "t.geojson",
                          config=PredictConfig(detector=DetectorSettings(threshold=threshold, **SETTINGS), stac=True))
    api = ChangeDetector.from_checkpoint(kclass_checkpoint, threshold=threshold, **SETTINGS).predict(path_a, path_b)
    assert validate_cog(out / "t.tif") == []
    with rasterio.open(out / "t.tif") as ds:
        assert ds.crs == UTM32 and ds.transform == TRANSFORM and ds.dtypes[0] == "uint8"
        table = ds.colormap(1)
        for cls in SCHEME.classes:
            assert table[cls.value] == (*cls.colour, 255)
        tags = ds.tags()
        assert json.loads(tags["MMCHANGE_CLASSES"]) == SCHEME.to_dict()["classes"]
        assert tags["MMCHANGE_CLASS_9"] == "new road"
        classes, valid = ds.read(1), ds.dataset_mask() > 0
    assert not valid[:10].any() and valid[10:].all()            # no data in date A's first rows: nodata
    assert (classes[:10] == 0).all()
    np.testing.assert_array_equal(classes[10:], api.classes[10:])
    assert set(np.unique(classes)) <= set(SCHEME.values)
    summary = result.summary
    assert summary["area_unit"] == "m2"
    assert sum(e["pixels"] for e in summary["classes"]) == summary["changed_pixels"] == result.changed_pixels
    assert sum(e["area"] for e in summary["classes"]) == pytest.approx(summary["area"])
    for entry in summary["classes"]:
        assert entry["area"] == pytest.approx(4.0 * entry["pixels"])
    features = json.loads((out / "t.geojson").read_text())["features"]
    assert {f["properties"]["class_value"] for f in features} == {int(v) for v in np.unique(classes) if v}
    item = json.loads((out / "t.stac.json").read_text())
    assert [c["value"] for c in item["assets"]["mask"]["classification:classes"]] == [0, 1, 2, 9]


def test_binary_outputs_keep_their_form(image_only_checkpoint, tmp_path, cli) -> None:
    path_a, path_b = write_pair(tmp_path, 64, 96)
    threshold = median_threshold(image_only_checkpoint, path_a, path_b)
    out = tmp_path / "out"
    result = cli("predict", path_a, path_b, "-o", out / "mask.png", "--checkpoint", image_only_checkpoint,
                 "--tile-size", "64", "--overlap", "16", "--batch-size", "4", "--threshold", repr(threshold),
                 "--vector", out / "v.geojson", "--stac", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    with Image.open(out / "mask.png") as img:
        assert img.mode == "L" and set(np.unique(np.asarray(img))) == {0, 255} and not img.text
    assert "classes" not in data["summary"] and "By class" not in data["summary"]["text"]
    assert "class_name" not in data["summary"]["largest"]
    for feature in json.loads((out / "v.geojson").read_text())["features"]:
        assert set(feature["properties"]) == {"id", "area", "pixels"}
    item = json.loads((out / "mask.stac.json").read_text())
    assert "classification:classes" not in item["assets"]["mask"]
    assert "mmchange:class_areas" not in item["properties"]
    assert not any("classification" in uri for uri in item.get("stac_extensions", []))


def test_series_intervals_of_a_kclass_model_are_class_maps_equal_to_predict(kclass_checkpoint, tmp_path) -> None:
    from mmchange_core.inference.series import predict_series
    from tests.inference.test_series import write_series

    dates = ["2019-03-01", "2020-03-01", "2021-03-01"]
    paths = write_series(tmp_path / "in", dates, height=H, width=W)
    threshold = median_threshold(kclass_checkpoint, paths[0], paths[1])
    config = PredictConfig(detector=DetectorSettings(threshold=threshold, **SETTINGS), stac=True)
    result = predict_series(kclass_checkpoint, paths, tmp_path / "series", config=config)
    detector = ChangeDetector.from_checkpoint(kclass_checkpoint, threshold=threshold, **SETTINGS)
    counts = np.zeros((H, W), np.uint8)
    for item, (i, j) in zip([*result.intervals, result.first_to_last], [(0, 1), (1, 2), (0, 2)]):
        with Image.open(item.mask) as img:
            assert img.mode == "P" and img.getpalette()[:768] == SCHEME.palette()
            classes = np.asarray(img)
        np.testing.assert_array_equal(classes, detector.predict(paths[i], paths[j]).classes)
        assert sum(e["pixels"] for e in item.summary["classes"]) == item.changed_pixels
        if item.kind == "interval":
            counts += classes > 0
    np.testing.assert_array_equal(np.asarray(Image.open(result.outputs["change_count"])), counts)
    item = json.loads(Path(result.stac).read_text())
    assert [c["value"] for c in item["assets"]["interval_1"]["classification:classes"]] == [0, 1, 2, 9]


def test_predict_eval_and_the_api_give_one_class_map(kclass_checkpoint, tmp_path, cli) -> None:
    """predict = eval --save-pred = API, bit for bit, for a K-class model (folder mode, odd sizes)."""
    rng = np.random.default_rng(4)
    root = tmp_path / "ds"
    for name, (h, w) in (("odd.png", (90, 131)), ("thin.png", (70, 45))):
        image_a, image_b = scene(h, w, len(name))
        label = rng.choice(np.asarray(SCHEME.values, np.uint8), (h, w))
        for sub, array in (("A", image_a), ("B", image_b), ("label", label)):
            (root / "test" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / "test" / sub / name)
    threshold = repr(median_threshold(kclass_checkpoint, root / "test" / "A" / "odd.png", root / "test" / "B" / "odd.png"))
    options = ("--tile-size", "64", "--overlap", "16", "--device", "cpu", "--threshold", threshold)
    evaluated = cli("eval", "-c", kclass_checkpoint, "-d", root, "--save-pred", tmp_path / "eval", "-w", "0",
                    "--project", tmp_path / "runs", *options)
    assert evaluated.exit_code == 0, evaluated.output
    folder = cli("predict", root / "test" / "A", root / "test" / "B", "-o", tmp_path / "folder",
                 "-c", kclass_checkpoint, *options)
    assert folder.exit_code == 0, folder.output
    detector = ChangeDetector.from_checkpoint(kclass_checkpoint, threshold=float(threshold), **SETTINGS)
    for name in ("odd.png", "thin.png"):
        api = detector.predict(root / "test" / "A" / name, root / "test" / "B" / name).classes
        from_eval = np.asarray(Image.open(tmp_path / "eval" / name))
        from_predict = np.asarray(Image.open(tmp_path / "folder" / name))
        assert len(set(np.unique(api).tolist())) >= 3, "several classes, so a mix-up would show"
        np.testing.assert_array_equal(from_eval, api)
        np.testing.assert_array_equal(from_predict, api)
        assert (tmp_path / "eval" / name).read_bytes() == (tmp_path / "folder" / name).read_bytes()  # one writer
