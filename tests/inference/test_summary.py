"""The summary in words of a change mask (inference/summary.py), and predict writing it into --json, the
report, the STAC Item and its console summary; the optional generated sentence (text/change_description.py).

Expected figures are worked out by hand (areas, shares, centroids, regions) or with independent tools
(pyproj for coordinates, a breadth-first labelling for regions), never read back from the code under test.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmchange_core.errors import MMChangeError
from mmchange_core.inference.summary import summarize_change
from mmchange_core.io.vector import polygonize_numpy
from tests.cli_helpers import assert_cli_error
from tests.data_helpers import components
from tests.inference_helpers import image_only_checkpoint, scene, write_pair  # noqa: F401 (fixture)
from tests.text_helpers.tiny_models import tiny_llava_dir  # noqa: F401 (fixture)

rasterio = pytest.importorskip("rasterio")
pyproj = pytest.importorskip("pyproj")
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from mmchange_core.io.geo import GeoReference  # noqa: E402

UTM32 = CRS.from_epsg(32632)
#: Near Zurich: 10 m pixels, top-left corner at E 465000, N 5247000 (UTM 32N).
ZURICH = GeoReference(UTM32, from_origin(465000.0, 5247000.0, 10.0, 10.0))


def to_lonlat(epsg: int, x: float, y: float) -> tuple[float, float]:
    lon, lat = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y)
    return lon, lat


def degrees(lon: float, lat: float) -> str:
    return f"{abs(lat):.4f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.4f}° {'E' if lon >= 0 else 'W'}"


# --- summarize_change ---------------------------------------------------------------------------------------

def test_a_rectangle_on_a_10_m_utm_grid() -> None:
    mask = np.zeros((100, 100), dtype=bool)
    mask[30:40, 50:70] = True                               # 10 rows x 20 columns = 200 pixels of 100 m²
    summary = summarize_change(mask, ZURICH)
    assert (summary.changed_pixels, summary.total_pixels, summary.polygons) == (200, 10_000, 1)
    assert summary.percent == pytest.approx(2.0)
    assert (summary.area, summary.area_unit, summary.area_text) == (pytest.approx(20_000.0), "m2", "2.00 ha")
    largest = summary.largest
    assert largest["pixels"] == 200 and largest["area"] == pytest.approx(20_000.0)
    assert largest["pixel_centroid"] == {"x": pytest.approx(60.0), "y": pytest.approx(35.0)}
    lon, lat = to_lonlat(32632, 465000.0 + 60 * 10, 5247000.0 - 35 * 10)   # the rectangle's centre
    assert largest["centroid"] == {"lon": pytest.approx(lon, abs=1e-9), "lat": pytest.approx(lat, abs=1e-9)}
    assert 47.3 < lat < 47.4 and 8.5 < lon < 8.6
    assert summary.text == f"2.00 ha changed (2.0% of the image) in 1 area, centred at {degrees(lon, lat)}."
    assert summary.to_dict()["largest"]["centroid"]["lat"] == pytest.approx(lat)


def test_two_blobs_without_georeference_give_pixels_and_the_region_of_the_largest() -> None:
    mask = np.zeros((100, 100), dtype=np.uint8)
    mask[10:14, 10:15] = 255                                # 20 pixels, top left
    mask[80:88, 85:95] = 255                                # 80 pixels, bottom right, centre (90, 84)
    summary = summarize_change(mask)
    assert (summary.changed_pixels, summary.polygons, summary.area, summary.area_unit) == (100, 2, None, "pixels")
    assert summary.area_text == "100 pixels"
    assert summary.largest == {"area": None, "area_text": "80 pixels", "pixels": 80,
                               "pixel_centroid": {"x": 90.0, "y": 84.0}, "region": "south-east", "centroid": None}
    assert summary.text == ("100 pixels changed (1.0% of the image) in 2 areas; the largest, 80 pixels, is centred "
                            "in the south-east of the image (pixel x 90.0, y 84.0).")
    assert summarize_change(mask > 0).text == summary.text   # bool and 0/255 masks are the same


@pytest.mark.parametrize("row, col, word", [(5, 5, "north-west"), (5, 50, "north"), (5, 95, "north-east"),
                                            (50, 5, "west"), (50, 50, "centre"), (50, 95, "east"),
                                            (95, 5, "south-west"), (95, 50, "south"), (95, 95, "south-east")])
def test_the_region_words_of_a_3x3_split(row: int, col: int, word: str) -> None:
    mask = np.zeros((99, 120), dtype=bool)
    mask[row * 99 // 100, col * 120 // 100] = True
    assert summarize_change(mask).largest["region"] == word


def test_diagonal_neighbours_are_two_areas_as_in_the_vector_output() -> None:
    mask = np.zeros((4, 4), dtype=bool)
    mask[1, 1] = mask[2, 2] = True                          # 4-connectivity: they touch at a corner only
    summary = summarize_change(mask)
    assert summary.polygons == 2 and summary.largest["pixels"] == 1
    assert summary.area_text == "2 pixels" and summary.largest["area_text"] == "1 pixel"


def test_the_centroid_of_a_region_with_a_hole_is_the_mean_of_its_pixels() -> None:
    mask = np.zeros((60, 60), dtype=bool)
    mask[20:30, 20:30] = True
    mask[22:26, 22:26] = False                              # a 4x4 hole, off centre
    summary = summarize_change(mask)
    # (100 pixels centred at 25, less 16 pixels centred at 24) / 84
    expected = (100 * 25 - 16 * 24) / 84
    assert summary.polygons == 1 and summary.largest["pixels"] == 84
    assert summary.largest["pixel_centroid"] == {"x": pytest.approx(expected), "y": pytest.approx(expected)}


def test_no_change() -> None:
    summary = summarize_change(np.zeros((256, 256), dtype=np.uint8))
    assert summary.text == "No change was detected (0 of 65,536 pixels)."
    assert (summary.changed_pixels, summary.polygons, summary.largest, summary.percent) == (0, 0, None, 0.0)
    projected = summarize_change(np.zeros((10, 10), dtype=bool), ZURICH, period=("2020-06-01", "2021-06-01"))
    assert (projected.area, projected.area_text) == (0.0, "0 m²")
    assert projected.text == "Between 2020-06-01 and 2021-06-01, no change was detected (0 of 100 pixels)."


def test_min_area_drops_small_areas_as_the_vector_output_does() -> None:
    mask = np.zeros((100, 100), dtype=bool)
    mask[10:14, 10:15] = True                               # 20 px = 2,000 m²
    mask[80:88, 85:95] = True                               # 80 px = 8,000 m²
    assert summarize_change(mask, min_area=50).polygons == 1
    assert summarize_change(mask, min_area=20).polygons == 2     # at least min_area is kept
    geo = summarize_change(mask, ZURICH, min_area=5000.0)   # squared CRS units for georeferenced input
    assert (geo.polygons, geo.largest["pixels"], geo.area_text) == (1, 80, "1.00 ha")
    assert geo.largest["area_text"] == "8,000 m²"
    none_left = summarize_change(mask, min_area=100)
    assert (none_left.polygons, none_left.largest) == (0, None)
    assert none_left.text == "100 pixels changed (1.0% of the image); no area reaches the minimum area of 100."


def test_number_formats() -> None:
    one = np.zeros((100, 100), dtype=bool)
    one[0, 0] = True
    assert summarize_change(one).text.startswith("1 pixel changed (<0.1% of the image) in 1 area, centred in the "
                                                 "north-west of the image (pixel x 0.5, y 0.5).")
    small = np.zeros((100, 100), dtype=bool)
    small[0:5, 0:5] = True                                  # 25 px x 100 m²
    assert summarize_change(small, ZURICH).area_text == "2,500 m²"
    everything = np.ones((1000, 1000), dtype=bool)          # 10 km x 10 km
    summary = summarize_change(everything, ZURICH)
    assert summary.area_text == "10,000.00 ha" and "(100.0% of the image)" in summary.text
    almost = np.ones((100, 100), dtype=bool)
    almost[0, 0] = False
    assert "(>99.9% of the image)" in summarize_change(almost).text


def test_a_geographic_grid_has_no_area_but_a_position() -> None:
    georef = GeoReference(CRS.from_epsg(4326), from_origin(8.0, 47.5, 0.001, 0.001))
    mask = np.zeros((100, 100), dtype=bool)
    mask[40:50, 10:30] = True                               # centre: x 20, y 45 pixels
    summary = summarize_change(mask, georef)
    assert (summary.area, summary.area_unit, summary.area_text) == (None, "pixels", "200 pixels")
    lon, lat = 8.0 + 20 * 0.001, 47.5 - 45 * 0.001
    assert summary.largest["centroid"] == {"lon": pytest.approx(lon), "lat": pytest.approx(lat)}
    assert summary.text.endswith(f"in 1 area, centred at {degrees(lon, lat)}.")


def test_period_captions_and_a_generated_sentence() -> None:
    mask = np.zeros((100, 100), dtype=bool)
    mask[30:40, 50:70] = True
    summary = summarize_change(mask, ZURICH, period=("2020-06-01", "2021-06-01"),
                               captions=["farmland with a dirt road.", "a new  warehouse"],
                               generated=" a warehouse was built ")
    lon, lat = to_lonlat(32632, 465600.0, 5246650.0)
    assert summary.text == (f"Between 2020-06-01 and 2021-06-01, 2.00 ha changed (2.0% of the image) in 1 area, "
                            f"centred at {degrees(lon, lat)}. Date A: farmland with a dirt road. Date B: a new "
                            f"warehouse. Generated description (may be inaccurate): a warehouse was built.")
    data = summary.to_dict()
    assert data["period"] == ["2020-06-01", "2021-06-01"] and data["captions"][1] == "a new  warehouse"
    assert data["generated"] == "a warehouse was built"
    json.dumps(data)                                        # JSON-safe


def test_the_same_mask_gives_the_same_text_whichever_tracer() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((64, 80)) > 0.7
    first = summarize_change(mask, ZURICH, min_area=300)
    assert summarize_change(mask.copy(), ZURICH, min_area=300).to_dict() == first.to_dict()
    assert summarize_change(mask, ZURICH, min_area=300, polygons=polygonize_numpy(mask)).to_dict() == first.to_dict()
    sizes = component_sizes(mask)
    assert first.polygons == sum(size * 100 >= 300 for size in sizes) and first.largest["pixels"] == max(sizes)


# --- predict ------------------------------------------------------------------------------------------------

def component_sizes(mask: np.ndarray) -> list[int]:
    return [len(region) for region in components(mask)]


H, W = 96, 128
ORIGIN = (465000.0, 5247000.0)


def dated_geotiff_pair(folder: Path) -> tuple[Path, Path]:
    """A UTM 32N GeoTIFF pair with acquisition dates, ``folder/A/t.tif`` and ``folder/B/t.tif``."""
    paths = []
    for sub, image, date in zip(("A", "B"), scene(H, W), ("2020:06:01 00:00:00", "2021:06:01 00:00:00")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        path = folder / sub / "t.tif"
        with rasterio.open(path, "w", driver="GTiff", height=H, width=W, count=3, dtype="uint8", crs=UTM32,
                           transform=from_origin(*ORIGIN, 10.0, 10.0)) as dst:
            dst.write(np.moveaxis(image, -1, 0))
            dst.update_tags(TIFFTAG_DATETIME=date)
        paths.append(path)
    return paths[0], paths[1]


def quantile_threshold(checkpoint: Path, path_a: Path, path_b: Path) -> float:
    """A threshold that marks 40% of a random network's probabilities as change (a structured mask)."""
    from mmchange_core.inference.detector import ChangeDetector

    predictor = ChangeDetector.from_checkpoint(checkpoint, tile_size=64, overlap=16)
    images = []
    for path in (path_a, path_b):
        with rasterio.open(path) as src:
            images.append(np.moveaxis(src.read(), 0, -1))
    return float(np.quantile(predictor.probabilities(*images), 0.6))


