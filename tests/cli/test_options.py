"""The shared option vocabulary: one precedence, validation at load, hints, deprecated spellings, progress."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer

from mmchange_cli.console import ProgressDisplay
from mmchange_core.progress import ProgressEvent

# command -> (module.function it calls, how to get the config from that call, the batch-size key, extra args)
CALLS: dict[str, tuple[str, Any, str, list[str]]] = {
    "predict": ("mmchange_core.inference.predict.predict_paths", lambda a, k: k["config"].detector.batch_size,
                "detector.batch_size", ["a.png", "b.png", "-o", "m.png", "-c", "x.safetensors"]),
    "eval": ("mmchange_core.evaluation.run.run_evaluation", lambda a, k: a[0].detector.batch_size,
             "detector.batch_size", ["-c", "x.safetensors", "-d", "data"]),
    "robustness": ("mmchange_core.evaluation.robustness.run_robustness", lambda a, k: a[0].detector.batch_size,
                   "detector.batch_size", ["-c", "x.safetensors", "-d", "data"]),
    "train": ("mmchange_core.training.loop.train", lambda a, k: a[0].batch_size, "batch_size", ["-d", "data"]),
    "demo": ("mmchange_core.demo.run_demo", lambda a, k: a[0].batch_size, "batch_size", []),
    "benchmark": ("mmchange_core.benchmark.run_benchmark", lambda a, k: a[0].batch_size[0], "batch_size", []),
    "caption": ("mmchange_core.text.caption_dataset", lambda a, k: k["captioner"].batch_size,
                "captioner.batch_size", ["-d", "data"]),
}

#: The documented default batch size of each command, written out here (never read from the code under test):
#: predict 4 (README, "Predicting on your images" options table); eval and robustness 4 (CHANGELOG:
#: "--batch-size default 4 everywhere"); train 32 (README, Training: "batch 32 (over all processes)");
#: demo 8 (README, built-in demo: "batch 8"); benchmark 1 and 32, of which the first is read here (README, Speed:
#: "batch 1 and 32"); caption 16 (README, captioners table: "batched generation (--batch-size, 16)").
DOCUMENTED_DEFAULT = {"predict": 4, "eval": 4, "robustness": 4, "train": 32, "demo": 8, "benchmark": 1, "caption": 16}


@pytest.fixture
def captured(monkeypatch):
    """Replace each command's library call by one that records the resolved batch size and stops."""
    import importlib
    import pkgutil

    import mmchange_core

    # import every library module first: a module imported while the fakes are in place (demo.py's
    # ``from ...loop import train``) would otherwise keep a fake for the rest of the session
    for module_info in pkgutil.walk_packages(mmchange_core.__path__, "mmchange_core."):
        importlib.import_module(module_info.name)
    seen: dict[str, Any] = {}

    for command, (target, read, _key, _args) in CALLS.items():
        module, name = target.rsplit(".", 1)

        def fake(*args: Any, _command: str = command, _read: Any = read, **kwargs: Any) -> None:
            seen[_command] = _read(args, kwargs)
            raise typer.Exit(0)

        monkeypatch.setattr(f"{module}.{name}", fake)
    return seen


def _yaml(path: Path, key: str, value: int) -> Path:
    """``key: value`` as YAML (a dotted key nests)."""
    *parents, leaf = key.split(".")
    text, indent = "", ""
    for parent in parents:
        text += f"{indent}{parent}:\n"
        indent += "  "
    path.write_text(f"{text}{indent}{leaf}: {value}\n")
    return path


@pytest.mark.parametrize("command", sorted(CALLS))
def test_flag_beats_set_beats_config_beats_default(cli, captured, tmp_path: Path, monkeypatch, command: str) -> None:
    monkeypatch.chdir(tmp_path)
    _target, _read, key, args = CALLS[command]
    config = _yaml(tmp_path / "c.yaml", key, 3)
    assert DOCUMENTED_DEFAULT[command] not in (3, 5, 7)  # so that each source below shows
    for extra, expected in ([], None), (["--config", config], 3), (["--config", config, "--set", f"{key}=5"], 5), \
            (["--set", f"{key}=5", "--config", config, "-b", "7"], 7):
        captured.clear()
        result = cli(command, *args, *extra)
        assert result.exit_code == 0, (command, extra, result.output)
        if expected is None:  # nothing given: the documented default
            expected = DOCUMENTED_DEFAULT[command]
        assert captured[command] == expected, (command, extra)


