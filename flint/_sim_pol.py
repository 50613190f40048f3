"""Polarisation of the simulator (``SimOptions(polarised=True)``, ``flint sim --polarised``).

What is added to the unpolarised simulation:

Sky
    every source gets a fractional linear polarisation ``p``, an intrinsic angle ``chi0``,
    a rotation measure ``RM`` and, for some, a fractional circular polarisation ``v``::

        Q + iU = p I(nu) exp(2i (chi0 + RM lambda^2)),      V = v I(nu)

    Every other bright source is polarised (``p`` 4-12 %), the others are not (they
    measure the leakage); half of the faint sources are polarised; about a third of the
    polarised sources (bright source 2 always) are circularly polarised too.
Coherencies
    sky frame, linear feeds, the WSClean/CASA convention (``I = (XX + YY) / 2``)::

        XX = I + Q,   YY = I - Q,   XY = U + iV,   YX = U - iV
Instrument
    ``J_p = G_p D_p`` per antenna, beam and channel: ``G_p = diag(g_x, g_y)`` the bandpass,
    whose Y phase is the X phase plus an XY-phase ``phi_p(nu)`` (an offset and a delay
    per antenna, what ASKAP's on-dish calibration noise source measures), and the
    on-axis leakage ``D_p = [[1, d_x], [d_y, 1]]`` (complex, a few per cent, a slow
    slope across the band). ``V_pq = J_p B_pq J_q^H``.
Off-axis leakage
    common to all antennas (a property of the formed beam, what holography measures):
    an unpolarised source at offset ``(r, theta)`` from the beam centre appears with
    ``Q/I = L (r/R)^2 cos 2theta``, ``U/I = L (r/R)^2 sin 2theta``, ``V/I = L/2 (r/R)^2``
    (``R`` the half-power radius at that frequency, ``L = pol_offaxis_leakage``); it is
    applied to the primary-beam-attenuated Stokes parameters of every source.

The truth beside the Measurement Sets:

``SB<sbid>.<field>.pol.csv``
    per source: ``name, ra_deg, dec_deg, flux_jy, alpha, ref_freq_hz, frac_lin, chi0_deg,
    rm_radm2, frac_circ`` and ``q_jy, u_jy, v_jy`` at ``ref_freq_hz``.
``truth.npz`` (both observations)
    ``dterms[beam, ant, chan, 2]`` (d_x, d_y), ``xy_phase_rad[beam, ant, chan]``; the
    ``bandpass`` entry holds the gains with the XY-phase in.
``SB<sbid>.<field>.xyphase.csv`` (calibrator)
    ``beam, antenna, freq_hz, xy_phase_deg``: the XY-phase as an on-dish calibration
    system reports it; ``flint calibrate bandpass --full-jones --xy-phase`` reads it.
``akpb.iquv.<footprint>.SB<sbid>.cube.fits``
    the off-axis leakage and the Gaussian primary beam as an ASKAP holography beam cube
    (x, y, FREQ, STOKES, BEAM): ``flint linmos --pb-cube`` removes the leakage with it.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from flint.io import atomic_path
from flint.primary_beam import angular_separation_deg, gaussian_pb, sky_offsets_deg

if TYPE_CHECKING:
    from flint.sim import SimOptions, SkyModel

__all__ = [
    "PolSky",
    "Instrument",
    "random_pol",
    "make_instrument",
    "offaxis_leakage",
    "predict_coherency",
    "corrupt_full",
    "write_pol_csv",
    "write_xy_phase_csv",
    "write_pb_cube",
    "stokes_to_corr",
    "instrument_for",
    "Polariser",
    "write_field_truth",
    "pol_truth_paths",
    "PolScore",
    "score_polarisation",
    "C_LIGHT",
]

logger = logging.getLogger(__name__)

C_LIGHT = 299792458.0
#: random streams (second seed element) of the polarisation draws
_STREAM_SKY, _STREAM_INSTRUMENT = 21, 22


@dataclass(frozen=True)
class PolSky:
    """Polarisation of each source of a :class:`flint.sim.SkyModel` (same order)."""

    frac_lin: NDArray[np.float64]
    """Fractional linear polarisation ``p``."""
    chi0_rad: NDArray[np.float64]
    """Intrinsic polarisation angle (rad, at lambda = 0)."""
    rm_radm2: NDArray[np.float64]
    """Rotation measure (rad/m^2)."""
    frac_circ: NDArray[np.float64]
    """Fractional circular polarisation ``v`` (signed)."""

    def stokes(self, i_flux: NDArray[np.float64], freqs_hz: NDArray[np.float64]) -> NDArray[np.float64]:
        """``(4, source, chan)`` I, Q, U, V from the Stokes-I ``(source, chan)`` fluxes."""
        lam2 = (C_LIGHT / np.asarray(freqs_hz, dtype=float)) ** 2
        angle = 2.0 * (self.chi0_rad[:, None] + self.rm_radm2[:, None] * lam2[None, :])
        lin = self.frac_lin[:, None] * i_flux
        return np.stack([i_flux, lin * np.cos(angle), lin * np.sin(angle), self.frac_circ[:, None] * i_flux])


@dataclass(frozen=True)
class Instrument:
    """On-axis leakage and XY-phase (same for the calibrator and the science field)."""

    dterms: NDArray[np.complex128]
    """``(beam, ant, chan, 2)``: d_x, d_y of ``D = [[1, d_x], [d_y, 1]]``."""
    xy_phase_rad: NDArray[np.float64]
    """``(beam, ant, chan)``: phase of g_y / g_x."""
    offaxis: float
    """``L`` of the off-axis leakage (fraction at the half-power radius)."""

    def with_xy_phase(self, bandpass: NDArray[np.complex128]) -> NDArray[np.complex128]:
        """Bandpass ``(beam, ant, chan, 2)`` whose Y phase is the X phase plus the XY-phase."""
        out = bandpass.copy()
        out[..., 1] = np.abs(bandpass[..., 1]) * np.exp(1j * (np.angle(bandpass[..., 0]) + self.xy_phase_rad))
        return out


def random_pol(n_sources: int, n_bright: int, seed: int) -> PolSky:
    """Seeded polarisation of ``n_sources`` (the first ``n_bright`` are the bright ones)."""
    rng = np.random.default_rng([seed, _STREAM_SKY])
    idx = np.arange(n_sources)
    bright = idx < n_bright
    # bright sources alternate: even ones polarised, odd ones unpolarised (they measure the leakage)
    polarised = np.where(bright, idx % 2 == 0, rng.uniform(size=n_sources) < 0.5)
    p = np.where(polarised, np.where(bright, rng.uniform(0.04, 0.12, n_sources), rng.uniform(0.02, 0.3, n_sources)), 0.0)
    chi0 = rng.uniform(0.0, np.pi, n_sources)
    rm = np.where(polarised, rng.uniform(-80.0, 80.0, n_sources), 0.0)
    circ = polarised & np.where(bright, idx % 4 == 2, rng.uniform(size=n_sources) < 0.35)  # bright source 2 always
    v = np.where(circ, rng.choice([-1.0, 1.0], n_sources) * rng.uniform(0.01, 0.04, n_sources), 0.0)
    return PolSky(frac_lin=p, chi0_rad=np.where(polarised, chi0, 0.0), rm_radm2=rm, frac_circ=v)


def make_instrument(opts: SimOptions, freqs_hz: NDArray[np.float64]) -> Instrument:
    """Seeded D-terms and XY-phases of every beam and antenna (``pol_dterm_rms``, ``pol_xy_phase_deg``)."""
    rng = np.random.default_rng([opts.seed, _STREAM_INSTRUMENT])
    nb, na = opts.n_beams, opts.n_antennas
    x = (freqs_hz - freqs_hz.mean()) / max(float(np.ptp(freqs_hz)), opts.channel_width_hz)  # ~[-0.5, 0.5]
    s = opts.pol_dterm_rms / np.sqrt(2.0)
    d0 = s * (rng.standard_normal((nb, na, 1, 2)) + 1j * rng.standard_normal((nb, na, 1, 2)))
    d1 = 0.3 * s * (rng.standard_normal((nb, na, 1, 2)) + 1j * rng.standard_normal((nb, na, 1, 2)))
    dterms = d0 + d1 * x[None, None, :, None]
    xy0 = np.radians(opts.pol_xy_phase_deg) * rng.uniform(-1.0, 1.0, (nb, na, 1))
    delay = np.radians(opts.pol_xy_phase_deg) * 0.5 * rng.standard_normal((nb, na, 1))
    xy = xy0 + delay * x[None, None, :]
    return Instrument(dterms=dterms, xy_phase_rad=xy, offaxis=opts.pol_offaxis_leakage)


def offaxis_leakage(
    east_deg: NDArray[np.float64], north_deg: NDArray[np.float64], freq_hz: NDArray[np.float64] | float,
    level: float, pb_fwhm_deg: float, pb_ref_freq_hz: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Fractional leakage ``(Q/I, U/I, V/I)`` of an unpolarised source at the given offsets (broadcast)."""
    half = 0.5 * pb_fwhm_deg * pb_ref_freq_hz / np.asarray(freq_hz, dtype=float)
    r2 = (np.asarray(east_deg) ** 2 + np.asarray(north_deg) ** 2) / half**2
    theta = np.arctan2(north_deg, east_deg)
    return level * r2 * np.cos(2 * theta), level * r2 * np.sin(2 * theta), 0.5 * level * r2


