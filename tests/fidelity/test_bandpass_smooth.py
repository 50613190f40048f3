"""Bandpass smoothing and outlier flagging across channels (flint.calibrate._smooth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flint.calibrate import read_solutions
from flint.calibrate._smooth import SmoothOptions, flag_outlier_channels, smooth_solutions
from flint.calibrate.aocal import AOSolutions
from flint.cli import main
from flint.errors import FlintOptionsError
from flint.sim import SimOptions, simulate_bandpass


def _ref(g: np.ndarray) -> np.ndarray:
    """Remove antenna 0's phase from g (ant, chan, pol)."""
    return g * np.conj(g[:1]) / np.abs(g[:1])


def _errors(g: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """RMS amplitude error (fraction) and phase error (deg) of g against the truth (ant, chan, pol)."""
    ratio = _ref(g) / _ref(truth)
    return float(np.sqrt(np.nanmean((np.abs(ratio) - 1) ** 2))), float(np.degrees(np.sqrt(np.nanmean(np.angle(ratio) ** 2))))


def _smooth_truth(n_ant: int = 6, n_chan: int = 64, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.linspace(-0.5, 0.5, n_chan)
    amp = 1 + 0.1 * rng.standard_normal((n_ant, 1, 2)) + 0.05 * np.sin(2 * np.pi * x[None, :, None] / 0.8 + rng.uniform(0, 6, (n_ant, 1, 2)))
    phase = rng.uniform(-1, 1, (n_ant, 1, 2)) + 0.6 * rng.standard_normal((n_ant, 1, 2)) * x[None, :, None]
    return np.asarray(amp * np.exp(1j * phase))


def test_outliers_flagged_and_noise_smoothed_on_synthetic_gains() -> None:
    truth = _smooth_truth()
    rng = np.random.default_rng(5)
    noisy = np.asarray(truth * (1 + 0.02 * (rng.standard_normal(truth.shape) + 1j * rng.standard_normal(truth.shape))), dtype=np.complex128)
    noisy[2, 20, 0] *= 1.8  # an RFI-hit channel: 80 % amplitude excursion
    noisy[4, 41, 1] *= np.exp(1j * 0.9)  # a phase jump of 52 deg
    flags = flag_outlier_channels(noisy, nsigma=6.0)
    assert flags[2, 20, 0] and flags[4, 41, 1]
    assert flags.sum() <= 4  # nothing else but a few noise tails at most
    sols, n_new = smooth_solutions(AOSolutions.from_gains(noisy[None]), SmoothOptions(window_channels=9))
    out = sols.gains[0]
    assert n_new == int(flags.sum())
    assert np.isnan(out[2, 20, 0]) and np.isnan(out[4, 41, 1])  # flagged, and they stay flagged
    amp0, ph0 = _errors(noisy, truth)
    amp1, ph1 = _errors(out, truth)
    assert amp1 < amp0 / 2 and ph1 < ph0 / 2


def test_cli_bandpass_smoothing_is_closer_to_the_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A noisy 48-channel calibrator: the smoothed solutions are nearer the simulator's bandpass."""
    sim = simulate_bandpass(tmp_path / "sim", SimOptions(n_beams=1, n_times=4, n_channels=48, noise_jy=4.0, seed=11))
    truth = np.load(sim.truth)["bandpass"][0]
    ms = str(sim.ms_paths[0])
    common = ["calibrate", "bandpass", ms, "--no-plot", "--no-preflag", "--flag-rounds", "0"]
    assert main([*common, "--output", str(tmp_path / "raw.bin")]) == 0
    assert main([*common, "--output", str(tmp_path / "smooth.bin"), "--smooth-window-channels", "9"]) == 0
    capsys.readouterr()
    raw = read_solutions(tmp_path / "raw.bin").gains[0]
    smooth = read_solutions(tmp_path / "smooth.bin").gains[0]
    amp0, ph0 = _errors(raw, truth)
    amp1, ph1 = _errors(smooth, truth)
    assert amp1 < 0.7 * amp0 and ph1 < 0.7 * ph0, (amp0, amp1, ph0, ph1)
    assert np.isnan(smooth).mean() <= 0.01  # a few outlier channels flagged at most


def test_bad_window_is_refused() -> None:
    with pytest.raises(FlintOptionsError):
        SmoothOptions.create(window_channels=5, polyorder=5)
