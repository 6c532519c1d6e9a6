"""Tiny real runs for the report tests: one training, its eval, robustness and predictions (built once)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.data_helpers import synth_dataset, tiny_config


@dataclass
class Runs:
    """Folders and results of the tiny runs."""

    dataset: Path
    train: object          # TrainResult
    eval: object           # EvalReport
    robustness: object     # RobustnessReport
    predict_pair: object   # PairResult
    predict_report: Path
    folder: object         # FolderResult
    folder_report: Path
    demo_report: Path

    def eval_json(self) -> dict:
        return json.loads((self.eval.run_dir / "metrics.json").read_text())


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """A 2-iteration training, an eval with a gallery of 3, robustness at two severities, predict on a pair and a
    folder with --report, and the demo report assembled from these parts (all through the real code paths)."""
    from mmchange_core.demo import DemoConfig, DemoReport, write_demo_report
    from mmchange_core.evaluation.robustness import RobustnessConfig, run_robustness
    from mmchange_core.evaluation.run import EvalOptions, run_evaluation
    from mmchange_core.inference.predict import PredictConfig, predict_folder, predict_pair
    from mmchange_core.inference.settings import DetectorSettings
    from mmchange_core.training.loop import train

    root = tmp_path_factory.mktemp("report_runs")
    dataset = synth_dataset(root / "ds", pairs=10, size=64)
    project = root / "project"
    trained = train(tiny_config(dataset, project, iters=2, batch_size=2, log_every=1))
    assert trained.best_checkpoint is not None
    checkpoint = trained.best_checkpoint
    cpu = DetectorSettings(device="cpu", workers=0)
    evaluation = run_evaluation(EvalOptions(checkpoint=str(checkpoint), dataset=str(dataset), split="train", gallery=3,
                                            detector=cpu, project=str(project)))
    robustness = run_robustness(RobustnessConfig(checkpoints=[str(checkpoint)], dataset=str(dataset), split="test",
                                                 severities=[0.5, 1.0], light=False, detector=cpu,
                                                 project=str(project)))
    test = sorted((dataset / "test" / "A").iterdir())
    config = PredictConfig(detector=DetectorSettings(device="cpu"))
    out = root / "predict"
    pair = predict_pair(checkpoint, test[0], dataset / "test" / "B" / test[0].name, out / "mask.png",
                        report=out / "pair.html", config=config)
    pair_report = Path(pair.report) if pair.report else None
    folder = predict_folder(checkpoint, dataset / "test" / "A", dataset / "test" / "B", out / "masks",
                            prob_dir=out / "probs", report=out / "folder.html", config=config)
    folder_report = Path(folder.report) if folder.report else None
    assert pair_report is not None and folder_report is not None
    demo = DemoReport(root / "demo", dataset, trained, evaluation, pair, robustness, {"total": 1.0},
                      DemoConfig(pairs=10, size=64, crop_size=64, iters=2, detector=cpu))
    demo.run_dir.mkdir()
    demo_report = write_demo_report(demo)
    assert demo_report is not None
    return Runs(dataset, trained, evaluation, robustness, pair, pair_report, folder, folder_report, demo_report)
