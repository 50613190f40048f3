"""``flint sim --askap-raw``: Measurement Sets as the ASKAP correlator writes them.

What differs from flint's default (sky-frame) simulation:

- ``FIELD`` holds the footprint's boresight; each beam's offset from it is in
  ``FEED.BEAM_OFFSET`` (x = minus the RA offset on the sky, y = the Dec offset, radians;
  beam centres follow fixms's ``Skypos.shift`` convention). The visibilities and ``UVW``
  are phased at the beam centre, as the correlator's are.
- ``FEED`` has one row per (antenna, beam) for all 36 beams (row = antenna * 36 + beam),
  ``FEED_ID = BEAM_ID = beam``; ``FEED1 = FEED2 = beam`` in the main table;
  ``RECEPTOR_ANGLE = (45 deg - pol_axis, 135 deg - pol_axis)``; ``ANTENNA.MOUNT`` is
  ``equatorial`` (pol-axis tracking); autocorrelations are included.
- Correlations are in the instrument (feed) frame with ASKAPsoft's normalisation
  I = XX + YY: for the unpolarised sky simulated here XX = YY = I / 2 before the antenna
  gains, which act on the feeds (the truth ``bandpass`` is per feed; ``bandpass_sky_frame``
  is the same gains in the sky frame when the pol axis is a multiple of 45 deg + 90 k).
  Noise is ``noise_jy / 2`` so that it is ``noise_jy`` after the Stokes factor.
- No ``FLINT_FRAME`` keyword: by :mod:`flint.askap`'s rule these MSs are "instrument".
- The calibrator: one MS per beam, each holding 36 fields ``B1934-638_beam<k>`` (scan k
  drives PKS B1934-638 into beam k; ``FIELD_ID = SCAN_NUMBER = k``). Beam b sees the
  calibrator on source only in field b; in the other fields it sees it at its true
  position relative to beam b's pointing, attenuated by the primary beam. To keep files
  small the off-source scans keep ``askap_offsource_times`` integrations.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flint import _askap
from flint import sim as _sim
from flint._sim_stream import Chunk, TruthWriter
from flint.naming import beam_ms_name, field_name, product_name

__all__ = ["simulate_field_raw", "simulate_bandpass_raw", "beam_centre_deg", "boresight_for_deg", "N_FOOTPRINT"]

#: beams in an ASKAP footprint (FEED rows, calibrator fields)
N_FOOTPRINT = 36


def _skypos_shift(ra_deg: float, dec_deg: float, dlon_rad: float, dlat_rad: float) -> tuple[float, float]:
    from fixms.fix_ms_dir import Skypos

    pos = Skypos(np.radians(ra_deg), np.radians(dec_deg), 9, 9).shift(dlon_rad, dlat_rad)
    return float(np.degrees(pos.ra) % 360.0), float(np.degrees(pos.dec))


def beam_centre_deg(boresight_deg: tuple[float, float], offset_deg: tuple[float, float]) -> tuple[float, float]:
    """Beam centre for a boresight and a footprint offset (east, north; deg), as fixms computes it."""
    return _skypos_shift(boresight_deg[0], boresight_deg[1], np.radians(offset_deg[0]), np.radians(offset_deg[1]))


def boresight_for_deg(target_deg: tuple[float, float], offset_deg: tuple[float, float]) -> tuple[float, float]:
    """The boresight that puts the beam with ``offset_deg`` on ``target_deg`` (inverse of :func:`beam_centre_deg`)."""
    ra, dec = _sim._offset_radec(target_deg[0], target_deg[1], np.array([-offset_deg[0]]), np.array([-offset_deg[1]]))
    b = np.array([ra[0], dec[0]])
    for _ in range(30):
        got = np.array(beam_centre_deg((float(b[0]), float(b[1])), offset_deg))
        d = np.array(target_deg) - got
        d[0] = (d[0] + 180.0) % 360.0 - 180.0
        b = b + d
        if np.max(np.abs(d)) < 1e-13:
            break
    return float(b[0] % 360.0), float(b[1])


def _feed_offsets_rad(offs_deg: NDArray[np.float64]) -> NDArray[np.float64]:
    """FEED.BEAM_OFFSET (beam, receptor, 2) for footprint offsets (east, north; deg)."""
    x = -np.radians(offs_deg[:, 0])
    y = np.radians(offs_deg[:, 1])
    per_beam = np.stack([x, y], axis=-1)  # (beam, 2)
    return np.repeat(per_beam[:, None, :], 2, axis=1)


def _raw_layout(
    path: Path,
    *,
    opts: _sim.SimOptions,
    beam: int,
    n_ant: int,
    field_names: list[str],
    boresights_deg: list[tuple[float, float]],
    field_times: list[float],
    field_id: NDArray[np.int32],
    t0: float,
) -> None:
    """Turn the MS ``_write_ms`` wrote at ``path`` into the correlator's layout."""
    import casacore.tables as ct

    offs = _askap.footprint_offsets_deg(N_FOOTPRINT, opts.beam_pitch_deg, opts.footprint, origin="boresight")
    beam_off = _feed_offsets_rad(offs)
    theta = np.radians(45.0 - opts.askap_pol_axis_deg)
    with ct.table(str(path), readonly=False, ack=False) as t:
        t.putcol("FIELD_ID", field_id)
        t.putcol("SCAN_NUMBER", field_id)
    with ct.table(str(path / "ANTENNA"), readonly=False, ack=False) as t:
        t.putcol("MOUNT", ["equatorial"] * n_ant)
    with ct.table(str(path / "FEED"), readonly=False, ack=False) as t:
        t.removerows(list(range(t.nrows())))
        n = n_ant * N_FOOTPRINT
        t.addrows(n)
        ant = np.repeat(np.arange(n_ant, dtype=np.int32), N_FOOTPRINT)
        bm = np.tile(np.arange(N_FOOTPRINT, dtype=np.int32), n_ant)
        t.putcol("ANTENNA_ID", ant)
        t.putcol("FEED_ID", bm)
        t.putcol("BEAM_ID", bm)
        t.putcol("SPECTRAL_WINDOW_ID", np.full(n, -1, dtype=np.int32))
        t.putcol("TIME", np.full(n, t0))
        t.putcol("INTERVAL", np.full(n, 1e30))
        t.putcol("NUM_RECEPTORS", np.full(n, 2, dtype=np.int32))
        t.putcol("POLARIZATION_TYPE", np.array([["X", "Y"]] * n))
        t.putcol("POL_RESPONSE", np.tile(np.eye(2, dtype=np.complex64), (n, 1, 1)))
        t.putcol("RECEPTOR_ANGLE", np.tile(np.array([theta, theta + np.pi / 2]), (n, 1)))
        t.putcol("BEAM_OFFSET", beam_off[bm])
        t.putcol("POSITION", np.zeros((n, 3)))
    with ct.table(str(path / "FIELD"), readonly=False, ack=False) as t:
        nf = len(field_names)
        if nf > t.nrows():
            t.addrows(nf - t.nrows())
        t.putcol("NAME", field_names)
        t.putcol("CODE", [""] * nf)
        t.putcol("TIME", np.array(field_times))
        t.putcol("NUM_POLY", np.zeros(nf, dtype=np.int32))
        pc = np.radians(np.array(boresights_deg)).reshape(nf, 1, 2)
        for c in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
            t.putcol(c, pc)
        t.putcol("SOURCE_ID", np.zeros(nf, dtype=np.int32))


