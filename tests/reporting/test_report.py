"""report.html: self-contained, metrics exactly as in the run's JSON, worst pairs first, a bounded gallery,
its size in the command's results, and a failing report that costs the run nothing."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from mmchange_core.evaluation.evaluate import WorstPairs, gallery_score
from mmchange_core.metrics import ConfusionStats
from mmchange_core.reporting.report import METRIC_COLUMNS


#: The shared tiny runs (tests/reporting/conftest.py) take ~40 s of CPU; built once per session.
pytestmark = pytest.mark.slow

class Page(HTMLParser):
    """The tags of a page with their attributes, and the text of the gallery cards / table cells of interest."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def all(self, tag: str, **where: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in where.items())]


def reports(runs) -> dict[str, Path]:
    return {"train": runs.train.report, "eval": runs.eval.report, "robustness": runs.robustness.report,
            "predict": runs.predict_report, "predict-folder": runs.folder_report, "demo": runs.demo_report}


def test_every_report_is_written_and_self_contained(runs) -> None:
    for kind, path in reports(runs).items():
        assert path is not None and Path(path).name.endswith(".html") and Path(path).is_file(), kind
        text = Path(path).read_text(encoding="utf-8")
        page = Page(text)
        assert "http://" not in text and "https://" not in text, kind
        sources = [a["src"] for t, a in page.tags if "src" in a]
        assert sources and all(s.startswith("data:image/") for s in sources), kind
        assert all(not a.get("href") or a["href"].startswith("#") for _, a in page.tags), kind
        assert not page.all("link") and all("src" not in a for a in page.all("script")), kind
    assert runs.eval.report == runs.eval.run_dir / "report.html"
    assert runs.train.report == runs.train.run_dir / "report.html"
    assert runs.robustness.report == runs.robustness.run_dir / "report.html"


def metric_cells(path: Path) -> dict[str, dict[str, str]]:
    """``{row name: {metric key: data-value}}`` of the metrics tables of a report."""
    page = Page(Path(path).read_text(encoding="utf-8"))
    rows: dict[str, dict[str, str]] = {}
    current = None
    for tag, attrs in page.tags:
        if tag == "tr" and "data-row" in attrs:
            current = rows.setdefault(attrs["data-row"], {})
        elif tag == "td" and "data-key" in attrs and current is not None:
            current[attrs["data-key"]] = attrs["data-value"]
    return rows


def test_eval_metrics_equal_metrics_json(runs) -> None:
    written = runs.eval_json()["metrics"]
    cells = metric_cells(runs.eval.report)
    assert list(cells) == ["train split"]
    assert {k: json.loads(v) for k, v in cells["train split"].items()} == {k: written[k] for k, _ in METRIC_COLUMNS}
    # the text shown is the JSON number at 4 decimals
    text = runs.eval.report.read_text(encoding="utf-8")
    for key, _ in METRIC_COLUMNS:
        assert f'data-key="{key}" data-value="{json.dumps(written[key])}" title="{json.dumps(written[key])}">' \
               f'{written[key]:.4f}</td>' in text


def test_train_and_robustness_metrics_equal_their_files(runs) -> None:
    with open(runs.train.run_dir / "metrics.csv", newline="") as handle:
        val = [r for r in csv.DictReader(handle) if r["kind"] == "val"]
    cells = metric_cells(runs.train.report)
    best = next(v for k, v in cells.items() if k.startswith("best"))
    final = next(v for k, v in cells.items() if k.startswith("final"))
    best_row = next(r for r in val if r["best"] == "1")
    for key, _ in METRIC_COLUMNS:
        assert json.loads(best[key]) == float(best_row[key]) and json.loads(final[key]) == float(val[-1][key])
    rows = json.loads((runs.robustness.run_dir / "robustness.json").read_text())["rows"]
    cells = metric_cells(runs.robustness.report)
    assert len(cells) == len(rows) == 1 + 2  # clean + noise at 2 severities
    for row, (name, values) in zip(rows, cells.items()):
        assert name.startswith(row["condition"])
        assert {k: json.loads(values[k]) for k in ("precision", "recall", "f1", "iou")} == \
               {k: row[k] for k in ("precision", "recall", "f1", "iou")}


def card_names(path: Path) -> list[str]:
    return [a["data-name"] for a in Page(Path(path).read_text(encoding="utf-8")).all("div", **{"class": "card"})]


