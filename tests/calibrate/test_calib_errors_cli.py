"""Bad inputs give one clear FlintError and write nothing; the CLI end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flint.calibrate import (
    AOSolutions,
    ApplyOptions,
    BandpassOptions,
    read_solutions,
    run_apply,
    run_bandpass,
    run_selfcal,
    write_solutions,
)
from flint.cli import main
from flint.errors import FlintCalibrationError, FlintInputError, FlintMSError, FlintOptionsError
from flint.flagging import FlagOptions, run_flagging
from flint.ms import data_columns, open_table
from flint.sim import SimResult

from conftest import writable_copy


def _files(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def test_selfcal_without_model_data(sim_field: SimResult, tmp_path: Path) -> None:
    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    before = _files(tmp_path)
    with pytest.raises(FlintMSError, match="has no MODEL_DATA column"):
        run_selfcal(ms)
    assert _files(tmp_path) == before
    assert "CORRECTED_DATA" not in data_columns(ms)


def test_wrong_correlations(sim_bandpass: SimResult, tmp_path: Path) -> None:
    ms = writable_copy(sim_bandpass.ms_paths[0], tmp_path)
    with open_table(ms.path, mode="rw", subtable="POLARIZATION") as t:
        t.putcol("CORR_TYPE", np.array([[5, 6, 7, 8]], dtype=np.int32))
    before = _files(tmp_path)
    with pytest.raises(FlintMSError, match=r"correlations are RR RL LR LL.*needs XX and YY"):
        run_bandpass(ms)
    assert _files(tmp_path) == before


def test_all_data_flagged(sim_bandpass: SimResult, tmp_path: Path) -> None:
    ms = writable_copy(sim_bandpass.ms_paths[0], tmp_path)
    with open_table(ms.path, mode="rw") as tab:
        tab.putcol("FLAG", np.ones(tab.getcol("FLAG").shape, dtype=bool))
    before = _files(tmp_path)
    with pytest.raises(FlintCalibrationError, match="every visibility of DATA is flagged"):
        run_bandpass(ms, BandpassOptions(plot=False))
    assert _files(tmp_path) == before


def test_bandpass_refuses_a_science_field(sim_field: SimResult, tmp_path: Path) -> None:
    with pytest.raises(FlintMSError, match="from PKS B1934-638"):
        run_bandpass(sim_field.ms_paths[0])


def test_bad_reference_antenna(sim_bandpass: SimResult) -> None:
    with pytest.raises(FlintOptionsError, match="antenna 'ak99' is not in"):
        run_bandpass(sim_bandpass.ms_paths[0], BandpassOptions(ref_antenna="ak99", preflag=False))


def test_apply_missing_solutions(sim_field: SimResult, tmp_path: Path) -> None:
    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    with pytest.raises(FlintInputError, match="no such solution file"):
        run_apply(ms, tmp_path / "missing.bin")
    assert "CORRECTED_DATA" not in data_columns(ms)


def test_apply_dimension_mismatch(sim_field: SimResult, tmp_path: Path) -> None:
    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    sols = write_solutions(tmp_path / "wrong.bin", AOSolutions.from_gains(np.ones((1, 36, 11, 2), complex)))
    with pytest.raises(FlintInputError, match=r"36 antennas x 11 channels but .* 36 antennas x 12 channels"):
        run_apply(ms, sols)
    assert "CORRECTED_DATA" not in data_columns(ms)
    with open_table(ms.path) as tab:
        assert not tab.getcol("FLAG").any()


def test_apply_refuses_to_overwrite_data() -> None:
    with pytest.raises(FlintOptionsError, match="refusing to overwrite DATA"):
        ApplyOptions.create(output_column="DATA")


def test_apply_flags_data_of_flagged_solutions_and_writes_new_ms(sim_field: SimResult, tmp_path: Path) -> None:
    g = np.full((1, 36, 12, 2), 2.0 + 0j)
    g[0, 4, 7, 1] = np.nan  # one polarisation flagged -> the whole Jones matrix is
    sols = write_solutions(tmp_path / "sols.bin", AOSolutions.from_gains(g))
    out = tmp_path / "calibrated.ms"
    res = run_apply(sim_field.ms_paths[0], sols, ApplyOptions(output_ms=out))
    assert res.ms.path == out and res.ms.column == "CORRECTED_DATA"
    assert "CORRECTED_DATA" not in data_columns(sim_field.ms_paths[0])  # the input is untouched
    with open_table(out) as tab:
        data, corr, flags = tab.getcol("DATA"), tab.getcol("CORRECTED_DATA"), tab.getcol("FLAG")
        a1, a2 = tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
    hit = (a1 == 4) | (a2 == 4)
    expected = np.zeros(flags.shape[:2], dtype=bool)
    expected[hit, 7] = True
    np.testing.assert_array_equal(flags, np.repeat(expected[:, :, None], 4, axis=2))
    assert res.flagged_after == pytest.approx(flags.mean())
    np.testing.assert_allclose(corr[~expected], data[~expected] / 4.0, rtol=1e-6)
    assert np.all(corr[expected] == 0)


def test_bad_strategy_file(sim_field: SimResult, tmp_path: Path) -> None:
    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    with pytest.raises(FlintInputError, match="no such AOFlagger strategy file"):
        run_flagging(ms, FlagOptions(strategy=tmp_path / "nope.lua"))
    broken = tmp_path / "broken.lua"
    broken.write_text("this is not lua (")
    with pytest.raises(FlintInputError, match="AOFlagger cannot load this strategy"):
        run_flagging(ms, FlagOptions(strategy=broken))
    with open_table(ms.path) as tab:
        assert not tab.getcol("FLAG").any()


def test_cli_end_to_end(sim_bandpass: SimResult, sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cal = writable_copy(sim_bandpass.ms_paths[0], tmp_path)
    sci = writable_copy(sim_field.ms_paths[0], tmp_path)
    assert main(["-q", "flag", str(sci.path), "--edge-channels", "1", "--no-aoflagger"]) == 0
    assert "flagged 0.00% -> 16.67%" in capsys.readouterr().out
    assert main(["-q", "calibrate", "bandpass", str(cal.path), "--no-plot", "--flag-rounds", "0", "--ref-antenna", "ak02"]) == 0
    sols = tmp_path / "SB100.B1934-638.beam00.aocalibrate.bin"
    assert sols.is_file() and str(sols) in capsys.readouterr().out
    g = read_solutions(sols).gains
    assert np.allclose(np.angle(g[0, 1]), 0)  # ak02 is the phase reference
    assert main(["-q", "calibrate", "apply", str(sci.path), str(sols)]) == 0
    assert "CORRECTED_DATA written" in capsys.readouterr().out
    assert main(["-q", "calibrate", "plot", str(sols), "--output", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    # bad inputs: exit status 1 and one line on stderr
    assert main(["-q", "calibrate", "apply", str(sci.path), str(tmp_path / "missing.bin")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("flint calibrate: error:") and "no such solution file" in err
    assert main(["-q", "calibrate", "selfcal", str(sci.path)]) == 1
    assert "has no MODEL_DATA column" in capsys.readouterr().err
    assert main(["-q", "calibrate", "selfcal", str(sci.path), "--min-snr", "-1"]) == 1
    assert "--min-snr" in capsys.readouterr().err