def test_predict_writes_the_summary_into_json_report_and_stac_item(image_only_checkpoint, tmp_path, cli) -> None:
    pystac = pytest.importorskip("pystac")
    path_a, path_b = dated_geotiff_pair(tmp_path)
    out = tmp_path / "out"
    threshold = quantile_threshold(image_only_checkpoint, path_a, path_b)
    result = cli("predict", path_a, path_b, "-o", out / "change.tif", "--checkpoint", image_only_checkpoint,
                 "--tile-size", "64", "--overlap", "16", "--threshold", str(threshold), "--vector",
                 out / "change.geojson", "--min-area", "1000", "--report", out / "report.html", "--stac", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    summary = data["summary"]
    with rasterio.open(out / "change.tif") as src:
        mask = src.read(1) > 0
    count = int(mask.sum())
    every = components(mask)
    regions = [r for r in every if len(r) * 100 >= 1000]    # --min-area 1000 m² = 10 pixels
    assert 0.3 < count / mask.size < 0.5 and 1 < len(regions) < len(every)
    assert (summary["changed_pixels"], summary["total_pixels"]) == (count, H * W) == (data["changed_pixels"], H * W)
    assert summary["area"] == pytest.approx(count * 100.0) and summary["area_unit"] == "m2"
    assert summary["polygons"] == len(regions) == data["polygons"]
    assert len(json.loads((out / "change.geojson").read_text())["features"]) == len(regions)
    assert summary["period"] == ["2020-06-01", "2021-06-01"] and summary["captions"] is None
    area_m2 = count * 100.0
    area_text = f"{area_m2 / 10_000:,.2f} ha" if area_m2 >= 10_000 else f"{area_m2:,.0f} m²"
    assert summary["text"].startswith(f"Between 2020-06-01 and 2021-06-01, {area_text} changed "
                                      f"({100 * count / mask.size:.1f}% of the image) in {len(regions)} areas; "
                                      f"the largest, ")
    largest = max(regions, key=len)
    assert summary["largest"]["pixels"] == len(largest)
    if sorted(map(len, regions))[-2] < len(largest):        # a unique largest region: check where it is
        rows, cols = np.asarray(largest).T
        x, y = ORIGIN[0] + 10 * (cols.mean() + 0.5), ORIGIN[1] - 10 * (rows.mean() + 0.5)
        lon, lat = to_lonlat(32632, x, y)
        assert summary["largest"]["centroid"] == {"lon": pytest.approx(lon, abs=1e-9),
                                                  "lat": pytest.approx(lat, abs=1e-9)}
        assert summary["text"].endswith(f"is centred at {degrees(lon, lat)}.")

    page = (out / "report.html").read_text(encoding="utf-8")
    assert html.escape(summary["text"], quote=True) in page

    props = pystac.Item.from_file(str(out / "change.stac.json")).properties
    assert props["mmchange:summary"] == summary["text"]
    assert props["mmchange:changed_area_m2"] == pytest.approx(count * 100.0)
    assert props["mmchange:polygons"] == len(regions)
    assert props["mmchange:largest_change"]["pixels"] == len(largest)
    assert "mmchange:generated_description" not in props


def test_predict_prints_the_summary_and_a_folder_names_both_files(image_only_checkpoint, tmp_path, cli) -> None:
    path_a, path_b = write_pair(tmp_path, 64, 64)
    out = tmp_path / "out"
    result = cli("predict", path_a, path_b, "-o", out / "m.png", "--checkpoint", image_only_checkpoint,
                 "--tile-size", "64", "--threshold", "0.5")
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(out / "m.png")) > 0
    record = json.loads((out / "mmchange_manifest.jsonl").read_text().splitlines()[-1])
    text = record["result"]["summary"]["text"]
    assert text in result.stdout
    assert text.startswith("Between A/pair.png and B/pair.png, ")   # same file names: with their folders
    assert f"{int(mask.sum()):,}" in text or "no change" in text
    folder = cli("predict", tmp_path / "A", tmp_path / "B", "-o", tmp_path / "folder", "--checkpoint",
                 image_only_checkpoint, "--tile-size", "64", "--threshold", "0.5", "--json")
    assert folder.exit_code == 0, folder.output
    assert json.loads(folder.stdout)["pairs"][0]["summary"]["text"] == text


