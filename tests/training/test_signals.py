"""Signals during training and hand-edited run configs on resume.

SIGTERM/SIGINT save a resumable state and exit 143/130 (checked on a real ``python -m mmchange_cli``
process); resuming then ends bit for bit where an uninterrupted run ends. A second signal while the
state is written is held until the write is done. An edited ``config.yaml`` is refused on resume.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import mmchange_core.training.loop as train_module
from mmchange_core.config import ConfigError
from mmchange_core.progress import ProgressEvent
from mmchange_core.training.interrupt import Interrupted, StopSignal
from mmchange_core.training.loop import TrainObserver, resume_config, train
from tests.data_helpers import synth_dataset, tiny_config

REPO_ROOT = Path(__file__).resolve().parents[2]
ITERS = 8  # 8 training pairs, batch 4: 4 epochs of 2 iterations


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_dataset(tmp_path_factory.mktemp("signals") / "ds", pairs=12, size=64)


def _assert_same_weights(a: Path, b: Path) -> None:
    for name in ("last.safetensors", "best.safetensors"):
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name


# --------------------------------------------------------------------------------------------------
# StopSignal on its own


def test_first_signal_requests_a_stop_second_interrupts_unless_saving() -> None:
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.name == "SIGTERM" and stop.code == signal.SIGTERM
        with pytest.raises(Interrupted) as info:
            with stop.saving():
                os.kill(os.getpid(), signal.SIGINT)  # held: the save finishes first
                finished = True
        assert finished and info.value.exit_code == 130 and isinstance(info.value, KeyboardInterrupt)
        with pytest.raises(Interrupted) as info:
            os.kill(os.getpid(), signal.SIGTERM)
        assert info.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_processes_agree_on_a_stop() -> None:
    stop = StopSignal()
    assert not stop.agree(0.0) and not stop.requested
    assert stop.agree(float(signal.SIGINT)) and stop.name == "SIGINT"  # another process got SIGINT
    both = StopSignal()
    assert both.agree(float(signal.SIGINT + signal.SIGTERM)) and both.name == "SIGTERM"


# --------------------------------------------------------------------------------------------------
# a real process stopped by a signal, then resumed


def _cli(*args: object, stderr: Path | None = None) -> subprocess.Popen:
    """``python -m mmchange_cli ARGS`` as the leader of a new process group (as a shell runs a job)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "mmchange_cli", *map(str, args)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=open(stderr, "w") if stderr else subprocess.PIPE,
                            text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, dict]:
    stdout, _ = proc.communicate(timeout=timeout)
    return proc.returncode, json.loads(stdout) if stdout.strip() else {}


def _train_args(dataset: Path, project: Path, name: str, workers: int = 0) -> list[object]:
    return ["train", "--dataset", dataset, "--backbone", "resnet18", "--variant", "image-only", "--iters", ITERS,
            "--batch-size", 4, "--crop-size", 64, "--no-pretrained", "--device", "cpu", "--workers", workers,
            "--project", project, "--name", name, "--json", "--no-int8"]


@pytest.fixture(scope="module")
def straight_run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("straight")
    code, result = _finish(_cli(*_train_args(dataset, project, "straight")))
    assert code == 0 and result["completed"] is True and result["stopped_by"] is None
    return Path(result["run_dir"])


