"""Fixtures of the fault-injection tests: one tiny checkpoint for the session, a fresh pair per test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.faults_helpers import write_pair
from tests.inference_helpers import one_thread  # noqa: F401  (fixture)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight resnet18 image-only checkpoint (the smallest network mmchange builds)."""
    from mmchange_core.models import build_model, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("faults_ckpt") / "tiny.safetensors"
    save_checkpoint(path, build_model("resnet18", "image-only"))
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A 170 x 64 PNG pair in ``tmp_path/in``: four blocks of one 64-pixel window each."""
    return write_pair(tmp_path / "in")


