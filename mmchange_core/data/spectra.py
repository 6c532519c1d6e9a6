"""Typical surface reflectance spectra of the synthetic scene's materials, for multispectral pairs.

``mmchange synth --bands 4`` and ``--bands 13`` render the same scenes as the RGB pairs from these spectra:
every material (vegetation, dry vegetation, bare soil, desert sand, a bare lot, water, asphalt, concrete and nine
roof materials) has one reflectance (0..1) per Sentinel-2 band, B01 to B12, at the band's centre wavelength. The
values are rounded typical values of the kind spectral libraries (USGS, ECOSTRESS) give: green vegetation
reflects little red (~0.04) and much near-infrared (~0.42), quartz-rich desert sand is bright and rises steadily
into the short-wave infrared (~0.35 red, ~0.54 at 1610 nm), water is dark everywhere and near 0.01 in the
near-infrared, concrete is flat at about 0.3, red tiles rise from green to red and on into the infrared.
B10 (1375 nm, cirrus) sees almost nothing of the ground through the water vapour above it, so every
material is near 0.01 there. The 4-band sensor (aerial or PlanetScope order red, green, blue, near-infrared)
reads the Sentinel-2 bands B04, B03, B02 and B08 of the same spectra.

:data:`STRESS` is the factor a stressed (drought or disease) canopy applies to a healthy one: the visible
bands stay as they are while the red edge and the near-infrared drop and the short-wave infrared rises, a
change only a sensor with a near-infrared band can see. :data:`GREENING` is its counterpart on bare soil
(a sparse crop coming up: near-infrared up, visible bands as the soil's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The Sentinel-2 MSI bands, in product order, and their centre wavelengths (nm).
SENTINEL2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
SENTINEL2_WAVELENGTHS_NM = (443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1375, 1610, 2190)
#: The 4-band sensor's bands (aerial/PlanetScope order) and the Sentinel-2 band each one is read from.
RGBN_BANDS = ("red", "green", "blue", "nir")
_RGBN_FROM_S2 = ("B04", "B03", "B02", "B08")

#: Reflectance (0..1) of each material in :data:`SENTINEL2_BANDS` order.
MATERIALS: dict[str, tuple[float, ...]] = {
    #                 B01    B02    B03    B04    B05    B06    B07    B08    B8A    B09    B10    B11    B12
    "vegetation":    (0.030, 0.035, 0.075, 0.035, 0.100, 0.280, 0.380, 0.420, 0.440, 0.430, 0.010, 0.210, 0.095),
    "dry_vegetation": (0.045, 0.055, 0.090, 0.100, 0.150, 0.210, 0.250, 0.270, 0.285, 0.280, 0.012, 0.330, 0.230),
    "soil":          (0.070, 0.090, 0.130, 0.190, 0.220, 0.240, 0.255, 0.270, 0.280, 0.285, 0.015, 0.360, 0.300),
    "sand":          (0.140, 0.180, 0.260, 0.350, 0.380, 0.400, 0.415, 0.430, 0.440, 0.450, 0.025, 0.540, 0.480),
    "bare_lot":      (0.080, 0.095, 0.120, 0.150, 0.165, 0.175, 0.185, 0.195, 0.200, 0.205, 0.013, 0.260, 0.230),
    "water":         (0.060, 0.065, 0.060, 0.035, 0.025, 0.015, 0.012, 0.010, 0.009, 0.006, 0.001, 0.004, 0.003),
    "asphalt":       (0.050, 0.055, 0.065, 0.075, 0.080, 0.085, 0.090, 0.095, 0.098, 0.100, 0.008, 0.120, 0.110),
    "concrete":      (0.200, 0.240, 0.280, 0.300, 0.310, 0.315, 0.320, 0.325, 0.328, 0.330, 0.020, 0.340, 0.300),
}

#: The roof materials, one per RGB roof colour of :mod:`mmchange_core.data.synth` (same order).
ROOFS: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("grey concrete",    (0.220, 0.250, 0.270, 0.280, 0.290, 0.290, 0.300, 0.300, 0.300, 0.300, 0.020, 0.320, 0.290)),
    ("light concrete",   (0.270, 0.300, 0.320, 0.330, 0.340, 0.340, 0.350, 0.350, 0.350, 0.350, 0.020, 0.360, 0.320)),
    ("white membrane",   (0.400, 0.450, 0.470, 0.480, 0.480, 0.480, 0.480, 0.480, 0.480, 0.470, 0.030, 0.440, 0.380)),
    ("red clay tile",    (0.050, 0.060, 0.080, 0.220, 0.280, 0.320, 0.340, 0.360, 0.370, 0.380, 0.020, 0.450, 0.400)),
    ("terracotta",       (0.060, 0.070, 0.100, 0.280, 0.330, 0.360, 0.380, 0.400, 0.410, 0.420, 0.020, 0.480, 0.420)),
    ("blue painted metal", (0.120, 0.140, 0.110, 0.080, 0.080, 0.090, 0.120, 0.180, 0.200, 0.220, 0.010, 0.200, 0.160)),
    ("galvanised metal", (0.150, 0.160, 0.160, 0.160, 0.160, 0.160, 0.160, 0.160, 0.160, 0.160, 0.010, 0.150, 0.130)),
    ("sandstone tile",   (0.180, 0.220, 0.300, 0.380, 0.400, 0.420, 0.430, 0.440, 0.440, 0.450, 0.030, 0.500, 0.430)),
    ("dark slate",       (0.050, 0.055, 0.055, 0.055, 0.055, 0.055, 0.056, 0.058, 0.058, 0.060, 0.005, 0.060, 0.055)),
)

#: A stressed canopy over a healthy one, per Sentinel-2 band: visible (B01-B04) and B10 unchanged, red edge and
#: near-infrared down by up to half, short-wave infrared up (less leaf water).
STRESS = (1.0, 1.0, 1.0, 1.0, 0.85, 0.60, 0.50, 0.48, 0.48, 0.50, 1.0, 1.45, 1.80)
#: Bare soil greening (a sparse young crop coming up), added to the soil's reflectance per Sentinel-2 band: the
#: visible bands and B10 as the soil's, red edge and near-infrared up, short-wave infrared a little down. Zero
#: exactly where :data:`STRESS` is 1, so both change the same bands.
GREENING = (0.0, 0.0, 0.0, 0.0, 0.02, 0.07, 0.10, 0.12, 0.12, 0.11, 0.0, -0.04, -0.05)

#: Reflectance is stored as uint16 of reflectance x this (as Sentinel-2 L2A and PlanetScope SR products).
REFLECTANCE_SCALE = 10000


@dataclass(frozen=True)
class BandSet:
    """The bands of one synthetic sensor: names, colour interpretations, and every material's spectrum in them."""

    names: tuple[str, ...]
    colorinterp: tuple[str, ...]
    """rasterio ``ColorInterp`` names, one per band."""
    wavelengths_nm: tuple[int, ...]
    materials: dict[str, np.ndarray]
    """float32 ``[bands]`` reflectance per material name of :data:`MATERIALS`."""
    roofs: np.ndarray
    """float32 ``[roof materials, bands]``, in :data:`ROOFS` order."""
    stress: np.ndarray
    """float32 ``[bands]``: a stressed canopy over a healthy one."""
    greening: np.ndarray
    """float32 ``[bands]``: added to bare soil that greens."""

    @property
    def count(self) -> int:
        """The number of bands."""
        return len(self.names)

    def changed_by_stress(self) -> tuple[str, ...]:
        """The bands a stressed canopy or greening soil changes (:data:`STRESS` differs from 1)."""
        return tuple(n for n, f in zip(self.names, self.stress) if f != 1.0)

    def unchanged_by_stress(self) -> tuple[str, ...]:
        """The bands a stressed canopy or greening soil leaves as they are (the visible ones among them)."""
        return tuple(n for n, f in zip(self.names, self.stress) if f == 1.0)


#: The band counts ``mmchange synth --bands`` makes (3 is the RGB uint8 PNG output).
BAND_COUNTS = (3, 4, 13)


def band_set(count: int) -> BandSet:
    """The 4-band (red, green, blue, nir) or 13-band (Sentinel-2 B01..B12) sensor."""
    if count == 13:
        picks = list(range(len(SENTINEL2_BANDS)))
        names, colours = SENTINEL2_BANDS, ("undefined",) * 13
    elif count == 4:
        picks = [SENTINEL2_BANDS.index(b) for b in _RGBN_FROM_S2]
        names, colours = RGBN_BANDS, ("red", "green", "blue", "undefined")
    else:
        raise ValueError(f"no multispectral band set of {count} bands; choose 4 or 13")
    materials = {k: np.asarray(v, np.float32)[picks] for k, v in MATERIALS.items()}
    roofs = np.asarray([spectrum for _, spectrum in ROOFS], np.float32)[:, picks]
    wavelengths = tuple(SENTINEL2_WAVELENGTHS_NM[i] for i in picks)
    return BandSet(tuple(names), colours, wavelengths, materials, roofs, np.asarray(STRESS, np.float32)[picks],
                   np.asarray(GREENING, np.float32)[picks])
