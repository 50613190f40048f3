"""Solve antenna gains from a Measurement Set: the one path bandpass and self-cal share.

:func:`solve_ms` reads the data column, the model (a point-source spectrum at the phase
centre, or ``MODEL_DATA``), flags and weights in row chunks, accumulates the normal
equations once, solves with StEFCal, references the phases, flags bad solutions and
returns :class:`~flint.calibrate.aocal.AOSolutions` at full channel resolution.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flint.calibrate import _solver
from flint.calibrate._msdata import MSLayout, read_rows, row_chunks, rows_per_chunk
from flint.calibrate.aocal import AOSolutions
from flint.errors import FlintCalibrationError, FlintOptionsError
from flint.ms import open_table

__all__ = ["SolveSpec", "SolveOutcome", "solve_ms", "resolve_antenna", "interval_edges"]

logger = logging.getLogger(__name__)

C_LIGHT = 299792458.0


@dataclass(frozen=True)
class SolveSpec:
    """What to solve (internal; built from the public options models)."""

    column: str
    model_spectrum: NDArray[np.float64] | None
    """Point source at the phase centre (Jy per channel); ``None`` reads MODEL_DATA."""
    interval_s: float | None
    chans_per_solution: int | None
    phase_only: bool
    ref_antenna: int
    uv_min_lambda: float = 0.0
    uv_max_lambda: float | None = None
    max_iter: int = 200
    tol: float = 1e-7
    min_snr: float = 0.0
    outlier_nsigma: float | None = None
    model_column: str = "MODEL_DATA"


@dataclass(frozen=True)
class SolveOutcome:
    """Solutions plus what the solve saw."""

    solutions: AOSolutions
    snr: NDArray[np.float64]
    """``(interval, chan_group, pol, antenna)`` signal-to-noise of each gain."""
    n_flagged_solutions: int
    """(interval, antenna, channel) cells flagged in ``solutions``."""
    n_not_converged: int
    n_low_snr: int
    n_outliers: int
    residual_rms_before: float
    """Weighted RMS (Jy) of data - model with unit gains."""
    residual_rms_after: float
    """Weighted RMS (Jy) of data - gains x model x gains^H."""
    n_vis: int
    n_iter: int
    seconds: float


def resolve_antenna(layout: MSLayout, ant: int | str) -> int:
    """Antenna index from an index or a name (case-insensitive)."""
    if isinstance(ant, int) or (isinstance(ant, str) and ant.isdigit()):
        idx = int(ant)
        if not 0 <= idx < layout.n_antennas:
            raise FlintOptionsError(f"--ref-antenna {idx} is out of range 0..{layout.n_antennas - 1} for {layout.path}")
        return idx
    names = [n.lower() for n in layout.antennas]
    if ant.lower() not in names:
        raise FlintOptionsError(f"--ref-antenna: antenna {ant!r} is not in {layout.path} (antennas: {', '.join(layout.antennas)})")
    return names.index(ant.lower())


def interval_edges(layout: MSLayout, interval_s: float | None) -> tuple[int, float, float]:
    """Number of solution intervals and the (start, end) they divide evenly."""
    start, end = layout.start_s, layout.end_s
    if interval_s is None or interval_s <= 0:
        return 1, start, end
    n = max(1, math.ceil((end - start) / interval_s - 1e-6))
    return n, start, end


def _residual_rms(eq: _solver.NormalEquations, gains: NDArray[np.complex128]) -> float:
    g = np.where(np.isfinite(gains), gains, 0j)
    gp, gq = g[..., :, None], g[..., None, :]
    chi2 = eq.C - 2 * (gp * np.conj(gq) * np.conj(eq.A)).real + np.abs(gp) ** 2 * np.abs(gq) ** 2 * eq.B
    valid = (np.abs(gp) > 0) & (np.abs(gq) > 0)
    w = float(np.sum(np.where(valid, eq.W, 0.0)))
    return math.sqrt(max(float(np.sum(np.where(valid, chi2, 0.0))), 0.0) / w) if w > 0 else float("nan")


def _read_xy(
    tab: Any, column: str, start: int, nrow: int, nc: int, x: int, y: int, out: NDArray[Any] | None = None,
    dtype: type = np.complex64,
) -> NDArray[Any]:
    """``(row, chan, 2)`` XX and YY of ``column``: a strided slice read into ``out`` if given."""
    if y > x:
        if out is None or out.shape != (nrow, nc, 2):
            out = np.empty((nrow, nc, 2), dtype=dtype)
        tab.getcolslicenp(column, out, [0, x], [nc - 1, y], [1, y - x], startrow=start, nrow=nrow)
        return out
    return np.asarray(tab.getcol(column, startrow=start, nrow=nrow)[:, :, [x, y]], dtype=dtype)


def solve_ms(layout: MSLayout, spec: SolveSpec) -> SolveOutcome:
    """Solve per-antenna XX/YY gains of the MS described by ``layout``.

    Raises
    ------
    FlintCalibrationError
        Every visibility is flagged (or cut by the uv-range).
    """
    t_start = time.perf_counter()
    x, y = layout.xx_yy
    nc, na = layout.n_channels, layout.n_antennas
    ni, t0, t1 = interval_edges(layout, spec.interval_s)
    starts = _solver.channel_groups(nc, spec.chans_per_solution)
    acc = _solver.Accumulator(ni, na, nc, starts, spectrum=spec.model_spectrum)
    freqs = layout.freqs_hz
    use_uv = spec.uv_min_lambda > 0 or spec.uv_max_lambda is not None
    with open_table(layout.path) as tab:
        cols = tab.colnames()
        wcol = "WEIGHT_SPECTRUM" if "WEIGHT_SPECTRUM" in cols and tab.iscelldefined("WEIGHT_SPECTRUM", 0) else ("WEIGHT" if "WEIGHT" in cols else None)
        names = ["ANTENNA1", "ANTENNA2", "TIME"]
        if wcol:
            names.append(wcol)
        if "FLAG_ROW" in cols:
            names.append("FLAG_ROW")
        if use_uv:
            names.append("UVW")
        chunk = rows_per_chunk(layout)
        vis_buf: NDArray[np.complex64] | None = None
        model_buf: NDArray[np.complex64] | None = None
        good_buf: NDArray[np.bool_] | None = None
        w_buf: NDArray[np.float32] | None = None
        for start, nrow in row_chunks(layout.n_rows, chunk):
            d = read_rows(tab, names, (start, nrow))
            vis = vis_buf = _read_xy(tab, spec.column, start, nrow, nc, x, y, vis_buf)
            a1, a2 = d["ANTENNA1"], d["ANTENNA2"]
            row_ok = a1 != a2
            if "FLAG_ROW" in d:
                row_ok &= ~d["FLAG_ROW"]
            if wcol == "WEIGHT":
                wrow = d[wcol][:, [x, y]].astype(np.float32)
            else:
                wrow = np.ones((nrow, 2), dtype=np.float32)
            wrow *= row_ok[:, None]
            good = good_buf = _read_xy(tab, "FLAG", start, nrow, nc, x, y, good_buf, dtype=np.bool_)
            np.logical_not(good, out=good)
            if not np.isfinite(vis.sum()):
                good &= np.isfinite(vis)
            w = w_buf = w_buf if w_buf is not None and w_buf.shape == good.shape else np.empty(good.shape, np.float32)
            np.multiply(good, wrow[:, None, :], out=w)
            if wcol == "WEIGHT_SPECTRUM":
                w *= d[wcol][:, :, [x, y]]
            if use_uv:
                uvd = np.hypot(d["UVW"][:, 0], d["UVW"][:, 1])[:, None] * freqs[None, :] / C_LIGHT
                inside = uvd >= spec.uv_min_lambda
                if spec.uv_max_lambda is not None:
                    inside &= uvd <= spec.uv_max_lambda
                w *= inside[:, :, None]
            model = None
            if spec.model_spectrum is None:
                model = model_buf = _read_xy(tab, spec.model_column, start, nrow, nc, x, y, model_buf)
            if ni > 1:
                iv = np.clip(np.floor((d["TIME"] - t0) / (t1 - t0) * ni).astype(np.int64), 0, ni - 1)
            else:
                iv = np.zeros(nrow, dtype=np.int64)
            acc.add(iv, a1, a2, vis, w, model)
    eq = acc.finish()
    if not np.any(eq.N > 0):
        raise FlintCalibrationError(
            f"{layout.path}: every visibility of {spec.column} is flagged or outside the uv-range; "
            "nothing to solve (check the flags with 'flint ms summary' and --uv-min-lambda/--uv-max-lambda)"
        )
    gains, converged, n_iter = _solver.stefcal(eq.A, eq.B, phase_only=spec.phase_only, max_iter=spec.max_iter, tol=spec.tol)
    n_not_conv = int(np.sum(~converged & (eq.B.sum(axis=(-1, -2)) > 0)))
    if n_not_conv:
        logger.warning("%s: %d solution cells did not converge in %d iterations; flagged", layout.path, n_not_conv, spec.max_iter)
    gains = _solver.reference_phase(gains, spec.ref_antenna)
    snr = _solver.gain_snr(eq, gains)
    low = np.isfinite(gains) & (snr < spec.min_snr)
    n_low = int(low.sum())
    gains[low] = np.nan
    n_out = 0
    if spec.outlier_nsigma is not None:
        out = _solver.amplitude_outliers(gains, spec.outlier_nsigma)
        n_out = int(out.sum())
        gains[out] = np.nan
    ones = np.where(eq.B.sum(axis=-1) > 0, 1.0 + 0j, np.nan + 0j)
    rms_before = _residual_rms(eq, ones)
    rms_after = _residual_rms(eq, gains)
    # (interval, group, pol, ant) -> (interval, ant, chan, pol)
    group_of_chan = np.searchsorted(starts, np.arange(nc), side="right") - 1
    full = gains[:, group_of_chan].transpose(0, 3, 1, 2)
    sols = AOSolutions.from_gains(full, start_time=t0, end_time=t1)
    n_flagged = int(sols.flagged.sum())
    seconds = time.perf_counter() - t_start
    logger.info(
        "%s: solved %d x %d x %d gains from %d visibilities in %.2f s (%d iterations); "
        "%d cells flagged; residual rms %.4g -> %.4g Jy",
        layout.path, ni, na, len(starts), acc.n_vis, seconds, n_iter, n_flagged, rms_before, rms_after,
    )
    return SolveOutcome(
        solutions=sols,
        snr=snr,
        n_flagged_solutions=n_flagged,
        n_not_converged=n_not_conv,
        n_low_snr=n_low,
        n_outliers=n_out,
        residual_rms_before=rms_before,
        residual_rms_after=rms_after,
        n_vis=acc.n_vis,
        n_iter=n_iter,
        seconds=seconds,
    )
