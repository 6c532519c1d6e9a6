"""mmchange: remote-sensing change detection with images and text (MMChange)."""

__version__ = "0.1.0"

from mmchange_core.errors import MMChangeError

__all__ = ["MMChangeError", "__version__"]