def stokes_to_corr(iquv: NDArray[np.float64]) -> NDArray[np.complex128]:
    """``(4, ...)`` I, Q, U, V -> ``(4, ...)`` XX, XY, YX, YY (the WSClean/CASA convention)."""
    i, q, u, v = iquv
    return np.stack([i + q, u + 1j * v, u - 1j * v, i - q]).astype(np.complex128)


def predict_coherency(
    sky: SkyModel,
    pol: PolSky | None,
    uvw: NDArray[np.float64],
    freqs_hz: NDArray[np.float64],
    phase_centre_deg: tuple[float, float],
    pb_centre_deg: tuple[float, float] | None,
    opts: SimOptions,
    model_scale: NDArray[np.float64] | None = None,
    chunk: int = 2048,
) -> NDArray[np.complex128]:
    """Model visibilities ``(row, chan, 4)`` (XX, XY, YX, YY) of a polarised sky through the beam.

    ``pol=None``: unpolarised sources (the calibrator). ``pb_centre_deg=None``: no primary
    beam and no off-axis leakage (a source at the beam centre).
    """
    from flint.sim import _SIGN, _lmn

    freqs = np.asarray(freqs_hz, dtype=float)
    nrow, nc = uvw.shape[0], len(freqs)
    out = np.zeros((nrow, nc, 4), dtype=np.complex128)
    if len(sky) == 0:
        return out
    i_flux = sky.flux_at(freqs)
    if model_scale is not None:
        i_flux = i_flux * model_scale[None, :]
    iquv = pol.stokes(i_flux, freqs) if pol is not None else np.stack([i_flux, *(np.zeros_like(i_flux),) * 3])
    if pb_centre_deg is not None:
        sep = angular_separation_deg(pb_centre_deg[0], pb_centre_deg[1], sky.ra_deg, sky.dec_deg)
        iquv = iquv * gaussian_pb(sep[:, None], freqs[None, :], opts.pb_fwhm_deg, opts.pb_ref_freq_hz)[None]
        east, north = sky_offsets_deg(pb_centre_deg[0], pb_centre_deg[1], sky.ra_deg, sky.dec_deg)
        leak = offaxis_leakage(east[:, None], north[:, None], freqs[None, :], opts.pol_offaxis_leakage, opts.pb_fwhm_deg, opts.pb_ref_freq_hz)
        for k in range(3):
            iquv[k + 1] = iquv[k + 1] + leak[k] * iquv[0]
    keep = np.max(np.abs(iquv[0]), axis=1) > 1e-6
    corr = np.ascontiguousarray(stokes_to_corr(iquv[:, keep]).transpose(2, 1, 0))  # (chan, src, 4)
    l, m, n = _lmn(sky.ra_deg[keep], sky.dec_deg[keep], *phase_centre_deg)
    scale = 2 * np.pi * freqs / C_LIGHT
    for start in range(0, nrow, chunk):
        u = uvw[start : start + chunk]
        delay = _SIGN * (u[:, 0:1] * l + u[:, 1:2] * m + u[:, 2:3] * (n - 1.0))
        for k in range(nc):
            e = np.exp(1j * (delay * scale[k]))
            out[start : start + chunk, k] = e @ corr[k]
    return out


