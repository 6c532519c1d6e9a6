"""``mmchange demo --keep-state`` keeps the training state, and the demo ends with a one-screen summary.

The default run (state deleted) is checked on the session demo of tests/evaluation/test_robustness_demo.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_keep_state_and_the_summary(cli, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = cli("demo", "--output", out, "--keep-state", "--iters", "1", "--batch-size", "4", "--device", "cpu",
                 "--set", "pairs=12", "--set", "size=64")
    assert result.exit_code == 0, result.output
    assert [p.relative_to(out) for p in out.rglob("state.pt")] == [Path("train/model/state.pt")]
    assert (out / "train" / "model" / "last.safetensors").is_file()
    summary = result.stdout[result.stdout.index("mmchange demo: done"):]
    assert len(summary.splitlines()) <= 24                                      # one screen
    for text in ("resnet18", " iterations, batch 4", "12 synthetic pairs", "F1 ", "IoU ", "dF1", "MB",
                 "training state kept"):
        assert text in summary, text
    report = out / "report.html"  # the demo always writes its report, and the summary says where
    assert report.is_file(), result.output
    assert report.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    assert str(report) in summary and "not written" not in summary
    assert "could not be written" not in result.output
