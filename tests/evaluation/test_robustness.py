"""The robustness rows' sign convention: delta = perturbed - clean, the same in robustness.csv and the table."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import mmchange_core.evaluation.robustness as robustness
from mmchange_core.metrics import ConfusionStats
from mmchange_core.evaluation.perturbations import Perturbation
from mmchange_core.evaluation.robustness import RobustnessReport, RobustnessRow, rows_csv

CLEAN = ConfusionStats(tp=80, fp=20, fn=20, tn=880)      # F1 0.8
WORSE = ConfusionStats(tp=50, fp=30, fn=50, tn=870)      # F1 0.555...


def test_a_worse_perturbed_result_has_a_negative_delta() -> None:
    clean = robustness._row("m", Perturbation(seed=0), CLEAN, None)
    worse = robustness._row("m", Perturbation(noise=True, seed=0), WORSE, CLEAN)
    assert clean.delta_f1 == 0.0 and clean.delta_iou == 0.0
    assert worse.delta_f1 < 0 and worse.delta_iou < 0
    assert worse.delta_f1 == worse.f1 - clean.f1
    rows = list(csv.DictReader(io.StringIO(rows_csv([clean, worse]))))
    assert "f1_drop" not in rows[0] and float(rows[1]["delta_f1"]) < 0


def test_the_table_shows_the_csv_sign(cli, monkeypatch, tmp_path: Path) -> None:
    row = RobustnessRow("m", "noise", 1.0, 0.4, 0.5, 0.5, 0.5, delta_iou=-0.05, delta_f1=-0.1)
    clean = RobustnessRow("m", "clean", 0.0, 0.45, 0.6, 0.6, 0.6, delta_iou=0.0, delta_f1=0.0)

    def fake_run(config, progress=None, message=None):  # noqa: ANN001, ANN202 - only the rendering is under test
        return RobustnessReport(tmp_path, [clean, row], tmp_path / "robustness.csv", tmp_path / "robustness.json", None)

    monkeypatch.setattr(robustness, "run_robustness", fake_run)
    result = cli("robustness", "--checkpoint", tmp_path / "m.safetensors", "--dataset", tmp_path)
    assert result.exit_code == 0, result.output
    line = next(text for text in result.stdout.splitlines() if "noise" in text)
    assert "-10.00" in line and "-5.00" in line and "+10.00" not in line
    assert "perturbed - clean" in result.stdout
