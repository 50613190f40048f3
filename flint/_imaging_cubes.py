"""WSClean's per-polarisation / per-channel products, channel cubes and channel-block imaging.

Used by :mod:`flint.imaging` (import the public names from there).

WSClean names its files ``<name>[-NNNN|-MFS][-<POL>]-<kind>.fits`` (the polarisation only
when more than one is imaged; the PSF never has one). flint renames them to::

    <base>[.<p>][.chNNNN].<kind>.fits        p = i, q, u, v (left out for Stokes I alone)
    <base>.<p>.<kind>.cube.fits              channel cubes with a per-channel BEAMS table
    <base>.psf.cube.fits

A product's *key* is its flint name without ``<base>.`` and ``.fits`` (``q.image``,
``ch0003.model``, ``i.image.cube``).

Spectral-line cubes are imaged in channel blocks (askap-flint's subtract-cube flow images
channel by channel as separate tasks): :func:`run_channel_block` images MS channels
``[start, end)`` into per-channel images (``-channel-range``, one output channel per MS
channel, each with its own restoring beam), and :func:`assemble_channel_blocks` streams the
blocks' planes into one cube per polarisation and kind (:func:`flint.cubes.assemble_cube`:
one plane in memory at a time).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flint.cubes import assemble_cube
from flint.errors import FlintInputError
from flint.ms import MS, open_table

if TYPE_CHECKING:
    from flint.imaging import WSCleanOptions

__all__ = [
    "WSCleanFile",
    "wsclean_files",
    "product_key",
    "cube_key",
    "collect_products",
    "ms_channel_freqs",
    "check_channel_range",
    "channel_blocks",
    "ChannelBlockResult",
    "CubeResult",
    "run_channel_block",
    "assemble_channel_blocks",
    "run_cube_imaging",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WSCleanFile:
    """One file WSClean writes."""

    path: Path
    kind: str
    """``image``, ``residual``, ``model``, ``psf`` or ``dirty``."""
    pol: str | None
    """Polarisation (upper case); ``None`` for the PSF (shared by all polarisations)."""
    chan: int | None
    """Output channel; ``None`` for the MFS image (or the only one with ``channels_out=1``)."""


def wsclean_files(name: Path, options: WSCleanOptions) -> list[WSCleanFile]:
    """Every file WSClean writes for ``options`` under its ``-name`` ``name``.

    Examples
    --------
    >>> from flint.imaging import WSCleanOptions
    >>> fs = wsclean_files(Path("w/t"), WSCleanOptions(pol="IQUV", channels_out=2, niter=0))
    >>> [f.path.name for f in fs if f.chan == 1]
    ['t-0001-I-image.fits', 't-0001-Q-image.fits', 't-0001-U-image.fits', 't-0001-V-image.fits', 't-0001-psf.fits']
    """
    pols = options.pols
    multi = len(pols) > 1
    kinds = [k for k in ("image", "residual", "model", "psf") if options.niter > 0 or k in ("image", "psf")]
    kinds += ["dirty"] if options.save_dirty else []
    chans: list[int | None] = [None] if options.channels_out == 1 else [None, *range(options.channels_out)]
    out: list[WSCleanFile] = []
    for chan in chans:
        ctag = "" if options.channels_out == 1 else ("-MFS" if chan is None else f"-{chan:04d}")
        for kind in kinds:
            for pol in (None,) if kind == "psf" else pols:
                ptag = f"-{pol}" if multi and pol is not None else ""
                out.append(WSCleanFile(name.parent / f"{name.name}{ctag}{ptag}-{kind}.fits", kind, pol, chan))
    return out


def _pol_tag(pol: str | None, pols: Sequence[str]) -> str:
    return "" if pol is None or tuple(pols) == ("I",) else f"{pol.lower()}."


def product_key(f: WSCleanFile, pols: Sequence[str], chan_offset: int = 0) -> str:
    """flint's key of a WSClean file (its name without ``<base>.`` and ``.fits``).

    Examples
    --------
    >>> product_key(WSCleanFile(Path("t-0002-Q-model.fits"), "model", "Q", 2), ("I", "Q"), chan_offset=4)
    'q.ch0006.model'
    >>> product_key(WSCleanFile(Path("t-MFS-image.fits"), "image", "I", None), ("I",))
    'image'
    """
    ctag = "" if f.chan is None else f"ch{f.chan + chan_offset:04d}."
    return f"{_pol_tag(f.pol, pols)}{ctag}{f.kind}"


def cube_key(pol: str | None, kind: str) -> str:
    """Key of a channel cube: ``i.image.cube`` (always with the polarisation), ``psf.cube``."""
    return f"{pol.lower()}.{kind}.cube" if pol is not None else f"{kind}.cube"


def collect_products(
    name: Path,
    options: WSCleanOptions,
    out: Path,
    base: str,
    where: str | os.PathLike[str],
    argv: Sequence[str] = (),
) -> dict[str, Path]:
    """Check WSClean's files, assemble the cubes asked for, and move the products to ``out``.

    Kept: every MFS (or single) product; per-channel images (unless they went into a
    cube and ``keep_channel_images`` is off); per-channel models (``flint subtract`` predicts
    from them); with ``cube``, ``<base>.<p>.<kind>.cube.fits`` for each of ``cube_products``.
    Cubes are written in the work folder first, so nothing reaches ``out`` unless every
    product was made.

    Returns
    -------
    dict
        Product key -> final path.
    """
    o = options
    files = wsclean_files(name, o)
    cube_kinds = set(o.cube_products) if o.cube else set()
    keep_chan = {"model"} | (set(o.cube_products) | {"image"} if o.keep_channel_images else set()) | ({"image"} if not o.cube else set())
    needed = [f for f in files if f.chan is None or f.kind in keep_chan | cube_kinds]
    _require_made(needed, where, argv)
    staged: dict[str, Path] = {}
    if o.outer_size is not None:
        staged.update(_cut_to_size(name, needed, o, base))
    for f in needed:
        if f.chan is None or f.kind in keep_chan:
            staged[product_key(f, o.pols)] = f.path
    work = name.parent
    for kind in sorted(cube_kinds):
        for pol in (None,) if kind == "psf" else o.pols:
            planes = sorted((f for f in needed if f.kind == kind and f.pol == pol and f.chan is not None), key=lambda f: f.chan or 0)
            if not planes:
                continue
            key = cube_key(pol, kind)
            staged[key] = assemble_cube([f.path for f in planes], work / f"{base}.{key}.fits")
    finals: dict[str, Path] = {}
    for key, src in staged.items():
        dst = out / f"{base}.{key}.fits"
        os.replace(src, dst)
        finals[key] = dst
    return finals


def _cut_to_size(name: Path, files: Sequence[WSCleanFile], o: WSCleanOptions, base: str) -> dict[str, Path]:
    """Cut WSClean's ``outer_size`` images to ``size`` around the centre, in place; return the
    kept whole-field restored image (``[<pol>.]outer.image``), copied before the cut.

    The clean models stay whole: they are the sky model ``flint subtract`` predicts, and the
    sources outside ``size`` belong in it."""
    kept: dict[str, Path] = {}
    first = o.pols[0]
    for f in files:
        if f.chan is None and f.kind == "image" and f.pol == first:
            key = "outer.image" if o.pols == ("I",) else f"{first.lower()}.outer.image"
            kept[key] = name.parent / f"{base}.{key}.fits"
            shutil.copyfile(f.path, kept[key])
        if f.kind != "model":
            cut_fits(f.path, o.size)
    return kept


def cut_fits(path: Path, size: int) -> None:
    """Replace a FITS image by its central ``size`` x ``size`` pixels (CRPIX moved with them).

    The cut keeps WSClean's centre pixel (``N / 2 + 1``, 1-based) at ``size / 2 + 1``: the
    pixel grid, and so every source's pixel position relative to the centre, is unchanged.
    """
    from astropy.io import fits

    with fits.open(path) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data
        ny, nx = data.shape[-2:]
        y0, x0 = (ny - size) // 2, (nx - size) // 2
        cut = np.ascontiguousarray(data[..., y0 : y0 + size, x0 : x0 + size])
    header["CRPIX1"] = header["CRPIX1"] - x0
    header["CRPIX2"] = header["CRPIX2"] - y0
    tmp = path.with_name(path.name + ".cut")
    fits.PrimaryHDU(cut, header).writeto(tmp, overwrite=True)
    os.replace(tmp, path)


def _require_made(files: Sequence[WSCleanFile], where: str | os.PathLike[str], argv: Sequence[str]) -> None:
    missing = [f.path.name for f in files if not f.path.exists()]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise FlintInputError(f"{where}: WSClean exited 0 but did not write {shown}; its options were: {' '.join(argv[1:-1])}")


# --------------------------------------------------------------------------- channels
def ms_channel_freqs(ms: MS | str | os.PathLike[str]) -> np.ndarray:
    """Channel frequencies (Hz) of the MS's first spectral window."""
    with open_table(MS.cast(ms).path, subtable="SPECTRAL_WINDOW") as t:
        return np.asarray(t.getcol("CHAN_FREQ")[0], dtype=float)


