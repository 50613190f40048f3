"""Bandpass solutions across channels: outlier flagging and smoothing.

After askap-flint's ``bptools`` (preflagger and smoother), on flint's AO solutions
(``jones[interval, antenna, channel, 2, 2]``, diagonal gains X and Y):

1. **reference**: the gains are divided by the reference antenna's phasor per channel
   (``g_ref / |g_ref|``), so that only instrumental structure is left to smooth;
2. **outlier flagging**: per antenna and polarisation, channels whose amplitude or phase
   departs from the running median of its neighbouring channels by more than ``outlier_nsigma`` robust
   sigma (1.4826 x MAD of the departures) are flagged (set to NaN);
3. **smoothing**: the real and imaginary parts are smoothed across channels with a
   Savitzky-Golay filter (``window_channels``, ``polyorder``); flagged channels are
   interpolated over for the filter and stay flagged.

Channels flagged in every antenna, and antennas flagged in every channel, are left alone.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from flint.calibrate.aocal import AOSolutions
from flint.options import BaseOptions

__all__ = ["SmoothOptions", "smooth_solutions", "flag_outlier_channels", "smooth_gains", "reference_phasor"]

logger = logging.getLogger(__name__)


class SmoothOptions(BaseOptions):
    """How bandpass solutions are flagged and smoothed across channels."""

    window_channels: int = Field(default=9, ge=3)
    """Savitzky-Golay window (channels, odd; shortened to the band when longer)."""
    polyorder: int = Field(default=2, ge=0)
    """Savitzky-Golay polynomial order (below the window)."""
    outlier_nsigma: float | None = Field(default=6.0, gt=0.0)
    """Flag channels departing this many robust sigma from the running median; None: off."""
    median_channels: int = Field(default=5, ge=3)
    """Running-median width (channels) the outliers are measured against."""
    ref_antenna: int = Field(default=0, ge=0)
    """Reference antenna whose phase is removed before smoothing."""

    @model_validator(mode="after")
    def _consistent(self) -> SmoothOptions:
        if self.polyorder >= self.window_channels:
            raise ValueError(f"--polyorder ({self.polyorder}) must be below --window-channels ({self.window_channels})")
        return self


def reference_phasor(gains: NDArray[np.complex128], ref_antenna: int) -> NDArray[np.complex128]:
    """``gains[ant, chan, pol]`` divided by the reference antenna's unit phasor per channel."""
    ref = gains[ref_antenna]
    with np.errstate(invalid="ignore", divide="ignore"):
        phasor = ref / np.abs(ref)
    phasor = np.where(np.isfinite(phasor), phasor, 1.0)
    return np.asarray(gains / phasor[None], dtype=np.complex128)


def _interp_nan(x: NDArray[np.float64]) -> NDArray[np.float64]:
    good = np.isfinite(x)
    if good.all() or not good.any():
        return x
    idx = np.arange(x.size)
    return np.asarray(np.interp(idx, idx[good], x[good]), dtype=np.float64)


def _running_median(x: NDArray[np.float64], width: int) -> NDArray[np.float64]:
    """Median of each channel's ``width - 1`` neighbours (the channel itself excluded, so
    that the departures are not biased towards zero); edges padded with the end values."""
    half = max(1, width // 2)
    padded = np.pad(_interp_nan(x), half, mode="edge")
    n = x.size
    shifts = [padded[half + k : half + k + n] for k in range(-half, half + 1) if k != 0]
    return np.asarray(np.median(np.stack(shifts), axis=0), dtype=np.float64)


def _robust_sigma(x: NDArray[np.float64]) -> float:
    x = x[np.isfinite(x)]
    if x.size < 3:
        return float("inf")
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def flag_outlier_channels(gains: NDArray[np.complex128], nsigma: float, width: int = 5) -> NDArray[np.bool_]:
    """Outlier channels ``[ant, chan, pol]`` by amplitude or phase against a running median.

    Examples
    --------
    >>> g = np.ones((1, 32, 1), complex) * np.exp(1j * np.linspace(0, 1, 32))[None, :, None]
    >>> g = g * (1 + 0.01 * np.random.default_rng(0).standard_normal((1, 32, 1)))
    >>> g[0, 10, 0] *= 3.0
    >>> np.flatnonzero(flag_outlier_channels(g, nsigma=6.0)[0, :, 0]).tolist()
    [10]
    """
    na, nc, npol = gains.shape
    out = np.zeros(gains.shape, dtype=bool)
    if nc < 3:
        return out
    w = min(width, nc if nc % 2 else nc - 1)
    for a in range(na):
        for p in range(npol):
            g = gains[a, :, p]
            if not np.isfinite(g).any():
                continue
            finite = np.isfinite(g)
            amp = np.abs(g)
            phase = np.full(nc, np.nan)
            phase[finite] = np.unwrap(np.angle(g[finite]))
            for series in (amp, phase):
                dev = series - _running_median(series, w)
                sig = _robust_sigma(dev)
                if np.isfinite(sig) and sig > 0:
                    out[a, :, p] |= np.abs(dev) > nsigma * sig
    return out


def smooth_gains(gains: NDArray[np.complex128], window: int, polyorder: int) -> NDArray[np.complex128]:
    """Savitzky-Golay smoothing of ``gains[ant, chan, pol]`` across channels; NaNs stay NaN.

    Examples
    --------
    >>> x = np.linspace(-1, 1, 40)
    >>> true = (1 + 0.1 * x**2) * np.exp(0.5j * x)
    >>> noisy = true + 0.02 * np.random.default_rng(1).standard_normal(40)
    >>> s = smooth_gains(noisy[None, :, None], 11, 2)[0, :, 0]
    >>> bool(np.abs(s - true).std() < np.abs(noisy - true).std() / 2)
    True
    """
    from scipy.signal import savgol_filter

    na, nc, npol = gains.shape
    out = np.array(gains, dtype=np.complex128)
    win = min(window, nc if nc % 2 else nc - 1)
    if win <= polyorder or win < 3:
        return out
    for a in range(na):
        for p in range(npol):
            g = gains[a, :, p]
            bad = ~np.isfinite(g)
            if bad.all():
                continue
            # a NaN complex gain may have a finite imaginary part: mask both parts explicitly
            re = savgol_filter(_interp_nan(np.where(bad, np.nan, g.real)), win, polyorder, mode="interp")
            im = savgol_filter(_interp_nan(np.where(bad, np.nan, g.imag)), win, polyorder, mode="interp")
            sm = re + 1j * im
            sm[bad] = np.nan
            out[a, :, p] = sm
    return out


def smooth_solutions(sols: AOSolutions, options: SmoothOptions | None = None) -> tuple[AOSolutions, int]:
    """Flag outlier channels and smooth every interval's gains; returns the new solutions
    and the number of (interval, antenna, channel, pol) gains newly flagged."""
    opts = options or SmoothOptions()
    gains = sols.gains.copy()  # (interval, ant, chan, pol)
    n_new = 0
    for i in range(gains.shape[0]):
        g = reference_phasor(gains[i], min(opts.ref_antenna, gains.shape[1] - 1))
        if opts.outlier_nsigma is not None:
            bad = flag_outlier_channels(g, opts.outlier_nsigma, opts.median_channels) & np.isfinite(g)
            n_new += int(bad.sum())
            g[bad] = np.nan
        gains[i] = smooth_gains(g, opts.window_channels, opts.polyorder)
    logger.info("bandpass smoothing: %d outlier gains flagged, window %d channels, order %d", n_new, opts.window_channels, opts.polyorder)
    return AOSolutions.from_gains(gains, sols.start_time, sols.end_time), n_new
