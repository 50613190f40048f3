"""Options, result and :func:`run_validation` (the public entry point)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from flint.errors import FlintInputError
from flint.images import Image, image_frequency_hz, read_image
from flint.options import BaseOptions
from flint.primary_beam import (
    DEFAULT_PB_FWHM_DEG,
    DEFAULT_PB_REF_HZ,
    angular_separation_deg,
    gaussian_pb,
)
from flint.validation._catalogues import (
    ReferenceCatalogue,
    ReferenceColumns,
    read_catalogue,
    read_reference,
)
from flint.validation._stats import (
    SnrBin,
    finite_median,
    inner_mask,
    inner_noise,
    match_catalogues,
    nearest_separation_arcsec,
    robust_scatter,
    sample,
    snr_bins,
)
from flint.validation._thermal import thermal_noise_of

__all__ = ["ValidationOptions", "ValidationResult", "run_validation", "beside_image"]

logger = logging.getLogger(__name__)


class ValidationOptions(BaseOptions):
    """How a catalogue is compared with its reference."""

    match_radius_arcsec: float = Field(default=10.0, gt=0.0)
    """Largest separation of a catalogue component from its reference source."""
    snr_min: float = Field(default=10.0, ge=0.0)
    """Only components at least this signal-to-noise enter the flux and position statistics."""
    completeness_snr: float = Field(default=10.0, gt=0.0)
    """Reference sources whose expected (apparent) flux is at least this many times the
    local noise should be found; completeness is the fraction of them that are."""
    spurious_snr: float = Field(default=5.0, gt=0.0)
    """Components at least this signal-to-noise (peak / local rms) are counted as
    unmatched or spurious (no reference source within the match radius)."""
    snr_bins: tuple[float, ...] = (5.0, 7.0, 10.0, 20.0)
    """Lower edges of the signal-to-noise bins of the spurious fraction and completeness
    (the last bin is open-ended)."""
    inner_weight_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    """The inner region of a mosaic: where the linmos weight is at least this fraction of its peak."""
    flux_column: str = "int_flux"
    """Catalogue flux column compared with the reference (``int_flux`` or ``peak_flux``)."""
    ra_col: str | None = None
    """Reference RA column (default: found by name, numeric before sexagesimal)."""
    dec_col: str | None = None
    """Reference Dec column (default: found by name, numeric before sexagesimal)."""
    flux_col: str | None = None
    """Reference flux column (default: found by name; none found: a position-only reference)."""
    flux_unit: str | None = None
    """Unit of the reference flux column (e.g. ``mJy``) when the table does not say."""
    ref_freq: float | None = Field(default=None, gt=0.0)
    """Frequency (Hz) of the reference fluxes (default: from the table or its survey)."""
    spectral_index: float = -0.8
    """Spectral index scaling reference fluxes to the image frequency where the table has none."""
    sigma_convention: Literal["complex", "real"] = "complex"
    """MS weights are 1/sigma^2 of the complex visibility (flint's) or of its real part."""
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

    @model_validator(mode="after")
    def _consistent(self) -> ValidationOptions:
        for name, value in self:
            vals = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, float) and not math.isfinite(v) for v in vals):
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number (got {value})")
        edges = self.snr_bins
        if not edges or edges[0] <= 0 or any(b <= a for a, b in zip(edges[:-1], edges[1:], strict=True)):
            raise ValueError(f"--snr-bins must be increasing positive edges, e.g. 5 7 10 20 (got {' '.join(f'{e:g}' for e in edges)})")
        return self


