"""The option vocabulary every command shares, and the one way a command resolves its config.

Each shared option is declared here once (name, short form, help) and reused by every command, so
``--device`` or ``--batch-size`` mean the same everywhere. Config-backed options default to None
("not given"): the defaults live in the library's config dataclasses, and :func:`resolve` applies
only the flags the user typed, after ``--config`` and ``--set`` (see :mod:`mmchange_core.config`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

T = TypeVar("T")

#: Old option spellings per command: still accepted, with a one-line deprecation warning.
RENAMED_OPTIONS: dict[str, dict[str, str]] = {
    "benchmark": {"--batch": "--batch-size"},
    "caption": {"--store": "--captions"},
    "demo": {"--out": "--output"},
    "eval": {"--caption-store": "--captions"},
    "info": {"-b": "--backbone"},
    "predict": {"--tile": "--tile-size"},
    "robustness": {"--store": "--captions"},
    "train": {"--caption-store": "--captions", "-c": "--config"},
}


def resolve(cls: type[T], config: Path | None, sets: list[str], *, detector: dict[str, Any] | None = None,
            **flags: Any) -> T:
    """``cls`` from its defaults < the ``--config`` file < ``--set`` items < the flags given (not None);
    ``detector``: the detector options given (see :func:`detector_options`), set under ``detector.``."""
    from mmchange_core.config import load_config

    given = [(key, value) for key, value in flags.items() if value is not None]
    given += [(f"detector.{key}", value) for key, value in (detector or {}).items()]
    return load_config(cls, config, [*sets, *given])


def flag(name: str, help: str) -> Any:
    """A plain on/off flag (False when absent)."""
    return typer.Option(False, name, help=help)


def checkpoint_spec(value: str | Path) -> str | Path:
    """A checkpoint option's value: ``hf://OWNER/NAME[@REVISION]`` kept as text, anything else a Path.

    A Path would turn ``hf://`` into ``hf:/``; the library resolves the spec (mmchange_core.models.hub).
    """
    from mmchange_core.models.hub import is_hub_spec

    if isinstance(value, Path):
        return value
    return value if is_hub_spec(value) else Path(value)


CHECKPOINT_HELP = ("mmchange checkpoint: a .safetensors file, an exported .onnx file, an authors' .pth, or hf://OWNER/NAME "
                   "(optionally @REVISION: a branch, tag or commit) on the Hugging Face Hub.")
#: The help of commands that fall back to the latest training run without --checkpoint.
CHECKPOINT_DEFAULT_HELP = CHECKPOINT_HELP + " Default: the best checkpoint of the most recent training run under --project."


def checkpoint(required: bool = False, help: str = CHECKPOINT_HELP) -> Any:
    """--checkpoint/-c (a local file, or hf://OWNER/NAME[@REVISION])"""
    return typer.Option(... if required else None, "--checkpoint", "-c", help=help, parser=checkpoint_spec,
                        metavar="PATH|hf://OWNER/NAME")


def dataset(default: str = "") -> Any:
    """--dataset/-d (``default`` says what happens without it)"""
    return typer.Option(None, "--dataset", "-d", help="levir, whu, sysu, a dataset folder, or a .csv/.json list of "
                                                      f"pairs.{' ' + default if default else ''}")


def change_value() -> Any:
    """--change-value (which label value means change)"""
    return typer.Option(None, "--change-value", min=0,
                        help="Label value that means change, for labels with more than two values "
                             "(default: the larger of a label's two values).")


def captions(what: str = "Caption store file (default: the one in the dataset folder).") -> Any:
    """--captions (the caption store)"""
    return typer.Option(None, "--captions", help=what)


def accept_stale_captions() -> Any:
    """--accept-stale-captions"""
    return flag("--accept-stale-captions", "Use the stored captions of images that changed since they were "
                                           "captioned (default: stop and name them).")


def output(help: str) -> Any:
    """--output/-o"""
    return typer.Option(None, "--output", "-o", help=help)


def tile_size() -> Any:
    """--tile-size"""
    return typer.Option(None, "--tile-size", help="Sliding-window size in pixels, a multiple of 32 "
                                                  "(default: the checkpoint's training crop).")


def bands() -> Any:
    """--bands"""
    return typer.Option(None, "--bands", help="File bands to read, 1-based as GDAL counts, e.g. 4,3,2 (true colour "
                                              "from Sentinel-2) or 4,3,2,8 (default: the checkpoint's; for RGB "
                                              "models the bands coloured red, green, blue).")


def overlap() -> Any:
    """--overlap"""
    return typer.Option(None, "--overlap", help="Minimum overlap of neighbouring windows in pixels (default 32).")


def batch_size(help: str = "Samples per network call.") -> Any:
    """--batch-size/-b"""
    return typer.Option(None, "--batch-size", "-b", help=help)


def workers(help: str = "DataLoader worker processes.") -> Any:
    """--workers/-w"""
    return typer.Option(None, "--workers", "-w", help=help)


def device() -> Any:
    """--device"""
    return typer.Option(None, "--device", help="auto (default: the first GPU, else the CPU), cpu, cuda or cuda:N.")


def precision(help: str = "auto (bf16 on GPU, fp32 on CPU), fp32, bf16 or fp16.") -> Any:
    """--precision"""
    return typer.Option(None, "--precision", help=help)


DETECTOR_PRECISION_HELP = ("auto (GPU: bf16; CPU: the checkpoint's certified int8 export when it has one within the "
                           "accuracy bound, else fp32), fp32, bf16, fp16, or int8 (CPU: a calibrated int8 export with "
                           "an accuracy certificate, made once and cached).")


def calibrate() -> Any:
    """--calibrate"""
    return typer.Option(None, "--calibrate", help="--precision int8: a dataset folder or pair list whose 'train' "
                                                  "split (or all pairs) calibrates the int8 export when none is "
                                                  "cached (default: the checkpoint's training dataset).")


def accept_int8_drift() -> Any:
    """--accept-int8-drift"""
    return flag("--accept-int8-drift", "Run an int8 export whose accuracy certificate is below the bound "
                                       "(refused otherwise).")


def compile() -> Any:
    """--compile"""
    return flag("--compile", "torch.compile the network (GPU; cached on disk).")


def threshold() -> Any:
    """--threshold"""
    return typer.Option(None, "--threshold", help="Change when probability > T (default: the checkpoint's, 0.5 "
                                                  "unless tuned).")


def project() -> Any:
    """--project"""
    return typer.Option(None, "--project", help="Folder that holds the run folders.")


def name() -> Any:
    """--name"""
    return typer.Option(None, "--name", help="Run folder name (default exp; auto-incremented).")


def config() -> Any:
    """--config"""
    return typer.Option(None, "--config", help="YAML file of config values (see examples/configs).")


def sets() -> Any:
    """--set (repeatable)"""
    return typer.Option([], "--set", help="Override a config key: --set key=value (repeatable).")


def as_json() -> Any:
    """--json"""
    return flag("--json", "Print the result as JSON on stdout.")


# --------------------------------------------------------------------------------------------------
# the detector settings: one option group for every command that runs a trained model

#: The rich help panel the detector options are listed under.
DETECTOR_PANEL = "Detector settings"
CAPTIONS_STORE_HELP = "Caption store of text models (default: the one in the dataset folder)."


def _detector_options(captions_help: str) -> dict[str, tuple[Any, Any]]:
    """``field -> (type, typer option)`` of :class:`mmchange_core.inference.settings.DetectorSettings`: the
    vocabulary's options above, listed in the :data:`DETECTOR_PANEL` help panel."""
    declared = {
        "tile_size": (int | None, tile_size()),
        "overlap": (int | None, overlap()),
        "batch_size": (int | None, batch_size("Windows per network call (default 4).")),
        "threshold": (float | None, threshold()),
        "workers": (int | None, workers("DataLoader worker processes (default 2).")),
        "device": (str | None, device()),
        "precision": (str | None, precision(DETECTOR_PRECISION_HELP)),
        "calibrate": (str | None, calibrate()),
        "accept_int8_drift": (bool, accept_int8_drift()),
        "compile": (bool, compile()),
        "captions": (str | None, captions(captions_help)),
        "bands": (str | None, bands()),
    }
    for _tp, option in declared.values():
        option.rich_help_panel = DETECTOR_PANEL
    return declared


def detector_options(*, captions_help: str = CAPTIONS_STORE_HELP, without: tuple[str, ...] = ()
                     ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the detector settings' options to a command, declared once here and listed in one help panel.

    The command takes a ``detector`` parameter instead: the dict of the options the user gave (flag
    names as config keys, unset ones left out), to pass to :func:`resolve` as ``detector=...``.
    ``without`` leaves out options that do not apply to the command.
    """
    declared = {k: v for k, v in _detector_options(captions_help).items() if k not in without}

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        params = [p for p in signature.parameters.values() if p.name != "detector"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=tp)
                 for name, (tp, default) in declared.items()]
        keyword_only = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
        positional = [p for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in declared}
            for switch in ("compile", "accept_int8_drift"):  # a flag not given leaves the config's value
                if switch in given:
                    given[switch] = given[switch] or None
            return command(*args, detector={k: v for k, v in given.items() if v is not None}, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*positional, *keyword_only, *added])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}  # type: ignore[attr-defined]
        return wrapper

    return decorate
