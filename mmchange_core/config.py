"""Dataclass configuration: one resolution and one validation for every command.

Every command's settings live in one dataclass, and the defaults live there and nowhere else. A
command resolves its settings with :func:`load_config`, always in this order (later wins)::

    built-in defaults < checkpoint metadata < --config FILE < --set key=value < explicit flags

The CLI passes ``[*set_items, *flag_items]`` as ``overrides`` (flags last), so an explicit flag beats
``--set``, which beats the file. Settings a checkpoint knows (``tile_size``, ``threshold``) default to
``None`` in the dataclass; the library fills them from the checkpoint only while they are still
``None``, which puts the checkpoint just above the built-in defaults.

Each field declares its allowed values with :func:`setting` and rules such as :func:`positive`,
:func:`between`, :func:`choice` and :func:`multiple_of`. :func:`validate` checks them (and rejects NaN
and infinite numbers) on every load, before any folder or file is written; a message names the key,
the value and what is allowed, and an unknown key gets a "did you mean" hint. A key renamed in a
release still loads, with a one-line :class:`RenamedKeyWarning`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mmchange_core.device import DETECTOR_PRECISIONS, PRECISIONS
from mmchange_core.errors import InputError, MMChangeError

T = TypeVar("T")

#: An override: ``"key=value"`` text (the value is parsed as YAML) or a ``(key, value)`` pair.
Override = str | tuple[str, Any]


class ConfigError(InputError):
    """A configuration file or override is invalid."""


class RenamedKeyWarning(FutureWarning):
    """A config key was given by its old name; it still works but will be removed."""


# --------------------------------------------------------------------------------------------------
# declared ranges


@dataclass(frozen=True)
class Rule:
    """One check of a value: ``test`` is True for allowed values, ``allowed`` describes them.

    A rule of ``whole=False`` checks each item of a list and lets ``None`` (not set) pass; a rule of
    ``whole=True`` sees the value itself, ``None`` included.
    """

    test: Callable[[Any], bool]
    allowed: str
    whole: bool = False


def required(how: str) -> Rule:
    """Must be given (not None, empty text or an empty list); ``how`` says how, e.g. "pass --dataset"."""
    return Rule(lambda v: v not in (None, "", [], ()), how, whole=True)


def positive() -> Rule:
    """Greater than zero."""
    return Rule(lambda v: v > 0, "greater than 0")


def non_negative() -> Rule:
    """Zero or more."""
    return Rule(lambda v: v >= 0, "0 or more")


def between(lo: float, hi: float) -> Rule:
    """In the closed range ``[lo, hi]``."""
    return Rule(lambda v: lo <= v <= hi, f"between {lo:g} and {hi:g}")


def multiple_of(n: int) -> Rule:
    """A positive multiple of ``n``."""
    return Rule(lambda v: v > 0 and v % n == 0, f"a positive multiple of {n}")


def strictly_between(lo: float, hi: float) -> Rule:
    """In the open range ``(lo, hi)``."""
    return Rule(lambda v: lo < v < hi, f"strictly between {lo:g} and {hi:g}")


def choice(*values: Any) -> Rule:
    """One of ``values``."""
    return Rule(lambda v: v in values, "one of " + ", ".join(str(v) for v in values))


def matches(pattern: str, allowed: str) -> Rule:
    """Text that fully matches the regular expression ``pattern`` (``allowed`` says it in words)."""
    compiled = re.compile(pattern)
    return Rule(lambda v: compiled.fullmatch(str(v)) is not None, allowed)


#: The device spellings every command accepts.
DEVICE = matches(r"auto|cpu|mps|cuda(:\d+)?", "auto, cpu, cuda or cuda:N")
#: Inference precisions (``auto``: bf16 on GPUs, fp32 on CPUs).
PRECISION = choice(*PRECISIONS)
#: Precisions of a trained detector: the above, and int8 on the CPU.
DETECTOR_PRECISION = choice(*DETECTOR_PRECISIONS)
#: Random seeds (NumPy and PyTorch take 0 .. 2**32 - 1).
SEED = Rule(lambda v: 0 <= v < 2**32, "a whole number from 0 to 4294967295")
#: The network halves its input five times, so every image side it sees is a multiple of this.
SIZE_MULTIPLE = 32
#: The one size rule: window sides, crops and synthetic image sizes (``SIZE_MULTIPLE``).
SIZE = multiple_of(SIZE_MULTIPLE)
#: The one threshold range: a decision threshold on a change probability (0 and 1 give trivial masks).
THRESHOLD = strictly_between(0, 1)


def setting(default: Any = None, *rules: Rule, renamed_from: Iterable[str] = ()) -> Any:
    """A dataclass field with its allowed values (``rules``) and the old names it still loads from.

    ``None`` always passes the rules (it means "not set"); in a list or tuple each item is checked.
    A list or dict default is copied for every instance.
    """
    metadata = {"rules": tuple(rules), "renamed_from": tuple(renamed_from)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def group(cls: type, **defaults: Any) -> Any:
    """A nested settings group (a dataclass shared by several configs, e.g. the detector settings);
    ``defaults`` replace the group's own defaults in this config.

    Its keys given one level up, as before they were grouped (``tile_size`` for ``detector.tile_size``),
    still load, with a one-line :class:`RenamedKeyWarning`.
    """
    return dataclasses.field(default_factory=lambda: cls(**defaults), metadata={"group": True})


def _check(fld: dataclasses.Field, value: Any, key: str, required_too: bool = True) -> None:
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"config key '{key}' is {item}; give a finite number")
    for rule in fld.metadata.get("rules", ()):
        if rule.whole:
            if required_too and not rule.test(value):
                raise ConfigError(f"config key '{key}' is not set; {rule.allowed}")
            continue
        for item in items:
            if item is None:
                continue
            try:
                ok = rule.test(item)
            except TypeError:
                ok = False
            if not ok:
                raise ConfigError(f"config key '{key}' is {item!r}; it must be {rule.allowed}")


def check_value(key: str, value: Any, *rules: Rule) -> Any:
    """``value`` if it passes ``rules`` (and is finite), else the one ConfigError message naming ``key``.

    For settings checked outside a config (a checkpoint's metadata, an API argument): the same
    rule gives the same message wherever the value comes from.
    """
    _check(dataclasses.field(metadata={"rules": rules}), value, key)
    return value


def validate(obj: Any, prefix: str = "") -> None:
    """Check every field of dataclass ``obj`` (recursively) against its declared rules."""
    for fld in dataclasses.fields(obj):
        value = getattr(obj, fld.name)
        _check(fld, value, f"{prefix}{fld.name}")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, f"{prefix}{fld.name}.")


# --------------------------------------------------------------------------------------------------
# keys and types


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _group_keys(cls: type) -> dict[str, str]:
    """The keys of ``cls``'s settings groups (their old names too) -> ``group.field`` (see :func:`group`)."""
    keys: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("group"):
            for g in dataclasses.fields(_field_types(cls)[f.name]):
                if g.init:
                    for name in (g.name, *g.metadata.get("renamed_from", ())):
                        keys.setdefault(name, f"{f.name}.{g.name}")
    return keys


def _resolve_key(cls: type, name: str, key: str) -> str:
    """The field name for ``name`` in ``cls``: itself, the new name of a renamed key, or ``group.field``
    for a key that moved into a settings group (see :func:`group`)."""
    fields = [f for f in dataclasses.fields(cls) if f.init]
    if any(f.name == name for f in fields):
        return name
    for f in fields:
        if name in f.metadata.get("renamed_from", ()):
            new_key = key[: len(key) - len(name)] + f.name
            warnings.warn(f"config key '{key}' is now '{new_key}'; the old name will be removed",
                          RenamedKeyWarning, stacklevel=4)
            return f.name
    grouped = _group_keys(cls)
    lifted = grouped.get(name)
    if lifted is not None:
        new_key = key[: len(key) - len(name)] + lifted
        warnings.warn(f"config key '{key}' is now '{new_key}'; the old name will be removed",
                      RenamedKeyWarning, stacklevel=4)
        return lifted
    names = sorted(f.name for f in fields)
    close = difflib.get_close_matches(name, sorted({*names, *grouped}), n=1)
    prefix = key[: len(key) - len(name)]
    hint = f"did you mean '{prefix}{grouped.get(close[0], close[0])}'?" if close else \
        f"valid keys here: {', '.join(names)}"
    raise ConfigError(f"unknown config key '{key}'; {hint}")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or an override) to type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}': {value!r} is not a valid {_type_name(tp)}")
    if origin is typing.Literal:
        if value in args:
            return value
        allowed = ", ".join(repr(a) for a in args)
        raise ConfigError(f"config key '{key}': {value!r} is not one of {allowed}")
    if dataclasses.is_dataclass(tp):
        if isinstance(tp, type) and isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin in (list, Sequence, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            value = [value]
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and not value.is_integer()):  # NaN and inf are not integers either
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key '{key}': expected text, got {value!r}")
        return "" if value is None else str(value)
    if tp is Path:
        return Path(str(value))
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], *, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and bad or out-of-range values raise ConfigError.

    Whether required values are set is left to :func:`validate` of the finished config.
    """
    hints = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for field_name, value in _canonical(cls, data, prefix).items():
        kwargs[field_name] = _coerce(value, hints[field_name], f"{prefix}{field_name}")
    obj = cls(**kwargs)
    for fld in dataclasses.fields(obj):  # required values may still come from later overrides
        if fld.name in kwargs:
            _check(fld, kwargs[fld.name], f"{prefix}{fld.name}", required_too=False)
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-Python (YAML/JSON-safe) view of a dataclass, recursively."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _parse_override_value(raw: str, tp: Any) -> Any:
    if tp is str or (typing.get_origin(tp) in (typing.Union, types.UnionType)
                     and str in typing.get_args(tp) and raw.lower() not in ("null", "none", "~")):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(obj: T, overrides: Sequence[Override]) -> T:
    """A copy of dataclass ``obj`` with the overrides applied in order (dotted keys nest), validated.

    A text override ``"key=value"`` is parsed as YAML (``--set``); a ``(key, value)`` pair is taken as
    given (a CLI flag's typed value).
    """
    for item in overrides:
        if isinstance(item, tuple):
            dotted, value, parsed = item[0], item[1], True
        else:
            if "=" not in item:
                raise ConfigError(f"override '{item}' must look like key=value (for example --set lr=0.001)")
            dotted, value = item.split("=", 1)
            value, parsed = value.strip(), False
        dotted = dotted.strip()
        obj = _set_path(obj, dotted.split("."), value, parsed)
    validate(obj)
    return obj


def _set_path(obj: Any, parts: list[str], value: Any, parsed: bool, prefix: str = "") -> Any:
    head = _resolve_key(type(obj), parts[0], prefix + parts[0])
    if "." in head:  # a key that moved into a settings group
        return _set_path(obj, [*head.split("."), *parts[1:]], value, parsed, prefix)
    key = prefix + head
    tp = _field_types(type(obj))[head]
    if len(parts) > 1:
        child = getattr(obj, head)
        if not dataclasses.is_dataclass(child):
            raise ConfigError(f"config key '{key}' has no sub-keys")
        return dataclasses.replace(obj, **{head: _set_path(child, parts[1:], value, parsed, f"{key}.")})
    raw = value if parsed else _parse_override_value(value, tp)
    return dataclasses.replace(obj, **{head: _coerce(raw, tp, key)})


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[Override] = (),
                base: T | None = None) -> T:
    """Defaults (or ``base``), then the YAML file at ``path``, then ``overrides`` in order; validated.

    Pass ``[*set_items, *flag_items]`` as overrides so that explicit flags win (see the module docstring).
    """
    cfg = base if base is not None else cls()
    if path is not None:
        from mmchange_core.io.images import check_regular_file

        path = Path(path)
        try:
            check_regular_file(path, "config")
        except MMChangeError as exc:
            raise ConfigError(str(exc)) from None
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            where = f" (line {line + 1})" if line is not None else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}; fix the syntax") from exc
        if not isinstance(data, Mapping):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        cfg = from_dict(cls, _merge(to_dict(cfg), _canonical(cls, data)))
    return apply_overrides(cfg, overrides)


def _canonical(cls: type, data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``data`` with renamed keys replaced by their new names (nested sections included)."""
    hints = _field_types(cls)
    out: dict[str, Any] = {}
    lifted: dict[str, dict[str, Any]] = {}
    for name, value in data.items():
        field_name = _resolve_key(cls, str(name), f"{prefix}{name}")
        if "." in field_name:  # a key that moved into a settings group: merged into it below
            group_name, inner = field_name.split(".", 1)
            lifted.setdefault(group_name, {})[inner] = value
            continue
        tp = hints[field_name]
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            value = _canonical(tp, value, f"{prefix}{field_name}.")
        out[field_name] = value
    for group_name, values in lifted.items():
        given = out.get(group_name)
        if given is not None and not isinstance(given, Mapping):
            raise ConfigError(f"config key '{prefix}{group_name}': expected a mapping, got {given!r}")
        out[group_name] = _merge(dict(given or {}), values)
    return out


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def dump_config(obj: Any) -> str:
    """YAML text of a dataclass config."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def save_config(obj: Any, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically)."""
    from mmchange_core.io.atomic import atomic_write_text

    return atomic_write_text(Path(path), dump_config(obj))
