"""Solve antenna gains from a Measurement Set: the one path bandpass and self-cal share.

:func:`solve_ms` reads the data column, the model (a point-source spectrum at the phase
centre, or ``MODEL_DATA``), flags and weights in row chunks, accumulates the normal
equations of a block of solution intervals at a time (bounded memory), solves them with
StEFCal, references the phases, flags bad solutions and returns :class:`~flint.calibrate.aocal.AOSolutions`
(one solution per channel group, mapped to every channel).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flint.calibrate import _solver
from flint.calibrate._msdata import MSLayout, read_rows, row_chunks, rows_per_chunk
from flint.calibrate.aocal import AOSolutions
from flint.errors import FlintCalibrationError, FlintOptionsError
from flint.ms import open_table

__all__ = ["SolveSpec", "SolveOutcome", "solve_ms", "resolve_antenna", "interval_edges", "interval_blocks"]

logger = logging.getLogger(__name__)

C_LIGHT = 299792458.0

#: default normal-equation memory per block of solution intervals (bytes)
ACCUMULATOR_BYTES = 64 * 1024**2


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
    max_accumulator_bytes: int = ACCUMULATOR_BYTES
    """Normal-equation memory per block of solution intervals (at least one interval per block)."""


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
    accumulator_bytes: int = 0
    """Largest normal-equation accumulator allocated (bytes): bounded by the block, not the interval count."""
    n_blocks: int = 1
    """Blocks of solution intervals solved one after another."""


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


def _residual_sums(eq: _solver.NormalEquations, gains: NDArray[np.complex128]) -> tuple[float, float]:
    """Weighted chi-squared of data - gains x model x gains^H and the sum of weights."""
    g = np.where(np.isfinite(gains), gains, 0j)
    gp, gq = g[..., :, None], g[..., None, :]
    chi2 = eq.C - 2 * (gp * np.conj(gq) * np.conj(eq.A)).real + np.abs(gp) ** 2 * np.abs(gq) ** 2 * eq.B
    valid = (np.abs(gp) > 0) & (np.abs(gq) > 0)
    return float(np.sum(np.where(valid, chi2, 0.0))), float(np.sum(np.where(valid, eq.W, 0.0)))


def _rms(chi2: float, w: float) -> float:
    return math.sqrt(max(chi2, 0.0) / w) if w > 0 else float("nan")


def interval_blocks(n_intervals: int, bytes_per_interval: int, max_bytes: int) -> list[tuple[int, int]]:
    """``(first, stop)`` interval ranges whose accumulator fits in ``max_bytes`` (at least one interval each)."""
    per = max(1, max_bytes // max(bytes_per_interval, 1))
    return [(lo, min(lo + per, n_intervals)) for lo in range(0, n_intervals, per)]


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


def _row_blocks(
    layout: MSLayout, iv_row: NDArray[np.int64], blocks: list[tuple[int, int]]
) -> list[tuple[int, int] | NDArray[np.int64]]:
    """The rows of each interval block: a ``(start, nrow)`` range when the MS is time-sorted."""
    if len(blocks) == 1:
        return [(0, layout.n_rows)]
    if layout.time_sorted:
        edges = np.searchsorted(iv_row, [lo for lo, _ in blocks] + [blocks[-1][1]], side="left")
        return [(int(edges[i]), int(edges[i + 1] - edges[i])) for i in range(len(blocks))]
    return [np.flatnonzero((iv_row >= lo) & (iv_row < hi)) for lo, hi in blocks]


def _chunk_views(
    tab: Any, rows: tuple[int, int] | NDArray[np.int64], chunk: int, iv_row: NDArray[np.int64]
) -> Iterator[tuple[Any, int, int, NDArray[np.int64]]]:
    """``(table, start, nrow, interval)`` pieces of ``rows`` of at most ``chunk`` rows.

    A row list (an MS not sorted in time) is read through a row selection.
    """
    if isinstance(rows, tuple):
        first, n = rows
        for s, k in row_chunks(n, chunk):
            yield tab, first + s, k, iv_row[first + s : first + s + k]
        return
    for s, k in row_chunks(len(rows), chunk):
        sel = tab.selectrows(rows[s : s + k].tolist())
        try:
            yield sel, 0, k, iv_row[rows[s : s + k]]
        finally:
            sel.close()


def solve_ms(layout: MSLayout, spec: SolveSpec) -> SolveOutcome:
    """Solve per-antenna XX/YY gains of the MS described by ``layout``.

    The solution intervals are solved a block at a time (as many intervals as fit in
    ``spec.max_accumulator_bytes``): memory does not grow with the number of intervals,
    and every interval's solution is the same as if all were accumulated at once.

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
    ng = len(starts)
    blocks = interval_blocks(ni, _solver.Accumulator.bytes_per_interval(na, ng), spec.max_accumulator_bytes)
    gains = np.full((ni, ng, 2, na), np.nan + 0j)
    snr = np.zeros((ni, ng, 2, na))
    sums = np.zeros(4)  # chi2 and weight before (unit gains) and after
    n_not_conv = n_low = n_out = n_vis = n_iter = acc_bytes = 0
    any_data = False
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
        if ni > 1:
            iv_row = np.clip(np.floor((tab.getcol("TIME") - t0) / (t1 - t0) * ni).astype(np.int64), 0, ni - 1)
        else:
            iv_row = np.zeros(layout.n_rows, dtype=np.int64)
        reader = _ChunkReader(tab, layout, spec, names, wcol, use_uv)
        for (lo, hi), rows in zip(blocks, _row_blocks(layout, iv_row, blocks), strict=True):
            acc = _solver.Accumulator(hi - lo, na, nc, starts, spectrum=spec.model_spectrum)
            acc_bytes = max(acc_bytes, acc.nbytes)
            for view, start, nrow, iv in _chunk_views(tab, rows, rows_per_chunk(layout), iv_row):
                a1, a2, vis, w, model = reader.read(view, start, nrow)
                acc.add(iv - lo, a1, a2, vis, w, model)
            n_vis += acc.n_vis
            eq = acc.finish()
            del acc
            if not np.any(eq.N > 0):
                continue
            any_data = True
            g, converged, it = _solver.stefcal(eq.A, eq.B, phase_only=spec.phase_only, max_iter=spec.max_iter, tol=spec.tol)
            n_iter = max(n_iter, it)
            n_not_conv += int(np.sum(~converged & (eq.B.sum(axis=(-1, -2)) > 0)))
            g = _solver.reference_phase(g, spec.ref_antenna)
            s = _solver.gain_snr(eq, g)
            low = np.isfinite(g) & (s < spec.min_snr)
            n_low += int(low.sum())
            g[low] = np.nan
            if spec.outlier_nsigma is not None:
                out = _solver.amplitude_outliers(g, spec.outlier_nsigma)
                n_out += int(out.sum())
                g[out] = np.nan
            sums[:2] += _residual_sums(eq, np.where(eq.B.sum(axis=-1) > 0, 1.0 + 0j, np.nan + 0j))
            sums[2:] += _residual_sums(eq, g)
            gains[lo:hi], snr[lo:hi] = g, s
            del eq
    if not any_data:
        raise FlintCalibrationError(
            f"{layout.path}: every visibility of {spec.column} is flagged or outside the uv-range; "
            "nothing to solve (check the flags with 'flint ms summary' and --uv-min-lambda/--uv-max-lambda)"
        )
    if n_not_conv:
        logger.warning("%s: %d solution cells did not converge in %d iterations; flagged", layout.path, n_not_conv, spec.max_iter)
    rms_before, rms_after = _rms(sums[0], sums[1]), _rms(sums[2], sums[3])
    # (interval, group, pol, ant) -> (interval, ant, group, pol); channels share their group's
    # solution (not expanded: 10 h of 10 s solutions at 288 channels would be 2.4 GB per channel)
    group_of_chan = np.searchsorted(starts, np.arange(nc), side="right") - 1
    sols = AOSolutions.from_gains(gains.transpose(0, 3, 1, 2), start_time=t0, end_time=t1, channel_group=group_of_chan)
    n_flagged = sols.n_flagged
    seconds = time.perf_counter() - t_start
    logger.info(
        "%s: solved %d x %d x %d gains (%d block(s)) from %d visibilities in %.2f s (%d iterations); "
        "%d cells flagged; residual rms %.4g -> %.4g Jy",
        layout.path, ni, na, ng, len(blocks), n_vis, seconds, n_iter, n_flagged, rms_before, rms_after,
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
        n_vis=n_vis,
        n_iter=n_iter,
        seconds=seconds,
        accumulator_bytes=acc_bytes,
        n_blocks=len(blocks),
    )


