"""``flint calibrate bandpass`` on ``flint sim --askap-raw`` calibrator data (36 fields per beam MS).

raw MS -> refused ("run `flint ms preprocess` first") -> preprocess (fixms) -> bandpass on the
field of the beam -> solutions equal to the simulator's sky-frame bandpass (reference-antenna
phase removed) within 1 % in amplitude and 1 deg in phase, as for the default simulation.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from flint.calibrate import choose_bandpass_field, read_solutions
from flint.cli import main
from flint.ms import MS, open_table
from flint.sim import SimOptions, SimResult, simulate_bandpass

RAW = SimOptions(askap_raw=True, n_beams=2, n_antennas=18, n_channels=8, n_times=16, seed=21)


@pytest.fixture(scope="module")
def raw_bandpass(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    """Raw 36-field calibrator MSs of beams 0 and 1 (read-only: copy before modifying)."""
    return simulate_bandpass(tmp_path_factory.mktemp("raw_bandpass"), RAW)


def _ref(g: np.ndarray, ref: int = 0) -> np.ndarray:
    r = g[ref : ref + 1]
    return g * np.conj(r) / np.abs(r)


def test_raw_calibrator_preprocessed_then_solved_on_its_field(
    raw_bandpass: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flint.askap import preprocess_askap

    truth = np.load(raw_bandpass.truth)
    assert "bandpass_sky_frame" in truth
    for beam, src in zip(raw_bandpass.beams, raw_bandpass.ms_paths, strict=True):
        ms = tmp_path / src.name
        shutil.copytree(src, ms)
        with open_table(ms, subtable="FIELD") as t:
            assert t.nrows() == 36
        # raw: refused, nothing written
        assert main(["-q", "calibrate", "bandpass", str(ms), "--no-plot"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "run `flint ms preprocess" in err
        assert not list(tmp_path.glob(f"*beam{beam:02d}*.bin"))
        preprocess_askap(ms)
        assert main(["-q", "calibrate", "bandpass", str(ms), "--no-plot"]) == 0
        out = capsys.readouterr().out
        assert f"field B1934-638_beam{beam} (its name carries beam {beam})" in out
        sols = read_solutions(tmp_path / f"SB100.B1934-638.beam{beam:02d}.aocalibrate.bin")
        ratio = sols.gains[0] / _ref(truth["bandpass_sky_frame"][beam])
        amp_err = np.abs(np.abs(ratio) - 1)
        ph_err = np.degrees(np.abs(np.angle(ratio)))
        assert amp_err.max() <= 0.01, f"beam {beam}: amplitude error {amp_err.max():.4f}"
        assert ph_err.max() <= 1.0, f"beam {beam}: phase error {ph_err.max():.3f} deg"


def test_preprocessed_fields_are_found_by_phase_centre_without_beam_names(raw_bandpass: SimResult, tmp_path: Path) -> None:
    """After fixms each field's phase centre is the beam's centre: field b is on 1934-638."""
    from flint.askap import preprocess_askap

    src = raw_bandpass.ms_paths[1]
    ms = tmp_path / src.name
    shutil.copytree(src, ms)
    preprocess_askap(ms)
    with open_table(ms, mode="rw", subtable="FIELD") as t:
        t.putcol("NAME", [f"SCAN_{k}" for k in range(t.nrows())])
    choice = choose_bandpass_field(MS.cast(ms))
    assert (choice.field_id, choice.name) == (1, "SCAN_1")
    assert choice.separation_arcmin < 0.01
    # before preprocessing every field's phase centre is the boresight: none is on 1934-638
    raw = tmp_path / "raw.ms"
    shutil.copytree(src, raw)
    with open_table(raw, subtable="FIELD") as t:
        dirs = np.degrees(t.getcol("PHASE_DIR")[:, 0, :])
    from flint.primary_beam import angular_separation_deg

    seps = [60 * float(angular_separation_deg(d[0] % 360, d[1], 294.8542750, -63.7126750)) for d in dirs]
    assert min(seps) > 10.0
