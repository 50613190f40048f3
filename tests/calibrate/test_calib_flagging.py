"""Flagging: AOFlagger against the simulator's injected-RFI mask, deterministic flags, OR-only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flint.calibrate import BandpassOptions, read_solutions, run_bandpass
from flint.flagging import FlagOptions, default_strategy, run_flagging
from flint.ms import open_table
from flint.sim import SimOptions, SimResult, simulate_bandpass, simulate_field

from conftest import writable_copy

#: wider band and more integrations than the defaults so AOFlagger has images to work on
RFI_OPTS = SimOptions(n_beams=1, n_antennas=12, n_channels=64, n_times=60, rfi=True, rfi_fraction=0.03, seed=7)


@pytest.fixture(scope="module")
def rfi_field(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    return simulate_field(tmp_path_factory.mktemp("rfi_field"), RFI_OPTS)


@pytest.fixture(scope="module")
def rfi_bandpass(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    return simulate_bandpass(tmp_path_factory.mktemp("rfi_bp"), RFI_OPTS)


def _flags(ms: Path) -> np.ndarray:
    with open_table(ms) as tab:
        return tab.getcol("FLAG")


def test_packaged_strategy_exists() -> None:
    text = default_strategy().read_text()
    assert "function execute(input)" in text and "sumthreshold_masked" in text


def test_aoflagger_finds_injected_rfi(rfi_field: SimResult, tmp_path: Path) -> None:
    ms = writable_copy(rfi_field.ms_paths[0], tmp_path)
    res = run_flagging(ms)
    assert res.strategy == default_strategy()
    assert res.flagged_before == 0.0
    mask = np.load(rfi_field.truth)["rfi_mask_beam00"]  # (row, chan)
    flags = _flags(ms.path)
    assert np.all(flags == flags[..., :1])  # all correlations flagged together
    f = flags[..., 0]
    caught = f[mask].mean()
    false = f[~mask].mean()
    assert caught >= 0.90, f"only {caught:.3f} of the RFI flagged"
    assert false <= 0.05, f"{false:.3f} of clean samples flagged"
    assert res.flagged_after == pytest.approx(f.mean())


def test_aoflagger_false_flags_on_clean_data(tmp_path: Path) -> None:
    clean = simulate_field(tmp_path / "clean", RFI_OPTS.with_options(rfi=False))
    res = run_flagging(clean.ms_paths[0])
    assert res.flagged_after <= 0.05
    assert res.flagged_after < 0.01  # measured ~0.02 %


def test_bandpass_with_rfi_matches_truth_only_with_flagging(rfi_bandpass: SimResult, tmp_path: Path) -> None:
    truth = np.load(rfi_bandpass.truth)["bandpass"][0]
    ref = truth * np.conj(truth[:1]) / np.abs(truth[:1])

    def errors(opts: BandpassOptions, sub: str) -> tuple[float, float, int]:
        ms = writable_copy(rfi_bandpass.ms_paths[0], tmp_path / sub)
        res = run_bandpass(ms, opts.with_options(plot=False))
        ratio = read_solutions(res.solutions).gains[0] / ref
        return float(np.nanmax(np.abs(np.abs(ratio) - 1))), float(np.degrees(np.nanmax(np.abs(np.angle(ratio))))), res.n_flagged_solutions

    amp, ph, nflag = errors(BandpassOptions(), "flagged")
    assert amp <= 0.01 and ph <= 1.0 and nflag == 0
    amp0, ph0, _ = errors(BandpassOptions(preflag=False, flag_rounds=0, outlier_nsigma=None, min_snr=0), "unflagged")
    assert amp0 > 0.05  # without flagging the RFI corrupts the solutions


def test_deterministic_flags_are_exact_and_or_only(sim_field: SimResult, tmp_path: Path) -> None:
    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    with open_table(ms.path, mode="rw") as tab:
        data = tab.getcol("DATA")
        flags = tab.getcol("FLAG")
        uvw = tab.getcol("UVW")
        a1, a2 = tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
        data[10, 5, 2] = np.nan
        data[20, 6, :] = 0
        data[21, 6, 0] = 0  # one zero correlation only: not flagged
        uvw[30] = 0
        flags[40, 4, 1] = True  # an existing flag
        tab.putcol("DATA", data)
        tab.putcol("FLAG", flags)
        tab.putcol("UVW", uvw)
    res = run_flagging(ms, FlagOptions(aoflagger=False, antennas=("ak03", "5"), edge_channels=1))
    assert res.strategy is None
    f = _flags(ms.path)
    expected = np.zeros(f.shape[:2], dtype=bool)
    expected[10, 5] = expected[20, 6] = expected[40, 4] = True
    expected[30, :] = True
    expected[np.isin(a1, [2, 5]) | np.isin(a2, [2, 5])] = True
    expected[:, 0] = expected[:, -1] = True
    np.testing.assert_array_equal(f, np.repeat(expected[:, :, None], 4, axis=2))
    assert res.flagged_before == pytest.approx(1 / f.size)
    assert res.flagged_after == pytest.approx(f.mean())
    # running again never removes flags; AOFlagger added on top keeps all of them
    res2 = run_flagging(ms)
    f2 = _flags(ms.path)
    assert np.all(f2[f]) and res2.flagged_after >= res.flagged_after
    # unless asked: clear_existing with nothing to flag empties the FLAG column
    res3 = run_flagging(ms, FlagOptions(aoflagger=False, flag_nan_zero=False, flag_zero_uvw=False, clear_existing=True))
    assert res3.flagged_after == 0.0 and not _flags(ms.path).any()
