"""CLI behaviour: every command's help, info numbers and one-line errors."""

from __future__ import annotations

import json

import pytest

from mmchange_cli.app import app


#: Every command the README documents, written out (not read from the app under test).
COMMANDS = ("benchmark", "cache", "caption", "convert", "demo", "eval", "export", "info", "predict", "push",
            "robustness", "series", "synth", "train")


def _command_names() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    return sorted(group.commands)


def test_expected_commands_are_registered() -> None:
    assert _command_names() == sorted(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_for_every_command(cli, name: str) -> None:
    result = cli(name, "--help")
    assert result.exit_code == 0, result.output
    usage = [line.split() for line in result.output.splitlines() if line.strip().startswith("Usage:")]
    assert usage and usage[0][1:3] == ["mmchange", name], result.output  # "Usage: mmchange NAME [OPTIONS]..."


def test_root_help_and_version(cli) -> None:
    assert cli("--help").exit_code == 0
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.startswith("mmchange ")


def test_info_json_matches_paper_numbers(cli) -> None:
    result = cli("info", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert abs(data["params"] / 1e6 - 42.90) <= 0.01
    assert abs(data["gflops"] - 113.5) <= 1.0
    names = [m["name"] for m in data["modules"]]
    assert names[-4:] == ["IFR", "TDE", "ITFF", "decoder"]
    assert abs(sum(m["gflops"] for m in data["modules"]) - data["gflops"]) < 1e-6


def test_info_table_and_bad_size(cli) -> None:
    result = cli("info", "--backbone", "resnet18", "--variant", "image-only", "--size", "128")
    assert result.exit_code == 0 and "total" in result.stdout
    bad = cli("info", "--size", "100")
    assert bad.exit_code == 1
    assert "multiple of 32" in bad.output and "Traceback" not in bad.output
    bad = cli("info", "--backbone", "vgg16")
    assert bad.exit_code == 1 and "unknown backbone 'vgg16'" in bad.output


@pytest.mark.parametrize("command, text", [("predict", "mmchange[cog]"), ("export", "hf://OWNER/NAME[@REV]")])
def test_help_keeps_square_brackets(cli, command: str, text: str) -> None:
    """Help is rendered through rich: brackets in it (install extras, optional parts) must not be read as markup."""
    result = cli(command, "--help")
    assert result.exit_code == 0 and text in " ".join(result.output.replace("│", " ").split()), result.output