# --- the generated sentence ---------------------------------------------------------------------------------

def test_describe_change_without_a_vlm_captioner_is_one_line_naming_the_option(image_only_checkpoint, tmp_path,
                                                                              cli) -> None:
    path_a, path_b = write_pair(tmp_path, 64, 64)
    result = cli("predict", path_a, path_b, "-o", tmp_path / "m.png", "--checkpoint", image_only_checkpoint,
                 "--describe-change")
    assert_cli_error(result, "--describe-change", "VLM")
    assert not (tmp_path / "m.png").exists()

    from mmchange_core.models import CheckpointMeta, build_model, save_checkpoint
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, TextPipeline

    pipeline = TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(name="hashing", dim=64), device="cpu")
    model = build_model("resnet18", "full", text_dim=64)
    basic = tmp_path / "basic.safetensors"
    save_checkpoint(basic, model, CheckpointMeta(model=model.config, text_description=pipeline.describe()))
    result = cli("predict", path_a, path_b, "-o", tmp_path / "m.png", "--checkpoint", basic, "--describe-change")
    assert_cli_error(result, "--describe-change", "'basic'")


def test_side_by_side_puts_a_white_separator_between_the_dates() -> None:
    from mmchange_core.text.change_description import SEPARATOR, side_by_side

    a = np.full((4, 3, 3), 10, dtype=np.uint8)
    b = np.full((2, 5, 3), 20, dtype=np.uint8)
    both = side_by_side(a, b)
    assert both.shape == (4, 3 + SEPARATOR + 5, 3) and SEPARATOR > 0
    assert (both[:, :3] == 10).all() and (both[:, 3:3 + SEPARATOR] == 255).all()
    assert (both[:2, 3 + SEPARATOR:] == 20).all() and (both[2:, 3 + SEPARATOR:] == 255).all()
    with pytest.raises(MMChangeError, match="uint8 RGB"):
        side_by_side(a[..., 0], b)


