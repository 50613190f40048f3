"""Simulated ASKAP observations with a known sky: flint's embedded default data.

:func:`simulate_bandpass` writes one Measurement Set per beam of PKS B1934-638 placed
at each beam's centre (as ASKAP observes it); :func:`simulate_field` writes one
Measurement Set per beam of a science field of seeded random point sources. Both
corrupt the sky with the same per-beam, per-antenna bandpasses (the science field
also gets slow antenna phase drifts for self-calibration to remove), add thermal
noise and optionally RFI, and write the truth beside the data:

``SB<sbid>.<field>.sky.csv`` / ``.sky.fits``
    the sky catalogue (science field): ``name, ra_deg, dec_deg, flux_jy, alpha, ref_freq_hz``
``SB<sbid>.<field>.beams.csv``
    beam number and phase centre of every beam
``SB<sbid>.<field>.truth.npz``
    ``bandpass[beam, ant, chan, pol]`` (pol = X, Y), ``gains[beam, time, ant, chan, pol]``
    (bandpass x phase drift), ``times`` (MJD s), ``freqs_hz``, ``beams``, and
    ``rfi_mask_beamNN[row, chan]`` where RFI was injected

Visibilities are predicted, corrupted and written one chunk of whole integrations at a
time (``chunk_mb``), and the large truth arrays are streamed into the ``.npz``, so peak
memory is set by the chunk, not by the number of integrations or channels. Noise and RFI
of integration ``t`` come from a generator seeded by ``(seed, stream, beam, t)``: same
options and seed give the same bytes, whatever ``chunk_mb``. The Measurement Sets are in the sky frame and
say so (main-table keyword ``FLINT_FRAME = "sky"``, the rule of :mod:`flint.askap`).
``SimOptions(askap_raw=True)`` writes what the ASKAP correlator writes instead (raw,
instrument frame, 36-field calibrator MSs; see :mod:`flint._sim_askap`).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from flint import _askap, _sim_pol
from flint._sim_ms import write_ms as _write_ms
from flint._sim_stream import (
    Chunk,
    TruthWriter,
    add_rfi,
    chunk_times,
    corrupt,
    rfi_cells,
    time_rngs,
)
from flint.io import atomic_path
from flint.naming import beam_ms_name, field_name, product_name
from flint.options import BaseOptions
from flint.primary_beam import angular_separation_deg, gaussian_pb

__all__ = [
    "SimOptions",
    "SimResult",
    "SkyModel",
    "simulate_bandpass",
    "simulate_field",
    "predict_model",
    "read_sky",
    "uvw_for",
    "noise_per_visibility",
    "CALIBRATOR_FIELD",
]

logger = logging.getLogger(__name__)

C_LIGHT = 299792458.0
CALIBRATOR_FIELD = "B1934-638"
_ANCHOR = 16  # channels between exact phasors in predict_model
_SIGN = 1.0  # visibility phase convention (checked against wsclean): V = sum S exp(+2 pi i (ul + vm + w(n-1)))


class SimOptions(BaseOptions):
    """How to simulate an ASKAP-like observation. Defaults run in seconds on 2 cores."""

    sbid: int = Field(default=101, ge=0)
    """Scheduling-block id of the science observation (used in file names)."""
    bandpass_sbid: int = Field(default=100, ge=0)
    """Scheduling-block id of the bandpass-calibrator observation."""
    field: str = "SIM_FIELD"
    """Field name of the science observation."""
    ra_deg: float = Field(default=150.0, ge=0.0, lt=360.0)
    """Right ascension (J2000, deg) of beam 0 of the science field."""
    dec_deg: float = Field(default=-30.0, ge=-90.0, le=90.0)
    """Declination (J2000, deg) of beam 0 of the science field."""
    n_beams: int = Field(default=3, ge=1, le=36)
    """Number of formed beams (one Measurement Set each)."""
    footprint: Literal["square", "closepack"] = "square"
    """Beam footprint shape (``square_6x6`` or ``closepack36``-like)."""
    beam_pitch_deg: float = Field(default=0.9, gt=0.0, le=3.0)
    """Distance between neighbouring beams (deg)."""
    pb_fwhm_deg: float = Field(default=1.0, gt=0.0)
    """FWHM (deg) of the Gaussian primary beam at ``pb_ref_freq_hz``; scales as 1/frequency."""
    pb_ref_freq_hz: float = Field(default=888.0e6, gt=0.0)
    """Frequency (Hz) at which ``pb_fwhm_deg`` holds."""
    n_antennas: int = Field(default=36, ge=2, le=36)
    """Number of ASKAP antennas (AK01 onwards)."""
    n_channels: int = Field(default=12, ge=1, le=16416)
    """Number of spectral channels."""
    freq_start_hz: float = Field(default=882.0e6, gt=1e6)
    """Centre frequency of the first channel (Hz)."""
    channel_width_hz: float = Field(default=1.0e6, gt=0.0)
    """Channel width (Hz); ASKAP's coarse channels are 1 MHz."""
    n_times: int = Field(default=30, ge=1)
    """Number of integrations."""
    integration_s: float = Field(default=9.95, gt=0.0)
    """Integration time (s)."""
    start_mjd: float = Field(default=60000.5, gt=0.0)
    """Start of the science observation (MJD, UTC)."""
    n_sources: int = Field(default=40, ge=0)
    """Number of faint random point sources (power-law flux distribution)."""
    n_bright: int = Field(default=3, ge=0)
    """Number of bright sources placed near beam centres."""
    min_flux_jy: float = Field(default=0.005, gt=0.0)
    """Lowest flux density of the faint sources (Jy at ``pb_ref_freq_hz``)."""
    max_flux_jy: float = Field(default=0.3, gt=0.0)
    """Highest flux density of the faint sources (Jy)."""
    bright_flux_jy: tuple[float, float] = (0.5, 1.5)
    """Range of the bright sources' flux densities (Jy)."""
    min_separation_arcsec: float = Field(default=90.0, ge=0.0)
    """Minimum separation between simulated sources (keeps them resolved)."""
    noise_jy: float = Field(default=0.3, ge=0.0)
    """Thermal noise per visibility per real/imaginary part (Jy)."""
    gain_amp_scatter: float = Field(default=0.1, ge=0.0, lt=0.5)
    """Fractional scatter of antenna gain amplitudes."""
    gain_phase_scatter_deg: float = Field(default=60.0, ge=0.0, le=180.0)
    """Scatter of antenna gain phases (deg)."""
    bandpass_ripple: float = Field(default=0.05, ge=0.0, lt=0.5)
    """Fractional amplitude ripple across the band."""
    phase_drift_deg: float = Field(default=10.0, ge=0.0)
    """RMS slow antenna phase drift in the science field (deg); self-cal removes it."""
    rfi: bool = False
    """Inject RFI (narrow-band and broadband bursts)."""
    rfi_fraction: float = Field(default=0.03, ge=0.0, le=0.5)
    """Fraction of (time, channel) cells hit by RFI when ``rfi`` is on."""
    rfi_amplitude_jy: float = Field(default=30.0, gt=0.0)
    """Typical RFI amplitude (Jy)."""
    seed: int = 42
    """Random seed: same seed, same bytes."""
    askap_raw: bool = False
    """Write what the ASKAP correlator writes: boresight in FIELD, beam offsets in FEED.BEAM_OFFSET, instrument-frame correlations with ASKAPsoft's I = XX + YY, autocorrelations, and a 36-field calibrator MS per beam (``ra_deg``/``dec_deg`` are then the footprint's boresight). Run ``flint ms preprocess`` on it."""
    askap_pol_axis_deg: float = Field(default=-45.0, ge=-180.0, le=180.0)
    """Third-axis (roll) angle of the raw data (fixms's pol axis; RECEPTOR_ANGLE = 45 deg - this), with ``askap_raw``."""
    askap_offsource_times: int = Field(default=1, ge=1)
    """Integrations kept of each off-source scan in a raw 36-field calibrator MS (the on-source scan has ``n_times``)."""
    polarised: bool = False
    """Polarised sources, antenna D-terms, an XY-phase and off-axis leakage, with their truth (see :mod:`flint._sim_pol`)."""
    pol_dterm_rms: float = Field(default=0.02, ge=0.0, lt=0.3)
    """RMS of the on-axis antenna leakage terms d_x, d_y (complex), with ``polarised``."""
    pol_xy_phase_deg: float = Field(default=30.0, ge=0.0, le=180.0)
    """Scale (deg) of the antennas' XY-phases (offset + slope across the band), with ``polarised``."""
    pol_offaxis_leakage: float = Field(default=0.01, ge=0.0, lt=0.2)
    """Off-axis Q/I, U/I leakage at the half-power radius (grows as radius squared), with ``polarised``."""
    chunk_mb: float = Field(default=64.0, gt=0.0, le=8192.0)
    """Size (MB) of the DATA predicted and written at once (whole integrations, at least one): peak memory is a few times this, whatever the number of integrations and channels. The bytes written do not depend on it."""
    lines: int = Field(default=0, ge=0, le=100)
    """HI emission-line sources (Gaussian profiles, optical velocities) added to the science field, plus one absorption feature against the brightest continuum source; truth in ``SB<sbid>.<field>.lines.csv`` (see :mod:`flint._sim_lines`)."""
    line_fwhm_kms: tuple[float, float] = (15.0, 30.0)
    """Range of the lines' FWHM (km/s, optical velocity), with ``lines``."""
    line_peak_jy: tuple[float, float] = (0.05, 0.1)
    """Range of the emission lines' peak flux densities (Jy), with ``lines``."""
    line_absorption_depth: float = Field(default=0.3, ge=0.0, lt=1.0)
    """Peak fractional depth of the absorption feature against the brightest continuum source, with ``lines``."""
    zoom: bool = False
    """ASKAP zoom-mode preset near HI: 64 channels of 18.5 kHz from 1.3995 GHz (for ``n_channels``, ``channel_width_hz``, ``freq_start_hz`` not given)."""

    @model_validator(mode="before")
    @classmethod
    def _zoom_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("zoom"):
            from flint._sim_lines import ZOOM_PRESET

            data = {**ZOOM_PRESET, **data}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> SimOptions:
        for name, value in self:
            vals = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, float) and not math.isfinite(v) for v in vals):
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number (got {value})")
        if self.min_flux_jy >= self.max_flux_jy:
            raise ValueError(f"--min-flux-jy ({self.min_flux_jy}) must be below --max-flux-jy ({self.max_flux_jy})")
        lo, hi = self.bright_flux_jy
        if not 0 < lo <= hi:
            raise ValueError(f"--bright-flux-jy must be two fluxes 0 < low <= high (got {lo} {hi})")
        if self.polarised and self.askap_raw:
            raise ValueError("--polarised is not available with --askap-raw; leave one out")
        if self.lines:
            from flint._sim_lines import check_line_options

            check_line_options(self)
        return self


