"""Numerics of validation: cross-matching, the inner region, noise, spurious and completeness bins."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from flint.images import Image, robust_rms

__all__ = [
    "SnrBin",
    "match_catalogues",
    "nearest_separation_arcsec",
    "sample",
    "inner_mask",
    "inner_noise",
    "snr_bins",
    "bin_label",
    "robust_scatter",
    "finite_median",
]


@dataclass(frozen=True)
class SnrBin:
    """Spurious fraction and completeness in one signal-to-noise bin ``[lo, hi)``.

    Components are binned by their own ``peak / local rms``; reference sources by their
    apparent peak at the image frequency over the local noise.
    """

    lo: float
    hi: float
    n_components: int
    """Catalogue components in the bin."""
    n_spurious: int
    """Of those, with no reference source within the match radius."""
    n_components_inner: int
    """Components in the bin inside the inner region."""
    n_spurious_inner: int
    n_reference: int
    """Reference sources in the field in the bin."""
    n_found: int
    """Of those, matched by a component."""

    @property
    def spurious_fraction(self) -> float:
        return self.n_spurious / self.n_components if self.n_components else float("nan")

    @property
    def spurious_fraction_inner(self) -> float:
        return self.n_spurious_inner / self.n_components_inner if self.n_components_inner else float("nan")

    @property
    def completeness(self) -> float:
        return self.n_found / self.n_reference if self.n_reference else float("nan")

    @property
    def label(self) -> str:
        return bin_label(self.lo, self.hi)


def bin_label(lo: float, hi: float) -> str:
    """``snr5_7`` / ``snr20_up``: the key of a bin in flat number dictionaries."""
    return f"snr{lo:g}_{hi:g}" if math.isfinite(hi) else f"snr{lo:g}_up"


def _unit_vectors(ra: NDArray[np.float64], dec: NDArray[np.float64]) -> NDArray[np.float64]:
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


def _nearest(ra1: NDArray[np.float64], dec1: NDArray[np.float64], ra2: NDArray[np.float64], dec2: NDArray[np.float64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """For each entry of list 1: index of its nearest entry of list 2 and the separation (arcsec)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(_unit_vectors(ra2, dec2))
    chord, j = tree.query(_unit_vectors(ra1, dec1), k=1)
    sep = np.degrees(2.0 * np.arcsin(np.clip(np.asarray(chord) / 2.0, 0.0, 1.0))) * 3600.0
    return np.asarray(j, dtype=np.int64), np.asarray(sep, dtype=np.float64)


def nearest_separation_arcsec(ra1: NDArray[np.float64], dec1: NDArray[np.float64], ra2: NDArray[np.float64], dec2: NDArray[np.float64]) -> NDArray[np.float64]:
    """Separation (arcsec) of each entry of list 1 from its nearest entry of list 2 (inf if none)."""
    if len(ra1) == 0 or len(ra2) == 0:
        return np.full(len(ra1), np.inf)
    return _nearest(ra1, dec1, ra2, dec2)[1]


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
    nearest, dist = _nearest(np.asarray(ra1, float), np.asarray(dec1, float), np.asarray(ra2, float), np.asarray(dec2, float))
    for i in np.argsort(dist, kind="stable"):
        j = nearest[i]
        if dist[i] <= radius_arcsec and idx[j] < 0:
            idx[j] = i
            sep[j] = dist[i]
    return idx, sep


def sample(image: Image, ra: NDArray[np.float64], dec: NDArray[np.float64]) -> NDArray[np.float64]:
    """Pixel values at sky positions (nearest pixel; NaN outside the image)."""
    if len(ra) == 0:
        return np.zeros(0)
    x, y = image.wcs.world_to_pixel_values(ra, dec)
    xi = np.round(np.asarray(x, dtype=float))
    yi = np.round(np.asarray(y, dtype=float))
    ny, nx = image.data.shape
    inside = np.isfinite(xi) & np.isfinite(yi) & (xi >= 0) & (yi >= 0) & (xi < nx) & (yi < ny)
    out = np.full(len(ra), np.nan)
    out[inside] = image.data[yi[inside].astype(int), xi[inside].astype(int)]
    return out


def _weight_on_grid(weight: Image, grid: Image) -> NDArray[np.float64]:
    """The weight map on ``grid``'s pixels (the same array when the grids agree)."""
    if weight.data.shape == grid.data.shape and np.allclose(weight.wcs.wcs.crpix, grid.wcs.wcs.crpix) and np.allclose(weight.wcs.wcs.crval, grid.wcs.wcs.crval):
        return weight.data
    ny, nx = grid.data.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    ra, dec = grid.wcs.pixel_to_world_values(xx.ravel(), yy.ravel())
    return sample(weight, np.asarray(ra), np.asarray(dec)).reshape(ny, nx)


def inner_mask(weight: Image, grid: Image, fraction: float) -> NDArray[np.bool_]:
    """Pixels of ``grid`` where the linmos weight is at least ``fraction`` x its peak."""
    w = _weight_on_grid(weight, grid)
    peak = float(np.nanmax(weight.data)) if np.any(np.isfinite(weight.data)) else 0.0
    return np.asarray(np.isfinite(w) & (w > 0) & (w >= fraction * peak))


def inner_noise(image: Image | None, rms: Image | None, weight: Image | None, fraction: float) -> tuple[float, str]:
    """The image noise and where it was measured.

    Median of the BANE rms map where the weight is >= ``fraction`` x peak (inner region);
    without a weight map over the whole rms map; without an rms map the robust rms of
    the image's pixels (inner region when the weight is known). ``NaN`` without an image.
    """
    if rms is not None:
        vals = rms.data
        where = "BANE rms map"
        if weight is not None:
            vals = vals[inner_mask(weight, rms, fraction)]
            where += f", inner: weight >= {fraction:g} x peak"
        else:
            where += ", whole image"
        vals = vals[np.isfinite(vals) & (vals > 0)]
        return (float(np.median(vals)) if vals.size else float("nan")), where
    if image is not None:
        if weight is not None:
            return robust_rms(image.data[inner_mask(weight, image, fraction)]), f"image pixels (robust), inner: weight >= {fraction:g} x peak"
        return robust_rms(image.data), "image pixels (robust), whole image"
    return float("nan"), "none"


def snr_bins(
    edges: tuple[float, ...],
    comp_snr: NDArray[np.float64],
    comp_spurious: NDArray[np.bool_],
    comp_inner: NDArray[np.bool_],
    ref_snr: NDArray[np.float64],
    ref_matched: NDArray[np.bool_],
) -> tuple[SnrBin, ...]:
    """Count components and reference sources in the bins ``[e0, e1), ..., [e_last, inf)``."""
    bounds = list(edges) + [math.inf]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        c = (comp_snr >= lo) & (comp_snr < hi)
        r = (ref_snr >= lo) & (ref_snr < hi)
        out.append(
            SnrBin(
                lo=float(lo),
                hi=float(hi),
                n_components=int(c.sum()),
                n_spurious=int((c & comp_spurious).sum()),
                n_components_inner=int((c & comp_inner).sum()),
                n_spurious_inner=int((c & comp_inner & comp_spurious).sum()),
                n_reference=int(r.sum()),
                n_found=int((r & ref_matched).sum()),
            )
        )
    return tuple(out)


def robust_scatter(x: NDArray[np.float64]) -> float:
    """1.4826 x the median absolute deviation of the finite values (NaN for fewer than 2)."""
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan")
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def finite_median(x: NDArray[np.float64]) -> float:
    """Median of the finite values (NaN if none)."""
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")