class RecordingProcessor:
    """Passes every call to a processor and keeps the prompts it was given."""

    def __init__(self, processor) -> None:
        self.processor, self.texts = processor, []

    def __getattr__(self, name):
        return getattr(self.processor, name)

    def __call__(self, *args, **kwargs):
        self.texts.append(kwargs.get("text"))
        return self.processor(*args, **kwargs)


def test_describe_change_asks_the_vlm_about_both_dates(tiny_llava_dir) -> None:
    from mmchange_core.text import CaptionerConfig
    from mmchange_core.text.captioners.basic import BasicCaptioner
    from mmchange_core.text.captioners.vlm import VLMCaptioner
    from mmchange_core.text.change_description import describe_change

    captioner = VLMCaptioner(CaptionerConfig(model=str(tiny_llava_dir), max_new_tokens=4, temperature=0),
                             torch.device("cpu"))
    own_prompt = captioner.prompt
    captioner.processor = RecordingProcessor(captioner.processor)
    a, b = scene(32, 48)
    sentence = describe_change(captioner, a, b)
    assert isinstance(sentence, str) and sentence == describe_change(captioner, a, b)
    asked = captioner.processor.texts[0][0]
    assert "The left image was taken before the right one. Describe in one sentence what changed between them." \
        in asked
    assert captioner.prompt == own_prompt                   # the captioner keeps its own prompt
    with pytest.raises(MMChangeError, match="VLM captioner"):
        describe_change(BasicCaptioner(), a, b)


def test_predict_describe_change_adds_a_generated_sentence(tiny_llava_dir, tmp_path, cli) -> None:
    from mmchange_core.models import CheckpointMeta, build_model, save_checkpoint
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, TextPipeline

    torch.manual_seed(1)
    pipeline = TextPipeline(CaptionerConfig(model=str(tiny_llava_dir), max_new_tokens=4),
                            TextEncoderConfig(name="hashing", dim=64), device="cpu")
    model = build_model("resnet18", "full", text_dim=64)
    checkpoint = tmp_path / "vlm.safetensors"
    save_checkpoint(checkpoint, model, CheckpointMeta(model=model.config, text_description=pipeline.describe()))
    path_a, path_b = write_pair(tmp_path, 64, 64)
    result = cli("predict", path_a, path_b, "-o", tmp_path / "out" / "m.png", "--checkpoint", checkpoint,
                 "--describe-change", "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    generated, captions = summary["generated"], summary["captions"]
    assert isinstance(generated, str) and generated and len(captions) == 2
    assert f"Date B: {captions[1].rstrip('.')}." in summary["text"]
    assert summary["text"].endswith(f"Generated description (may be inaccurate): {generated.rstrip('.')}.")