def corrupt_full(
    model: NDArray[np.complex128],
    gains_t: NDArray[np.complex128],
    dterms_b: NDArray[np.complex128],
    a1: NDArray[np.int32],
    a2: NDArray[np.int32],
    noise_jy: float,
    rngs: Sequence[np.random.Generator],
) -> NDArray[np.complex64]:
    """``(row, chan, 4)`` coherencies -> observed ``J_p B J_q^H`` + noise.

    ``gains_t`` ``(time, ant, chan, 2)`` and ``dterms_b`` ``(ant, chan, 2)``; the noise is
    the unpolarised simulator's (same generators, same draws).
    """
    from flint._sim_stream import corrupt

    nt, na = gains_t.shape[0], gains_t.shape[1]
    nbl, nc = len(a1), model.shape[1]
    data = corrupt(np.zeros((nt * nbl, nc), dtype=np.complex128), gains_t, a1, a2, noise_jy, rngs)
    jones = np.empty((nt, na, nc, 2, 2), dtype=np.complex128)
    gx, gy = gains_t[..., 0], gains_t[..., 1]
    jones[..., 0, 0] = gx
    jones[..., 0, 1] = gx * dterms_b[None, ..., 0]
    jones[..., 1, 0] = gy * dterms_b[None, ..., 1]
    jones[..., 1, 1] = gy
    b = model.reshape(nt, nbl, nc, 2, 2)
    vis = jones[:, a1] @ b @ np.conj(np.swapaxes(jones[:, a2], -1, -2))
    data += vis.reshape(nt * nbl, nc, 4).astype(np.complex64)
    return data


