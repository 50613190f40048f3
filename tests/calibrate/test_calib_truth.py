"""Bandpass, apply and self-cal on simulated data, checked against the simulator's truth.

Tolerances and expected numbers:

* bandpass: <= 1 % amplitude and <= 1 deg phase (reference-antenna phase removed); the
  thermal floor for the defaults is ~0.1 % / 0.06 deg (noise 0.42 Jy per complex
  visibility, ~13 Jy source, 35 baselines x 30 integrations per gain).
* apply: the bandpass removes the per-channel gains but not the science field's slow
  antenna phase drift (10 deg rms per antenna). The expected residual RMS after
  correction is computed from the truth (drift + noise scaled by 1/|g_p g_q|) and the
  measured one must match it to 5 %.
* self-cal (phase-only, 30 s) removes the drift: the residual must fall to the noise
  floor (within 5 %) and the amplitudes must not change at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flint.calibrate import (
    BandpassOptions,
    SelfcalOptions,
    read_solutions,
    run_apply,
    run_bandpass,
    run_selfcal,
)
from flint.ms import add_column, open_table
from flint.sim import SimOptions, SimResult, predict_model, read_sky

from conftest import writable_copy


def _ref(g: np.ndarray, ref: int = 0) -> np.ndarray:
    """Remove the reference antenna's phase, g (ant, chan, pol)."""
    r = g[ref : ref + 1]
    return g * np.conj(r) / np.abs(r)


def _read(ms: Path, *cols: str) -> dict[str, np.ndarray]:
    with open_table(ms) as tab:
        return {c: tab.getcol(c) for c in cols}


def _true_model(field: SimResult, beam: int, opts: SimOptions, ms: Path) -> np.ndarray:
    d = _read(ms, "UVW")
    with open_table(ms, subtable="SPECTRAL_WINDOW") as t:
        freqs = t.getcol("CHAN_FREQ")[0]
    assert field.sky_csv is not None
    centre = field.beam_centres_deg[beam]
    return predict_model(read_sky(field.sky_csv), d["UVW"], freqs, centre, centre, opts.pb_fwhm_deg, opts.pb_ref_freq_hz)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.abs(x) ** 2)))


