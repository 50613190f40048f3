"""``flint sim`` through the CLI: range checks (issue 10 point 5) and ``--askap-raw``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from casacore.tables import table

from flint.askap import ms_frame
from flint.cli import main

SMALL = ["--n-beams", "1", "--n-antennas", "4", "--n-channels", "2", "--n-times", "2", "--n-sources", "2"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--integration-s", "inf"], "--integration-s"),
        (["--integration-s", "nan"], "--integration-s"),
        (["--freq-start-hz", "inf"], "--freq-start-hz"),
        (["--noise-jy", "inf"], "--noise-jy"),
        (["--ra-deg", "nan"], "--ra-deg"),
        (["--bright-flux-jy", "1", "inf"], "--bright-flux-jy"),
        (["--askap-pol-axis-deg", "nan"], "--askap-pol-axis-deg"),
        (["--min-flux-jy", "1", "--max-flux-jy", "0.1"], "--min-flux-jy"),
        (["--bright-flux-jy", "2", "1"], "--bright-flux-jy"),
    ],
)
def test_sim_rejects_non_finite_and_inconsistent_ranges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    out = tmp_path / "sim"
    assert main(["sim", str(out), *SMALL, *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert not out.exists()  # nothing written


def test_sim_askap_raw_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "raw"
    assert main(["sim", str(out), *SMALL, "--askap-raw", "--askap-pol-axis-deg", "30"]) == 0
    field = out / "SB101.SIM_FIELD.beam00.ms"
    cal = out / "SB100.B1934-638.beam00.ms"
    assert ms_frame(field) == "instrument" and ms_frame(cal) == "instrument"
    with table(str(field / "FEED"), ack=False) as t:
        assert t.nrows() == 4 * 36
        assert np.degrees(t.getcol("RECEPTOR_ANGLE")[0]) == pytest.approx([15.0, 105.0])
        assert set(t.getcol("BEAM_ID")) == set(range(36))
    with table(str(field / "OBSERVATION"), ack=False) as t:
        assert t.getcell("TELESCOPE_NAME", 0) == "ASKAP"
    truth = np.load(out / "SB100.B1934-638.truth.npz")
    assert float(truth["pol_axis_deg"]) == 30.0 and "bandpass_sky_frame" not in truth
    # fixms reads the roll angle back
    from fixms.fix_ms_corrs import get_pol_axis

    assert get_pol_axis(field, feed_idx=0).to_value("deg") == pytest.approx(30.0)
