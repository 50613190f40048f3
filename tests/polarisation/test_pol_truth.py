"""Truth tests of the polarisation chain on ``flint sim --polarised`` data.

One run per session, shared with the notebook test (the ``pol_tutorial`` fixture executes
tutorial 08 with papermill): simulate (36 x 8 MHz at ~888 MHz, D-terms, XY-phases, off-axis
leakage; the simulation of ``flint demo --pol``) -> bandpass flow (full-Jones, XY-phase from the
on-dish-calibration file) -> continuum flow (phase-only self-cal) -> polarisation flow (IQUV
cubes, common beam per channel, cube linmos with the holography-format beams, leakage check,
RM synthesis). The tests read the products from disk and score them against the truth files.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from flint._sim_pol import pol_truth_paths, score_polarisation
from flint.calibrate import read_solutions
from flint.calibrate._jones import constrain_truth_dterms, decompose

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("wsclean") is None, reason="wsclean not on PATH")]


@pytest.fixture(scope="module")
def demo(pol_tutorial: tuple[dict, Path]) -> tuple[Path, str]:
    """(the run's folder, what the notebook printed)."""
    from nbtools import printed

    nb, work = pol_tutorial
    return work, printed(nb)


def _printed(text: str, key: str) -> float:
    m = re.search(rf"^{key}:? ([-+0-9.eEnaN]+)", text, re.M)
    assert m, f"{key} not printed"
    return float(m.group(1))


def _score(out: Path, text: str):  # type: ignore[no-untyped-def]
    from flint.cli.demo import _POL_SIM  # the demo's simulation, which the tutorial's is
    from flint.sim import SimOptions

    opts = SimOptions(**_POL_SIM, n_beams=2)
    pol = out / "polarisation"
    mosaics = {p: str(next(pol.glob(f"*.{p}.image.cube.linmos.fits"))) for p in "iquv"}
    table = next(pol.glob("*.rm.csv"))
    return score_polarisation(mosaics, table, pol_truth_paths(out / "data", opts)["pol"], opts.n_bright)


def test_dterms_match_the_injected_ones(demo: tuple[Path, str]) -> None:
    out, _ = demo
    truth = np.load(next((out / "data").glob("SB100.*.truth.npz")))
    for sols in sorted((out / "bandpass").glob("*.aocalibrate.bin")):
        beam = int(re.search(r"\.beam(\d+)\.", sols.name).group(1))  # type: ignore[union-attr]
        _, d = decompose(read_solutions(sols).jones[0])
        d_true = constrain_truth_dterms(truth["dterms"][beam])
        ok = np.isfinite(d)
        assert ok.mean() > 0.95
        assert np.median(np.abs(d - d_true)[ok]) < 0.002  # 0.2 %
        assert np.nanmax(np.abs(np.nanmean(np.where(ok, d - d_true, np.nan), axis=1))) < 0.002  # band mean, every antenna


def test_quv_rm_and_leakage_against_truth(demo: tuple[Path, str]) -> None:
    out, text = demo
    score = _score(out, text)
    assert score.fraction_ratios, "no bright polarised source measured"
    assert any("v" in r for r in score.fraction_ratios.values())  # a circularly polarised one among them
    for name, ratios in score.fraction_ratios.items():  # Q/I, U/I, V/I spectra against the truth's
        for p, r in ratios.items():
            assert abs(r - 1) < 0.03, (name, p, r)
    assert score.n_rm >= 2
    assert score.rm_error_median < 2.0
    assert abs(score.polfrac_ratio_median - 1) < 0.05
    assert score.n_unpolarised >= 1
    assert score.leakage_after <= 0.002
    # what the notebook printed is what the products give
    assert _printed(text, "rm_error_median") == pytest.approx(score.rm_error_median, abs=1e-3)
    assert _printed(text, "polfrac_ratio_median") == pytest.approx(score.polfrac_ratio_median, abs=1e-4)
    assert _printed(text, "leakage_after") == pytest.approx(score.leakage_after, abs=1e-5)


def test_absolute_quv_fluxes_within_3_percent(demo: tuple[Path, str]) -> None:
    """I/Q/U/V of the bright polarised sources (a beam-shaped fit at the true position in every
    channel of the mosaic cubes) within 3 % of the truth. The cubes clean to 1 sigma inside
    WSClean's auto-mask: at 3 sigma up to ~120 mJy of a 1-2 Jy source stayed in the residual
    and one beam's cube read 1-4 % low per channel (0.975-1.002 at 1 sigma).

    Measured (2026-12-02, 8 MHz-channel noise of 0.106 Jy): I 0.984/0.990, Q 0.992/0.989,
    U 0.996/0.983, V 0.993. With the 1 MHz value (0.3 Jy) in 8 MHz channels SIM0002's U read
    0.970: a 2.7-sigma noise fluctuation, not an error of the chain (``benchmarks/bench_pol_flux.py``:
    noise-free 0.998, other noise draws 0.991-1.000, the simulator's draw 0.979)."""
    out, text = demo
    score = _score(out, text)
    print("flux ratios", score.flux_ratios)
    for name, ratios in score.flux_ratios.items():
        for p, r in ratios.items():
            assert abs(r - 1) < 0.03, (name, p, r)


def test_the_tutorial_runs_the_demos_simulation(demo: tuple[Path, str], tmp_path: Path) -> None:
    """``flint demo --pol`` (simulation only) writes the same truth and data as the tutorial the tests read.

    The flows after it are the same calls with the same strategy (512 px of 6 arcsec, the
    on-dish XY-phase); the pol demo's full run is timed in the README, not repeated in CI.
    """
    from flint.cli import main

    out, _ = demo
    assert main(["demo", str(tmp_path / "demo"), "--pol", "--simulate-only"]) == 0
    for name in ("SB101.SIM_FIELD.pol.csv", "SB101.SIM_FIELD.sky.csv", "SB101.SIM_FIELD.beams.csv", "SB100.B1934-638.xyphase.csv"):
        assert (tmp_path / "demo" / "data" / name).read_text() == (out / "data" / name).read_text(), name
    for name in ("SB101.SIM_FIELD.truth.npz", "SB100.B1934-638.truth.npz"):
        mine, theirs = np.load(tmp_path / "demo" / "data" / name), np.load(out / "data" / name)
        assert set(mine.files) == set(theirs.files), name
        for key in mine.files:
            np.testing.assert_array_equal(mine[key], theirs[key], err_msg=f"{name}:{key}")
    # the same visibilities, noise included (the truth files do not hold the noise level)
    from casacore.tables import table

    for beam in (0, 1):
        ms = f"SB101.SIM_FIELD.beam{beam:02d}.ms"
        with table(str(tmp_path / "demo" / "data" / ms), ack=False) as a, table(str(out / "data" / ms), ack=False) as b:
            np.testing.assert_array_equal(a.getcol("DATA", 0, 630), b.getcol("DATA", 0, 630), err_msg=ms)


def test_the_wide_band_continuum_is_spectrally_fitted(demo: tuple[Path, str]) -> None:
    """The continuum flow before the polarisation flow, on the same wide band (36 x 8 MHz at
    888 MHz, sources of spectral index -0.6 to -0.9): ``pol_strategy``'s spectral fitting
    (4 sub-bands, a linear fit) keeps the mosaic's inner noise well below plain MFS's.

    Measured on the demo's field (2026-12-03): plain MFS 16.4x thermal and 7 of 12 inner
    >= 5 sigma components spurious; with the fit 10.2x and 2 of 6. The bound, 12x, fails the
    plain MFS run. Still far from thermal: see the README (phase-only self-cal of a field with
    1-2 Jy sources)."""
    import csv

    out, _ = demo
    table = next((out / "continuum").glob("*.round2.linmos.validation.csv"))
    values = {r["metric"]: r["value"] for r in csv.DictReader(table.open())}
    print({k: values[k] for k in ("noise_to_thermal", "n_spurious_inner", "n_components_inner", "completeness")})
    assert float(values["noise_to_thermal"]) < 12.0
    assert float(values["completeness"]) == 1.0
    assert int(float(values["n_spurious_inner"])) <= 4  # plain MFS: 7
    assert next((out / "continuum").glob("*.beam00.round2.ch0003.image.fits"))  # 4 sub-band images