class _ChunkReader:
    """Reads one chunk's antennas, XX/YY visibilities, weights (0 where flagged) and model, reusing buffers."""

    def __init__(self, tab: Any, layout: MSLayout, spec: SolveSpec, names: list[str], wcol: str | None, use_uv: bool) -> None:
        self.layout, self.spec, self.names, self.wcol, self.use_uv = layout, spec, names, wcol, use_uv
        self.vis_buf: NDArray[np.complex64] | None = None
        self.model_buf: NDArray[np.complex64] | None = None
        self.good_buf: NDArray[np.bool_] | None = None
        self.w_buf: NDArray[np.float32] | None = None

    def read(self, tab: Any, start: int, nrow: int) -> tuple[Any, Any, Any, Any, Any]:
        spec, wcol = self.spec, self.wcol
        x, y = self.layout.xx_yy
        nc = self.layout.n_channels
        d = read_rows(tab, self.names, (start, nrow))
        vis = self.vis_buf = _read_xy(tab, spec.column, start, nrow, nc, x, y, self.vis_buf)
        a1, a2 = d["ANTENNA1"], d["ANTENNA2"]
        row_ok = a1 != a2
        if "FLAG_ROW" in d:
            row_ok &= ~d["FLAG_ROW"]
        if wcol == "WEIGHT":
            wrow = d[wcol][:, [x, y]].astype(np.float32)
        else:
            wrow = np.ones((nrow, 2), dtype=np.float32)
        wrow *= row_ok[:, None]
        good = self.good_buf = _read_xy(tab, "FLAG", start, nrow, nc, x, y, self.good_buf, dtype=np.bool_)
        np.logical_not(good, out=good)
        if not np.isfinite(vis.sum()):
            good &= np.isfinite(vis)
        good &= vis != 0  # an exactly-zero sample is missing data (flagging flags it too)
        w = self.w_buf if self.w_buf is not None and self.w_buf.shape == good.shape else np.empty(good.shape, np.float32)
        self.w_buf = w
        np.multiply(good, wrow[:, None, :], out=w)
        if wcol == "WEIGHT_SPECTRUM":
            w *= d[wcol][:, :, [x, y]]
        if self.use_uv:
            uvd = np.hypot(d["UVW"][:, 0], d["UVW"][:, 1])[:, None] * self.layout.freqs_hz[None, :] / C_LIGHT
            inside = uvd >= spec.uv_min_lambda
            if spec.uv_max_lambda is not None:
                inside &= uvd <= spec.uv_max_lambda
            w *= inside[:, :, None]
        model = None
        if spec.model_spectrum is None:
            model = self.model_buf = _read_xy(tab, spec.model_column, start, nrow, nc, x, y, self.model_buf)
        return a1, a2, vis, w, model
