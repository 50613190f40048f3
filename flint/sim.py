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

Same options and seed give the same bytes. The Measurement Sets are in the sky frame and
say so (main-table keyword ``FLINT_FRAME = "sky"``, the rule of :mod:`flint.askap`).
``SimOptions(askap_raw=True)`` writes what the ASKAP correlator writes instead (raw,
instrument frame, 36-field calibrator MSs; see :mod:`flint._sim_askap`).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from flint import _askap
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
    "CALIBRATOR_FIELD",
]

logger = logging.getLogger(__name__)

C_LIGHT = 299792458.0
CALIBRATOR_FIELD = "B1934-638"
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
        return self


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


# --------------------------------------------------------------------------- MS writing
#: array columns of the subtables flint writes, with their fixed shapes (-1 = n_chan)
_FIXED_SHAPES: dict[str, dict[str, list[int]]] = {
    "FEED": {"BEAM_OFFSET": [2, 2], "POLARIZATION_TYPE": [2], "POL_RESPONSE": [2, 2], "RECEPTOR_ANGLE": [2], "POSITION": [3]},
    "FIELD": {"PHASE_DIR": [1, 2], "DELAY_DIR": [1, 2], "REFERENCE_DIR": [1, 2]},
    "SPECTRAL_WINDOW": {"CHAN_FREQ": [-1], "CHAN_WIDTH": [-1], "EFFECTIVE_BW": [-1], "RESOLUTION": [-1]},
    "POLARIZATION": {"CORR_TYPE": [4], "CORR_PRODUCT": [4, 2]},
    "OBSERVATION": {"TIME_RANGE": [2], "LOG": [1], "SCHEDULE": [1]},
}
_ZERO = {"double": 0.0, "float": 0.0, "int": 0, "string": "", "complex": 0j, "dcomplex": 0j, "boolean": False}

def _ms_descriptions(n_chan: int) -> tuple[dict, dict]:
    import casacore.tables as ct

    cols = [
        ct.makearrcoldesc("DATA", 0j, ndim=2, shape=[n_chan, 4], valuetype="complex", comment="visibilities"),
        ct.makearrcoldesc("FLAG", False, ndim=2, shape=[n_chan, 4], valuetype="boolean"),
        ct.makearrcoldesc("WEIGHT", 0.0, ndim=1, shape=[4], valuetype="float"),
        ct.makearrcoldesc("SIGMA", 0.0, ndim=1, shape=[4], valuetype="float"),
    ]
    desc = ct.maketabdesc(cols)
    dminfo = {
        "*1": {"TYPE": "TiledColumnStMan", "NAME": "TiledData", "SPEC": {"DEFAULTTILESHAPE": np.array([4, n_chan, 128], dtype=np.int32)}, "COLUMNS": ["DATA"]},
        "*2": {"TYPE": "TiledColumnStMan", "NAME": "TiledFlag", "SPEC": {"DEFAULTTILESHAPE": np.array([4, n_chan, 128], dtype=np.int32)}, "COLUMNS": ["FLAG"]},
    }
    return desc, dminfo


