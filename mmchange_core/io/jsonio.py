"""Strict JSON: every JSON text mmchange writes or prints goes through :func:`strict_json`.

JSON has no NaN or Infinity; Python's ``json`` writes them as bare words that strict readers
reject. Non-finite floats become ``null`` instead, and ``allow_nan=False`` makes any that slip
through an error rather than invalid output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mmchange_core.errors import InputError


def finite_or_none(data: Any) -> Any:
    """``data`` with every NaN or infinite float (also NumPy scalars) replaced by ``None``, recursively."""
    if isinstance(data, dict):
        return {key: finite_or_none(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(value) for value in data]
    if isinstance(data, np.generic):
        data = data.item()
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def strict_json(data: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``data`` with non-finite floats as ``null`` and ``allow_nan=False`` (``kwargs``: json's)."""
    return json.dumps(finite_or_none(data), allow_nan=False, **kwargs)


def read_json_file(path: Path, what: str) -> Any:
    """The JSON document in ``path`` (UTF-8, a BOM allowed), or an :class:`InputError` naming ``what`` and ``path``."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {path} is not valid JSON ({exc.msg} at line {exc.lineno} column "
                         f"{exc.colno})") from None
