"""Numerics of the gain solver: one mechanism for the bandpass and for self-calibration.

The data model per polarisation (XX or YY), channel group and solution interval is::

    V_pq = g_p M_pq conj(g_q) + noise

and the weighted least-squares problem is solved with StEFCal (Salvini & Wijnholds
2014): for fixed gains of the other antennas, antenna ``p``'s gain has the closed form

    g_p = sum_q A_pq g_q / sum_q B_pq |g_q|^2,
    A_pq = sum_t w V_pq conj(M_pq),   B_pq = sum_t w |M_pq|^2

so one pass over the visibilities builds ``A`` and ``B`` (:class:`Accumulator`) and the
iterations then cost nothing that scales with the data. ``C_pq = sum w |V|^2`` gives the
residual chi-squared of any gains without another pass (:func:`chi2_per_antenna`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Accumulator",
    "NormalEquations",
    "stefcal",
    "reference_phase",
    "chi2_per_antenna",
    "gain_snr",
    "amplitude_outliers",
    "channel_groups",
    "correct_visibilities",
]

Complex = NDArray[np.complex128]
Float = NDArray[np.float64]


def channel_groups(n_chan: int, chans_per_solution: int | None) -> NDArray[np.int64]:
    """Start channel of each solution channel group (``None`` = the whole band)."""
    step = n_chan if not chans_per_solution else min(chans_per_solution, n_chan)
    return np.arange(0, n_chan, step, dtype=np.int64)


@dataclass
class NormalEquations:
    """Accumulated sums, shaped ``(interval, chan_group, pol, ant, ant)``; Hermitian in the last two."""

    A: Complex
    """sum w V conj(M)"""
    B: Float
    """sum w |M|^2"""
    C: Float
    """sum w |V|^2"""
    W: Float
    """sum w"""
    N: Float
    """number of unflagged samples"""


class Accumulator:
    """One pass over row chunks building the :class:`NormalEquations`.

    Parameters
    ----------
    n_intervals, n_antennas, n_channels
        Sizes of the solution grid (channels at full resolution).
    group_starts
        Start channel of each channel group (see :func:`channel_groups`).
    n_pol
        Number of independent polarisations solved (2: XX and YY).
    spectrum
        For a point source at the phase centre: its real ``(chan,)`` spectrum. Then
        ``sum w V`` and ``sum w`` are accumulated and multiplied by the spectrum at the
        end (cheaper than a per-visibility model); otherwise :meth:`add` takes a model.
    """

    def __init__(
        self,
        n_intervals: int,
        n_antennas: int,
        n_channels: int,
        group_starts: NDArray[np.int64],
        n_pol: int = 2,
        spectrum: NDArray[np.floating] | None = None,
    ) -> None:
        self.ni, self.na, self.nc, self.np_ = n_intervals, n_antennas, n_channels, n_pol
        self.starts = np.asarray(group_starts, dtype=np.int64)
        self.ng = len(self.starts)
        self.spectrum = None if spectrum is None else np.asarray(spectrum, dtype=np.float64)
        if self.spectrum is not None and self.ng != n_channels:
            raise ValueError("a point-source spectrum needs per-channel solutions")
        n_groups = n_intervals * n_antennas * n_antennas
        k = self.ng * n_pol
        self._a = np.zeros((n_groups, k), dtype=np.complex128)  # sum w V conj(M)  (or sum w V)
        self._r = np.zeros((n_groups, 4, k), dtype=np.float64)  # B, C, W, N
        self.n_vis = 0
        self._buffers: dict[str, NDArray[Any]] = {}

    @staticmethod
    def bytes_per_interval(n_antennas: int, n_groups: int, n_pol: int = 2) -> int:
        """Bytes the accumulator holds per solution interval (one complex and four real sums)."""
        return n_antennas * n_antennas * n_groups * n_pol * (16 + 4 * 8)

    @property
    def nbytes(self) -> int:
        """Bytes of the accumulated sums."""
        return int(self._a.nbytes + self._r.nbytes)

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: type) -> NDArray[Any]:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, dtype=dtype)
            self._buffers[name] = buf
        return buf

    def _reduce_channels(self, x: NDArray[Any]) -> NDArray[Any]:
        if self.ng == self.nc:
            return x
        if self.ng == 1:
            return x.sum(axis=1, keepdims=True)
        return np.add.reduceat(x, self.starts, axis=1)

    @staticmethod
    def _reduce_rows(idx: NDArray[np.int64], x: NDArray[Any]) -> tuple[NDArray[np.int64], NDArray[Any]]:
        """Sum rows of ``x`` sharing an ``idx``: (unique idx, sums)."""
        nrow = len(idx)
        uniq, first, inv = np.unique(idx, return_index=True, return_inverse=True)
        nu = len(uniq)
        if nrow % nu == 0:
            grid = idx.reshape(nrow // nu, nu)
            if np.all(grid == grid[0]):  # rows form a regular (time, baseline) grid
                return grid[0], x.reshape(nrow // nu, nu, *x.shape[1:]).sum(axis=0)
        from scipy import sparse

        s = sparse.csr_matrix((np.ones(nrow, dtype=np.float32), (inv, np.arange(nrow))), shape=(nu, nrow))
        flat = x.reshape(nrow, -1)
        return uniq, np.asarray(s @ flat).reshape(nu, *x.shape[1:])

    def add(
        self,
        interval: NDArray[np.int64],
        a1: NDArray[np.integer],
        a2: NDArray[np.integer],
        vis: NDArray[np.complexfloating],
        weight: NDArray[np.floating],
        model: NDArray[np.complexfloating] | None = None,
    ) -> None:
        """Add a chunk of rows.

        ``vis`` and ``weight`` are ``(row, chan, pol)``; ``weight`` is zero where
        flagged; flagged samples may hold anything (NaN included). ``model`` is
        ``(row, chan, pol)``, or ``None`` with a point-source ``spectrum``.
        """
        nrow = vis.shape[0]
        if nrow == 0:
            return
        if (model is None) != (self.spectrum is not None):
            raise ValueError("give a model per visibility, or a spectrum to the Accumulator, not both")
        w = weight.astype(np.float32, copy=False)
        if not np.isfinite(vis.sum()):
            vis = np.where(w > 0, vis, np.complex64(0))
        # work buffers are reused between chunks: fresh 100 MB temporaries cost more in
        # page faults than the arithmetic itself
        wv = self._buffer("wv", vis.shape, np.complex64)
        np.multiply(vis, w, out=wv)
        real = self._buffer("real", (nrow, 4, *w.shape[1:]), np.float32)
        c, scratch = real[:, 1], real[:, 0]
        np.multiply(vis.real, vis.real, out=c)
        np.multiply(vis.imag, vis.imag, out=scratch)
        c += scratch
        c *= w
        real[:, 2] = w
        real[:, 3] = w > 0
        if model is None:
            a: NDArray[Any] = wv
            real[:, 0] = 0.0  # B is filled from W in finish()
        else:
            model = np.where(w > 0, model, np.complex64(0))
            a = wv * np.conj(model)
            np.multiply(model.real, model.real, out=scratch)
            scratch += np.square(model.imag)
            scratch *= w
        a = self._reduce_channels(a)
        real = self._reduce_channels(real.reshape(nrow * 4, *w.shape[1:])).reshape(nrow, 4, -1)
        idx = (np.asarray(interval, np.int64) * self.na + a1) * self.na + a2
        k = self.ng * self.np_
        uniq, sa = self._reduce_rows(idx, a.reshape(nrow, k))
        _, sr = self._reduce_rows(idx, real)
        self._a[uniq] += sa
        self._r[uniq] += sr
        self.n_vis += int(nrow * self.nc * self.np_)

    def finish(self) -> NormalEquations:
        """Symmetrise (add the conjugate of the other baseline order) and reshape."""
        shape = (self.ni, self.na, self.na, self.ng, self.np_)
        a_flat, r = self._a, self._r
        if self.spectrum is not None:
            m = np.repeat(self.spectrum, self.np_)  # (chan * pol), pol fastest
            a_flat = a_flat * m
            r = r.copy()
            r[:, 0] = r[:, 2] * m**2

        def arr(x: NDArray[Any]) -> NDArray[Any]:
            y = x.reshape(shape).transpose(0, 3, 4, 1, 2)  # (int, grp, pol, ant, ant)
            return np.ascontiguousarray(y)

        a = arr(a_flat)
        a = a + np.conj(np.swapaxes(a, -1, -2))
        out = []
        for i in range(4):
            x = arr(r[:, i])
            out.append(x + np.swapaxes(x, -1, -2))
        return NormalEquations(A=a, B=out[0], C=out[1], W=out[2], N=out[3])


def stefcal(
    A: Complex,
    B: Float,
    phase_only: bool = False,
    max_iter: int = 200,
    tol: float = 1e-7,
    g0: Complex | None = None,
) -> tuple[Complex, NDArray[np.bool_], int]:
    """Solve for gains with StEFCal, batched over all leading axes.

    Parameters
    ----------
    A, B
        ``(..., ant, ant)`` normal-equation sums.
    phase_only
        Keep ``|g| = 1``.
    max_iter, tol
        Iteration limit and relative-change tolerance.
    g0
        Initial gains (default 1 for every antenna that has data).

    Returns
    -------
    gains
        ``(..., ant)``; NaN for antennas without data or batches that did not converge.
    converged
        ``(...,)`` whether each batch converged.
    n_iter
        Iterations used by the slowest batch.
    """
    lead = A.shape[:-2]
    na = A.shape[-1]
    a = A.reshape(-1, na, na)
    b = B.reshape(-1, na, na)
    nb = a.shape[0]
    active = b.sum(axis=-1) > 0
    if g0 is None:
        g = np.where(active, 1.0 + 0j, 0j)
    else:
        g = np.where(active & np.isfinite(g0.reshape(nb, na)), g0.reshape(nb, na), 0j)
        if phase_only:
            amp = np.abs(g)
            g = np.where(amp > 0, g / np.where(amp > 0, amp, 1), 0j)
    converged = ~active.any(axis=-1)  # nothing to solve counts as done
    todo = np.flatnonzero(~converged)
    it = 0
    for it in range(1, max_iter + 1):
        if len(todo) == 0:
            break
        gt = g[todo]
        num = np.matmul(a[todo], gt[..., None])[..., 0]
        if phase_only:
            amp = np.abs(num)
            new = np.where(amp > 0, num / np.where(amp > 0, amp, 1), 0j)
        else:
            den = np.matmul(b[todo], (gt.real**2 + gt.imag**2)[..., None])[..., 0]
            new = np.where(den > 0, num / np.where(den > 0, den, 1), 0j)
        if it % 2 == 0:
            new = 0.5 * (new + gt)
            if phase_only:
                amp = np.abs(new)
                new = np.where(amp > 0, new / np.where(amp > 0, amp, 1), 0j)
        norm = np.linalg.norm(new, axis=-1)
        delta = np.linalg.norm(new - gt, axis=-1) / np.where(norm > 0, norm, 1)
        g[todo] = new
        done = delta < tol
        converged[todo[done]] = True
        todo = todo[~done]
    gains = np.where(np.abs(g) > 0, g, np.nan + 0j)
    gains[~converged] = np.nan
    return gains.reshape(*lead, na), converged.reshape(lead), it


def reference_phase(gains: Complex, ref_ant: int) -> Complex:
    """Rotate each batch so ``ref_ant`` (or the first antenna with a solution) has phase 0."""
    g = gains.copy()
    ok = np.isfinite(g)
    ref = np.full(g.shape[:-1], ref_ant, dtype=np.int64)
    bad = ~ok[..., ref_ant]
    if bad.any():
        first = np.argmax(ok, axis=-1)
        ref = np.where(bad, first, ref)
    gr = np.take_along_axis(g, ref[..., None], axis=-1)
    ok_ref = np.isfinite(gr) & (np.abs(gr) > 0)
    rot = np.where(ok_ref, np.conj(gr) / np.where(ok_ref, np.abs(gr), 1.0), 1.0)
    return g * rot


def chi2_per_antenna(eq: NormalEquations, gains: Complex) -> tuple[Float, Float]:
    """Weighted residual chi-squared and sample count per antenna, ``(..., ant)``.

    Flagged (NaN) gains count as contributing nothing.
    """
    g = np.where(np.isfinite(gains), gains, 0j)
    gp = g[..., :, None]
    gq = g[..., None, :]
    cross = (gp * np.conj(gq) * np.conj(eq.A)).real
    chi2 = eq.C - 2 * cross + (np.abs(gp) ** 2) * (np.abs(gq) ** 2) * eq.B
    valid = (np.abs(gp) > 0) & (np.abs(gq) > 0)
    chi2 = np.where(valid, chi2, 0.0)
    n = np.where(valid, eq.N, 0.0)
    return np.maximum(chi2.sum(axis=-1), 0.0), n.sum(axis=-1)


def gain_snr(eq: NormalEquations, gains: Complex) -> Float:
    """Signal-to-noise of each gain, with the noise taken from the fit residuals."""
    g = np.where(np.isfinite(gains), gains, 0j)
    den = np.matmul(eq.B, (np.abs(g) ** 2)[..., None])[..., 0]
    chi2, n = chi2_per_antenna(eq, gains)
    # reduced chi2 per sample; fall back to 1 (weights taken at face value)
    red = np.where(n > 1, chi2 / np.maximum(n - 1, 1), 1.0)
    var = red / np.where(den > 0, den, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.abs(g) / np.sqrt(var)
    return np.where(np.isfinite(gains) & (den > 0), snr, 0.0)


def amplitude_outliers(gains: Complex, nsigma: float, min_fraction: float = 0.05, window: int = 9) -> NDArray[np.bool_]:
    """Flag channels whose amplitude departs from a running median along the channel axis.

    ``gains`` is ``(interval, chan, pol, ant)``. A channel is an outlier when its
    amplitude differs from the median of a ``window``-channel window around it (shifted
    inside the band at the edges) by more than
    ``nsigma`` robust standard deviations and by more than ``min_fraction`` of the
    median amplitude.
    """
    amp = np.abs(gains)  # NaN stays NaN
    nc = amp.shape[1]
    if nc < 5:
        return np.zeros(gains.shape, dtype=bool)
    # each channel's window: the ``width`` channels centred on it, shifted inside the band at its
    # edges (a reflected window repeats the edge channels and biases the median of a curved bandpass)
    width = min(2 * max(1, window // 2) + 1, nc)
    first = np.clip(np.arange(nc) - width // 2, 0, nc - width)
    stack = np.stack([amp[:, first + i] for i in range(width)])
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(stack, axis=0)
            dev = amp - med
            mad = np.nanmedian(np.abs(dev), axis=1, keepdims=True) * 1.4826
            level = np.nanmedian(amp, axis=1, keepdims=True)
    thresh = np.maximum(nsigma * mad, min_fraction * level)
    out = np.abs(dev) > thresh
    return np.where(np.isfinite(dev), out, False)


def correct_visibilities(
    vis: NDArray[np.complexfloating],
    jones: Complex,
    interval: NDArray[np.int64],
    a1: NDArray[np.integer],
    a2: NDArray[np.integer],
    corr_types: list[int],
    channel_group: NDArray[np.integer] | None = None,
) -> tuple[NDArray[np.complex64], NDArray[np.bool_]]:
    """Apply Jones matrices: ``V' = J_a1^-1 V J_a2^-H`` for every row.

    Parameters
    ----------
    vis
        ``(row, chan, corr)`` visibilities with linear correlations.
    jones
        ``(interval, antenna, chan, 2, 2)`` solutions (``chan``: channel group with ``channel_group``).
    interval, a1, a2
        Solution interval and antennas of each row.
    corr_types
        casacore codes of the correlations (XX XY YX YY, or XX YY).
    channel_group
        Index into ``jones``' channel axis of each channel (solutions shared by channel
        groups, inverted once per group); ``None``: one per channel.

    Returns
    -------
    corrected, bad
        Corrected visibilities and a ``(row, chan)`` mask of samples whose solution is
        flagged or singular (their corrected value is 0).
    """
    x, y = corr_types.index(9), corr_types.index(12)
    full = corr_types == [9, 10, 11, 12]
    diag = not (np.any(jones[..., 0, 1] != 0) or np.any(jones[..., 1, 0] != 0))
    out = np.zeros(vis.shape, dtype=np.complex64)
    chans = slice(None) if channel_group is None else np.asarray(channel_group)
    with np.errstate(divide="ignore", invalid="ignore"):
        if diag or not full:
            # (int, ant, chan, 2), inverted in double precision; applied in single (as the data are stored)
            inv = np.stack([1.0 / jones[..., 0, 0], 1.0 / jones[..., 1, 1]], axis=-1).astype(np.complex64)
            i1 = inv[interval, a1][:, chans]
            i2 = np.conj(inv[interval, a2])[:, chans]
            out[..., x] = vis[..., x] * (i1[..., 0] * i2[..., 0])
            out[..., y] = vis[..., y] * (i1[..., 1] * i2[..., 1])
            if full:
                out[..., 1] = vis[..., 1] * (i1[..., 0] * i2[..., 1])
                out[..., 2] = vis[..., 2] * (i1[..., 1] * i2[..., 0])
        else:
            ok = np.all(np.isfinite(jones), axis=(-1, -2))
            safe = np.where(ok[..., None, None], jones, np.eye(2))
            det = safe[..., 0, 0] * safe[..., 1, 1] - safe[..., 0, 1] * safe[..., 1, 0]
            safe = np.where((np.abs(det) > 0)[..., None, None], safe, np.eye(2))
            inv_all = np.linalg.inv(safe)
            inv_all[~(ok & (np.abs(det) > 0))] = np.nan
            j1 = inv_all[interval, a1][:, chans]
            j2 = np.conj(np.swapaxes(inv_all[interval, a2], -1, -2))[:, chans]
            v = vis.reshape(*vis.shape[:-1], 2, 2)
            out[:] = (j1 @ v @ j2).reshape(vis.shape)
    bad = ~np.all(np.isfinite(out), axis=-1)
    out[bad] = 0
    return out, bad