@pytest.mark.parametrize(("sig", "exit_code", "workers"), [(signal.SIGTERM, 143, 2), (signal.SIGINT, 130, 0)])
def test_signal_saves_exits_non_zero_and_resumes_bit_exact(dataset: Path, straight_run: Path, tmp_path: Path,
                                                           sig: signal.Signals, exit_code: int, workers: int) -> None:
    log = tmp_path / "stderr.txt"
    proc = _cli(*_train_args(dataset, tmp_path, "stopped", workers), stderr=log)
    deadline = time.monotonic() + 120
    while "train: 1/" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first iteration is done: the DataLoader workers of epoch 0 are running
    # to the whole group, as Ctrl-C in a terminal or a batch scheduler does: DataLoader workers get it too
    os.killpg(proc.pid, sig)
    code, result = _finish(proc)
    assert code == exit_code, log.read_text()
    assert result["completed"] is False and result["stopped_by"] == sig.name and result["iterations"] < ITERS
    assert f"{sig.name} received; state saved, continue with: mmchange train --resume" in log.read_text()
    run = Path(result["run_dir"])
    state = torch.load(run / "state.pt", weights_only=True)
    assert state["progress"]["iteration"] == result["iterations"]
    code, resumed = _finish(_cli("train", "--resume", run, "--json"))
    assert code == 0 and resumed["completed"] is True and resumed["iterations"] == ITERS
    _assert_same_weights(straight_run, run)


# --------------------------------------------------------------------------------------------------
# a second signal while the state is written, in process


class _SignalAt(TrainObserver):
    """Sends ``sig`` to this process once iteration ``at`` is done."""

    def __init__(self, at: int, sig: int) -> None:
        self.at, self.sig = at, sig

    def on_progress(self, event: ProgressEvent) -> None:
        if event.task == "train" and event.done == self.at:
            os.kill(os.getpid(), self.sig)


def test_second_signal_during_the_save_waits_for_it(dataset: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # batch 2: 2 epochs of 4 iterations; SIGTERM after iteration 5 stops after iteration 6, mid epoch 1
    straight = train(tiny_config(dataset, tmp_path, iters=ITERS, batch_size=2, name="straight"))
    real_save = train_module.save_train_state

    def save_hit_by_a_signal(path, state, **kwargs):
        if state.iteration == 6:  # the save the first signal asked for
            os.kill(os.getpid(), signal.SIGINT)
        return real_save(path, state, **kwargs)

    monkeypatch.setattr(train_module, "save_train_state", save_hit_by_a_signal)
    config = tiny_config(dataset, tmp_path, iters=ITERS, batch_size=2, name="twice")
    with pytest.raises(Interrupted) as info:
        train(config, observer=_SignalAt(5, signal.SIGTERM))
    assert info.value.exit_code == 130
    run = tmp_path / "train" / "twice"
    progress = torch.load(run / "state.pt", weights_only=True)["progress"]
    assert (progress["iteration"], progress["epoch"], progress["batch"]) == (6, 1, 2)  # the save completed
    monkeypatch.setattr(train_module, "save_train_state", real_save)
    resumed = train(resume_config(run), resume_dir=run)
    assert resumed.completed and resumed.stopped_by is None
    _assert_same_weights(straight.run_dir, run)


# --------------------------------------------------------------------------------------------------
# a hand-edited config.yaml


def test_edited_config_is_refused_on_resume(dataset: Path, tmp_path: Path, cli) -> None:
    first = train(tiny_config(dataset, tmp_path, iters=ITERS, name="edited"), stop_after=1)
    assert first.stopped_by == "stop_after" and not first.completed
    path = first.run_dir / "config.yaml"
    original = path.read_text()
    data = yaml.safe_load(original)
    data["lr"], data["augment"]["flip_p"], data["workers"] = 0.1, 0.25, 1
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        train(resume_config(first.run_dir), resume_dir=first.run_dir, stop_after=1)
    message = str(info.value)
    assert "(augment.flip_p 0.5 -> 0.25, lr 0.0005 -> 0.1);" in message and "workers" not in message.split(";")[0]
    assert "start a new run" in message and "revert" in message
    result = cli("train", "--resume", first.run_dir)
    assert result.exit_code == 1 and "lr 0.0005 -> 0.1" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    # a flag may not change the result either; only the resumable keys may change (here workers, edited)
    data["lr"], data["augment"]["flip_p"] = 0.0005, 0.5
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"cannot change seed 2333 -> 1 when resuming"):
        resume_config(first.run_dir, ["seed=1"])
    resumed = train(resume_config(first.run_dir, ["device=cpu"]), resume_dir=first.run_dir, stop_after=2)
    assert resumed.iterations == 2
