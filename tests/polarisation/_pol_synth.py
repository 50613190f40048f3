"""Synthetic Stokes images and cubes with known leakage / Faraday rotation (WSClean-like axes:
RA, Dec, FREQ, STOKES; a per-channel ``BEAMS`` table on cubes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

C = 299_792_458.0
RA0, DEC0 = 150.0, -30.0
BEAM_ARCSEC = 30.0


def header(n: int, pix_arcsec: float, freqs: list[float], stokes: list[int], ra: float = RA0, dec: float = DEC0) -> fits.Header:
    """RA/Dec SIN + FREQ (axis 3) + STOKES (axis 4), reference pixel at the centre."""
    h = fits.Header()
    h["NAXIS"] = 4
    h["NAXIS1"], h["NAXIS2"], h["NAXIS3"], h["NAXIS4"] = n, n, len(freqs), len(stokes)
    h["CTYPE1"], h["CRVAL1"], h["CRPIX1"], h["CDELT1"], h["CUNIT1"] = "RA---SIN", ra, n // 2 + 1, -pix_arcsec / 3600, "deg"
    h["CTYPE2"], h["CRVAL2"], h["CRPIX2"], h["CDELT2"], h["CUNIT2"] = "DEC--SIN", dec, n // 2 + 1, pix_arcsec / 3600, "deg"
    df = freqs[1] - freqs[0] if len(freqs) > 1 else 1e6
    h["CTYPE3"], h["CRVAL3"], h["CRPIX3"], h["CDELT3"], h["CUNIT3"] = "FREQ", freqs[0], 1.0, df, "Hz"
    ds = stokes[1] - stokes[0] if len(stokes) > 1 else 1
    h["CTYPE4"], h["CRVAL4"], h["CRPIX4"], h["CDELT4"] = "STOKES", float(stokes[0]), 1.0, float(ds)
    h["BUNIT"] = "JY/BEAM"
    h["RADESYS"], h["EQUINOX"] = "FK5", 2000.0
    h["BMAJ"], h["BMIN"], h["BPA"] = BEAM_ARCSEC / 3600, BEAM_ARCSEC / 3600, 0.0
    return h


def write(path: Path, data: np.ndarray, hdr: fits.Header) -> Path:
    """``data[stokes, chan, y, x]`` (numpy order of the header above)."""
    fits.PrimaryHDU(np.asarray(data, dtype=np.float32), hdr).writeto(path, overwrite=True)
    return path


def blob(n: int, y: float, x: float, sigma_pix: float) -> np.ndarray:
    """A unit-peak circular Gaussian centred on pixel (y, x)."""
    yy, xx = np.mgrid[0:n, 0:n]
    return np.exp(-0.5 * ((yy - y) ** 2 + (xx - x) ** 2) / sigma_pix**2)


def sky_of(hdr: fits.Header, y: float, x: float) -> tuple[float, float]:
    """(RA, Dec) deg of pixel (y, x)."""
    w = WCS(hdr).celestial
    ra, dec = w.pixel_to_world_values(x, y)
    return float(ra), float(dec)


def write_catalogue(path: Path, rows: list[dict[str, float]]) -> Path:
    """A catalogue with flint find-sources' columns (only those the stages read are filled)."""
    cols = ["island", "source", "ra", "dec", "peak_flux", "int_flux", "local_rms", "snr"]
    lines = [",".join(cols)]
    for k, r in enumerate(rows):
        vals = {"island": k, "source": 0, **r}
        vals.setdefault("snr", vals["peak_flux"] / vals["local_rms"])
        lines.append(",".join(str(vals[c]) for c in cols))
    path.write_text("\n".join(lines) + "\n")
    return path


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``flint argv`` in-process; it must fail with exactly one line on stderr (no traceback)."""
    from flint.cli import main

    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    return err[0]
