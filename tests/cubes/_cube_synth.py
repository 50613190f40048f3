"""Small image cubes in the format ASKAP/CASA write (celestial axes first, FREQ and STOKES
in either order, a per-channel ``BEAMS`` table with ``CASAMBM = T``), and a holography
primary-beam cube in the ``akpb.iquv.*.cube.fits`` layout (x, y, FREQ, STOKES, BEAM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


def cube_header(
    n: int,
    pix_arcsec: float,
    freqs: list[float],
    stokes: list[int] | None = None,
    ra: float = 150.0,
    dec: float = -30.0,
    stokes_first: bool = False,
) -> fits.Header:
    """RA/Dec SIN + FREQ + STOKES (FITS order; ``stokes_first`` puts STOKES on axis 3)."""
    stokes = stokes or [1]
    h = fits.Header()
    h["NAXIS"] = 4
    h["NAXIS1"], h["NAXIS2"] = n, n
    h["CTYPE1"], h["CRVAL1"], h["CRPIX1"], h["CDELT1"], h["CUNIT1"] = "RA---SIN", ra, n / 2 + 1, -pix_arcsec / 3600, "deg"
    h["CTYPE2"], h["CRVAL2"], h["CRPIX2"], h["CDELT2"], h["CUNIT2"] = "DEC--SIN", dec, n / 2 + 1, pix_arcsec / 3600, "deg"
    df = freqs[1] - freqs[0] if len(freqs) > 1 else 1e6
    f_ax, s_ax = (4, 3) if stokes_first else (3, 4)
    h[f"NAXIS{f_ax}"], h[f"CTYPE{f_ax}"], h[f"CRVAL{f_ax}"], h[f"CRPIX{f_ax}"], h[f"CDELT{f_ax}"] = len(freqs), "FREQ", freqs[0], 1.0, df
    h[f"CUNIT{f_ax}"] = "Hz"
    ds = stokes[1] - stokes[0] if len(stokes) > 1 else 1
    h[f"NAXIS{s_ax}"], h[f"CTYPE{s_ax}"], h[f"CRVAL{s_ax}"], h[f"CRPIX{s_ax}"], h[f"CDELT{s_ax}"] = len(stokes), "STOKES", stokes[0], 1.0, ds
    h["BUNIT"] = "JY/BEAM"
    h["RADESYS"] = "FK5"
    h["EQUINOX"] = 2000.0
    return h


def beams_hdu(beams: np.ndarray) -> fits.BinTableHDU:
    """A CASA ``BEAMS`` table from ``beams[chan, pol] = (bmaj", bmin", bpa deg)``."""
    nchan, npol = beams.shape[:2]
    chan, pol = np.meshgrid(np.arange(nchan), np.arange(npol), indexing="ij")
    cols = [
        fits.Column(name="BMAJ", format="1E", unit="arcsec", array=beams[..., 0].ravel()),
        fits.Column(name="BMIN", format="1E", unit="arcsec", array=beams[..., 1].ravel()),
        fits.Column(name="BPA", format="1E", unit="deg", array=beams[..., 2].ravel()),
        fits.Column(name="CHAN", format="1J", array=chan.ravel()),
        fits.Column(name="POL", format="1J", array=pol.ravel()),
    ]
    hdu = fits.BinTableHDU.from_columns(cols, name="BEAMS")
    hdu.header["NCHAN"], hdu.header["NPOL"] = nchan, npol
    return hdu


def write_cube(path: Path, data: np.ndarray, header: fits.Header, beams: np.ndarray | None) -> Path:
    """``data[chan, pol, y, x]``, reordered to the header's axis order; BEAMS when ``beams``."""
    hdr = header.copy()
    arr = data.astype(np.float32)
    if hdr["CTYPE3"] == "STOKES":  # FITS axis 3 = STOKES -> numpy (FREQ, STOKES, y, x)
        arr = np.ascontiguousarray(arr)
    else:  # FITS axis 3 = FREQ -> numpy (STOKES, FREQ, y, x)
        arr = np.ascontiguousarray(arr.transpose(1, 0, 2, 3))
    hdus: list[fits.PrimaryHDU | fits.BinTableHDU] = []
    if beams is not None:
        hdr["CASAMBM"] = True
    hdus.append(fits.PrimaryHDU(arr, hdr))
    if beams is not None:
        hdus.append(beams_hdu(beams))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def gaussian(n: int, pix_arcsec: float, bmaj: float, bmin: float, bpa: float, amp: float = 1.5) -> np.ndarray:
    """An elliptical Gaussian (FWHMs in arcsec, PA east of north) at the image centre."""
    y, x = np.mgrid[0:n, 0:n]
    th = np.radians(bpa)
    dx, dy = x - n / 2, y - n / 2
    u = -np.sin(th) * dx + np.cos(th) * dy
    v = np.cos(th) * dx + np.sin(th) * dy
    return amp * np.exp(-0.5 * ((u / (bmaj / pix_arcsec / FWHM)) ** 2 + (v / (bmin / pix_arcsec / FWHM)) ** 2))


