"""Automatic line-free channels: where a first-pass cube shows no emission or absorption.

The polynomial uv-continuum fit of :func:`flint.subtract.run_subtract` must be fitted over
channels free of line emission and absorption; a line inside the fit range is partly taken
out as "continuum". Rather than have the observer list them, :func:`find_line_free` finds
them in the data, the way image-based continuum finders do (e.g. the ALMA pipeline's
``findcont``, which sigma-clips per-channel peak and mean spectra of a dirty cube):

1. **A first-pass dirty cube** (:func:`run_line_free`): WSClean ``-niter 0`` of the
   model-subtracted visibilities (``data - MODEL_DATA``, before any polynomial), one image
   per channel, natural weighting by default (the best point-source sensitivity), by default
   over the continuum model's field at half its resolution (twice its pixel size).
2. **Per pixel, a continuum baseline** is removed: a robust polynomial over channels
   (``baseline_order``, default 1: least squares over the channels within 3 robust standard
   deviations of the median, then of that fit). What the continuum model got wrong (a residual
   at a bright source, a spectral-index error) is smooth in frequency and goes with it, and so
   does the **band average of
   the lines that the continuum model holds** (it was cleaned from all channels, so each
   line's band average, and an absorber's, is in it: model-subtracted data show
   ``-band average`` at those positions in every channel, a constant per pixel).
3. **Per channel, statistics over the image**: the peak and the minimum, each over the
   channel's robust noise (1.4826 x the median absolute deviation over pixels), also after
   boxcar smoothing along frequency (``smooth``: broad faint lines reach the threshold
   smoothed when no single channel does).
4. **Robust sigma-clipping over channels**: a channel has a line when its peak (emission) or
   minus its minimum (absorption) exceeds the median over channels by more than ``clip_sigma``
   robust standard deviations (1.4826 x MAD over channels, at least ``min_scale``). Channels
   whose noise is ``noise_factor`` x the median noise (RFI, a bad channel) are left out of
   the fit too; empty channels (flagged) are neither.
5. **Dilation by the line width**: the clip finds the part of a line above the threshold;
   its wings reach further, the more so the fainter the line. Each run of line channels is
   widened to ``1/2 + dilate`` times its FWHM on both sides of its brightest channel (the
   FWHM measured on the run's amplitude profile, at least 2 channels): with ``dilate = 1``,
   +-1.5 FWHM, which holds 99.96 % of a Gaussian line's flux.

The rest are the line-free channels. Fitting the polynomial over them removes, per baseline,
the constant the continuum model left (including ``-band average`` of the lines it holds),
so the line channels come out with the line alone.

The statistics are streamed over strips of rows (all channels of ``strip`` rows at a time),
so memory stays bounded for any cube size. This needs lines in under half of the channels
(the per-pixel median and the clipping over channels are then unbiased).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from flint.cubes import CubeReader, read_cube_info
from flint.errors import FlintImageError, FlintInputError
from flint.options import BaseOptions

__all__ = [
    "LineFreeOptions",
    "LineFreeResult",
    "ChannelStats",
    "format_channel_ranges",
    "channel_statistics",
    "classify_channels",
    "find_line_free",
    "run_line_free",
    "ms_grid",
]

logger = logging.getLogger(__name__)

_MAD = 1.4826  # MAD -> standard deviation for Gaussian noise


class LineFreeOptions(BaseOptions):
    """How :func:`find_line_free` finds line channels in a first-pass cube."""

    clip_sigma: float = Field(default=8.0, gt=0.0)
    """A channel has a line when its peak (or minus its minimum) over its noise is this many robust
    standard deviations above the median over channels. The maximum of an image's noise has an
    exponential (Gumbel) upper tail, not a Gaussian one: 5 would flag one pure-noise channel in
    ~400 statistics (2 per 64-channel beam here), 8 one in ~10^4."""
    min_scale: float = Field(default=0.25, gt=0.0)
    """Floor of that robust standard deviation (in units of the channel noise): keeps the clip sane
    when the per-channel peaks happen to agree closely."""
    baseline_order: int = Field(default=1, ge=0, le=3)
    """Per pixel, a robust polynomial of this order over channels is the continuum baseline removed
    (0: the median; 1 follows a continuum residual's spectral slope across a wide band)."""
    smooth: tuple[int, ...] = (1, 3)
    """Boxcar widths (channels) along frequency at which the statistics are clipped."""
    dilate: float = Field(default=1.0, ge=0.0)
    """Each run of line channels reaches ``1/2 + dilate`` of its estimated FWHM either side of its
    brightest channel (1: +-1.5 FWHM, where a Gaussian line has 99.96 % of its flux)."""
    min_dilate: int = Field(default=1, ge=0)
    """... and by at least this many channels beyond the channels above the clip."""
    noise_factor: float = Field(default=1.5, gt=1.0)
    """Channels whose noise is this times the median channel noise are left out of the fit (RFI)."""
    size: int | None = Field(default=None, ge=16)
    """First-pass cube size in pixels (``None``: the continuum model's at half its resolution, or the MS's primary beam)."""
    scale_arcsec: float | None = Field(default=None, gt=0.0)
    """First-pass cube pixel size in arcsec (``None``: twice the continuum model's, or a quarter of the synthesised beam)."""
    weight: Literal["briggs", "uniform", "natural"] = "natural"
    """Weighting of the first-pass cube (natural: best point-source sensitivity)."""
    robust: float = Field(default=0.0, ge=-2.0, le=2.0)
    """Briggs robustness (with ``weight='briggs'``)."""
    strip_mb: float = Field(default=256.0, gt=0.0)
    """Memory for the statistics: all channels of as many rows as fit in this (MB)."""
    keep_cube: bool = False
    """Keep the first-pass cube (``<ms stem>.linefree.cube.fits`` beside the MS) for inspection."""


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel statistics of a cube (the input of :func:`classify_channels`)."""

    peak: NDArray[np.float64]
    """(n_smooth, nchan): highest pixel over the channel's robust noise, per boxcar width."""
    trough: NDArray[np.float64]
    """(n_smooth, nchan): minus the lowest pixel over the channel's robust noise."""
    noise: NDArray[np.float64]
    """(n_smooth, nchan): robust noise per channel (image units); 0 or NaN for an empty channel."""
    smooth: tuple[int, ...]


@dataclass(frozen=True)
class LineFreeResult:
    """The channels :func:`find_line_free` found."""

    line: NDArray[np.bool_]
    """Channels with a line (after dilation)."""
    free: NDArray[np.bool_]
    """Line-free channels: the polynomial is fitted over these."""
    noisy: NDArray[np.bool_]
    """Channels left out for their noise."""
    empty: NDArray[np.bool_]
    """Channels without data (flagged)."""
    detected: tuple[tuple[int, int], ...]
    """Runs of channels above the clip, before dilation (inclusive ranges)."""
    stats: ChannelStats
    cube: Path | None = None
    """The first-pass cube, when kept."""

    @property
    def fit_channels(self) -> str:
        """The line-free channels as ``--fit-channels`` ranges (``0~9,20~63``)."""
        return format_channel_ranges(self.free)


def format_channel_ranges(mask: NDArray[np.bool_]) -> str:
    """Channels set in ``mask`` as inclusive ranges, ``""`` for none.

    >>> format_channel_ranges(np.array([1, 1, 0, 1, 0, 1, 1, 1], bool))
    '0~1,3,5~7'
    """
    return ",".join(f"{lo}" if lo == hi else f"{lo}~{hi}" for lo, hi in _runs(np.asarray(mask, dtype=bool)))


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Runs of set channels as inclusive ``(first, last)`` pairs."""
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _smoothed(d: NDArray[np.float32], width: int) -> NDArray[np.float32]:
    """Centred boxcar of ``width`` channels along axis 0 (the mean of the channels available at the ends)."""
    n = d.shape[0]
    if width <= 1 or n < 2:
        return d
    c = np.zeros((n + 1, *d.shape[1:]))
    np.cumsum(d, axis=0, dtype=np.float64, out=c[1:])
    out = np.empty(d.shape, dtype=np.float32)
    for k in range(n):  # channel by channel: no whole-strip temporaries beyond the running sum
        lo, hi = max(0, k - width // 2), min(n, k - width // 2 + width)
        out[k] = (c[hi] - c[lo]) / (hi - lo)
    return out


def _baseline(y: NDArray[np.float32], use: NDArray[np.bool_], order: int) -> NDArray[np.float32]:
    """Per pixel (columns of ``y``, channels along axis 0), a robust polynomial of ``order`` over the ``use`` channels.

    Order 0 is the median; a higher order is fitted by least squares twice, each time over the
    channels within 3 robust standard deviations of the previous baseline (the first: the median),
    so that lines (in under half of the channels) do not pull it.
    """
    med = np.median(y[use], axis=0)
    if order == 0:
        return np.broadcast_to(med, y.shape)
    n = y.shape[0]
    x = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    powers = np.stack([x**j for j in range(2 * order + 1)])  # (2k+1, chan)
    k = order + 1
    fit: NDArray[np.float32] = np.broadcast_to(med, y.shape)
    for _ in range(2):
        r = y - fit
        sig = _MAD * np.median(np.abs(r[use]), axis=0)
        w = ((np.abs(r) <= 3.0 * sig) & use[:, None]).astype(np.float32)
        moments = (powers @ w).T.astype(np.float64)  # (pix, 2k+1): sums of w x^j
        rhs = (powers[:k] @ (w * y)).T.astype(np.float64)  # (pix, k)
        normal = np.stack([moments[:, i : i + k] for i in range(k)], axis=1)  # (pix, k, k) Hankel
        singular = np.abs(np.linalg.det(normal)) < 1e-9 * np.maximum(moments[:, 0], 1.0) ** k
        normal[singular] = np.eye(k)
        rhs[singular] = 0.0
        coef = np.linalg.solve(normal, rhs[..., None])[..., 0].astype(np.float32)  # (pix, k)
        fit = np.where(singular[None, :], med, powers[:k].T @ coef.T)
    return fit


def _strips(
    reader: CubeReader, nchan: int, ny: int, rows: int, order: int, step: int = 1
) -> Iterator[tuple[int, NDArray[np.float32], NDArray[np.bool_], NDArray[np.bool_]]]:
    """Per strip of rows: (first row, baseline-subtracted data (chan, rows, nx), empty channels, usable pixels).

    With ``step > 1`` only every ``step``-th row and column (the noise's sample).
    """
    for y0 in range(0, ny, rows):
        y1 = min(ny, y0 + rows)
        first = y0 + (-y0) % step
        if first >= y1:
            continue
        strip = np.stack([reader.rows(first, y1, chan=c)[::step, ::step].astype(np.float32) for c in range(nchan)])  # (chan, rows, nx)
        strip[strip == 0.0] = np.nan  # WSClean writes zeros where a channel has no data
        finite = np.isfinite(strip)
        empty: NDArray[np.bool_] = np.asarray(~finite.any(axis=(1, 2)))
        good: NDArray[np.bool_] = np.asarray(finite[~empty].all(axis=0))
        del finite
        d = np.zeros(strip.shape, dtype=np.float32)
        if good.any() and (~empty).sum() > order + 1:
            y = np.where(empty[:, None], np.float32(0.0), strip[:, good])
            d[:, good] = y - _baseline(y, ~empty, order)
            d[empty] = 0.0
        yield y0, d, empty, good


def channel_statistics(cube: str | os.PathLike[str], options: LineFreeOptions | None = None) -> ChannelStats:
    """Per-channel peak, minimum and noise of ``cube`` after a per-pixel median baseline (steps 2-3 of the module docstring).

    Two passes over strips of rows (every channel of a strip at a time; memory about
    ``strip_mb`` whatever the number of channels): the first measures each channel's noise
    (1.4826 x MAD over a regular grid of pixels: up to 16k per channel, 1M in all), the second the peak and minimum of the data over that noise, per pixel
    divided further by the pixel's own robust scatter over channels where that exceeds 1
    (pixels near a bright continuum source, whose residual changes from channel to channel
    with the calibration, count for less).
    """
    opts = options or LineFreeOptions()
    info = read_cube_info(cube)
    nchan, ny, nx = info.nchan, info.axes.ny, info.axes.nx
    if nchan < 4:
        raise FlintImageError(f"{cube}: {nchan} channel(s); line-free channels need a cube of at least 4")
    widths = tuple(sorted(set(opts.smooth)))
    rows = max(1, int(opts.strip_mb * 2**20 // (4 * nchan * nx * 8)))  # the strip and ~7 strip-sized temporaries
    # pixels sampled for the noise: 1M values in all (4 MB), at most 16k and at least 256 per channel
    per_chan = min(16384.0, max(256.0, 2**20 / nchan))
    step = max(1, math.ceil(math.sqrt(ny * nx / per_chan)))
    samples: list[list[NDArray[np.float32]]] = [[] for _ in widths]
    with CubeReader(info.path, info) as reader:
        for _, d, _, good in _strips(reader, nchan, ny, rows * step, opts.baseline_order, step=step):
            for k, w in enumerate(widths):
                samples[k].append(_smoothed(d, w)[:, good])
    noise = np.zeros((len(widths), nchan))
    for k in range(len(widths)):
        s = np.concatenate(samples[k], axis=1) if samples[k] else np.zeros((nchan, 0), dtype=np.float32)
        if s.shape[1]:
            noise[k] = _MAD * np.median(np.abs(s - np.median(s, axis=1, keepdims=True)), axis=1)
    del samples
    peak = np.full((len(widths), nchan), -np.inf)
    trough = np.full((len(widths), nchan), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(noise > 0, 1.0 / noise, 0.0)
        with CubeReader(info.path, info) as reader:
            for _, d, empty, good in _strips(reader, nchan, ny, rows, opts.baseline_order):
                if not good.any():
                    continue
                for k, w in enumerate(widths):
                    sm = _smoothed(d, w)
                    z = (sm.reshape(nchan, -1) if good.all() else sm[:, good]) * inv[k][:, None].astype(np.float32)  # (chan, pixels) in channel noise
                    zz = z[~empty] if empty.any() else z
                    scatter = _MAD * np.median(np.abs(zz - np.median(zz, axis=0)), axis=0)
                    z /= np.maximum(scatter, 1.0)
                    peak[k] = np.maximum(peak[k], z.max(axis=1))
                    trough[k] = np.minimum(trough[k], z.min(axis=1))
    bad = ~(noise > 0)
    peak[bad] = np.nan
    trough[bad] = np.nan
    return ChannelStats(peak=peak, trough=-trough, noise=noise, smooth=widths)


def _clip(x: NDArray[np.float64], use: NDArray[np.bool_], k: float, floor: float) -> tuple[NDArray[np.bool_], float]:
    """Channels of ``x`` above its median over ``use`` by ``k`` robust standard deviations; and that median."""
    vals = x[use & np.isfinite(x)]
    if len(vals) < 3:
        return np.zeros(len(x), dtype=bool), float("nan")
    centre = float(np.median(vals))
    scale = max(_MAD * float(np.median(np.abs(vals - centre))), floor)
    return np.isfinite(x) & (x > centre + k * scale), centre


def _half_width(a: NDArray[np.float64], lo: int, hi: int) -> tuple[int, float]:
    """The channel of the largest ``a`` in ``[lo, hi]`` and the full width at half that maximum (channels,
    the half-maximum crossings interpolated linearly)."""
    c = lo + int(np.nanargmax(a[lo : hi + 1]))
    half = a[c] / 2.0
    left = c
    while left > 0 and a[left - 1] >= half:
        left -= 1
    right = c
    while right < len(a) - 1 and a[right + 1] >= half:
        right += 1
    x0 = left - ((a[left] - half) / (a[left] - a[left - 1]) if left > 0 else 0.5)
    x1 = right + ((a[right] - half) / (a[right] - a[right + 1]) if right < len(a) - 1 else 0.5)
    return c, float(x1 - x0)


def classify_channels(stats: ChannelStats, options: LineFreeOptions | None = None) -> LineFreeResult:
    """Sigma-clip the per-channel statistics over channels and dilate (steps 4-5 of the module docstring).

    Each run of channels above the clip is widened to ``(1/2 + dilate)`` of its estimated
    FWHM on both sides of its brightest channel (the FWHM: contiguous channels at half that
    channel's amplitude or more, of the peak or minimum times the channel noise above their
    median over channels; at least 2 channels), and by at least ``min_dilate`` channels.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> peak = 4.5 + 0.2 * rng.standard_normal((1, 40)); peak[0, 17:22] = [5.0, 7.0, 12.0, 7.5, 5.2]
    >>> trough = 4.5 + 0.2 * rng.standard_normal((1, 40))
    >>> r = classify_channels(ChannelStats(peak, trough, np.ones((1, 40)), (1,)))
    >>> r.detected
    ((18, 20),)
    >>> r.fit_channels
    '0~15,23~39'
    """
    opts = options or LineFreeOptions()
    nchan = stats.noise.shape[1]
    empty = ~(np.isfinite(stats.noise[0]) & (stats.noise[0] > 0))
    use = ~empty
    med_noise = float(np.median(stats.noise[0][use])) if use.any() else float("nan")
    noisy = use & (stats.noise[0] > opts.noise_factor * med_noise)
    hit = np.zeros(nchan, dtype=bool)
    amp = np.zeros(nchan)
    for k in range(len(stats.smooth)):
        for x in (stats.peak[k], stats.trough[k]):
            h, centre = _clip(x, use & ~noisy, opts.clip_sigma, opts.min_scale)
            hit |= h & use
            if k == 0 and np.isfinite(centre):  # the line's amplitude in image units, for its width
                amp = np.maximum(amp, np.nan_to_num((x - centre) * stats.noise[0]))
    detected = _runs(hit)
    line = hit.copy()
    for lo, hi in detected:
        c, fwhm = _half_width(amp, lo, hi) if amp[lo : hi + 1].max() > 0 else ((lo + hi) // 2, hi - lo + 1)
        reach = (0.5 + opts.dilate) * max(fwhm, 2)
        a = min(lo - opts.min_dilate, math.floor(c - reach))
        b = max(hi + opts.min_dilate, math.ceil(c + reach))
        line[max(0, a) : b + 1] = True
    free = use & ~noisy & ~line
    return LineFreeResult(line=line, free=free, noisy=noisy, empty=empty, detected=tuple(detected), stats=stats)


def find_line_free(cube: str | os.PathLike[str], options: LineFreeOptions | None = None) -> LineFreeResult:
    """Line channels and line-free channels of a (first-pass, continuum-subtracted) cube.

    :func:`channel_statistics` then :func:`classify_channels`; see the module docstring.
    """
    opts = options or LineFreeOptions()
    result = classify_channels(channel_statistics(cube, opts), opts)
    logger.info(
        "%s: line channels found at %s (after dilation %s); %d of %d channels line-free",
        cube, format_channel_ranges(_mask(result.detected, len(result.free))) or "none",
        format_channel_ranges(result.line) or "none", int(result.free.sum()), len(result.free),
    )
    return result


def _mask(runs: tuple[tuple[int, int], ...], n: int) -> NDArray[np.bool_]:
    m = np.zeros(n, dtype=bool)
    for lo, hi in runs:
        m[lo : hi + 1] = True
    return m


# --------------------------------------------------------------------------- the first-pass cube
def ms_grid(ms: str | os.PathLike[str]) -> tuple[int, float]:
    """A default first-pass grid from the MS: a quarter of the synthesised beam per pixel, 1.5x the primary beam's FWHM across (at most 1024 pixels).

    Returns ``(size, scale_arcsec)``.
    """
    from flint._imaging_cubes import ms_channel_freqs
    from flint.ms import open_table

    freqs = ms_channel_freqs(ms)
    with open_table(ms, subtable="ANTENNA") as t:
        dish = float(np.median(t.getcol("DISH_DIAMETER")))
    bmax = 0.0
    with open_table(ms) as t:
        for start in range(0, t.nrows(), 200000):
            uvw = t.getcol("UVW", start, min(200000, t.nrows() - start))
            bmax = max(bmax, float(np.sqrt(uvw[:, 0] ** 2 + uvw[:, 1] ** 2).max(initial=0.0)))
    lam = 299792458.0 / float(freqs.max())
    if bmax <= 0 or dish <= 0:
        raise FlintInputError(f"{ms}: no baselines or dish diameter to size the first-pass cube; give --linefree-size and --linefree-scale-arcsec")
    scale = math.degrees(lam / bmax) * 3600.0 / 4.0
    fov = 1.5 * math.degrees(1.09 * 299792458.0 / float(freqs.min()) / dish) * 3600.0
    size = int(min(1024, max(64, 2 * math.ceil(fov / scale / 2))))
    return size, scale


def run_line_free(
    ms: str | os.PathLike[str],
    column: str,
    options: LineFreeOptions | None = None,
    grid: tuple[int, float] | None = None,
    wsclean_binary: str = "wsclean",
    threads: int | None = None,
    force: bool = False,
) -> LineFreeResult:
    """Image a first-pass dirty cube of ``column`` with WSClean and find its line-free channels.

    Parameters
    ----------
    ms
        The Measurement Set (only read).
    column
        Model-subtracted visibilities (e.g. the not yet renamed output of :func:`flint.subtract.run_subtract`).
    grid
        ``(size, scale_arcsec)`` default of the cube (the continuum model's size and pixel, halved and
        doubled by the caller); ``options.size`` / ``options.scale_arcsec`` win. ``None``: :func:`ms_grid`.
    force
        Image a raw ASKAP MS (instrument frame) anyway.
    """
    from flint._imaging_cubes import ms_channel_freqs
    from flint.imaging import WSCleanOptions, run_cube_imaging
    from flint.ms import MS

    opts = options or LineFreeOptions()
    handle = MS.cast(ms)
    size, scale = grid if grid is not None else ms_grid(handle.path)
    size = opts.size or size
    scale = opts.scale_arcsec or scale
    ws = WSCleanOptions(
        size=size, scale_arcsec=scale, weight=opts.weight, robust=opts.robust, niter=0, auto_mask=None, auto_threshold=None,
        data_column=column, cube_products=("image",), update_model=False, binary=wsclean_binary, threads=threads,
    )
    nchan = len(ms_channel_freqs(handle))
    work = Path(tempfile.mkdtemp(prefix=f".{handle.path.name}.", suffix=".linefree", dir=handle.path.parent.absolute()))
    try:
        res = run_cube_imaging(handle.with_(column=column), ws, channel_block=nchan, out_dir=work, force=force)
        cube = next(p for k, p in res.cubes.items() if k.endswith("image"))
        result = find_line_free(cube, opts)
        kept = None
        if opts.keep_cube:
            kept = handle.path.parent / f"{handle.path.name.removesuffix('.ms')}.linefree.cube.fits"
            os.replace(cube, kept)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dataclasses.replace(result, cube=kept)
