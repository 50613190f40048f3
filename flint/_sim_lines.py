"""Spectral lines for the simulator (``flint sim --lines N``): HI emission and one absorption feature.

``SimOptions(lines=N)`` adds, on top of the continuum sky of :mod:`flint.sim`:

* ``N`` HI-like **emission-line** point sources (no continuum), each a Gaussian in velocity
  (centre ``v0``, FWHM, peak flux), placed near the beam centres away from the continuum
  sources, with centres inside the band so that ``line_fwhm_kms`` fits on both sides;
* one **absorption** feature against the brightest continuum source: its spectrum is
  multiplied by ``1 - depth * g(v)`` (``g`` a unit-peak Gaussian).

Velocities are **optical** (``v = c (f0 / f - 1)``, ``f0`` = :data:`HI_REST_HZ`); a profile is
sampled at the channel centres. The truth goes beside the Measurement Sets as
``SB<sbid>.<field>.lines.csv`` (one row per feature)::

    name, kind, ra_deg, dec_deg, v0_kms, fwhm_kms, peak_jy, freq0_hz, int_flux_jy_kms, continuum_name

``peak_jy`` is the intrinsic (not primary-beam attenuated) peak, negative for absorption
(``-depth`` times the continuum flux at the line centre); ``int_flux_jy_kms`` is the
profile's integral over velocity (``peak * fwhm * sqrt(pi / (4 ln 2))``).

The zoom preset (``SimOptions(zoom=True)``, ``flint sim --zoom``) is ASKAP's zoom mode
near HI at low redshift: 64 channels of 18.5 kHz (1 MHz / 54) from 1.3995 GHz, for the
options not given explicitly.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from flint.io import atomic_path
from flint.primary_beam import angular_separation_deg
from flint.sim import SkyModel, _offset_radec  # flint.sim imports this module lazily

if TYPE_CHECKING:
    from flint.sim import SimOptions

__all__ = [
    "HI_REST_HZ",
    "C_KMS",
    "ZOOM_PRESET",
    "LineFeature",
    "freq_to_velocity",
    "velocity_to_freq",
    "channel_velocities",
    "line_profile",
    "check_line_options",
    "make_lines",
    "with_lines",
    "write_lines_csv",
    "read_lines",
    "line_free_channels",
]

HI_REST_HZ = 1420.405751e6
"""Rest frequency of the HI 21-cm line (Hz)."""
C_KMS = 299792.458
"""Speed of light (km/s)."""

#: ASKAP's zoom mode near HI: 64 channels of 18.5 kHz (1 MHz / 54)
ZOOM_PRESET: dict[str, Any] = {"n_channels": 64, "channel_width_hz": 1.0e6 / 54, "freq_start_hz": 1.3995e9}

_LINE_STREAM = 21  # random stream of the line sky (the continuum sky is unchanged by --lines)
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def freq_to_velocity(freq_hz: Any) -> Any:
    """Optical HI velocity (km/s) of a frequency: ``c (f0 / f - 1)``.

    >>> round(float(freq_to_velocity(HI_REST_HZ)), 6)
    0.0
    """
    return C_KMS * (HI_REST_HZ / np.asarray(freq_hz, dtype=float) - 1.0)


def velocity_to_freq(v_kms: Any) -> Any:
    """Frequency (Hz) of an optical HI velocity (km/s): ``f0 / (1 + v / c)``."""
    return HI_REST_HZ / (1.0 + np.asarray(v_kms, dtype=float) / C_KMS)


def channel_velocities(freqs_hz: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Optical velocity of each channel centre and each channel's width in velocity (km/s, > 0)."""
    f = np.asarray(freqs_hz, dtype=float)
    v = np.asarray(freq_to_velocity(f), dtype=float)
    if len(f) < 2:
        return v, np.full(len(f), np.nan)
    df = np.gradient(f)
    dv = np.abs(C_KMS * HI_REST_HZ / f**2 * df)
    return v, dv


def line_profile(v_kms: Any, v0_kms: float, fwhm_kms: float) -> NDArray[np.float64]:
    """Unit-peak Gaussian in velocity."""
    s = fwhm_kms * _FWHM_TO_SIGMA
    return np.exp(-0.5 * ((np.asarray(v_kms, dtype=float) - v0_kms) / s) ** 2)


@dataclass(frozen=True)
class LineFeature:
    """One simulated line (a row of ``lines.csv``)."""

    name: str
    kind: str
    """``emission`` or ``absorption``."""
    ra_deg: float
    dec_deg: float
    v0_kms: float
    """Centre, optical velocity (km/s)."""
    fwhm_kms: float
    peak_jy: float
    """Intrinsic peak flux density (Jy; negative for absorption)."""
    continuum_name: str = ""
    """The continuum source absorbed (absorption only)."""

    @property
    def freq0_hz(self) -> float:
        """Frequency of the line centre (Hz)."""
        return float(velocity_to_freq(self.v0_kms))

    @property
    def int_flux_jy_kms(self) -> float:
        """Integral of the profile over velocity (Jy km/s)."""
        return self.peak_jy * self.fwhm_kms * math.sqrt(math.pi / (4.0 * math.log(2.0)))


