"""Regression: the bandpass must not depend on where the simulator's RFI happens to fall.

The bug: AOFlagger was given 0 in the cells already flagged, and its high-pass step (a
smooth fit of the time-frequency image) is not blind to values under the mask. On the
calibrated calibrator in the flag round (~14 Jy over 0.42 Jy noise per visibility) the
zero "dips" under a flagged RFI burst biased the fit so much that whole channels were
flagged; the re-solve then had almost no data there (non-converged cells, ~90 flagged
solutions, 15-20 % amplitude errors). It hit 11 of seeds 1..12, 42, 43, 44 at the
simulator defaults with ``rfi=True``. Flagged cells are now given to AOFlagger as
values interpolated in time (:func:`flint.flagging.fill_flagged`).

Tolerances: the thermal floor with 10 integrations is ~0.2 % / 0.1 deg per gain (the
largest of 864 gains ~0.5 % / 0.5 deg); the brief's limits are 1 % and 1 deg. The seeds
below include ones that failed before the fix at ``n_times=10`` (3, 4, 5, 9, 44) and one
that did not (7).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flint.calibrate import BandpassOptions, read_solutions, run_bandpass
from flint.flagging import aoflag_baselines, default_strategy, fill_flagged
from flint.ms import open_table
from flint.sim import SimOptions, simulate_bandpass

SEEDS = (3, 4, 5, 7, 9, 44)


def _ref(g: np.ndarray) -> np.ndarray:
    """Remove antenna 0's phase from g (ant, chan, pol)."""
    return g * np.conj(g[:1]) / np.abs(g[:1])


@pytest.mark.parametrize("seed", SEEDS)
def test_bandpass_truth_with_rfi_over_seeds(seed: int, tmp_path: Path) -> None:
    sim = simulate_bandpass(tmp_path, SimOptions(n_beams=1, n_times=10, rfi=True, seed=seed))
    res = run_bandpass(sim.ms_paths[0], BandpassOptions(plot=False))
    truth = np.load(sim.truth)
    assert res.n_flagged_solutions == 0
    g = read_solutions(res.solutions).gains[0]  # (ant, chan, pol)
    ratio = g / _ref(truth["bandpass"][0])
    amp_err = float(np.max(np.abs(np.abs(ratio) - 1)))
    ph_err = float(np.max(np.degrees(np.abs(np.angle(ratio)))))
    assert amp_err <= 0.01, f"seed {seed}: amplitude error {amp_err:.4f}"
    assert ph_err <= 1.0, f"seed {seed}: phase error {ph_err:.3f} deg"
    # the flag rounds catch the RFI and leave the calibrator alone (before the fix:
    # 12-20 % of the data flagged, whole channels)
    rfi = truth["rfi_mask_beam00"]  # (row, chan)
    with open_table(sim.ms_paths[0]) as tab:
        flags = tab.getcol("FLAG").any(axis=-1)
    assert flags[rfi].mean() >= 0.9
    assert flags[~rfi].mean() <= 0.03, f"seed {seed}: {flags[~rfi].mean():.3f} of clean samples flagged"
    assert res.residual_rms_jy == pytest.approx(0.3 * np.sqrt(2), rel=0.03)


def test_aoflagger_high_snr_with_flagged_burst() -> None:
    """A strong flat signal with an already-flagged burst holding zeros: no new channel flags."""
    import aoflagger

    rng = np.random.default_rng(1)
    nbl, nt, nc = 20, 30, 12
    cube = 14.0 + 0.42 * (rng.standard_normal((nbl, nt, nc, 4)) + 1j * rng.standard_normal((nbl, nt, nc, 4)))
    cube[..., 1:3] -= 14.0  # cross-hands: noise only
    flags = np.zeros((nbl, nt, nc), dtype=bool)
    flags[:, 1, 8:11] = True
    cube[flags] = 0.0  # what a flagged, zeroed burst looks like
    flagger = aoflagger.AOFlagger()
    new = aoflag_baselines(cube.astype(np.complex64), flags, flagger, flagger.load_strategy_file(str(default_strategy())))
    assert np.all(new[flags])  # existing flags kept
    added = new & ~flags
    # before the fix: channels 8-10 flagged at every time on every baseline (~25 %)
    assert added.mean() <= 0.02, f"{added.mean():.3f} of clean samples flagged"
    assert added[:, :, 8:11].mean() <= 0.05


def test_fill_flagged_interpolates_in_time() -> None:
    t = np.arange(6, dtype=float)
    data = np.stack([(1 + 2j) * t, 5 + 0j * t, np.nan + 0j * t], axis=1)[..., None]  # (time, chan, corr)
    flags = np.zeros((6, 3), dtype=bool)
    flags[[0, 2, 3], 0] = True  # start and a gap in channel 0
    flags[5, 1] = True  # the end of channel 1
    flags[:, 2] = True  # channel 2 wholly flagged (and NaN)
    out = fill_flagged(data, flags)
    np.testing.assert_allclose(out[:, 0, 0], [1 + 2j, 1 + 2j, 2 + 4j, 3 + 6j, 4 + 8j, 5 + 10j])  # nearest at the start
    np.testing.assert_allclose(out[:, 1, 0], 5.0)
    np.testing.assert_array_equal(out[:, 2, 0], 0.0)
    np.testing.assert_array_equal(out[~flags], data[~flags])  # unflagged samples untouched
