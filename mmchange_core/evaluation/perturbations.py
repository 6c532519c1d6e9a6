"""Seeded, deterministic image perturbations for the robustness study (paper Table IV).

The paper does not give its settings and the authors' code has no illumination transform, so
mmchange defines and documents its own:

- ``noise``: additive Gaussian noise on both dates, ``sigma`` grey levels on the 0-255 scale
  (default 10), drawn from a generator seeded by the run seed and the image key, so every run and
  every machine perturbs the same image the same way;
- ``light``: a global illumination change on date B only: ``255 * gain * (x / 255) ** gamma`` with
  ``gain = 0.7`` and ``gamma = 1.3`` by default (darker, with deeper shadows, like a lower sun).

``severity`` scales both: noise sigma = ``10 * s``; gain = ``1 - 0.3 * s``; gamma = ``1 + 0.3 * s``.
Severity 1 is the default condition; 0 leaves the images unchanged.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

CONDITIONS = ("clean", "noise", "light", "noise+light")


@dataclass(frozen=True)
class Perturbation:
    """A robustness condition at a given severity."""

    noise: bool = False
    light: bool = False
    severity: float = 1.0
    seed: int = 0

    @property
    def name(self) -> str:
        """``clean``, ``noise``, ``light`` or ``noise+light``."""
        parts = [n for n, on in (("noise", self.noise), ("light", self.light)) if on]
        return "+".join(parts) or "clean"

    @property
    def sigma(self) -> float:
        """Noise standard deviation in grey levels (0-255)."""
        return 10.0 * self.severity if self.noise else 0.0

    @property
    def gain(self) -> float:
        """Brightness gain applied to date B."""
        return max(0.05, 1.0 - 0.3 * self.severity) if self.light else 1.0

    @property
    def gamma(self) -> float:
        """Gamma applied to date B."""
        return 1.0 + 0.3 * self.severity if self.light else 1.0

    @property
    def is_identity(self) -> bool:
        """True when the images are left unchanged."""
        return self.sigma == 0.0 and self.gain == 1.0 and self.gamma == 1.0

    def tag(self) -> str:
        """A short stable identifier (used to keep perturbed captions apart from clean ones)."""
        return f"{self.name}-s{self.severity:g}-seed{self.seed}" if not self.is_identity else "clean"

    def apply(self, image: np.ndarray, date: str, key: str) -> np.ndarray:
        """Perturb one uint8 ``[H, W, 3]`` image of ``date`` ('A' or 'B'); ``key`` seeds the noise."""
        if self.is_identity:
            return image
        out = image.astype(np.float32)
        if self.light and date == "B":
            out = 255.0 * self.gain * np.power(out / 255.0, self.gamma)
        if self.sigma > 0:
            rng = np.random.default_rng([self.seed, zlib.crc32(f"{key}|{date}".encode())])
            out = out + rng.normal(0.0, self.sigma, size=out.shape).astype(np.float32)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def conditions(noise: bool, light: bool, severity: float = 1.0, seed: int = 0) -> list[Perturbation]:
    """The Table IV conditions selected by the flags: clean, +noise, +light, +noise+light."""
    chosen = [Perturbation(severity=severity, seed=seed)]
    if noise:
        chosen.append(Perturbation(noise=True, severity=severity, seed=seed))
    if light:
        chosen.append(Perturbation(light=True, severity=severity, seed=seed))
    if noise and light:
        chosen.append(Perturbation(noise=True, light=True, severity=severity, seed=seed))
    return chosen
