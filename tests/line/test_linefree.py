"""Automatic line-free channels (:mod:`flint.linefree`) on synthetic cubes with a known truth.

The cubes are beam-correlated Gaussian noise (unit rms per channel) plus what a
model-subtracted first-pass cube holds: a continuum residual with a spectral slope at a
bright source, the negative band average of a line that the continuum model took in, an
emission line, an absorption line, a channel with RFI (3x the noise) and a flagged (empty)
channel. Truth: the channels within half a FWHM of each line centre must be found; at least
80 % of the channels farther than 1.5 FWHM from every line (and not bad) must stay free; pure
noise must give no line at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from scipy.ndimage import gaussian_filter

from flint.cubes import CubeWriter
from flint.linefree import (
    LineFreeOptions,
    channel_statistics,
    classify_channels,
    find_line_free,
    format_channel_ranges,
)
from flint.subtract import parse_channel_ranges

NCHAN, NPIX, BEAM_SIGMA_PX = 48, 160, 2.0
#: (x, y, centre channel, FWHM channels, peak in units of the noise)
EMISSION = (100, 60, 15.0, 4.0, 9.0)
ABSORPTION = (60, 120, 33.0, 3.0, -15.0)
RFI_CHANNEL, EMPTY_CHANNEL = 5, 47


def _header() -> fits.Header:
    return fits.Header({
        "NAXIS": 3, "NAXIS1": NPIX, "NAXIS2": NPIX, "NAXIS3": NCHAN,
        "CTYPE1": "RA---SIN", "CRVAL1": 150.0, "CDELT1": -5 / 3600, "CRPIX1": NPIX / 2, "CUNIT1": "deg",
        "CTYPE2": "DEC--SIN", "CRVAL2": -30.0, "CDELT2": 5 / 3600, "CRPIX2": NPIX / 2, "CUNIT2": "deg",
        "CTYPE3": "FREQ", "CRVAL3": 1.3995e9, "CDELT3": 18518.5, "CRPIX3": 1.0, "CUNIT3": "Hz", "BUNIT": "JY/BEAM",
        "BMAJ": 20 / 3600, "BMIN": 20 / 3600, "BPA": 0.0,
    })


def _blob(x: int, y: int) -> np.ndarray:
    """A unit-peak point source seen through the beam."""
    img = np.zeros((NPIX, NPIX))
    img[y, x] = 1.0
    img = gaussian_filter(img, BEAM_SIGMA_PX)
    return img / img.max()


def _gauss(chan: np.ndarray, c0: float, fwhm: float) -> np.ndarray:
    return np.exp(-0.5 * ((chan - c0) / (fwhm / 2.3548)) ** 2)


def _write_cube(path: Path, seed: int, lines: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    chan = np.arange(NCHAN, dtype=float)
    bright = _blob(30, 30)
    slope = np.linspace(-1.0, 1.0, NCHAN)
    emission, absorption = _blob(*EMISSION[:2]), _blob(*ABSORPTION[:2])
    with CubeWriter(path, _header()) as w:
        for c in range(NCHAN):
            noise = gaussian_filter(rng.standard_normal((NPIX, NPIX)), BEAM_SIGMA_PX)
            plane = noise / noise.std() * (3.0 if c == RFI_CHANNEL else 1.0)
            plane += (25.0 + 12.0 * slope[c]) * bright  # continuum residual with a spectral slope
            if lines:
                x, y, c0, fwhm, peak = EMISSION
                plane += (peak * _gauss(chan, c0, fwhm)[c] - 1.5) * emission  # minus its band average in the model
                x, y, c0, fwhm, peak = ABSORPTION
                plane += (peak * _gauss(chan, c0, fwhm)[c] + 1.0) * absorption
            if c == EMPTY_CHANNEL:
                plane[:] = 0.0  # flagged: WSClean writes zeros
            w.write_plane(plane.astype(np.float32), chan=c)
    return path


def _truth() -> tuple[np.ndarray, np.ndarray]:
    chan = np.arange(NCHAN, dtype=float)
    core = np.zeros(NCHAN, dtype=bool)
    free = np.ones(NCHAN, dtype=bool)
    for _, _, c0, fwhm, _ in (EMISSION, ABSORPTION):
        core |= np.abs(chan - c0) <= fwhm / 2
        free &= np.abs(chan - c0) > 1.5 * fwhm
    free[[RFI_CHANNEL, EMPTY_CHANNEL]] = False
    return core, free


def test_line_free_channels_against_truth(tmp_path: Path) -> None:
    cube = _write_cube(tmp_path / "c.fits", seed=7)
    res = find_line_free(cube)
    core, truly_free = _truth()
    print(f"detected {res.detected}; line {format_channel_ranges(res.line)}; free {res.fit_channels}")
    assert res.line[core].all(), format_channel_ranges(core & ~res.line)  # every line's FWHM found
    assert len(res.detected) == 2  # the two lines, nothing else
    kept = (res.free & truly_free).sum() / truly_free.sum()
    assert kept >= 0.8, kept
    assert res.noisy[RFI_CHANNEL] and res.noisy.sum() == 1
    assert res.empty[EMPTY_CHANNEL] and res.empty.sum() == 1
    assert not res.free[[RFI_CHANNEL, EMPTY_CHANNEL]].any()
    # the continuum residual (25 sigma, sloped) and the lines' band average are baseline, not lines
    assert not res.line[:8].any() and not res.line[40:].any()
    # the ranges are what --fit-channels takes
    assert np.array_equal(parse_channel_ranges(res.fit_channels, NCHAN), res.free)


def test_pure_noise_has_no_lines(tmp_path: Path) -> None:
    for seed in (1, 2, 3):
        res = find_line_free(_write_cube(tmp_path / f"n{seed}.fits", seed=seed, lines=False))
        assert res.detected == (), (seed, res.detected)
        assert res.free.sum() == NCHAN - 2  # all but the RFI and the empty channel


def test_statistics_stream_in_strips(tmp_path: Path) -> None:
    """Bounded memory: strips of a few rows give the same statistics as the whole cube at once."""
    cube = _write_cube(tmp_path / "c.fits", seed=11)
    whole = channel_statistics(cube, LineFreeOptions(strip_mb=512))
    strips = channel_statistics(cube, LineFreeOptions(strip_mb=0.5))  # ~4 rows per strip
    np.testing.assert_allclose(strips.peak, whole.peak, rtol=1e-5)
    np.testing.assert_allclose(strips.trough, whole.trough, rtol=1e-5)
    np.testing.assert_allclose(strips.noise, whole.noise, rtol=1e-5)


def test_dilation_follows_the_line_width() -> None:
    """A strong line's run is widened to +-1.5 FWHM around its peak (the FWHM measured on its amplitude),
    a one-channel detection to +-1.5 x 2 channels."""
    from flint.linefree import ChannelStats

    chan = np.arange(64, dtype=float)
    base = np.full((1, 64), 4.5)
    peak = base + 60.0 * _gauss(chan, 20.0, 6.0)[None, :]  # FWHM 6 channels
    peak[0, 50] = 9.0  # one faint channel
    res = classify_channels(ChannelStats(peak, base.copy(), np.ones((1, 64)), (1,)))
    lo, hi = np.flatnonzero(res.line[:40])[[0, -1]]
    assert lo in (10, 11) and hi in (29, 30)  # 20 -+ 1.5 FWHM (9 channels), rounded outwards
    assert format_channel_ranges(res.line[45:]) == "2~8"  # 47~53: 1.5x the smallest FWHM (2 channels) either side
    with pytest.raises(ValueError):
        LineFreeOptions(clip_sigma=0)