def test_eval_gallery_is_the_worst_pairs_first_and_bounded(runs) -> None:
    result = runs.eval.result
    assert len(result.per_image) > 3 and len(result.gallery) == 3
    ranked = sorted(result.per_image, key=lambda r: (gallery_score(r.stats), -(r.stats.fp + r.stats.fn), r.index))
    assert [g.pair.name for g in result.gallery] == [r.pair.name for r in ranked[:3]]
    assert card_names(runs.eval.report) == [r.pair.name for r in ranked[:3]]
    # every pair is in the sortable table
    page = Page(runs.eval.report.read_text(encoding="utf-8"))
    assert page.all("table", id="per-image", **{"class": "sortable"})
    text = runs.eval.report.read_text(encoding="utf-8")
    body = text.split('id="per-image"', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr>") == len(result.per_image) + 1  # header + one row per pair


def test_worst_pairs_keeps_only_k_and_makes_thumbnails_only_for_those() -> None:
    rng = np.random.default_rng(0)
    worst = WorstPairs(4, max_side=8)
    image = np.zeros((16, 16, 3), np.uint8)
    label = np.zeros((16, 16), np.uint8)
    offered = []
    made = 0
    for index in range(60):
        tp, fp, fn = (int(v) for v in rng.integers(0, 50, 3))
        stats = ConfusionStats(tp, fp, fn, 1000)
        offered.append((index, stats))
        if worst.wants(index, stats):
            made += 1
        worst.offer(index, None, stats, image, image, label, label > 0)  # type: ignore[arg-type]
        assert len(worst._heap) <= 4
    expected = sorted(offered, key=lambda e: (gallery_score(e[1]), -(e[1].fp + e[1].fn), e[0]))[:4]
    assert [g.index for g in worst.worst_first()] == [i for i, _ in expected]
    assert made < 30  # thumbnails are made only while a pair is among the worst so far
    assert worst.worst_first()[0].pictures["A"].shape == (8, 8, 3)
    assert gallery_score(ConfusionStats(0, 0, 0, 10)) == 1.0  # nothing to find, nothing found


def test_commands_report_the_report_size(runs, cli, tmp_path: Path) -> None:
    result = cli("eval", "--checkpoint", runs.train.best_checkpoint, "--dataset", runs.dataset, "--split", "test",
                 "--gallery", "1", "--workers", "0", "--device", "cpu", "--project", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["report"] == str(Path(data["run_dir"]) / "report.html")
    assert data["report_bytes"] == Path(data["report"]).stat().st_size > 0
    assert len(card_names(Path(data["report"]))) == 1
    pair = sorted((runs.dataset / "test" / "A").iterdir())[0]
    result = cli("predict", pair, runs.dataset / "test" / "B" / pair.name, "-o", tmp_path / "m.png", "--checkpoint",
                 runs.train.best_checkpoint, "--device", "cpu", "--report", tmp_path / "p.html", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["report"] == str(tmp_path / "p.html") and data["report_bytes"] == (tmp_path / "p.html").stat().st_size
    assert "prob" not in data["outputs"]  # the report's temporary probability map is not an output
    assert {"m.png", "p.html"} <= {p.name for p in tmp_path.iterdir()}
    assert not [p for p in tmp_path.rglob("*") if "prob" in p.name]


def test_report_needs_an_html_name_before_any_work(runs, cli, tmp_path: Path) -> None:
    pair = sorted((runs.dataset / "test" / "A").iterdir())[0]
    result = cli("predict", pair, pair, "-o", tmp_path / "m.png", "--checkpoint", runs.train.best_checkpoint,
                 "--report", tmp_path / "report.txt")
    assert result.exit_code == 1 and "--report" in result.output and ".html" in result.output
    assert not list(tmp_path.iterdir())


def test_a_failing_report_keeps_the_run(runs, tmp_path: Path, monkeypatch) -> None:
    import mmchange_core.evaluation.run as run_module
    from mmchange_core.evaluation.run import EvalOptions, run_evaluation
    from mmchange_core.inference.settings import DetectorSettings

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(run_module, "eval_report", broken)
    said: list[str] = []
    report = run_evaluation(EvalOptions(checkpoint=str(runs.train.best_checkpoint), dataset=str(runs.dataset), split="test", project=str(tmp_path), detector=DetectorSettings(workers=0, device="cpu")),
                            message=said.append)
    assert report.report is None and not (report.run_dir / "report.html").exists()
    assert (report.run_dir / "metrics.json").is_file() and (report.run_dir / "per_image.csv").is_file()
    assert any("report" in s and "boom" in s for s in said)
    assert not [p for p in report.run_dir.iterdir() if p.name.startswith(".report")]  # no temporary file left


def test_changed_area_in_square_metres_only_for_projected_grids() -> None:
    pytest.importorskip("rasterio")
    from affine import Affine
    from rasterio.crs import CRS

    from mmchange_core.inference.report import changed_area_m2
    from mmchange_core.io.geo import GeoReference

    utm = GeoReference(CRS.from_epsg(32631), Affine(10.0, 0, 500000, 0, -10.0, 4000000))
    assert changed_area_m2(7, utm) == (700.0, "700.0")
    feet = GeoReference(CRS.from_epsg(2263), Affine(2.0, 0, 0, 0, -2.0, 0))  # NY State Plane, US survey feet
    area, _ = changed_area_m2(1, feet)
    assert area == pytest.approx(4 * 0.3048006096**2)
    geographic = GeoReference(CRS.from_epsg(4326), Affine(0.0001, 0, 2.0, 0, -0.0001, 48.0))
    assert changed_area_m2(7, geographic) == (None, "n/a (geographic CRS)")
    assert changed_area_m2(7, None) == (None, "n/a (not georeferenced)")


def test_predict_reports_show_area_polygons_and_the_probability(runs) -> None:
    text = runs.predict_report.read_text(encoding="utf-8")
    pair = runs.predict_pair
    assert f"{pair.changed_pixels:,}" in text and "n/a (not georeferenced)" in text and "polygons" in text
    assert "change probability" in text and "prob" not in pair.outputs
    folder = runs.folder_report.read_text(encoding="utf-8")
    assert 'id="pairs"' in folder and all(r.name in folder for r in runs.folder.pairs)
    assert len(card_names(runs.folder_report)) == len(runs.folder.pairs)