@dataclass(frozen=True)
class ValidationResult:
    """Validation products and numbers (see :meth:`numbers` for a flat dictionary)."""

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
    """Components >= ``spurious_snr`` that are no reference source's counterpart (one-to-one
    match): the spurious ones plus extra components of real sources."""
    noise_jy: float
    """Image noise (Jy/beam): median of the BANE rms map in the inner region (see ``noise_region``)."""
    freq_hz: float | None
    noise_region: str = ""
    """Where ``noise_jy`` was measured."""
    thermal_jy: float = float("nan")
    """Natural-weighting Stokes-I thermal noise of one beam (median over the given MSs)."""
    noise_to_thermal: float = float("nan")
    """``noise_jy / thermal_jy``."""
    n_components: int = 0
    """Components >= ``spurious_snr``."""
    n_spurious: int = 0
    """Of those, with no reference source within the match radius."""
    spurious_fraction: float = float("nan")
    n_components_inner: int = 0
    """Components >= ``spurious_snr`` in the inner region (all of them without a weight map)."""
    n_spurious_inner: int = 0
    spurious_fraction_inner: float = float("nan")
    bins: tuple[SnrBin, ...] = ()
    """Spurious fraction and completeness per signal-to-noise bin."""

    def numbers(self) -> dict[str, Any]:
        """Every number, flat (bins as ``spurious_fraction_snr5_7``, ``completeness_snr20_up`` ...)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "bins" or isinstance(v, Path):
                continue
            out[f.name] = v
        for b in self.bins:
            out[f"n_components_{b.label}"] = b.n_components
            out[f"spurious_fraction_{b.label}"] = b.spurious_fraction
            out[f"spurious_fraction_inner_{b.label}"] = b.spurious_fraction_inner
            out[f"completeness_{b.label}"] = b.completeness
        return out

    def bins_table(self) -> list[dict[str, Any]]:
        """One row per signal-to-noise bin, with counts and fractions."""
        return [asdict(b) | {"spurious_fraction": b.spurious_fraction, "spurious_fraction_inner": b.spurious_fraction_inner, "completeness": b.completeness} for b in self.bins]


def beside_image(image: Path, suffix: str) -> Path:
    """``<stem>.<suffix>.fits`` beside ``image`` (BANE's ``rms``, linmos's ``weight``)."""
    return image.parent / f"{image.name.removesuffix('.fits')}.{suffix}.fits"


def _reference_columns(opts: ValidationOptions) -> ReferenceColumns:
    if opts.flux_unit is not None:
        import astropy.units as u

        try:
            unit = u.Unit(opts.flux_unit)
            unit.to(u.Jy)
        except (ValueError, u.UnitConversionError):
            raise FlintInputError(f"--flux-unit {opts.flux_unit!r} is not a flux-density unit; use e.g. mJy or Jy") from None
    return ReferenceColumns(opts.ra_col, opts.dec_col, opts.flux_col, opts.flux_unit, opts.ref_freq, opts.spectral_index)


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


def _optional_map(path: Path | None, image: Image | None, suffix: str) -> Image | None:
    if path is not None:
        return read_image(path)
    if image is not None and beside_image(image.path, suffix).exists():
        return read_image(beside_image(image.path, suffix))
    return None


def run_validation(
    catalogue: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    options: ValidationOptions | None = None,
    image: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    ms: Sequence[str | os.PathLike[str]] | None = None,
    weight: str | os.PathLike[str] | None = None,
) -> ValidationResult:
    """Cross-match ``catalogue`` with ``reference``; measure noise, thermal noise, spurious fraction.

    Parameters
    ----------
    catalogue
        Component catalogue (e.g. from :func:`flint.source_finding.run_source_finding`).
    reference
        Reference catalogue: flint's sky CSV or a survey table (FITS/CSV/VOTable, see
        :func:`flint.validation.read_reference`).
    options
        Validation options.
    image
        The image the catalogue came from: its frequency, footprint and noise; its BANE
        noise map ``<stem>.rms.fits`` and linmos weight ``<stem>.weight.fits`` are used
        when they are beside it; with ``pb_correct`` its reference direction is the beam centre.
    output_dir
        Folder of the outputs (default: the catalogue's folder).
    ms
        The Measurement Sets imaged (one per beam): ``thermal_jy`` is their median
        natural-weighting Stokes-I thermal noise (see :mod:`flint.validation._thermal`).
    weight
        The linmos weight image (default: ``<image stem>.weight.fits`` if it exists).
    """
    from flint.validation._report import plot_validation, write_matches, write_summary

    opts = options or ValidationOptions()
    catalogue = Path(catalogue)
    reference = Path(reference)
    cat = read_catalogue(catalogue, opts.flux_column)
    ref = read_reference(reference, _reference_columns(opts))
    img = read_image(image) if image is not None else None
    if opts.pb_correct and img is None:
        raise FlintInputError("--pb-correct needs the image (its reference direction is the beam centre); give --image")
    if len(ref) == 0:
        raise FlintInputError(f"{reference}: the reference catalogue has no rows")
    freq = opts.freq_hz or (image_frequency_hz(img.header) if img is not None else None)
    if ref.has_flux and freq is not None and np.any(~np.isfinite(ref.ref_freq_hz)):
        raise FlintInputError(
            f"{reference}: the frequency of its fluxes is unknown (no column, keyword or known survey); give --ref-freq (Hz)"
        )
    if freq is None and ref.has_flux:
        logger.warning("no image frequency known: reference fluxes used at their own frequencies")
    rms_img = _optional_map(None, img, "rms") if img is not None else None
    wgt_img = _optional_map(Path(weight) if weight is not None else None, img, "weight")
    thermal, each = thermal_noise_of(list(ms or []), opts.sigma_convention)

    # reference sources in the field, their expected apparent flux and local noise
    ref_flux = ref.flux_at(freq)
    ref_pb = np.ones(len(ref))
    cat_pb = np.ones(len(cat["ra"]))
    if img is not None:
        inside = np.isfinite(sample(img, ref.ra_deg, ref.dec_deg))
        noise, noise_region = inner_noise(img, rms_img, wgt_img, opts.inner_weight_fraction)
        if opts.pb_correct:
            ra0, dec0 = (float(v) for v in img.wcs.wcs.crval)
            pb_freq = freq or opts.pb_ref_freq_hz
            ref_pb = gaussian_pb(angular_separation_deg(ra0, dec0, ref.ra_deg, ref.dec_deg), pb_freq, opts.pb_fwhm_deg, opts.pb_ref_freq_hz)
            cat_pb = gaussian_pb(angular_separation_deg(ra0, dec0, cat["ra"], cat["dec"]), pb_freq, opts.pb_fwhm_deg, opts.pb_ref_freq_hz)
            inside &= ref_pb >= opts.pb_cutoff
        fallback = noise if np.isfinite(noise) else float(finite_median(cat["local_rms"]))
        local = sample(rms_img, ref.ra_deg, ref.dec_deg) if rms_img is not None else np.full(len(ref), fallback)
        local = np.where(np.isfinite(local) & (local > 0), local, fallback)
    else:
        noise, noise_region = finite_median(cat["local_rms"]), "catalogue's median local rms"
        inside = _near_catalogue(ref, cat, opts.match_radius_arcsec)
        local = np.full(len(ref), noise)
    if not np.any(inside):
        where = img.path if img is not None else catalogue
        raise FlintInputError(
            f"{reference}: none of its {len(ref)} sources lies in the field of {where}; "
            "check that the reference covers the same sky (or its RA/Dec columns: --ra-col/--dec-col)"
        )
    apparent = ref_flux * ref_pb
    ref_snr = np.where(inside, apparent / local, np.nan)
    expected = inside & (apparent >= opts.completeness_snr * local)

    # match components to reference sources (one-to-one), and spurious components
    idx, sep = match_catalogues(cat["ra"], cat["dec"], ref.ra_deg, ref.dec_deg, opts.match_radius_arcsec)
    matched = idx >= 0
    safe = np.where(matched, idx, 0)
    counterpart = np.zeros(len(cat["ra"]), dtype=bool)
    counterpart[idx[matched]] = True
    near_ref = nearest_separation_arcsec(cat["ra"], cat["dec"], ref.ra_deg, ref.dec_deg) <= opts.match_radius_arcsec
    spurious = ~near_ref
    comp_snr = np.asarray(cat["snr"], dtype=float)
    strong = comp_snr >= opts.spurious_snr
    if wgt_img is not None:
        w_at = sample(wgt_img, cat["ra"], cat["dec"])
        peak = float(np.nanmax(wgt_img.data))
        comp_inner = np.isfinite(w_at) & (w_at >= opts.inner_weight_fraction * peak) & (w_at > 0)
    else:
        comp_inner = np.ones(len(cat["ra"]), dtype=bool)
    if not ref.has_flux:  # position-only (ICRF-like): most real sources are not in it
        spurious = np.zeros(len(cat["ra"]), dtype=bool)

    n_ref = int(expected.sum())
    n_found = int((expected & matched).sum())
    cat_flux = np.where(matched, cat["flux"][safe] / cat_pb[safe], np.nan)
    snr = np.where(matched, comp_snr[safe], np.nan)
    dec_ref = np.radians(ref.dec_deg)
    dra = np.where(matched, ((cat["ra"][safe] - ref.ra_deg + 180.0) % 360.0 - 180.0) * np.cos(dec_ref) * 3600.0, np.nan)
    ddec = np.where(matched, (cat["dec"][safe] - ref.dec_deg) * 3600.0, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = cat_flux / ref_flux
    good = matched & inside & (snr >= opts.snr_min)
    bins = snr_bins(opts.snr_bins, comp_snr, spurious, comp_inner, ref_snr if ref.has_flux else np.full(len(ref), np.nan), matched)
    n_comp, n_spur = int(strong.sum()), int((strong & spurious).sum())
    n_comp_in, n_spur_in = int((strong & comp_inner).sum()), int((strong & comp_inner & spurious).sum())
    nan = float("nan")
    numbers: dict[str, Any] = dict(
        n_reference=n_ref,
        n_found=n_found,
        completeness=n_found / n_ref if n_ref else nan,
        n_flux=int(good.sum()),
        flux_ratio_median=finite_median(ratio[good]),
        flux_ratio_scatter=robust_scatter(ratio[good]),
        ra_offset_arcsec=finite_median(dra[good]),
        dec_offset_arcsec=finite_median(ddec[good]),
        ra_offset_scatter_arcsec=robust_scatter(dra[good]),
        dec_offset_scatter_arcsec=robust_scatter(ddec[good]),
        n_unmatched=int((strong & ~counterpart).sum()),
        noise_jy=float(noise),
        freq_hz=freq,
        noise_region=noise_region,
        thermal_jy=thermal,
        noise_to_thermal=float(noise) / thermal if np.isfinite(thermal) and thermal > 0 else nan,
        n_components=n_comp,
        n_spurious=n_spur if ref.has_flux else 0,
        spurious_fraction=(n_spur / n_comp if n_comp else nan) if ref.has_flux else nan,
        n_components_inner=n_comp_in,
        n_spurious_inner=n_spur_in if ref.has_flux else 0,
        spurious_fraction_inner=(n_spur_in / n_comp_in if n_comp_in else nan) if ref.has_flux else nan,
        bins=bins,
    )

    out_dir = Path(output_dir) if output_dir is not None else catalogue.parent
    prefix = opts.prefix or catalogue.name.rsplit(".", 1)[0].removesuffix(".comp").removesuffix(".image")
    paths = {
        "figure": out_dir / f"{prefix}.validation.png",
        "matches_table": out_dir / f"{prefix}.matches.csv",
        "summary_table": out_dir / f"{prefix}.validation.csv",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = np.flatnonzero(inside)
    write_matches(
        paths["matches_table"], ref=ref, rows=rows, ref_flux=ref_flux, apparent=apparent, local=local, ref_snr=ref_snr,
        expected=expected, matched=matched, cat=cat, safe=safe, cat_flux=cat_flux, cat_pb=cat_pb, snr=snr, sep=sep,
        dra=dra, ddec=ddec, ratio=ratio, good=good,
    )
    result = ValidationResult(figure=paths["figure"], matches_table=paths["matches_table"], summary_table=paths["summary_table"], **numbers)
    write_summary(paths["summary_table"], result, catalogue, reference, opts, ref.columns, [(t.ms, t.noise_jy, t.n_visibilities) for t in each])
    plot_validation(
        paths["figure"], img=img, ref=ref, rows=rows, expected=expected, matched=matched, cat=cat, counterpart=counterpart,
        spurious=spurious & strong, strong=strong, inner=inner_mask(wgt_img, img, opts.inner_weight_fraction) if (img is not None and wgt_img is not None) else None,
        ref_flux=ref_flux, ratio=ratio, good=good, dra=dra, ddec=ddec, result=result, title=prefix,
    )
    logger.info(
        "validation %s: completeness %.2f (%d/%d), flux ratio %.3f, spurious %d/%d (>= %g sigma), noise %.3g mJy/beam (%.2f x thermal)",
        prefix, result.completeness, n_found, n_ref, result.flux_ratio_median, n_spur, n_comp, opts.spurious_snr,
        1e3 * result.noise_jy, result.noise_to_thermal,
    )
    return result