def gauss_pb(east: np.ndarray, north: np.ndarray, fwhm_e: float, fwhm_n: float) -> np.ndarray:
    """An elliptical Gaussian power beam (FWHMs in deg along east and north)."""
    return np.exp(-4 * np.log(2) * ((east / fwhm_e) ** 2 + (north / fwhm_n) ** 2))


#: holography test beams: per BEAM index, (FWHM east, FWHM north) in deg at each PB channel
HOLO_FWHM = {0: [(1.30, 1.30), (1.20, 1.20), (1.10, 1.10)], 1: [(1.00, 1.40), (0.95, 1.30), (0.90, 1.20)]}
HOLO_FREQS = [887.0e6, 888.0e6, 889.0e6]
HOLO_PIX = 0.0345
HOLO_N = 61


def holo_leak(east: np.ndarray, north: np.ndarray) -> dict[int, np.ndarray]:
    """Fractional leakage L_X = PB_X / PB_I (grows with offset from the beam centre)."""
    r = np.hypot(east, north)
    return {2: 0.01 + 0.04 * r, 3: -0.02 * east, 4: 0.005 + 0.0 * r}


def write_holography(path: Path) -> Path:
    """5-D x, y, FREQ, STOKES (IQUV), BEAM cube; offsets (deg) from each beam's centre."""
    n = HOLO_N
    off = (np.arange(n) - n // 2) * HOLO_PIX
    north, east = np.meshgrid(off, off, indexing="ij")
    data = np.zeros((len(HOLO_FWHM), 4, len(HOLO_FREQS), n, n), dtype=np.float32)
    for b, fwhms in HOLO_FWHM.items():
        for c, (fe, fn) in enumerate(fwhms):
            pbi = gauss_pb(east, north, fe, fn)
            data[b, 0, c] = pbi
            for k, leak in holo_leak(east, north).items():
                data[b, k - 1, c] = leak * pbi
    h = fits.Header()
    for i, (ctype, crval, cdelt, crpix) in enumerate(
        [("X", 0.0, HOLO_PIX, n // 2 + 1), ("Y", 0.0, HOLO_PIX, n // 2 + 1), ("FREQ", HOLO_FREQS[0], 1e6, 1), ("STOKES", 1, 1, 1), ("BEAM", 0, 1, 1)],
        start=1,
    ):
        h[f"CTYPE{i}"], h[f"CRVAL{i}"], h[f"CDELT{i}"], h[f"CRPIX{i}"] = ctype, crval, cdelt, crpix
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    fits.PrimaryHDU(data, h).writeto(path, overwrite=True)
    return path


def holo_pb_truth(beam: int, freq: float, east: np.ndarray, north: np.ndarray) -> np.ndarray:
    """The Stokes-I response the holography cube describes, linear in frequency between channels."""
    f = np.asarray(HOLO_FREQS)
    k = int(np.clip(np.searchsorted(f, freq) - 1, 0, len(f) - 2))
    t = (freq - f[k]) / (f[k + 1] - f[k])
    a = gauss_pb(east, north, *HOLO_FWHM[beam][k])
    b = gauss_pb(east, north, *HOLO_FWHM[beam][k + 1])
    return (1 - t) * a + t * b
