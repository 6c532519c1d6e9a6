"""The Typer application: global options, error handling and command registration.

Errors raised by the library as :class:`~mmchange_core.errors.MMChangeError` are printed as one line
on stderr with a non-zero exit code; any other exception is summarised the same way. Tracebacks are
shown only with ``mmchange --debug ...``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from mmchange_cli import commands
from mmchange_cli.console import err


class _State:
    debug = False


STATE = _State()


def _describe(exc: BaseException) -> tuple[str, int]:
    from mmchange_core.errors import MMChangeError

    if isinstance(exc, MMChangeError):
        return str(exc), exc.exit_code
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}", 1
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}; check the path's permissions", 1
    if isinstance(exc, MemoryError):
        return "out of memory; reduce --batch-size, --tile or the image size", 1
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "out of memory" in text.lower():
        return f"out of memory ({text[:120]}); reduce --batch-size or --tile", 1
    return f"{type(exc).__name__}: {text} (rerun with 'mmchange --debug ...' for the traceback)", 1


def _is_cli_control_flow(exc: BaseException) -> bool:
    """Exit, Abort and usage errors belong to Typer/Click, which report them itself."""
    return type(exc).__module__.split(".")[0] in ("typer", "click")


class ErrorHandlingGroup(TyperGroup):
    """Turns exceptions from commands into one-line errors and exit codes."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            err.print("[red]interrupted[/red]; finished work has been kept")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - the single place that reports errors
            if _is_cli_control_flow(exc) or STATE.debug:
                raise
            message, code = _describe(exc)
            err.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code) from None


app = typer.Typer(
    cls=ErrorHandlingGroup,
    name="mmchange",
    help="Remote-sensing change detection with images and text (MMChange).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from mmchange_core import __version__

        typer.echo(f"mmchange {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Remote-sensing change detection with images and text (MMChange)."""
    STATE.debug = debug


def _register_commands() -> None:
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="mmchange")