def noise_per_visibility(channel_width_hz: float, integration_s: float, reference: tuple[float, float, float] = (0.3, 1.0e6, 9.95)) -> float:
    """``noise_jy`` for other channels or integrations, by the radiometer equation.

    ``SimOptions.noise_jy`` is the noise per visibility whatever the channel width and
    integration time. Its default, 0.3 Jy per real part, is that of a 1 MHz, 9.95 s ASKAP
    visibility (``reference``: noise, width, time), i.e. an SEFD of about 1340 Jy. The noise
    falls as ``1 / sqrt(width x time)``: an 8 MHz channel of the same 9.95 s has 0.106 Jy.

    >>> round(noise_per_visibility(8.0e6, 9.95), 4)
    0.1061
    """
    noise, width, time = reference
    if channel_width_hz <= 0 or integration_s <= 0:
        raise ValueError(f"channel width {channel_width_hz} Hz and integration {integration_s} s must be positive")
    return float(noise * np.sqrt(width * time / (channel_width_hz * integration_s)))


@dataclass(frozen=True)
class SkyModel:
    """Point sources: positions (deg), flux at ``ref_freq_hz`` (Jy), spectral index."""

    name: list[str]
    ra_deg: NDArray[np.float64]
    dec_deg: NDArray[np.float64]
    flux_jy: NDArray[np.float64]
    alpha: NDArray[np.float64]
    ref_freq_hz: float

    def __len__(self) -> int:
        return len(self.name)

    def flux_at(self, freq_hz: NDArray[np.float64]) -> NDArray[np.float64]:
        """Flux (source, channel) at the given frequencies."""
        return self.flux_jy[:, None] * (np.asarray(freq_hz)[None, :] / self.ref_freq_hz) ** self.alpha[:, None]


