"""Pytest fixtures of the time-series tests; import them into a test module::

    from tests.series_helpers.fixtures import synthetic_detector  # noqa: F401 (a fixture)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.series_helpers.trained import trained_detector


@pytest.fixture(scope="session")
def synthetic_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``best.safetensors`` of a small image-only detector trained on synthetic pairs of side
    :data:`~tests.series_helpers.trained.SIZE` (trained once per session, about a minute on two cores)."""
    return trained_detector(tmp_path_factory)