def _sky_frame_gains(bandpass: NDArray[np.complex128], pol_axis_deg: float) -> dict[str, Any]:
    k = (pol_axis_deg - 45.0) / 90.0
    if abs(k - round(k)) > 1e-9:
        return {}
    swapped = int(round(k)) % 2 == 1
    return {"bandpass_sky_frame": bandpass[..., ::-1] if swapped else bandpass}


def _raw_baselines(n_ant: int) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    a1, a2 = np.triu_indices(n_ant, k=0)  # the correlator writes autocorrelations too
    return a1.astype(np.int32), a2.astype(np.int32)


def simulate_field_raw(out_dir: str | os.PathLike[str], opts: _sim.SimOptions, progress: bool = False) -> _sim.SimResult:
    """A science field as raw ASKAP data (see the module docstring)."""
    t_start = time.perf_counter()
    fld = field_name(opts.field)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bp_rng = np.random.default_rng([opts.seed, 0])
    rng = np.random.default_rng([opts.seed, 2])
    itrf, times, freqs, _, _ = _sim._layout(opts, opts.start_mjd)
    a1, a2 = _raw_baselines(opts.n_antennas)
    nrow = len(times) * len(a1)
    bandpass = _sim._bandpasses(opts, freqs, bp_rng)
    boresight = (opts.ra_deg, opts.dec_deg)
    offs = _askap.footprint_offsets_deg(opts.n_beams, opts.beam_pitch_deg, opts.footprint, origin="boresight")
    centres = [beam_centre_deg(boresight, (float(o[0]), float(o[1]))) for o in offs]
    sky = _sim._random_sky(opts, centres, rng, offs=offs)
    drift = _sim._phase_drift(opts, times, rng)
    beams = list(range(opts.n_beams))
    truth = TruthWriter(out / product_name(opts.sbid, fld, suffix="truth.npz"), out)
    truth.add(bandpass=bandpass)
    truth.stream("gains", (opts.n_beams, len(times), opts.n_antennas, len(freqs), 2), np.complex128)
    truth.add(
        phase_drift=drift, times=times, freqs_hz=freqs, beams=np.array(beams), boresight_deg=np.array(boresight),
        pol_axis_deg=opts.askap_pol_axis_deg, **_sky_frame_gains(bandpass, opts.askap_pol_axis_deg),
    )
    paths, n_vis = [], 0

    def finish(tmp: Path, b: int) -> None:
        _raw_layout(
            tmp, opts=opts, beam=b, n_ant=opts.n_antennas, field_names=[fld], boresights_deg=[boresight],
            field_times=[float(times[0])], field_id=np.zeros(nrow, dtype=np.int32), t0=float(times[0]),
        )

    try:
        for b in _sim._progress(beams, f"simulate raw {fld}", progress):
            cells, mask_name = _sim._rfi_setup(opts, truth, b, _sim._RAW_FIELD, len(times), len(a1), len(freqs))
            # ASKAPsoft's I = XX + YY: XX = YY = I / 2 before the feed gains; noise halved to match
            chunks = _sim._beam_chunks(
                opts, sky=sky, times=times, itrf=itrf, a1=a1, a2=a2, freqs=freqs, pointing=centres[b], primary_beam=True,
                gains=_sim._drift_gains(bandpass[b], drift[b], truth), stream=(_sim._RAW_FIELD, b), vis_scale=0.5, noise_jy=0.5 * opts.noise_jy,
                cells=cells, truth=truth, mask_name=mask_name,
            )
            path = out / beam_ms_name(opts.sbid, fld, b)
            n_vis += _sim._write_ms(
                path, opts=opts, beam=b, beam_offset_rad=(0.0, 0.0), field_label=fld, phase_centre_deg=boresight,
                itrf=itrf, times=times, freqs=freqs, a1=a1, a2=a2, chunks=chunks, sky_frame=False,
                finish=partial(finish, b=b),
            )
            paths.append(path)
        sky_csv = out / product_name(opts.sbid, fld, suffix="sky.csv")
        sky_fits = out / product_name(opts.sbid, fld, suffix="sky.fits")
        beams_csv = out / product_name(opts.sbid, fld, suffix="beams.csv")
        _sim._write_sky(sky, sky_csv, sky_fits)
        _sim._write_beams_csv(beams_csv, beams, centres, opts)
        truth_path = truth.close()
    finally:
        truth.discard()
    dt = _sim._log_rate(f"simulate raw {fld}", n_vis, t_start)
    return _sim.SimResult(
        ms_paths=paths, beams=beams, beam_centres_deg=centres, truth=truth_path, sky_csv=sky_csv, sky_fits=sky_fits,
        beams_csv=beams_csv, n_visibilities=n_vis, seconds=dt,
    )


