"""The flint command line: parses into the options model, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flint.cli import main
from flint.sim import SimResult


def test_help_lists_the_stages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("sim", "ms", "demo"):
        assert cmd in out


def test_sim_then_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["-q", "sim", str(tmp_path), "--what", "field", "--n-beams", "2", "--n-times", "3", "--n-channels", "4", "--seed", "3"])
    assert rc == 0
    ms = sorted(tmp_path.glob("SB101.SIM_FIELD.beam*.ms"))
    assert [p.name for p in ms] == ["SB101.SIM_FIELD.beam00.ms", "SB101.SIM_FIELD.beam01.ms"]
    capsys.readouterr()
    assert main(["ms", "summary", "--json", str(ms[1])]) == 0
    summary = json.loads(capsys.readouterr().out)[0]
    assert summary["n_channels"] == 4 and summary["n_times"] == 3 and summary["beams"] == [1]
    assert summary["correlations"] == ["XX", "XY", "YX", "YY"]


def test_bad_option_is_one_line_and_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = main(["sim", str(out), "--n-beams", "40"])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--n-beams" in err[0]
    assert not out.exists() or not any(out.iterdir())


def test_missing_ms_exit_code_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "flint.cli", "ms", "summary", str(tmp_path / "nope.ms")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"flint ms: error: {tmp_path / 'nope.ms'}: no such Measurement Set; check the path"


def test_ms_add_column_cli(tmp_path: Path, sim_field: SimResult) -> None:
    from flint.ms import data_columns

    from conftest import writable_copy

    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    assert main(["ms", "add-column", str(ms.path), "CORRECTED_DATA", "--fill", "copy"]) == 0
    assert data_columns(ms) == ["DATA", "CORRECTED_DATA"]
