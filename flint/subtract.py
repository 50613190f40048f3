"""Continuum subtraction in the visibilities: predict the clean model, subtract it, optionally fit the rest.

:func:`run_subtract` does, on one Measurement Set:

1. **Predict** (with ``model_prefix``): WSClean ``-predict`` (through :mod:`flint.runner`)
   writes the final self-cal round's clean-component model into ``MODEL_DATA`` at every
   channel. WSClean reads model images named as its imaging wrote them, and with
   ``-channels-out N`` it splits the MS's channels into N equal groups, one model image each.
   The models are looked for, next to ``model_prefix``, as

   * ``<prefix>.ch0000.model.fits`` ... (flint names of per-channel models), or
     ``<prefix>-0000-model.fits`` ... (WSClean's own): one model per channel group;
   * else ``<prefix>.model.fits`` (flint's name of the MFS / single model, as
     :func:`flint.imaging.run_imaging` writes it), ``<prefix>-MFS-model.fits`` or
     ``<prefix>-model.fits``: that one image is predicted into every channel, i.e. with a
     flat spectrum. Spectral curvature the clean model does not carry is left in the
     residual; the optional polynomial stage (3) takes it out.

   Without ``model_prefix`` the ``MODEL_DATA`` already in the MS is used (WSClean's imaging
   writes it when it cleans).
2. **Subtract**: ``<data_column> - MODEL_DATA`` into ``output_column`` (default
   ``CONTSUB_DATA``), a chunk of rows at a time.
3. **uv-continuum fit** (``uvcontsub_order``): per row (baseline and integration) and
   correlation, a weighted polynomial in frequency over the line-free channels
   (``fit_channels``, unflagged samples only) is fitted to the residual and subtracted at
   every channel (as CASA's ``uvcontsub`` does). By default (``fit_channels`` ``None`` or
   ``"auto"``) the line-free channels are **found in the data** (:mod:`flint.linefree`): a
   first-pass dirty cube of ``data - MODEL_DATA``, a per-pixel median baseline, robust
   sigma-clipping of the per-channel peak and minimum, dilation by the line width. The fit
   also removes what the continuum model holds of the lines: it was cleaned from the whole
   band, so it carries each line's (and the absorber's) band average, which the subtraction
   leaves as a constant offset in every channel at that position; fitted over the line-free
   channels the polynomial takes the offset out, and the line channels keep the line alone.

The output column is written under a temporary name and renamed when complete; ``DATA`` and
the input column are only read (``MODEL_DATA`` is scratch: the predict overwrites it).
A raw ASKAP MS (instrument frame) is refused (``flint ms preprocess`` it first).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from flint.errors import FlintImageError, FlintInputError, FlintMSError
from flint.linefree import LineFreeOptions, LineFreeResult, format_channel_ranges
from flint.ms import MS, open_table
from flint.options import BaseOptions
from flint.runner import run_command

__all__ = [
    "SubtractOptions",
    "SubtractResult",
    "ModelImages",
    "run_subtract",
    "find_model_images",
    "predict_argv",
    "parse_channel_ranges",
    "fit_continuum",
]

logger = logging.getLogger(__name__)

_TMP_SUFFIX = "_FLINT_TMP"


class SubtractOptions(BaseOptions):
    """How :func:`run_subtract` predicts, subtracts and fits the continuum."""

    model_prefix: Path | None = None
    """Where the clean model images are: ``<prefix>.model.fits`` (flint), ``<prefix>.chNNNN.model.fits``,
    WSClean's ``<prefix>-NNNN-model.fits`` / ``<prefix>-MFS-model.fits``, or a model FITS
    file itself. ``None``: use the MS's ``MODEL_DATA`` as it is."""
    data_column: str = "CORRECTED_DATA"
    """The calibrated visibilities the model is subtracted from (only read)."""
    output_column: str = "CONTSUB_DATA"
    """New column for the continuum-subtracted visibilities."""
    uvcontsub_order: int | None = Field(default=None, ge=0, le=5)
    """Also fit and subtract a polynomial of this order in frequency per row and correlation
    (``None``: no second stage)."""
    fit_channels: str | None = None
    """Line-free channels the polynomial is fitted to: ``auto`` (found in a first-pass cube,
    :mod:`flint.linefree`; also when not given), ``all``, or inclusive ranges ``0~3,8~11``."""
    line_free: LineFreeOptions = Field(default_factory=LineFreeOptions)
    """How ``auto`` finds the line-free channels (``--linefree-*``)."""
    chunk_rows: int = Field(default=10000, ge=1)
    """Rows read and written at a time (bounds memory)."""
    overwrite: bool = False
    """Replace an existing ``output_column``."""
    force: bool = False
    """Work on a raw ASKAP MS (instrument frame) anyway."""
    wsclean_binary: str = "wsclean"
    """WSClean program used for the predict."""
    threads: int | None = Field(default=None, ge=1)
    """Threads WSClean may use for the predict (``None``: all cores)."""
    abs_mem_gb: float | None = Field(default=None, gt=0.0)
    """Memory limit for WSClean's predict (GB, ``-abs-mem``)."""
    reorder: Literal["auto", "yes", "no"] = "auto"
    """Let WSClean reorder the data into temporary files before the predict (``yes``: ``-reorder``,
    ``no``: ``-no-reorder``). ``auto``: only for a per-channel model (``-channels-out``). One model
    image is predicted in a single pass, and reordered WSClean maps its whole temporary model
    file, so its memory grows with the data (as in :attr:`flint.imaging.WSCleanOptions.reorder`)."""
    use_wgridder: bool = True
    """Predict with WSClean's w-gridder (as flint's imaging does)."""

    @model_validator(mode="after")
    def _columns(self) -> SubtractOptions:
        protected = {"DATA", "CORRECTED_DATA", "MODEL_DATA", self.data_column.upper()}
        if self.output_column.upper() in protected:
            raise ValueError(f"output_column {self.output_column} would overwrite an input; give --output-column a new name (e.g. CONTSUB_DATA)")
        if self.fit_channels is not None and self.uvcontsub_order is None:
            raise ValueError(f"--fit-channels {self.fit_channels} needs --uvcontsub-order (e.g. 1)")
        if self.fit_channels is not None and self.fit_channels.strip().lower() not in ("auto", "all"):
            parse_channel_ranges(self.fit_channels, None)
        return self