@dataclass(frozen=True)
class SimResult:
    """What a simulation wrote."""

    ms_paths: list[Path]
    beams: list[int]
    beam_centres_deg: list[tuple[float, float]]
    truth: Path
    sky_csv: Path | None = None
    sky_fits: Path | None = None
    beams_csv: Path | None = None
    extra: dict[str, Path] = field(default_factory=dict)
    n_visibilities: int = 0
    """Visibilities written (rows x channels x correlations, all Measurement Sets)."""
    seconds: float = 0.0
    """Wall time of the simulation (s)."""


# --------------------------------------------------------------------------- geometry
def _gmst_rad(mjd_utc: NDArray[np.float64]) -> NDArray[np.float64]:
    """Greenwich sidereal angle from the Earth rotation angle (UT1 ~ UTC)."""
    d = np.asarray(mjd_utc) - 51544.5
    return np.mod(2 * np.pi * (0.7790572732640 + 1.00273781191135448 * d), 2 * np.pi)


def uvw_for(
    itrf: NDArray[np.float64], time_mjd_s: NDArray[np.float64], ra_deg: float, dec_deg: float
) -> NDArray[np.float64]:
    """Per-antenna (time, antenna, 3) UVW in metres towards (ra, dec).

    The baseline UVW of row (ant1, ant2) is ``uvw[ant2] - uvw[ant1]`` (MS convention).
    """
    gha = _gmst_rad(np.asarray(time_mjd_s) / 86400.0) - np.radians(ra_deg)
    dec = np.radians(dec_deg)
    x, y, z = itrf[:, 0], itrf[:, 1], itrf[:, 2]
    sh, ch = np.sin(gha)[:, None], np.cos(gha)[:, None]
    sd, cd = np.sin(dec), np.cos(dec)
    u = sh * x + ch * y
    v = -sd * ch * x + sd * sh * y + cd * z
    w = cd * ch * x - cd * sh * y + sd * z
    return np.stack([u, v, w], axis=-1)


