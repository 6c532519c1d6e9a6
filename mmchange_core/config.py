"""Dataclass configuration: load from YAML, apply ``--set key=value`` overrides, save resolved.

Every command's options live in a dataclass. ``load_config`` builds one from an optional YAML file
plus dotted overrides, checking every key and coercing every value to the field's declared type, so
typos and wrong types fail early with a message that names the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mmchange_core.errors import MMChangeError

T = TypeVar("T")


class ConfigError(MMChangeError):
    """A configuration file or override is invalid."""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or an override) to type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return int(value)
    if tp is float:
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
    """Build dataclass ``cls`` from a mapping; unknown keys and bad values raise ConfigError."""
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        valid = ", ".join(sorted(names))
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'; valid keys here: {valid}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    return cls(**kwargs)


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


def apply_overrides(obj: T, overrides: Sequence[str]) -> T:
    """Return a copy of dataclass ``obj`` with ``key=value`` overrides applied (dotted keys nest)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value (for example --set lr=0.001)")
        dotted, raw = item.split("=", 1)
        dotted = dotted.strip()
        parts = dotted.split(".")
        obj = _set_path(obj, parts, raw.strip(), dotted)
    return obj


def _set_path(obj: Any, parts: list[str], raw: str, dotted: str) -> Any:
    names = {f.name for f in dataclasses.fields(obj)}
    head = parts[0]
    if head not in names:
        raise ConfigError(f"unknown config key '{dotted}'; valid keys here: {', '.join(sorted(names))}")
    tp = _field_types(type(obj))[head]
    if len(parts) > 1:
        child = getattr(obj, head)
        if not dataclasses.is_dataclass(child):
            raise ConfigError(f"config key '{dotted}': '{head}' has no sub-keys")
        return dataclasses.replace(obj, **{head: _set_path(child, parts[1:], raw, dotted)})
    value = _coerce(_parse_override_value(raw, tp), tp, dotted)
    return dataclasses.replace(obj, **{head: value})


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = (),
                base: T | None = None) -> T:
    """Defaults (or ``base``), then the YAML file at ``path``, then the dotted ``overrides``."""
    cfg = base if base is not None else cls()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            where = f" (line {line + 1})" if line is not None else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}; fix the syntax") from exc
        if not isinstance(data, Mapping):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        merged = _merge(to_dict(cfg), data)
        cfg = from_dict(cls, merged)
    return apply_overrides(cfg, overrides)


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