@dataclass(frozen=True)
class ModelImages:
    """Model images for WSClean ``-predict``: one (flat spectrum) or one per channel group."""

    paths: tuple[Path, ...]
    per_channel: bool
    """Whether ``paths`` are per-channel-group images (``-channels-out len(paths)``)."""


@dataclass(frozen=True)
class SubtractResult:
    """What :func:`run_subtract` did."""

    ms: MS
    """The Measurement Set, its ``column`` set to the new output column."""
    column: str
    models: ModelImages | None
    """The model images predicted (``None``: the MS's ``MODEL_DATA`` was used)."""
    n_rows: int
    uvcontsub_order: int | None
    n_unfit: int
    """Spectra (row x correlation) with too few unflagged line-free channels to fit; left as is."""
    rms_in_jy: float
    """RMS of the real and imaginary parts of the unflagged cross-correlation XX/YY input."""
    rms_out_jy: float
    """The same for the output column."""
    command: tuple[str, ...] = ()
    """The WSClean argv that predicted the model (empty without one)."""
    fit_channels: str | None = None
    """The channels the polynomial was fitted over (ranges; ``None`` without the fit)."""
    line_free: LineFreeResult | None = None
    """What the automatic line-free search found (``None`` when the channels were given)."""


# --------------------------------------------------------------------------- channel ranges
def parse_channel_ranges(text: str, nchan: int | None) -> NDArray[np.bool_] | None:
    """Inclusive channel ranges ``"0~3,8~11"`` (``-`` works too; ``;`` also separates) as a mask.

    With ``nchan=None`` only the syntax is checked (returns ``None``).

    Examples
    --------
    >>> parse_channel_ranges("0~1,4", 6).astype(int).tolist()
    [1, 1, 0, 0, 1, 0]
    """
    ranges: list[tuple[int, int]] = []
    for part in re.split(r"[,;]", text):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*(?:[~-]\s*(\d+))?", part)
        if not m:
            raise FlintInputError(f"--fit-channels {text!r}: {part!r} is not a channel or range; write e.g. 0~3,8~11")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise FlintInputError(f"--fit-channels {text!r}: range {part} runs backwards; write low~high")
        ranges.append((lo, hi))
    if nchan is None:
        return None
    mask = np.zeros(nchan, dtype=bool)
    for lo, hi in ranges:
        if hi >= nchan:
            raise FlintInputError(f"--fit-channels {text!r}: channel {hi} does not exist (the MS has channels 0~{nchan - 1})")
        mask[lo : hi + 1] = True
    return mask