def check_channel_range(ms: MS, channel_range: tuple[int, int] | None, flag: str = "--channel-range") -> tuple[int, int]:
    """``channel_range`` (or all channels) checked against the MS; one-line error naming ``flag``."""
    nchan = len(ms_channel_freqs(ms))
    start, end = channel_range if channel_range is not None else (0, nchan)
    if not 0 <= start < end <= nchan:
        raise FlintInputError(
            f"{ms.path}: {flag} {start} {end} is outside its {nchan} channel(s); give 0 <= start < end <= {nchan} (end exclusive)"
        )
    return start, end


def channel_blocks(start: int, end: int, block: int) -> list[tuple[int, int]]:
    """Split channels ``[start, end)`` into blocks of ``block`` channels (the last may be shorter).

    Examples
    --------
    >>> channel_blocks(0, 10, 4)
    [(0, 4), (4, 8), (8, 10)]
    """
    if block < 1:
        raise FlintInputError(f"--channel-block must be >= 1, got {block}")
    return [(s, min(s + block, end)) for s in range(start, end, block)]


@dataclass(frozen=True)
class ChannelBlockResult:
    """Per-channel images of one channel block (input of :func:`assemble_channel_blocks`)."""

    ms: MS
    base: str
    """Product name stem (``SB<sbid>.<field>.beamNN[.roundN]``)."""
    channels: tuple[int, int]
    """MS channels imaged, ``[start, end)``."""
    images: dict[str, tuple[Path, ...]]
    """``<p>.<kind>`` (``psf`` for the PSF) -> per-channel images ``<base>[.<p>].chNNNN.<kind>.fits``,
    in channel order (NNNN = MS channel)."""
    command: tuple[str, ...] = ()
    diverged_retry: str | None = None
    """Why WSClean's first clean of the block diverged, when it was re-run at safer settings."""