def _lmn(ra_deg: NDArray[np.float64], dec_deg: NDArray[np.float64], ra0: float, dec0: float) -> tuple[NDArray[np.float64], ...]:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    r0, d0 = np.radians(ra0), np.radians(dec0)
    dra = ra - r0
    l = np.cos(dec) * np.sin(dra)
    m = np.sin(dec) * np.cos(d0) - np.cos(dec) * np.sin(d0) * np.cos(dra)
    n = np.sin(dec) * np.sin(d0) + np.cos(dec) * np.cos(d0) * np.cos(dra)
    return l, m, n


def _offset_radec(ra0: float, dec0: float, dx_deg: NDArray[np.float64], dy_deg: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Positions at tangent-plane offsets (dx east, dy north, deg) from (ra0, dec0)."""
    x, y = np.radians(dx_deg), np.radians(dy_deg)
    d0 = np.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(np.cos(c) * np.sin(d0) + np.where(rho > 0, y * np.sin(c) * np.cos(d0) / rho, 0.0))
        ra = np.radians(ra0) + np.arctan2(x * np.sin(c), rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c))
    return np.mod(np.degrees(ra), 360.0), np.degrees(dec)


def _beam_centres(opts: SimOptions) -> list[tuple[float, float]]:
    offs = _askap.footprint_offsets_deg(opts.n_beams, opts.beam_pitch_deg, opts.footprint)
    ra, dec = _offset_radec(opts.ra_deg, opts.dec_deg, offs[:, 0], offs[:, 1])
    return [(float(a), float(b)) for a, b in zip(ra, dec, strict=True)]


# --------------------------------------------------------------------------- sky & gains
def _random_sky(
    opts: SimOptions, centres: list[tuple[float, float]], rng: np.random.Generator, offs: NDArray[np.float64] | None = None
) -> SkyModel:
    """Seeded sky; ``offs`` are the beams' (east, north) offsets (deg) from (ra_deg, dec_deg)."""
    if offs is None:
        offs = _askap.footprint_offsets_deg(opts.n_beams, opts.beam_pitch_deg, opts.footprint)
    margin = 0.6 * opts.pb_fwhm_deg
    lo = offs.min(axis=0) - margin
    hi = offs.max(axis=0) + margin
    min_sep = opts.min_separation_arcsec / 3600.0
    ras: list[float] = []
    decs: list[float] = []
    fluxes: list[float] = []

    def place(dx: float, dy: float) -> bool:
        ra, dec = _offset_radec(opts.ra_deg, opts.dec_deg, np.array([dx]), np.array([dy]))
        if ras and np.min(angular_separation_deg(ras, decs, ra[0], dec[0])) < min_sep:
            return False
        ras.append(float(ra[0]))
        decs.append(float(dec[0]))
        return True

    # bright sources: near (but not on) beam centres so every beam sees one
    lo_b, hi_b = opts.bright_flux_jy
    for i in range(opts.n_bright):
        b = i % opts.n_beams
        for _ in range(100):
            r = rng.uniform(0.05, 0.3) * opts.pb_fwhm_deg
            t = rng.uniform(0, 2 * np.pi)
            if place(offs[b, 0] + r * np.cos(t), offs[b, 1] + r * np.sin(t)):
                fluxes.append(float(rng.uniform(lo_b, hi_b)))
                break
    # faint sources: dN/dS ~ S^-1.8 between min and max flux
    slope = 1.8
    for _ in range(opts.n_sources):
        for _ in range(100):
            if place(rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1])):
                u = rng.uniform()
                s_lo, s_hi = opts.min_flux_jy, max(opts.max_flux_jy, opts.min_flux_jy)
                a = 1 - slope
                fluxes.append(float((s_lo**a + u * (s_hi**a - s_lo**a)) ** (1 / a)))
                break
    n = len(ras)
    alpha = rng.normal(-0.7, 0.2, size=n)
    names = [f"SIM{i:04d}" for i in range(n)]
    return SkyModel(names, np.array(ras), np.array(decs), np.array(fluxes), alpha, opts.pb_ref_freq_hz)


