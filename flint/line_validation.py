"""Spectral-line cubes against the simulator's truth: profiles, line fluxes, velocities, continuum residuals.

:func:`validate_lines` reads a (continuum-subtracted, primary-beam corrected) image cube, e.g.
the line flow's mosaic, and the truth ``SB<sbid>.<field>.lines.csv`` (plus the continuum sky
``sky.csv``), and measures:

* a **profile** at each truth position: per channel, the flux density of a point source at
  that fixed position, fitted with the channel's restoring beam (``sum(d b) / sum(b^2)``
  over pixels within 1.5 beam major axes: sub-pixel positions are handled exactly);
* per line, the **integrated flux** (Jy km/s): the profile summed over channels within
  ``window_fwhm`` truth FWHM of the truth centre times each channel's velocity width, after
  subtracting the profile's mean over its line-free channels (a spectral baseline);
* the **centre velocity**: the flux-weighted mean velocity in that window;
* the **continuum residual** at each bright continuum source: the rms of its profile over the
  channels free of every line, over the **cube noise** there: the median rms of the same
  measurement at 8 positions on a ring of 4 beam major axes around it (same primary beam).

Velocities are optical HI velocities (:mod:`flint._sim_lines`).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from flint._sim_lines import LineFeature, channel_velocities, read_lines
from flint.cubes import CubeInfo, CubeReader, read_cube_info
from flint.errors import FlintImageError
from flint.options import BaseOptions

__all__ = ["LineValidationOptions", "LineMeasurement", "LineValidation", "validate_lines", "extract_profiles", "moment0_map"]

logger = logging.getLogger(__name__)


class LineValidationOptions(BaseOptions):
    """How line cubes are measured against the truth."""

    window_fwhm: float = Field(default=1.5, gt=0.0)
    """Half-width of the integration window, in truth FWHM around the truth centre."""
    bright_jy: float = Field(default=0.3, gt=0.0)
    """Continuum sources at least this bright (truth flux, Jy) are checked for continuum residuals."""
    ring_beams: float = Field(default=4.0, gt=1.0)
    """Radius (in beam major axes) of the ring of noise positions around each bright source."""


@dataclass(frozen=True)
class LineMeasurement:
    """One truth line measured in the cube."""

    name: str
    kind: str
    true_int_jy_kms: float
    int_jy_kms: float
    true_v0_kms: float
    v0_kms: float
    peak_snr: float
    """Peak of the profile over the profile noise in line-free channels."""

    @property
    def flux_ratio(self) -> float:
        """Integrated flux, recovered over true."""
        return self.int_jy_kms / self.true_int_jy_kms

    @property
    def velocity_error_kms(self) -> float:
        return self.v0_kms - self.true_v0_kms


@dataclass(frozen=True)
class LineValidation:
    """The numbers of :func:`validate_lines`."""

    lines: list[LineMeasurement]
    line_flux_ratio_median: float
    """Median over emission lines of integrated flux recovered over true."""
    line_velocity_error_kms: float
    """Median absolute centre-velocity error over all lines (km/s)."""
    absorption_flux_ratio: float
    """Integrated absorption recovered over true (NaN without an absorption feature)."""
    continuum_residual_over_noise: float
    """Largest, over the bright continuum sources, of the line-free rms at the source over the cube noise there."""
    residuals: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Bright source -> (line-free rms at the source, cube noise there) in Jy/beam."""
    channel_width_kms: float = float("nan")
    """Median channel width in velocity (km/s)."""
    line_free_channels: int = 0


