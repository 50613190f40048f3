"""Polarisation leakage at catalogued components: V/I (and Q/I, U/I), a table and a figure.

An unpolarised source seen in Stokes V (or Q, U) shows the instrument's leakage of Stokes I
into that product. :func:`run_leakage` measures, at the position of each component of a
source-finding catalogue (flint's ``<image>.comp.csv``: ``ra``, ``dec`` in deg,
``peak_flux``, ``int_flux``, ``local_rms``, ``snr``), the ratio ``V/I`` (and ``Q/I``,
``U/I`` when those images are given), channel by channel for cubes, and writes

* ``<out>.leakage.csv``: one row per component and channel (position, distance from the
  beam centre, I, V, V/I, the local V noise, ...);
* ``<out>.leakage.png``: leakage against distance from the beam centre.

It follows askap-flint's V-stage check (``flint.leakage`` there): only isolated
(``isolation_deg``), compact (``int_flux / peak_flux`` within ``int_peak_ratio``) and
bright (``snr >= min_snr``) components are used; the polarised value is read in a small
box around the component and the noise in a larger one. Here the I and V values are read
at the same pixel (the brightest Stokes-I pixel of the search box), so the ratio keeps its
sign. Cubes (``FREQ`` and/or ``STOKES`` planes, e.g. one ``.iquv.`` cube) are read one
plane at a time with :mod:`flint.cubes`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from flint.cubes import STOKES_NAMES, CubeInfo, CubeReader, read_cube_info
from flint.errors import FlintImageError, FlintInputError
from flint.io import atomic_path
from flint.options import BaseOptions

__all__ = [
    "LeakageOptions",
    "LeakageResult",
    "run_leakage",
    "read_catalogue",
    "stokes_plane",
    "require_same_grid",
    "beam_centre_deg",
    "STOKES_CODES",
]

logger = logging.getLogger(__name__)

#: Stokes name -> FITS code
STOKES_CODES = {"I": 1, "Q": 2, "U": 3, "V": 4}


class LeakageOptions(BaseOptions):
    """How :func:`run_leakage` picks components and measures leakage (askap-flint's defaults)."""

    isolation_deg: float = Field(default=0.0155, ge=0.0)
    """Use only components with no other component within this distance (deg)."""
    int_peak_ratio: tuple[float, float] = (0.8, 1.2)
    """Use only compact components: int_flux / peak_flux within this range."""
    min_snr: float = Field(default=40.0, ge=0.0)
    """Use only components with snr (peak_flux / local_rms) at least this."""
    search_box: int = Field(default=3, ge=1)
    """Side (pixels; even sizes grow by one) of the box around a component's pixel where the brightest Stokes-I
    pixel is taken; I and V/Q/U are read at that pixel."""
    noise_box: int = Field(default=31, ge=3)
    """Side (pixels) of the box in which the local V/Q/U noise (MAD x 1.4826) is measured."""
    beam_centre: tuple[float, float] | None = None
    """Beam centre (RA, Dec in deg) distances are measured from; ``None``: the image's
    reference position (CRVAL1/CRVAL2, the phase centre WSClean writes)."""
    out_prefix: Path | None = None
    """Write ``<out_prefix>.leakage.csv`` / ``.leakage.png``; ``None``: beside the V image,
    named after it."""
    overwrite: bool = False
    """Replace existing outputs."""


@dataclass(frozen=True)
class LeakageResult:
    """What :func:`run_leakage` measured and wrote."""

    table: Path
    """The per-component (and per-channel) CSV table."""
    figure: Path
    """Leakage against distance from the beam centre (PNG)."""
    n_catalogue: int
    """Components in the catalogue."""
    n_used: int
    """Components that passed the filters and lie on the image."""
    n_channels: int
    """Channels measured (1 for a 2-D image)."""
    median_abs: dict[str, float]
    """Median |X/I| over components and channels, per Stokes measured (``"V"``, ``"Q"``, ``"U"``)."""
    median: dict[str, float]
    """Median X/I (signed): the on-average leakage."""


# --------------------------------------------------------------------------- helpers shared with flint.polarisation
def stokes_plane(info: CubeInfo, name: str, where: str) -> int:
    """Index on the STOKES axis of Stokes ``name`` in ``info``.

    A file without a STOKES axis is taken to be what the caller says it is; a file whose
    single Stokes plane is another parameter (e.g. an I image given as V) is refused.
    """
    code = STOKES_CODES[name]
    has_axis = "STOKES" in info.axes.names
    if not has_axis:
        return 0
    if code in info.stokes:
        return info.stokes.index(code)
    have = "/".join(STOKES_NAMES.get(s, str(s)) for s in info.stokes)
    raise FlintImageError(f"{info.path}: holds Stokes {have}, not {name}; give the Stokes-{name} image as {where}")


def require_same_grid(a: CubeInfo, b: CubeInfo, rel_tol: float = 1e-6) -> None:
    """Raise (one line naming both files) unless ``a`` and ``b`` share pixels and channels."""
    if (a.axes.ny, a.axes.nx) != (b.axes.ny, b.axes.nx):
        raise FlintImageError(
            f"{b.path} has {b.axes.ny}x{b.axes.nx} pixels but {a.path} has {a.axes.ny}x{a.axes.nx}; "
            "give images on the same grid (regrid one, or image both with the same -size/-scale)"
        )
    for key in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CDELT1", "CDELT2", "CRPIX1", "CRPIX2"):
        va, vb = a.header.get(key), b.header.get(key)
        same = va == vb if isinstance(va, str) or isinstance(vb, str) else np.isclose(float(va or 0), float(vb or 0), rtol=rel_tol, atol=1e-12)
        if not same:
            raise FlintImageError(
                f"{b.path} and {a.path} are on different grids ({key} {vb!r} vs {va!r}); "
                "give images on the same grid (regrid one, or image both with the same -size/-scale)"
            )
    if a.nchan != b.nchan:
        raise FlintImageError(f"{b.path} has {b.nchan} channel(s) but {a.path} has {a.nchan}; give cubes with the same channels")
    fa, fb = a.freqs_hz, b.freqs_hz
    both = np.isfinite(fa) & np.isfinite(fb)
    if np.any(~np.isclose(fa[both], fb[both], rtol=rel_tol)):
        raise FlintImageError(f"{b.path} and {a.path} have different channel frequencies; give cubes with the same channels")


def beam_centre_deg(info: CubeInfo) -> tuple[float, float]:
    """The image's reference position (RA, Dec deg): CRVAL1/CRVAL2."""
    return float(info.header.get("CRVAL1", 0.0)), float(info.header.get("CRVAL2", 0.0))


def _column(table: Any, names: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in table.colnames}
    for n in names:
        if n.lower() in lower:
            return str(lower[n.lower()])
    return None


def read_catalogue(path: str | os.PathLike[str]) -> Any:
    """A component catalogue (CSV, FITS, VOTable) as an astropy ``Table`` with ``ra``/``dec`` columns."""
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise FlintInputError(f"{path}: no such catalogue; give flint find-sources' <image>.comp.csv")
    fmt = "ascii.csv" if path.suffix.lower() == ".csv" else None
    try:
        tab = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # astropy raises many types for unreadable tables
        raise FlintInputError(f"{path}: not a readable catalogue ({type(exc).__name__}: {exc}); give a CSV or FITS table") from None
    ra, dec = _column(tab, ("ra", "ra_deg", "raj2000", "_raj2000")), _column(tab, ("dec", "dec_deg", "dej2000", "_dej2000"))
    if ra is None or dec is None:
        raise FlintInputError(f"{path}: has no ra/dec columns (columns: {', '.join(tab.colnames)}); give flint find-sources' catalogue")
    if ra != "ra":
        tab.rename_column(ra, "ra")
    if dec != "dec":
        tab.rename_column(dec, "dec")
    return tab


def _select(tab: Any, opts: LeakageOptions, where: Path) -> NDArray[np.bool_]:
    """Mask of isolated, compact, bright components (filters whose columns are missing are skipped)."""
    from astropy.coordinates import SkyCoord

    n = len(tab)
    keep = np.ones(n, dtype=bool)
    if n > 1 and opts.isolation_deg > 0:
        sky = SkyCoord(np.asarray(tab["ra"], float), np.asarray(tab["dec"], float), unit="deg")
        sep = sky.match_to_catalog_sky(sky, nthneighbor=2)[1].deg
        keep &= sep > opts.isolation_deg
    peak, integ = _column(tab, ("peak_flux",)), _column(tab, ("int_flux",))
    if peak and integ:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.asarray(tab[integ], float) / np.asarray(tab[peak], float)
        keep &= (ratio > opts.int_peak_ratio[0]) & (ratio < opts.int_peak_ratio[1])
    else:
        logger.info("%s: no peak_flux/int_flux columns; compactness filter skipped", where)
    snr_col, rms_col = _column(tab, ("snr",)), _column(tab, ("local_rms",))
    if snr_col:
        snr = np.asarray(tab[snr_col], float)
    elif peak and rms_col:
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = np.asarray(tab[peak], float) / np.asarray(tab[rms_col], float)
    else:
        snr = None
        logger.info("%s: no snr/local_rms columns; brightness filter skipped", where)
    if snr is not None:
        keep &= np.nan_to_num(snr, nan=-1.0) >= opts.min_snr
    return keep


def _boxes(iy: NDArray[np.int64], ix: NDArray[np.int64], half: int, ny: int, nx: int) -> list[tuple[slice, slice]]:
    return [(slice(max(y - half, 0), min(y + half + 1, ny)), slice(max(x - half, 0), min(x + half + 1, nx))) for y, x in zip(iy, ix, strict=True)]


def _robust_std(values: NDArray[np.float64]) -> float:
    v = values[np.isfinite(values)]
    if v.size < 3:
        return float("nan")
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


# --------------------------------------------------------------------------- the stage
def run_leakage(
    image_v: str | os.PathLike[str],
    image_i: str | os.PathLike[str],
    catalogue: str | os.PathLike[str],
    options: LeakageOptions | None = None,
    image_q: str | os.PathLike[str] | None = None,
    image_u: str | os.PathLike[str] | None = None,
) -> LeakageResult:
    """Measure V/I (and Q/I, U/I) at the catalogue's components; write a table and a figure.

    Parameters
    ----------
    image_v, image_i
        Stokes V and I images (2-D or cubes on the same grid and channels; one IQUV cube
        may be given for both).
    catalogue
        Component catalogue with ``ra``/``dec`` (deg); ``peak_flux``, ``int_flux`` and
        ``snr`` (or ``local_rms``) enable the compactness and brightness filters.
    options
        Selection, boxes, beam centre and output names.
    image_q, image_u
        Optional Stokes Q and U images: Q/I and U/I are measured too.

    Returns
    -------
    LeakageResult
        The table and figure written and the median leakage per Stokes.

    Raises
    ------
    FlintImageError
        An image is missing, unreadable, of the wrong Stokes, or on another grid.
    FlintInputError
        The catalogue is unreadable, no component is usable, or an output exists
        (without ``overwrite``).
    """
    opts = options or LeakageOptions()
    ipath = Path(image_i)
    ii = read_cube_info(ipath)
    pols: dict[str, CubeInfo] = {"V": read_cube_info(image_v)}
    if image_q is not None:
        pols["Q"] = read_cube_info(image_q)
    if image_u is not None:
        pols["U"] = read_cube_info(image_u)
    flags = {"V": "IMAGE_V", "Q": "--image-q", "U": "--image-u"}
    pidx = {name: stokes_plane(inf, name, flags[name]) for name, inf in pols.items()}
    i_pol = stokes_plane(ii, "I", "IMAGE_I")
    for inf in pols.values():
        require_same_grid(ii, inf)

    vpath = pols["V"].path
    prefix = Path(opts.out_prefix) if opts.out_prefix is not None else vpath.parent / vpath.name.removesuffix(".fits").removesuffix(".FITS")
    out_csv, out_png = Path(f"{prefix}.leakage.csv"), Path(f"{prefix}.leakage.png")
    for out in (out_csv, out_png):
        if out.exists() and not opts.overwrite:
            raise FlintInputError(f"{out}: exists already; use --overwrite (or --out-prefix elsewhere)")

    cat_path = Path(catalogue)
    tab = read_catalogue(cat_path)
    n_cat = len(tab)
    keep = _select(tab, opts, cat_path)
    tab = tab[keep]
    from astropy.coordinates import SkyCoord

    sky = SkyCoord(np.asarray(tab["ra"], float), np.asarray(tab["dec"], float), unit="deg")
    x, y = ii.wcs.world_to_pixel(sky)
    ix, iy = np.round(np.asarray(x)).astype(np.int64), np.round(np.asarray(y)).astype(np.int64)
    ny, nx = ii.axes.ny, ii.axes.nx
    on = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    if not on.all():
        logger.info("%s: %d selected component(s) lie off the image; skipped", cat_path, int((~on).sum()))
    tab, sky, ix, iy = tab[on], sky[on], ix[on], iy[on]
    if len(tab) == 0:
        raise FlintInputError(
            f"{cat_path}: none of its {n_cat} components is isolated, compact, bright enough and on {ipath.name}; "
            "lower --min-snr / --isolation-deg or widen --int-peak-ratio"
        )
    centre = opts.beam_centre or beam_centre_deg(ii)
    dist = sky.separation(SkyCoord(centre[0], centre[1], unit="deg")).deg
    search = _boxes(iy, ix, opts.search_box // 2, ny, nx)
    noise = _boxes(iy, ix, opts.noise_box // 2, ny, nx)

    rows: dict[str, list[Any]] = {k: [] for k in ("component", "ra", "dec", "distance_deg", "chan", "freq_hz", "x", "y", "i_jy")}
    for name in pols:
        s = name.lower()
        for k in (f"{s}_jy", f"{s}_over_i", f"{s}_noise_jy"):
            rows[k] = []
    with contextlib.ExitStack() as stack:
        ireader = stack.enter_context(CubeReader(ipath, ii))
        readers = {name: stack.enter_context(CubeReader(inf.path, inf)) for name, inf in pols.items()}
        for chan in range(ii.nchan):  # one plane of each image at a time
            iplane = ireader.plane(chan, i_pol)
            others = {name: readers[name].plane(chan, pidx[name]) for name in pols}
            _measure(rows, chan, float(ii.freqs_hz[chan]), iplane, others, search, noise, tab, dist)

    from astropy.table import Table

    result_tab = Table(rows)
    with atomic_path(out_csv) as tmp:
        result_tab.write(tmp, format="ascii.csv")
    med_abs, med = {}, {}
    for name in pols:
        vals = np.asarray(result_tab[f"{name.lower()}_over_i"], float)
        vals = vals[np.isfinite(vals)]
        med_abs[name] = float(np.median(np.abs(vals))) if vals.size else float("nan")
        med[name] = float(np.median(vals)) if vals.size else float("nan")
    _figure(result_tab, list(pols), out_png, title=f"{vpath.name}: leakage vs distance from {centre[0]:.3f}, {centre[1]:.3f} deg")
    logger.info("%s: %d components x %d channel(s); median |V/I| %.4g", vpath, len(tab), ii.nchan, med_abs["V"])
    return LeakageResult(
        table=out_csv,
        figure=out_png,
        n_catalogue=n_cat,
        n_used=len(tab),
        n_channels=ii.nchan,
        median_abs=med_abs,
        median=med,
    )


def _measure(
    rows: dict[str, list[Any]],
    chan: int,
    freq: float,
    iplane: NDArray[np.float64],
    others: dict[str, NDArray[np.float64]],
    search: list[tuple[slice, slice]],
    noise: list[tuple[slice, slice]],
    tab: Any,
    dist: NDArray[np.float64],
) -> None:
    for k, (sbox, nbox) in enumerate(zip(search, noise, strict=True)):
        ibox = iplane[sbox]
        if not np.isfinite(ibox).any():
            py, px = sbox[0].start, sbox[1].start
            ival = float("nan")
        else:
            j = int(np.nanargmax(ibox))
            dy, dx = np.unravel_index(j, ibox.shape)
            py, px = sbox[0].start + int(dy), sbox[1].start + int(dx)
            ival = float(iplane[py, px])
        rows["component"].append(k)
        rows["ra"].append(float(tab["ra"][k]))
        rows["dec"].append(float(tab["dec"][k]))
        rows["distance_deg"].append(float(dist[k]))
        rows["chan"].append(chan)
        rows["freq_hz"].append(freq)
        rows["x"].append(px)
        rows["y"].append(py)
        rows["i_jy"].append(ival)
        for name, plane in others.items():
            s = name.lower()
            val = float(plane[py, px])
            rows[f"{s}_jy"].append(val)
            rows[f"{s}_over_i"].append(val / ival if ival and np.isfinite(ival) else float("nan"))
            rows[f"{s}_noise_jy"].append(_robust_std(plane[nbox].ravel()))


def _figure(tab: Any, names: list[str], out: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 2.6 * len(names) + 0.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    dist = np.asarray(tab["distance_deg"], float)
    freq = np.asarray(tab["freq_hz"], float) / 1e6
    for ax, name in zip(axes, names, strict=True):
        vals = 100.0 * np.asarray(tab[f"{name.lower()}_over_i"], float)
        sc = ax.scatter(dist, vals, c=freq, s=12, cmap="viridis")
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_ylabel(f"{name}/I (%)")
        if len(np.unique(freq)) > 1:
            fig.colorbar(sc, ax=ax, label="MHz")
    axes[-1].set_xlabel("distance from beam centre (deg)")
    axes[0].set_title(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