def _bandpasses(opts: SimOptions, freqs: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.complex128]:
    """Smooth per-beam, per-antenna, per-channel complex gains (beam, ant, chan, 2)."""
    nb, na = opts.n_beams, opts.n_antennas
    x = (freqs - freqs.mean()) / max(np.ptp(freqs), opts.channel_width_hz)  # ~[-0.5, 0.5]
    amp0 = 1.0 + opts.gain_amp_scatter * rng.standard_normal((nb, na, 1, 2))
    ripple_phase = rng.uniform(0, 2 * np.pi, (nb, na, 1, 2))
    ripple_period = rng.uniform(0.5, 1.5, (nb, na, 1, 2))
    amp = amp0 * (1.0 + opts.bandpass_ripple * np.sin(2 * np.pi * x[None, None, :, None] / ripple_period + ripple_phase))
    ph0 = np.radians(opts.gain_phase_scatter_deg) * rng.uniform(-1, 1, (nb, na, 1, 2))
    # phase slope and curvature across the band scale with gain_phase_scatter_deg (60 by
    # default -> factor 1), so gain_phase_scatter_deg=0 really gives unit (ideal) gains
    ph_scale = opts.gain_phase_scatter_deg / 60.0
    slope = np.radians(40.0) * ph_scale * rng.standard_normal((nb, na, 1, 2))  # phase slope across the band
    curve = np.radians(10.0) * ph_scale * rng.standard_normal((nb, na, 1, 2))
    phase = ph0 + slope * x[None, None, :, None] + curve * x[None, None, :, None] ** 2
    return np.abs(amp) * np.exp(1j * phase)


def _phase_drift(opts: SimOptions, times_s: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.float64]:
    """Slow antenna phase drifts (beam, time, ant) in radians, antenna 0 included."""
    nb, na = opts.n_beams, opts.n_antennas
    t = (times_s - times_s[0])[None, :, None]
    out = np.zeros((nb, len(times_s), na))
    for _ in range(3):
        period = rng.uniform(300.0, 1500.0, (nb, 1, na))
        ph = rng.uniform(0, 2 * np.pi, (nb, 1, na))
        out += np.sin(2 * np.pi * t / period + ph)
    out *= np.radians(opts.phase_drift_deg) / np.sqrt(1.5)
    return out


# --------------------------------------------------------------------------- prediction
def predict_model(
    sky: SkyModel,
    uvw: NDArray[np.float64],
    freqs_hz: NDArray[np.float64],
    phase_centre_deg: tuple[float, float],
    pb_centre_deg: tuple[float, float] | None = None,
    pb_fwhm_deg: float = 1.0,
    pb_ref_freq_hz: float = 888.0e6,
    chunk: int = 2048,
) -> NDArray[np.complex128]:
    """Stokes-I model visibilities (row, chan) of ``sky`` seen through the primary beam.

    ``pb_centre_deg=None`` means no primary-beam attenuation (a calibrator at the
    beam centre). Unpolarised sky: XX = YY = this, XY = YX = 0.
    """
    freqs = np.asarray(freqs_hz, dtype=float)
    nrow = uvw.shape[0]
    out = np.zeros((nrow, len(freqs)), dtype=np.complex128)
    if len(sky) == 0:
        return out
    flux = sky.flux_at(freqs)  # (src, chan)
    if pb_centre_deg is not None:
        sep = angular_separation_deg(pb_centre_deg[0], pb_centre_deg[1], sky.ra_deg, sky.dec_deg)
        flux = flux * gaussian_pb(sep[:, None], freqs[None, :], pb_fwhm_deg, pb_ref_freq_hz)
    keep = np.max(flux, axis=1) > 1e-6
    flux = np.ascontiguousarray(flux[keep].T)  # (chan, src)
    l, m, n = _lmn(sky.ra_deg[keep], sky.dec_deg[keep], *phase_centre_deg)
    scale = 2 * np.pi * freqs / C_LIGHT
    # On a uniform frequency grid exp(i d s_k) is advanced channel by channel by one
    # complex multiply, re-anchored exactly every _ANCHOR channels (error < 1e-13).
    ds = np.diff(scale)
    uniform = len(ds) > 0 and bool(np.all(np.abs(ds - ds[0]) <= 1e-9 * abs(ds[0])))
    for start in range(0, nrow, chunk):
        u = uvw[start : start + chunk]
        # elementwise (not BLAS), so a row's value does not depend on how rows are chunked
        delay = _SIGN * (u[:, 0:1] * l + u[:, 1:2] * m + u[:, 2:3] * (n - 1.0))  # (row, src) metres
        step = np.exp(1j * (delay * ds[0])) if uniform else None
        e = np.empty(delay.shape, dtype=np.complex128)
        for k in range(len(freqs)):
            if step is None or k % _ANCHOR == 0:
                e = np.exp(1j * (delay * scale[k]))
            else:
                e *= step
            out[start : start + chunk, k] = np.einsum("rs,s->r", e, flux[k])
    return out


# --------------------------------------------------------------------------- public API
def _layout(opts: SimOptions, start_mjd: float) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int32], NDArray[np.int32]]:
    itrf = _askap.antenna_itrf(opts.n_antennas)
    times = start_mjd * 86400.0 + opts.integration_s * (np.arange(opts.n_times) + 0.5)
    freqs = opts.freq_start_hz + opts.channel_width_hz * np.arange(opts.n_channels)
    a1, a2 = np.triu_indices(opts.n_antennas, k=1)
    return itrf, np.asarray(times, dtype=float), np.asarray(freqs, dtype=float), a1.astype(np.int32), a2.astype(np.int32)


