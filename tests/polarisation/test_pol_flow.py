"""``flint flow polarisation``: registration, input checks (one line each), the polarisation strategy."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from _pol_synth import one_error_line


def test_polarisation_flow_is_registered() -> None:
    from flint.prefect.running import FLOW_NAMES, get_flow

    assert "polarisation" in FLOW_NAMES
    assert get_flow("polarisation").name == "flint-polarisation"


def test_missing_continuum_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error_line(capsys, ["flow", "polarisation", str(tmp_path / "nope"), "--out-dir", str(tmp_path / "out")])
    assert "nope" in line and "continuum flow's output folder" in line
    assert not (tmp_path / "out").exists()


def test_folder_without_catalogue_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flint.sim import SimOptions, simulate_field

    cont = tmp_path / "continuum"
    simulate_field(cont, SimOptions(n_beams=1, n_antennas=4, n_times=1, n_channels=2, n_sources=1))
    line = one_error_line(capsys, ["flow", "polarisation", str(cont), "--out-dir", str(tmp_path / "out")])
    assert "--catalogue" in line
    line = one_error_line(capsys, ["flow", "polarisation", str(cont), "--out-dir", str(tmp_path / "out"),
                                   "--catalogue", str(tmp_path / "cat.csv")])
    assert "cat.csv" in line and "--catalogue" in line
    line = one_error_line(capsys, ["flow", "polarisation", str(cont), "--out-dir", str(tmp_path / "out"),
                                   "--catalogue", str(next(cont.glob("*.sky.csv"))), "--pb-cube", str(tmp_path / "akpb.fits")])
    assert "akpb.fits" in line and "--pb-cube" in line


def test_pol_strategy_is_full_jones_and_phase_only(tmp_path: Path) -> None:
    from flint.prefect.polarisation import pol_strategy, pol_wsclean_options
    from flint.strategy import load_strategy

    path = pol_strategy(tmp_path / "s.yaml", size=512, xy_phase="12.5")
    strat = load_strategy(path)
    bp = strat.options_for("bandpass", 0)
    assert bp.full_jones and bp.xy_phase == "12.5"
    for r in range(1, int(strat.n_rounds) + 1):
        assert strat.options_for("selfcal", r).mode == "phase"
    assert strat.options_for("wsclean", 0).size == 512
    for r in range(int(strat.n_rounds) + 1):  # spectral fitting over the wide band in every continuum round
        w = strat.options_for("wsclean", r)
        assert (w.channels_out, w.join_channels, w.fit_spectral_pol) == (4, True, 2)
    assert yaml.safe_load(path.read_text())["version"] == 1
    plain = load_strategy(pol_strategy(tmp_path / "mfs.yaml", channels_out=1)).options_for("wsclean", 2)
    assert (plain.channels_out, plain.join_channels, plain.fit_spectral_pol) == (1, False, None)
    cubes = pol_wsclean_options(strat, n_channels=36)  # the cubes keep their own channels, no fit
    assert (cubes.channels_out, cubes.join_channels, cubes.fit_spectral_pol) == (36, False, None)


def test_launcher_offers_the_polarisation_flow() -> None:
    pytest.importorskip("ipywidgets")
    from flint_widgets.launcher import FLOW_TOOLS, flow_parameters

    assert "polarisation" in FLOW_TOOLS
    params = flow_parameters("polarisation")
    assert {"continuum", "out_dir", "pb_cube", "catalogue"} <= set(params)