# --------------------------------------------------------------------------- models
def _check_models(paths: list[Path], where: str) -> None:
    from flint.cubes import read_cube_info

    infos = [read_cube_info(p) for p in paths]
    ref = infos[0]
    for inf in infos:
        if inf.is_cube:
            raise FlintImageError(f"{inf.path}: is a cube; WSClean -predict takes one model image per channel group")
        if (inf.axes.ny, inf.axes.nx) != (ref.axes.ny, ref.axes.nx):
            raise FlintImageError(f"{inf.path}: {inf.axes.ny}x{inf.axes.nx} pixels but {ref.path.name} has {ref.axes.ny}x{ref.axes.nx} ({where})")


def find_model_images(prefix: str | os.PathLike[str]) -> ModelImages:
    """The clean-model images for ``prefix`` (see the module docstring for the names tried).

    Raises
    ------
    FlintImageError
        None found (the message lists the names tried), or per-channel models with gaps.
    """
    prefix = Path(prefix)
    if prefix.suffix.lower() == ".fits" and prefix.is_file():
        _check_models([prefix], str(prefix))
        return ModelImages(paths=(prefix,), per_channel=False)
    folder, stem = prefix.parent, prefix.name
    for pattern, rx in (
        (f"{stem}.ch*.model.fits", re.compile(re.escape(stem) + r"\.ch(\d{4})\.model\.fits")),
        (f"{stem}-*-model.fits", re.compile(re.escape(stem) + r"-(\d{4})-model\.fits")),
    ):
        found = {}
        for p in folder.glob(pattern) if folder.is_dir() else []:
            m = rx.fullmatch(p.name)
            if m:
                found[int(m.group(1))] = p
        if found:
            n = max(found) + 1
            missing = sorted(set(range(n)) - set(found))
            if missing:
                raise FlintImageError(f"{folder / pattern}: channel model(s) {missing} missing; WSClean -predict needs all {n}")
            paths = [found[k] for k in range(n)]
            _check_models(paths, pattern)
            return ModelImages(paths=tuple(paths), per_channel=n > 1)
    tried = [folder / f"{stem}.model.fits", folder / f"{stem}-MFS-model.fits", folder / f"{stem}-model.fits"]
    for p in tried:
        if p.is_file():
            _check_models([p], str(p))
            return ModelImages(paths=(p,), per_channel=False)
    raise FlintImageError(
        f"--model-prefix {prefix}: no model image ({stem}.model.fits, {stem}.chNNNN.model.fits, "
        f"{stem}-NNNN-model.fits, {stem}-MFS-model.fits or {stem}-model.fits in {folder}); give the prefix "
        "of the final self-cal round's products, e.g. SB101.FIELD.beam00.round2"
    )