def _band_velocities(opts: SimOptions) -> tuple[float, float, float]:
    """(lowest, highest velocity of the band's channel centres, narrowest channel width) in km/s."""
    freqs = opts.freq_start_hz + opts.channel_width_hz * np.arange(opts.n_channels)
    v, dv = channel_velocities(freqs)
    width = float(np.nanmin(dv)) if opts.n_channels > 1 else float(C_KMS * opts.channel_width_hz / opts.freq_start_hz)
    return float(v.min()), float(v.max()), width


def check_line_options(opts: SimOptions) -> None:
    """Refuse line options that cannot give resolved lines inside the band (raises ValueError naming the flags)."""
    lo, hi = opts.line_fwhm_kms
    if not 0 < lo <= hi:
        raise ValueError(f"--line-fwhm-kms must be two widths 0 < low <= high (got {lo} {hi})")
    plo, phi = opts.line_peak_jy
    if not 0 < plo <= phi:
        raise ValueError(f"--line-peak-jy must be two fluxes 0 < low <= high (got {plo} {phi})")
    if opts.lines == 0:
        return
    if opts.n_bright < 1:
        raise ValueError("--lines needs a bright continuum source for the absorption feature (--n-bright 1 or more)")
    vmin, vmax, dv = _band_velocities(opts)
    if lo < 2 * dv:
        raise ValueError(
            f"--line-fwhm-kms {lo}: narrower than two channels ({dv:.3g} km/s each); use --zoom or narrower --channel-width-hz"
        )
    if vmax - vmin < 3 * hi:
        raise ValueError(
            f"--n-channels {opts.n_channels}: the band spans {vmax - vmin:.3g} km/s, too little for lines of "
            f"{hi} km/s FWHM (need {3 * hi:.3g}); give more channels (--zoom) or smaller --line-fwhm-kms"
        )


def make_lines(opts: SimOptions, sky: SkyModel, centres: list[tuple[float, float]]) -> list[LineFeature]:
    """The seeded line features of a simulation (emission sources, then the absorption)."""
    rng = np.random.default_rng([opts.seed, _LINE_STREAM])
    vmin, vmax, _ = _band_velocities(opts)
    f_mid = opts.freq_start_hz + 0.5 * opts.channel_width_hz * (opts.n_channels - 1)
    fwhm_pb = opts.pb_fwhm_deg * opts.pb_ref_freq_hz / f_mid
    min_sep = opts.min_separation_arcsec / 3600.0
    ras, decs = list(sky.ra_deg), list(sky.dec_deg)
    out: list[LineFeature] = []

    def centre_velocity(fwhm: float) -> float:
        margin = 1.5 * fwhm
        return float(rng.uniform(vmin + margin, max(vmin + margin, vmax - margin)))

    for i in range(opts.lines):
        b = i % len(centres)
        for _ in range(200):
            r = rng.uniform(0.05, 0.2) * fwhm_pb
            t = rng.uniform(0, 2 * np.pi)
            ra, dec = _offset_radec(centres[b][0], centres[b][1], np.array([r * np.cos(t)]), np.array([r * np.sin(t)]))
            if not ras or np.min(angular_separation_deg(ras, decs, ra[0], dec[0])) >= min_sep:
                break
        ras.append(float(ra[0]))
        decs.append(float(dec[0]))
        fwhm = float(rng.uniform(*opts.line_fwhm_kms))
        peak = float(rng.uniform(*opts.line_peak_jy))
        out.append(LineFeature(f"LINE{i:03d}", "emission", float(ra[0]), float(dec[0]), centre_velocity(fwhm), fwhm, peak))
    n_bright = min(opts.n_bright, len(sky))
    if n_bright:
        k = int(np.argmax(sky.flux_jy[:n_bright]))
        fwhm = float(rng.uniform(*opts.line_fwhm_kms))
        v0 = centre_velocity(fwhm)
        s0 = float(sky.flux_at(np.array([velocity_to_freq(v0)]))[k, 0])
        out.append(
            LineFeature("ABS000", "absorption", float(sky.ra_deg[k]), float(sky.dec_deg[k]), v0, fwhm,
                        -opts.line_absorption_depth * s0, sky.name[k])
        )
    return out


