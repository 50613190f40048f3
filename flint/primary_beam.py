"""The primary-beam model shared by the simulator and linmos.

A circular Gaussian whose FWHM scales as 1/frequency (``fwhm_deg`` at ``ref_freq_hz``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["gaussian_pb", "angular_separation_deg", "DEFAULT_PB_FWHM_DEG", "DEFAULT_PB_REF_HZ"]

DEFAULT_PB_FWHM_DEG = 1.0
DEFAULT_PB_REF_HZ = 888.0e6


def angular_separation_deg(
    ra1_deg: ArrayLike, dec1_deg: ArrayLike, ra2_deg: ArrayLike, dec2_deg: ArrayLike
) -> NDArray[np.float64]:
    """Great-circle separation in degrees (Vincenty formula, stable at all angles)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(x, dtype=float)) for x in (ra1_deg, dec1_deg, ra2_deg, dec2_deg))
    dra = ra2 - ra1
    num = np.hypot(np.cos(dec2) * np.sin(dra), np.cos(dec1) * np.sin(dec2) - np.sin(dec1) * np.cos(dec2) * np.cos(dra))
    den = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(dra)
    return np.degrees(np.arctan2(num, den))


def gaussian_pb(
    sep_deg: ArrayLike,
    freq_hz: ArrayLike,
    fwhm_deg: float = DEFAULT_PB_FWHM_DEG,
    ref_freq_hz: float = DEFAULT_PB_REF_HZ,
) -> NDArray[np.float64]:
    """Power response of the Gaussian primary beam at ``sep_deg`` from its centre.

    Broadcasts ``sep_deg`` against ``freq_hz``.

    Examples
    --------
    >>> float(gaussian_pb(0.5, 888e6))  # half the FWHM away: half power
    0.5
    """
    sep = np.asarray(sep_deg, dtype=float)
    fwhm = fwhm_deg * ref_freq_hz / np.asarray(freq_hz, dtype=float)
    return np.exp(-4.0 * np.log(2.0) * (sep / fwhm) ** 2)
