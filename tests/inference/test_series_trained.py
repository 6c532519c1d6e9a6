"""``mmchange series`` end to end with a model trained in the test setup on synthetic pairs: on synthetic series
of 3 and 6 dates (PNG and GeoTIFF) with known appearance dates, the first-change-date raster says when each
building was built or demolished."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmchange_core.data.synth import SynthSeriesConfig, make_synthetic_series
from tests.series_helpers.fixtures import synthetic_detector  # noqa: F401  (fixture)
from tests.series_helpers.trained import SIZE

pytestmark = pytest.mark.slow


def read(path: Path) -> np.ndarray:
    if path.suffix == ".tif":
        import rasterio

        with rasterio.open(path) as ds:
            return ds.read(1)
    return np.asarray(Image.open(path))


def date_agreement(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(of the pixels that changed, the share given their true first-change date; of those that never changed,
    the share given 0), over all series."""
    changed = truth > 0
    return float((predicted[changed] == truth[changed]).mean()), float((predicted[~changed] == 0).mean())


@pytest.mark.parametrize("dates,geotiff", [(3, False), (6, True)])
def test_first_change_dates_match_the_known_dates(synthetic_detector, tmp_path, cli, dates, geotiff) -> None:
    if geotiff:
        pytest.importorskip("rasterio")
    checkpoint = synthetic_detector
    config = SynthSeriesConfig(pairs=6, size=SIZE, seed=11, dates=dates, geotiff=geotiff)
    make_synthetic_series(tmp_path / "data", config)
    predicted, truth = [], []
    for folder in sorted((tmp_path / "data").glob("*/series_*")):
        out = tmp_path / "out" / folder.name
        result = cli("series", folder, "-o", out, "--checkpoint", checkpoint, "--device", "cpu", "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert len(summary["dates"]) == dates and len(summary["intervals"]) == dates - 1
        suffix = ".tif" if geotiff else ".png"
        assert summary["outputs"]["first_change"].endswith(f"first_change{suffix}")
        predicted.append(read(Path(summary["outputs"]["first_change"])))
        truth.append(read(folder / "truth" / "first_change.png"))
        known = json.loads((folder / "series.json").read_text())
        assert summary["dates"] == known["dates"]
    predicted_all, truth_all = np.concatenate([p.ravel() for p in predicted]), np.concatenate([t.ravel() for t in truth])
    assert (truth_all > 0).sum() > 200  # the series hold changes at several dates
    assert len(np.unique(truth_all[truth_all > 0])) >= min(2, dates - 1)
    on_changes, on_rest = date_agreement(predicted_all, truth_all)
    # measured with the fixture's model: see tests/series_helpers/trained.py
    assert on_changes >= 0.6, f"only {on_changes:.1%} of the changed pixels got their true first-change date"
    assert on_rest >= 0.95, f"only {on_rest:.1%} of the unchanged pixels got no change date"