def _baseline_uvw(itrf: NDArray[np.float64], times: NDArray[np.float64], a1: NDArray[np.int32], a2: NDArray[np.int32], ra: float, dec: float) -> NDArray[np.float64]:
    per_ant = uvw_for(itrf, times, ra, dec)  # (time, ant, 3)
    return (per_ant[:, a2, :] - per_ant[:, a1, :]).reshape(-1, 3)


#: random streams (second seed element) of the default and raw simulations
_BANDPASS, _FIELD, _RAW_BANDPASS, _RAW_FIELD = 1, 2, 11, 12


def _beam_chunks(
    opts: SimOptions,
    *,
    sky: SkyModel,
    times: NDArray[np.float64],
    itrf: NDArray[np.float64],
    a1: NDArray[np.int32],
    a2: NDArray[np.int32],
    freqs: NDArray[np.float64],
    pointing: tuple[float, float],
    primary_beam: bool,
    gains: Callable[[slice], NDArray[np.complex128]],
    stream: tuple[int, int],
    t_offset: int = 0,
    model_scale: NDArray[np.float64] | None = None,
    vis_scale: float = 1.0,
    noise_jy: float | None = None,
    cells: NDArray[np.bool_] | None = None,
    truth: TruthWriter | None = None,
    mask_name: str | None = None,
    polar: Any = None,
) -> Iterator[Chunk]:
    """Predict, corrupt and yield one chunk of whole integrations at a time.

    ``gains(sl)`` gives the (time, ant, chan, 2) gains of integrations ``sl`` of ``times``;
    integration ``i`` of ``times`` is integration ``t_offset + i`` of the Measurement Set
    (its noise/RFI generator and its row of ``cells``, the MS's RFI (time, chan) cells,
    whose (row, chan) mask is appended to ``truth``'s ``mask_name``).
    """
    nbl = len(a1)
    step = chunk_times(opts.chunk_mb, nbl, len(freqs))
    noise = opts.noise_jy if noise_jy is None else noise_jy
    for t0 in range(0, len(times), step):
        sl = slice(t0, min(t0 + step, len(times)))
        uvw = _baseline_uvw(itrf, times[sl], a1, a2, *pointing)
        pb = pointing if primary_beam else None
        rngs = time_rngs(opts.seed, stream, t_offset + sl.start, t_offset + sl.stop)
        if polar is not None:  # flint._sim_pol.Polariser: full coherencies and 2x2 Jones matrices
            data = polar.chunk(sky, uvw, freqs, pointing, pb, model_scale, gains(sl), a1, a2, noise, rngs)
        else:
            model = predict_model(sky, uvw, freqs, pointing, pb, opts.pb_fwhm_deg, opts.pb_ref_freq_hz)
            if model_scale is not None:
                model *= model_scale[None, :]
            if vis_scale != 1.0:
                model *= vis_scale
            data = corrupt(model, gains(sl), a1, a2, noise, rngs)
            del model
        if cells is not None:
            c = cells[t_offset + sl.start : t_offset + sl.stop]
            add_rfi(data, c, opts.rfi_amplitude_jy, rngs)
            if truth is not None and mask_name is not None:
                truth.append(mask_name, np.repeat(c, nbl, axis=0))
        yield Chunk(times[sl], uvw, data)


def _rfi_setup(
    opts: SimOptions, truth: TruthWriter, beam: int, kind: int, n_times: int, nbl: int, nc: int
) -> tuple[NDArray[np.bool_] | None, str | None]:
    """The RFI (time, chan) cells of one MS and its streamed truth mask (None without RFI)."""
    if not opts.rfi:
        return None, None
    cells = rfi_cells(n_times, nc, opts.rfi_fraction, np.random.default_rng([opts.seed, 3, kind, beam]))
    name = f"rfi_mask_beam{beam:02d}"
    truth.stream(name, (n_times * nbl, nc), np.bool_)
    return cells, name


def _log_rate(what: str, n_vis: int, t0: float) -> float:
    dt = time.perf_counter() - t0
    logger.info("%s: %d visibilities in %.1f s (%.3g visibilities/s)", what, n_vis, dt, n_vis / max(dt, 1e-9))
    return dt


