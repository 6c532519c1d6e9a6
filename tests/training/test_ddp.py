"""Multi-process training: torchrun with 2 CPU processes (gloo); only rank 0 logs and writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmchange_core.models import load_checkpoint
from tests.conftest import REPO_ROOT
from tests.data_helpers import synth_dataset


def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    data = synth_dataset(tmp_path / "ds", pairs=12, size=64)
    runs = tmp_path / "runs"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mmchange_cli", "train", "--dataset", str(data), "--backbone", "resnet18", "--variant",
               "image-only", "--iters", "4", "--batch-size", "4", "--crop-size", "64", "--no-pretrained",
               "--device", "cpu", "--workers", "0", "--project", str(runs), "--json", "--no-int8"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)  # exactly one JSON document: rank 1 prints nothing
    assert result["completed"] is True and result["iterations"] == 4
    assert "2 process(es)" in done.stderr
    assert done.stderr.count("run folder") == 1  # only rank 0 logs
    assert [p.name for p in (runs / "train").iterdir()] == ["exp"]  # one run folder, written by rank 0
    rows = (runs / "train" / "exp" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # 8 pairs / batch 4 = 2 iterations per epoch -> 2 epochs
    model, meta = load_checkpoint(result["best_checkpoint"])
    assert meta.training["iterations"] == 4
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_single_process_session_needs_no_group(monkeypatch) -> None:
    from mmchange_core.distributed import distributed_session, launch_position
    from mmchange_core.errors import MMChangeError

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launch_position() == (0, 1)
    with distributed_session("cpu") as ctx:
        assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_main) == (0, 1, False, True)
        assert ctx.device == torch.device("cpu")
        assert ctx.gather("x") == ["x"] and ctx.broadcast({"a": 1}) == {"a": 1}
        values = torch.tensor([1.0, 2.0])
        summed = ctx.all_reduce_sum(values)
        assert torch.equal(summed, values) and summed is not values
    assert not torch.distributed.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(MMChangeError, match="WORLD_SIZE.*torchrun"), distributed_session("cpu"):
        pass
