"""The primary-beam model shared by the simulator and linmos.

A circular Gaussian whose FWHM scales as 1/frequency (``fwhm_deg`` at ``ref_freq_hz``),
and :class:`HolographyBeams`: ASKAP's measured (holography) beam cubes, Stokes I and the
Q/U/V leakage, per beam and channel.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from numpy.typing import ArrayLike, NDArray

from flint.errors import FlintImageError

__all__ = [
    "gaussian_pb",
    "angular_separation_deg",
    "sky_offsets_deg",
    "HolographyBeams",
    "DEFAULT_PB_FWHM_DEG",
    "DEFAULT_PB_REF_HZ",
]

logger = logging.getLogger(__name__)

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


def sky_offsets_deg(
    ra0_deg: float, dec0_deg: float, ra_deg: ArrayLike, dec_deg: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Offsets (deg) of directions from a centre: (east, north) direction cosines (SIN projection)."""
    ra, dec = np.radians(np.asarray(ra_deg, dtype=float)), np.radians(np.asarray(dec_deg, dtype=float))
    ra0, dec0 = np.radians(ra0_deg), np.radians(dec0_deg)
    dra = ra - ra0
    l_ = np.cos(dec) * np.sin(dra)
    m_ = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(dra)
    return np.degrees(l_), np.degrees(m_)


class HolographyBeams:
    """An ASKAP holography primary-beam cube (``akpb.iquv.<footprint>.<...>.SB<sbid>.cube.fits``).

    A 5-D FITS image: x, y (offsets in degrees from each beam's centre, e.g. 0.0345 deg
    pixels), FREQ, STOKES (I, Q, U, V), BEAM. The x axis is the east offset, y the north
    offset (the value of each axis, ``CRVAL + (pixel - CRPIX) * CDELT``, is the offset in
    degrees). The Stokes-I plane is the power response; the Q/U/V planes the response of
    an unpolarised source in Q/U/V, so ``PB_Q / PB_I`` is the fractional Q leakage.

    Only the planes asked for are read (two channels around each frequency).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from flint.cubes import read_cube_info

        self.info = read_cube_info(path)
        self.path = self.info.path
        h = self.info.header
        if "BEAM" not in self.info.axes.names:
            raise FlintImageError(
                f"{self.path}: no BEAM axis (axes {self.info.axes.names}); a holography beam cube has x, y, FREQ, STOKES, BEAM"
            )
        if 1 not in self.info.stokes:
            raise FlintImageError(f"{self.path}: no Stokes I plane (Stokes codes {self.info.stokes})")
        if not np.all(np.isfinite(self.info.freqs_hz)):
            raise FlintImageError(f"{self.path}: no FREQ axis; a holography beam cube has one")
        self.nbeam = self.info.axes.length("BEAM")
        self._x = [float(h.get(f"{k}1", d)) for k, d in (("CRVAL", 0.0), ("CDELT", 1.0), ("CRPIX", 1.0))]
        self._y = [float(h.get(f"{k}2", d)) for k, d in (("CRVAL", 0.0), ("CDELT", 1.0), ("CRPIX", 1.0))]

    @property
    def stokes(self) -> tuple[int, ...]:
        return self.info.stokes

    def _channels(self, freq_hz: float) -> list[tuple[int, float]]:
        f = self.info.freqs_hz
        order = np.argsort(f)
        fs = f[order]
        if freq_hz <= fs[0] or len(fs) == 1:
            return [(int(order[0]), 1.0)]
        if freq_hz >= fs[-1]:
            return [(int(order[-1]), 1.0)]
        k = int(np.searchsorted(fs, freq_hz)) - 1
        t = (freq_hz - fs[k]) / (fs[k + 1] - fs[k])
        return [(int(order[k]), 1.0 - t), (int(order[k + 1]), t)]

    def response(
        self, beam: int, freq_hz: float, east_deg: NDArray[np.float64], north_deg: NDArray[np.float64]
    ) -> dict[int, NDArray[np.float64]]:
        """Stokes code -> response at the given offsets, linear in frequency and position.

        Offsets outside the beam cube give 0 (below any cutoff).
        """
        from scipy.ndimage import map_coordinates

        from flint.cubes import CubeReader

        if not 0 <= beam < self.nbeam:
            raise FlintImageError(f"{self.path}: has {self.nbeam} beams, beam {beam} asked for; check the beam numbers")
        if freq_hz < self.info.freqs_hz.min() or freq_hz > self.info.freqs_hz.max():
            logger.warning("%s: %.6g Hz is outside the beam cube's band; using its nearest channel", self.path.name, freq_hz)
        ix = (east_deg - self._x[0]) / self._x[1] + self._x[2] - 1.0
        iy = (north_deg - self._y[0]) / self._y[1] + self._y[2] - 1.0
        coords = np.stack([iy.ravel(), ix.ravel()])
        out: dict[int, NDArray[np.float64]] = {}
        with CubeReader(self.path, self.info) as reader:
            for p, code in enumerate(self.info.stokes):
                plane = sum(w * reader.plane(chan=c, pol=p, BEAM=beam) for c, w in self._channels(freq_hz))
                vals = map_coordinates(np.nan_to_num(np.asarray(plane)), coords, order=1, mode="constant", cval=0.0)
                out[code] = vals.reshape(east_deg.shape)
        return out
