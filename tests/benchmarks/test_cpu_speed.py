"""The CPU speed benchmark script: a tiny torch-only run (no export) and its reporting (no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.cpu_speed import (
    AUTHORS_NOTE,
    first_use,
    goals,
    main,
    markdown,
    parse_args,
)


def test_a_tiny_torch_only_run_writes_every_row(tmp_path: Path) -> None:
    result = main(["--backbone", "resnet18", "--models", "image-only", "--size", "64", "--batches", "1",
                   "--threads", "1", "--paths", "torch", "--rounds", "1", "--warmup", "0", "--gap", "0",
                   "--skip-e2e", "--skip-real", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "cpu_speed.json").read_text())
    assert saved["speed"] == json.loads(json.dumps(result["speed"]))
    paths = {r["path"]: r for r in saved["speed"]}
    assert set(paths) == {"authors", "torch"} and paths["authors"]["x_authors"] == 1.0
    assert paths["torch"]["max_abs_logit_diff_vs_authors"] < 1e-3 and paths["torch"]["ms_per_pair"] > 0
    assert saved["machine"]["cpu_model"] and saved["versions"]["torch"]
    text = (tmp_path / "cpu_speed.md").read_text()
    assert AUTHORS_NOTE in text and "| resnet18/image-only | 1 | 1 |" in text


def test_first_use_break_even_and_goals_from_rows() -> None:
    args = parse_args(["--backbone", "resnet50", "--models", "full", "--out", "x"])

    def row(path: str, ms: float) -> dict:
        return {"model": "resnet50/full", "variant": "full", "threads": 2, "batch": 4, "path": path,
                "ms_per_pair": ms, "x_authors": 1000.0 / ms}

    rows = [row("authors", 1000.0), row("torch", 400.0), row("onnxruntime-fp32", 500.0),
            row("openvino-fp32", 300.0), row("onnxruntime-int8", 150.0)]
    models = {"full": {"export_fp32_s": 60.0, "int8_total_s": 40.0, "load_seconds": {}}}
    entries = {e["path"]: e for e in first_use(args, rows, models)}
    windows = entries["torch"]["windows"]
    assert windows == 25  # 1024 x 1024 at 256 px, default overlap
    # int8 saves 25 x 0.25 s per pair against torch after 100 s of export + quantisation
    assert abs(entries["onnxruntime-int8"]["break_even_pairs"] - 100.0 / (windows * 0.25)) < 1e-9
    assert entries["onnxruntime-fp32"]["break_even_pairs"] is None  # slower than torch: never pays back
    checks = goals(args, rows, [])
    assert [c["met"] for c in checks] == [True, True] and all(c["goal_configuration"] for c in checks)
    data = {"command": "x", "settings": vars(args) | {"out": "x"}, "machine": {}, "versions": {}, "speed": [],
            "first_use": list(entries.values()), "goal_checks": checks, "notes": []}
    assert "never (not faster)" in markdown(data)