@dataclass(frozen=True)
class CubeResult:
    """Channel cubes of one MS (one per polarisation and kind)."""

    ms: MS
    cubes: dict[str, Path]
    """``<p>.<kind>`` (``psf`` for the PSF) -> ``<base>.<p>.<kind>.cube.fits``."""
    channels: tuple[int, int]
    """MS channels in the cubes, ``[start, end)``."""
    channel_images: tuple[Path, ...] = field(default=())
    """Per-channel images kept (``keep_channel_images``)."""


def _block_options(options: WSCleanOptions, start: int, end: int) -> WSCleanOptions:
    if options.join_channels:
        logger.info("channel-block imaging cleans every channel on its own: join_channels is ignored")
    return options.with_options(
        channels_out=end - start,
        channel_range=(start, end),
        join_channels=False,
        fit_spectral_pol=None,
        squared_channel_joining=False,
        update_model=False,  # blocks run side by side on one MS: none may write MODEL_DATA
        cube=False,
    )


def run_channel_block(
    ms: MS | str | os.PathLike[str],
    start: int,
    end: int,
    options: WSCleanOptions | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    round: int | None = None,
    force: bool = False,
) -> ChannelBlockResult:
    """Image MS channels ``[start, end)`` into per-channel images (one task of a cube).

    WSClean runs with ``-channel-range start end`` and ``-channels-out end-start``: every
    channel is imaged, cleaned and restored on its own (its own beam), so blocks assembled
    by :func:`assemble_channel_blocks` equal one run over all channels. ``MODEL_DATA`` is not
    written (blocks of one MS may run at the same time). The kinds kept are
    ``options.cube_products``; no MFS image is kept.

    Raises
    ------
    FlintInputError
        The range is outside the MS (naming ``--channel-range``), or as :func:`flint.imaging.run_imaging`.
    """
    from flint.imaging import WSCleanOptions, prepare_imaging, product_base, wsclean_workdir

    base_opts = options or WSCleanOptions()
    handle = MS.cast(ms)
    if not 0 <= start < end:
        raise FlintInputError(f"--channel-range {start} {end}: give 0 <= start < end (end exclusive)")
    opts = _block_options(base_opts, start, end)
    column, program = prepare_imaging(handle, ms, opts, round, force)
    check_channel_range(handle, (start, end))
    out = (Path(out_dir) if out_dir is not None else handle.path.parent).absolute()
    base = product_base(handle, round)
    with wsclean_workdir(handle, opts, column, program, out, base) as (name, argv, diverged):
        files = [f for f in wsclean_files(name, opts) if f.kind in opts.cube_products]
        if opts.channels_out == 1:  # one channel: WSClean writes no channel index
            files = [WSCleanFile(f.path, f.kind, f.pol, 0) for f in files]
        files = [f for f in files if f.chan is not None]
        _require_made(files, handle.path, argv)
        images: dict[str, list[Path]] = {}
        for f in sorted(files, key=lambda f: f.chan or 0):
            dst = out / f"{base}.{product_key(f, opts.pols, chan_offset=start)}.fits"
            os.replace(f.path, dst)
            images.setdefault(_group(f.pol, f.kind), []).append(dst)
    logger.info("imaged %s channels %d-%d -> %d images", handle.path, start, end - 1, sum(map(len, images.values())))
    images_ = {k: tuple(v) for k, v in images.items()}
    return ChannelBlockResult(ms=handle, base=base, channels=(start, end), images=images_, command=tuple(argv), diverged_retry=diverged)


