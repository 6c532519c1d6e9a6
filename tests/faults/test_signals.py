"""SIGINT and SIGTERM to a running ``mmchange predict``, ``eval`` and ``caption`` (real processes).

Each process is slowed by the test hook ``MMCHANGE_TEST_PAUSE_AFTER_WRITE`` (a pause after every
committed write) and signalled once its first unit of work is recorded, so the signal lands mid-run.
It must exit through the handler: 130 (SIGINT) or 143 (SIGTERM), one ``error:`` line and no traceback,
finished work still recorded, nothing half-written (no stage, no temporary, no torn log line, no
half-filled run folder), inputs unchanged. All the processes run side by side (their pauses overlap).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from mmchange_core.inference.manifest import MANIFEST_NAME
from tests.faults_helpers import (
    BLOCKS,
    SIGNAL_CODES,
    WINDOWS,
    error_line,
    hashes,
    leftovers,
    start,
    wait_for,
    write_pair,
)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The test hook of mmchange_core.io.atomic (``TEST_PAUSE_ENV``): seconds of pause after each committed write.
PAUSE = {"MMCHANGE_TEST_PAUSE_AFTER_WRITE": "1.0"}


def _records(log: Path) -> list[dict]:
    """The records of a log; every line must be whole JSON (no line torn by the signal)."""
    if not log.exists():
        return []
    return [json.loads(line.decode("utf-8")) for line in log.read_bytes().splitlines()]


def _check_exit(code: int, stderr: str, signum: int) -> None:
    assert code == SIGNAL_CODES[signum], (code, stderr)
    line = error_line(stderr)
    name = signal.Signals(signum).name
    assert f"interrupted by {name}" in line and "nothing half-written" in line, line


@pytest.fixture(scope="module")
def runs(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Start every process at once (their pauses overlap), signal each once it has recorded its first unit."""
    from tests.text_helpers import make_dataset

    tmp = tmp_path_factory.mktemp("signals")
    for name, seed in (("a.png", 1), ("b.png", 2), ("c.png", 3)):
        write_pair(tmp / "in", name, height=64, seed=seed)
    big = write_pair(tmp / "big")
    root = make_dataset(tmp / "ds", pairs=4, size=64)
    inputs = hashes(tmp / "in", tmp / "big", root, checkpoint)
    runs: dict[str, dict] = {
        "predict folder": {"signal": signal.SIGTERM, "out": tmp / "folder_out", "args": (
            "predict", tmp / "in" / "A", tmp / "in" / "B", "-o", tmp / "folder_out", "--checkpoint", checkpoint,
            *WINDOWS)},
        "predict blocks": {"signal": signal.SIGINT, "out": tmp / "block_out", "args": (
            "predict", *big, "-o", tmp / "block_out" / "m.png", "--prob", tmp / "block_out" / "p.tif",
            "--checkpoint", checkpoint, *WINDOWS, *BLOCKS)},
    }
    for signum in SIGNALS:
        name = signal.Signals(signum).name
        runs[f"eval {name}"] = {"signal": signum, "out": tmp / f"eval_{name}", "args": (
            "eval", "--checkpoint", checkpoint, "--dataset", root, "--device", "cpu", "--tile-size", "64",
            "--workers", "0", "--save-vis", "--name", "run", "--project", tmp / f"eval_{name}")}
        runs[f"caption {name}"] = {"signal": signum, "out": tmp / f"caption_{name}" / "store.jsonl", "args": (
            "caption", "--dataset", root, "--captioner", "basic", "--text-encoder", "hashing", "--device", "cpu",
            "--batch-size", "1", "--captions", tmp / f"caption_{name}" / "store.jsonl")}
    started = {
        "predict folder": lambda run: any(r["unit"] == "a.png" for r in _records(run["out"] / MANIFEST_NAME)),
        "predict blocks": lambda run: any("#rows" in r["unit"] for r in _records(run["out"] / MANIFEST_NAME)),
        "eval": lambda run: any((run["out"] / "eval").rglob("vis/*.png")),
        "caption": lambda run: any(r["type"] == "caption" for r in _records(run["out"])),
    }
    for run in runs.values():
        run["process"] = start(*run["args"], **PAUSE)
    waiting = dict(runs)

    def signal_the_started() -> bool:  # each process is signalled as soon as it has recorded its first unit
        for key, run in list(waiting.items()):
            if (started[key] if key in started else started[key.split()[0]])(run):
                if key == "predict folder":
                    run["finished"] = hashes(run["out"] / "a.png")
                run["process"].send_signal(run["signal"])
                del waiting[key]
            elif run["process"].poll() is not None:
                pytest.fail(f"{key} ended ({run['process'].returncode}) before it was signalled: "
                            f"{run['process'].communicate()[1][-3000:]}")
        return not waiting

    wait_for(signal_the_started)
    for run in runs.values():
        _, run["stderr"] = run["process"].communicate(timeout=240)
        run["code"] = run["process"].returncode
    runs["inputs unchanged"] = {"ok": hashes(tmp / "in", tmp / "big", root, checkpoint) == inputs}
    return runs


def test_predict_folder_sigterm_keeps_finished_pairs_recorded(runs) -> None:
    run = runs["predict folder"]
    _check_exit(run["code"], run["stderr"], signal.SIGTERM)
    assert hashes(run["out"] / "a.png") == run["finished"]  # the finished pair and its record are kept
    assert "a.png" in [r["unit"] for r in _records(run["out"] / MANIFEST_NAME)]
    assert leftovers(run["out"]) == [] and runs["inputs unchanged"]["ok"]


def test_predict_blocks_sigint_leaves_no_stage(runs) -> None:
    run = runs["predict blocks"]
    _check_exit(run["code"], run["stderr"], signal.SIGINT)
    assert leftovers(run["out"]) == [] and not (run["out"] / "m.png").exists()
    assert not (run["out"] / "p.tif").exists()
    _records(run["out"] / MANIFEST_NAME)  # whole lines only
    assert runs["inputs unchanged"]["ok"]


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_eval_stops_without_a_half_filled_run_folder(name, runs) -> None:
    run = runs[f"eval {name}"]
    _check_exit(run["code"], run["stderr"], run["signal"])
    assert not (run["out"] / "eval" / "run").exists()  # no half-filled run folder
    assert leftovers(run["out"]) == [] and runs["inputs unchanged"]["ok"]


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_caption_stops_keeping_whole_records(name, runs) -> None:
    run = runs[f"caption {name}"]
    _check_exit(run["code"], run["stderr"], run["signal"])
    kept = [r for r in _records(run["out"]) if r["type"] == "caption"]  # every line whole
    assert 1 <= len(kept) < 16, len(kept)  # the finished batches are recorded, not all of them
    assert leftovers(run["out"].parent) == [] and runs["inputs unchanged"]["ok"]