def simulate_bandpass(out_dir: str | os.PathLike[str], options: SimOptions | None = None, progress: bool = False) -> SimResult:
    """Simulate PKS B1934-638 observed at the centre of each beam in turn.

    Writes ``SB<bandpass_sbid>.B1934-638.beamNN.ms`` and ``SB<bandpass_sbid>.B1934-638.truth.npz``
    (``bandpass[beam, ant, chan, pol]``, identical to the science field's).
    """
    opts = options or SimOptions()
    if opts.askap_raw:
        from flint._sim_askap import simulate_bandpass_raw

        return simulate_bandpass_raw(out_dir, opts, progress)
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bp_rng = np.random.default_rng([opts.seed, 0])
    itrf, _, freqs, a1, a2 = _layout(opts, opts.start_mjd)
    bandpass, inst = _sim_pol.instrument_for(opts, freqs, _bandpasses(opts, freqs, bp_rng))
    cal = SkyModel(
        [CALIBRATOR_FIELD], np.array([_askap.B1934_RA_DEG]), np.array([_askap.B1934_DEC_DEG]),
        np.array([1.0]), np.array([0.0]), 1.0,
    )
    cal_pos = (_askap.B1934_RA_DEG, _askap.B1934_DEC_DEG)
    offs = _askap.footprint_offsets_deg(opts.n_beams, opts.beam_pitch_deg, opts.footprint)
    truth = TruthWriter(out / product_name(opts.bandpass_sbid, CALIBRATOR_FIELD, suffix="truth.npz"), out)
    truth.add(bandpass=bandpass, freqs_hz=freqs, beams=np.arange(opts.n_beams))
    if inst is not None:
        truth.add(**_sim_pol.instrument_truth(inst))
    paths, n_vis = [], 0
    beams = list(range(opts.n_beams))
    try:
        for b in _progress(beams, "simulate 1934-638", progress):
            # ASKAP visits each beam in turn: a short scan per beam, one after another
            start = opts.start_mjd - (opts.n_beams - b) * (opts.n_times * opts.integration_s + 60.0) / 86400.0
            _, times, _, _, _ = _layout(opts, start)
            bp_b = bandpass[b]
            cells, mask_name = _rfi_setup(opts, truth, b, _BANDPASS, len(times), len(a1), len(freqs))
            chunks = _beam_chunks(
                opts, sky=cal, times=times, itrf=itrf, a1=a1, a2=a2, freqs=freqs, pointing=cal_pos, primary_beam=False,
                gains=partial(_constant_gains, bp_b),
                polar=_sim_pol.Polariser(opts, inst, b, polarised_sky=False) if inst is not None else None,
                stream=(_BANDPASS, b), model_scale=_askap.b1934_flux_jy(freqs), cells=cells, truth=truth, mask_name=mask_name,
            )
            path = out / beam_ms_name(opts.bandpass_sbid, CALIBRATOR_FIELD, b)
            n_vis += _write_ms(
                path, opts=opts, beam=b, beam_offset_rad=(float(np.radians(offs[b, 0])), float(np.radians(offs[b, 1]))),
                field_label=CALIBRATOR_FIELD, phase_centre_deg=cal_pos,
                itrf=itrf, times=times, freqs=freqs, a1=a1, a2=a2, chunks=chunks,
            )
            paths.append(path)
        if inst is not None:
            _sim_pol.write_xy_phase_csv(_sim_pol.pol_truth_paths(out, opts, calibrator=True)["xy_phase"], inst, freqs)
        truth_path = truth.close()
    finally:
        truth.discard()
    centres = [cal_pos] * opts.n_beams
    dt = _log_rate("simulate 1934-638", n_vis, t_start)
    return SimResult(ms_paths=paths, beams=beams, beam_centres_deg=centres, truth=truth_path, n_visibilities=n_vis, seconds=dt)


def _constant_gains(bandpass_b: NDArray[np.complex128], sl: slice) -> NDArray[np.complex128]:
    """The bandpass (ant, chan, 2) as gains (time, ant, chan, 2) of integrations ``sl``."""
    return np.broadcast_to(bandpass_b[None], (sl.stop - sl.start, *bandpass_b.shape))


def _drift_gains(
    bandpass_b: NDArray[np.complex128], drift_b: NDArray[np.float64], truth: TruthWriter
) -> Callable[[slice], NDArray[np.complex128]]:
    """Gains (time, ant, chan, 2) of integrations ``sl``: bandpass x slow phase drift (streamed to the truth)."""

    def gains(sl: slice) -> NDArray[np.complex128]:
        g = bandpass_b[None] * np.exp(1j * drift_b[sl])[:, :, None, None]
        truth.append("gains", g)
        return g

    return gains