def write_pol_csv(path: Path, sky: SkyModel, pol: PolSky) -> Path:
    """The per-source polarisation truth (see the module docstring)."""
    iquv = pol.stokes(sky.flux_jy[:, None], np.array([sky.ref_freq_hz]))[:, :, 0]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "ra_deg", "dec_deg", "flux_jy", "alpha", "ref_freq_hz", "frac_lin", "chi0_deg", "rm_radm2", "frac_circ", "q_jy", "u_jy", "v_jy"])
        for k, name in enumerate(sky.name):
            w.writerow([
                name, f"{sky.ra_deg[k]:.8f}", f"{sky.dec_deg[k]:.8f}", f"{sky.flux_jy[k]:.8g}", f"{sky.alpha[k]:.6g}", sky.ref_freq_hz,
                f"{pol.frac_lin[k]:.8g}", f"{np.degrees(pol.chi0_rad[k]):.6f}", f"{pol.rm_radm2[k]:.6f}", f"{pol.frac_circ[k]:.8g}",
                f"{iquv[1, k]:.8g}", f"{iquv[2, k]:.8g}", f"{iquv[3, k]:.8g}",
            ])
    return path


def write_xy_phase_csv(path: Path, inst: Instrument, freqs_hz: NDArray[np.float64]) -> Path:
    """``beam, antenna, freq_hz, xy_phase_deg``: the XY-phase an on-dish calibration system reports."""
    nb, na, nc = inst.xy_phase_rad.shape
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["beam", "antenna", "freq_hz", "xy_phase_deg"])
        for b in range(nb):
            for a in range(na):
                for c in range(nc):
                    w.writerow([b, a, f"{freqs_hz[c]:.1f}", f"{np.degrees(inst.xy_phase_rad[b, a, c]):.6f}"])
    return path


