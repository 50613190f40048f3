"""Issue 10 (hardening) for calibration, through the CLI: each test first reproduces the
reported failure (it fails on the code before the fix) and shows it fixed.

* an interrupted ``flint calibrate apply --output-ms OUT`` leaves no OUT and no temporary;
* solution files with 0 antennas, and casacore tables given as solution files;
* applying solutions to a 100 %-flagged MS;
* errors name the CLI's flags, not Python keywords.
"""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from flint.calibrate import AOSolutions, write_solutions
from flint.calibrate.aocal import HEADER_FORMAT, MAGIC
from flint.cli import main
from flint.ms import data_columns, open_table
from flint.sim import SimResult

from conftest import writable_copy


def _unit_solutions(path: Path, n_ant: int = 36, n_chan: int = 12) -> Path:
    return write_solutions(path, AOSolutions.from_gains(np.full((1, n_ant, n_chan, 2), 2.0 + 0j)))


def test_interrupted_apply_output_ms_leaves_nothing(sim_field: SimResult, tmp_path: Path) -> None:
    """SIGINT while CORRECTED_DATA is being written into the copy: OUT never appears.

    The child process runs the real CLI; the only change is that the visibility correction
    waits after its first chunk (and touches a marker file), so the signal always lands
    mid-write instead of depending on timing.
    """
    sols = _unit_solutions(tmp_path / "sols.bin")
    out = tmp_path / "out.ms"
    marker = tmp_path / "writing"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from flint.calibrate import _solver
        _orig = _solver.correct_visibilities
        def _slow(*args, **kwargs):
            result = _orig(*args, **kwargs)
            Path({str(marker)!r}).touch()
            time.sleep(300)
            return result
        _solver.correct_visibilities = _slow
        from flint.cli import main
        sys.exit(main(["-q", "calibrate", "apply", {str(sim_field.ms_paths[0])!r}, {str(sols)!r}, "--output-ms", {str(out)!r}]))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the child never started writing"
            time.sleep(0.05)
        # it is writing: into a temporary sibling, never under the final name
        temps = list(tmp_path.glob(".out.ms.*.tmp"))
        assert len(temps) == 1 and (temps[0] / "out.ms" / "table.dat").exists()
        assert not out.exists()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in err
    assert not out.exists()
    assert not list(tmp_path.glob(".out.ms.*"))  # no temporary left
    assert "CORRECTED_DATA" not in data_columns(sim_field.ms_paths[0])  # input untouched
    # a re-run works (nothing to overwrite)
    assert main(["-q", "calibrate", "apply", str(sim_field.ms_paths[0]), str(sols), "--output-ms", str(out)]) == 0
    assert "CORRECTED_DATA" in data_columns(out)
    with open_table(out) as tab:
        np.testing.assert_allclose(tab.getcol("CORRECTED_DATA"), tab.getcol("DATA") / 4.0, rtol=1e-6)


def test_apply_output_ms_names_overwrite_flag(sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sols = _unit_solutions(tmp_path / "sols.bin")
    out = tmp_path / "out.ms"
    argv = ["-q", "calibrate", "apply", str(sim_field.ms_paths[0]), str(sols), "--output-ms", str(out)]
    assert main(argv) == 0
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "use --overwrite" in err and "overwrite=True" not in err
    assert main([*argv, "--overwrite"]) == 0


def _zero_antenna_file(path: Path) -> Path:
    path.write_bytes(struct.pack(HEADER_FORMAT, MAGIC, 0, 0, 1, 0, 12, 4, 0.0, 0.0))
    return path


def test_zero_antenna_solution_file(sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = _zero_antenna_file(tmp_path / "empty.bin")
    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    for argv in (["plot", str(empty)], ["apply", str(ms.path), str(empty)]):
        assert main(["-q", "calibrate", *argv]) == 1  # was: ZeroDivisionError traceback (plot)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "0 antennas" in err and "Traceback" not in err
    assert not (tmp_path / "empty.png").exists()
    assert "CORRECTED_DATA" not in data_columns(ms)


def test_casacore_table_as_solution_file_is_not_missing(sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from casacore.tables import makescacoldesc, maketabdesc, table

    other = tmp_path / "something.tab"
    table(str(other), maketabdesc([makescacoldesc("X", 0.0)]), nrow=1, ack=False).close()
    for argv in (["plot", str(other)], ["apply", str(sim_field.ms_paths[0]), str(other)]):
        assert main(["-q", "calibrate", *argv]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "no such solution file" not in err and "casacore table of unknown kind" in err and "calparameters" in err


def test_apply_to_fully_flagged_ms(sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    with open_table(ms.path, mode="rw") as tab:
        tab.putcol("FLAG", np.ones(tab.getcol("FLAG").shape, dtype=bool))
    sols = _unit_solutions(tmp_path / "sols.bin")
    assert main(["-q", "calibrate", "apply", str(ms.path), str(sols)]) == 1  # was: exit 0, silently
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "every visibility is flagged" in err and "--allow-all-flagged" in err
    assert "CORRECTED_DATA" not in data_columns(ms)
    assert main(["-q", "calibrate", "apply", str(ms.path), str(sols), "--allow-all-flagged"]) == 0
    assert "CORRECTED_DATA" in data_columns(ms)


def test_errors_name_cli_flags(sim_field: SimResult, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "calibrate", "bandpass", str(sim_field.ms_paths[0]), "--no-plot"]) == 1
    err = capsys.readouterr().err
    assert "--no-check-field" in err and "check_field=False" not in err
    assert main(["-q", "calibrate", "apply", str(sim_field.ms_paths[0]), "x.bin", "--output-column", "DATA"]) == 1
    err = capsys.readouterr().err
    assert "--output-column CORRECTED_DATA" in err and "--output-ms" in err

