"""Strict JSON: every JSON text mmchange writes or prints goes through :func:`strict_json`.

JSON has no NaN or Infinity; Python's ``json`` writes them as bare words that strict readers
reject. Non-finite floats become ``null`` instead, and ``allow_nan=False`` makes any that slip
through an error rather than invalid output.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


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
