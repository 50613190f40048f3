"""RFI and bad-data flagging of a Measurement Set.

Two kinds of flags, both only ever *added* to the existing ones (OR) unless
``clear_existing`` is asked for:

* cheap deterministic flags: NaN/inf visibilities, samples whose correlations are all
  exactly zero, rows with zero UVW (cross-correlations), listed antennas, edge channels,
  and ``FLAG_ROW``;
* RFI found by AOFlagger (PyPI ``aoflagger`` bindings) with flint's ASKAP strategy
  (``flint/data/aoflagger/askap.lua``) or a strategy file of your own, run per baseline
  on time chunks of the data.

The FLAG column is rewritten through a temporary column renamed into place at the end,
so an error leaves the MS's flags as they were.

Examples
--------
>>> from flint.flagging import FlagOptions
>>> FlagOptions(edge_channels=2).edge_channels
2
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from flint.calibrate._msdata import (
    MSLayout,
    ReplaceColumn,
    read_layout,
    read_rows,
    rows_per_chunk,
    write_rows,
)
from flint.errors import FlintInputError, FlintOptionsError
from flint.ms import MS, open_table
from flint.options import BaseOptions

__all__ = ["FlagOptions", "FlagResult", "run_flagging", "default_strategy", "aoflag_baselines", "fill_flagged"]

logger = logging.getLogger(__name__)


def default_strategy() -> Path:
    """Path of flint's packaged AOFlagger strategy for ASKAP-like data."""
    return Path(__file__).resolve().parent / "data" / "aoflagger" / "askap.lua"


class FlagOptions(BaseOptions):
    """What to flag. Flags are only added, never cleared (unless ``clear_existing``)."""

    column: str = "DATA"
    """Data column to inspect (e.g. CORRECTED_DATA after calibration)."""
    aoflagger: bool = True
    """Run AOFlagger to find RFI."""
    strategy: Path | None = None
    """AOFlagger Lua strategy file; default flint's ASKAP strategy (flint/data/aoflagger/askap.lua)."""
    flag_nan_zero: bool = True
    """Flag NaN/inf visibilities and samples whose correlations are all exactly zero."""
    flag_zero_uvw: bool = True
    """Flag cross-correlation rows whose UVW is (0, 0, 0)."""
    antennas: tuple[str, ...] = ()
    """Antennas to flag entirely, by name (e.g. ak05) or index."""
    edge_channels: int = Field(default=0, ge=0)
    """Number of channels to flag at each edge of the band."""
    flatten_spectrum: bool = False
    """Divide each baseline by its median amplitude spectrum (over time) before AOFlagger:
    for raw data with strong bandpass structure (e.g. the calibrator before calibration).
    RFI present in a channel for more than half of the time is then missed."""
    clear_existing: bool = False
    """Discard the existing flags first (default: keep them; new flags are OR-ed in)."""
    max_rows_per_chunk: int | None = Field(default=None, ge=1)
    """Rows read at a time (whole integrations); default sized to ~100 MB of visibilities."""


@dataclass(frozen=True)
class FlagResult:
    """What :func:`run_flagging` did."""

    ms: MS
    flagged_before: float
    """Fraction of visibilities flagged before."""
    flagged_after: float
    """Fraction of visibilities flagged after."""
    strategy: Path | None
    """The AOFlagger strategy used (None if AOFlagger was not run)."""
    n_rows: int


def _load_strategy(path: Path) -> tuple[Any, Any]:
    import aoflagger

    if not path.is_file():
        raise FlintInputError(f"{path}: no such AOFlagger strategy file; give a .lua file to --strategy or leave it out")
    flagger = aoflagger.AOFlagger()
    try:
        strategy = flagger.load_strategy_file(str(path))
    except Exception as exc:  # the bindings raise plain RuntimeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FlintInputError(f"{path}: AOFlagger cannot load this strategy ({first})") from None
    return flagger, strategy


def aoflag_baselines(
    cube: NDArray[np.complexfloating],
    flags: NDArray[np.bool_],
    flagger: Any,
    strategy: Any,
) -> NDArray[np.bool_]:
    """Run an AOFlagger strategy on each baseline.

    Parameters
    ----------
    cube
        ``(baseline, time, chan, corr)`` visibilities (1, 2 or 4 correlations).
    flags
        ``(baseline, time, chan)`` existing flags (excluded from detection and kept; the
        samples under them are given to AOFlagger as :func:`fill_flagged` values).
    flagger, strategy
        An ``aoflagger.AOFlagger`` and a loaded strategy.

    Returns
    -------
    ``(baseline, time, chan)`` flags: the input flags OR what AOFlagger found.
    """
    nbl, nt, nc, ncorr = cube.shape
    if ncorr not in (1, 2, 4):
        raise FlintInputError(f"AOFlagger needs 1, 2 or 4 correlations; got {ncorr}")
    images = flagger.make_image_set(nt, nc, 2 * ncorr)
    mask = flagger.make_flag_mask(nt, nc, False)
    out = flags.copy()
    for b in range(nbl):
        if flags[b].all():
            continue
        data = fill_flagged(cube[b], flags[b])
        for k in range(ncorr):
            images.set_image_buffer(2 * k, np.ascontiguousarray(data[..., k].real.T, dtype=np.float64))
            images.set_image_buffer(2 * k + 1, np.ascontiguousarray(data[..., k].imag.T, dtype=np.float64))
        mask.set_buffer(np.ascontiguousarray(flags[b].T))
        result = strategy.run(images, mask)
        out[b] |= result.get_buffer().T
    return out


