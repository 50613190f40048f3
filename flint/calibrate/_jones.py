"""Full-Jones bandpass: all four Jones terms per antenna and channel against an unpolarised calibrator.

The data model per channel (PKS B1934-638, an unpolarised point source of flux ``S`` at
the phase centre, linear feeds, sky frame)::

    V_pq = J_p (S 1) J_q^H + noise,        J_p = G_p D_p = [[g_x, g_x d_x], [g_y d_y, g_y]]

solved with the 2x2 (polarimetric) form of StEFCal: for fixed ``J_q``,

    J_p = (sum_q A_pq J_q) (S sum_q W_pq J_q^H J_q)^-1,    A_pq = sum_t w V_pq,  W_pq = sum_t w

so one pass over the data builds ``A`` and ``W`` (a 2x2 matrix and a number per
baseline and channel) and the iterations never touch the visibilities again.

What an unpolarised calibrator cannot tell (the degeneracies) and what flint fixes
-------------------------------------------------------------------------------------
``J_p -> J_p U`` with one unitary ``U`` for all antennas leaves ``J_p S J_q^H`` unchanged
(``U U^H = 1``). ``U`` has four real parameters, and each is fixed by a convention:

1. **Overall phase**: the reference antenna's ``g_x`` is real and positive.
2. **XY-phase** (the phase of ``g_y / g_x`` common to all antennas): cannot be measured on
   an unpolarised source at one parallactic angle. flint sets the reference antenna's
   XY-phase to a supplied value: ``--xy-phase`` takes a number (deg) or the CSV an
   on-dish calibration (ODC) noise source system reports (``beam, antenna, freq_hz,
   xy_phase_deg``; ASKAP's ODC measures it per beam and antenna). Without it the
   reference antenna's XY-phase is 0 - right when the beamformer has removed the
   XY-phase with the ODC measurement already, as ASKAP's does; otherwise U and V of the
   calibrated data are mixed by the residual XY-phase.
3. **Orthogonal leakage** (two real parameters): ``d_x -> d_x - b*``, ``d_y -> d_y + b`` for
   all antennas (to first order) is a common rotation/ellipticity of the feed pair, which an
   unpolarised source does not see. Only *relative* leakage is determined, plus each
   antenna's non-orthogonal part ``d_x + conj(d_y)``. flint's constraint: **the array
   mean of ``d_x - conj(d_y)`` is zero** (the average feed is aligned with the nominal
   axes, as the dish's feed rotation sets it). Unpolarised sources are calibrated
   exactly whatever the true common part (it only rotates Q, U, V into one another);
   polarised sources keep an error of about twice that common part times their
   polarised fraction.

Solutions flagged: antennas or channels without data, cells that did not converge, and
(``outlier_nsigma``) channels whose ``|g_x|``/``|g_y|`` depart from their neighbours.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from flint.calibrate import _solver
from flint.calibrate._msdata import MSLayout
from flint.calibrate._solve_ms import SolveOutcome, SolveSpec
from flint.calibrate.aocal import AOSolutions
from flint.errors import FlintCalibrationError, FlintInputError, FlintMSError
from flint.ms import open_table

__all__ = [
    "solve_full_jones",
    "full_jones_stefcal",
    "fix_degeneracies",
    "decompose",
    "constrain_truth_dterms",
    "read_xy_phase",
]

logger = logging.getLogger(__name__)

Complex = NDArray[np.complex128]
_ROW_BYTES = 32 * 1024**2


def full_jones_stefcal(
    A: Complex, W: NDArray[np.float64], spectrum: NDArray[np.float64], max_iter: int = 200, tol: float = 1e-8
) -> tuple[Complex, NDArray[np.bool_], int]:
    """Solve ``(chan, ant, 2, 2)`` Jones matrices from ``A`` ``(chan, ant, ant, 2, 2)`` and ``W`` ``(chan, ant, ant)``.

    ``A[c, p, q] = sum w V_pq`` for both orders of each baseline (``A[q, p] = A[p, q]^H``).
    Returns the Jones matrices (NaN for antennas without data), per-channel convergence and
    the iterations used.
    """
    active = W.sum(axis=-1) > 0  # (chan, ant)
    J = np.where(active[..., None, None], np.eye(2), 0.0).astype(np.complex128)
    s = np.asarray(spectrum, dtype=float)[:, None, None, None]
    converged = ~active.any(axis=-1)
    it = 0
    for it in range(1, max_iter + 1):
        todo = np.flatnonzero(~converged)
        if len(todo) == 0:
            break
        Jt = J[todo]
        num = np.einsum("cpqij,cqjk->cpik", A[todo], Jt)
        jhj = np.einsum("cqji,cqjk->cqik", np.conj(Jt), Jt)
        den = s[todo] * np.einsum("cpq,cqik->cpik", W[todo], jhj)
        ok = active[todo] & (np.abs(np.linalg.det(den)) > 0)
        safe = np.where(ok[..., None, None], den, np.eye(2))
        new = np.where(ok[..., None, None], num @ np.linalg.inv(safe), 0.0)
        if it % 2 == 0:
            new = 0.5 * (new + Jt)
        norm = np.sqrt(np.sum(np.abs(new) ** 2, axis=(1, 2, 3)))
        delta = np.sqrt(np.sum(np.abs(new - Jt) ** 2, axis=(1, 2, 3))) / np.where(norm > 0, norm, 1.0)
        J[todo] = new
        converged[todo[delta < tol]] = True
    J[~active] = np.nan
    J[~converged] = np.nan
    return J, converged, it


def decompose(J: Complex) -> tuple[Complex, Complex]:
    """``(..., 2, 2)`` Jones -> gains ``(..., 2)`` (g_x, g_y) and D-terms ``(..., 2)`` (d_x, d_y)."""
    g = np.stack([J[..., 0, 0], J[..., 1, 1]], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.stack([J[..., 0, 1] / J[..., 0, 0], J[..., 1, 0] / J[..., 1, 1]], axis=-1)
    return g, d


def _unitary(b: Complex) -> Complex:
    """``[[1, -conj(b)], [b, 1]] / sqrt(1 + |b|^2)``: a rotation/ellipticity of the feed pair (unitary)."""
    one = np.ones_like(b)
    u = np.stack([np.stack([one, -np.conj(b)], axis=-1), np.stack([b, one], axis=-1)], axis=-2)
    return np.asarray(u / np.sqrt(1.0 + np.abs(b) ** 2)[..., None, None], dtype=np.complex128)


def fix_degeneracies(J: Complex, ref_ant: int, xy_phase_rad: NDArray[np.float64] | float = 0.0) -> Complex:
    """Apply flint's conventions to ``(chan, ant, 2, 2)`` solutions (see the module docstring).

    Mean of ``d_x - conj(d_y)`` over antennas zero; reference antenna's ``g_x`` real and
    positive and its ``g_y / g_x`` phase ``xy_phase_rad`` (per channel or one value). A
    channel whose reference antenna is flagged takes the first antenna with a solution.
    """
    J = J.copy()
    ok = np.all(np.isfinite(J), axis=(-1, -2))  # (chan, ant)
    for _ in range(8):
        _, d = decompose(J)
        orth = np.where(ok, d[..., 0] - np.conj(d[..., 1]), 0.0)
        n = np.maximum(ok.sum(axis=-1), 1)
        b = np.conj(orth.sum(axis=-1) / n / 2.0)  # (chan,)
        J = J @ _unitary(b)[:, None]
    ref = np.where(ok[:, ref_ant], ref_ant, np.argmax(ok, axis=-1))
    jr = J[np.arange(J.shape[0]), ref]  # (chan, 2, 2)
    alpha = np.angle(jr[:, 0, 0])
    beta = np.angle(jr[:, 1, 1]) - np.broadcast_to(np.asarray(xy_phase_rad, dtype=float), alpha.shape)
    rot = np.zeros((J.shape[0], 2, 2), dtype=np.complex128)
    rot[:, 0, 0] = np.exp(-1j * np.nan_to_num(alpha))
    rot[:, 1, 1] = np.exp(-1j * np.nan_to_num(beta))
    return J @ rot[:, None]


def constrain_truth_dterms(dterms: Complex) -> Complex:
    """Injected D-terms ``(..., ant, chan, 2)`` under flint's constraint (array mean of ``d_x - conj(d_y)`` zero).

    What a full-Jones solve on an unpolarised calibrator can recover (to first order in d).
    """
    orth = dterms[..., 0] - np.conj(dterms[..., 1])
    b = np.conj(orth.mean(axis=-2, keepdims=True) / 2.0)  # mean over antennas
    return np.stack([dterms[..., 0] - np.conj(b), dterms[..., 1] + b], axis=-1)


def read_xy_phase(source: str | float | None, beam: int | None, ref_ant: int, freqs_hz: NDArray[np.float64]) -> NDArray[np.float64]:
    """The reference antenna's XY-phase (rad) per channel from ``--xy-phase`` (deg, or an ODC CSV).

    The CSV has columns ``beam, antenna, freq_hz, xy_phase_deg``; its values for the MS's beam
    and the reference antenna are interpolated linearly in frequency.
    """
    nc = len(freqs_hz)
    if source is None:
        return np.zeros(nc)
    try:
        return np.full(nc, math.radians(float(source)))
    except ValueError:
        pass
    path = Path(str(source))
    if not path.is_file():
        raise FlintInputError(f"{path}: no such XY-phase file; give --xy-phase a number (deg) or a CSV with beam, antenna, freq_hz, xy_phase_deg")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    need = {"beam", "antenna", "freq_hz", "xy_phase_deg"}
    if not rows or not need <= set(rows[0]):
        raise FlintInputError(f"{path}: needs columns {', '.join(sorted(need))} (--xy-phase)")
    sel = [r for r in rows if int(r["antenna"]) == ref_ant and (beam is None or int(r["beam"]) == beam)]
    if not sel:
        raise FlintInputError(f"{path}: no XY-phase for beam {beam} antenna {ref_ant}; give the file of this beam with --xy-phase (or --ref-antenna)")
    f = np.array([float(r["freq_hz"]) for r in sel])
    ph = np.radians([float(r["xy_phase_deg"]) for r in sel])
    order = np.argsort(f)
    return np.interp(freqs_hz, f[order], np.unwrap(ph[order]))


def _accumulate(layout: MSLayout, spec: SolveSpec) -> tuple[Complex, NDArray[np.float64], NDArray[np.float64], int]:
    """One pass: ``A`` ``(chan, ant, ant, 2, 2)``, ``W`` ``(chan, ant, ant)``, ``C`` (sum w |V|^2 per channel), visibilities."""
    from scipy import sparse

    nc, na = layout.n_channels, layout.n_antennas
    a_sum = np.zeros((na * na, nc * 4), dtype=np.complex128)  # per (ant1, ant2): sum w V
    w_sum = np.zeros((na * na, nc))
    C = np.zeros(nc)
    n_vis = 0
    chunk = max(1, _ROW_BYTES // (nc * 4 * 8 * 3))
    with open_table(layout.path) as tab:
        cols = tab.colnames()
        for start in range(0, layout.n_rows, chunk):
            n = min(chunk, layout.n_rows - start)
            a1 = tab.getcol("ANTENNA1", startrow=start, nrow=n)
            a2 = tab.getcol("ANTENNA2", startrow=start, nrow=n)
            vis = tab.getcol(spec.column, startrow=start, nrow=n)
            flag = tab.getcol("FLAG", startrow=start, nrow=n)
            w = np.ones(n) if "WEIGHT" not in cols else tab.getcol("WEIGHT", startrow=start, nrow=n).mean(axis=-1)
            good = ~flag.any(axis=-1) & np.isfinite(vis).all(axis=-1) & (a1 != a2)[:, None]
            if "FLAG_ROW" in cols:
                good &= ~tab.getcol("FLAG_ROW", startrow=start, nrow=n)[:, None]
            if spec.uv_min_lambda > 0 or spec.uv_max_lambda is not None:
                uvw = tab.getcol("UVW", startrow=start, nrow=n)
                uvd = np.hypot(uvw[:, 0], uvw[:, 1])[:, None] * layout.freqs_hz[None, :] / 299792458.0
                good &= uvd >= spec.uv_min_lambda
                if spec.uv_max_lambda is not None:
                    good &= uvd <= spec.uv_max_lambda
            wv = np.where(good, w[:, None], 0.0)  # (row, chan)
            v = np.where(good[..., None], vis, 0).astype(np.complex128)
            rows = sparse.csr_matrix((np.ones(n), (a1 * na + a2, np.arange(n))), shape=(na * na, n))
            a_sum += rows @ (wv[..., None] * v).reshape(n, nc * 4)
            w_sum += rows @ wv
            C += np.sum(wv[..., None] * np.abs(v) ** 2, axis=(0, 2))
            n_vis += int(good.sum()) * 4
    A = np.ascontiguousarray(a_sum.reshape(na, na, nc, 2, 2).transpose(2, 0, 1, 3, 4))
    W = np.ascontiguousarray(w_sum.reshape(na, na, nc).transpose(2, 0, 1))
    A = A + np.conj(np.swapaxes(np.swapaxes(A, 1, 2), -1, -2))
    W = W + np.swapaxes(W, 1, 2)
    return A, W, C, n_vis


def _chi2(A: Complex, W: NDArray[np.float64], C: NDArray[np.float64], spectrum: NDArray[np.float64], J: Complex) -> tuple[float, float]:
    """Weighted chi-squared of data - S J_p J_q^H (each baseline once) and the sum of weights."""
    Jz = np.where(np.isfinite(J), J, 0.0)
    valid = np.all(np.isfinite(J), axis=(-1, -2))
    m = spectrum[:, None, None, None, None] * np.einsum("cpij,cqkj->cpqik", Jz, np.conj(Jz))  # S J_p J_q^H
    vv = valid[:, :, None] & valid[:, None, :]
    cross = np.einsum("cpqij,cpqij->cpq", np.conj(A), m).real
    model2 = np.sum(np.abs(m) ** 2, axis=(-1, -2)) * W
    wsum = 4.0 * float(np.sum(np.where(vv, W, 0.0))) / 2.0  # per correlation
    chi2 = float(np.sum(C)) - float(np.sum(np.where(vv, 2 * cross - model2, 0.0))) / 2.0
    return chi2, wsum


def solve_full_jones(layout: MSLayout, spec: SolveSpec, xy_phase_rad: NDArray[np.float64] | float = 0.0) -> SolveOutcome:
    """Per-channel full-Jones bandpass on an unpolarised point source at the phase centre.

    ``spec`` is the bandpass's :class:`~flint.calibrate._solve_ms.SolveSpec` (its
    ``model_spectrum``, ``ref_antenna``, ``max_iter``, ``tol``, ``outlier_nsigma``, uv-range);
    ``xy_phase_rad`` the reference antenna's XY-phase (per channel or one value).

    Raises
    ------
    FlintMSError
        The data do not hold all four linear correlations (XX XY YX YY).
    FlintCalibrationError
        Every visibility is flagged.
    """
    t0 = time.perf_counter()
    if layout.corr_types != [9, 10, 11, 12]:
        raise FlintMSError(f"{layout.path}: correlations {layout.corr_types}; a full-Jones solve needs XX XY YX YY (leave out --full-jones)")
    if spec.model_spectrum is None:
        raise FlintCalibrationError("a full-Jones solve needs the calibrator's spectrum (a point source at the phase centre)")
    spectrum = np.asarray(spec.model_spectrum, dtype=float)
    A, W, C, n_vis = _accumulate(layout, spec)
    if not np.any(W > 0):
        raise FlintCalibrationError(
            f"{layout.path}: every visibility of {spec.column} is flagged or outside the uv-range; "
            "nothing to solve (check the flags with 'flint ms summary' and --uv-min-lambda/--uv-max-lambda)"
        )
    J, converged, n_iter = full_jones_stefcal(A, W, spectrum, spec.max_iter, min(spec.tol, 1e-8))
    n_not_conv = int(np.sum(~converged & (W.sum(axis=(-1, -2)) > 0)))
    J = fix_degeneracies(J, spec.ref_antenna, xy_phase_rad)
    n_out = 0
    if spec.outlier_nsigma is not None:
        g, _ = decompose(J)  # (chan, ant, 2)
        out = _solver.amplitude_outliers(g.transpose(0, 2, 1)[None], spec.outlier_nsigma)[0].transpose(0, 2, 1)
        bad = out.any(axis=-1)
        n_out = int(bad.sum())
        J[bad] = np.nan
    chi_before = _chi2(A, W, C, spectrum, np.broadcast_to(np.eye(2), J.shape).astype(np.complex128))
    chi_after = _chi2(A, W, C, spectrum, J)
    sols = AOSolutions(J.transpose(1, 0, 2, 3)[None], start_time=layout.start_s, end_time=layout.end_s)
    n_flag = int(sols.flagged.sum())
    seconds = time.perf_counter() - t0
    rms = [math.sqrt(max(c, 0.0) / w) if w > 0 else float("nan") for c, w in (chi_before, chi_after)]
    logger.info(
        "%s: full-Jones bandpass, %d antennas x %d channels from %d visibilities in %.2f s (%d iterations); "
        "%d cells flagged; residual rms %.4g -> %.4g Jy",
        layout.path, layout.n_antennas, layout.n_channels, n_vis, seconds, n_iter, n_flag, rms[0], rms[1],
    )
    return SolveOutcome(
        solutions=sols,
        snr=np.zeros((1, layout.n_channels, 2, layout.n_antennas)),
        n_flagged_solutions=n_flag,
        n_not_converged=n_not_conv,
        n_low_snr=0,
        n_outliers=n_out,
        residual_rms_before=rms[0],
        residual_rms_after=rms[1],
        n_vis=n_vis,
        n_iter=n_iter,
        seconds=seconds,
    )