def simulate_bandpass_raw(out_dir: str | os.PathLike[str], opts: _sim.SimOptions, progress: bool = False) -> _sim.SimResult:
    """PKS B1934-638 driven through each beam in turn, as raw ASKAP data: 36 fields per beam MS."""
    t_start = time.perf_counter()
    cal_name = _sim.CALIBRATOR_FIELD
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bp_rng = np.random.default_rng([opts.seed, 0])
    itrf, _, freqs, _, _ = _sim._layout(opts, opts.start_mjd)
    a1, a2 = _raw_baselines(opts.n_antennas)
    nbl = len(a1)
    bandpass = _sim._bandpasses(opts, freqs, bp_rng)
    cal_pos = (_askap.B1934_RA_DEG, _askap.B1934_DEC_DEG)
    cal = _sim.SkyModel([cal_name], np.array([cal_pos[0]]), np.array([cal_pos[1]]), np.array([1.0]), np.array([0.0]), 1.0)
    offs = _askap.footprint_offsets_deg(N_FOOTPRINT, opts.beam_pitch_deg, opts.footprint, origin="boresight")
    boresights = [boresight_for_deg(cal_pos, (float(o[0]), float(o[1]))) for o in offs]
    scan_len = opts.n_times * opts.integration_s + 60.0
    scan_start = [opts.start_mjd - (N_FOOTPRINT - k) * scan_len / 86400.0 for k in range(N_FOOTPRINT)]
    names = [f"{cal_name}_beam{k}" for k in range(N_FOOTPRINT)]
    beams = list(range(opts.n_beams))
    truth = TruthWriter(out / product_name(opts.bandpass_sbid, cal_name, suffix="truth.npz"), out)
    truth.add(
        bandpass=bandpass, freqs_hz=freqs, beams=np.array(beams), pol_axis_deg=opts.askap_pol_axis_deg,
        boresights_deg=np.array(boresights), **_sky_frame_gains(bandpass, opts.askap_pol_axis_deg),
    )
    flux = _askap.b1934_flux_jy(freqs)
    paths, n_vis = [], 0
    try:
        for b in _sim._progress(beams, "simulate raw 1934-638", progress):
            scan_times = []
            for k in range(N_FOOTPRINT):
                _, times, _, _, _ = _sim._layout(opts, scan_start[k])
                scan_times.append(times if k == b else times[: opts.askap_offsource_times])
            n_int = [len(t) for t in scan_times]
            offsets = np.concatenate([[0], np.cumsum(n_int)])
            times_b = np.concatenate(scan_times)
            cells, mask_name = _sim._rfi_setup(opts, truth, b, _sim._RAW_BANDPASS, len(times_b), nbl, len(freqs))
            bp_b = bandpass[b]

            def scans(b: int = b, scan_times: list[NDArray[np.float64]] = scan_times, offsets: NDArray[np.int64] = offsets,
                      cells: NDArray[np.bool_] | None = cells, mask_name: str | None = mask_name,
                      bp_b: NDArray[np.complex128] = bp_b) -> Iterator[Chunk]:
                for k, times in enumerate(scan_times):
                    pointing = beam_centre_deg(boresights[k], (float(offs[b, 0]), float(offs[b, 1])))
                    yield from _sim._beam_chunks(
                        opts, sky=cal, times=times, itrf=itrf, a1=a1, a2=a2, freqs=freqs, pointing=pointing,
                        primary_beam=True, gains=partial(_sim._constant_gains, bp_b),
                        stream=(_sim._RAW_BANDPASS, b), t_offset=int(offsets[k]), model_scale=flux, vis_scale=0.5,
                        noise_jy=0.5 * opts.noise_jy, cells=cells, truth=truth, mask_name=mask_name,
                    )

            field_id = np.repeat(np.arange(N_FOOTPRINT, dtype=np.int32), np.array(n_int) * nbl)
            first = [float(t[0]) for t in scan_times]

            def finish(tmp: Path, b: int = b, field_id: NDArray[np.int32] = field_id, first: list[float] = first) -> None:
                _raw_layout(
                    tmp, opts=opts, beam=b, n_ant=opts.n_antennas, field_names=names, boresights_deg=boresights,
                    field_times=first, field_id=field_id, t0=first[0],
                )

            path = out / beam_ms_name(opts.bandpass_sbid, cal_name, b)
            n_vis += _sim._write_ms(
                path, opts=opts, beam=b, beam_offset_rad=(0.0, 0.0), field_label=names[0], phase_centre_deg=boresights[0],
                itrf=itrf, times=times_b, freqs=freqs, a1=a1, a2=a2, chunks=scans(), sky_frame=False, finish=finish,
            )
            paths.append(path)
        truth_path = truth.close()
    finally:
        truth.discard()
    dt = _sim._log_rate("simulate raw 1934-638", n_vis, t_start)
    centres = [cal_pos] * opts.n_beams
    return _sim.SimResult(ms_paths=paths, beams=beams, beam_centres_deg=centres, truth=truth_path, n_visibilities=n_vis, seconds=dt)
