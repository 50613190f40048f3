"""``flint leakage`` on synthetic images with injected leakage (hand-checked numbers).

The Stokes-V image is ``L_k x`` the Stokes-I image around each source k (plus seeded noise of
1e-5 Jy/beam), so V/I at each component's peak is ``L_k`` to within noise / I_k.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _pol_synth import DEC0, RA0, blob, header, one_error_line, sky_of, write, write_catalogue
from astropy.coordinates import SkyCoord
from astropy.table import Table

from flint.cli import main
from flint.leakage import LeakageOptions, run_leakage

N, PIX = 128, 10.0
SIGMA = 30.0 / PIX / 2.3548
FREQ = [888e6]
V_NOISE = 1e-5
#: (y, x, I peak Jy, V/I, int/peak, snr)
SOURCES = {
    "A": (64, 64, 1.0, 0.002, 1.0, 1000.0),
    "B": (64, 100, 0.5, 0.007, 1.05, 500.0),
    "C": (20, 30, 0.2, -0.004, 0.95, 200.0),
    "D": (100, 30, 0.3, 0.05, 1.0, 300.0),  # D and E: 40" apart, not isolated
    "E": (100, 34, 0.3, 0.05, 1.0, 300.0),
    "F": (30, 100, 0.01, 0.05, 1.0, 10.0),  # faint
    "G": (100, 100, 0.3, 0.05, 2.0, 300.0),  # extended
}
USED = ("A", "B", "C")


def _field(d: Path, n: int = N, ra: float = RA0) -> tuple[Path, Path, Path]:
    hi, hv = header(n, PIX, FREQ, [1], ra=ra), header(n, PIX, FREQ, [4], ra=ra)
    i = np.zeros((n, n))
    v = np.random.default_rng(7).normal(0.0, V_NOISE, (n, n))
    rows = []
    for y, x, s, leak, ratio, snr in SOURCES.values():
        b = blob(n, y, x, SIGMA)
        i += s * b
        v += leak * s * b
        r, dc = sky_of(hi, y, x)
        rows.append({"ra": r, "dec": dc, "peak_flux": s, "int_flux": ratio * s, "local_rms": s / snr, "snr": snr})
    ipath = write(d / "beam00.i.image.fits", i[None, None], hi)
    vpath = write(d / "beam00.v.image.fits", v[None, None], hv)
    return vpath, ipath, write_catalogue(d / "beam00.i.image.comp.csv", rows)


def test_leakage_2d_cli_hand_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vpath, ipath, cat = _field(tmp_path)
    assert main(["leakage", str(vpath), str(ipath), str(cat)]) == 0
    out = capsys.readouterr().out
    assert "3 of 7 components used" in out
    tab = Table.read(tmp_path / "beam00.v.image.leakage.csv", format="ascii.csv")
    assert len(tab) == 3
    centre = SkyCoord(RA0, DEC0, unit="deg")
    for row, name in zip(tab, USED, strict=True):
        y, x, s, leak, _, _ = SOURCES[name]
        assert (row["y"], row["x"]) == (y, x)
        assert row["i_jy"] == pytest.approx(s, rel=1e-6)
        assert row["v_over_i"] == pytest.approx(leak, abs=5 * V_NOISE / s)
        assert row["v_noise_jy"] == pytest.approx(V_NOISE, rel=0.25)
        truth = SkyCoord(*sky_of(header(N, PIX, FREQ, [1]), y, x), unit="deg").separation(centre).deg
        assert row["distance_deg"] == pytest.approx(truth, abs=1e-9)
    # B is 36 pixels of 10" east of the centre: 0.1 deg
    assert tab["distance_deg"][1] == pytest.approx(0.1, abs=1e-4)
    png = tmp_path / "beam00.v.image.leakage.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_leakage_cube_iquv_per_channel(tmp_path: Path) -> None:
    """One IQUV cube (3 channels) as V, I, Q and U: the ratios per channel are the injected ones."""
    freqs = [800e6, 900e6, 1000e6]
    leak_v, leak_q, leak_u = [0.001, 0.002, 0.003], [0.01, 0.012, 0.014], [-0.005, -0.004, -0.003]
    hdr = header(N, PIX, freqs, [1, 2, 3, 4])
    data = np.zeros((4, 3, N, N))
    rows = []
    for (y, x), s0 in (((64, 64), 1.0), ((40, 90), 0.4)):
        b = blob(N, y, x, SIGMA)
        for c, f in enumerate(freqs):
            s = s0 * (f / 900e6) ** -0.7
            data[0, c] += s * b
            data[1, c] += leak_q[c] * s * b
            data[2, c] += leak_u[c] * s * b
            data[3, c] += leak_v[c] * s * b
        r, dc = sky_of(hdr, y, x)
        rows.append({"ra": r, "dec": dc, "peak_flux": s0, "int_flux": s0, "local_rms": 1e-3})
    cube = write(tmp_path / "beam01.iquv.image.cube.fits", data, hdr)
    cat = write_catalogue(tmp_path / "cat.csv", rows)
    res = run_leakage(cube, cube, cat, LeakageOptions(out_prefix=tmp_path / "out"), image_q=cube, image_u=cube)
    assert (res.n_used, res.n_channels) == (2, 3)
    tab = Table.read(res.table, format="ascii.csv")
    assert len(tab) == 6
    for row in tab:
        c = int(row["chan"])
        assert row["freq_hz"] == pytest.approx(freqs[c])
        assert row["v_over_i"] == pytest.approx(leak_v[c], rel=1e-5)
        assert row["q_over_i"] == pytest.approx(leak_q[c], rel=1e-5)
        assert row["u_over_i"] == pytest.approx(leak_u[c], rel=1e-5)
    assert res.median["V"] == pytest.approx(0.002, rel=1e-5)
    assert res.median_abs["U"] == pytest.approx(0.004, rel=1e-5)
    assert res.figure.is_file()



def test_leakage_mismatched_grids_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vpath, _, cat = _field(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, ipath_small, _ = _field(other, n=120)
    line = one_error_line(capsys, ["leakage", str(vpath), str(ipath_small), str(cat)])
    assert str(vpath) in line and str(ipath_small) in line and "120x120" in line
    moved = tmp_path / "moved"
    moved.mkdir()
    _, ipath_moved, _ = _field(moved, ra=RA0 + 1.0)
    line = one_error_line(capsys, ["leakage", str(vpath), str(ipath_moved), str(cat)])
    assert str(vpath) in line and str(ipath_moved) in line and "CRVAL1" in line
    assert not list(tmp_path.glob("*.leakage.*"))


def test_leakage_unhappy_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vpath, ipath, cat = _field(tmp_path)
    line = one_error_line(capsys, ["leakage", str(ipath), str(ipath), str(cat)])
    assert "holds Stokes I, not V" in line and "IMAGE_V" in line
    cube_hdr = header(N, PIX, [887e6, 888e6], [4])
    cube = write(tmp_path / "v.cube.fits", np.zeros((1, 2, N, N)), cube_hdr)
    line = one_error_line(capsys, ["leakage", str(cube), str(ipath), str(cat)])
    assert "2 channel(s)" in line and str(cube) in line
    bad_cat = tmp_path / "bad.csv"
    bad_cat.write_text("x,y\n1,2\n")
    line = one_error_line(capsys, ["leakage", str(vpath), str(ipath), str(bad_cat)])
    assert "no ra/dec columns" in line
    line = one_error_line(capsys, ["leakage", str(vpath), str(ipath), str(cat), "--min-snr", "1e7"])
    assert "--min-snr" in line
    assert not list(tmp_path.glob("*.leakage.*"))
    assert main(["leakage", str(vpath), str(ipath), str(cat)]) == 0
    table = tmp_path / "beam00.v.image.leakage.csv"
    before = table.read_bytes()
    line = one_error_line(capsys, ["leakage", str(vpath), str(ipath), str(cat), "--isolation-deg", "0"])
    assert "--overwrite" in line and table.read_bytes() == before
    assert main(["leakage", str(vpath), str(ipath), str(cat), "--isolation-deg", "0", "--overwrite"]) == 0
    assert len(Table.read(table, format="ascii.csv")) == 5  # D and E count once isolation is off
