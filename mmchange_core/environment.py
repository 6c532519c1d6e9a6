"""The mmchange version, its cache folder, and a short report of the software and hardware it runs on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__version__ = "0.1.0"
"""mmchange's version; it lives here, at the bottom layer, so every layer can read it."""

#: The environment variable that moves every cache mmchange keeps (decoded tiles, compiled code).
CACHE_ENV = "MMCHANGE_CACHE"


def cache_home() -> Path:
    """mmchange's cache folder: ``$MMCHANGE_CACHE``, default ``~/.cache/mmchange``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mmchange").expanduser()


def environment_report() -> dict[str, str]:
    """Versions of mmchange, Python and torch, and the accelerator, as strings."""
    import torch
    import torchvision

    if torch.cuda.is_available():
        accel = f"CUDA {torch.version.cuda}: " + ", ".join(
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    else:
        accel = "none (CPU only)"
    return {
        "mmchange": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "accelerator": accel,
        "cpu threads": str(torch.get_num_threads()),
    }