@pytest.fixture(scope="module")
def bandpass_solutions(sim_bandpass: SimResult, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """run_bandpass (defaults: preflag, one flag round) on a copy of each beam."""
    out = {}
    work = tmp_path_factory.mktemp("bandpass")
    for beam, ms in zip(sim_bandpass.beams, sim_bandpass.ms_paths, strict=True):
        copy = writable_copy(ms, work)
        res = run_bandpass(copy, BandpassOptions(plot=beam == 0))
        assert res.solutions.name == f"SB100.B1934-638.beam{beam:02d}.aocalibrate.bin"
        assert res.solutions.parent == copy.path.parent
        assert res.n_flagged_solutions == 0
        assert res.flagged_fraction < 0.02  # clean data: few false flags
        assert res.residual_rms_jy == pytest.approx(0.3 * np.sqrt(2), rel=0.03)  # noise floor
        if beam == 0:
            assert res.plot is not None and res.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        out[beam] = res.solutions
    return out


def test_bandpass_matches_truth(bandpass_solutions: dict[int, Path], sim_bandpass: SimResult) -> None:
    truth = np.load(sim_bandpass.truth)["bandpass"]  # (beam, ant, chan, pol)
    for beam, path in bandpass_solutions.items():
        sols = read_solutions(path)
        assert sols.jones.shape == (1, 36, 12, 2, 2)
        assert np.all(sols.jones[..., 0, 1] == 0) and np.all(sols.jones[..., 1, 0] == 0)
        ratio = sols.gains[0] / _ref(truth[beam])
        amp_err = np.abs(np.abs(ratio) - 1)
        ph_err = np.degrees(np.abs(np.angle(ratio)))
        assert amp_err.max() <= 0.01, f"beam {beam}: amplitude error {amp_err.max():.4f}"
        assert ph_err.max() <= 1.0, f"beam {beam}: phase error {ph_err.max():.3f} deg"
        # and well inside: the thermal floor is ~0.1 %
        assert np.median(amp_err) < 0.002


def test_apply_reduces_residual_by_expected_factor(
    bandpass_solutions: dict[int, Path], sim_field: SimResult, sim_options: SimOptions, tmp_path: Path
) -> None:
    beam = 1
    ms = writable_copy(sim_field.ms_paths[beam], tmp_path)
    res = run_apply(ms, bandpass_solutions[beam])
    assert res.ms.column == "CORRECTED_DATA" and res.ms.path == ms.path
    d = _read(ms.path, "DATA", "CORRECTED_DATA", "FLAG", "ANTENNA1", "ANTENNA2", "TIME")
    model = _true_model(sim_field, beam, sim_options, ms.path)
    np.testing.assert_array_equal(d["DATA"], _read(sim_field.ms_paths[beam], "DATA")["DATA"])  # DATA untouched
    assert not d["FLAG"].any()
    truth = np.load(sim_field.truth)
    drift = truth["phase_drift"][beam]  # (time, ant)
    bp = truth["bandpass"][beam]  # (ant, chan, pol)
    t_idx = np.searchsorted(truth["times"], d["TIME"])
    a1, a2 = d["ANTENNA1"], d["ANTENNA2"]
    sigma2 = 2 * sim_options.noise_jy**2
    for pol, corr in ((0, 0), (1, 3)):
        before = _rms(d["DATA"][..., corr] - model)
        after = _rms(d["CORRECTED_DATA"][..., corr] - model)
        drift_term = model * (np.exp(1j * (drift[t_idx, a1] - drift[t_idx, a2]))[:, None] - 1)
        noise_term = sigma2 / (np.abs(bp[a1, :, pol]) * np.abs(bp[a2, :, pol])) ** 2
        expected = np.sqrt(np.mean(np.abs(drift_term) ** 2) + np.mean(noise_term))
        assert after == pytest.approx(expected, rel=0.05)
        # beam 1 of the defaults: 1.20 -> 0.55 Jy (factor 2.2); gain errors dominate
        # before, drift (0.33 Jy) + noise (0.45 Jy) after
        assert before / after > 2.0


def test_selfcal_phase_only_removes_drift_and_keeps_amplitudes(
    bandpass_solutions: dict[int, Path], sim_field: SimResult, sim_options: SimOptions, tmp_path: Path
) -> None:
    beam = 2  # the beam with the strongest drift signature (0.38 Jy vs a 0.44 Jy noise floor)
    ms = writable_copy(sim_field.ms_paths[beam], tmp_path)
    run_apply(ms, bandpass_solutions[beam])
    model = _true_model(sim_field, beam, sim_options, ms.path)
    add_column(ms, "MODEL_DATA", like="DATA", fill="zero")
    m4 = np.zeros((*model.shape, 4), np.complex64)
    m4[..., 0] = m4[..., 3] = model
    with open_table(ms.path, mode="rw") as tab:
        tab.putcol("MODEL_DATA", m4)
    before = _read(ms.path, "CORRECTED_DATA")["CORRECTED_DATA"]
    res = run_selfcal(ms, SelfcalOptions(mode="phase", interval_s=30.0, round=1))
    assert res.solutions.name == "SB101.SIM_FIELD.beam02.round1.selfcal.bin"
    assert res.data_column == "CORRECTED_DATA" and res.ms.column == "CORRECTED_DATA"
    sols = read_solutions(res.solutions)
    assert sols.n_intervals == 10  # 30 x 9.95 s in 30 s slices
    np.testing.assert_allclose(np.abs(sols.gains), 1.0, rtol=1e-9)
    after = _read(ms.path, "CORRECTED_DATA", "FLAG")
    assert not after["FLAG"].any()
    # phase-only: |V| unchanged sample by sample
    np.testing.assert_allclose(np.abs(after["CORRECTED_DATA"]), np.abs(before), rtol=2e-6, atol=1e-6)
    truth = np.load(sim_field.truth)
    bp = truth["bandpass"][beam]
    d = _read(ms.path, "ANTENNA1", "ANTENNA2")
    noise_floor = np.sqrt(np.mean(2 * sim_options.noise_jy**2 / (np.abs(bp[d["ANTENNA1"], :, 0]) * np.abs(bp[d["ANTENNA2"], :, 0])) ** 2))
    rms_before = _rms(before[..., 0] - model)
    rms_after = _rms(after["CORRECTED_DATA"][..., 0] - model)
    # before: noise + drift (~0.58 Jy); after: the noise floor (drift removed)
    assert rms_before > 1.25 * noise_floor
    assert rms_after == pytest.approx(noise_floor, rel=0.03)
    assert res.residual_rms_after < res.residual_rms_before


def test_selfcal_amp_phase_calibrates_raw_data(sim_field: SimResult, sim_options: SimOptions, tmp_path: Path) -> None:
    """amp+phase per channel on the raw DATA recovers bandpass x drift amplitudes."""
    beam = 1
    ms = writable_copy(sim_field.ms_paths[beam], tmp_path)
    model = _true_model(sim_field, beam, sim_options, ms.path)
    add_column(ms, "MODEL_DATA", like="DATA", fill="zero")
    m4 = np.zeros((*model.shape, 4), np.complex64)
    m4[..., 0] = m4[..., 3] = model
    with open_table(ms.path, mode="rw") as tab:
        tab.putcol("MODEL_DATA", m4)
    res = run_selfcal(ms, SelfcalOptions(mode="amp+phase", interval_s=60.0, chans_per_solution=1, min_snr=0))
    assert res.data_column == "DATA"
    sols = read_solutions(res.solutions)
    bp = np.load(sim_field.truth)["bandpass"][beam]
    amp_err = np.abs(np.abs(sols.gains) / np.abs(bp)[None] - 1)
    assert np.nanmedian(amp_err) < 0.05
    d = _read(ms.path, "DATA", "CORRECTED_DATA", "FLAG")
    ok = ~d["FLAG"][..., 0]
    assert ok.mean() > 0.99
    assert _rms((d["CORRECTED_DATA"][..., 0] - model)[ok]) < 0.4 * _rms((d["DATA"][..., 0] - model)[ok])
