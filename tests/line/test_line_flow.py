"""``flint sim --lines`` and ``flint flow line`` through the CLI: the truth file, the zoom preset,
the velocity convention, and one-line refusals before anything is submitted."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from flint._sim_lines import (
    HI_REST_HZ,
    ZOOM_PRESET,
    freq_to_velocity,
    line_free_channels,
    read_lines,
    velocity_to_freq,
)
from flint.cli import main
from flint.sim import SimOptions


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_velocity_convention_is_optical() -> None:
    # optical: v = c (f0/f - 1); 1400 MHz is 4369.6 km/s (the radio convention c (1 - f/f0) would give 4306.9)
    assert float(freq_to_velocity(1.4e9)) == pytest.approx(299792.458 * (HI_REST_HZ / 1.4e9 - 1), rel=1e-12)
    assert float(freq_to_velocity(1.4e9)) == pytest.approx(4369.6, abs=0.1)
    v = np.array([-100.0, 0.0, 5000.0])
    assert np.allclose(freq_to_velocity(velocity_to_freq(v)), v, atol=1e-9)


def test_zoom_preset_and_explicit_options_win() -> None:
    z = SimOptions(zoom=True, lines=2)
    assert (z.n_channels, z.channel_width_hz, z.freq_start_hz) == (64, pytest.approx(18518.5185, rel=1e-6), 1.3995e9)
    assert SimOptions(zoom=True, n_channels=32).n_channels == 32
    assert ZOOM_PRESET["n_channels"] == 64


def test_sim_lines_cli_writes_truth(tmp_path: Path) -> None:
    out = tmp_path / "data"
    rc = main(["sim", str(out), "--what", "field", "--lines", "3", "--zoom", "--n-beams", "1", "--n-times", "2", "--n-sources", "5"])
    assert rc == 0
    path = out / "SB101.SIM_FIELD.lines.csv"
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["kind"] for r in rows] == ["emission"] * 3 + ["absorption"]
    lines = read_lines(path)
    freqs = 1.3995e9 + (1e6 / 54) * np.arange(64)
    v = freq_to_velocity(freqs)
    for ln in lines:
        # centres inside the band with 1.5 FWHM to spare; integral = peak * FWHM * sqrt(pi / 4 ln 2)
        assert v.min() + 1.5 * ln.fwhm_kms <= ln.v0_kms <= v.max() - 1.5 * ln.fwhm_kms
        assert ln.int_flux_jy_kms == pytest.approx(ln.peak_jy * ln.fwhm_kms * math.sqrt(math.pi / (4 * math.log(2))))
    absorber = lines[-1]
    assert absorber.peak_jy < 0 and absorber.continuum_name.startswith("SIM")
    # the line sky leaves the continuum truth unchanged
    rc = main(["sim", str(tmp_path / "nolines"), "--what", "field", "--zoom", "--n-beams", "1", "--n-times", "2", "--n-sources", "5"])
    assert rc == 0
    assert (out / "SB101.SIM_FIELD.sky.csv").read_text() == (tmp_path / "nolines" / "SB101.SIM_FIELD.sky.csv").read_text()
    assert not (tmp_path / "nolines" / "SB101.SIM_FIELD.lines.csv").exists()
    free = line_free_channels(lines, freqs)
    assert free and all("~" in part for part in free.split(","))


def test_sim_lines_refuses_unresolved_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["sim", str(tmp_path / "d"), "--what", "field", "--lines", "2"])  # 1 MHz channels at 882 MHz: ~340 km/s each
    assert rc == 1
    line = _one_error_line(capsys)
    assert "--line-fwhm-kms" in line and "--zoom" in line
    assert not (tmp_path / "d").exists()


def test_flow_line_refuses_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["flow", "line", str(tmp_path / "nope"), "--out-dir", str(tmp_path / "line")])
    assert rc == 1
    assert "continuum flow's output folder" in _one_error_line(capsys)
    assert not (tmp_path / "line").exists()


def test_flow_line_refuses_folder_without_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "cont"
    assert main(["sim", str(data), "--what", "field", "--n-beams", "1", "--n-times", "2", "--n-sources", "2"]) == 0
    capsys.readouterr()
    rc = main(["flow", "line", str(data), "--out-dir", str(tmp_path / "line")])
    assert rc == 1
    line = _one_error_line(capsys)
    assert "round<N>.model.fits" in line and "flint flow continuum" in line


def test_flow_line_refuses_bad_fit_channels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "cont"
    assert main(["sim", str(data), "--what", "field", "--n-beams", "1", "--n-times", "2", "--n-sources", "2"]) == 0
    (data / "SB101.SIM_FIELD.beam00.round2.model.fits").write_bytes(b"")
    capsys.readouterr()
    rc = main(["flow", "line", str(data), "--out-dir", str(tmp_path / "line"), "--fit-channels", "0~3", "--uvcontsub-order", "none"])
    assert rc == 1
    assert "--uvcontsub-order" in _one_error_line(capsys)
    rc = main(["flow", "line", str(data), "--out-dir", str(tmp_path / "line"), "--fit-channels", "0~x"])
    assert rc == 1
    assert "--fit-channels" in _one_error_line(capsys)
    assert not (tmp_path / "line").exists()