def with_lines(sky: SkyModel, lines: list[LineFeature]) -> SkyModel:
    """The sky the visibilities are predicted from: continuum sources plus the line features."""
    emission = [ln for ln in lines if ln.kind == "emission"]
    absorption = [ln for ln in lines if ln.kind == "absorption"]
    names = list(sky.name) + [ln.name for ln in emission]
    ra = np.concatenate([sky.ra_deg, [ln.ra_deg for ln in emission]])
    dec = np.concatenate([sky.dec_deg, [ln.dec_deg for ln in emission]])
    flux = np.concatenate([sky.flux_jy, np.zeros(len(emission))])
    alpha = np.concatenate([sky.alpha, np.zeros(len(emission))])
    index = {n: i for i, n in enumerate(sky.name)}
    return _LineSky(
        names, ra, dec, flux, alpha, sky.ref_freq_hz,
        emission=tuple((len(sky) + i, ln) for i, ln in enumerate(emission)),
        absorption=tuple((index[ln.continuum_name], ln) for ln in absorption),
    )


@dataclass(frozen=True)
class _LineSky(SkyModel):
    """A :class:`flint.sim.SkyModel` whose spectra carry emission lines and absorption."""

    emission: tuple[tuple[int, LineFeature], ...] = ()
    absorption: tuple[tuple[int, LineFeature], ...] = ()

    def flux_at(self, freq_hz: NDArray[np.float64]) -> NDArray[np.float64]:
        """Flux (source, channel): continuum, plus emission profiles, times absorption."""
        out = np.array(super().flux_at(freq_hz), dtype=float)
        v = freq_to_velocity(freq_hz)
        for i, ln in self.emission:
            out[i] += ln.peak_jy * line_profile(v, ln.v0_kms, ln.fwhm_kms)
        for i, ln in self.absorption:
            s0 = float(super().flux_at(np.array([ln.freq0_hz]))[i, 0])
            depth = -ln.peak_jy / s0 if s0 > 0 else 0.0
            out[i] *= 1.0 - depth * line_profile(v, ln.v0_kms, ln.fwhm_kms)
        return out


_COLUMNS = ("name", "kind", "ra_deg", "dec_deg", "v0_kms", "fwhm_kms", "peak_jy", "freq0_hz", "int_flux_jy_kms", "continuum_name")


def write_lines_csv(path: str | os.PathLike[str], lines: list[LineFeature]) -> Path:
    """Write the line truth (atomically)."""
    out = Path(path)
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_COLUMNS)
        for ln in lines:
            w.writerow([
                ln.name, ln.kind, f"{ln.ra_deg:.8f}", f"{ln.dec_deg:.8f}", f"{ln.v0_kms:.4f}", f"{ln.fwhm_kms:.4f}",
                f"{ln.peak_jy:.6g}", f"{ln.freq0_hz:.3f}", f"{ln.int_flux_jy_kms:.6g}", ln.continuum_name,
            ])
    return out


def read_lines(path: str | os.PathLike[str]) -> list[LineFeature]:
    """Read ``lines.csv`` (as :func:`write_lines_csv` wrote it)."""
    from flint.errors import FlintInputError

    p = Path(path)
    if not p.is_file():
        raise FlintInputError(f"{p}: no such line truth file; give the SB<sbid>.<field>.lines.csv that flint sim --lines wrote")
    with open(p, newline="") as fh:
        rows = list(csv.DictReader(fh))
    try:
        return [
            LineFeature(r["name"], r["kind"], float(r["ra_deg"]), float(r["dec_deg"]), float(r["v0_kms"]),
                        float(r["fwhm_kms"]), float(r["peak_jy"]), r.get("continuum_name") or "")
            for r in rows
        ]
    except (KeyError, ValueError) as exc:
        raise FlintInputError(f"{p}: not a line truth file ({exc}); columns are {', '.join(_COLUMNS)}") from None


def line_free_channels(lines: list[LineFeature], freqs_hz: Any, n_fwhm: float = 1.5) -> str:
    """Channels farther than ``n_fwhm`` FWHM from every line centre, as ranges ``0~9,40~63``
    (the form of ``flint subtract --fit-channels``); ``""`` when none is free.

    >>> ln = LineFeature("L", "emission", 0.0, 0.0, 0.0, 8.0, 1.0)
    >>> line_free_channels([ln], velocity_to_freq(np.arange(-40.0, 41.0, 5.0)))
    '0~5,11~16'
    """
    v = np.asarray(freq_to_velocity(freqs_hz), dtype=float)
    free = np.ones(len(v), dtype=bool)
    for ln in lines:
        free &= np.abs(v - ln.v0_kms) > n_fwhm * ln.fwhm_kms
    ranges = []
    start = None
    for i, f in enumerate([*free.tolist(), False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            ranges.append(f"{start}~{i - 1}")
            start = None
    return ",".join(ranges)
