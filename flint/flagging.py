"""RFI and bad-data flagging of a Measurement Set.

Two kinds of flags, both only ever *added* to the existing ones (OR) unless
``clear_existing`` is asked for:

* cheap deterministic flags: NaN/inf visibilities, samples whose correlations are all
  exactly zero, rows with zero UVW (cross-correlations), listed antennas, edge channels,
  and ``FLAG_ROW``;
* RFI found by AOFlagger (PyPI ``aoflagger`` bindings) with flint's ASKAP strategy
  (``flint/data/aoflagger/askap.lua``) or a strategy file of your own, run per baseline
  on each baseline's whole time range (or a time window): the data are reordered baseline
  by baseline through a scratch file, so memory stays bounded whatever the MS's size.

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
from collections.abc import Callable
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

__all__ = ["FlagOptions", "FlagResult", "run_flagging", "flag_ms", "default_strategy", "calibrator_strategy", "aoflag_baselines", "fill_flagged"]

logger = logging.getLogger(__name__)


def default_strategy() -> Path:
    """Path of flint's packaged AOFlagger strategy for ASKAP-like data."""
    return Path(__file__).resolve().parent / "data" / "aoflagger" / "askap.lua"


def calibrator_strategy() -> Path:
    """Path of flint's AOFlagger strategy for calibrated residuals of a calibrator (noise plus RFI)."""
    return default_strategy().with_name("calibrator.lua")


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
    subtract_time_median: bool = False
    """Subtract each baseline's median over time (per channel and correlation, real and imaginary
    parts) before AOFlagger: for calibrated residuals whose gain errors are constant in time."""
    clear_existing: bool = False
    """Discard the existing flags first (default: keep them; new flags are OR-ed in)."""
    max_rows_per_chunk: int | None = Field(default=None, ge=1)
    """Rows read at a time (whole integrations); default sized to ~100 MB of visibilities."""
    threads: int = Field(default=0, ge=0)
    """Baselines given to AOFlagger at once (threads); 0: one per CPU core this process may use."""
    time_window_s: float | None = Field(default=None, gt=0.0)
    """Length of time AOFlagger sees of each baseline at once (s); None: the whole observation.
    Windows shorter than ~15 min judge slowly varying and long broadband RFI on too little data."""
    scratch_dir: Path | None = None
    """Folder for the baseline-ordered scratch copy of one window's visibilities (as large as the
    data column of the window; removed at the end); default next to the MS."""


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
    runner = _BaselineFlagger(flagger, strategy, nt, nc, ncorr)
    out = flags.copy()
    for b in range(nbl):
        if not flags[b].all():
            out[b] = runner.run(cube[b], flags[b])
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
    out = np.array(data, dtype=np.complex128)
    cols = np.flatnonzero(flags.any(axis=0))  # only channels with a flag need interpolating
    if len(cols):
        out[:, cols] = _interpolate_in_time(data[:, cols], flags[:, cols])
    out[~np.isfinite(out)] = 0
    return out


def _interpolate_in_time(data: NDArray[np.complexfloating], flags: NDArray[np.bool_]) -> NDArray[np.complex128]:
    """``data`` with flagged samples interpolated in time (see :func:`fill_flagged`), NaN kept."""
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
    return np.asarray(np.where(flags[..., None], interp, data), dtype=np.complex128)


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


