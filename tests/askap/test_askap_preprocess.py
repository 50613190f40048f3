"""``flint ms preprocess`` on ``flint sim --askap-raw`` data: equal to fixms, idempotent, safe.

The raw simulator writes what the ASKAP correlator writes (boresight in FIELD, beam offsets
in FEED.BEAM_OFFSET, instrument-frame correlations with I = XX + YY, roll -45 deg).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from casacore.tables import table

from flint.askap import PreprocessOptions, ms_frame, preprocess_askap, require_sky_frame
from flint.cli import main
from flint.errors import FlintMSError
from flint.sim import SimOptions, SimResult, simulate_bandpass, simulate_field

RAW = SimOptions(askap_raw=True, n_beams=2, n_antennas=6, n_channels=4, n_times=4, n_sources=4, n_bright=2, seed=5)


@pytest.fixture(scope="module")
def raw_field(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    return simulate_field(tmp_path_factory.mktemp("raw_field"), RAW)


@pytest.fixture(scope="module")
def raw_bandpass(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    return simulate_bandpass(tmp_path_factory.mktemp("raw_bp"), RAW)


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _col(ms: Path, col: str, sub: str | None = None) -> np.ndarray:
    with table(str(ms / sub) if sub else str(ms), ack=False) as t:
        return t.getcol(col)


def test_raw_sim_is_instrument_frame_and_default_sim_is_sky(raw_field: SimResult, tmp_path: Path) -> None:
    ms = raw_field.ms_paths[1]
    assert ms_frame(ms) == "instrument"
    with pytest.raises(FlintMSError, match="run `flint ms preprocess"):
        require_sky_frame(ms, "test")
    with table(str(ms), ack=False) as t:
        assert "FLINT_FRAME" not in t.getkeywords()
        assert set(np.unique(t.getcol("FEED1"))) == {1}
        assert (t.getcol("ANTENNA1") == t.getcol("ANTENNA2")).any()  # autocorrelations
    # FIELD holds the boresight, not the beam centre
    boresight = np.degrees(_col(ms, "PHASE_DIR", "FIELD"))[0, 0]
    assert np.allclose(boresight, (RAW.ra_deg, RAW.dec_deg))
    assert np.degrees(_col(ms, "RECEPTOR_ANGLE", "FEED"))[0] == pytest.approx([90.0, 180.0])
    sky = simulate_field(tmp_path / "sky", RAW.with_options(askap_raw=False, n_beams=1))
    assert ms_frame(sky.ms_paths[0]) == "sky"


def test_raw_bandpass_has_36_fields_on_source_in_its_own(raw_bandpass: SimResult, tmp_path: Path) -> None:
    ms = _copy(raw_bandpass.ms_paths[1], tmp_path / "bp1.ms")
    names = list(_col(ms, "NAME", "FIELD"))
    assert names == [f"B1934-638_beam{k}" for k in range(36)]
    fid = _col(ms, "FIELD_ID")
    assert set(np.unique(fid)) == set(range(36))
    assert main(["ms", "preprocess", str(ms)]) == 0
    phase = np.degrees(_col(ms, "PHASE_DIR", "FIELD"))[:, 0]
    sep = np.hypot((phase[:, 0] - 294.854275 + 180) % 360 - 180, phase[:, 1] + 63.712675)
    assert np.argmin(sep) == 1 and sep[1] < 1e-6  # field 1 is the one on PKS B1934-638
    assert sep[np.arange(36) != 1].min() > 0.5
    # on source the visibility amplitude (XX, after preprocessing) is 1934-638's flux
    data = _col(ms, "DATA")
    a1, a2 = _col(ms, "ANTENNA1"), _col(ms, "ANTENNA2")
    cross = a1 != a2
    on = np.abs(data[(fid == 1) & cross, :, 0]).mean()
    off = np.abs(data[(fid == 0) & cross, :, 0]).mean()
    assert off < 0.3 * on


def test_preprocess_equals_fixms_fix_ms(raw_field: SimResult, raw_bandpass: SimResult, tmp_path: Path) -> None:
    fix_ms = shutil.which("fix_ms") or str(Path(__file__).resolve().parents[2] / ".venv/bin/fix_ms")
    from flint.runner import run_command

    for i, src in enumerate((raw_field.ms_paths[1], raw_bandpass.ms_paths[0])):
        ours = _copy(src, tmp_path / f"ours{i}.ms")
        theirs = _copy(src, tmp_path / f"theirs{i}.ms")
        assert main(["ms", "preprocess", "--chunk-rows", "37", str(ours)]) == 0
        run_command([fix_ms, str(theirs)])
        assert np.array_equal(_col(ours, "DATA"), _col(theirs, "CORRECTED_DATA"))
        assert np.array_equal(_col(ours, "INSTRUMENT_DATA"), _col(theirs, "DATA"))
        assert np.array_equal(_col(ours, "INSTRUMENT_DATA"), _col(src, "DATA"))
        for c in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
            assert np.array_equal(_col(ours, c, "FIELD"), _col(theirs, c, "FIELD")), c
        for c in ("RECEPTOR_ANGLE", "INSTRUMENT_RECEPTOR_ANGLE", "BEAM_OFFSET"):
            assert np.array_equal(_col(ours, c, "FEED"), _col(theirs, c, "FEED")), c
        assert ms_frame(ours) == "sky" and ms_frame(theirs) == "sky"
        # the rotation really changed something: XX_sky = 2 YY_instrument at roll -45 deg
        assert np.allclose(_col(ours, "DATA")[..., 0], 2 * _col(src, "DATA")[..., 3])


def test_second_run_is_a_no_op(raw_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ms = _copy(raw_field.ms_paths[0], tmp_path / "a.ms")
    assert main(["ms", "preprocess", str(ms)]) == 0
    before = _hash(ms)
    capsys.readouterr()
    assert main(["ms", "preprocess", str(ms)]) == 0
    out = capsys.readouterr().out
    assert "already in the sky frame" in out and "nothing done" in out
    assert _hash(ms) == before


def test_preprocess_inside_a_running_event_loop(raw_field: SimResult, tmp_path: Path) -> None:
    """A Jupyter cell runs inside an asyncio loop, where fixms's own ``asyncio.run`` refuses
    to start ("cannot be called from a running event loop"); flint runs it in a thread."""
    import asyncio

    ms = _copy(raw_field.ms_paths[0], tmp_path / "loop.ms")
    ref = _copy(raw_field.ms_paths[0], tmp_path / "plain.ms")
    preprocess_askap(ref)

    async def in_a_cell() -> None:
        preprocess_askap(ms)  # called synchronously, as a notebook cell would

    asyncio.run(in_a_cell())
    assert ms_frame(ms) == "sky"
    assert np.array_equal(_col(ms, "DATA"), _col(ref, "DATA"))


class _Interrupt:
    """Stand-in for fixms's convert_correlations that raises KeyboardInterrupt on chunk ``n``."""

    def __init__(self, n: int) -> None:
        from fixms import fix_ms_corrs

        self.real = fix_ms_corrs.convert_correlations
        self.n = n
        self.calls = 0

    def __call__(self, *a: object, **kw: object) -> np.ndarray:
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.real(*a, **kw)