def _write_ms(
    path: Path,
    *,
    opts: SimOptions,
    beam: int,
    beam_offset_rad: tuple[float, float],
    field_label: str,
    phase_centre_deg: tuple[float, float],
    itrf: NDArray[np.float64],
    times: NDArray[np.float64],
    freqs: NDArray[np.float64],
    a1: NDArray[np.int32],
    a2: NDArray[np.int32],
    uvw: NDArray[np.float64],
    data: NDArray[np.complex64],
    sky_frame: bool = True,
    finish: Callable[[Path], None] | None = None,
) -> None:
    import casacore.tables as ct

    n_chan = len(freqs)
    na = itrf.shape[0]
    nbl = len(a1)
    nrow = data.shape[0]
    desc, dminfo = _ms_descriptions(n_chan)
    with atomic_path(path) as tmp:
        tab = ct.default_ms(str(tmp), desc, dminfo)
        try:
            tab.addrows(nrow)
            time_col = np.repeat(times, nbl)
            tab.putcol("TIME", time_col)
            tab.putcol("TIME_CENTROID", time_col)
            tab.putcol("INTERVAL", np.full(nrow, opts.integration_s))
            tab.putcol("EXPOSURE", np.full(nrow, opts.integration_s))
            tab.putcol("ANTENNA1", np.tile(a1, len(times)))
            tab.putcol("ANTENNA2", np.tile(a2, len(times)))
            tab.putcol("FEED1", np.full(nrow, beam, dtype=np.int32))
            tab.putcol("FEED2", np.full(nrow, beam, dtype=np.int32))
            tab.putcol("UVW", uvw)
            tab.putcol("DATA", data)
            tab.putcol("FLAG", np.zeros(data.shape, dtype=bool))
            tab.putcol("FLAG_ROW", np.zeros(nrow, dtype=bool))
            sigma = max(opts.noise_jy, 1e-3) * np.sqrt(2.0)
            tab.putcol("SIGMA", np.full((nrow, 4), sigma, dtype=np.float32))
            tab.putcol("WEIGHT", np.full((nrow, 4), 1.0 / sigma**2, dtype=np.float32))
            for col in ("FIELD_ID", "DATA_DESC_ID", "ARRAY_ID", "OBSERVATION_ID", "PROCESSOR_ID", "STATE_ID"):
                tab.putcol(col, np.zeros(nrow, dtype=np.int32))
            tab.putcol("SCAN_NUMBER", np.ones(nrow, dtype=np.int32))
            if sky_frame:
                # the frame rule of flint.askap: these visibilities are in the sky frame
                tab.putkeyword("FLINT_FRAME", "sky")
        finally:
            tab.close()

        def sub(name: str) -> ct.table:
            # Recreate the subtable with fixed-shape, directly stored array columns:
            # casacore's indirect-array files hold a few uninitialised bytes, which
            # would break "same seed, same bytes".
            fixed = _FIXED_SHAPES.get(name, {})
            if fixed:
                cols = []
                required = ct.required_ms_desc(name)
                for col, shape in fixed.items():
                    d = required[col]
                    shp = [n_chan if x == -1 else x for x in shape]
                    cols.append(ct.makearrcoldesc(col, d.get("valueType") and _ZERO[d["valueType"]], ndim=len(shp), shape=shp, options=5, valuetype=d["valueType"], keywords=d.get("keywords", {})))
                import shutil

                shutil.rmtree(tmp / name)
                ct.default_ms_subtable(name, str(tmp / name), ct.maketabdesc(cols)).close()
            return ct.table(str(tmp / name), readonly=False, ack=False)

        with sub("ANTENNA") as t:
            t.addrows(na)
            t.putcol("NAME", [f"ak{i + 1:02d}" for i in range(na)])
            t.putcol("STATION", [f"ASKAP_AK{i + 1:02d}" for i in range(na)])
            t.putcol("TYPE", ["GROUND-BASED"] * na)
            t.putcol("MOUNT", ["ALT-AZ"] * na)
            t.putcol("POSITION", itrf)
            t.putcol("OFFSET", np.zeros((na, 3)))
            t.putcol("DISH_DIAMETER", np.full(na, 12.0))
        with sub("FEED") as t:
            t.addrows(na)
            t.putcol("ANTENNA_ID", np.arange(na, dtype=np.int32))
            t.putcol("FEED_ID", np.full(na, beam, dtype=np.int32))
            t.putcol("BEAM_ID", np.full(na, beam, dtype=np.int32))
            t.putcol("SPECTRAL_WINDOW_ID", np.full(na, -1, dtype=np.int32))
            t.putcol("TIME", np.full(na, times[0]))
            t.putcol("INTERVAL", np.full(na, 1e30))
            t.putcol("NUM_RECEPTORS", np.full(na, 2, dtype=np.int32))
            t.putcol("POLARIZATION_TYPE", np.array([["X", "Y"]] * na))
            t.putcol("POL_RESPONSE", np.tile(np.eye(2, dtype=np.complex64), (na, 1, 1)))
            t.putcol("RECEPTOR_ANGLE", np.tile(np.array([-np.pi / 4, np.pi / 4]), (na, 1)))
            t.putcol("BEAM_OFFSET", np.tile(np.array([[beam_offset_rad, beam_offset_rad]]).reshape(2, 2), (na, 1, 1)))
            t.putcol("POSITION", np.zeros((na, 3)))
        pc = np.radians(np.array(phase_centre_deg)).reshape(1, 1, 2)
        with sub("FIELD") as t:
            t.addrows(1)
            t.putcol("NAME", [field_label])
            t.putcol("CODE", [""])
            t.putcol("TIME", np.array([times[0]]))
            t.putcol("NUM_POLY", np.zeros(1, dtype=np.int32))
            for c in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
                t.putcol(c, pc)
            t.putcol("SOURCE_ID", np.zeros(1, dtype=np.int32))
        with sub("SPECTRAL_WINDOW") as t:
            t.addrows(1)
            w = opts.channel_width_hz
            t.putcol("NUM_CHAN", np.array([n_chan], dtype=np.int32))
            t.putcol("CHAN_FREQ", freqs.reshape(1, -1))
            t.putcol("CHAN_WIDTH", np.full((1, n_chan), w))
            t.putcol("EFFECTIVE_BW", np.full((1, n_chan), w))
            t.putcol("RESOLUTION", np.full((1, n_chan), w))
            t.putcol("REF_FREQUENCY", np.array([freqs[0]]))
            t.putcol("TOTAL_BANDWIDTH", np.array([w * n_chan]))
            t.putcol("MEAS_FREQ_REF", np.array([5], dtype=np.int32))  # TOPO
            t.putcol("NAME", ["ASKAP_SIM"])
            t.putcol("NET_SIDEBAND", np.array([1], dtype=np.int32))
        with sub("POLARIZATION") as t:
            t.addrows(1)
            t.putcol("NUM_CORR", np.array([4], dtype=np.int32))
            t.putcol("CORR_TYPE", np.array([[9, 10, 11, 12]], dtype=np.int32))
            t.putcol("CORR_PRODUCT", np.array([[[0, 0], [0, 1], [1, 0], [1, 1]]], dtype=np.int32))
        with sub("DATA_DESCRIPTION") as t:
            t.addrows(1)
            t.putcol("SPECTRAL_WINDOW_ID", np.zeros(1, dtype=np.int32))
            t.putcol("POLARIZATION_ID", np.zeros(1, dtype=np.int32))
        with sub("OBSERVATION") as t:
            t.addrows(1)
            t.putcol("TELESCOPE_NAME", ["ASKAP"])
            t.putcol("OBSERVER", ["flint.sim"])
            t.putcol("PROJECT", ["flint-simulation"])
            t.putcol("TIME_RANGE", np.array([[times[0], times[-1] + opts.integration_s]]))
            t.putcol("RELEASE_DATE", np.array([times[0]]))
            t.putcol("LOG", np.array([["simulated by flint.sim"]]))
            t.putcol("SCHEDULE", np.array([["flint.sim"]]))
        with sub("STATE") as t:
            t.addrows(1)
            t.putcol("OBS_MODE", ["OBSERVE_TARGET.ON_SOURCE"])
        with sub("PROCESSOR") as t:
            t.addrows(1)
            t.putcol("TYPE", ["CORRELATOR"])
        if finish is not None:
            finish(tmp)  # e.g. the raw ASKAP layout (flint._sim_askap), before the rename