def write_pb_cube(path: Path, opts: SimOptions, freqs_hz: NDArray[np.float64], pixel_deg: float = 0.0345) -> Path:
    """The simulator's primary beam and off-axis leakage as an ASKAP holography beam cube.

    5-D (x, y, FREQ, STOKES = I Q U V, BEAM), offsets in degrees from each beam's centre;
    PB_I is the Gaussian beam, PB_X = (X/I leakage) * PB_I. Every beam is alike.
    """
    from astropy.io import fits

    n = 2 * int(np.ceil(1.2 * opts.pb_fwhm_deg * opts.pb_ref_freq_hz / float(np.min(freqs_hz)) / pixel_deg)) + 1
    off = (np.arange(n) - n // 2) * pixel_deg
    north, east = np.meshgrid(off, off, indexing="ij")
    nc = len(freqs_hz)
    data = np.zeros((opts.n_beams, 4, nc, n, n), dtype=np.float32)
    for c, f in enumerate(freqs_hz):
        pbi = gaussian_pb(np.hypot(east, north), f, opts.pb_fwhm_deg, opts.pb_ref_freq_hz)
        leak = offaxis_leakage(east, north, f, opts.pol_offaxis_leakage, opts.pb_fwhm_deg, opts.pb_ref_freq_hz)
        data[:, 0, c] = pbi
        for k in range(3):
            data[:, k + 1, c] = leak[k] * pbi
    h = fits.Header()
    df = float(freqs_hz[1] - freqs_hz[0]) if nc > 1 else opts.channel_width_hz
    axes = [("X", 0.0, pixel_deg, n // 2 + 1), ("Y", 0.0, pixel_deg, n // 2 + 1), ("FREQ", float(freqs_hz[0]), df, 1), ("STOKES", 1, 1, 1), ("BEAM", 0, 1, 1)]
    for i, (ctype, crval, cdelt, crpix) in enumerate(axes, start=1):
        h[f"CTYPE{i}"], h[f"CRVAL{i}"], h[f"CDELT{i}"], h[f"CRPIX{i}"] = ctype, crval, cdelt, crpix
    h["CUNIT1"], h["CUNIT2"], h["CUNIT3"] = "deg", "deg", "Hz"
    h["ORIGIN"] = "flint sim --polarised"
    with atomic_path(path) as tmp:
        fits.PrimaryHDU(data, h).writeto(tmp)
    return path


def instrument_for(
    opts: SimOptions, freqs_hz: NDArray[np.float64], bandpass: NDArray[np.complex128]
) -> tuple[NDArray[np.complex128], Instrument | None]:
    """The bandpass with the XY-phase in and the instrument (``None`` unless ``opts.polarised``)."""
    if not opts.polarised:
        return bandpass, None
    inst = make_instrument(opts, freqs_hz)
    return inst.with_xy_phase(bandpass), inst


def instrument_truth(inst: Instrument) -> dict[str, NDArray[np.generic]]:
    """The truth entries of the instrument (``dterms``, ``xy_phase_rad``, ``pol_offaxis_leakage``)."""
    return {"dterms": inst.dterms, "xy_phase_rad": inst.xy_phase_rad, "pol_offaxis_leakage": np.array(inst.offaxis)}


@dataclass(frozen=True)
class Polariser:
    """Predicts and corrupts one beam's chunks with full coherencies and Jones matrices."""

    opts: SimOptions
    inst: Instrument
    beam: int
    polarised_sky: bool
    """The sources carry :func:`random_pol` polarisation (science field); else unpolarised (calibrator)."""

    def chunk(
        self,
        sky: SkyModel,
        uvw: NDArray[np.float64],
        freqs_hz: NDArray[np.float64],
        pointing: tuple[float, float],
        pb_centre: tuple[float, float] | None,
        model_scale: NDArray[np.float64] | None,
        gains_t: NDArray[np.complex128],
        a1: NDArray[np.int32],
        a2: NDArray[np.int32],
        noise_jy: float,
        rngs: Sequence[np.random.Generator],
    ) -> NDArray[np.complex64]:
        pol = random_pol(len(sky), self.opts.n_bright, self.opts.seed) if self.polarised_sky else None
        model = predict_coherency(sky, pol, uvw, freqs_hz, pointing, pb_centre, self.opts, model_scale)
        return corrupt_full(model, gains_t, self.inst.dterms[self.beam], a1, a2, noise_jy, rngs)


def pol_truth_paths(out_dir: str | Path, opts: SimOptions, calibrator: bool = False) -> dict[str, Path]:
    """Where the polarisation truth files of a simulation are (see the module docstring)."""
    from flint.naming import field_name, product_name
    from flint.sim import CALIBRATOR_FIELD

    out = Path(out_dir)
    if calibrator:
        return {"xy_phase": out / product_name(opts.bandpass_sbid, CALIBRATOR_FIELD, suffix="xyphase.csv")}
    fld = field_name(opts.field)
    return {
        "pol": out / product_name(opts.sbid, fld, suffix="pol.csv"),
        "pb_cube": out / f"akpb.iquv.{opts.footprint}{opts.n_beams}.SB{opts.sbid}.cube.fits",
    }


def write_field_truth(out_dir: str | Path, opts: SimOptions, sky: SkyModel, freqs_hz: NDArray[np.float64]) -> dict[str, Path]:
    """Write the science field's polarisation truth (``pol.csv``) and its holography-format beam cube."""
    paths = pol_truth_paths(out_dir, opts)
    write_pol_csv(paths["pol"], sky, random_pol(len(sky), opts.n_bright, opts.seed))
    write_pb_cube(paths["pb_cube"], opts, freqs_hz)
    return paths


@dataclass(frozen=True)
class PolScore:
    """How the polarisation products compare with the simulated truth."""

    rm_error_median: float
    """Median |RM - RM_true| (rad/m^2) of the polarised sources RM synthesis measured (SNR_PI >= ``min_snr_pi``)."""
    polfrac_ratio_median: float
    """Median recovered / true linearly polarised fraction of those sources."""
    leakage_after: float
    """Median |V/I| (band-averaged) of the unpolarised sources bright enough to measure 0.1 %
    (band-averaged I / V noise >= ``min_i_over_noise``) in the corrected mosaics."""
    flux_ratios: dict[str, dict[str, float]]
    """Bright polarised sources: name -> {"i", "q", "u", "v"}: least-squares flux scale of the measured
    I/Q/U/V spectra against the truth (1 = exact); "v" only for circularly polarised ones."""
    fraction_ratios: dict[str, dict[str, float]]
    """The same for the fractional spectra Q/I, U/I, V/I (the polarisation calibration, free of the
    total-intensity flux scale)."""
    n_rm: int
    n_unpolarised: int


def _cube_at(path: str | Path, ra: NDArray[np.float64], dec: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Point-source fluxes ``(source, chan)`` in a mosaic cube at the positions, and each channel's robust noise.

    The flux is the least-squares amplitude of the channel's restoring beam (its ``BEAMS`` row)
    centred on the position, over pixels within one FWHM: unbiased for a point source wherever it
    falls between pixels (the nearest pixel alone reads up to ~20 % low at 6"/15" sampling).
    NaN outside the image or where a channel is blank.
    """
    from flint.cubes import CubeReader, read_cube_info

    info = read_cube_info(path)
    beams = info.require_beams()
    wcs = info.wcs.celestial
    x, y = (np.asarray(v, dtype=float) for v in wcs.world_to_pixel_values(ra, dec))
    pix = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600.0  # arcsec per pixel
    out = np.full((len(ra), info.nchan), np.nan)
    noise = np.full(info.nchan, np.nan)
    with CubeReader(path, info) as reader:
        for c in range(info.nchan):
            plane = np.asarray(reader.plane(c, 0), dtype=float)
            if not beams.valid(c, 0) or not np.any(np.isfinite(plane)):
                continue
            med = np.nanmedian(plane)
            noise[c] = 1.4826 * np.nanmedian(np.abs(plane - med))
            bmaj, bmin, bpa = beams.as_tuple(c, 0)
            sx, sy = bmin / pix / 2.3548, bmaj / pix / 2.3548  # sigma (pixels) across / along the major axis
            half = int(np.ceil(bmaj / pix))
            t = np.radians(bpa)
            for k in range(len(ra)):
                if not (np.isfinite(x[k]) and np.isfinite(y[k])):
                    continue
                xi, yi = int(round(x[k])), int(round(y[k]))
                if not (0 <= xi < plane.shape[1] and 0 <= yi < plane.shape[0]):
                    continue
                ys, xs = slice(max(yi - half, 0), min(yi + half + 1, plane.shape[0])), slice(max(xi - half, 0), min(xi + half + 1, plane.shape[1]))
                box = plane[ys, xs]
                if box.size == 0 or not np.all(np.isfinite(box)):
                    continue
                yy, xx = np.mgrid[ys, xs]
                dx, dy = xx - x[k], yy - y[k]
                # position angle from north through east: east is -x on a standard RA axis
                u = -dx * np.cos(t) - dy * np.sin(t)
                v = -dx * np.sin(t) + dy * np.cos(t)
                g = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
                out[k, c] = float(np.sum(box * g) / np.sum(g * g))
    return out, noise


def score_polarisation(
    mosaics: dict[str, str], rm_table: str | Path, pol_csv: str | Path, n_bright: int,
    match_arcsec: float = 10.0, min_snr_pi: float = 8.0, min_i_over_noise: float = 1000.0,
) -> PolScore:
    """Score the polarisation flow's products (mosaics of ``i q u v``, the RM table) against ``pol.csv``."""
    from astropy.io import fits
    from astropy.table import Table

    from flint.primary_beam import angular_separation_deg

    truth = Table.read(pol_csv, format="ascii.csv")
    ra, dec = np.asarray(truth["ra_deg"], float), np.asarray(truth["dec_deg"], float)
    p_true, v_true = np.asarray(truth["frac_lin"], float), np.asarray(truth["frac_circ"], float)
    with fits.open(mosaics["i"]) as hdul:
        h = hdul[0].header
        names = [str(h.get(f"CTYPE{k}", "")).upper() for k in range(1, int(h["NAXIS"]) + 1)]
        ax = names.index("FREQ") + 1
        freqs = float(h[f"CRVAL{ax}"]) + (np.arange(int(h[f"NAXIS{ax}"])) + 1 - float(h[f"CRPIX{ax}"])) * float(h[f"CDELT{ax}"])
    vals, noise = {}, {}
    for p in ("i", "q", "u", "v"):
        vals[p], noise[p] = _cube_at(mosaics[p], ra, dec)
    # RM synthesis table against the polarised sources
    tab = Table.read(rm_table, format="ascii.csv")
    rm_err, frac = [], []
    for k in np.flatnonzero(p_true > 0):
        if not len(tab):
            break
        sep = angular_separation_deg(np.asarray(tab["ra"], float), np.asarray(tab["dec"], float), ra[k], dec[k]) * 3600.0
        j = int(np.argmin(sep))
        if sep[j] > match_arcsec or not np.isfinite(float(tab["snr_pi"][j])) or float(tab["snr_pi"][j]) < min_snr_pi:
            continue
        rm_err.append(abs(float(tab["rm_radm2"][j]) - float(truth["rm_radm2"][k])))
        frac.append(float(tab["polfrac"][j]) / p_true[k])
    # leakage of the unpolarised sources (band-averaged V / I)
    nv = float(np.sqrt(np.nansum(noise["v"] ** 2))) / max(int(np.sum(np.isfinite(noise["v"]))), 1)
    i_avg, v_avg = np.nanmean(vals["i"], axis=1), np.nanmean(vals["v"], axis=1)
    unpol = (p_true == 0) & (v_true == 0) & np.isfinite(i_avg) & (i_avg / max(nv, 1e-12) >= min_i_over_noise)
    leak = np.abs(v_avg[unpol] / i_avg[unpol])
    # Q/U/V flux scales of the bright polarised sources
    ratios: dict[str, dict[str, float]] = {}
    fractions: dict[str, dict[str, float]] = {}
    sky_i = np.asarray(truth["flux_jy"], float)[:, None] * (freqs[None, :] / np.asarray(truth["ref_freq_hz"], float)[:, None]) ** np.asarray(truth["alpha"], float)[:, None]
    pol = PolSky(p_true, np.radians(np.asarray(truth["chi0_deg"], float)), np.asarray(truth["rm_radm2"], float), v_true)
    model = pol.stokes(sky_i, np.asarray(freqs, dtype=np.float64))
    for kb in range(min(n_bright, len(truth))):
        if p_true[kb] == 0 or not np.all(np.isfinite(vals["i"][kb])):
            continue
        r, fr = {}, {}
        for idx, p in ((0, "i"), (1, "q"), (2, "u"), (3, "v")):
            t = model[idx, kb]
            if p == "v" and v_true[kb] == 0:
                continue
            r[p] = float(np.sum(vals[p][kb] * t) / np.sum(t * t))
            if p != "i":
                tf, mf = t / model[0, kb], vals[p][kb] / vals["i"][kb]
                fr[p] = float(np.sum(mf * tf) / np.sum(tf * tf))
        ratios[str(truth["name"][kb])] = r
        fractions[str(truth["name"][kb])] = fr
    return PolScore(
        rm_error_median=_median(rm_err), polfrac_ratio_median=_median(frac), leakage_after=_median(list(leak)), flux_ratios=ratios, fraction_ratios=fractions,
        n_rm=len(rm_err), n_unpolarised=int(unpol.sum()),
    )


def _median(x: list[float]) -> float:
    return float(np.median(x)) if len(x) else float("nan")