@pytest.mark.parametrize("command", sorted(CALLS))
def test_bad_value_fails_at_load_with_one_line_and_writes_nothing(cli, tmp_path: Path, monkeypatch,
                                                                  command: str) -> None:
    monkeypatch.chdir(tmp_path)
    _target, _read, key, args = CALLS[command]
    result = cli(command, *args, "-b", "0")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: config key '{key}' is 0; it must be greater than 0"]
    assert list(tmp_path.iterdir()) == []


def test_range_check_happens_before_the_run_folder(cli, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for bad, message in (("augment.flip_p=2", "config key 'augment.flip_p' is 2.0; it must be between 0 and 1"),
                         ("augment.crop_border=-8", "config key 'augment.crop_border' is -8; it must be 0 or more"),
                         ("lr=nan", "config key 'lr' is nan; give a finite number")):
        result = cli("train", "-d", tmp_path, "--project", runs, "--set", bad)
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert not runs.exists()


def test_unknown_key_gets_a_hint(cli, tmp_path: Path) -> None:
    result = cli("eval", "-c", tmp_path / "x.safetensors", "-d", tmp_path, "--set", "treshold=0.3")
    assert result.exit_code == 1 and "unknown config key 'treshold'; did you mean 'detector.threshold'?" in result.output
    result = cli("train", "-d", tmp_path, "--set", "augment.flp_p=0.1")
    assert "did you mean 'augment.flip_p'?" in result.output


def test_old_spellings_still_work_with_one_warning(cli, captured, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("benchmark", "--batch", "6")
    assert result.exit_code == 0 and captured["benchmark"] == 6
    assert result.stderr.strip() == "warning: --batch is deprecated; use --batch-size"
    result = cli("train", "-d", "data", "--set", "num_workers=2", "--caption-store=s.jsonl")
    assert result.exit_code == 0
    assert "warning: --caption-store is deprecated; use --captions" in result.stderr
    assert "warning: config key 'num_workers' is now 'workers'" in result.stderr


def test_help_shows_no_bool_type_for_flags(cli) -> None:
    for command in [*CALLS, "synth", "info", "convert"]:
        text = cli(command, "--help").output
        assert "--json" in text and "<bool>" not in text, command
    assert "<bool>" not in cli("--help").output


def test_plain_progress_lines_when_stderr_is_not_a_terminal(capsys) -> None:
    with ProgressDisplay(plain=True, interval=3600) as display:
        for done in range(1, 101):
            display(ProgressEvent("windows", done, 100, fields={"loss": 0.5}))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("windows: 1/100 (1%) loss 0.5000 [elapsed")
    assert lines[-1].startswith("windows: 100/100 (100%)")
    assert len(lines) == 11  # the first event, then every tenth


def test_cli_shows_plain_progress_in_logs(cli, tmp_path: Path) -> None:
    result = cli("synth", tmp_path / "ds", "--pairs", 3, "--size", 32)
    assert result.exit_code == 0 and "synth: 3/3 (100%)" in result.stderr


def test_benchmark_runs(cli) -> None:
    result = cli("benchmark", "--backbone", "resnet18", "--variant", "image-only", "--size", 64, "-b", 1,
                 "--precision", "fp32", "--repeats", 1, "--set", "warmup=0", "--set", "min_run_seconds=0",
                 "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["batch"], r["precision"]) for r in rows] == [(1, "fp32")] and rows[0]["pairs_per_s"] > 0
    assert "benchmark: 1/1 (100%)" in result.stderr


def test_plain_progress_starts_a_task_over(capsys) -> None:
    with ProgressDisplay(plain=True, interval=3600) as display:
        for _epoch in range(2):
            for done in range(0, 5):
                display(ProgressEvent("validate", done, 4))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" [")[0] for line in lines] == ["validate: 0/4 (0%)", "validate: 1/4 (25%)",
                                                       "validate: 2/4 (50%)", "validate: 3/4 (75%)",
                                                       "validate: 4/4 (100%)"] * 2
