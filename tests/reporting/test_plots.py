"""matplotlib figures: training curves with the best checkpoint marked, severity curves, probability with colour bar."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmchange_core.errors import InputError
from mmchange_core.reporting.plots import (
    colorbar_path,
    plot_severity_curves,
    plot_training_curves,
    probability_figure,
    read_probability_preview,
    write_probability_figure,
)
from mmchange_core.training.metrics_log import metrics_csv_text

VIRIDIS_LOW, VIRIDIS_HIGH = (68, 1, 84), (253, 231, 37)
GOLD = (255, 215, 0)  # the best-checkpoint star
TAB_BLUE, TAB_ORANGE = (31, 119, 180), (255, 127, 14)


def _has_colour(path, colour, tolerance: int = 3) -> bool:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return bool((np.abs(pixels - np.asarray(colour)).max(axis=2) <= tolerance).any())


def _rows(best_epoch: int) -> list[dict]:
    rows = [{"step": s, "epoch": (s - 1) // 10, "kind": "train", "loss": 2.0 / s, "lr": 1e-3 * (1 - s / 40)}
            for s in range(2, 41, 2)]
    for epoch, f1 in ((1, 0.4), (2, 0.6), (3, 0.5)):
        rows.append({"step": 10 * (epoch + 1), "epoch": epoch, "kind": "val", "precision": f1, "recall": f1,
                     "f1": f1, "iou": f1 / 2, "oa": 0.9, "kappa": f1, "best": int(epoch == best_epoch)})
    return sorted(rows, key=lambda r: (r["step"], r["kind"] != "train"))


def test_training_curves_mark_the_best_checkpoint_and_are_reproducible(tmp_path) -> None:
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(metrics_csv_text(_rows(best_epoch=2)))
    first = plot_training_curves(csv_path, tmp_path / "curves.png")
    again = plot_training_curves(csv_path, tmp_path / "again.png")
    assert first.read_bytes() == again.read_bytes()                 # no timestamp or software tag in the file
    with Image.open(first) as image:
        assert image.format == "PNG" and image.size[0] > 1000 and "Software" not in image.info
    assert first.stat().st_size < 200_000
    assert _has_colour(first, GOLD)                                  # the best checkpoint is marked
    csv_path.write_text(metrics_csv_text(_rows(best_epoch=-1)))
    unmarked = plot_training_curves(csv_path, tmp_path / "unmarked.png")
    assert not _has_colour(unmarked, GOLD)


def test_training_curves_of_a_run_without_validation_and_bad_files(tmp_path) -> None:
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(metrics_csv_text([r for r in _rows(1) if r["kind"] == "train"]))
    with Image.open(plot_training_curves(csv_path, tmp_path / "curves.png")) as image:
        image.load()
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a training metrics.csv"):
        plot_training_curves(tmp_path / "other.csv", tmp_path / "x.png")
    with pytest.raises(InputError, match="not found"):
        plot_training_curves(tmp_path / "missing.csv", tmp_path / "x.png")


def test_severity_curves_draw_one_line_per_series(tmp_path) -> None:
    series = {"run/best noise": [(0.0, 0.8), (0.5, 0.7), (2.0, 0.4)], "run/best light": [(0.0, 0.8), (2.0, 0.6)]}
    path = plot_severity_curves(series, tmp_path / "robustness.png")
    assert _has_colour(path, TAB_BLUE) and _has_colour(path, TAB_ORANGE)
    single = plot_severity_curves({"run/best noise": series["run/best noise"]}, tmp_path / "one.png")
    assert _has_colour(single, TAB_BLUE) and not _has_colour(single, TAB_ORANGE)


def test_probability_figure_has_a_colour_bar(tmp_path) -> None:
    prob = np.tile(np.linspace(0.3, 0.6, 200, dtype=np.float32), (120, 1))   # never reaches 0 or 1
    path = probability_figure(prob, tmp_path / "prob.png", title="test")
    # the map alone has neither end of viridis; the colour bar (0..1) has both
    assert _has_colour(path, VIRIDIS_LOW) and _has_colour(path, VIRIDIS_HIGH)
    with pytest.raises(InputError, match="2-D"):
        probability_figure(np.zeros((2, 2, 3)), tmp_path / "bad.png")


@pytest.mark.filterwarnings("ignore:Dataset has no geotransform")
def test_probability_figure_from_written_maps(tmp_path) -> None:
    big = np.zeros((1500, 2600), np.uint8)
    big[:, 1300:] = 255
    Image.fromarray(big).save(tmp_path / "prob.png")
    preview, size = read_probability_preview(tmp_path / "prob.png")
    assert size == (1500, 2600) and max(preview.shape) <= 1024
    assert preview[:, :400].max() == 0.0 and preview[:, -400:].min() == 1.0
    figure = write_probability_figure(tmp_path / "prob.png")
    assert figure == colorbar_path(tmp_path / "prob.png") == tmp_path / "prob.colorbar.png"
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(tmp_path / "prob.tif", "w", driver="GTiff", width=300, height=200, count=1,
                       dtype="float32") as dataset:
        dataset.write(np.full((1, 200, 300), 0.25, np.float32))
    preview, size = read_probability_preview(tmp_path / "prob.tif")
    assert size == (200, 300) and np.allclose(preview, 0.25)
