"""Real ASKAP conventions in calibration: 36-field bandpass MSs, observatory calibration tables,
solutions of the wrong beam, raw (instrument-frame) MSs.

The multi-field bandpass MS is built here from a simulated single-field one (python-casacore):
the calibrator is on-source only in the field named for the MS's beam; the other fields'
rows hold noise, as when 1934-638 sits in another beam. Solutions are checked against the
simulator's truth (same tolerances as tests/calibrate/test_calib_truth.py: 1 % amplitude,
1 deg phase, reference-antenna phase removed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flint.calibrate import AOSolutions, choose_bandpass_field, read_solutions, write_solutions
from flint.cli import main
from flint.errors import FlintMSError
from flint.ms import MS, data_columns, ms_beam, name_beam, open_table
from flint.sim import SimResult

from conftest import writable_copy

B1934 = (294.8542750, -63.7126750)


def _ref(g: np.ndarray, ref: int = 0) -> np.ndarray:
    r = g[ref : ref + 1]
    return g * np.conj(r) / np.abs(r)


def make_multifield(src: Path, dest_dir: Path, names: list[str], on_source: int, seed: int = 3) -> MS:
    """A copy of the single-field calibrator MS ``src`` split in time into ``len(names)`` fields.

    Field ``on_source`` keeps the calibrator's data and its phase centre (1934-638); the
    others get noise only and phase centres 0.9 deg * k away (the beam's centre when the
    calibrator is in another beam).
    """
    ms = writable_copy(src, dest_dir)
    rng = np.random.default_rng(seed)
    with open_table(ms.path, mode="rw", subtable="FIELD") as t:
        row0 = {c: t.getcell(c, 0) for c in t.colnames()}
        t.addrows(len(names) - 1)
        for i, name in enumerate(names):
            for c, v in row0.items():
                t.putcell(c, i, v)
            t.putcell("NAME", i, name)
            d = np.array(row0["PHASE_DIR"], dtype=float)
            d[0, 1] += np.radians(0.9 * (i - on_source))
            for c in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
                t.putcell(c, i, d)
    with open_table(ms.path, mode="rw") as tab:
        times = tab.getcol("TIME")
        uniq = np.unique(times)
        block = np.minimum((np.searchsorted(uniq, times) * len(names)) // len(uniq), len(names) - 1)
        tab.putcol("FIELD_ID", block.astype(np.int32))
        data = tab.getcol("DATA")
        off = block != on_source
        noise = 0.3 * (rng.standard_normal(data[off].shape) + 1j * rng.standard_normal(data[off].shape))
        data[off] = noise.astype(data.dtype)
        tab.putcol("DATA", data)
    return ms


@pytest.fixture(scope="module")
def multifield(sim_bandpass: SimResult, tmp_path_factory: pytest.TempPathFactory) -> MS:
    """Beam-1 calibrator MS with fields B1934-638_beam0..2 (read-only: copy before modifying)."""
    d = tmp_path_factory.mktemp("multifield")
    return make_multifield(sim_bandpass.ms_paths[1], d, [f"B1934-638_beam{i}" for i in range(3)], on_source=1)


def test_beam_is_read_from_feed_and_name(sim_field: SimResult, tmp_path: Path) -> None:
    ms = writable_copy(sim_field.ms_paths[2], tmp_path)
    assert ms_beam(ms) == 2 and name_beam(ms.path) == 2
    assert name_beam("SB39400.RACS_0635-31.beam0.ms") == 0
    assert name_beam("scienceData.EMU_0529-60.SB50538.EMU_0529-60.beam08_averaged_cal.leakage.ms") == 8
    with open_table(ms.path, mode="rw", subtable="FEED") as t:
        t.putcol("BEAM_ID", np.full(t.nrows(), 7, dtype=np.int32))  # FEED_ID 2 is beam 7
    assert ms_beam(ms) == 7


def test_bandpass_solves_on_the_beams_field_only(
    multifield: MS, sim_bandpass: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ms = writable_copy(multifield, tmp_path)
    with open_table(ms.path) as tab:
        flags_before = tab.getcol("FLAG")
    assert main(["-q", "calibrate", "bandpass", str(ms.path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "field B1934-638_beam1 (its name carries beam 1)" in out
    sols = read_solutions(tmp_path / "SB100.B1934-638.beam01.aocalibrate.bin")
    truth = np.load(sim_bandpass.truth)["bandpass"][1]
    ratio = sols.gains[0] / _ref(truth)
    assert np.abs(np.abs(ratio) - 1).max() <= 0.01  # a third of the data: floor ~0.2 %
    assert np.degrees(np.abs(np.angle(ratio))).max() <= 1.0
    # the input MS is untouched and no temporary copy is left behind
    with open_table(ms.path) as tab:
        np.testing.assert_array_equal(tab.getcol("FLAG"), flags_before)
    assert "CORRECTED_DATA" not in data_columns(ms)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ms.path.name, "SB100.B1934-638.beam01.aocalibrate.bin"])


def test_solving_on_all_rows_would_be_wrong(multifield: MS, sim_bandpass: SimResult, tmp_path: Path) -> None:
    """The check above can fail: the off-source rows do bias a solve that uses them."""
    from flint.calibrate import BandpassOptions, run_bandpass

    ms = writable_copy(multifield, tmp_path)
    with open_table(ms.path, mode="rw") as tab:
        tab.putcol("FIELD_ID", np.ones(tab.nrows(), dtype=np.int32))  # every row claims to be field 1
    res = run_bandpass(ms, BandpassOptions(plot=False, preflag=False, flag_rounds=0))
    truth = np.load(sim_bandpass.truth)["bandpass"][1]
    ratio = read_solutions(res.solutions).gains[0] / _ref(truth)
    assert np.nanmedian(np.abs(np.abs(ratio) - 1)) > 0.3  # amplitudes scaled down by the noise-only rows


def test_field_by_nearest_phase_centre_when_names_carry_no_beam(sim_bandpass: SimResult, tmp_path: Path) -> None:
    ms = make_multifield(sim_bandpass.ms_paths[1], tmp_path, ["CAL_A", "CAL_B", "CAL_C"], on_source=2)
    choice = choose_bandpass_field(ms)
    assert (choice.field_id, choice.name) == (2, "CAL_C")
    assert choice.reason.startswith("phase centre nearest PKS B1934-638")
    assert choice.separation_arcmin < 0.01


def test_missing_field_of_the_beam_is_one_line(sim_bandpass: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ms = make_multifield(sim_bandpass.ms_paths[1], tmp_path, ["B1934-638_beam0", "B1934-638_beam2", "B1934-638_beam3"], on_source=0)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["-q", "calibrate", "bandpass", str(ms.path), "--no-plot"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "beam 1 has no field of its own" in err and "--field" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(FlintMSError, match="has no field 'nope'"):
        choose_bandpass_field(ms, "nope")
    assert choose_bandpass_field(ms, "B1934-638_beam2").field_id == 1


# --- observatory calibration tables ---------------------------------------------------------


def _gains(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    g = (1 + 0.2 * rng.standard_normal(shape)) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))
    return g.astype(np.complex64).astype(np.complex128)  # exactly representable in both formats


def write_calparameters(path: Path, bp: np.ndarray, bp_valid: np.ndarray, gain: np.ndarray | None = None) -> Path:
    """An ASKAPsoft calparameters table: BANDPASS (beam, ant, 2*chan + pol), GAIN (beam, ant, pol)."""
    from casacore.tables import makearrcoldesc, makescacoldesc, maketabdesc, table

    cols = [
        makescacoldesc("TIME", 0.0),
        makearrcoldesc("BANDPASS", 0j, ndim=3, valuetype="complex"),
        makearrcoldesc("BANDPASS_VALID", False, ndim=3),
        makearrcoldesc("GAIN", 0j, ndim=3, valuetype="complex"),
        makearrcoldesc("GAIN_VALID", False, ndim=3),
    ]
    t = table(str(path), maketabdesc(cols), nrow=1, ack=False)
    t.putcell("TIME", 0, 5.0e9)
    t.putcell("BANDPASS", 0, bp.astype(np.complex64))
    t.putcell("BANDPASS_VALID", 0, bp_valid)
    if gain is not None:
        t.putcell("GAIN", 0, gain.astype(np.complex64))
        t.putcell("GAIN_VALID", 0, np.ones(gain.shape, dtype=bool))
    t.close()
    return path


def write_casa_caltable(path: Path, g: np.ndarray, flag: np.ndarray, viscal: str = "B Jones") -> Path:
    """A CASA caltable: one row per antenna, CPARAM/FLAG (chan, pol)."""
    from casacore.tables import makearrcoldesc, makescacoldesc, maketabdesc, table

    n_ant, nc, npol = g.shape
    param = "CPARAM" if viscal != "K Jones" else "FPARAM"
    cols = [
        makescacoldesc("TIME", 0.0),
        makescacoldesc("FIELD_ID", 0),
        makescacoldesc("SPECTRAL_WINDOW_ID", 0),
        makescacoldesc("ANTENNA1", 0),
        makescacoldesc("ANTENNA2", -1),
        makearrcoldesc(param, 0j if param == "CPARAM" else 0.0, ndim=2, valuetype="complex" if param == "CPARAM" else "float"),
        makearrcoldesc("FLAG", False, ndim=2),
    ]
    t = table(str(path), maketabdesc(cols), nrow=n_ant, ack=False)
    t.putkeyword("VisCal", viscal)
    t.putkeyword("ParType", "Complex" if param == "CPARAM" else "Float")
    t.putcol("TIME", np.full(n_ant, 5.0e9))
    t.putcol("ANTENNA1", np.arange(n_ant, dtype=np.int32))
    t.putcol("ANTENNA2", np.full(n_ant, -1, dtype=np.int32))
    t.putcol(param, g.astype(np.complex64) if param == "CPARAM" else np.abs(g).astype(np.float32))
    t.putcol("FLAG", flag)
    t.close()
    return path


def _corrected(ms: Path) -> tuple[np.ndarray, np.ndarray]:
    with open_table(ms) as tab:
        return tab.getcol("CORRECTED_DATA"), tab.getcol("FLAG")


def test_calparameters_table_applies_like_the_ao_file(sim_field: SimResult, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    n_beam, n_ant, nc = 3, 36, 12
    bp = _gains(rng, (n_beam, n_ant, 2 * nc))
    valid = np.ones(bp.shape, dtype=bool)
    valid[1, 5, 2 * 3 + 1] = False  # beam 1, antenna 5, channel 3, Y: not solved
    gain = _gains(rng, (n_beam, n_ant, 2))
    table = write_calparameters(tmp_path / "calparameters.1934_bp.SB100.tab", bp, valid, gain)
    # the same solutions for beam 1 as an AO file
    g = np.stack([bp[1, :, 0::2], bp[1, :, 1::2]], axis=-1) * gain[1][:, None, :]
    g[5, 3, :] = np.nan
    ao = write_solutions(tmp_path / "ao.bin", AOSolutions.from_gains(g[None]))
    src = sim_field.ms_paths[1]  # beam 1: picks beam 1 of the table
    assert main(["-q", "calibrate", "apply", str(src), str(table), "--output-ms", str(tmp_path / "a.ms")]) == 0
    assert main(["-q", "calibrate", "apply", str(src), str(ao), "--output-ms", str(tmp_path / "b.ms")]) == 0
    (ca, fa), (cb, fb) = _corrected(tmp_path / "a.ms"), _corrected(tmp_path / "b.ms")
    np.testing.assert_array_equal(fa, fb)
    assert fa.any() and not fa.all()  # antenna 5, channel 3 flagged
    np.testing.assert_allclose(ca, cb, rtol=1e-6, atol=1e-9)
    # beam 0 of the same table is different: the beam really was picked
    assert main(["-q", "calibrate", "apply", str(sim_field.ms_paths[0]), str(table), "--output-ms", str(tmp_path / "c.ms")]) == 0
    with open_table(tmp_path / "c.ms") as tab, open_table(sim_field.ms_paths[0]) as raw:
        expect = raw.getcol("DATA")[:, :, 0] / (
            (bp[0, raw.getcol("ANTENNA1"), 0::2] * gain[0, raw.getcol("ANTENNA1"), 0][:, None])
            * np.conj(bp[0, raw.getcol("ANTENNA2"), 0::2] * gain[0, raw.getcol("ANTENNA2"), 0][:, None])
        )
        np.testing.assert_allclose(tab.getcol("CORRECTED_DATA")[:, :, 0], expect, rtol=1e-4)


def test_calparameters_plot_needs_a_beam(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(13)
    bp = _gains(rng, (3, 6, 8))
    table = write_calparameters(tmp_path / "calparameters.tab", bp, np.ones(bp.shape, dtype=bool))
    assert main(["-q", "calibrate", "plot", str(table)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds 3 beams" in err and "--beam" in err
    assert main(["-q", "calibrate", "plot", str(table), "--beam", "2"]) == 0
    assert (tmp_path / "calparameters.beam02.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["-q", "calibrate", "plot", str(table), "--beam", "3"]) == 1
    assert "holds beams 0..2; the data are beam 3" in capsys.readouterr().err


def test_casa_bandpass_caltable_applies_like_the_ao_file(sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(12)
    g = _gains(rng, (36, 12, 2))
    flag = np.zeros(g.shape, dtype=bool)
    flag[7, 4, 0] = True
    table = write_casa_caltable(tmp_path / "cal.beam01.B", g, flag)
    ao_g = g.copy()
    ao_g[7, 4, :] = np.nan
    ao = write_solutions(tmp_path / "ao.bin", AOSolutions.from_gains(ao_g[None]))
    src = sim_field.ms_paths[1]
    assert main(["-q", "calibrate", "apply", str(src), str(table), "--output-ms", str(tmp_path / "a.ms")]) == 0
    assert main(["-q", "calibrate", "apply", str(src), str(ao), "--output-ms", str(tmp_path / "b.ms")]) == 0
    (ca, fa), (cb, fb) = _corrected(tmp_path / "a.ms"), _corrected(tmp_path / "b.ms")
    np.testing.assert_array_equal(fa, fb)
    assert fa.any()
    np.testing.assert_allclose(ca, cb, rtol=1e-6, atol=1e-9)
    # the plot reads it too
    assert main(["-q", "calibrate", "plot", str(table), "--output", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()


def test_unsupported_tables_say_what_they_are(sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    delays = write_casa_caltable(tmp_path / "cal.K", np.ones((36, 1, 2), complex), np.zeros((36, 1, 2), bool), viscal="K Jones")
    cases = [
        (delays, "CASA caltable of type 'K Jones' is not supported"),
        (sim_field.ms_paths[1], "is a Measurement Set, not solutions"),
    ]
    for sols, expected in cases:
        assert main(["-q", "calibrate", "apply", str(ms.path), str(sols)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and "no such solution file" not in err
    assert "CORRECTED_DATA" not in data_columns(ms)


# --- wrong-beam solutions ---------------------------------------------------------------


def test_solutions_of_another_beam_are_refused(sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    sols = write_solutions(tmp_path / "SB100.B1934-638.beam01.aocalibrate.bin", AOSolutions.from_gains(np.ones((1, 36, 12, 2), complex)))
    assert main(["-q", "calibrate", "apply", str(ms.path), str(sols)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "solutions are for beam 1 but" in err and "is beam 0" in err and "--force" in err
    assert "CORRECTED_DATA" not in data_columns(ms)
    assert main(["-q", "calibrate", "apply", str(ms.path), str(sols), "--force"]) == 0
    assert "CORRECTED_DATA" in data_columns(ms)


# --- raw ASKAP Measurement Sets ------------------------------------------------------------


def _make_raw(ms: MS) -> None:
    """What the correlator writes: ASKAP + FEED.BEAM_OFFSET, no sky-frame marker."""
    with open_table(ms.path, mode="rw") as tab:
        if "FLINT_FRAME" in tab.getkeywords():
            tab.removekeyword("FLINT_FRAME")


def test_raw_askap_ms_is_refused(sim_field: SimResult, sim_bandpass: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    askap = pytest.importorskip("flint.askap")
    sci = writable_copy(sim_field.ms_paths[0], tmp_path)
    cal = writable_copy(sim_bandpass.ms_paths[0], tmp_path)
    assert askap.ms_frame(sci) == "sky"
    _make_raw(sci)
    _make_raw(cal)
    assert askap.ms_frame(sci) == "instrument"
    sols = write_solutions(tmp_path / "sols.bin", AOSolutions.from_gains(np.ones((1, 36, 12, 2), complex)))
    for argv in (["bandpass", str(cal.path), "--no-plot"], ["apply", str(sci.path), str(sols)], ["selfcal", str(sci.path)]):
        assert main(["-q", "calibrate", *argv]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "run `flint ms preprocess" in err, err
    assert "CORRECTED_DATA" not in data_columns(sci)
    assert not list(tmp_path.glob("*.aocalibrate.bin"))
    assert main(["-q", "calibrate", "apply", str(sci.path), str(sols), "--force"]) == 0