def predict_argv(
    ms: Path,
    models: ModelImages,
    name: Path,
    options: SubtractOptions,
    size: tuple[int, int],
    scale_arcsec: float,
    binary: str | None = None,
) -> list[str]:
    """The WSClean ``-predict`` command (argv list) for models linked as ``<name>[-NNNN]-model.fits``.

    ``size`` (width, height) and ``scale_arcsec`` must be the model images' own.

    Examples
    --------
    >>> import pathlib
    >>> m = ModelImages(paths=(pathlib.Path("a.model.fits"),), per_channel=False)
    >>> predict_argv(pathlib.Path("x.ms"), m, pathlib.Path("/w/model"), SubtractOptions(), (64, 64), 4.0)
    ['wsclean', '-predict', '-name', '/w/model', '-size', '64', '64', '-scale', '4asec', '-use-wgridder', '-no-reorder', '-temp-dir', '/w', 'x.ms']
    """
    argv = [binary or options.wsclean_binary, "-predict", "-name", os.fspath(name)]
    argv += ["-size", str(size[0]), str(size[1]), "-scale", f"{scale_arcsec:.10g}asec"]
    if models.per_channel:
        argv += ["-channels-out", str(len(models.paths))]
    if options.use_wgridder:
        argv += ["-use-wgridder"]
    if options.threads is not None:
        argv += ["-j", str(options.threads)]
    if options.abs_mem_gb is not None:
        argv += ["-abs-mem", f"{options.abs_mem_gb:g}"]
    reorder = options.reorder == "yes" or (options.reorder == "auto" and models.per_channel)
    argv += ["-reorder" if reorder else "-no-reorder"]
    argv += ["-temp-dir", os.fspath(name.parent), os.fspath(ms)]
    return argv


def _phase_centre_deg(ms: Path) -> tuple[float, float]:
    with open_table(ms, subtable="FIELD") as t:
        ra, dec = np.degrees(np.asarray(t.getcol("PHASE_DIR"))[0, 0])
    return float(ra) % 360.0, float(dec)