def _beam_kernel(info: CubeInfo, chan: int, x0: float, y0: float, half: int) -> tuple[slice, slice, NDArray[np.float64]]:
    """Pixel box around (x0, y0) and the channel's restoring beam (unit peak) centred at (x0, y0)."""
    beams = info.require_beams()
    bmaj, bmin, bpa = beams.as_tuple(chan, 0)
    scale = float(np.sqrt(abs(np.linalg.det(info.wcs.pixel_scale_matrix)))) * 3600.0
    ny, nx = info.axes.ny, info.axes.nx
    xi, yi = int(round(x0)), int(round(y0))
    ys = slice(max(0, yi - half), min(ny, yi + half + 1))
    xs = slice(max(0, xi - half), min(nx, xi + half + 1))
    yy, xx = np.mgrid[ys, xs].astype(float)
    east = -(xx - x0) * scale
    north = (yy - y0) * scale
    pa = math.radians(bpa)
    u = east * math.sin(pa) + north * math.cos(pa)
    w = east * math.cos(pa) - north * math.sin(pa)
    return ys, xs, np.exp(-4 * math.log(2) * ((u / bmaj) ** 2 + (w / bmin) ** 2))


def extract_profiles(cube: str | os.PathLike[str], positions: dict[str, tuple[float, float]]) -> tuple[NDArray[np.float64], NDArray[np.float64], dict[str, NDArray[np.float64]]]:
    """Point-source flux density per channel at fixed (RA, Dec) positions (deg), one plane in memory.

    Returns ``(velocity_kms, channel_width_kms, {name: profile})``; NaN where a position is off the
    cube's data.
    """
    info = read_cube_info(cube)
    if not info.is_cube:
        raise FlintImageError(f"{cube}: a single-plane image; give a channel cube (the line flow's mosaic)")
    beams = info.require_beams()
    scale_arcsec = float(np.sqrt(abs(np.linalg.det(info.wcs.pixel_scale_matrix)))) * 3600.0
    pix = {n: info.wcs.world_to_pixel_values(ra, dec) for n, (ra, dec) in positions.items()}
    v, dv = channel_velocities(info.freqs_hz)
    out = {n: np.full(info.nchan, np.nan) for n in positions}
    with CubeReader(info.path, info) as reader:
        for c in range(info.nchan):
            if not beams.valid(c, 0):
                continue
            half = int(math.ceil(1.5 * beams.as_tuple(c, 0)[0] / scale_arcsec))
            plane = reader.plane(c, 0)
            for n, (x0, y0) in pix.items():
                ys, xs, b = _beam_kernel(info, c, float(x0), float(y0), half)
                d = plane[ys, xs]
                ok = np.isfinite(d)
                if b.size == 0 or ok.sum() < 0.8 * b.size:
                    continue
                out[n][c] = float(np.sum(d[ok] * b[ok]) / np.sum(b[ok] ** 2))
    return v, dv, out


def moment0_map(cube: str | os.PathLike[str], channels: NDArray[np.bool_] | None = None) -> tuple[NDArray[np.float64], Any]:
    """Moment-0 map (Jy/beam km/s) over ``channels`` (default: all), streamed plane by plane; with the celestial WCS."""
    info = read_cube_info(cube)
    _, dv = channel_velocities(info.freqs_hz)
    use = np.ones(info.nchan, dtype=bool) if channels is None else np.asarray(channels, dtype=bool)
    total = np.zeros((info.axes.ny, info.axes.nx))
    with CubeReader(info.path, info) as reader:
        for c in np.flatnonzero(use):
            total += np.nan_to_num(reader.plane(int(c), 0)) * dv[c]
    return total, info.wcs


def _rms(x: NDArray[np.float64]) -> float:
    x = x[np.isfinite(x)]
    return float(np.sqrt(np.mean(x**2))) if len(x) else float("nan")


