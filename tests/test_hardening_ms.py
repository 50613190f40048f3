"""Issue 10 (hardening) for ``flint ms``: each test reproduces the reported failure and shows it fixed.

* ``flint ms summary`` warns (on stderr, still printing the summary) about all-zero UVW,
  NaN visibilities and a missing DATA column;
* ``flint ms split`` creates nothing when its input is missing;
* ``flint ms copy`` names ``--overwrite``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flint.cli import main
from flint.ms import open_table, summarise
from flint.sim import SimResult

from conftest import writable_copy


def test_summary_warns_about_zero_uvw_and_nan(sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    assert summarise(ms).warnings == []  # clean data: no warnings
    with open_table(ms.path, mode="rw") as tab:
        tab.putcol("UVW", np.zeros(tab.getcol("UVW").shape))
        data = tab.getcol("DATA")
        data[:10, 3, :] = np.nan
        tab.putcol("DATA", data)
        total = data.size
    assert main(["ms", "summary", str(ms.path)]) == 0
    cap = capsys.readouterr()
    assert "antennas          36" in cap.out  # still informative
    lines = [ln for ln in cap.err.splitlines() if "flint ms summary: warning:" in ln]
    assert len(lines) == 2
    assert "UVW is zero on every cross-correlation row" in lines[0]
    assert f"40 of {total} DATA samples" in lines[1] and "NaN/inf" in lines[1] and "flint flag" in lines[1]
    assert main(["-q", "ms", "summary", "--json", str(ms.path)]) == 0
    cap = capsys.readouterr()
    assert len(json.loads(cap.out)[0]["warnings"]) == 2


def test_summary_warns_about_missing_data_column(sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    with open_table(ms.path, mode="rw") as tab:
        tab.removecols(["DATA"])
    assert main(["ms", "summary", str(ms.path)]) == 0
    cap = capsys.readouterr()
    assert "data columns      - (none)" in cap.out  # was an empty line
    assert "has no DATA column" in cap.err


def test_summary_warns_about_fully_flagged(sim_field: SimResult, tmp_path: Path) -> None:
    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    with open_table(ms.path, mode="rw") as tab:
        tab.putcol("FLAG", np.ones(tab.getcol("FLAG").shape, dtype=bool))
    assert any("every visibility is flagged" in w for w in summarise(ms).warnings)


def test_split_missing_input_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "split-out"
    assert main(["-q", "ms", "split", str(tmp_path / "nope.ms"), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such Measurement Set" in err
    assert not out.exists()  # was: created empty before the failure


def test_split_still_splits(sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "split-out"
    assert main(["-q", "ms", "split", str(sim_field.ms_paths[0]), str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["SB101.SIM_FIELD.beam00.SIM_FIELD_beam00.ms"]
    capsys.readouterr()


def test_copy_names_overwrite_flag(sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.ms"
    assert main(["-q", "ms", "copy", str(sim_field.ms_paths[0]), str(out)]) == 0
    assert main(["-q", "ms", "copy", str(sim_field.ms_paths[0]), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "use --overwrite" in err
