"""The built-in demo end to end, and the robustness study and drift check on what it trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmchange_core.inference.drift import measure_drift
from tests.data_helpers import assert_metrics_match_counts


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> dict:
    """``mmchange demo --quick`` once per session (synthetic data, captions, training, eval, ...)."""
    from typer.testing import CliRunner

    from mmchange_cli.app import app

    out = tmp_path_factory.mktemp("demo") / "run"
    result = CliRunner().invoke(app, ["demo", "--quick", "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip(), result.output  # the JSON summary
    summary = json.loads(result.stdout)
    summary["out"] = out
    return summary


def test_demo_produces_every_step(demo_run: dict) -> None:
    out = Path(demo_run["out"])
    assert Path(demo_run["run_dir"]) == out
    checkpoint = Path(demo_run["checkpoint"])
    assert checkpoint.is_file() and checkpoint.is_relative_to(out)
    assert (out / "data" / "mmchange_captions.jsonl").is_file()
    counted = json.loads((Path(demo_run["eval_dir"]) / "metrics.json").read_text())["metrics"]
    assert_metrics_match_counts(counted)
    assert demo_run["eval"] == {k: counted[k] for k in demo_run["eval"]} and "kappa" in demo_run["eval"]
    assert demo_run["eval"]["oa"] > 0.5
    assert (Path(demo_run["eval_dir"]) / "per_image.csv").is_file()
    assert set(demo_run["prediction"]) == {"mask", "prob", "overlay", "prob_colorbar"}
    assert all(Path(p).is_file() for p in demo_run["prediction"].values())
    # small by default: no optimizer state; the summary says how big the folder is
    assert not list(out.rglob("state.pt")) and not list(out.rglob("last.safetensors"))
    assert demo_run["state_kept"] is False and 0 < demo_run["size_mb"] < 150
    assert [r["condition"] for r in demo_run["robustness"]] == ["clean", "noise", "light", "noise+light"]
    assert (Path(demo_run["robustness_dir"]) / "robustness.csv").is_file()
    assert demo_run["seconds"]["total"] > 0


def test_robustness_gives_four_rows_and_perturbed_results_differ(demo_run: dict, cli, tmp_path: Path) -> None:
    result = cli("robustness", "--checkpoint", demo_run["checkpoint"], "--dataset", demo_run["dataset"],
                 "--noise", "--light", "--project", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["condition"] for r in rows] == ["clean", "noise", "light", "noise+light"]
    assert {"model", "iou", "f1", "recall", "precision"} <= set(rows[0])
    clean = rows[0]
    for row in rows[1:]:
        assert (row["f1"], row["iou"], row["recall"], row["precision"]) != (
            clean["f1"], clean["iou"], clean["recall"], clean["precision"]), row["condition"]
    stores = sorted(p.name for p in Path(demo_run["dataset"]).glob("mmchange_captions.*-s1-seed0.jsonl"))
    assert stores == ["mmchange_captions.light-s1-seed0.jsonl", "mmchange_captions.noise+light-s1-seed0.jsonl",
                      "mmchange_captions.noise-s1-seed0.jsonl"]
    # Same seed, same perturbation: the second run gives the same numbers (and reuses those captions).
    again = json.loads(cli("robustness", "--checkpoint", demo_run["checkpoint"], "--dataset", demo_run["dataset"],
                           "--project", tmp_path, "--json").stdout)
    assert again == rows


def test_robustness_severity_sweep_writes_a_plot(demo_run: dict, cli, tmp_path: Path) -> None:
    result = cli("robustness", "--checkpoint", demo_run["checkpoint"], "--dataset", demo_run["dataset"],
                 "--light", "--severity", "0.5,2", "--project", tmp_path, "--name", "sweep")
    assert result.exit_code == 0, result.output
    run = tmp_path / "robustness" / "sweep"
    assert (run / "robustness.png").stat().st_size > 1000
    data = json.loads((run / "robustness.json").read_text())
    assert [(r["condition"], r["severity"]) for r in data["rows"]] == [("clean", 0.0), ("light", 0.5), ("light", 2.0)]


def test_robustness_json_records_the_settings_of_every_checkpoint(demo_run: dict, cli, tmp_path: Path) -> None:
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(Path(demo_run["checkpoint"]).read_bytes())
    result = cli("robustness", "--checkpoint", demo_run["checkpoint"], "--checkpoint", copy, "--dataset",
                 demo_run["dataset"], "--light", "--project", tmp_path, "--name", "two")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "robustness" / "two" / "robustness.json").read_text())
    assert [record["checkpoint"] for record in data["detectors"]] == [str(demo_run["checkpoint"]), str(copy)]
    assert [r["condition"] for r in data["rows"]] == ["clean", "light", "clean", "light"]  # two models x 2


def test_robustness_bad_input(cli, tmp_path: Path, demo_run: dict) -> None:
    missing = cli("robustness", "--checkpoint", tmp_path / "none.safetensors", "--dataset", demo_run["dataset"])
    assert missing.exit_code == 1 and "none.safetensors" in missing.output and "Traceback" not in missing.output
    no_data = cli("robustness", "--checkpoint", demo_run["checkpoint"], "--dataset", tmp_path / "nowhere")
    assert no_data.exit_code == 1 and "nowhere" in no_data.output
    negative = cli("robustness", "--checkpoint", demo_run["checkpoint"], "--dataset", demo_run["dataset"],
                   "--severity", "-1")
    assert negative.exit_code == 1 and "config key 'severities' is -1.0; it must be 0 or more" in negative.output


def test_fast_path_drift_is_bounded_on_cpu(demo_run: dict) -> None:
    """bf16 + channels_last + folded BatchNorm against the plain fp32 network (issue 6)."""
    report = measure_drift(demo_run["checkpoint"], demo_run["dataset"], "test", device="cpu", precision="bf16",
                           channels_last=True, tile_size=64, overlap=16)
    assert report.precision == "bf16" and report.pixels > 0
    assert 0 < report.max_abs_prob_diff < 0.05  # the two paths really differ, but only by rounding
    assert report.agreement >= 0.999
    assert report.f1_diff_points <= 0.1