def _group(pol: str | None, kind: str) -> str:
    return cube_key(pol, kind).removesuffix(".cube")


def assemble_channel_blocks(
    blocks: Sequence[ChannelBlockResult],
    out_dir: str | os.PathLike[str] | None = None,
    keep_channel_images: bool = False,
) -> CubeResult:
    """Stream the blocks' per-channel images into one cube per polarisation and kind.

    The blocks must come from one MS and cover contiguous channels (any order). The cubes go
    to ``out_dir`` (default: beside the channel images). Each cube has
    a ``BEAMS`` table with every channel's restoring beam; one plane is in memory at a time.
    The per-channel images are removed afterwards unless ``keep_channel_images``.

    Raises
    ------
    FlintInputError
        No blocks, blocks of different MSs or products, gaps or overlaps between blocks.
    """
    if not blocks:
        raise FlintInputError("assemble_channel_blocks: no channel blocks given")
    ordered = sorted(blocks, key=lambda b: b.channels[0])
    first = ordered[0]
    for b in ordered[1:]:
        if b.base != first.base or sorted(b.images) != sorted(first.images):
            raise FlintInputError(f"channel blocks of {first.base} ({sorted(first.images)}) and {b.base} ({sorted(b.images)}) cannot form one cube")
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.channels[1] != b.channels[0]:
            what = "overlap" if b.channels[0] < a.channels[1] else f"leave channels {a.channels[1]}-{b.channels[0] - 1} unimaged"
            raise FlintInputError(f"{first.base}: channel blocks {list(a.channels)} and {list(b.channels)} {what}; image contiguous blocks (--channel-block)")
    out = (Path(out_dir) if out_dir is not None else next(iter(first.images.values()))[0].parent).absolute()
    out.mkdir(parents=True, exist_ok=True)
    cubes: dict[str, Path] = {}
    for group in sorted(first.images):
        planes = [p for b in ordered for p in b.images[group]]
        cubes[group] = assemble_cube(planes, out / f"{first.base}.{group}.cube.fits")
    channel_files = [p for b in ordered for ps in b.images.values() for p in ps]
    if not keep_channel_images:
        for p in channel_files:
            p.unlink(missing_ok=True)
    channels = (first.channels[0], ordered[-1].channels[1])
    logger.info("assembled %s channels %d-%d into %d cube(s)", first.base, channels[0], channels[1] - 1, len(cubes))
    return CubeResult(ms=first.ms, cubes=cubes, channels=channels, channel_images=tuple(channel_files) if keep_channel_images else ())


def run_cube_imaging(
    ms: MS | str | os.PathLike[str],
    options: WSCleanOptions | None = None,
    channel_block: int = 8,
    out_dir: str | os.PathLike[str] | None = None,
    round: int | None = None,
    force: bool = False,
) -> CubeResult:
    """Image a channel cube block by block (``channel_block`` channels per WSClean run), then
    assemble it: :func:`run_channel_block` for each block, :func:`assemble_channel_blocks`.

    ``options.channel_range`` limits the channels (default: all); ``keep_channel_images``
    keeps the per-channel images. A flow runs the blocks as separate tasks instead.
    """
    from flint.imaging import WSCleanOptions

    opts = options or WSCleanOptions()
    handle = MS.cast(ms)
    start, end = check_channel_range(handle, opts.channel_range)
    results = [run_channel_block(handle, s, e, opts, out_dir=out_dir, round=round, force=force) for s, e in channel_blocks(start, end, channel_block)]
    return assemble_channel_blocks(results, out_dir=out_dir, keep_channel_images=opts.keep_channel_images)

