"""Text printed through rich keeps its square brackets: notes, warnings, errors and table cells.

Install hints (``mmchange[tensorboard]``), paths and captions may hold text that looks like rich
markup; each kind of line is printed by one function of :mod:`mmchange_cli.console`, which never
reads it as markup.
"""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from mmchange_cli import console
from mmchange_core.progress import ProgressEvent

TEXTS = ['install it with: pip install "mmchange[tensorboard]"', "a [bold]caption[/bold] of [red]", "C:\\runs\\[x]\\"]


def _recording(monkeypatch: pytest.MonkeyPatch, terminal: bool = False) -> io.StringIO:
    """Send both consoles to one buffer (a terminal when ``terminal``), 200 columns wide."""
    buffer = io.StringIO()
    fake = Console(file=buffer, force_terminal=terminal, width=200, highlight=False, color_system=None)
    monkeypatch.setattr(console, "err", fake)
    monkeypatch.setattr(console, "out", fake)
    return buffer


@pytest.mark.parametrize("text", TEXTS)
def test_a_note_keeps_its_brackets(text: str, monkeypatch) -> None:
    buffer = _recording(monkeypatch)
    console.note(text)
    console.note(text, stdout=True)
    assert buffer.getvalue() == f"{text}\n{text}\n"


@pytest.mark.parametrize("text", TEXTS)
def test_a_warning_keeps_its_brackets(text: str, monkeypatch) -> None:
    buffer = _recording(monkeypatch)
    console.warn(text)
    console.warn(text, indent="  ")
    assert buffer.getvalue() == f"warning: {text}\n  warning: {text}\n"


@pytest.mark.parametrize("text", TEXTS)
def test_an_error_keeps_its_brackets(text: str, monkeypatch) -> None:
    buffer = _recording(monkeypatch)
    console.error(text)
    assert buffer.getvalue() == f"error: {text}\n"


@pytest.mark.parametrize("text", TEXTS)
def test_table_cells_headers_and_titles_keep_their_brackets(text: str, monkeypatch) -> None:
    buffer = _recording(monkeypatch)
    console.out.print(console.table(f"title {text}", [f"[bold]{text}", "n"], [(text, 1), ("[b]x[/b]", 2.5)]))
    printed = buffer.getvalue()
    for expected in (f"title {text}", f"[bold]{text}", text, "[b]x[/b]"):
        assert expected in printed, printed


@pytest.mark.parametrize("text", TEXTS)
def test_lines_above_progress_keep_their_brackets(text: str, monkeypatch) -> None:
    """The training loop's notes (e.g. the TensorBoard hint) go through ProgressDisplay.print."""
    for terminal in (False, True):
        buffer = _recording(monkeypatch, terminal)
        with console.ProgressDisplay(plain=not terminal) as display:
            display(ProgressEvent(task=f"task {text}", done=1, total=2, message=text))
            display.print(text)
            display(ProgressEvent(task=f"task {text}", done=2, total=2, message=text))
        printed = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())  # the bar's cursor moves
        assert text in re.split(r"[\r\n]", printed), (terminal, printed)  # the line above the bars
        assert f"task {text}" in printed and printed.count(text) >= 3, (terminal, printed)
