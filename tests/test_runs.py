"""Run folders: names stay inside the project, concurrent creation never shares a folder, one trainer per run."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mmchange_core.config import ConfigError, load_config
from mmchange_core.errors import InputError
from mmchange_core.runs import RunBusyError, lock_run, next_run_dir
from mmchange_core.training.config import TrainConfig
from mmchange_core.training.loop import TrainObserver, resume_config, train
from tests.data_helpers import synth_dataset, tiny_config

ESCAPES = ["../x", "..", ".", "/abs", "a/b", "a\\b", "C:\\x", "C:x", "x/..", " x", ""]


@pytest.mark.parametrize("name", ESCAPES)
def test_a_name_that_leaves_the_project_is_refused_before_anything_is_created(name: str, tmp_path: Path) -> None:
    project = tmp_path / "project"
    with pytest.raises(InputError, match="plain folder name") as error:
        next_run_dir(project, "eval", name)
    assert "\n" not in str(error.value) and not project.exists()
    with pytest.raises(ConfigError, match="config key 'name'"):  # and already when the config is read
        load_config(TrainConfig, None, [("dataset", "d"), ("name", name)])


#: Plain folder names: letters and digits of any script, with '-', '_', '.' and inner spaces, never '.' or '..'.
PLAIN_NAMES = st.text(st.characters(categories=("L", "N")) | st.sampled_from("-_. "), min_size=1, max_size=12) \
    .filter(lambda name: name.strip() == name and name not in (".", ".."))


@settings(max_examples=60, deadline=None)
@example(name="exp")
@example(name="run 2")
@example(name="résumé.v1")
@given(name=PLAIN_NAMES)
def test_a_plain_name_is_accepted_as_one_folder_inside_the_project(name: str, tmp_path_factory) -> None:
    project = tmp_path_factory.mktemp("p")
    run = next_run_dir(project, "train", name)  # never refused
    assert run.parent == project / "train" and run.name == name and run.is_dir()
    assert [p.relative_to(project) for p in project.rglob("*")] == [Path("train"), Path("train", name)]


@settings(max_examples=60, deadline=None)
@given(name=st.text(min_size=1, max_size=12))
def test_any_name_is_refused_with_nothing_created_or_is_one_folder_inside_the_project(name: str,
                                                                                      tmp_path_factory) -> None:
    project = tmp_path_factory.mktemp("p") / "project"
    try:
        run = next_run_dir(project, "train", name)
    except InputError as error:
        assert "\n" not in str(error) and not project.exists()
        return
    assert run.parent == project / "train" and run.name == name and run.is_dir()


def _make_run_dir(project: str, barrier) -> None:
    barrier.wait(timeout=60)
    print(next_run_dir(project, "train", "same"))


def test_processes_creating_runs_at_once_get_distinct_folders(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    workers = [context.Process(target=_make_run_dir, args=(str(tmp_path), barrier)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0] * 4
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["same", "same2", "same3", "same4"]


HOLD = "import sys; from mmchange_core.runs import lock_run; held = lock_run(sys.argv[1]); print('held', flush=True); " \
       "sys.stdin.read()"


def test_a_run_trained_by_another_process_cannot_be_resumed(tmp_path: Path, cli) -> None:
    root = synth_dataset(tmp_path / "ds", pairs=12, size=64)
    seen: list[str] = []

    class Probe(TrainObserver):
        def on_start(self, info) -> None:
            self.run_dir = info.run_dir

        def on_progress(self, event) -> None:  # while it trains, a run holds its folder's lock
            with pytest.raises(RunBusyError) as error:
                lock_run(self.run_dir)
            seen.append(str(error.value))

    first = train(tiny_config(root, tmp_path / "runs", iters=4, val_split=None), stop_after=1, observer=Probe())
    assert not first.completed and "another process is training" in seen[0]

    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(first.run_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.perf_counter()
        with pytest.raises(RunBusyError, match="another process is training") as error:
            train(resume_config(first.run_dir), resume_dir=first.run_dir)
        assert time.perf_counter() - started < 5 and "\n" not in str(error.value)
        result = cli("train", "--resume", first.run_dir)
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert "another process is training" in " ".join(result.output.split())
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    resumed = train(resume_config(first.run_dir), resume_dir=first.run_dir)
    assert resumed.completed and resumed.iterations == first.total_iters
