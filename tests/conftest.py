"""Shared pytest fixtures: paths to the optional shared material and a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMCHANGE_SHARED", REPO_ROOT.parent / "shared"))
SPEC_DIR = SHARED / "spec"
REAL_DATA = SHARED / "data" / "real"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session", autouse=True)
def _private_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep every cache mmchange writes (decoded tiles, compile cache) in a temp folder, never in ~/.cache."""
    if "MMCHANGE_CACHE" not in os.environ:
        os.environ["MMCHANGE_CACHE"] = str(tmp_path_factory.mktemp("mmchange_cache"))


@pytest.fixture(autouse=True)
def _no_int8_at_training_end(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process training runs skip the int8 export made at the end of a run (a dynamo export, calibration and
    certificate: tens of seconds each), except in tests marked ``int8_export``, which test it; subprocess
    runs pass ``--no-int8``."""
    if request.node.get_closest_marker("int8_export") is None:
        from mmchange_core.training import loop

        monkeypatch.setattr(loop, "_make_run_int8", lambda *args, **kwargs: None)


@pytest.fixture(scope="session")
def spec_dir() -> Path:
    """The shared spec folder; the test is skipped when it is absent."""
    if not (SPEC_DIR / "reference_state_dict.tsv").is_file():
        pytest.skip(f"shared spec material not found at {SPEC_DIR}")
    return SPEC_DIR


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The shared real samples; the test is skipped when they are absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"shared real data not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture
def cli():
    """Invoke the mmchange CLI in-process: ``cli("info", "--json")`` returns a click Result."""
    from mmchange_cli.app import app

    runner = CliRunner()

    def invoke(*args: str, **kwargs):
        return runner.invoke(app, [str(a) for a in args], **kwargs)

    return invoke
