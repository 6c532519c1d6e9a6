"""End to end through the CLI: synth -> caption (basic) -> train (stopped) -> resume -> eval."""

from __future__ import annotations

import json
from pathlib import Path

from tests.data_helpers import assert_metrics_match_counts, synth_dataset


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_synth_caption_train_resume_eval(cli, tmp_path: Path) -> None:
    data = tmp_path / "ds"
    made = _json(cli("synth", data, "--pairs", 12, "--size", 64, "--seed", 3, "--text-signal", "--json"))
    assert made["splits"] == {"train": 8, "val": 2, "test": 2}
    result = cli("caption", "-d", data, "--captioner", "basic", "--text-encoder", "hashing")
    assert result.exit_code == 0, result.output
    runs = tmp_path / "runs"
    common = ["--dataset", data, "--backbone", "resnet18", "--iters", 4, "--batch-size", 4, "--crop-size", 64,
              "--no-pretrained", "--device", "cpu", "--workers", 0, "--project", runs, "--json"]
    first = _json(cli("train", *common, "--name", "e2e", "--stop-after", 3))
    assert first["completed"] is False and first["iterations"] == 3
    assert first["run_dir"] == str(runs / "train" / "e2e")
    resumed = _json(cli("train", "--resume", first["run_dir"], "--json"))
    assert resumed["completed"] is True and resumed["iterations"] == 4
    assert Path(resumed["best_checkpoint"]).is_file()
    metrics = _json(cli("eval", "--checkpoint", resumed["best_checkpoint"], "--dataset", data, "--device", "cpu",
                        "--workers", 0, "--project", runs, "--save-vis", "--json"))
    assert metrics["tp"] + metrics["fp"] + metrics["fn"] + metrics["tn"] == 2 * 64 * 64
    assert_metrics_match_counts(metrics)
    run = Path(metrics["run_dir"])
    assert (run / "per_image.csv").is_file() and len(list((run / "vis").glob("*.png"))) == 2
    # a plain table run prints the run folder and the best checkpoint
    table = cli("eval", "--checkpoint", resumed["best_checkpoint"], "--dataset", data, "--device", "cpu",
                "--workers", 0, "--project", runs)
    assert table.exit_code == 0 and "f1" in table.stdout and "results:" in table.stdout


def test_cli_errors_are_one_line(cli, tmp_path: Path) -> None:
    data = synth_dataset(tmp_path / "plain", pairs=6, size=64)
    runs = tmp_path / "runs"
    base = ["--dataset", data, "--backbone", "resnet18", "--crop-size", 64, "--no-pretrained", "--device", "cpu",
            "--project", runs]
    missing = cli("train", *base, "--batch-size", 2)
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    assert "no captions in" in missing.output  # the dataset was never captioned
    assert "mmchange caption" in missing.output
    assert not (runs / "train").exists()  # nothing half-made
    bad = cli("train", *base, "--set", "lr=-1")
    assert bad.exit_code == 1 and "config key 'lr' is -1.0; it must be greater than 0" in bad.output
    bad = cli("train", *base, "--precision", "fp8")
    assert bad.exit_code == 1 and "fp8" in bad.output
    nothing = cli("eval", "--checkpoint", tmp_path / "nope.safetensors", "--dataset", data)
    assert nothing.exit_code == 1 and "checkpoint not found" in nothing.output
    nowhere = cli("train", "--dataset", tmp_path / "nowhere", "--no-pretrained")
    assert nowhere.exit_code == 1 and "dataset folder not found" in nowhere.output