def _predict(ms: MS, models: ModelImages, opts: SubtractOptions) -> list[str]:
    """Link the models under WSClean's names in a private folder and run ``wsclean -predict``."""
    from astropy.coordinates import SkyCoord

    from flint.cubes import read_cube_info

    info = read_cube_info(models.paths[0])
    ra, dec = _phase_centre_deg(ms.path)
    mra, mdec = float(info.header.get("CRVAL1", np.nan)), float(info.header.get("CRVAL2", np.nan))
    sep = SkyCoord(ra, dec, unit="deg").separation(SkyCoord(mra, mdec, unit="deg")).arcsec
    if not sep < 1.0:
        raise FlintImageError(
            f"{models.paths[0]}: centred on {mra:.5f}, {mdec:.5f} deg but {ms.path} points at {ra:.5f}, {dec:.5f} "
            f"({sep:.0f} arcsec away); give --model-prefix of this beam's images"
        )
    binary = shutil.which(opts.wsclean_binary)
    if binary is None:
        raise FlintInputError(f"WSClean ('{opts.wsclean_binary}') was not found on PATH; install it (apt-get install wsclean) or set --wsclean-binary")
    scale = abs(float(info.header["CDELT2"])) * 3600.0
    work = Path(tempfile.mkdtemp(prefix=f".{ms.path.name}.", suffix=".predict", dir=ms.path.parent.absolute()))
    try:
        name = work / "model"
        for k, src in enumerate(models.paths):
            link = work / (f"model-{k:04d}-model.fits" if models.per_channel else "model-model.fits")
            link.symlink_to(src.absolute())
        argv = predict_argv(ms.path.absolute(), models, name, opts, (info.axes.nx, info.axes.ny), scale, binary=binary)
        run_command(argv, cwd=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return argv


# --------------------------------------------------------------------------- the polynomial fit
def fit_continuum(
    vis: NDArray[np.complexfloating], usable: NDArray[np.bool_], x: NDArray[np.float64], order: int
) -> tuple[NDArray[np.complex128], NDArray[np.bool_]]:
    """Least-squares polynomial of ``order`` in ``x`` per row and correlation; the fit at every channel.

    Parameters
    ----------
    vis
        Visibilities (row, chan, corr).
    usable
        Samples the fit may use (row, chan, corr): unflagged and line-free.
    x
        Channel coordinate (e.g. normalised frequency), length chan.
    order
        Polynomial order.

    Returns
    -------
    model, fitted
        The polynomial evaluated at every channel (row, chan, corr), and which (row, corr)
        spectra had enough samples (``order + 1``) to be fitted (the others get zeros).

    Examples
    --------
    >>> x = np.linspace(-1, 1, 5)
    >>> v = (2 + 3j + (1 - 1j) * x)[None, :, None]
    >>> m, ok = fit_continuum(v, np.ones(v.shape, bool), x, 1)
    >>> bool(np.allclose(m, v)), bool(ok.all())
    (True, True)
    """
    k = order + 1
    a = np.vander(x, k, increasing=True)  # (chan, k)
    w = usable.astype(np.float64)
    y = np.where(usable, vis, 0).astype(np.complex128)
    normal = np.einsum("ck,rcp,cl->rpkl", a, w, a)  # (row, corr, k, k)
    rhs = np.einsum("ck,rcp->rpk", a, w * y)  # (row, corr, k)
    fitted = np.sum(w > 0, axis=1) >= k  # (row, corr)
    normal[~fitted] = np.eye(k)
    rhs[~fitted] = 0
    coef = np.linalg.solve(normal.astype(np.complex128), rhs[..., None])[..., 0]  # (row, corr, k)
    model = np.einsum("ck,rpk->rcp", a, coef)
    return model, fitted


# --------------------------------------------------------------------------- the stage
def run_subtract(ms: MS | str | os.PathLike[str], options: SubtractOptions | None = None) -> SubtractResult:
    """Predict the continuum model, subtract it into a new column, optionally fit the rest.

    Parameters
    ----------
    ms
        The calibrated Measurement Set of one beam (sky frame).
    options
        Model prefix, columns, the optional polynomial stage.

    Returns
    -------
    SubtractResult
        The MS with ``column`` set to the new column, and before/after RMS.

    Raises
    ------
    FlintMSError
        A raw ASKAP MS (without ``force``), a missing input column, or an existing output
        column (without ``overwrite``).
    FlintImageError
        No model images under ``model_prefix``, or models for another pointing.
    FlintCommandError
        WSClean failed (the MS keeps no new column).
    """
    opts = options or SubtractOptions()
    handle = MS.cast(ms)
    with open_table(handle.path) as tab:
        cols = set(tab.colnames())
    if not opts.force:
        from flint.askap import require_sky_frame

        require_sky_frame(handle, "flint subtract")
    if opts.data_column not in cols:
        raise FlintMSError(f"{handle.path}: has no {opts.data_column} column; calibrate it first or choose --data-column (e.g. DATA)")
    if opts.output_column in cols and not opts.overwrite:
        raise FlintMSError(f"{handle.path}: column {opts.output_column} exists already; use --overwrite or another --output-column")
    with open_table(handle.path, subtable="SPECTRAL_WINDOW") as spw:
        freqs = np.asarray(spw.getcol("CHAN_FREQ"))[0].astype(np.float64)
    fit_mask = None
    spec = (opts.fit_channels or "auto").strip().lower()
    if opts.uvcontsub_order is not None and spec == "auto" and len(freqs) < 4:
        raise FlintInputError(f"{handle.path}: --fit-channels auto needs at least 4 channels (the MS has {len(freqs)}); give --fit-channels")
    if opts.uvcontsub_order is not None and spec != "auto":
        given = parse_channel_ranges(spec, len(freqs)) if spec != "all" else None
        fit_mask = given if given is not None else np.ones(len(freqs), dtype=bool)
        if int(fit_mask.sum()) < opts.uvcontsub_order + 1:
            raise FlintInputError(f"--fit-channels {opts.fit_channels}: {int(fit_mask.sum())} channel(s) cannot fit order {opts.uvcontsub_order}; give more line-free channels or lower --uvcontsub-order")
    models = find_model_images(opts.model_prefix) if opts.model_prefix is not None else None
    if models is None and "MODEL_DATA" not in cols:
        raise FlintMSError(f"{handle.path}: has no MODEL_DATA column; give --model-prefix of the clean model images to predict")
    argv: list[str] = []
    if models is not None:
        argv = _predict(handle, models, opts)
        logger.info("%s: predicted %d model image(s) into MODEL_DATA", handle.path, len(models.paths))
    grid = None
    if models is not None:
        from flint.cubes import read_cube_info

        minfo = read_cube_info(models.paths[0])
        grid = (max(64, 2 * ((minfo.axes.nx + 3) // 4)), 2.0 * abs(float(minfo.header["CDELT2"])) * 3600.0)
    n_rows, n_unfit, stats, found, fit_mask = _write_column(handle.path, opts, freqs, fit_mask, grid)
    rms_in = float(np.sqrt(stats[0] / stats[2])) if stats[2] else float("nan")
    rms_out = float(np.sqrt(stats[1] / stats[2])) if stats[2] else float("nan")
    logger.info("%s: %s - MODEL_DATA -> %s (rms %.4g -> %.4g Jy)", handle.path, opts.data_column, opts.output_column, rms_in, rms_out)
    return SubtractResult(
        ms=handle.with_(column=opts.output_column),
        column=opts.output_column,
        models=models,
        n_rows=n_rows,
        uvcontsub_order=opts.uvcontsub_order,
        n_unfit=n_unfit,
        rms_in_jy=rms_in,
        rms_out_jy=rms_out,
        command=tuple(argv),
        fit_channels=None if fit_mask is None else format_channel_ranges(fit_mask),
        line_free=found,
    )


def _write_column(
    path: Path, opts: SubtractOptions, freqs: NDArray[np.float64], fit_mask: NDArray[np.bool_] | None, grid: tuple[int, float] | None
) -> tuple[int, int, list[float], LineFreeResult | None, NDArray[np.bool_] | None]:
    """``data - MODEL_DATA`` (and the polynomial stage) into a temporary column, renamed at the end.

    With the polynomial over ``auto`` channels (``fit_mask`` ``None``): a first pass writes
    ``data - MODEL_DATA``, the line-free channels are found in its dirty cube, and a second
    pass fits and subtracts the polynomial in the temporary column.
    """
    from flint.ms import add_column

    # a fresh name each run: casacore keeps a renamed column's data-manager name, so a fixed
    # temporary name would clash with the column a previous run renamed
    tmp = f"{opts.output_column}{_TMP_SUFFIX}_{uuid.uuid4().hex[:8]}"
    with open_table(path) as tab:
        stale = [c for c in tab.colnames() if c.startswith(opts.output_column + _TMP_SUFFIX)]
    for col in stale:  # left over by an interrupted run
        _drop(path, col)
    add_column(path, tmp, like=opts.data_column, fill="zero")
    x = (freqs - freqs.mean()) / max(float(np.ptp(freqs)) / 2.0, 1.0)
    stats = [0.0, 0.0, 0.0]
    n_unfit = 0
    order = opts.uvcontsub_order
    auto = order is not None and fit_mask is None
    found: LineFreeResult | None = None
    try:
        with open_table(path, mode="rw") as tab:
            nrows = tab.nrows()
            for start in range(0, nrows, opts.chunk_rows):
                n = min(opts.chunk_rows, nrows - start)
                data = tab.getcol(opts.data_column, start, n)
                model = tab.getcol("MODEL_DATA", start, n)
                if model.shape != data.shape:
                    raise FlintMSError(f"{path}: MODEL_DATA has shape {model.shape[1:]} per row but {opts.data_column} {data.shape[1:]}; predict the model again (--model-prefix)")
                out = data - model
                flags = tab.getcol("FLAG", start, n)
                if fit_mask is not None and order is not None:
                    out, bad = _fit_rows(out, flags, fit_mask, x, order)
                    n_unfit += bad
                _accumulate(stats, tab, start, n, data, None if auto else out, flags)
                tab.putcol(tmp, out, start, n)
        if auto and order is not None:
            from flint.linefree import run_line_free

            found = run_line_free(path, tmp, opts.line_free, grid=grid, wsclean_binary=opts.wsclean_binary, threads=opts.threads, force=opts.force)
            fit_mask = found.free
            if int(fit_mask.sum()) < order + 1:
                raise FlintInputError(
                    f"{path}: --fit-channels auto found {int(fit_mask.sum())} line-free channel(s) of {len(fit_mask)} "
                    f"(lines at {format_channel_ranges(found.line) or 'none'}), too few for --uvcontsub-order {order}; give --fit-channels"
                )
            if fit_mask.mean() < 0.25:
                logger.warning("%s: only %d of %d channels found line-free", path, int(fit_mask.sum()), len(fit_mask))
            with open_table(path, mode="rw") as tab:
                for start in range(0, nrows, opts.chunk_rows):
                    n = min(opts.chunk_rows, nrows - start)
                    flags = tab.getcol("FLAG", start, n)
                    out, bad = _fit_rows(tab.getcol(tmp, start, n), flags, fit_mask, x, order)
                    n_unfit += bad
                    _accumulate(stats, tab, start, n, None, out, flags)
                    tab.putcol(tmp, out, start, n)
        with open_table(path, mode="rw") as tab:
            if opts.output_column in tab.colnames():
                tab.removecols([opts.output_column])
            tab.renamecol(tmp, opts.output_column)
    except BaseException:
        _drop(path, tmp)
        raise
    return nrows, n_unfit, stats, found, fit_mask


def _fit_rows(
    out: NDArray[Any], flags: NDArray[np.bool_], fit_mask: NDArray[np.bool_], x: NDArray[np.float64], order: int
) -> tuple[NDArray[Any], int]:
    """Subtract the polynomial fitted over the unflagged ``fit_mask`` channels; also the number of spectra left unfitted."""
    usable = ~flags & fit_mask[None, :, None] & np.isfinite(out)
    cont, fitted = fit_continuum(out, usable, x, order)
    return (out - cont).astype(out.dtype), int((~fitted).sum())


def _accumulate(
    stats: list[float], tab: Any, start: int, n: int, data: NDArray[Any] | None, out: NDArray[Any] | None, flags: NDArray[np.bool_]
) -> None:
    """Sums of squares of the input (``data``) and output (``out``) and the sample count (with the input)."""
    cross = tab.getcol("ANTENNA1", start, n) != tab.getcol("ANTENNA2", start, n)
    ncorr = flags.shape[2]
    pols = [0, ncorr - 1] if ncorr > 1 else [0]  # XX and YY (or the one correlation)
    good = ~flags[cross][:, :, pols]
    for k, arr in enumerate((data, out)):
        if arr is not None:
            sel = arr[cross][:, :, pols][good]
            stats[k] += float(np.sum(sel.real**2 + sel.imag**2))
    if data is not None:
        stats[2] += 2.0 * float(good.sum())


def _drop(path: Path, column: str) -> None:
    try:
        with open_table(path, mode="rw") as tab:
            if column in tab.colnames():
                tab.removecols([column])
    except FlintMSError:  # pragma: no cover - the MS itself went away
        logger.warning("%s: could not remove the temporary column %s", path, column)
