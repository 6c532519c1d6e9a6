"""The Typer application: global options, error handling and command registration.

Errors raised by the library as :class:`~mmchange_core.errors.MMChangeError` are printed as one line
on stderr with a non-zero exit code; any other exception is summarised the same way. Tracebacks are
shown only with ``mmchange --debug ...``.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

try:  # recent Typer vendors its own copy of Click
    from typer._click import exceptions as _click  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Typer on upstream Click
    from click import exceptions as _click

from mmchange_cli import commands
from mmchange_cli.console import err, warn
from mmchange_cli.options import RENAMED_OPTIONS


class _State:
    debug = False


STATE = _State()


def _describe(exc: BaseException) -> tuple[str, int]:
    from mmchange_core.errors import MMChangeError

    if isinstance(exc, MMChangeError):
        return str(exc), exc.exit_code
    from mmchange_core.io.atomic import STORAGE_FAULTS, write_error

    if isinstance(exc, OSError) and exc.errno in STORAGE_FAULTS and exc.filename:  # a full or read-only disk
        return str(write_error(exc, exc.filename)), 1
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}", 1
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}; check the path's permissions", 1
    if isinstance(exc, MemoryError):
        return "out of memory; reduce --batch-size, --tile-size or the image size", 1
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "out of memory" in text.lower():
        return f"out of memory ({text[:120]}); reduce --batch-size or --tile-size", 1
    return f"{type(exc).__name__}: {text} (rerun with 'mmchange --debug ...' for the traceback)", 1


def _is_cli_control_flow(exc: BaseException) -> bool:
    """Exit, Abort and usage errors belong to Typer/Click, which report them itself."""
    return type(exc).__module__.split(".")[0] in ("typer", "click")


def _rename_old_options(command: str, args: list[str]) -> list[str]:
    """Old spellings of ``command``'s options replaced by the new ones, each with a one-line warning."""
    renamed = RENAMED_OPTIONS.get(command, {})
    result = []
    for i, arg in enumerate(args):
        if arg == "--":
            return result + args[i:]
        old, sep, value = arg.partition("=")
        if old in renamed:
            warn(f"{old} is deprecated; use {renamed[old]}")
            arg = renamed[old] + sep + value
        result.append(arg)
    return result


def _hide_flag_types(params: list[Any]) -> list[Any]:
    """Plain flags take no value: show no ``<bool>`` type for them in ``--help``."""
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    return params


def _show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """Renamed config keys and the library's one-line warnings print one line on stderr; others keep Python's format."""
    from mmchange_core.config import RenamedKeyWarning
    from mmchange_core.errors import OneLineWarning

    if issubclass(category, (RenamedKeyWarning, OneLineWarning)):
        warn(str(message))
    else:
        _PYTHON_SHOWWARNING(message, category, *args, **kwargs)


_PYTHON_SHOWWARNING = warnings.showwarning


def _one_line_usage_error(exc: Any) -> typer.Exit:
    """Print a Click usage error as one line (not rich's boxed panel) and return the Exit to raise."""
    hint = ""
    if isinstance(exc, _click.UsageError) and exc.ctx is not None:
        hint = f"; see '{exc.ctx.command_path} --help'"
    message = " ".join(exc.format_message().split()).rstrip(".")
    err.print(f"[bold red]error:[/bold red] {escape(message + hint)}", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


class ErrorHandlingGroup(TyperGroup):
    """Turns exceptions from commands into one-line errors and exit codes; maps renamed options."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        return name, command, _rename_old_options(name or "", rest)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _hide_flag_types(command.get_params(ctx))
        return command

    def get_params(self, ctx: Any) -> list[Any]:
        return _hide_flag_types(super().get_params(ctx))

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except _click.ClickException as exc:
            raise _one_line_usage_error(exc) from None

    def invoke(self, ctx: Any) -> Any:
        from mmchange_core.interrupts import exit_on_signals
        from mmchange_core.io.atomic import remove_transients

        warnings.showwarning = _show_warning
        try:
            with exit_on_signals():  # SIGINT/SIGTERM raise Interrupted: cleanup runs, then exit 130/143 below
                return super().invoke(ctx)
        except _click.ClickException as exc:  # a bad option value, a missing argument, an unknown command
            if STATE.debug:
                raise
            raise _one_line_usage_error(exc) from None
        except KeyboardInterrupt as exc:  # a signal (Interrupted carries its exit code)
            remove_transients()  # temporaries and stages this process made: nothing half-written stays
            reason = str(exc) if str(exc) else "interrupted by SIGINT"
            err.print(f"[bold red]error:[/bold red] {escape(reason)}; finished work is kept and nothing "
                      f"half-written is left", highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(exc, "exit_code", 130)) from None
        except Exception as exc:  # noqa: BLE001 - the single place that reports errors
            if not _is_cli_control_flow(exc):
                remove_transients()
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
