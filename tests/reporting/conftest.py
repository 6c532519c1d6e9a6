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
    from mmchange_core.inference.report import report_probabilities, write_predict_report
    from mmchange_core.training.loop import train

    root = tmp_path_factory.mktemp("report_runs")
    dataset = synth_dataset(root / "ds", pairs=10, size=64)
    project = root / "project"
    trained = train(tiny_config(dataset, project, iters=2, batch_size=2, log_every=1))
    assert trained.best_checkpoint is not None
    checkpoint = trained.best_checkpoint
    evaluation = run_evaluation(EvalOptions(checkpoint=checkpoint, dataset=str(dataset), split="train", gallery=3,
                                            workers=0, device="cpu", project=str(project)))
    robustness = run_robustness(RobustnessConfig(checkpoints=[str(checkpoint)], dataset=str(dataset), split="test",
                                                 severities=[0.5, 1.0], light=False, device="cpu",
                                                 project=str(project)))
    test = sorted((dataset / "test" / "A").iterdir())
    config = PredictConfig(device="cpu")
    out = root / "predict"
    with report_probabilities(out / "pair.html", None, folder=False) as prob:
        pair = predict_pair(checkpoint, test[0], dataset / "test" / "B" / test[0].name, out / "mask.png", prob=prob,
                            config=config)
        pair_report = write_predict_report(out / "pair.html", [pair], checkpoint=checkpoint, config={"device": "cpu"},
                                           inputs=(test[0], test[0]), seconds=pair.seconds["total"],
                                           temporary_prob=True)
    folder = predict_folder(checkpoint, dataset / "test" / "A", dataset / "test" / "B", out / "masks",
                            prob_dir=out / "probs", config=config)
    folder_report = write_predict_report(out / "folder.html", folder.pairs, checkpoint=checkpoint,
                                         config={"device": "cpu"}, inputs=(test[0].parent, test[0].parent),
                                         seconds=folder.seconds)
    assert pair_report is not None and folder_report is not None
    demo = DemoReport(root / "demo", dataset, trained, evaluation, pair, robustness, {"total": 1.0},
                      DemoConfig(pairs=10, size=64, crop_size=64, iters=2, device="cpu"))
    demo.run_dir.mkdir()
    demo_report = write_demo_report(demo)
    assert demo_report is not None
    return Runs(dataset, trained, evaluation, robustness, pair, pair_report, folder, folder_report, demo_report)