def simulate_field(out_dir: str | os.PathLike[str], options: SimOptions | None = None, progress: bool = False) -> SimResult:
    """Simulate a science field: one Measurement Set per beam plus the truth files."""
    opts = options or SimOptions()
    if opts.askap_raw:
        from flint._sim_askap import simulate_field_raw

        return simulate_field_raw(out_dir, opts, progress)
    t_start = time.perf_counter()
    fld = field_name(opts.field)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bp_rng = np.random.default_rng([opts.seed, 0])
    rng = np.random.default_rng([opts.seed, _FIELD])
    itrf, times, freqs, a1, a2 = _layout(opts, opts.start_mjd)
    bandpass, inst = _sim_pol.instrument_for(opts, freqs, _bandpasses(opts, freqs, bp_rng))
    centres = _beam_centres(opts)
    sky = _random_sky(opts, centres, rng)
    model_sky, lines = sky, []
    if opts.lines:
        from flint._sim_lines import make_lines, with_lines

        lines = make_lines(opts, sky, centres)
        model_sky = with_lines(sky, lines)
    drift = _phase_drift(opts, times, rng)  # (beam, time, ant)
    offs = _askap.footprint_offsets_deg(opts.n_beams, opts.beam_pitch_deg, opts.footprint)
    beams = list(range(opts.n_beams))
    truth = TruthWriter(out / product_name(opts.sbid, fld, suffix="truth.npz"), out)
    truth.add(bandpass=bandpass)
    if inst is not None:
        truth.add(**_sim_pol.instrument_truth(inst))
    truth.stream("gains", (opts.n_beams, len(times), opts.n_antennas, len(freqs), 2), np.complex128)
    truth.add(phase_drift=drift, times=times, freqs_hz=freqs, beams=np.array(beams))
    paths, n_vis = [], 0
    try:
        for b in _progress(beams, f"simulate {fld}", progress):
            ra0, dec0 = centres[b]
            cells, mask_name = _rfi_setup(opts, truth, b, _FIELD, len(times), len(a1), len(freqs))
            chunks = _beam_chunks(
                opts, sky=model_sky, times=times, itrf=itrf, a1=a1, a2=a2, freqs=freqs, pointing=(ra0, dec0), primary_beam=True,
                polar=_sim_pol.Polariser(opts, inst, b, polarised_sky=True) if inst is not None else None,
                gains=_drift_gains(bandpass[b], drift[b], truth), stream=(_FIELD, b), cells=cells, truth=truth, mask_name=mask_name,
            )
            path = out / beam_ms_name(opts.sbid, fld, b)
            n_vis += _write_ms(
                path, opts=opts, beam=b, beam_offset_rad=(float(np.radians(offs[b, 0])), float(np.radians(offs[b, 1]))),
                field_label=f"{fld}_beam{b:02d}", phase_centre_deg=(ra0, dec0),
                itrf=itrf, times=times, freqs=freqs, a1=a1, a2=a2, chunks=chunks,
            )
            paths.append(path)
        sky_csv = out / product_name(opts.sbid, fld, suffix="sky.csv")
        sky_fits = out / product_name(opts.sbid, fld, suffix="sky.fits")
        beams_csv = out / product_name(opts.sbid, fld, suffix="beams.csv")
        _write_sky(sky, sky_csv, sky_fits)
        _write_beams_csv(beams_csv, beams, centres, opts)
        if inst is not None:
            _sim_pol.write_field_truth(out, opts, sky, freqs)
        extra: dict[str, Path] = {}
        if lines:
            from flint._sim_lines import write_lines_csv

            extra["lines"] = write_lines_csv(out / product_name(opts.sbid, fld, suffix="lines.csv"), lines)
        truth_path = truth.close()
    finally:
        truth.discard()
    dt = _log_rate(f"simulate {fld}", n_vis, t_start)
    return SimResult(
        ms_paths=paths, beams=beams, beam_centres_deg=centres, truth=truth_path, sky_csv=sky_csv, sky_fits=sky_fits,
        beams_csv=beams_csv, extra=extra, n_visibilities=n_vis, seconds=dt,
    )


def _write_beams_csv(path: Path, beams: list[int], centres: list[tuple[float, float]], opts: SimOptions) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["beam", "ra_deg", "dec_deg", "pb_fwhm_deg", "pb_ref_freq_hz"])
        for b, (ra, dec) in zip(beams, centres, strict=True):
            w.writerow([b, f"{ra:.8f}", f"{dec:.8f}", opts.pb_fwhm_deg, opts.pb_ref_freq_hz])


def _write_sky(sky: SkyModel, csv_path: Path, fits_path: Path) -> None:
    from astropy.table import Table

    tab = Table(
        {
            "name": sky.name,
            "ra_deg": sky.ra_deg,
            "dec_deg": sky.dec_deg,
            "flux_jy": sky.flux_jy,
            "alpha": sky.alpha,
            "ref_freq_hz": np.full(len(sky), sky.ref_freq_hz),
        }
    )
    with atomic_path(csv_path) as tmp:
        tab.write(tmp, format="ascii.csv")
    with atomic_path(fits_path) as tmp:
        tab.write(tmp, format="fits")


def read_sky(path: str | os.PathLike[str]) -> SkyModel:
    """Read a sky catalogue written by :func:`simulate_field` (CSV or FITS)."""
    from astropy.table import Table

    tab = Table.read(path)
    ref = float(tab["ref_freq_hz"][0]) if len(tab) else 888e6
    return SkyModel([str(n) for n in tab["name"]], np.asarray(tab["ra_deg"], float), np.asarray(tab["dec_deg"], float), np.asarray(tab["flux_jy"], float), np.asarray(tab["alpha"], float), ref)


def _progress(items: list[int], desc: str, on: bool) -> Any:
    if not on:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="beam")