def validate_lines(
    cube: str | os.PathLike[str],
    lines: str | os.PathLike[str] | list[LineFeature],
    sky: str | os.PathLike[str] | None = None,
    options: LineValidationOptions | None = None,
) -> LineValidation:
    """Measure a line cube against the truth (see the module docstring).

    Parameters
    ----------
    cube
        Continuum-subtracted, primary-beam-corrected image cube (the line flow's ``mosaic``).
    lines
        ``lines.csv`` from ``flint sim --lines`` (or its features).
    sky
        The continuum truth ``sky.csv`` for the continuum-residual check (``None``: not checked).
    """
    opts = options or LineValidationOptions()
    feats = read_lines(lines) if isinstance(lines, str | os.PathLike) else list(lines)
    info = read_cube_info(cube)
    v_all, _ = channel_velocities(info.freqs_hz)
    free = np.ones(info.nchan, dtype=bool)
    for ln in feats:
        free &= np.abs(v_all - ln.v0_kms) > opts.window_fwhm * ln.fwhm_kms
    positions = {ln.name: (ln.ra_deg, ln.dec_deg) for ln in feats}
    bright: dict[str, tuple[float, float]] = {}
    ring: dict[str, list[str]] = {}
    if sky is not None:
        from flint.sim import _offset_radec, read_sky

        model = read_sky(sky)
        bmaj_deg = float(np.nanmedian(info.require_beams().bmaj_arcsec)) / 3600.0
        for i, name in enumerate(model.name):
            if model.flux_jy[i] < opts.bright_jy:
                continue
            ra, dec = float(model.ra_deg[i]), float(model.dec_deg[i])
            x, y = info.wcs.world_to_pixel_values(ra, dec)
            if not (0 <= x < info.axes.nx and 0 <= y < info.axes.ny):
                continue
            bright[name] = (ra, dec)
            t = np.linspace(0, 2 * np.pi, 8, endpoint=False)
            r = opts.ring_beams * bmaj_deg
            rra, rdec = _offset_radec(ra, dec, r * np.cos(t), r * np.sin(t))
            ring[name] = [f"{name}@ring{k}" for k in range(8)]
            positions.update({f"{name}@ring{k}": (float(a), float(b)) for k, (a, b) in enumerate(zip(rra, rdec, strict=True))})
        positions.update(bright)
    v, dv, prof = extract_profiles(cube, positions)
    measured = []
    for ln in feats:
        p = prof[ln.name]
        win = np.abs(v - ln.v0_kms) <= opts.window_fwhm * ln.fwhm_kms
        base_ch = free & np.isfinite(p)
        base = float(np.mean(p[base_ch])) if base_ch.sum() >= 3 else 0.0
        noise = float(np.std(p[base_ch])) if base_ch.sum() >= 3 else float("nan")
        q = np.where(np.isfinite(p), p - base, 0.0)
        integral = float(np.sum(q[win] * dv[win]))
        weights = q[win] * dv[win]
        v0 = float(np.sum(weights * v[win]) / np.sum(weights)) if np.sum(weights) != 0 else float("nan")
        peak = float(np.max(np.abs(q[win]))) if win.any() else float("nan")
        measured.append(LineMeasurement(ln.name, ln.kind, ln.int_flux_jy_kms, integral, ln.v0_kms, v0, peak / noise if noise else float("nan")))
        logger.info("%s %s: %.4g / %.4g Jy km/s, v0 %.2f / %.2f km/s", ln.kind, ln.name, integral, ln.int_flux_jy_kms, v0, ln.v0_kms)
    residuals: dict[str, tuple[float, float]] = {}
    for name in bright:
        if not np.isfinite(prof[name][free]).any():  # in the cube's frame, but blank there (past the mosaic's edge)
            logger.info("continuum %s: no data at its position in %s; not checked", name, cube)
            continue
        at = _rms(prof[name][free])
        noise = float(np.nanmedian([_rms(prof[r][free]) for r in ring[name]]))
        residuals[name] = (at, noise)
        logger.info("continuum %s: line-free rms %.3g, cube noise %.3g Jy/beam", name, at, noise)
    emission = [m.flux_ratio for m in measured if m.kind == "emission"]
    absorption = [m.flux_ratio for m in measured if m.kind == "absorption"]
    verr = [abs(m.velocity_error_kms) for m in measured]
    ratios = [a / n for a, n in residuals.values() if n > 0]
    return LineValidation(
        lines=measured,
        line_flux_ratio_median=float(np.median(emission)) if emission else float("nan"),
        line_velocity_error_kms=float(np.median(verr)) if verr else float("nan"),
        absorption_flux_ratio=float(absorption[0]) if absorption else float("nan"),
        continuum_residual_over_noise=float(max(ratios)) if ratios else float("nan"),
        residuals=residuals,
        channel_width_kms=float(np.nanmedian(dv)),
        line_free_channels=int(free.sum()),
    )