def fill_flagged(data: NDArray[np.complexfloating], flags: NDArray[np.bool_]) -> NDArray[np.complex128]:
    """Replace flagged samples by a linear interpolation in time of their unflagged neighbours.

    AOFlagger's high-pass step (a smooth fit of the time-frequency image) is not blind
    to the values under the mask: a flagged cell holding 0 (or the RFI itself) drags the
    fit down around it. On noise-like data that is harmless; on high signal-to-noise data
    (a calibrated calibrator: ~14 Jy over 0.4 Jy noise) the biased fit puts whole channels
    over the threshold. Interpolated values keep the image smooth where it is flagged.

    Parameters
    ----------
    data
        ``(time, chan, corr)`` visibilities of one baseline.
    flags
        ``(time, chan)`` flags.

    Returns
    -------
    ``data`` with flagged samples replaced (the nearest unflagged value in time at the
    ends, 0 in channels with nothing unflagged) and non-finite values set to 0.
    """
    nt = data.shape[0]
    good = ~flags
    idx = np.arange(nt)[:, None]
    prev = np.maximum.accumulate(np.where(good, idx, -1), axis=0)
    nxt = np.minimum.accumulate(np.where(good, idx, nt)[::-1], axis=0)[::-1]
    has_prev, has_next = prev >= 0, nxt < nt
    p = np.clip(prev, 0, nt - 1)
    n = np.clip(nxt, 0, nt - 1)
    vp = np.take_along_axis(data, p[..., None], axis=0)
    vn = np.take_along_axis(data, n[..., None], axis=0)
    span = np.where(has_prev & has_next & (n > p), n - p, 1)
    frac = np.where(has_prev & has_next, (idx - p) / span, np.where(has_prev, 0.0, 1.0))[..., None]
    interp = np.where((has_prev | has_next)[..., None], vp + frac * (vn - vp), 0)
    out = np.where(flags[..., None], interp, data)
    return np.where(np.isfinite(out), out, 0)


def _antenna_ids(layout: MSLayout, antennas: tuple[str, ...]) -> set[int]:
    ids = set()
    lower = [n.lower() for n in layout.antennas]
    for a in antennas:
        if a.isdigit() and int(a) < layout.n_antennas:
            ids.add(int(a))
        elif a.lower() in lower:
            ids.add(lower.index(a.lower()))
        else:
            raise FlintOptionsError(
                f"--antennas: {a!r} is not an antenna of {layout.path} "
                f"(names: {', '.join(layout.antennas)}; or indices 0..{layout.n_antennas - 1})"
            )
    return ids


