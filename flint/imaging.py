"""Imaging and deconvolution with WSClean.

:class:`WSCleanOptions` is turned into a WSClean argv by :func:`wsclean_argv` (plain
data, unit-tested); :func:`run_imaging` runs it -- the ``wsclean`` binary on PATH, or
inside an apptainer/singularity image when ``WSCleanOptions.container`` is set
(:func:`container_argv` adds the bind mounts) -- in a private work folder, then
renames the products to flint's names::

    SB<sbid>.<field>.beam<NN>[.round<N>].{image,residual,model,psf}.fits
    ...[.<p>].chNNNN.{image,model}.fits     per channel (channels_out > 1; p = i, q, u, v
                                             when more than Stokes I is imaged)
    ....<p>.{image,residual}.cube.fits       channel cubes with a BEAMS table (cube=True)

Several polarisations (``pol="IQUV"``) give ``....<p>.image.fits`` per Stokes. Channel-block
imaging for spectral-line cubes (:func:`run_channel_block`, :func:`assemble_channel_blocks`)
lives in :mod:`flint._imaging_cubes`.

WSClean writes the clean-component model into the MS's ``MODEL_DATA`` column (needed by
self-calibration). With ``niter=0`` only the dirty image and the PSF are made, and the MS
is not written to. A failing WSClean leaves no product under a final name. A clean that
diverges (``WSCleanOptions.divergence_limit``) is re-run once at safer settings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from flint._imaging_divergence import (
    WSCleanDivergedError,
    describe_settings,
    find_divergence,
    safer_options,
    what_to_change,
)
from flint.errors import FlintInputError, FlintMSError, FlintOptionsError
from flint.ms import MS, calibrated_column, open_table, require_columns
from flint.naming import parse_name, product_name
from flint.options import BaseOptions
from flint.runner import run_command

__all__ = [
    "WSCleanOptions",
    "ImagingResult",
    "run_imaging",
    "imaging_column",
    "wsclean_argv",
    "container_argv",
    "bind_dirs",
    "product_base",
    "find_wsclean",
    "PRODUCT_KINDS",
    "parse_pols",
    "prepare_imaging",
    "wsclean_workdir",
    "WSCleanDivergedError",
    "ChannelBlockResult",
    "CubeResult",
    "run_channel_block",
    "assemble_channel_blocks",
    "run_cube_imaging",
    "channel_blocks",
]

logger = logging.getLogger(__name__)

#: WSClean product kinds flint keeps, in the order of :class:`ImagingResult`
PRODUCT_KINDS = ("image", "residual", "model", "psf")

_INSTALL_HINT = (
    "install WSClean so that '{binary}' is on PATH (Debian/Ubuntu: apt-get install wsclean), "
    "or run it from a container image with --container wsclean.sif (apptainer or singularity on PATH)"
)


class WSCleanOptions(BaseOptions):
    """How WSClean images and deconvolves one beam. Defaults suit the simulated data."""

    size: int = Field(default=1536, ge=16, le=65536)
    """Image width and height in pixels."""
    outer_size: int | None = Field(default=None, ge=16, le=65536)
    """Pixels (width and height) WSClean images and cleans, larger than ``size``; the products
    are then cut to ``size`` around the centre (the clean models stay whole: the sky model
    ``flint subtract`` predicts), and the restored image of the whole field is
    kept as ``<base>.outer.image.fits`` (the next round's clean mask is made from it). A bright
    source outside ``size`` but inside ``outer_size`` is cleaned and in ``MODEL_DATA``, instead
    of leaving its sidelobes in the image and self-cal's data unmodelled. Briggs and uniform
    weights are gridded on the uv cells of a ``size`` image (``-super-weight outer_size / size``),
    so the weighting and the beam stay those of the kept image. ``None``: image ``size``."""
    scale_arcsec: float = Field(default=4.0, gt=0.0)
    """Pixel size (arcsec); about a third of the restoring beam's minor axis."""
    weight: Literal["briggs", "uniform", "natural"] = "briggs"
    """Visibility weighting scheme."""
    robust: float = Field(default=0.0, ge=-2.0, le=2.0)
    """Briggs robustness (only used with ``weight='briggs'``)."""
    niter: int = Field(default=20000, ge=0)
    """Maximum number of minor clean iterations (0: dirty image and PSF only; the MS is
    then not written to)."""
    nmiter: int = Field(default=10, ge=0)
    """Maximum number of major iterations (0: no limit)."""
    threshold_jy: float | None = Field(default=None, ge=0.0)
    """Absolute clean stopping threshold (Jy); ``None``: use ``auto_threshold`` only."""
    auto_threshold: float | None = Field(default=3.0, gt=0.0)
    """Stop cleaning at this many times the (robustly estimated) residual noise."""
    auto_mask: float | None = Field(default=5.0, gt=0.0)
    """Build a clean mask from components found above this many sigma, then clean within
    it down to ``auto_threshold``."""
    local_rms: bool = False
    """Use a spatially varying noise map for the auto threshold/mask."""
    gain: float = Field(default=0.1, gt=0.0, le=1.0)
    """Minor-cycle loop gain."""
    mgain: float = Field(default=0.8, gt=0.0, le=1.0)
    """Major-cycle gain: fraction of the peak removed before a new major iteration."""
    multiscale: bool = False
    """Multi-scale clean (for extended emission)."""
    multiscale_scales: tuple[int, ...] | None = None
    """Multi-scale clean scales in pixels (``None``: WSClean chooses)."""
    multiscale_scale_bias: float | None = Field(default=None, gt=0.0, le=1.0)
    """Multi-scale bias towards small scales (``None``: WSClean's default 0.6)."""
    channels_out: int = Field(default=1, ge=1)
    """Number of output sub-band images; the MFS image is the product when > 1."""
    join_channels: bool = False
    """Find clean components on the MFS image and subtract them from every sub-band."""
    fit_spectral_pol: int | None = Field(default=None, ge=1)
    """Fit a polynomial of this many terms over frequency to each component (with
    ``join_channels``)."""
    pol: str = "I"
    """Polarisation(s) to image: Stokes ``I``, ``Q``, ``U``, ``V`` (e.g. ``IQUV``, ``QU``) or
    ``XX``/``YY``/``RR``/``LL``, optionally comma-separated. With more than one (or one other
    than I) the products are named ``...<base>.<p>.<kind>.fits`` (``p`` = ``i``, ``q``, ...)."""
    join_polarizations: bool = False
    """Find clean components in the sum of squares of the polarisations and subtract them from
    each (WSClean ``-join-polarizations``; two or four polarisations)."""
    squared_channel_joining: bool = False
    """With ``join_channels``, find peaks in the sum of squares over channels (for Q/U with a
    non-zero rotation measure; WSClean ``-squared-channel-joining``)."""
    channel_range: tuple[int, int] | None = None
    """Image only MS channels ``start`` to ``end`` (end exclusive; WSClean ``-channel-range``)."""
    cube: bool = False
    """Stream the per-channel images into cubes ``<base>.<p>.<kind>.cube.fits`` with a
    per-channel ``BEAMS`` table (needs ``channels_out >= 2``)."""
    cube_products: tuple[Literal["image", "residual", "model", "psf", "dirty"], ...] = ("image", "residual")
    """Kinds assembled into cubes with ``cube`` (those WSClean makes; the PSF cube has no
    polarisation tag: ``<base>.psf.cube.fits``)."""
    keep_channel_images: bool = False
    """Keep the per-channel ``<base>[.<p>].chNNNN.<kind>.fits`` images a cube was assembled
    from (per-channel models are always kept, for ``flint subtract``)."""
    data_column: str | None = None
    """Visibility column to image; ``None``: the MS handle's column, or for a path (as
    WSClean itself does) ``CORRECTED_DATA`` when the MS has it, else ``DATA``."""
    fits_mask: Path | None = None
    """A FITS clean mask (same grid as the image)."""
    minuv_l: float | None = Field(default=None, ge=0.0)
    """Exclude baselines shorter than this (wavelengths)."""
    taper_gaussian_arcsec: float | None = Field(default=None, gt=0.0)
    """Gaussian uv-taper (arcsec)."""
    padding: float = Field(default=1.2, ge=1.0)
    """Padding factor of the gridded image (limits aliasing)."""
    use_wgridder: bool = True
    """Use the fast and accurate w-gridder (ducc)."""
    update_model: bool = True
    """Write the predicted model visibilities into ``MODEL_DATA`` (needed for self-cal;
    ignored with ``niter=0``, which has no model)."""
    save_dirty: bool = False
    """Keep the dirty image as ``...dirty.fits`` as well."""
    threads: int | None = Field(default=None, ge=1)
    """Threads WSClean may use (``None``: all cores)."""
    abs_mem_gb: float | None = Field(default=None, gt=0.0)
    """Memory limit for WSClean (GB)."""
    temp_dir: Path | None = None
    """Folder for WSClean's reordered temporary files (``None``: the private work folder)."""
    reorder: Literal["auto", "yes", "no"] = "auto"
    """Reorder the data into WSClean's temporary files first (``yes``: ``-reorder``, ``no``:
    ``-no-reorder``). ``auto``: not for a single image (``channels_out`` 1, one polarisation),
    which reads the data once per major iteration anyway; reordered, WSClean maps the whole model column
    of its temporary file into memory, so its resident memory grows with the data (measured
    at 288 channels, 1536 px, ``-abs-mem 0.5``: 625 MB at 120 integrations, 1144 MB at 480;
    not reordered, 490 MB at 480 in the same time, the images equal to 1e-4 of the noise).
    Reordered for channel and polarisation imaging, which read each part of the data once per
    output image."""
    divergence_limit: float | None = Field(default=4.0, ge=0.0)
    """Judge the clean diverged when a later major iteration starts from a peak residual (or a
    residual noise, for deconvolvers that print no peak; the noise only with ``local_rms``, whose
    printed peaks are the highest signal-to-noise pixels, not comparable) more than this many
    times the first one's, when WSClean prints a non-finite flux, or when the model image has non-finite pixels
    (WSClean 3.1 has no ``-divergence-limit``; this is flint's). A diverged run is discarded and
    WSClean re-run once from scratch with ``gain`` halved, ``mgain`` at most 0.5, ``niter`` and
    ``nmiter`` doubled (so the lower gains can clean as deep) and, with ``multiscale``, a
    ``multiscale_scale_bias`` of at least 0.8 (favouring small scales); if that diverges too,
    imaging fails. ``None`` or 0: no check."""
    extra_args: tuple[str, ...] = ()
    """Further WSClean arguments appended verbatim, e.g. ``("-parallel-deconvolution", "512")``."""
    binary: str = "wsclean"
    """Name (or path) of the WSClean program."""
    container: Path | None = None
    """Apptainer/singularity image to run WSClean in (``None``: run ``binary`` from PATH)."""
    container_runtime: Literal["apptainer", "singularity"] = "apptainer"
    """Container runtime used when ``container`` is set."""

    @model_validator(mode="after")
    def _consistent(self) -> WSCleanOptions:
        if self.fit_spectral_pol is not None and not self.join_channels:
            raise ValueError("fit_spectral_pol needs join_channels (--join-channels)")
        if self.join_channels and self.channels_out < 2:
            raise ValueError("join_channels needs channels_out >= 2 (--channels-out 2)")
        if self.multiscale_scales is not None and not self.multiscale:
            raise ValueError("multiscale_scales needs multiscale (--multiscale)")
        if any(s < 0 for s in self.multiscale_scales or ()):
            raise ValueError("multiscale_scales must be >= 0 pixels")
        pols = parse_pols(self.pol)
        if self.join_polarizations and len(pols) not in (2, 4):
            raise ValueError(f"join_polarizations needs two or four polarisations, --pol {self.pol} has {len(pols)} (--pol IQUV)")
        if self.squared_channel_joining and not self.join_channels:
            raise ValueError("squared_channel_joining needs join_channels (--join-channels)")
        if self.channel_range is not None and not 0 <= self.channel_range[0] < self.channel_range[1]:
            raise ValueError(f"channel_range must be 0 <= start < end (end exclusive), got {self.channel_range} (--channel-range)")
        if self.cube and self.channels_out < 2:
            raise ValueError("cube needs channels_out >= 2 (--channels-out N)")
        if self.outer_size is not None and (self.outer_size <= self.size or (self.outer_size - self.size) % 2):
            raise ValueError(
                f"outer_size {self.outer_size} must exceed size {self.size} by an even number of pixels (--outer-size {self.size + 512})"
            )
        if self.divergence_limit is not None and 0 < self.divergence_limit < 1:
            raise ValueError(f"divergence_limit must be >= 1 (or 0: no check), got {self.divergence_limit:g} (--divergence-limit 4)")
        return self

    @property
    def pols(self) -> tuple[str, ...]:
        """The polarisations imaged, upper case (``("I", "Q", "U", "V")``)."""
        return parse_pols(self.pol)


#: polarisations flint names products for (WSClean writes XY/YX as real + imaginary images)
_POLS = ("I", "Q", "U", "V", "XX", "YY", "RR", "LL")


def parse_pols(pol: str) -> tuple[str, ...]:
    """The polarisations of a WSClean ``-pol`` value, upper case, in the order given.

    Examples
    --------
    >>> parse_pols("iquv"), parse_pols("XX,YY")
    (('I', 'Q', 'U', 'V'), ('XX', 'YY'))
    """
    text = pol.replace(",", "").replace(" ", "").upper()
    out: list[str] = []
    while text:
        two = text[:2]
        tok = two if two in _POLS else text[:1]
        if tok not in _POLS:
            raise ValueError(f"pol {pol!r}: flint images {', '.join(_POLS)} (e.g. --pol IQUV)")
        out.append(tok)
        text = text[len(tok) :]
    if not out or len(set(out)) != len(out):
        raise ValueError(f"pol {pol!r}: give each polarisation once (e.g. --pol IQUV)")
    return tuple(out)


@dataclass(frozen=True)
class ImagingResult:
    """Products of one WSClean run (all FITS, named by :func:`product_base`)."""

    ms: MS
    """The imaged Measurement Set (its ``MODEL_DATA`` holds the clean model when
    ``update_model`` and ``niter > 0``)."""
    image: Path
    """The restored image (with ``niter=0``: the dirty image)."""
    residual: Path | None
    """The residual image (``None`` with ``niter=0``: nothing was cleaned)."""
    model: Path | None
    """The clean-component model image (``None`` with ``niter=0``)."""
    psf: Path
    dirty: Path | None = None
    channel_images: tuple[Path, ...] = ()
    """Sub-band restored images when ``channels_out > 1``."""
    command: tuple[str, ...] = ()
    """The argv that was run."""
    files: dict[str, Path] = field(default_factory=dict)
    """Every product by key: its name without ``<base>.`` and ``.fits`` (``image``,
    ``q.image``, ``ch0003.model``, ``i.image.cube``, ...)."""
    diverged_retry: str | None = None
    """Why WSClean's first clean was judged diverged, when the products come from its retry at
    safer settings (see ``WSCleanOptions.divergence_limit``; ``command`` is the retry's);
    ``None``: no retry."""

    @property
    def outer_image(self) -> Path | None:
        """The restored image of the whole ``outer_size`` field (``None``: WSClean imaged ``size``);
        the next round's clean mask is made from it."""
        return next((p for k, p in sorted(self.files.items()) if k.endswith("outer.image")), None)

    @property
    def products(self) -> dict[str, Path]:
        """Key -> path of every product written (kind -> path for a plain Stokes-I image)."""
        if self.files:
            return dict(self.files)
        out = {k: getattr(self, k) for k in PRODUCT_KINDS if getattr(self, k) is not None}
        if self.dirty is not None:
            out["dirty"] = self.dirty
        return out

    @property
    def cubes(self) -> dict[str, Path]:
        """``<p>.<kind>`` (``psf`` for the PSF) -> channel cube ``<base>.<p>.<kind>.cube.fits``."""
        return {k.removesuffix(".cube"): v for k, v in self.files.items() if k.endswith(".cube")}

    @property
    def channel_models(self) -> tuple[Path, ...]:
        """Per-channel clean models ``<base>[.<p>].chNNNN.model.fits`` (``channels_out > 1``)."""
        return tuple(v for k, v in sorted(self.files.items()) if ".ch" in f".{k}" and k.endswith(".model"))


# --------------------------------------------------------------------------- argv as data
def _num(x: float) -> str:
    return f"{x:g}"


def wsclean_argv(
    ms_paths: Sequence[str | os.PathLike[str]],
    options: WSCleanOptions,
    name: str | os.PathLike[str],
    data_column: str = "DATA",
    binary: str | None = None,
) -> list[str]:
    """The WSClean command line for ``options`` (a list, never a shell string).

    Parameters
    ----------
    ms_paths
        Measurement Sets to image together.
    options
        The imaging options.
    name
        WSClean's ``-name`` prefix (folder and file stem of the products).
    data_column
        Column to image when ``options.data_column`` is ``None``.
    binary
        Program to call (default ``options.binary``).

    Examples
    --------
    >>> wsclean_argv(["a.ms"], WSCleanOptions(size=512, niter=0), "out/x")[:7]
    ['wsclean', '-name', 'out/x', '-size', '512', '512', '-scale']
    """
    o = options
    argv: list[str] = [binary or o.binary, "-name", os.fspath(name)]
    n = o.outer_size or o.size
    argv += ["-size", str(n), str(n), "-scale", f"{_num(o.scale_arcsec)}asec"]
    argv += ["-weight", o.weight] + ([_num(o.robust)] if o.weight == "briggs" else [])
    if o.outer_size is not None and o.weight != "natural":
        # the weights are gridded on cells of 1 / (imaged field): keep the cell of a `size` image,
        # so the weighting (and the beam) are those of the kept image, not of the wider field
        argv += ["-super-weight", f"{o.outer_size / o.size:.6g}"]
    argv += ["-niter", str(o.niter), "-nmiter", str(o.nmiter)]
    if o.niter == 0:  # no deconvolution: WSClean writes the PSF only when asked
        argv += ["-make-psf"]
    argv += ["-gain", _num(o.gain), "-mgain", _num(o.mgain)]
    if o.threshold_jy is not None:
        argv += ["-threshold", _num(o.threshold_jy)]
    if o.auto_threshold is not None:
        argv += ["-auto-threshold", _num(o.auto_threshold)]
    if o.auto_mask is not None:
        argv += ["-auto-mask", _num(o.auto_mask)]
    if o.local_rms:
        argv += ["-local-rms"]
    if o.multiscale:
        argv += ["-multiscale"]
        if o.multiscale_scales is not None:
            argv += ["-multiscale-scales", ",".join(str(s) for s in o.multiscale_scales)]
        if o.multiscale_scale_bias is not None:
            argv += ["-multiscale-scale-bias", _num(o.multiscale_scale_bias)]
    if o.channels_out > 1:
        argv += ["-channels-out", str(o.channels_out)]
    if o.join_channels:
        argv += ["-join-channels"]
    if o.fit_spectral_pol is not None:
        argv += ["-fit-spectral-pol", str(o.fit_spectral_pol)]
    if o.squared_channel_joining:
        argv += ["-squared-channel-joining"]
    if o.channel_range is not None:
        argv += ["-channel-range", str(o.channel_range[0]), str(o.channel_range[1])]
    argv += ["-pol", o.pol]
    if o.join_polarizations:
        argv += ["-join-polarizations"]
    argv += ["-data-column", o.data_column or data_column]
    if o.fits_mask is not None:
        argv += ["-fits-mask", os.fspath(o.fits_mask)]
    if o.minuv_l is not None:
        argv += ["-minuv-l", _num(o.minuv_l)]
    if o.taper_gaussian_arcsec is not None:
        argv += ["-taper-gaussian", f"{_num(o.taper_gaussian_arcsec)}asec"]
    argv += ["-padding", _num(o.padding)]
    if o.use_wgridder:
        argv += ["-use-wgridder"]
    update = o.update_model and o.niter > 0  # niter 0 has no model: leave the MS alone
    argv += ["-update-model-required" if update else "-no-update-model-required"]
    if not o.save_dirty:
        argv += ["-no-dirty"]
    if o.threads is not None:
        argv += ["-j", str(o.threads)]
    if o.abs_mem_gb is not None:
        argv += ["-abs-mem", _num(o.abs_mem_gb)]
    if o.temp_dir is not None:
        argv += ["-temp-dir", os.fspath(o.temp_dir)]
    reorder = o.reorder == "yes" or (o.reorder == "auto" and (o.channels_out > 1 or len(parse_pols(o.pol)) > 1))
    argv += ["-reorder" if reorder else "-no-reorder"]
    argv += list(o.extra_args)
    argv += [os.fspath(p) for p in ms_paths]
    return argv


def bind_dirs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Folders a container must see for ``paths``: absolute, deduplicated, outermost only.

    A file contributes its folder; a Measurement Set (a directory) its parent, so that
    WSClean's temporary files beside it are reachable too.

    Examples
    --------
    >>> [str(p) for p in bind_dirs(["/data/a.ms", "/data/sub/b.fits", "/scratch/tmp/"])]
    ['/data', '/scratch/tmp']
    """
    dirs: set[Path] = set()
    for p in paths:
        path = Path(os.path.abspath(os.fspath(p)))
        is_dir_like = path.is_dir() and path.suffix.lower() != ".ms" or os.fspath(p).endswith("/")
        dirs.add(path if is_dir_like else path.parent)
    ordered = sorted(dirs, key=lambda d: (len(d.parts), str(d)))
    keep: list[Path] = []
    for d in ordered:
        if not any(d == k or k in d.parents for k in keep):
            keep.append(d)
    return sorted(keep)


def container_argv(
    argv: Sequence[str],
    container: str | os.PathLike[str],
    binds: Sequence[str | os.PathLike[str]],
    runtime: str = "apptainer",
) -> list[str]:
    """Wrap a command to run inside an apptainer/singularity image.

    Examples
    --------
    >>> container_argv(["wsclean", "-name", "/d/x", "/d/a.ms"], "/img/ws.sif", ["/d"])
    ['apptainer', 'exec', '--bind', '/d', '/img/ws.sif', 'wsclean', '-name', '/d/x', '/d/a.ms']
    """
    bind_list = [os.fspath(b) for b in binds]
    out = [runtime, "exec"]
    if bind_list:
        out += ["--bind", ",".join(bind_list)]
    return out + [os.fspath(container)] + list(argv)


def find_wsclean(options: WSCleanOptions) -> str:
    """The program to run: the WSClean binary, or the container runtime.

    Raises
    ------
    FlintInputError
        Explaining both ways of providing WSClean when neither is available.
    """
    hint = _INSTALL_HINT.format(binary=options.binary)
    if options.container is not None:
        if not Path(options.container).is_file():
            raise FlintInputError(
                f"WSClean container image {options.container} does not exist; give the path "
                f"of a .sif image with --container, or leave it out to run '{options.binary}' from PATH"
            )
        runtime = shutil.which(options.container_runtime)
        if runtime is None:
            raise FlintInputError(
                f"'{options.container_runtime}' (needed for --container {options.container}) was "
                f"not found on PATH; install it, or {hint}"
            )
        return runtime
    found = shutil.which(options.binary)
    if found is None:
        raise FlintInputError(f"WSClean ('{options.binary}') was not found on PATH; {hint}")
    return found


# --------------------------------------------------------------------------- naming
def product_base(ms: MS, round: int | None = None) -> str:
    """File-name stem of the products of ``ms`` (without kind and ``.fits``).

    A flint-named MS (``SB101.SIM_FIELD.beam00.ms``) gives
    ``SB101.SIM_FIELD.beam00[.round<N>]``; any other MS its own stem.

    Examples
    --------
    >>> product_base(MS("/d/SB101.SIM_FIELD.beam00.ms"), round=0)
    'SB101.SIM_FIELD.beam00.round0'
    """
    try:
        parts = parse_name(ms.path)
    except FlintInputError:
        parts = None
    if parts is not None:
        beam = parts.beam if parts.beam is not None else ms.beam
        return product_name(parts.sbid, parts.field, beam=beam, round=round)
    stem = ms.path.name.removesuffix(".ms").removesuffix(".MS")
    return f"{stem}.round{round}" if round is not None else stem


# --------------------------------------------------------------------------- input checks
def _require_sky_frame(ms: MS) -> None:
    """Refuse a raw (instrument-frame) ASKAP MS: it must be preprocessed first."""
    from flint.askap import require_sky_frame

    require_sky_frame(ms, "flint image")


def _require_uv_coverage(ms: MS, chunk: int = 100_000) -> None:
    """Raise unless some cross-correlation row has a non-zero UVW (reads until the first one)."""
    with open_table(ms.path) as tab:
        n = tab.nrows()
        if n == 0:
            raise FlintMSError(f"{ms.path}: the Measurement Set has no rows; there is nothing to image")
        for start in range(0, n, chunk):
            nrow = min(chunk, n - start)
            cross = tab.getcol("ANTENNA1", start, nrow) != tab.getcol("ANTENNA2", start, nrow)
            if np.any(tab.getcol("UVW", start, nrow)[cross] != 0):
                return
    raise FlintMSError(
        f"{ms.path}: UVW is zero on every cross-correlation row, so the baselines are unknown and "
        "WSClean cannot image it; re-create the MS or recompute its UVW"
    )


# --------------------------------------------------------------------------- run
def imaging_column(ms: MS | str | os.PathLike[str], options: WSCleanOptions | None = None) -> str:
    """The column :func:`run_imaging` images: ``options.data_column``, else an MS handle's
    ``column``, else (a path) ``CORRECTED_DATA`` when the MS has it, else ``DATA``."""
    if options is not None and options.data_column:
        return options.data_column
    if isinstance(ms, MS):
        return ms.column
    return calibrated_column(ms)


def run_imaging(
    ms: MS | str | os.PathLike[str],
    options: WSCleanOptions | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    round: int | None = None,
    force: bool = False,
) -> ImagingResult:
    """Image one Measurement Set with WSClean and name the products flint's way.

    Parameters
    ----------
    ms
        The Measurement Set: a handle (its ``column`` is imaged) or a path
        (``CORRECTED_DATA`` when present, else ``DATA``), unless ``options.data_column``
        names the column.
    options
        Imaging options (default :class:`WSCleanOptions`).
    out_dir
        Folder for the products (default: beside the MS).
    round
        Self-calibration round, recorded in the product names.
    force
        Image even a raw ASKAP MS (instrument frame, not preprocessed).

    Returns
    -------
    ImagingResult
        The image, residual, model and psf FITS files, and the MS.

    Raises
    ------
    FlintInputError
        WSClean is not available, the MS lacks the data column, has no uv coverage
        (all UVW zero) or is a raw ASKAP MS (unless ``force``).
    FlintCommandError
        WSClean failed; carries its exit status and last output lines. Or its clean
        diverged, and again at the retry's safer settings (``WSCleanDivergedError``, one
        line). No product is left under a final name.
    """
    from flint._imaging_cubes import check_channel_range, collect_products

    opts = options or WSCleanOptions()
    handle = MS.cast(ms)
    column, program = prepare_imaging(handle, ms, opts, round, force)
    if opts.channel_range is not None:
        check_channel_range(handle, opts.channel_range)
    if opts.update_model and opts.niter > 0:  # as the argv: niter 0 leaves the MS alone
        ensure_model_column(handle, column)
    out = (Path(out_dir) if out_dir is not None else handle.path.parent).absolute()
    base = product_base(handle, round)
    with wsclean_workdir(handle, opts, column, program, out, base) as (name, argv, diverged):
        finals = collect_products(name, opts, out, base, handle.path, argv)
    first = "" if opts.pols == ("I",) else f"{opts.pols[0].lower()}."
    logger.info("imaged %s -> %s", handle.path, finals[f"{first}image"])
    channel_images = tuple(finals[k] for k in sorted(finals) if k.startswith(f"{first}ch") and k.endswith(".image"))
    return ImagingResult(
        ms=handle,
        image=finals[f"{first}image"],
        residual=finals.get(f"{first}residual"),
        model=finals.get(f"{first}model"),
        psf=finals["psf"],
        dirty=finals.get(f"{first}dirty"),
        channel_images=channel_images,
        command=tuple(argv),
        files=finals,
        diverged_retry=diverged,
    )


def ensure_model_column(handle: MS, column: str) -> None:
    """Add ``MODEL_DATA`` (zeros, shaped and tiled like ``DATA``, else like the imaged
    ``column``) when the MS has none, before WSClean writes the model into it.

    WSClean 3.1 adds the column itself when it first predicts, and at 288 channels x 480
    integrations with ``-abs-mem 0.5`` it crashed there (SIGSEGV while "Adding model data
    column"); a run killed in that step can leave the MS unreadable. Here python-casacore adds
    it in ~64 MB chunks; WSClean then only overwrites it.
    """
    from flint.ms import add_column

    with open_table(handle.path) as tab:
        cols = set(tab.colnames())
    if "MODEL_DATA" not in cols:
        add_column(handle, "MODEL_DATA", like="DATA" if "DATA" in cols else column, fill="zero")
        logger.info("%s: added MODEL_DATA (zeros) for WSClean's model", handle.path)


def prepare_imaging(
    handle: MS, ms: MS | str | os.PathLike[str], opts: WSCleanOptions, round: int | None, force: bool
) -> tuple[str, str]:
    """Check the inputs of a WSClean run; return the column to image and the program to run."""
    if round is not None and round < 0:
        raise FlintOptionsError(f"--round must be >= 0, got {round}")
    column = imaging_column(ms, opts)
    require_columns(handle, column)
    if opts.fits_mask is not None and not Path(opts.fits_mask).is_file():
        raise FlintInputError(f"--fits-mask {opts.fits_mask} does not exist; give an existing FITS mask")
    if opts.fits_mask is not None:
        _require_mask_size(Path(opts.fits_mask), opts.outer_size or opts.size, opts.outer_size is not None)
    if not force:
        _require_sky_frame(handle)
    _require_uv_coverage(handle)
    return column, find_wsclean(opts)


def _require_mask_size(mask: Path, n: int, outer: bool) -> None:
    """A FITS mask must have the pixels WSClean images (it refuses another size late, after reordering)."""
    from astropy.io import fits

    try:
        header = fits.getheader(mask)
    except OSError as exc:
        raise FlintInputError(f"--fits-mask {mask}: not a readable FITS file ({exc})") from exc
    shape = (header.get("NAXIS1"), header.get("NAXIS2"))
    if shape != (n, n):
        what = f"--outer-size {n}" if outer else f"--size {n}"
        hint = "; make it from the previous round's .outer.image.fits" if outer else ""
        raise FlintInputError(f"--fits-mask {mask} is {shape[0]} x {shape[1]} pixels but WSClean images {n} x {n} ({what}){hint}")


@contextlib.contextmanager
def wsclean_workdir(
    handle: MS, opts: WSCleanOptions, column: str, program: str, out: Path, base: str
) -> Iterator[tuple[Path, list[str], str | None]]:
    """Run WSClean in a private folder inside ``out``; yield its ``-name``, the argv and why
    a first run diverged (``None``: it did not).

    A diverged run (see ``WSCleanOptions.divergence_limit``) is discarded with its folder and
    WSClean re-run once from scratch at safer settings (a WARNING names them); if that diverges
    too, :class:`~flint._imaging_divergence.WSCleanDivergedError` is raised. The caller moves the
    products it keeps out of the folder; the folder (and anything left in it) is removed on
    exit, also when WSClean or the caller fails.
    """
    out.mkdir(parents=True, exist_ok=True)
    run_opts, diverged = opts, None
    while True:
        work = Path(tempfile.mkdtemp(prefix=f".{base}.", suffix=".wsclean", dir=out))
        try:
            name = work / base
            ws_opts = run_opts if opts.temp_dir is not None else run_opts.with_options(temp_dir=work)
            if opts.container is None:
                argv = wsclean_argv([handle.path.absolute()], ws_opts, name, column, binary=program)
            else:
                inner = wsclean_argv([handle.path.absolute()], ws_opts, name, column)
                binds = [handle.path.absolute(), work]
                binds += [Path(p).absolute() for p in (ws_opts.temp_dir, opts.fits_mask) if p is not None]
                argv = container_argv(inner, Path(opts.container).absolute(), bind_dirs(binds), runtime=program)
            reason = find_divergence(run_command(argv, cwd=work), name, run_opts)
            if reason is None:
                yield name, argv, diverged
                return
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if diverged is not None:
            raise WSCleanDivergedError(
                argv,
                f"{handle.path}: WSClean's clean diverged: {diverged}; re-run at {describe_settings(run_opts)} "
                f"it diverged again: {reason}; {what_to_change(opts)}",
            )
        diverged, run_opts = reason, safer_options(run_opts)
        logger.warning("%s: WSClean's clean diverged: %s; imaging again from scratch at %s", handle.path, reason, describe_settings(run_opts))


# channel cubes and channel-block imaging (flint._imaging_cubes keeps this module small)
from flint._imaging_cubes import (  # noqa: E402
    ChannelBlockResult,
    CubeResult,
    assemble_channel_blocks,
    channel_blocks,
    run_channel_block,
    run_cube_imaging,
)