def _time_chunks(
    layout: MSLayout, time_col: NDArray[np.float64], max_rows: int, times: NDArray[np.float64] | None = None
) -> list[NDArray[np.int64] | tuple[int, int]]:
    """Row sets holding whole integrations of ``times`` (default all), at most ``max_rows`` rows each (at least one time)."""
    times = layout.times if times is None else times
    rows_per_time = max(1, layout.n_rows // max(len(layout.times), 1))
    per = max(1, max_rows // rows_per_time)
    chunks: list[NDArray[np.int64] | tuple[int, int]] = []
    for i in range(0, len(times), per):
        t_lo = times[i]
        t_hi = times[min(i + per, len(times)) - 1]
        if layout.time_sorted:
            lo = int(np.searchsorted(time_col, t_lo, side="left"))
            hi = int(np.searchsorted(time_col, t_hi, side="right"))
            chunks.append((lo, hi - lo))
        else:
            chunks.append(np.flatnonzero((time_col >= t_lo) & (time_col <= t_hi)))
    return chunks


def _time_windows(times: NDArray[np.float64], window_s: float | None) -> list[NDArray[np.float64]]:
    """Consecutive groups of ``times`` spanning at most ``window_s`` each (all of them for ``None``)."""
    if window_s is None or len(times) == 0:
        return [times]
    idx = np.floor((times - times[0]) / window_s).astype(np.int64)
    return [times[idx == k] for k in np.unique(idx)]


#: a visibility transform for the AOFlagger input: chunk columns -> (visibilities, samples to flag)
Transform = Callable[[dict[str, Any]], tuple[NDArray[np.complexfloating], NDArray[np.bool_]]]


def run_flagging(ms: MS | str | os.PathLike[str], options: FlagOptions | None = None) -> FlagResult:
    """Flag bad data and RFI in a Measurement Set (flags are OR-ed with the existing ones).

    AOFlagger sees each baseline's whole time range (or ``time_window_s``): the data are
    read in time chunks of bounded size, rearranged baseline by baseline into a scratch
    file next to the MS (as large as the data column of one window), flagged one
    baseline at a time, and the flags written back in time chunks.

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
    return flag_ms(ms, options or FlagOptions())


def flag_ms(ms: MS | str | os.PathLike[str], opts: FlagOptions, transform: Transform | None = None) -> FlagResult:
    """:func:`run_flagging` with an optional ``transform`` of what AOFlagger sees.

    ``transform`` gets each chunk's columns (``opts.column`` among them) and returns the
    visibilities to flag (e.g. calibrated residuals) and samples to flag outright.
    """
    ms = MS.cast(ms)
    layout = read_layout(ms, opts.column, linear=False)
    ant_ids = _antenna_ids(layout, opts.antennas)
    strategy_path = None
    if opts.aoflagger:
        strategy_path = opts.strategy or default_strategy()
        _load_strategy(strategy_path)  # a bad file fails before anything is written
    threads = opts.threads or len(os.sched_getaffinity(0))
    nc = layout.n_channels
    if 2 * opts.edge_channels >= nc and opts.edge_channels > 0:
        raise FlintOptionsError(f"--edge-channels {opts.edge_channels} would flag all {nc} channels of {ms.path}; give fewer")
    if opts.aoflagger:
        _check_scratch(opts, ms, layout)
    need_data = opts.aoflagger or opts.flag_nan_zero
    counts = np.zeros(3, dtype=np.int64)  # before, after, total
    with open_table(ms.path, mode="rw") as tab:
        time_col = tab.getcol("TIME")
        max_rows = opts.max_rows_per_chunk or rows_per_chunk(layout)
        cols = ["ANTENNA1", "ANTENNA2", "TIME", "FLAG", "UVW"] + (["FLAG_ROW"] if "FLAG_ROW" in tab.colnames() else [])
        if need_data:
            cols.append(opts.column)
        with ReplaceColumn(tab, "FLAG", like="FLAG") as tmp:
            if not opts.aoflagger:
                for rows in _time_chunks(layout, time_col, max_rows):
                    d = read_rows(tab, cols, rows)
                    new = _sample_flags(d, opts, layout, ant_ids)
                    _count(counts, d["FLAG"], new)
                    write_rows(tab, tmp, np.repeat(new[:, :, None], d["FLAG"].shape[2], axis=2), rows)
            else:
                assert strategy_path is not None
                baselines = _cross_baselines(tab, layout.n_antennas)
                for times in _time_windows(layout.times, opts.time_window_s):
                    chunks = _time_chunks(layout, time_col, max_rows, times)
                    with _Scratch(opts.scratch_dir or ms.path.parent, layout.n_antennas, int(baselines.max()) + 1, len(times), nc, len(layout.corr_types)) as scr:
                        for rows in chunks:
                            d = read_rows(tab, cols, rows)
                            scr.put_chunk(d, _sample_flags(d, opts, layout, ant_ids), opts.column, baselines, times, transform)
                        scr.flag_baselines(strategy_path, opts.flatten_spectrum, opts.subtract_time_median, threads)
                        for rows in chunks:
                            d = read_rows(tab, ["ANTENNA1", "ANTENNA2", "TIME", "FLAG"], rows)
                            new = scr.get_chunk(d, baselines, times)
                            _count(counts, d["FLAG"], new)
                            write_rows(tab, tmp, np.repeat(new[:, :, None], d["FLAG"].shape[2], axis=2), rows)
    before, after, total = (int(c) for c in counts)
    res = FlagResult(
        ms=ms,
        flagged_before=before / max(total, 1),
        flagged_after=after / max(total, 1),
        strategy=strategy_path,
        n_rows=layout.n_rows,
    )
    logger.info("%s: flagged %.2f%% -> %.2f%%", ms.path, 100 * res.flagged_before, 100 * res.flagged_after)
    return res


def _check_scratch(opts: FlagOptions, ms: MS, layout: MSLayout) -> None:
    """The scratch folder exists and has room for one window's visibilities."""
    import shutil

    where = opts.scratch_dir or ms.path.parent
    if not Path(where).is_dir():
        raise FlintOptionsError(f"--scratch-dir {where}: no such folder; create it or give another")
    longest = max(len(t) for t in _time_windows(layout.times, opts.time_window_s))
    need = layout.n_rows * longest // max(len(layout.times), 1) * layout.n_channels * (len(layout.corr_types) * 8 + 2)
    free = shutil.disk_usage(where).free
    if need > free:
        raise FlintOptionsError(
            f"{ms.path}: flagging needs {need / 1e9:.1f} GB of scratch space in {where} ({free / 1e9:.1f} GB free); "
            "give a folder with room to --scratch-dir, or a shorter --time-window-s"
        )


def _count(counts: NDArray[np.int64], old: NDArray[np.bool_], new: NDArray[np.bool_]) -> None:
    """Add flagged-before, flagged-after and total visibilities of a chunk (new flags cover all correlations)."""
    counts += (int(old.sum()), int(new.sum()) * old.shape[2], old.size)


def _cross_baselines(tab: Any, n_antennas: int) -> NDArray[np.int64]:
    """``(n_antennas * n_antennas,)`` map of ``a1 * n + a2`` to a cross-baseline index (-1: none)."""
    key = tab.getcol("ANTENNA1").astype(np.int64) * n_antennas + tab.getcol("ANTENNA2")
    key = np.unique(key[tab.getcol("ANTENNA1") != tab.getcol("ANTENNA2")])
    lut = np.full(n_antennas * n_antennas, -1, dtype=np.int64)
    lut[key] = np.arange(len(key))
    return lut


class _Scratch:
    """Baseline-major scratch files for one time window: visibilities and sample flags.

    ``(baseline, time, chan, corr)`` complex64 and ``(baseline, time, chan)`` bool, written
    and read with ``pwrite``/``pread`` (no memory map: the page cache is the kernel's, and
    the process keeps only one chunk or one baseline in memory).
    """

    def __init__(self, where: Path, n_antennas: int, n_bl: int, n_t: int, n_c: int, n_corr: int) -> None:
        self.where, self.shape, self.n_antennas = Path(where), (n_bl, n_t, n_c, n_corr), n_antennas

    def __enter__(self) -> _Scratch:
        import tempfile

        self.dir = tempfile.TemporaryDirectory(prefix=".flint_flag_", dir=self.where)
        self.vis = os.open(Path(self.dir.name) / "vis", os.O_RDWR | os.O_CREAT, 0o600)
        self.flags = os.open(Path(self.dir.name) / "flags", os.O_RDWR | os.O_CREAT, 0o600)
        self.rows = os.open(Path(self.dir.name) / "rows", os.O_RDWR | os.O_CREAT, 0o600)
        self.row_offsets: list[int] = [0]
        self.chunk_index = 0
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in (self.vis, self.flags, self.rows):
            os.close(fd)
        self.dir.cleanup()

    def _grid(self, d: dict[str, Any], baselines: NDArray[np.int64], times: NDArray[np.float64]) -> tuple[Any, Any, Any]:
        bl = baselines[d["ANTENNA1"].astype(np.int64) * self.n_antennas + d["ANTENNA2"]]
        cross = np.flatnonzero(bl >= 0)
        t_idx = np.searchsorted(times, d["TIME"][cross])
        return cross, bl[cross], t_idx

    def put_chunk(
        self, d: dict[str, Any], sample: NDArray[np.bool_], column: str, baselines: NDArray[np.int64],
        times: NDArray[np.float64], transform: Transform | None,
    ) -> None:
        """Write a time chunk's cross-correlations into the baseline-major files."""
        n_bl, n_t, nc, ncorr = self.shape
        vis = d[column]
        if transform is not None:
            vis, bad = transform(d)
            sample = sample | bad
        os.pwrite(self.rows, np.ascontiguousarray(sample).tobytes(), self.row_offsets[-1])
        self.row_offsets.append(self.row_offsets[-1] + sample.size)
        cross, bl, t_idx = self._grid(d, baselines, times)
        if len(cross) == 0:
            return
        t_lo = int(t_idx.min())
        nt_c = int(t_idx.max()) - t_lo + 1
        cube = np.zeros((n_bl, nt_c, nc, ncorr), dtype=np.complex64)
        fl = np.ones((n_bl, nt_c, nc), dtype=bool)  # missing samples count as flagged
        cube[bl, t_idx - t_lo] = np.where(np.isfinite(vis[cross]), vis[cross], 0)
        fl[bl, t_idx - t_lo] = sample[cross]
        vb, fb = nc * ncorr * 8, nc
        for b in range(n_bl):
            os.pwrite(self.vis, cube[b].tobytes(), (b * n_t + t_lo) * vb)
            os.pwrite(self.flags, fl[b].tobytes(), (b * n_t + t_lo) * fb)

    def flag_baselines(self, strategy_path: Path, flatten: bool, subtract_median: bool = False, threads: int = 1) -> None:
        """Run AOFlagger on each baseline's whole window; its flags replace the scratch flags.

        ``threads`` baselines are flagged at once, each thread with its own strategy (a Lua
        state is not shared between threads).
        """
        import threading
        from concurrent.futures import ThreadPoolExecutor

        n_bl, n_t, nc, ncorr = self.shape
        vb, fb = n_t * nc * ncorr * 8, n_t * nc
        local = threading.local()

        def one(b: int) -> None:
            fl = np.frombuffer(os.pread(self.flags, fb, b * fb), dtype=bool).reshape(n_t, nc)
            if fl.all():
                return
            cube = np.frombuffer(os.pread(self.vis, vb, b * vb), dtype=np.complex64).reshape(n_t, nc, ncorr)
            if flatten:
                cube = _flatten(cube[None], fl[None])[0]
            if subtract_median:
                cube = _subtract_median(cube, fl)
            runner = getattr(local, "runner", None)
            if runner is None:
                runner = local.runner = _BaselineFlagger(*_load_strategy(strategy_path), n_t, nc, ncorr)
            os.pwrite(self.flags, runner.run(cube, fl).tobytes(), b * fb)

        if threads <= 1:
            for b in range(n_bl):
                one(b)
            return
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(one, range(n_bl)):
                pass

    def get_chunk(self, d: dict[str, Any], baselines: NDArray[np.int64], times: NDArray[np.float64]) -> NDArray[np.bool_]:
        """``(row, chan)`` flags of the next time chunk (chunks are read back in the order written)."""
        n_bl, n_t, nc, _ = self.shape
        k = self.chunk_index
        self.chunk_index += 1
        lo, hi = self.row_offsets[k], self.row_offsets[k + 1]
        out = np.frombuffer(os.pread(self.rows, hi - lo, lo), dtype=bool).reshape(-1, nc).copy()
        cross, bl, t_idx = self._grid(d, baselines, times)
        if len(cross) == 0:
            return out
        t_lo = int(t_idx.min())
        nt_c = int(t_idx.max()) - t_lo + 1
        fl = np.empty((n_bl, nt_c, nc), dtype=bool)
        for b in range(n_bl):
            fl[b] = np.frombuffer(os.pread(self.flags, nt_c * nc, (b * n_t + t_lo) * nc), dtype=bool).reshape(nt_c, nc)
        out[cross] |= fl[bl, t_idx - t_lo]
        return out


class _BaselineFlagger:
    """One AOFlagger image set reused for every baseline of a window."""

    def __init__(self, flagger: Any, strategy: Any, n_t: int, n_c: int, n_corr: int) -> None:
        if n_corr not in (1, 2, 4):
            raise FlintInputError(f"AOFlagger needs 1, 2 or 4 correlations; got {n_corr}")
        self.flagger, self.strategy, self.ncorr = flagger, strategy, n_corr  # the flagger must outlive its images
        self.images = flagger.make_image_set(n_t, n_c, 2 * n_corr)
        self.mask = flagger.make_flag_mask(n_t, n_c, False)

    def run(self, cube: NDArray[np.complexfloating], flags: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """``(time, chan)`` flags: ``flags`` OR what AOFlagger finds in ``(time, chan, corr)`` ``cube``."""
        data = fill_flagged(cube, flags)
        for k in range(self.ncorr):
            self.images.set_image_buffer(2 * k, np.ascontiguousarray(data[..., k].real.T, dtype=np.float64))
            self.images.set_image_buffer(2 * k + 1, np.ascontiguousarray(data[..., k].imag.T, dtype=np.float64))
        self.mask.set_buffer(np.ascontiguousarray(flags.T))
        result = self.strategy.run(self.images, self.mask)
        return np.asarray(flags | result.get_buffer().T)


def _sample_flags(d: dict[str, Any], opts: FlagOptions, layout: MSLayout, ant_ids: set[int]) -> NDArray[np.bool_]:
    """Deterministic ``(row, chan)`` flags of one chunk (with the old ones unless cleared)."""
    a1, a2 = d["ANTENNA1"], d["ANTENNA2"]
    old = d["FLAG"]
    nrow, nc, _ = old.shape
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
    return sample


def _subtract_median(cube: NDArray[np.complex64], flags: NDArray[np.bool_]) -> NDArray[np.complex64]:
    """``(time, chan, corr)`` minus its median unflagged value over time (real and imaginary parts)."""
    nt, nc, ncorr = cube.shape
    masked = np.where(flags[..., None], np.nan + 0j, cube).reshape(nt, nc * ncorr)
    med = (_nanmedian_time(masked.real) + 1j * _nanmedian_time(masked.imag)).reshape(nc, ncorr)
    return (cube - np.where(np.isfinite(med), med, 0)).astype(np.complex64)


def _nanmedian_time(x: NDArray[np.floating]) -> NDArray[np.float64]:
    """``np.nanmedian(x, axis=0)`` of a 2-D array, by one sort (NaN sort last); NaN where all are NaN."""
    s = np.sort(x, axis=0)
    n = np.sum(~np.isnan(x), axis=0)
    lo = np.maximum((n - 1) // 2, 0)[None]
    hi = np.maximum(n // 2, 0)[None]
    m = 0.5 * (np.take_along_axis(s, lo, axis=0)[0].astype(np.float64) + np.take_along_axis(s, hi, axis=0)[0])
    return np.where(n > 0, m, np.nan)


def _flatten(cube: NDArray[np.complex64], flags: NDArray[np.bool_]) -> NDArray[np.complex64]:
    """Divide each (baseline, channel, corr) by its median unflagged amplitude over time."""
    amp = np.where(flags[..., None], np.nan, np.abs(cube))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        med = np.nanmedian(amp, axis=1, keepdims=True)
    med = np.where(np.isfinite(med) & (med > 0), med, 1.0)
    return (cube / med).astype(np.complex64)
