"""Validate a source catalogue against a reference catalogue.

The reference is by default the simulator's truth (``SB<sbid>.<field>.sky.csv``), but
any FITS/CSV table with RA/Dec/flux columns works (see :func:`read_reference`).
Reference fluxes are evaluated at the image frequency with their spectral index when
one is given. :func:`run_validation` reports completeness, the flux ratio (median and
robust scatter), astrometric offsets and the image noise, and writes::

    <prefix>.validation.png   one-page figure
    <prefix>.matches.csv      one row per reference source in the field (matched or not)
    <prefix>.validation.csv   the summary numbers (metric, value)
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from flint.errors import FlintInputError
from flint.images import Image, image_frequency_hz, read_image, robust_rms
from flint.io import atomic_path
from flint.options import BaseOptions
from flint.primary_beam import (
    DEFAULT_PB_FWHM_DEG,
    DEFAULT_PB_REF_HZ,
    angular_separation_deg,
    gaussian_pb,
)

__all__ = [
    "ValidationOptions",
    "ValidationResult",
    "ReferenceCatalogue",
    "run_validation",
    "read_reference",
    "read_catalogue",
    "match_catalogues",
]

logger = logging.getLogger(__name__)

_RA_NAMES = ("ra", "ra_deg", "raj2000", "ra_j2000", "ra_icrs")
_DEC_NAMES = ("dec", "dec_deg", "dej2000", "decj2000", "dec_j2000", "de_icrs")
_FLUX_NAMES = ("flux_jy", "int_flux", "total_flux", "flux_int", "flux", "s", "peak_flux")
_ALPHA_NAMES = ("alpha", "spectral_index", "si")
_FREQ_NAMES = ("ref_freq_hz", "ref_freq", "freq_hz", "freq")
_NAME_NAMES = ("name", "source_name", "id", "uuid")


class ValidationOptions(BaseOptions):
    """How a catalogue is compared with its reference."""

    match_radius_arcsec: float = Field(default=10.0, gt=0.0)
    """Largest separation of a catalogue component from its reference source."""
    snr_min: float = Field(default=10.0, ge=0.0)
    """Only components at least this signal-to-noise enter the flux and position statistics."""
    completeness_snr: float = Field(default=10.0, gt=0.0)
    """Reference sources whose expected (apparent) flux is at least this many times the
    local noise should be found; completeness is the fraction of them that are."""
    flux_column: str = "int_flux"
    """Catalogue flux column compared with the reference (``int_flux`` or ``peak_flux``)."""
    pb_correct: bool = False
    """The catalogue comes from a single-beam image not corrected for the primary beam:
    divide its fluxes by the Gaussian primary beam centred on the image's reference
    direction (needs ``image``). Leave off for linmos mosaics (already corrected)."""
    pb_fwhm_deg: float = Field(default=DEFAULT_PB_FWHM_DEG, gt=0.0)
    """Primary-beam FWHM (deg) at ``pb_ref_freq_hz``."""
    pb_ref_freq_hz: float = Field(default=DEFAULT_PB_REF_HZ, gt=0.0)
    """Frequency (Hz) at which ``pb_fwhm_deg`` holds."""
    pb_cutoff: float = Field(default=0.2, ge=0.0, lt=1.0)
    """With ``pb_correct``: ignore the field where the primary beam is below this."""
    freq_hz: float | None = Field(default=None, gt=0.0)
    """Image frequency (Hz); ``None``: from the image header."""
    prefix: str | None = None
    """Name prefix of the outputs (``None``: the catalogue's name without ``.comp``)."""


@dataclass(frozen=True)
class ReferenceCatalogue:
    """Reference sources: positions (deg), flux (Jy) at ``ref_freq_hz``, spectral index."""

    name: list[str]
    ra_deg: NDArray[np.float64]
    dec_deg: NDArray[np.float64]
    flux_jy: NDArray[np.float64]
    alpha: NDArray[np.float64]
    ref_freq_hz: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.name)

    def flux_at(self, freq_hz: float | None) -> NDArray[np.float64]:
        """Flux at ``freq_hz`` with each source's spectral index (unchanged if ``None``)."""
        if freq_hz is None:
            return self.flux_jy.copy()
        ok = np.isfinite(self.ref_freq_hz) & (self.ref_freq_hz > 0)
        scale = np.ones_like(self.flux_jy)
        scale[ok] = (freq_hz / self.ref_freq_hz[ok]) ** self.alpha[ok]
        return self.flux_jy * scale


