"""Checks shared by the tests that run the command line."""

from __future__ import annotations


def assert_cli_error(result, *fragments: str) -> None:
    """The command failed with an ``error:`` line, no traceback, and every fragment in its output."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output and "error:" in result.output, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