# --------------------------------------------------------------------------- prediction
def predict_model(
    sky: SkyModel,
    uvw: NDArray[np.float64],
    freqs_hz: NDArray[np.float64],
    phase_centre_deg: tuple[float, float],
    pb_centre_deg: tuple[float, float] | None = None,
    pb_fwhm_deg: float = 1.0,
    pb_ref_freq_hz: float = 888.0e6,
    chunk: int = 4096,
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
    flux = flux[keep]
    l, m, n = _lmn(sky.ra_deg[keep], sky.dec_deg[keep], *phase_centre_deg)
    lmn = np.stack([l, m, n - 1.0])  # (3, src)
    scale = 2 * np.pi * freqs / C_LIGHT
    for start in range(0, nrow, chunk):
        delay = uvw[start : start + chunk] @ lmn  # (row, src) metres
        ph = _SIGN * delay[:, :, None] * scale[None, None, :]
        out[start : start + chunk] = np.einsum("rsc,sc->rc", np.exp(1j * ph), flux)
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


def _corrupt(
    model: NDArray[np.complex128],
    gains_t: NDArray[np.complex128],
    a1: NDArray[np.int32],
    a2: NDArray[np.int32],
    noise_jy: float,
    rng: np.random.Generator,
) -> NDArray[np.complex64]:
    """model (row, chan) -> observed (row, chan, 4) with gains (time, ant, chan, 2)."""
    nt = gains_t.shape[0]
    nbl = len(a1)
    m = model.reshape(nt, nbl, -1)
    out = np.zeros((nt, nbl, model.shape[1], 4), dtype=np.complex128)
    g1 = gains_t[:, a1]  # (time, baseline, chan, pol)
    g2 = gains_t[:, a2]
    gx1, gy1, gx2, gy2 = g1[..., 0], g1[..., 1], g2[..., 0], g2[..., 1]
    out[..., 0] = gx1 * m * np.conj(gx2)
    out[..., 3] = gy1 * m * np.conj(gy2)
    vis = out.reshape(-1, model.shape[1], 4)
    if noise_jy > 0:
        vis += noise_jy * (rng.standard_normal(vis.shape) + 1j * rng.standard_normal(vis.shape))
    return vis.astype(np.complex64)


def _inject_rfi(
    data: NDArray[np.complex64], nt: int, nbl: int, opts: SimOptions, rng: np.random.Generator
) -> NDArray[np.bool_]:
    """Add RFI in place; return the (row, chan) mask of injected samples."""
    nc = data.shape[1]
    cells = np.zeros((nt, nc), dtype=bool)
    target = int(round(opts.rfi_fraction * nt * nc))
    # one persistent narrow-band channel (if the band is wide enough) and bursts
    if nc >= 4 and target > 0:
        ch = int(rng.integers(1, nc - 1))
        t0 = int(rng.integers(0, max(1, nt // 2)))
        cells[t0 : t0 + max(1, min(nt // 3, target // 2)), ch] = True
    while cells.sum() < target:
        t = int(rng.integers(0, nt))
        c0 = int(rng.integers(0, nc))
        width = int(rng.integers(1, max(2, nc // 3)))
        cells[t, c0 : c0 + width] = True
    mask = np.repeat(cells, nbl, axis=0)  # (row, chan)
    n = int(mask.sum())
    if n:
        amp = opts.rfi_amplitude_jy * rng.uniform(0.5, 2.0, size=(n, 1))
        ph = rng.uniform(0, 2 * np.pi, size=(n, 1))
        sig = amp * np.exp(1j * ph) * np.array([[1.0, 0.3, 0.3, 1.0]])
        data[mask] += sig.astype(np.complex64)
    return mask


def _write_truth(path: Path, **arrays: Any) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def simulate_bandpass(out_dir: str | os.PathLike[str], options: SimOptions | None = None, progress: bool = False) -> SimResult:
    """Simulate PKS B1934-638 observed at the centre of each beam in turn.

    Writes ``SB<bandpass_sbid>.B1934-638.beamNN.ms`` and ``SB<bandpass_sbid>.B1934-638.truth.npz``
    (``bandpass[beam, ant, chan, pol]``, identical to the science field's).
    """
    opts = options or SimOptions()
    if opts.askap_raw:
        from flint._sim_askap import simulate_bandpass_raw

        return simulate_bandpass_raw(out_dir, opts, progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([opts.seed, 1])
    bp_rng = np.random.default_rng([opts.seed, 0])
    itrf, _, freqs, a1, a2 = _layout(opts, opts.start_mjd)
    bandpass = _bandpasses(opts, freqs, bp_rng)
    cal = SkyModel(
        [CALIBRATOR_FIELD], np.array([_askap.B1934_RA_DEG]), np.array([_askap.B1934_DEC_DEG]),
        np.array([1.0]), np.array([0.0]), 1.0,
    )
    offs = _askap.footprint_offsets_deg(opts.n_beams, opts.beam_pitch_deg, opts.footprint)
    paths, masks = [], {}
    beams = list(range(opts.n_beams))
    iterator = _progress(beams, "simulate 1934-638", progress)
    for b in iterator:
        # ASKAP visits each beam in turn: a short scan per beam, one after another
        start = opts.start_mjd - (opts.n_beams - b) * (opts.n_times * opts.integration_s + 60.0) / 86400.0
        _, times, _, _, _ = _layout(opts, start)
        uvw = _baseline_uvw(itrf, times, a1, a2, _askap.B1934_RA_DEG, _askap.B1934_DEC_DEG)
        model = predict_model(cal, uvw, freqs, (_askap.B1934_RA_DEG, _askap.B1934_DEC_DEG)) * _askap.b1934_flux_jy(freqs)[None, :]
        gains_t = np.broadcast_to(bandpass[b][None], (len(times), *bandpass[b].shape))
        data = _corrupt(model, gains_t, a1, a2, opts.noise_jy, rng)
        if opts.rfi:
            masks[f"rfi_mask_beam{b:02d}"] = _inject_rfi(data, len(times), len(a1), opts, rng)
        path = out / beam_ms_name(opts.bandpass_sbid, CALIBRATOR_FIELD, b)
        _write_ms(
            path, opts=opts, beam=b, beam_offset_rad=(float(np.radians(offs[b, 0])), float(np.radians(offs[b, 1]))),
            field_label=CALIBRATOR_FIELD, phase_centre_deg=(_askap.B1934_RA_DEG, _askap.B1934_DEC_DEG),
            itrf=itrf, times=times, freqs=freqs, a1=a1, a2=a2, uvw=uvw, data=data,
        )
        paths.append(path)
    truth = out / product_name(opts.bandpass_sbid, CALIBRATOR_FIELD, suffix="truth.npz")
    _write_truth(truth, bandpass=bandpass, freqs_hz=freqs, beams=np.array(beams), **masks)
    centres = [(_askap.B1934_RA_DEG, _askap.B1934_DEC_DEG)] * opts.n_beams
    return SimResult(ms_paths=paths, beams=beams, beam_centres_deg=centres, truth=truth)


def simulate_field(out_dir: str | os.PathLike[str], options: SimOptions | None = None, progress: bool = False) -> SimResult:
    """Simulate a science field: one Measurement Set per beam plus the truth files."""
    opts = options or SimOptions()
    if opts.askap_raw:
        from flint._sim_askap import simulate_field_raw

        return simulate_field_raw(out_dir, opts, progress)
    fld = field_name(opts.field)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bp_rng = np.random.default_rng([opts.seed, 0])
    rng = np.random.default_rng([opts.seed, 2])
    itrf, times, freqs, a1, a2 = _layout(opts, opts.start_mjd)
    bandpass = _bandpasses(opts, freqs, bp_rng)
    centres = _beam_centres(opts)
    sky = _random_sky(opts, centres, rng)
    drift = _phase_drift(opts, times, rng)  # (beam, time, ant)
    gains = bandpass[:, None, :, :, :] * np.exp(1j * drift)[:, :, :, None, None]
    offs = _askap.footprint_offsets_deg(opts.n_beams, opts.beam_pitch_deg, opts.footprint)
    paths, masks = [], {}
    beams = list(range(opts.n_beams))
    for b in _progress(beams, f"simulate {fld}", progress):
        ra0, dec0 = centres[b]
        uvw = _baseline_uvw(itrf, times, a1, a2, ra0, dec0)
        model = predict_model(sky, uvw, freqs, (ra0, dec0), (ra0, dec0), opts.pb_fwhm_deg, opts.pb_ref_freq_hz)
        data = _corrupt(model, gains[b], a1, a2, opts.noise_jy, rng)
        if opts.rfi:
            masks[f"rfi_mask_beam{b:02d}"] = _inject_rfi(data, len(times), len(a1), opts, rng)
        path = out / beam_ms_name(opts.sbid, fld, b)
        _write_ms(
            path, opts=opts, beam=b, beam_offset_rad=(float(np.radians(offs[b, 0])), float(np.radians(offs[b, 1]))),
            field_label=f"{fld}_beam{b:02d}", phase_centre_deg=(ra0, dec0),
            itrf=itrf, times=times, freqs=freqs, a1=a1, a2=a2, uvw=uvw, data=data,
        )
        paths.append(path)
    sky_csv = out / product_name(opts.sbid, fld, suffix="sky.csv")
    sky_fits = out / product_name(opts.sbid, fld, suffix="sky.fits")
    beams_csv = out / product_name(opts.sbid, fld, suffix="beams.csv")
    _write_sky(sky, sky_csv, sky_fits)
    _write_beams_csv(beams_csv, beams, centres, opts)
    truth = out / product_name(opts.sbid, fld, suffix="truth.npz")
    _write_truth(truth, bandpass=bandpass, gains=gains, phase_drift=drift, times=times, freqs_hz=freqs, beams=np.array(beams), **masks)
    return SimResult(ms_paths=paths, beams=beams, beam_centres_deg=centres, truth=truth, sky_csv=sky_csv, sky_fits=sky_fits, beams_csv=beams_csv)


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
