"""Validation outputs: the matches table, the summary table and the one-page figure."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from flint.images import Image
from flint.io import atomic_path
from flint.validation._catalogues import ReferenceCatalogue

if TYPE_CHECKING:
    from flint.validation._core import ValidationOptions, ValidationResult

__all__ = ["write_matches", "write_summary", "plot_validation", "summary_lines"]


def write_matches(
    path: Path,
    *,
    ref: ReferenceCatalogue,
    rows: NDArray[np.int64],
    ref_flux: NDArray[np.float64],
    apparent: NDArray[np.float64],
    local: NDArray[np.float64],
    ref_snr: NDArray[np.float64],
    expected: NDArray[np.bool_],
    matched: NDArray[np.bool_],
    cat: dict[str, NDArray[np.float64]],
    safe: NDArray[np.int64],
    cat_flux: NDArray[np.float64],
    cat_pb: NDArray[np.float64],
    snr: NDArray[np.float64],
    sep: NDArray[np.float64],
    dra: NDArray[np.float64],
    ddec: NDArray[np.float64],
    ratio: NDArray[np.float64],
    good: NDArray[np.bool_],
) -> None:
    """One row per reference source in the field, matched or not."""
    from astropy.table import Table

    nan = np.nan
    m = matched[rows]
    tab = Table(
        {
            "name": [ref.name[i] for i in rows],
            "ref_ra_deg": ref.ra_deg[rows],
            "ref_dec_deg": ref.dec_deg[rows],
            "ref_flux_jy": ref_flux[rows],
            "ref_apparent_flux_jy": apparent[rows],
            "local_rms_jy": local[rows],
            "ref_snr": ref_snr[rows],
            "expected": expected[rows],
            "matched": m,
            "used_in_stats": good[rows],
            "cat_index": np.where(m, safe[rows], -1),
            "cat_ra_deg": np.where(m, cat["ra"][safe[rows]], nan),
            "cat_dec_deg": np.where(m, cat["dec"][safe[rows]], nan),
            "cat_flux_jy": cat_flux[rows],
            "pb": np.where(m, cat_pb[safe[rows]], nan),
            "snr": snr[rows],
            "sep_arcsec": sep[rows],
            "dra_arcsec": dra[rows],
            "ddec_arcsec": ddec[rows],
            "flux_ratio": ratio[rows],
        }
    )
    with atomic_path(path) as tmp:
        tab.write(tmp, format="ascii.csv")


def write_summary(
    path: Path,
    result: ValidationResult,
    catalogue: Path,
    reference: Path,
    opts: ValidationOptions,
    columns: str,
    thermal: list[tuple[Path, float, int]],
) -> None:
    """The summary numbers as ``metric,value`` rows (CSV)."""
    def cell(v: Any) -> str:
        text = "" if v is None else str(v)
        return f'"{text}"' if ("," in text or '"' in text) else text

    lines = ["metric,value", f"catalogue,{cell(catalogue)}", f"reference,{cell(reference)}", f"reference_columns,{cell(columns)}"]
    lines += [f"{k},{cell(v)}" for k, v in result.numbers().items()]
    lines += [f"thermal_jy[{cell(ms.name)}],{noise}" for ms, noise, _ in thermal]
    lines += [f"n_visibilities[{cell(ms.name)}],{n}" for ms, _, n in thermal]
    lines += [
        f"match_radius_arcsec,{opts.match_radius_arcsec}",
        f"snr_min,{opts.snr_min}",
        f"completeness_snr,{opts.completeness_snr}",
        f"spurious_snr,{opts.spurious_snr}",
        f"inner_weight_fraction,{opts.inner_weight_fraction}",
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _fmt(v: float, scale: float = 1.0, spec: str = ".3f") -> str:
    return "n/a" if v is None or not math.isfinite(v) else format(v * scale, spec)


def summary_lines(result: ValidationResult) -> list[str]:
    """The headline numbers as text lines (figure panel and CLI)."""
    r = result
    freq = f"{r.freq_hz / 1e6:.3f} MHz" if r.freq_hz else "unknown"
    lines = [
        f"frequency            {freq}",
        f"noise                {_fmt(r.noise_jy, 1e3)} mJy/beam ({r.noise_region})",
        f"thermal (1 beam)     {_fmt(r.thermal_jy, 1e3)} mJy/beam; noise/thermal {_fmt(r.noise_to_thermal, spec='.2f')}",
        f"completeness         {_fmt(r.completeness)} ({r.n_found}/{r.n_reference})",
        f"flux ratio           {_fmt(r.flux_ratio_median)} +- {_fmt(r.flux_ratio_scatter)} (n={r.n_flux})",
        f"RA offset            {_fmt(r.ra_offset_arcsec, spec='.2f')}\" +- {_fmt(r.ra_offset_scatter_arcsec, spec='.2f')}\"",
        f"Dec offset           {_fmt(r.dec_offset_arcsec, spec='.2f')}\" +- {_fmt(r.dec_offset_scatter_arcsec, spec='.2f')}\"",
        f"spurious             {r.n_spurious}/{r.n_components} ({_fmt(r.spurious_fraction, spec='.2f')}); inner {r.n_spurious_inner}/{r.n_components_inner} ({_fmt(r.spurious_fraction_inner, spec='.2f')})",
        f"unmatched components {r.n_unmatched}",
        "SNR bin    spurious (all)   spurious (inner)  completeness",
    ]
    for b in r.bins:
        span = f"{b.lo:g}-{b.hi:g}" if math.isfinite(b.hi) else f">={b.lo:g}"
        lines.append(
            f"{span:9s}  {b.n_spurious:3d}/{b.n_components:<3d} {_fmt(b.spurious_fraction, spec='.2f'):>5s}"
            f"   {b.n_spurious_inner:3d}/{b.n_components_inner:<3d} {_fmt(b.spurious_fraction_inner, spec='.2f'):>5s}"
            f"   {b.n_found:3d}/{b.n_reference:<3d} {_fmt(b.completeness, spec='.2f'):>5s}"
        )
    return lines


def plot_validation(
    path: Path,
    *,
    img: Image | None,
    ref: ReferenceCatalogue,
    rows: NDArray[np.int64],
    expected: NDArray[np.bool_],
    matched: NDArray[np.bool_],
    cat: dict[str, NDArray[np.float64]],
    counterpart: NDArray[np.bool_],
    spurious: NDArray[np.bool_],
    strong: NDArray[np.bool_],
    inner: NDArray[np.bool_] | None,
    ref_flux: NDArray[np.float64],
    ratio: NDArray[np.float64],
    good: NDArray[np.bool_],
    dra: NDArray[np.float64],
    ddec: NDArray[np.float64],
    result: ValidationResult,
    title: str,
) -> None:
    """One page: the field (matched circles, spurious red crosses, missed squares), flux, astrometry, bins, numbers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # the field across the whole width (mosaics are wide), the three plots under it, then the
    # numbers in a type size that stays readable when a notebook shows the page 900 px wide
    fig = Figure(figsize=(15, 15), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplot_mosaic([["field"] * 3, ["flux", "astro", "bins"], ["text"] * 3], height_ratios=[1.5, 1, 0.45])
    fig.suptitle(f"flint validation: {title}")

    ax = axes["field"]
    missed = expected & ~matched
    if img is not None:
        from astropy.visualization import ImageNormalize, PercentileInterval

        finite = img.data[np.isfinite(img.data)]
        norm = ImageNormalize(finite if finite.size else np.zeros(1), interval=PercentileInterval(99.5))
        ax.imshow(img.data, origin="lower", cmap="gray_r", norm=norm)
        if inner is not None and np.any(inner):
            ax.contour(inner.astype(float), levels=[0.5], colors="tab:green", linewidths=0.8, linestyles="--")

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
    ax.scatter(x, y, s=14, marker=".", color="tab:blue", label="reference")
    if np.any(counterpart):
        x, y = to_xy(cat["ra"][counterpart], cat["dec"][counterpart])
        ax.scatter(x, y, s=70, facecolors="none", edgecolors="tab:blue", label="matched component")
    extra = strong & ~counterpart & ~spurious
    if np.any(extra):
        x, y = to_xy(cat["ra"][extra], cat["dec"][extra])
        ax.scatter(x, y, s=40, marker="+", color="tab:orange", label="extra component near a source")
    if np.any(spurious):
        x, y = to_xy(cat["ra"][spurious], cat["dec"][spurious])
        ax.scatter(x, y, s=45, marker="x", color="red", label=f"spurious ({int(spurious.sum())})")
    if np.any(missed):
        x, y = to_xy(ref.ra_deg[missed], ref.dec_deg[missed])
        ax.scatter(x, y, s=90, marker="s", facecolors="none", edgecolors="magenta", label=f"expected, missed ({int(missed.sum())})")
    ax.legend(loc="upper right", fontsize="small")
    ax.set_title("field" + (" (dashed: inner region)" if inner is not None else ""))

    ax = axes["flux"]
    sel = matched & np.isfinite(ratio)
    ax.scatter(ref_flux[sel & ~good], ratio[sel & ~good], s=12, color="0.6", label="not used (below snr_min or outside field)")
    ax.scatter(ref_flux[good], ratio[good], s=18, color="tab:blue", label="used")
    ax.axhline(1.0, color="k", lw=0.8)
    if math.isfinite(result.flux_ratio_median):
        ax.axhline(result.flux_ratio_median, color="tab:red", ls="--", lw=1, label=f"median {result.flux_ratio_median:.3f}")
    if np.any(sel) and np.all(ref_flux[sel] > 0):
        ax.set_xscale("log")
    ax.set_xlabel("reference flux at image frequency (Jy)")
    ax.set_ylabel("catalogue / reference flux")
    ax.legend(fontsize="small")
    ax.set_title("flux scale")

    ax = axes["astro"]
    ax.scatter(dra[sel & ~good], ddec[sel & ~good], s=12, color="0.6")
    ax.scatter(dra[good], ddec[good], s=18, color="tab:blue")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    if math.isfinite(result.ra_offset_arcsec):
        ax.plot([result.ra_offset_arcsec], [result.dec_offset_arcsec], "r+", ms=14, mew=2, label="median")
        ax.legend(fontsize="small")
    ax.set_xlabel("RA offset x cos(Dec) (arcsec)")
    ax.set_ylabel("Dec offset (arcsec)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title("astrometry (catalogue - reference)")

    ax = axes["bins"]
    labels = [f"{b.lo:g}-{b.hi:g}" if math.isfinite(b.hi) else f">={b.lo:g}" for b in result.bins]
    pos = np.arange(len(labels))
    ax.bar(pos - 0.27, [b.spurious_fraction for b in result.bins], width=0.27, color="red", label="spurious (all)")
    ax.bar(pos, [b.spurious_fraction_inner for b in result.bins], width=0.27, color="salmon", label="spurious (inner)")
    ax.bar(pos + 0.27, [b.completeness for b in result.bins], width=0.27, color="tab:blue", label="completeness")
    ax.set_xticks(pos, labels)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("signal-to-noise bin")
    ax.set_ylabel("fraction")
    ax.legend(fontsize="small")
    ax.set_title("reliability and completeness")

    ax = axes["text"]
    ax.axis("off")
    lines = summary_lines(result)
    half = (len(lines) + 1) // 2
    for k, part in enumerate((lines[:half], lines[half:])):  # two columns
        ax.text(0.56 * k, 1.0, "\n".join(part), va="top", family="monospace", fontsize=11, transform=ax.transAxes)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