@dataclass(frozen=True)
class ValidationResult:
    """Validation products and numbers."""

    figure: Path
    matches_table: Path
    summary_table: Path
    n_reference: int
    """Reference sources in the field expected above ``completeness_snr``."""
    n_found: int
    """How many of those were matched."""
    completeness: float
    n_flux: int
    """Matched components (>= ``snr_min``) in the flux/position statistics."""
    flux_ratio_median: float
    """Median of catalogue / reference flux."""
    flux_ratio_scatter: float
    """1.4826 x median absolute deviation of the flux ratios."""
    ra_offset_arcsec: float
    """Median (catalogue - reference) RA offset, times cos(Dec)."""
    dec_offset_arcsec: float
    """Median (catalogue - reference) Dec offset."""
    ra_offset_scatter_arcsec: float
    dec_offset_scatter_arcsec: float
    n_unmatched: int
    """Components >= ``snr_min`` with no reference source within the match radius."""
    noise_jy: float
    """Image noise (robust) or, without an image, the catalogue's median local rms."""
    freq_hz: float | None

    def numbers(self) -> dict[str, float | int | None]:
        """The numbers only (no paths)."""
        return {k: v for k, v in asdict(self).items() if not isinstance(v, Path)}


# --------------------------------------------------------------------------- reading
def _column(tab: Any, names: tuple[str, ...], what: str, path: Path, required: bool = True) -> str | None:
    lower = {c.lower(): c for c in tab.colnames}
    for n in names:
        if n in lower:
            return str(lower[n])
    if required:
        raise FlintInputError(
            f"{path}: no {what} column (looked for {', '.join(names)}; has {', '.join(tab.colnames)}); "
            "rename the column"
        )
    return None


def _as_float(col: Any, unit: str | None = None) -> NDArray[np.float64]:
    if unit is not None and getattr(col, "unit", None) is not None:
        try:
            return np.asarray(col.quantity.to_value(unit), dtype=np.float64)
        except Exception:  # unit not convertible: take the numbers as they are
            pass
    return np.asarray(col, dtype=np.float64)


def _read_table(path: Path) -> Any:
    from astropy.table import Table

    if not path.exists():
        raise FlintInputError(f"{path}: no such catalogue; check the path")
    try:
        if path.suffix.lower() == ".csv":
            return Table.read(path, format="ascii.csv")
        return Table.read(path)
    except Exception as exc:
        raise FlintInputError(f"{path}: not a readable FITS/CSV table ({exc})") from None


def read_reference(path: str | os.PathLike[str]) -> ReferenceCatalogue:
    """Read a reference catalogue (FITS or CSV) with RA/Dec (deg) and flux (Jy) columns.

    Optional: a spectral index (``alpha``) and its reference frequency (``ref_freq_hz``).
    """
    path = Path(path)
    tab = _read_table(path)
    ra = _column(tab, _RA_NAMES, "RA", path)
    dec = _column(tab, _DEC_NAMES, "Dec", path)
    flux = _column(tab, _FLUX_NAMES, "flux", path)
    alpha = _column(tab, _ALPHA_NAMES, "spectral index", path, required=False)
    freq = _column(tab, _FREQ_NAMES, "reference frequency", path, required=False)
    name = _column(tab, _NAME_NAMES, "name", path, required=False)
    n = len(tab)
    return ReferenceCatalogue(
        name=[str(x) for x in tab[name]] if name else [f"REF{i:04d}" for i in range(n)],
        ra_deg=_as_float(tab[ra], "deg"),
        dec_deg=_as_float(tab[dec], "deg"),
        flux_jy=_as_float(tab[flux], "Jy"),
        alpha=_as_float(tab[alpha]) if alpha else np.zeros(n),
        ref_freq_hz=_as_float(tab[freq], "Hz") if freq else np.full(n, np.nan),
    )


