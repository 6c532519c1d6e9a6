"""``mmchange benchmark`` refuses numbers it cannot measure with before any work (no ZeroDivisionError)."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import mmchange_core.benchmark as benchmark_module
from mmchange_core.benchmark import BenchmarkConfig, run_benchmark
from mmchange_core.config import ConfigError, load_config


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(["batch_size", "repeats", "size", "warmup", "min_run_seconds"]),
       value=st.one_of(st.integers(max_value=-1), st.just(0), st.floats(allow_nan=True, allow_infinity=True)))
@example(key="repeats", value=float("nan"))  # int(nan) once raised ValueError
@example(key="batch_size", value=float("inf"))
def test_out_of_range_numbers_are_refused_by_name(key: str, value: float) -> None:
    whole = key != "min_run_seconds"
    valid = math.isfinite(value) and (value >= 0 if key in ("warmup", "min_run_seconds") else value > 0) and \
        (not whole or float(value).is_integer()) and (key != "size" or value % 32 == 0)
    override = (key, [value]) if key == "batch_size" else (key, value)
    if valid:
        load_config(BenchmarkConfig, overrides=[override])
        return
    with pytest.raises(ConfigError, match=rf"config key '{key}(\[0\])?'"):
        run_benchmark(load_config(BenchmarkConfig, overrides=[override]))


@pytest.mark.parametrize(("args", "message"), [
    (["--batch-size", "0"], "config key 'batch_size' is 0; it must be greater than 0"),
    (["--batch-size", "1,-2"], "config key 'batch_size' is -2; it must be greater than 0"),
    (["--batch-size", ""], "config key 'batch_size' is not set; give at least one batch size"),
    (["--precision", ""], "config key 'precision' is not set; give at least one precision"),
    (["--repeats", "0"], "config key 'repeats' is 0; it must be greater than 0"),
    (["--set", "min_run_seconds=nan"], "config key 'min_run_seconds' is nan; give a finite number"),
    (["--set", "warmup=-1"], "config key 'warmup' is -1; it must be 0 or more"),
    (["--set", "repeats=.nan"], "config key 'repeats': expected an integer, got nan"),
])
def test_cli_one_line_error_before_any_work(cli, monkeypatch: pytest.MonkeyPatch, args: list[str],
                                            message: str) -> None:
    built = []
    monkeypatch.setattr(benchmark_module, "MMChange", lambda *a, **k: built.append(a))
    result = cli("benchmark", "--device", "cpu", *args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {message}")
    assert not built  # no network was built