def test_interrupted_in_place_keeps_raw_data_and_rerun_completes(
    raw_field: SimResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fixms import fix_ms_corrs

    src = raw_field.ms_paths[0]
    ms = _copy(src, tmp_path / "x.ms")
    clean = _copy(src, tmp_path / "clean.ms")
    preprocess_askap(clean, PreprocessOptions(chunk_rows=20))
    monkeypatch.setattr(fix_ms_corrs, "convert_correlations", _Interrupt(2))
    with pytest.raises(KeyboardInterrupt):
        preprocess_askap(ms, PreprocessOptions(chunk_rows=20))
    monkeypatch.undo()
    # half-done: still "instrument" (stages refuse it), raw visibilities intact
    assert ms_frame(ms) == "instrument"
    assert np.array_equal(_col(ms, "INSTRUMENT_DATA"), _col(src, "DATA"))
    result = preprocess_askap(ms, PreprocessOptions(chunk_rows=20))
    assert result.changed and ms_frame(ms) == "sky"
    for c, sub in (("DATA", None), ("INSTRUMENT_DATA", None), ("PHASE_DIR", "FIELD"), ("RECEPTOR_ANGLE", "FEED"), ("INSTRUMENT_RECEPTOR_ANGLE", "FEED"), ("BEAM_OFFSET", "FEED")):
        assert np.array_equal(_col(ms, c, sub), _col(clean, c, sub)), c


def test_output_ms_interrupted_leaves_nothing(raw_field: SimResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fixms import fix_ms_corrs

    src = _copy(raw_field.ms_paths[0], tmp_path / "in.ms")
    before = _hash(src)
    out = tmp_path / "out" / "pre.ms"
    monkeypatch.setattr(fix_ms_corrs, "convert_correlations", _Interrupt(2))
    with pytest.raises(KeyboardInterrupt):
        preprocess_askap(src, PreprocessOptions(output_ms=out, chunk_rows=20))
    monkeypatch.undo()
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary left either
    assert _hash(src) == before
    # and uninterrupted: the copy is preprocessed, the input untouched
    assert main(["ms", "preprocess", str(src), "--output-ms", str(out)]) == 0
    assert ms_frame(out) == "sky" and ms_frame(src) == "instrument"
    assert _hash(src) == before
    assert main(["ms", "preprocess", str(src), "--output-ms", str(out)]) == 1  # exists: --overwrite


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err
    return err


def test_bad_inputs_one_line(raw_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # not ASKAP
    other = _copy(raw_field.ms_paths[0], tmp_path / "meerkat.ms")
    with table(str(other / "OBSERVATION"), readonly=False, ack=False) as t:
        t.putcell("TELESCOPE_NAME", 0, "MeerKAT")
    before = _hash(other)
    _one_line_error(capsys, ["ms", "preprocess", str(other)], f"{other}/OBSERVATION", "not ASKAP")
    assert _hash(other) == before
    # no FEED.BEAM_OFFSET
    nooff = _copy(raw_field.ms_paths[0], tmp_path / "nooff.ms")
    with table(str(nooff / "FEED"), readonly=False, ack=False) as t:
        t.removecols(["BEAM_OFFSET"])
    _one_line_error(capsys, ["ms", "preprocess", str(nooff)], f"{nooff}/FEED", "BEAM_OFFSET")
    # not a Measurement Set at all
    _one_line_error(capsys, ["ms", "preprocess", str(tmp_path / "missing.ms")], "missing.ms")
    # --output-ms with two inputs
    _one_line_error(capsys, ["ms", "preprocess", str(other), str(nooff), "--output-ms", str(tmp_path / "o.ms")], "--output-ms")