def read_catalogue(path: str | os.PathLike[str], flux_column: str = "int_flux") -> dict[str, NDArray[np.float64]]:
    """Read a component catalogue: ``ra``, ``dec``, ``flux``, ``snr`` and ``local_rms`` arrays."""
    path = Path(path)
    tab = _read_table(path)
    ra = _column(tab, _RA_NAMES, "RA", path)
    dec = _column(tab, _DEC_NAMES, "Dec", path)
    flux = _column(tab, (flux_column.lower(),) + _FLUX_NAMES, "flux", path)
    out = {
        "ra": _as_float(tab[ra], "deg"),
        "dec": _as_float(tab[dec], "deg"),
        "flux": _as_float(tab[flux], "Jy"),
    }
    rms_col = _column(tab, ("local_rms", "rms", "noise"), "local rms", path, required=False)
    out["local_rms"] = _as_float(tab[rms_col]) if rms_col else np.full(len(tab), np.nan)
    snr_col = _column(tab, ("snr",), "snr", path, required=False)
    if snr_col:
        out["snr"] = _as_float(tab[snr_col])
    else:
        peak = _column(tab, ("peak_flux",), "peak flux", path, required=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["snr"] = _as_float(tab[peak]) / out["local_rms"] if peak else np.full(len(tab), np.inf)
    return out


# --------------------------------------------------------------------------- numerics
def match_catalogues(
    ra1: NDArray[np.float64], dec1: NDArray[np.float64], ra2: NDArray[np.float64], dec2: NDArray[np.float64], radius_arcsec: float
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """One-to-one nearest-neighbour match of list 1 against list 2.

    Returns, for each entry of list 2, the index of its matched entry in list 1 (-1 if
    none) and the separation (arcsec). Each entry of list 1 goes to its nearest entry of
    list 2 within the radius; when several compete for one, the closest wins.
    """
    n2 = len(ra2)
    idx = np.full(n2, -1, dtype=np.int64)
    sep = np.full(n2, np.nan)
    if len(ra1) == 0 or n2 == 0:
        return idx, sep
    d = angular_separation_deg(ra1[:, None], dec1[:, None], ra2[None, :], dec2[None, :]) * 3600.0
    nearest = np.argmin(d, axis=1)
    dist = d[np.arange(len(ra1)), nearest]
    for i in np.argsort(dist):
        j = nearest[i]
        if dist[i] <= radius_arcsec and idx[j] < 0:
            idx[j] = i
            sep[j] = dist[i]
    return idx, sep


def _robust_scatter(x: NDArray[np.float64]) -> float:
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan")
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _median(x: NDArray[np.float64]) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


def _sample(image: Image, ra: NDArray[np.float64], dec: NDArray[np.float64]) -> NDArray[np.float64]:
    """Pixel values at sky positions (NaN outside the image)."""
    x, y = image.wcs.world_to_pixel_values(ra, dec)
    xi = np.round(np.asarray(x, dtype=float))
    yi = np.round(np.asarray(y, dtype=float))
    ny, nx = image.data.shape
    inside = np.isfinite(xi) & np.isfinite(yi) & (xi >= 0) & (yi >= 0) & (xi < nx) & (yi < ny)
    out = np.full(len(ra), np.nan)
    out[inside] = image.data[yi[inside].astype(int), xi[inside].astype(int)]
    return out


def _rms_map(image_path: Path) -> Image | None:
    stem = image_path.name.removesuffix(".fits")
    rms = image_path.parent / f"{stem}.rms.fits"
    return read_image(rms) if rms.exists() else None


# --------------------------------------------------------------------------- run
def run_validation(
    catalogue: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    options: ValidationOptions | None = None,
    image: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
) -> ValidationResult:
    """Cross-match ``catalogue`` with ``reference`` and write a figure and tables.

    Parameters
    ----------
    catalogue
        Component catalogue (e.g. from :func:`flint.source_finding.run_source_finding`).
    reference
        Reference catalogue with RA/Dec/flux (and optionally spectral index) columns.
    options
        Validation options.
    image
        The image the catalogue came from: its frequency, footprint, noise (and BANE
        noise map ``<stem>.rms.fits`` when present) and, with ``pb_correct``, its beam
        centre.
    output_dir
        Folder of the outputs (default: the catalogue's folder).
    """
    opts = options or ValidationOptions()
    catalogue = Path(catalogue)
    cat = read_catalogue(catalogue, opts.flux_column)
    ref = read_reference(reference)
    img = read_image(image) if image is not None else None
    if opts.pb_correct and img is None:
        raise FlintInputError("pb_correct=True needs the image (its reference direction is the beam centre)")
    freq = opts.freq_hz or (image_frequency_hz(img.header) if img is not None else None)
    if freq is None and np.any(np.isfinite(ref.ref_freq_hz)):
        logger.warning("no image frequency known: reference fluxes used at their own frequencies")

    # reference sources in the field, their expected apparent flux and local noise
    ref_flux = ref.flux_at(freq)
    ref_pb = np.ones(len(ref))
    cat_pb = np.ones(len(cat["ra"]))
    if img is not None:
        inside = np.isfinite(_sample(img, ref.ra_deg, ref.dec_deg))
        noise = robust_rms(img.data)
        if opts.pb_correct:
            ra0, dec0 = (float(v) for v in img.wcs.wcs.crval)
            pb_freq = freq or opts.pb_ref_freq_hz
            ref_pb = gaussian_pb(angular_separation_deg(ra0, dec0, ref.ra_deg, ref.dec_deg), pb_freq, opts.pb_fwhm_deg, opts.pb_ref_freq_hz)
            cat_pb = gaussian_pb(angular_separation_deg(ra0, dec0, cat["ra"], cat["dec"]), pb_freq, opts.pb_fwhm_deg, opts.pb_ref_freq_hz)
            inside &= ref_pb >= opts.pb_cutoff
        rms_img = _rms_map(img.path)
        local = _sample(rms_img, ref.ra_deg, ref.dec_deg) if rms_img is not None else np.full(len(ref), noise)
        local = np.where(np.isfinite(local) & (local > 0), local, noise)
    else:
        noise = _median(cat["local_rms"])
        inside = _near_catalogue(ref, cat, opts.match_radius_arcsec)
        local = np.full(len(ref), noise)
    apparent = ref_flux * ref_pb
    expected = inside & (apparent >= opts.completeness_snr * local)

    # match components (>= snr_min for statistics) to reference sources
    idx, sep = match_catalogues(cat["ra"], cat["dec"], ref.ra_deg, ref.dec_deg, opts.match_radius_arcsec)
    matched = idx >= 0
    n_ref = int(expected.sum())
    n_found = int((expected & matched).sum())
    completeness = n_found / n_ref if n_ref else float("nan")
    safe = np.where(matched, idx, 0)
    cat_flux = np.where(matched, cat["flux"][safe] / cat_pb[safe], np.nan)
    snr = np.where(matched, cat["snr"][safe], np.nan)
    dec_ref = np.radians(ref.dec_deg)
    dra = np.where(matched, ((cat["ra"][safe] - ref.ra_deg + 180.0) % 360.0 - 180.0) * np.cos(dec_ref) * 3600.0, np.nan)
    ddec = np.where(matched, (cat["dec"][safe] - ref.dec_deg) * 3600.0, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = cat_flux / ref_flux
    good = matched & inside & (snr >= opts.snr_min)
    strong = np.flatnonzero(cat["snr"] >= opts.snr_min)
    n_unmatched = int(np.sum(~np.isin(strong, idx[matched])))

    result_numbers = dict(
        n_reference=n_ref,
        n_found=n_found,
        completeness=completeness,
        n_flux=int(good.sum()),
        flux_ratio_median=_median(ratio[good]),
        flux_ratio_scatter=_robust_scatter(ratio[good]),
        ra_offset_arcsec=_median(dra[good]),
        dec_offset_arcsec=_median(ddec[good]),
        ra_offset_scatter_arcsec=_robust_scatter(dra[good]),
        dec_offset_scatter_arcsec=_robust_scatter(ddec[good]),
        n_unmatched=n_unmatched,
        noise_jy=float(noise),
        freq_hz=freq,
    )

    out_dir = Path(output_dir) if output_dir is not None else catalogue.parent
    prefix = opts.prefix or catalogue.name.rsplit(".", 1)[0].removesuffix(".comp").removesuffix(".image")
    paths = {
        "figure": out_dir / f"{prefix}.validation.png",
        "matches_table": out_dir / f"{prefix}.matches.csv",
        "summary_table": out_dir / f"{prefix}.validation.csv",
    }
    rows = np.flatnonzero(inside)
    _write_matches(paths["matches_table"], ref, rows, ref_flux, apparent, local, expected, matched, cat, safe, cat_flux, cat_pb, snr, sep, dra, ddec, ratio, good)
    _write_summary(paths["summary_table"], result_numbers, catalogue, Path(reference), opts)
    _plot_validation(
        paths["figure"],
        img=img,
        ref=ref,
        rows=rows,
        expected=expected,
        matched=matched,
        cat=cat,
        ref_flux=ref_flux,
        ratio=ratio,
        good=good,
        dra=dra,
        ddec=ddec,
        numbers=result_numbers,
        title=prefix,
    )
    logger.info(
        "validation %s: completeness %.2f (%d/%d), flux ratio %.3f +- %.3f, offsets %.2f\", %.2f\"",
        prefix, completeness, n_found, n_ref, result_numbers["flux_ratio_median"],
        result_numbers["flux_ratio_scatter"], result_numbers["ra_offset_arcsec"], result_numbers["dec_offset_arcsec"],
    )
    return ValidationResult(**paths, **result_numbers)  # type: ignore[arg-type]


def _near_catalogue(ref: ReferenceCatalogue, cat: dict[str, NDArray[np.float64]], radius_arcsec: float) -> NDArray[np.bool_]:
    """Without an image: reference sources within the catalogue's extent."""
    if len(cat["ra"]) == 0:
        return np.zeros(len(ref), dtype=bool)
    v = np.stack([
        np.cos(np.radians(cat["dec"])) * np.cos(np.radians(cat["ra"])),
        np.cos(np.radians(cat["dec"])) * np.sin(np.radians(cat["ra"])),
        np.sin(np.radians(cat["dec"])),
    ]).mean(axis=1)
    ra0 = math.degrees(math.atan2(v[1], v[0])) % 360.0
    dec0 = math.degrees(math.atan2(v[2], math.hypot(v[0], v[1])))
    extent = float(np.max(angular_separation_deg(ra0, dec0, cat["ra"], cat["dec"]))) + radius_arcsec / 3600.0
    return np.asarray(angular_separation_deg(ra0, dec0, ref.ra_deg, ref.dec_deg) <= extent)


def _write_matches(path: Path, ref: ReferenceCatalogue, rows: NDArray[np.int64], ref_flux: NDArray[np.float64], apparent: NDArray[np.float64], local: NDArray[np.float64], expected: NDArray[np.bool_], matched: NDArray[np.bool_], cat: dict[str, NDArray[np.float64]], safe: NDArray[np.int64], cat_flux: NDArray[np.float64], cat_pb: NDArray[np.float64], snr: NDArray[np.float64], sep: NDArray[np.float64], dra: NDArray[np.float64], ddec: NDArray[np.float64], ratio: NDArray[np.float64], good: NDArray[np.bool_]) -> None:
    from astropy.table import Table

    nan = np.nan
    tab = Table(
        {
            "name": [ref.name[i] for i in rows],
            "ref_ra_deg": ref.ra_deg[rows],
            "ref_dec_deg": ref.dec_deg[rows],
            "ref_flux_jy": ref_flux[rows],
            "ref_apparent_flux_jy": apparent[rows],
            "local_rms_jy": local[rows],
            "expected": expected[rows],
            "matched": matched[rows],
            "used_in_stats": good[rows],
            "cat_index": np.where(matched[rows], safe[rows], -1),
            "cat_ra_deg": np.where(matched[rows], cat["ra"][safe[rows]], nan),
            "cat_dec_deg": np.where(matched[rows], cat["dec"][safe[rows]], nan),
            "cat_flux_jy": cat_flux[rows],
            "pb": np.where(matched[rows], cat_pb[safe[rows]], nan),
            "snr": snr[rows],
            "sep_arcsec": sep[rows],
            "dra_arcsec": dra[rows],
            "ddec_arcsec": ddec[rows],
            "flux_ratio": ratio[rows],
        }
    )
    with atomic_path(path) as tmp:
        tab.write(tmp, format="ascii.csv")


def _write_summary(path: Path, numbers: dict[str, Any], catalogue: Path, reference: Path, opts: ValidationOptions) -> None:
    lines = ["metric,value", f"catalogue,{catalogue}", f"reference,{reference}"]
    lines += [f"{k},{'' if v is None else v}" for k, v in numbers.items()]
    lines += [f"match_radius_arcsec,{opts.match_radius_arcsec}", f"snr_min,{opts.snr_min}", f"completeness_snr,{opts.completeness_snr}"]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _plot_validation(
    path: Path,
    *,
    img: Image | None,
    ref: ReferenceCatalogue,
    rows: NDArray[np.int64],
    expected: NDArray[np.bool_],
    matched: NDArray[np.bool_],
    cat: dict[str, NDArray[np.float64]],
    ref_flux: NDArray[np.float64],
    ratio: NDArray[np.float64],
    good: NDArray[np.bool_],
    dra: NDArray[np.float64],
    ddec: NDArray[np.float64],
    numbers: dict[str, Any],
    title: str,
) -> None:
    """One page: sky/image with matches, flux ratios, astrometry, numbers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    fig.suptitle(f"flint validation: {title}")

    # (a) the field
    ax = axes[0, 0]
    missed = expected & ~matched
    if img is not None:
        from astropy.visualization import ImageNormalize, PercentileInterval

        norm = ImageNormalize(img.data[np.isfinite(img.data)], interval=PercentileInterval(99.5))
        ax.imshow(img.data, origin="lower", cmap="gray_r", norm=norm)
        def to_xy(ra: NDArray[np.float64], dec: NDArray[np.float64]) -> tuple[Any, Any]:
            return img.wcs.world_to_pixel_values(ra, dec)
        ax.set_xlabel("x (pixel)")
        ax.set_ylabel("y (pixel)")
    else:
        def to_xy(ra: NDArray[np.float64], dec: NDArray[np.float64]) -> tuple[Any, Any]:
            return ra, dec
        ax.invert_xaxis()
        ax.set_xlabel("RA (deg)")
        ax.set_ylabel("Dec (deg)")
    x, y = to_xy(ref.ra_deg[rows], ref.dec_deg[rows])
    ax.scatter(x, y, s=30, facecolors="none", edgecolors="tab:blue", label="reference")
    if np.any(missed):
        x, y = to_xy(ref.ra_deg[missed], ref.dec_deg[missed])
        ax.scatter(x, y, s=80, marker="s", facecolors="none", edgecolors="tab:red", label="expected, missed")
    if len(cat["ra"]):
        x, y = to_xy(cat["ra"], cat["dec"])
        ax.scatter(x, y, s=12, marker="x", color="tab:orange", label="catalogue")
    ax.legend(loc="upper right", fontsize="small")
    ax.set_title("field")

    # (b) flux ratio
    ax = axes[0, 1]
    sel = matched & np.isfinite(ratio)
    ax.scatter(ref_flux[sel & ~good], ratio[sel & ~good], s=12, color="0.6", label="not used (below snr_min or outside field)")
    ax.scatter(ref_flux[good], ratio[good], s=18, color="tab:blue", label="used")
    ax.axhline(1.0, color="k", lw=0.8)
    med = numbers["flux_ratio_median"]
    if np.isfinite(med):
        ax.axhline(med, color="tab:red", ls="--", lw=1, label=f"median {med:.3f}")
    if np.any(sel) and np.all(ref_flux[sel] > 0):
        ax.set_xscale("log")
    ax.set_xlabel("reference flux at image frequency (Jy)")
    ax.set_ylabel("catalogue / reference flux")
    ax.legend(fontsize="small")
    ax.set_title("flux scale")

    # (c) astrometry
    ax = axes[1, 0]
    ax.scatter(dra[sel & ~good], ddec[sel & ~good], s=12, color="0.6")
    ax.scatter(dra[good], ddec[good], s=18, color="tab:blue")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    if np.isfinite(numbers["ra_offset_arcsec"]):
        ax.plot([numbers["ra_offset_arcsec"]], [numbers["dec_offset_arcsec"]], "r+", ms=14, mew=2, label="median")
        ax.legend(fontsize="small")
    ax.set_xlabel("RA offset x cos(Dec) (arcsec)")
    ax.set_ylabel("Dec offset (arcsec)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("astrometry (catalogue - reference)")

    # (d) numbers
    ax = axes[1, 1]
    ax.axis("off")
    freq = numbers["freq_hz"]
    text = [
        f"frequency            {freq / 1e6:.3f} MHz" if freq else "frequency            unknown",
        f"image noise          {1e3 * numbers['noise_jy']:.3f} mJy/beam",
        f"completeness         {numbers['completeness']:.3f} ({numbers['n_found']}/{numbers['n_reference']})",
        f"flux ratio           {numbers['flux_ratio_median']:.3f} +- {numbers['flux_ratio_scatter']:.3f} (n={numbers['n_flux']})",
        f"RA offset            {numbers['ra_offset_arcsec']:.2f}\" +- {numbers['ra_offset_scatter_arcsec']:.2f}\"",
        f"Dec offset           {numbers['dec_offset_arcsec']:.2f}\" +- {numbers['dec_offset_scatter_arcsec']:.2f}\"",
        f"unmatched components {numbers['n_unmatched']}",
    ]
    ax.text(0.0, 1.0, "\n".join(text), va="top", family="monospace", fontsize=11, transform=ax.transAxes)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
