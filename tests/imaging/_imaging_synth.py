"""Small synthetic FITS images for the fast imaging-stage tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


def header(n: int, pix_arcsec: float, ra: float = 150.0, dec: float = -30.0, freq: float | None = 887.5e6) -> fits.Header:
    """A WSClean-like header: RA/Dec SIN (+ FREQ axis when ``freq``), Jy/beam."""
    naxis = 3 if freq else 2
    w = WCS(naxis=naxis)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"] + (["FREQ"] if freq else [])
    w.wcs.crval = [ra, dec] + ([freq] if freq else [])
    w.wcs.crpix = [n / 2 + 1, n / 2 + 1] + ([1] if freq else [])
    w.wcs.cdelt = [-pix_arcsec / 3600, pix_arcsec / 3600] + ([1e6] if freq else [])
    h = w.to_header()
    h["BUNIT"] = "JY/BEAM"
    return h


def gaussian(n: int, pix_arcsec: float, bmaj: float, bmin: float, bpa: float, amp: float = 1.5) -> np.ndarray:
    """An elliptical Gaussian (FWHMs in arcsec, PA east of north) at the image centre."""
    y, x = np.mgrid[0:n, 0:n]
    th = np.radians(bpa)
    dx, dy = x - n / 2, y - n / 2
    u = -np.sin(th) * dx + np.cos(th) * dy  # along the major axis (north through east; east = -x)
    v = np.cos(th) * dx + np.sin(th) * dy
    return amp * np.exp(-0.5 * ((u / (bmaj / pix_arcsec / FWHM)) ** 2 + (v / (bmin / pix_arcsec / FWHM)) ** 2))


def write(path: Path, data: np.ndarray, hdr: fits.Header, beam: tuple[float, float, float] | None = (20.0, 10.0, 30.0)) -> Path:
    hdr = hdr.copy()
    if beam is not None:
        hdr["BMAJ"], hdr["BMIN"], hdr["BPA"] = beam[0] / 3600, beam[1] / 3600, beam[2]
    arr = data.astype(np.float32)
    if "CTYPE3" in hdr:
        arr = arr[None]
    fits.PrimaryHDU(arr, hdr).writeto(path, overwrite=True)
    return path


def fit_beam(data: np.ndarray, pix_arcsec: float) -> tuple[float, float, float, float]:
    """Fit a 2-D Gaussian: (FWHM major, FWHM minor arcsec, PA deg east of north, peak)."""
    from astropy.modeling import fitting, models

    n = data.shape[0]
    y, x = np.mgrid[0:n, 0:n]
    iy, ix = np.unravel_index(np.nanargmax(data), data.shape)
    g0 = models.Gaussian2D(float(np.nanmax(data)), ix, iy, 3.0, 2.0, 0.3)
    f = fitting.LevMarLSQFitter()(g0, x, y, data)
    sx, sy, th = float(f.x_stddev.value), float(f.y_stddev.value), float(f.theta.value)
    if sx < sy:
        sx, sy, th = sy, sx, th + np.pi / 2
    pa = np.degrees(np.arctan2(-np.cos(th), np.sin(th)))
    pa = (pa + 90) % 180 - 90
    return sx * FWHM * pix_arcsec, sy * FWHM * pix_arcsec, float(pa), float(f.amplitude.value)
