"""RM synthesis on Stokes Q/U cubes with RM-Tools: peak polarised intensity, RM and a component table.

:func:`run_rmsynth` Fourier-transforms the complex polarisation ``P = Q + iU`` over
wavelength squared into a Faraday dispersion function (FDF) per pixel (Brentjens & de Bruyn
2005) with RM-Tools' ``RMutils.util_RM.do_rmsynth_planes`` (PyPI ``RM-Tools``, a NUFFT), and
writes, beside the Q cube unless ``out_prefix`` says otherwise::

    <prefix>.pi.fits      peak |FDF| per pixel (Jy/beam; not bias-corrected)
    <prefix>.rm.fits      Faraday depth of that peak (rad/m^2; 3-point parabolic peak)
    <prefix>.rm.csv       with a catalogue: per component RM, its error, the polarised
                          intensity and fraction (from Q/I, U/I spectra when an I cube is given),
                          the de-rotated angle -- RM-Tools' ``measure_FDF_parms``

Memory stays bounded: the cubes are read in blocks of whole image rows (``block_pixels``
pixels at a time, every channel of those rows), so at most ``nchan x block_pixels`` values of
Q and U and ``nphi x block_pixels`` of the FDF are held. A first pass, one plane at a time,
measures each channel's noise (MAD of Q and U) for the weights and finds blank channels.

Defaults follow RM-Tools' ``do_RMsynth_1D``: Faraday depths up to ``sqrt(3) / max(dlambda^2)``
(at least 10 RMSF widths), sampled at the RMSF FWHM (``3.8 / (lambda^2_max - lambda^2_min)``)
over ``oversample``. For ASKAP's 288 MHz at ~888 MHz (e.g. 36 x 8 MHz channels) the FWHM is
about 45-50 rad/m^2; a narrow band (12 x 1 MHz) gives thousands.
Channels should share one restoring beam (``flint convol --mode total``); a cube whose
``BEAMS`` differ is processed with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from flint.cubes import CubeInfo, read_cube_info
from flint.errors import FlintImageError, FlintInputError
from flint.leakage import read_catalogue, require_same_grid, stokes_plane
from flint.options import BaseOptions

__all__ = ["RMSynthOptions", "RMSynthResult", "run_rmsynth", "faraday_axis", "lambda_sq", "SPEED_OF_LIGHT"]

logger = logging.getLogger(__name__)

SPEED_OF_LIGHT = 299_792_458.0


class RMSynthOptions(BaseOptions):
    """How :func:`run_rmsynth` samples Faraday depth, weights channels and bounds memory."""

    phi_max_radm2: float | None = Field(default=None, gt=0.0)
    """Largest |Faraday depth| searched (rad/m^2); ``None``: sqrt(3)/max channel width in
    lambda^2, at least 10 RMSF FWHMs (RM-Tools' rule)."""
    d_phi_radm2: float | None = Field(default=None, gt=0.0)
    """Faraday-depth step (rad/m^2); ``None``: the RMSF FWHM / ``oversample``."""
    oversample: float = Field(default=10.0, gt=1.0)
    """Samples per RMSF FWHM when ``d_phi_radm2`` is not given."""
    weighting: Literal["variance", "uniform"] = "variance"
    """Channel weights: ``variance`` 1/sigma^2 from each channel's Q/U noise, or ``uniform``."""
    block_pixels: int = Field(default=16384, ge=1)
    """Pixels transformed at once (rounded to whole image rows): bounds memory to about
    ``block_pixels x (2 nchan + 2 nphi) x 4`` bytes."""
    threads: int = Field(default=1, ge=0)
    """Threads of RM-Tools' NUFFT (finufft) per transform (0: all cores). Blocks are small,
    so 1 is usually fastest; more threads than free cores slows it down many times."""
    snr_bias_correct: float = Field(default=5.0, ge=0.0)
    """Components whose peak is at least this S/N get the polarisation-bias correction
    sqrt(P^2 - 2.3 sigma^2) (RM-Tools)."""
    out_prefix: Path | None = None
    """Write ``<out_prefix>.pi.fits`` etc.; ``None``: beside the Q cube, named after it."""
    overwrite: bool = False
    """Replace existing outputs."""


@dataclass(frozen=True)
class RMSynthResult:
    """What :func:`run_rmsynth` wrote and the Faraday-depth sampling it used."""

    pi_map: Path
    """Peak polarised intensity (Jy/beam)."""
    rm_map: Path
    """Faraday depth of the peak (rad/m^2)."""
    table: Path | None
    """Per-component table (CSV) when a catalogue was given."""
    fwhm_rmsf_radm2: float
    """Width of the RM spread function's main lobe."""
    phi_max_radm2: float
    d_phi_radm2: float
    n_channels: int
    """Channels used (blank ones excluded)."""
    lam0_sq_m2: float
    """Reference lambda^2 (weighted mean) the angles refer to."""


def lambda_sq(freqs_hz: NDArray[np.float64]) -> NDArray[np.float64]:
    """Wavelength squared (m^2) of each frequency."""
    return np.asarray((SPEED_OF_LIGHT / np.asarray(freqs_hz, dtype=np.float64)) ** 2)


def faraday_axis(freqs_hz: NDArray[np.float64], channel_width_hz: float, options: RMSynthOptions) -> tuple[NDArray[np.float64], float]:
    """The Faraday-depth samples (rad/m^2) and the analytic RMSF FWHM for these channels.

    Examples
    --------
    >>> f = 748e6 + 8e6 * np.arange(36)
    >>> phi, fwhm = faraday_axis(f, 8e6, RMSynthOptions())
    >>> round(fwhm, 1), float(phi[-1]) >= 10 * fwhm
    (50.3, True)
    """
    from RMutils.util_RM import make_phi_axes

    lam2 = lambda_sq(freqs_hz)
    fwhm = 3.8 / float(np.ptp(lam2)) if lam2.size > 1 else math.inf
    dlam2_max = float(np.max(2.0 * lam2 * abs(channel_width_hz) / np.asarray(freqs_hz)))
    phi_max = options.phi_max_radm2 or max(math.sqrt(3.0) / dlam2_max, 10.0 * fwhm)
    dphi = options.d_phi_radm2 or fwhm / options.oversample
    phi, _ = make_phi_axes(phi_max, dphi)
    return np.asarray(phi, dtype=np.float64), fwhm


@contextlib.contextmanager
def _finufft_threads(threads: int) -> Iterator[None]:
    """Make RM-Tools' ``do_rmsynth_planes`` call finufft with ``nthreads=threads``.

    RM-Tools 1.5 calls ``finufft.nufft1d3`` without a thread count, so finufft takes every
    core; on a shared node that oversubscribes the CPUs (measured here: 0.06 s with one
    thread vs 0.8-1.3 s with two busy cores for a 2304-pixel block). The module's ``finufft``
    name is pointed at a shim that adds ``nthreads`` for the duration of the block.
    """
    import types

    import finufft
    from RMutils import util_RM

    def nufft1d3(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("nthreads", threads)
        return finufft.nufft1d3(*args, **kwargs)

    before = util_RM.finufft
    util_RM.finufft = types.SimpleNamespace(nufft1d3=nufft1d3)
    try:
        yield
    finally:
        util_RM.finufft = before


# --------------------------------------------------------------------------- cube access
class _Rows:
    """Read whole image rows of one Stokes plane of a cube, channel by channel."""

    def __init__(self, info: CubeInfo, pol: int) -> None:
        self.info, self.pol = info, pol
        self._hdul: Any = None

    def __enter__(self) -> _Rows:
        from astropy.io import fits

        self._hdul = fits.open(self.info.path, memmap=False, lazy_load_hdus=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._hdul.close()

    def read(self, chan: int, y0: int, y1: int) -> NDArray[np.float32]:
        at = {k: v for k, v in {"FREQ": chan, "STOKES": self.pol}.items() if k in self.info.axes.names}
        idx = list(self.info.axes.index(str(self.info.path), **at))
        idx[-2] = slice(y0, y1)
        return np.asarray(self._hdul[0].section[tuple(idx)], dtype=np.float32)


def _channel_noise(q: _Rows, u: _Rows, nchan: int, ny: int) -> NDArray[np.float64]:
    """Per channel, the MAD noise of Q and U (NaN: a blank channel). One plane at a time."""
    from flint.images import robust_rms

    sigma = np.full(nchan, np.nan)
    for c in range(nchan):
        qp, up = q.read(c, 0, ny), u.read(c, 0, ny)
        if not (np.isfinite(qp).any() and np.any(qp != 0)) or not (np.isfinite(up).any() and np.any(up != 0)):
            continue
        sigma[c] = 0.5 * (robust_rms(qp) + robust_rms(up))
    return sigma


def _weights(sigma: NDArray[np.float64], weighting: str, where: Path) -> NDArray[np.float64]:
    good = np.isfinite(sigma)
    if not good.any():
        raise FlintImageError(f"{where}: every channel of Q/U is blank (NaN or zero); nothing to transform")
    w = good.astype(np.float64)
    if weighting == "variance":
        if np.all(sigma[good] > 0):
            w = np.where(good, 1.0 / np.where(good, sigma, 1.0) ** 2, 0.0)
        else:
            logger.warning("%s: some channels have zero noise; using uniform weights", where)
    return w


# --------------------------------------------------------------------------- the stage
def run_rmsynth(
    q_cube: str | os.PathLike[str],
    u_cube: str | os.PathLike[str],
    options: RMSynthOptions | None = None,
    i_cube: str | os.PathLike[str] | None = None,
    catalogue: str | os.PathLike[str] | None = None,
) -> RMSynthResult:
    """RM synthesis of Stokes Q/U cubes: peak PI and RM maps, and a component table.

    Parameters
    ----------
    q_cube, u_cube
        Stokes Q and U cubes on the same grid and channels (one IQUV cube may be given for
        both).
    options
        Faraday-depth sampling, weighting, block size and output names.
    i_cube
        Stokes-I cube: with a catalogue, the components' fractional spectra Q/I, U/I are
        transformed, giving their polarised fraction.
    catalogue
        Component catalogue (``ra``/``dec`` deg, e.g. flint find-sources'): a table of each
        component's RM, polarised intensity and fraction.

    Raises
    ------
    FlintImageError
        A cube is missing, of the wrong Stokes, on another grid, has fewer than 2 usable
        channels or no frequency axis.
    FlintInputError
        An output exists (without ``overwrite``) or the catalogue is unreadable.
    """
    from RMutils.util_RM import do_rmsynth_planes

    opts = options or RMSynthOptions()
    qi, ui = read_cube_info(q_cube), read_cube_info(u_cube)
    qpol, upol = stokes_plane(qi, "Q", "Q_CUBE"), stokes_plane(ui, "U", "U_CUBE")
    require_same_grid(qi, ui)
    ii = read_cube_info(i_cube) if i_cube is not None else None
    if ii is not None:
        require_same_grid(qi, ii)
    ipol = stokes_plane(ii, "I", "--i-cube") if ii is not None else 0
    freqs = np.asarray(qi.freqs_hz, dtype=np.float64)
    if qi.nchan < 2 or not np.all(np.isfinite(freqs)):
        raise FlintImageError(f"{qi.path}: has {qi.nchan} channel(s) with frequencies {freqs.tolist()}; RM synthesis needs a cube of 2 or more channels")
    if qi.beams is not None and not qi.beams.is_uniform(rel=1e-3):
        logger.warning("%s: the channels have different beams; convolve to one first (flint convol --mode total)", qi.path)

    prefix = Path(opts.out_prefix) if opts.out_prefix is not None else qi.path.parent / qi.path.name.removesuffix(".fits")
    outs = {"pi": Path(f"{prefix}.pi.fits"), "rm": Path(f"{prefix}.rm.fits")}
    if catalogue is not None:
        outs["csv"] = Path(f"{prefix}.rm.csv")
    for out in outs.values():
        if out.exists() and not opts.overwrite:
            raise FlintInputError(f"{out}: exists already; use --overwrite (or --out-prefix elsewhere)")
    comps = _components(catalogue, qi) if catalogue is not None else None

    ny, nx = qi.axes.ny, qi.axes.nx
    chan_width = float(np.median(np.abs(np.diff(freqs))))
    phi, fwhm = faraday_axis(freqs, chan_width, opts)
    lam2 = lambda_sq(freqs)
    pi_map = np.full((ny, nx), np.nan, dtype=np.float32)
    rm_map = np.full((ny, nx), np.nan, dtype=np.float32)
    rows_per_block = max(1, opts.block_pixels // nx)
    spectra: dict[int, NDArray[np.float64]] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(_finufft_threads(opts.threads))
        q = stack.enter_context(_Rows(qi, qpol))
        u = stack.enter_context(_Rows(ui, upol))
        i_rows = stack.enter_context(_Rows(ii, ipol)) if ii is not None else None
        sigma = _channel_noise(q, u, qi.nchan, ny)
        weights = _weights(sigma, opts.weighting, qi.path)
        used = weights > 0
        if used.sum() < 2:
            raise FlintImageError(f"{qi.path}: only {int(used.sum())} channel(s) are not blank; RM synthesis needs 2 or more")
        lam0 = float(np.sum(weights * lam2) / np.sum(weights))
        chans = np.flatnonzero(used)
        for y0 in range(0, ny, rows_per_block):
            y1 = min(ny, y0 + rows_per_block)
            qb = np.stack([q.read(int(c), y0, y1) for c in chans])  # (nchan_used, rows, nx)
            ub = np.stack([u.read(int(c), y0, y1) for c in chans])
            res = do_rmsynth_planes(qb, ub, lam2[chans], phi, weightArr=weights[chans].copy(), lam0Sq_m2=lam0, nBits=32, log=logger.debug)
            fdf = np.asarray(res.FDFcube).reshape(len(phi), -1)
            peak_phi, peak_amp = _peak(np.abs(fdf), phi)
            rm_map[y0:y1] = peak_phi.reshape(y1 - y0, nx)
            pi_map[y0:y1] = peak_amp.reshape(y1 - y0, nx)
            if comps is not None:
                inside = [k for k, (cy, _) in enumerate(comps["pix"]) if y0 <= cy < y1]
                if inside:
                    ib = np.stack([i_rows.read(int(c), y0, y1) for c in chans]) if i_rows is not None else None
                    for k in inside:
                        cy, cx = comps["pix"][k]
                        ival = ib[:, cy - y0, cx] if ib is not None else np.full(len(chans), np.nan)
                        spectra[k] = np.stack([qb[:, cy - y0, cx], ub[:, cy - y0, cx], ival]).astype(np.float64)
            del qb, ub
    fdf_sigma = float(np.sqrt(np.sum(weights[chans] ** 2 * sigma[chans] ** 2)) / np.sum(weights[chans]))
    _write_map(outs["pi"], pi_map, qi, "JY/BEAM", fwhm, lam0, "peak polarised intensity (RM synthesis)")
    _write_map(outs["rm"], rm_map, qi, "rad/m2", fwhm, lam0, "Faraday depth of the FDF peak")
    table = None
    if comps is not None:
        with _finufft_threads(opts.threads):
            table = _component_table(outs["csv"], comps, spectra, lam2[chans], weights[chans], sigma[chans], phi, fwhm, lam0, fdf_sigma, opts)
    logger.info("%s: RM synthesis of %d channels, RMSF FWHM %.1f rad/m^2, |phi| <= %.0f", qi.path, len(chans), fwhm, phi[-1])
    return RMSynthResult(
        pi_map=outs["pi"],
        rm_map=outs["rm"],
        table=table,
        fwhm_rmsf_radm2=fwhm,
        phi_max_radm2=float(phi[-1]),
        d_phi_radm2=float(phi[1] - phi[0]),
        n_channels=len(chans),
        lam0_sq_m2=lam0,
    )


def _peak(amp: NDArray[Any], phi: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Parabolic (3-point) peak of ``amp[phi, pixel]`` per pixel; NaN where all NaN."""
    from RMutils.util_misc import calc_parabola_vertex

    a = np.where(np.isfinite(amp), amp, -1.0).astype(np.float64)
    blank = np.all(a < 0, axis=0)
    k = np.clip(np.argmax(a[1:-1], axis=0) + 1, 1, len(phi) - 2)
    cols = np.arange(a.shape[1])
    y1, y2, y3 = a[k - 1, cols], a[k, cols], a[k + 1, cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        xv, yv = calc_parabola_vertex(phi[k - 1], y1, phi[k], y2, phi[k + 1], y3)
    flat = ~np.isfinite(xv) | (y2 <= 0)
    xv = np.where(flat, phi[k], xv)
    yv = np.where(flat, y2, yv)
    xv[blank] = np.nan
    yv[blank] = np.nan
    return np.asarray(xv, dtype=np.float64), np.asarray(yv, dtype=np.float64)


def _components(catalogue: str | os.PathLike[str], info: CubeInfo) -> dict[str, Any]:
    tab = read_catalogue(catalogue)
    from astropy.coordinates import SkyCoord

    sky = SkyCoord(np.asarray(tab["ra"], float), np.asarray(tab["dec"], float), unit="deg")
    x, y = info.wcs.world_to_pixel(sky)
    ix, iy = np.round(np.asarray(x)).astype(int), np.round(np.asarray(y)).astype(int)
    on = (ix >= 0) & (ix < info.axes.nx) & (iy >= 0) & (iy < info.axes.ny)
    if not on.any():
        raise FlintInputError(f"{catalogue}: none of its {len(tab)} components lies on {info.path.name}; give the catalogue of this field")
    if not on.all():
        logger.info("%s: %d component(s) off the cube; skipped", catalogue, int((~on).sum()))
    tab = tab[on]
    return {"tab": tab, "pix": list(zip(iy[on].tolist(), ix[on].tolist(), strict=True))}


def _component_table(
    out: Path,
    comps: dict[str, Any],
    spectra: dict[int, NDArray[np.float64]],
    lam2: NDArray[np.float64],
    weights: NDArray[np.float64],
    sigma: NDArray[np.float64],
    phi: NDArray[np.float64],
    fwhm: float,
    lam0: float,
    fdf_sigma: float,
    opts: RMSynthOptions,
) -> Path:
    """Per component: RM-Tools' FDF parameters of P (Jy) and, with I, of the fractional P/I."""
    from astropy.table import Table
    from RMutils.util_RM import do_rmsynth_planes, measure_FDF_parms

    from flint.io import atomic_path

    def fdf_parms(qs: NDArray[np.float64], us: NDArray[np.float64], dfdf: float) -> dict[str, Any]:
        res = do_rmsynth_planes(qs, us, lam2, phi, weightArr=weights.copy(), lam0Sq_m2=lam0, nBits=64, log=logger.debug)
        fdf = np.asarray(res.FDFcube).reshape(len(phi))
        if not np.isfinite(fdf).any():
            return {}
        return dict(measure_FDF_parms(fdf, phi, fwhm, dFDF=dfdf, lamSqArr_m2=lam2, lam0Sq=lam0, snrDoBiasCorrect=opts.snr_bias_correct))

    names = ("component", "ra", "dec", "x", "y", "rm_radm2", "rm_err_radm2", "pi_jy", "pi_err_jy", "snr_pi", "pol_angle0_deg", "i_jy", "polfrac", "polfrac_err")
    rows: dict[str, list[Any]] = {n: [] for n in names}
    tab = comps["tab"]
    for k, (cy, cx) in enumerate(comps["pix"]):
        qs, us, ispec = spectra[k]
        absolute = fdf_parms(qs, us, fdf_sigma)
        has_i = bool(np.all(np.isfinite(ispec)) and np.all(ispec > 0))
        frac: dict[str, Any] = {}
        if has_i:
            frac_sigma = float(np.sqrt(np.sum(weights**2 * (sigma / ispec) ** 2)) / np.sum(weights))
            frac = fdf_parms(qs / ispec, us / ispec, frac_sigma)
        best = frac or absolute  # the fractional spectrum's RM is free of I's spectral index
        rows["component"].append(k)
        rows["ra"].append(float(tab["ra"][k]))
        rows["dec"].append(float(tab["dec"][k]))
        rows["x"].append(cx)
        rows["y"].append(cy)
        rows["rm_radm2"].append(_f(best.get("phiPeakPIfit_rm2")))
        rows["rm_err_radm2"].append(_f(best.get("dPhiPeakPIfit_rm2")))
        rows["pi_jy"].append(_f(absolute.get("ampPeakPIfitEff")))
        rows["pi_err_jy"].append(_f(absolute.get("dAmpPeakPIfit")))
        rows["snr_pi"].append(_f(absolute.get("snrPIfit")))
        rows["pol_angle0_deg"].append(_f(best.get("polAngle0Fit_deg")))
        rows["i_jy"].append(float(np.sum(weights * ispec) / np.sum(weights)) if has_i else float("nan"))
        rows["polfrac"].append(_f(frac.get("ampPeakPIfitEff")))
        rows["polfrac_err"].append(_f(frac.get("dAmpPeakPIfit")))
    with atomic_path(out) as tmp:
        Table(rows).write(tmp, format="ascii.csv")
    return out


def _f(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _write_map(out: Path, data: NDArray[np.float32], info: CubeInfo, unit: str, fwhm: float, lam0: float, what: str) -> None:
    from flint.images import write_image

    hdr = info.wcs.to_header()
    hdr["BUNIT"] = unit
    if info.beams is not None:
        valid = [info.beams.as_tuple(c, 0) for c in range(info.nchan) if info.beams.valid(c, 0)]
        if valid:
            big = max(valid, key=lambda b: b[0] * b[1])
            hdr["BMAJ"], hdr["BMIN"], hdr["BPA"] = big[0] / 3600.0, big[1] / 3600.0, big[2]
    hdr["FWHMRMSF"] = (fwhm, "RMSF main-lobe FWHM (rad/m^2)")
    hdr["LAMSQ0"] = (lam0, "reference lambda^2 (m^2)")
    hdr["HISTORY"] = f"flint rmsynth: {what} of {info.path.name} (RM-Tools)"
    write_image(out, data, hdr)
