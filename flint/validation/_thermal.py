"""Thermal (radiometer) noise of a naturally weighted Stokes-I image, from an MS's weights.

The rule, per Measurement Set (one beam):

- Each correlation ``c`` of each row and channel has a weight ``w_c`` (``WEIGHT_SPECTRUM``
  when the MS has it, else ``WEIGHT`` for every channel; ``SIGMA`` as ``1/sigma^2`` when
  the weights are all zero). flint's convention, which ``flint sim`` writes, is
  ``w_c = 1 / sigma_c^2`` with ``sigma_c`` the rms of the *complex* visibility, i.e.
  ``sigma_c = sqrt(2) x`` the rms of its real part.
- Stokes I is ``(XX + YY) / 2`` (or ``(RR + LL) / 2``), so its complex variance is
  ``(sigma_XX^2 + sigma_YY^2) / 4`` and its weight ``w_I = 4 / (1/w_XX + 1/w_YY)``. A
  visibility counts only when neither of its two correlations (nor its row) is flagged
  and both weights are positive.
- With natural weighting each pixel of the dirty image is ``sum(w_I Re(V e^{i phi})) /
  sum(w_I)``; the real part of a visibility carries half its complex variance, so

      ``sigma_image = 1 / sqrt(2 sum w_I)``   (Jy/beam).

  For equal weights this is ``sigma_re,I / sqrt(N)`` with ``sigma_re,I`` the real-part
  noise of Stokes I and ``N`` the unflagged Stokes-I visibilities. Issue 13's example:
  0.3 Jy per real part of each correlation gives ``sigma_re,I = 0.3/sqrt(2)``; with
  ``N = 226 695`` that is 0.45 mJy.

If an MS writes weights as ``1/sigma^2`` of the *real part* (``sigma_convention="real"``),
``sigma_image = 1 / sqrt(sum w_I)``. Weights that are not absolute (all 1, as in some
archived data) give no thermal noise: pass the per-real-part noise instead.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from flint.errors import FlintMSError

__all__ = ["ThermalNoise", "thermal_noise", "thermal_noise_of", "thermal_noise_from_counts"]

logger = logging.getLogger(__name__)

#: casacore correlation codes of the two parallel hands, per feed basis
_PARALLEL = ((9, 12), (5, 8))  # (XX, YY), (RR, LL)


@dataclass(frozen=True)
class ThermalNoise:
    """Natural-weighting Stokes-I thermal noise of one Measurement Set."""

    ms: Path
    noise_jy: float
    """Expected image noise (Jy/beam)."""
    n_visibilities: int
    """Unflagged Stokes-I visibilities (row x channel)."""
    sum_weight: float
    """Sum of the Stokes-I weights ``w_I``."""


def thermal_noise_from_counts(n_visibilities: int, noise_per_part_jy: float) -> float:
    """Natural-weighting Stokes-I noise of ``n`` equally weighted visibilities.

    ``noise_per_part_jy`` is the rms of the real (or imaginary) part of each correlation.

    Examples
    --------
    >>> round(1e3 * thermal_noise_from_counts(226_695, 0.3), 3)  # issue 13: 0.45 mJy
    0.446
    """
    if n_visibilities <= 0:
        return float("nan")
    return noise_per_part_jy / math.sqrt(2.0) / math.sqrt(n_visibilities)


def _stokes_i_weights(w: NDArray[np.float64], flags: NDArray[np.bool_], i_a: int, i_b: int) -> NDArray[np.float64]:
    """``w_I`` per (row, channel); zero where flagged or a weight is not positive."""
    wa, wb = w[..., i_a], w[..., i_b]
    ok = ~(flags[..., i_a] | flags[..., i_b]) & (wa > 0) & (wb > 0) & np.isfinite(wa) & np.isfinite(wb)
    out = np.zeros(wa.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[ok] = 4.0 / (1.0 / wa[ok] + 1.0 / wb[ok])
    return out


def thermal_noise(
    ms: str | os.PathLike[str],
    sigma_convention: Literal["complex", "real"] = "complex",
    noise_per_part_jy: float | None = None,
    chunk_rows: int = 20_000,
) -> ThermalNoise:
    """Natural-weighting Stokes-I thermal noise of one MS from its weights and flags.

    Parameters
    ----------
    ms
        The Measurement Set (one beam).
    sigma_convention
        ``complex``: weights are ``1/sigma^2`` of the complex visibility (flint's);
        ``real``: of its real part.
    noise_per_part_jy
        Ignore the weights: every correlation has this real-part noise (Jy).
    chunk_rows
        Rows read at a time (memory stays bounded).
    """
    from flint.ms import open_table

    path = Path(ms)
    with open_table(path, subtable="POLARIZATION") as pol:
        corr = [int(c) for c in pol.getcol("CORR_TYPE")[0]]
    pair = next(((corr.index(a), corr.index(b)) for a, b in _PARALLEL if a in corr and b in corr), None)
    if pair is None:
        raise FlintMSError(f"{path}: correlations {corr} have no XX/YY or RR/LL pair; no Stokes I thermal noise")
    total_w = 0.0
    n_vis = 0
    with open_table(path) as tab:
        cols = set(tab.colnames())
        spectral = "WEIGHT_SPECTRUM" in cols and tab.iscelldefined("WEIGHT_SPECTRUM", 0) if tab.nrows() else False
        nrow = tab.nrows()
        for start in range(0, nrow, chunk_rows):
            n = min(chunk_rows, nrow - start)
            flags = np.asarray(tab.getcol("FLAG", start, n), dtype=bool)
            if "FLAG_ROW" in cols:
                flags |= np.asarray(tab.getcol("FLAG_ROW", start, n), dtype=bool)[:, None, None]
            if noise_per_part_jy is not None:
                w = np.full(flags.shape, 1.0 / (2.0 * noise_per_part_jy**2))
            elif spectral:
                w = np.asarray(tab.getcol("WEIGHT_SPECTRUM", start, n), dtype=np.float64)
            else:
                w = np.broadcast_to(np.asarray(tab.getcol("WEIGHT", start, n), dtype=np.float64)[:, None, :], flags.shape)
                if not np.any(w > 0) and "SIGMA" in cols:
                    sigma = np.asarray(tab.getcol("SIGMA", start, n), dtype=np.float64)
                    with np.errstate(divide="ignore"):
                        w = np.broadcast_to(np.where(sigma > 0, 1.0 / sigma**2, 0.0)[:, None, :], flags.shape)
            wi = _stokes_i_weights(w, flags, *pair)
            total_w += float(wi.sum())
            n_vis += int(np.count_nonzero(wi))
    if n_vis == 0:
        raise FlintMSError(f"{path}: every Stokes-I visibility is flagged or has zero weight; no thermal noise")
    factor = 2.0 if (sigma_convention == "complex" or noise_per_part_jy is not None) else 1.0
    noise = 1.0 / math.sqrt(factor * total_w)
    logger.info("%s: thermal noise %.3g mJy/beam from %d unflagged Stokes-I visibilities", path, 1e3 * noise, n_vis)
    return ThermalNoise(ms=path, noise_jy=noise, n_visibilities=n_vis, sum_weight=total_w)


def thermal_noise_of(ms: Sequence[str | os.PathLike[str]], sigma_convention: Literal["complex", "real"] = "complex") -> tuple[float, list[ThermalNoise]]:
    """The one-beam thermal noise of several MSs (their median) and each one's."""
    each = [thermal_noise(m, sigma_convention) for m in ms]
    if not each:
        return float("nan"), []
    return float(np.median([t.noise_jy for t in each])), each
