"""Full-Jones bandpass on ``flint sim --polarised`` calibrator data: D-terms, XY-phase, apply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flint.calibrate import read_solutions
from flint.calibrate._jones import constrain_truth_dterms, decompose, fix_degeneracies
from flint.cli import main
from flint.ms import open_table


@pytest.fixture(scope="module")
def pol_cal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("polcal")
    assert main(["sim", str(out), "--what", "bandpass", "--polarised", "--n-beams", "1", "--n-times", "40",
                 "--n-channels", "8", "--seed", "3"]) == 0
    return out


def _solve(ms: Path, out: Path, *extra: str) -> Path:
    assert main(["calibrate", "bandpass", str(ms), "--no-plot", "--output", str(out), *extra]) == 0
    return out


def test_unitary_degeneracy_is_fixed() -> None:
    """J and J U (U unitary, common to all antennas) give the same solutions after flint's conventions."""
    rng = np.random.default_rng(1)
    nc, na = 3, 6
    J = np.eye(2) + 0.05 * (rng.standard_normal((nc, na, 2, 2)) + 1j * rng.standard_normal((nc, na, 2, 2)))
    # a common feed rotation/ellipticity (a few degrees) and arbitrary X and Y phases, per channel
    b = 0.05 * (rng.standard_normal(nc) + 1j * rng.standard_normal(nc))
    rot = np.stack([np.stack([np.ones(nc), -np.conj(b)], -1), np.stack([b, np.ones(nc)], -1)], -2) / np.sqrt(1 + np.abs(b) ** 2)[:, None, None]
    q = rot @ (np.exp(1j * rng.uniform(-np.pi, np.pi, (nc, 2)))[..., None] * np.eye(2))
    a = fix_degeneracies(J, 0, 0.3)
    b = fix_degeneracies(J @ q[:, None], 0, 0.3)
    assert np.max(np.abs(a - b)) < 1e-9
    g, d = decompose(a)
    assert np.max(np.abs(np.mean(d[..., 0] - np.conj(d[..., 1]), axis=1))) < 1e-9  # the stated constraint
    assert np.allclose(np.angle(g[:, 0, 1] / g[:, 0, 0]), 0.3)  # reference antenna's XY-phase as given


def test_full_jones_recovers_dterms_and_xy_phase(pol_cal: Path, tmp_path: Path) -> None:
    ms = next(pol_cal.glob("*.beam00.ms"))
    sols = _solve(ms, tmp_path / "full.bin", "--full-jones", "--xy-phase", str(next(pol_cal.glob("*.xyphase.csv"))))
    jones = read_solutions(sols).jones[0]  # (ant, chan, 2, 2)
    assert np.all(np.isfinite(jones))
    g, d = decompose(jones)
    truth = np.load(next(pol_cal.glob("*.truth.npz")))
    d_true = constrain_truth_dterms(truth["dterms"][0])
    assert np.sqrt(np.mean(np.abs(d_true) ** 2)) > 0.01  # leakage worth recovering was injected
    err = np.abs(d - d_true)
    assert np.median(err) < 0.002  # 0.2 % (noise-limited per channel)
    assert np.max(np.abs(np.mean(d - d_true, axis=1))) < 0.002  # band-averaged, every antenna
    # gains: amplitude and phase (relative to the reference antenna's X), both polarisations: the XY-phase is set
    ratio = g / truth["bandpass"][0]
    ratio = ratio / (ratio[0:1, :, 0:1] / np.abs(ratio[0:1, :, 0:1]))
    assert np.max(np.abs(np.abs(ratio) - 1)) < 0.005
    assert np.degrees(np.max(np.abs(np.angle(ratio)))) < 0.5


def test_apply_full_jones_removes_leakage_of_the_calibrator(pol_cal: Path, tmp_path: Path) -> None:
    """Corrected cross-hands of the unpolarised calibrator: |XY|/I <= 0.2 % with full Jones, not with XX/YY gains."""
    ms = next(pol_cal.glob("*.beam00.ms"))
    ratios = {}
    for kind, extra in (("full", ["--full-jones"]), ("diag", [])):
        sols = _solve(ms, tmp_path / f"{kind}.bin", *extra)
        out = tmp_path / f"{kind}.ms"
        assert main(["calibrate", "apply", str(ms), str(sols), "--output-ms", str(out)]) == 0
        with open_table(out) as tab:
            data = tab.getcol("CORRECTED_DATA")
            flag = tab.getcol("FLAG")
        v = np.nanmean(np.where(flag, np.nan, data), axis=0)  # (chan, 4): time/baseline average of a source at the centre
        i = 0.5 * (v[:, 0] + v[:, 3]).real
        ratios[kind] = np.max(np.abs(np.stack([v[:, 1], v[:, 2]])) / i)
    assert ratios["full"] < 0.002
    assert ratios["diag"] > 0.005  # the leakage the full-Jones solve removes