def _time_chunks(layout: MSLayout, time_col: NDArray[np.float64], max_rows: int) -> list[NDArray[np.int64] | tuple[int, int]]:
    """Row sets holding whole integrations, at most ``max_rows`` rows each (at least one time)."""
    rows_per_time = max(1, layout.n_rows // max(len(layout.times), 1))
    per = max(1, max_rows // rows_per_time)
    chunks: list[NDArray[np.int64] | tuple[int, int]] = []
    for i in range(0, len(layout.times), per):
        t_lo = layout.times[i]
        t_hi = layout.times[min(i + per, len(layout.times)) - 1]
        if layout.time_sorted:
            lo = int(np.searchsorted(time_col, t_lo, side="left"))
            hi = int(np.searchsorted(time_col, t_hi, side="right"))
            chunks.append((lo, hi - lo))
        else:
            chunks.append(np.flatnonzero((time_col >= t_lo) & (time_col <= t_hi)))
    return chunks


def run_flagging(ms: MS | str | os.PathLike[str], options: FlagOptions | None = None) -> FlagResult:
    """Flag bad data and RFI in a Measurement Set (flags are OR-ed with the existing ones).

    Parameters
    ----------
    ms
        The Measurement Set (or its path).
    options
        :class:`FlagOptions`; default: deterministic flags + AOFlagger on ``DATA``.

    Returns
    -------
    FlagResult
        With the flagged fractions before and after.

    Raises
    ------
    FlintMSError
        Missing column or unreadable MS.
    FlintInputError
        Missing or invalid strategy file.
    """
    opts = options or FlagOptions()
    ms = MS.cast(ms)
    layout = read_layout(ms, opts.column, linear=False)
    ant_ids = _antenna_ids(layout, opts.antennas)
    strategy_path = None
    flagger = strategy = None
    if opts.aoflagger:
        strategy_path = opts.strategy or default_strategy()
        flagger, strategy = _load_strategy(strategy_path)
    nc = layout.n_channels
    if 2 * opts.edge_channels >= nc and opts.edge_channels > 0:
        raise FlintOptionsError(f"--edge-channels {opts.edge_channels} would flag all {nc} channels of {ms.path}; give fewer")
    need_data = opts.aoflagger or opts.flag_nan_zero
    before = after = total = 0
    with open_table(ms.path, mode="rw") as tab:
        time_col = tab.getcol("TIME")
        max_rows = opts.max_rows_per_chunk or rows_per_chunk(layout)
        chunks = _time_chunks(layout, time_col, max_rows)
        has_flag_row = "FLAG_ROW" in tab.colnames()
        with ReplaceColumn(tab, "FLAG", like="FLAG") as tmp:
            for rows in chunks:
                cols = ["ANTENNA1", "ANTENNA2", "TIME", "FLAG", "UVW"] + (["FLAG_ROW"] if has_flag_row else [])
                if need_data:
                    cols.append(opts.column)
                d = read_rows(tab, cols, rows)
                old = d["FLAG"]
                before += int(old.sum())
                total += old.size
                new = _flag_chunk(d, opts, layout, ant_ids, flagger, strategy)
                after += int(new.sum())
                write_rows(tab, tmp, new, rows)
    res = FlagResult(
        ms=ms,
        flagged_before=before / max(total, 1),
        flagged_after=after / max(total, 1),
        strategy=strategy_path,
        n_rows=layout.n_rows,
    )
    logger.info("%s: flagged %.2f%% -> %.2f%%", ms.path, 100 * res.flagged_before, 100 * res.flagged_after)
    return res


def _flag_chunk(
    d: dict[str, Any],
    opts: FlagOptions,
    layout: MSLayout,
    ant_ids: set[int],
    flagger: Any,
    strategy: Any,
) -> NDArray[np.bool_]:
    """New ``(row, chan, corr)`` flags of one chunk (without the old ones unless kept)."""
    a1, a2 = d["ANTENNA1"], d["ANTENNA2"]
    old = d["FLAG"]
    nrow, nc, ncorr = old.shape
    sample = np.zeros((nrow, nc), dtype=bool)  # flags all correlations
    if not opts.clear_existing:
        sample |= old.any(axis=-1)
    if "FLAG_ROW" in d:
        sample |= d["FLAG_ROW"][:, None]
    if opts.flag_nan_zero:
        vis = d[opts.column]
        sample |= ~np.all(np.isfinite(vis), axis=-1)
        sample |= np.all(vis == 0, axis=-1)
    if opts.flag_zero_uvw:
        sample |= (np.all(d["UVW"] == 0, axis=-1) & (a1 != a2))[:, None]
    if ant_ids:
        ids = np.array(sorted(ant_ids))
        sample |= (np.isin(a1, ids) | np.isin(a2, ids))[:, None]
    if opts.edge_channels:
        sample[:, : opts.edge_channels] = True
        sample[:, nc - opts.edge_channels :] = True
    if opts.aoflagger:
        sample = _aoflag_rows(d, opts.column, sample, flagger, strategy, opts.flatten_spectrum)
    return np.repeat(sample[:, :, None], ncorr, axis=2)


def _flatten(cube: NDArray[np.complex64], flags: NDArray[np.bool_]) -> NDArray[np.complex64]:
    """Divide each (baseline, channel, corr) by its median unflagged amplitude over time."""
    amp = np.where(flags[..., None], np.nan, np.abs(cube))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        med = np.nanmedian(amp, axis=1, keepdims=True)
    med = np.where(np.isfinite(med) & (med > 0), med, 1.0)
    return (cube / med).astype(np.complex64)


def _aoflag_rows(
    d: dict[str, Any], column: str, sample: NDArray[np.bool_], flagger: Any, strategy: Any, flatten: bool = False
) -> NDArray[np.bool_]:
    """Arrange rows as (baseline, time) images, run AOFlagger, scatter the flags back."""
    a1, a2, t = d["ANTENNA1"], d["ANTENNA2"], d["TIME"]
    cross = a1 != a2
    if not cross.any():
        return sample
    rows = np.flatnonzero(cross)
    bl_key = a1[rows].astype(np.int64) * 100000 + a2[rows]
    bls, bl_idx = np.unique(bl_key, return_inverse=True)
    times, t_idx = np.unique(t[rows], return_inverse=True)
    vis = d[column]
    cube = np.zeros((len(bls), len(times), vis.shape[1], vis.shape[2]), dtype=np.complex64)
    fl = np.ones((len(bls), len(times), vis.shape[1]), dtype=bool)  # missing samples count as flagged
    cube[bl_idx, t_idx] = np.where(np.isfinite(vis[rows]), vis[rows], 0)
    fl[bl_idx, t_idx] = sample[rows]
    if flatten:
        cube = _flatten(cube, fl)
    new = aoflag_baselines(cube, fl, flagger, strategy)
    out = sample.copy()
    out[rows] |= new[bl_idx, t_idx]
    return out
