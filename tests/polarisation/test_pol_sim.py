"""``flint sim --polarised``: coherency convention checked with WSClean, leakage and truth files."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from flint.cli import main

pytestmark = pytest.mark.skipif(shutil.which("wsclean") is None, reason="wsclean not on PATH")


def _sim(tmp: Path, *extra: str) -> Path:
    args = [
        "sim", str(tmp), "--what", "field", "--polarised", "--n-beams", "1", "--n-antennas", "24", "--n-times", "6",
        "--n-channels", "1", "--freq-start-hz", "888e6", "--n-sources", "0", "--n-bright", "3", "--noise-jy", "0.01", "--gain-amp-scatter", "0",
        "--gain-phase-scatter-deg", "0", "--bandpass-ripple", "0", "--phase-drift-deg", "0", "--seed", "5", *extra,
    ]
    assert main(args) == 0
    return tmp


def _truth(tmp: Path) -> list[dict[str, str]]:
    with open(next(tmp.glob("*.pol.csv"))) as fh:
        return list(csv.DictReader(fh))


def _stokes_at(images: dict[str, Path], ra: float, dec: float) -> dict[str, float]:
    out = {}
    for p, path in images.items():
        with fits.open(path) as hdul:
            data = np.squeeze(hdul[0].data)
            x, y = WCS(hdul[0].header).celestial.world_to_pixel_values(ra, dec)
        out[p] = float(data[int(round(float(y))), int(round(float(x)))])
    return out


def test_wsclean_reads_the_simulated_stokes_with_their_signs(tmp_path: Path) -> None:
    """XX = I+Q, YY = I-Q, XY = U+iV, YX = U-iV: WSClean's -pol IQUV images give the truth's Q, U, V signs."""
    sim = _sim(tmp_path / "sim", "--pol-dterm-rms", "0", "--pol-xy-phase-deg", "0", "--pol-offaxis-leakage", "0")
    ms = next(sim.glob("*.beam00.ms"))
    out = tmp_path / "img"
    assert main(["image", str(ms), "--pol", "IQUV", "--size", "512", "--scale-arcsec", "6", "--niter", "3000", "--join-polarizations", "--auto-mask", "3", "--auto-threshold", "0.5",
                 "--data-column", "DATA", "--out-dir", str(out)]) == 0
    images = {p: next(out.glob(f"*.{p}.image.fits")) for p in "iquv"}
    rows = _truth(sim)
    checked = 0
    for row in rows:
        got = _stokes_at(images, float(row["ra_deg"]), float(row["dec_deg"]))
        i_true = float(row["flux_jy"])  # one channel at ref_freq_hz
        assert got["i"] > 0.3 * i_true
        # fractions (the primary beam attenuates I, Q, U, V alike); truth at the reference frequency
        for p, key in (("q", "q_jy"), ("u", "u_jy"), ("v", "v_jy")):
            assert got[p] / got["i"] == pytest.approx(float(row[key]) / i_true, abs=2e-3), (row["name"], p)
        checked += 1
    assert checked == 3
    assert any(abs(float(r["v_jy"])) > 0.005 for r in rows)  # the signs of V were checked too


def test_polarised_raw_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", str(tmp_path / "x"), "--polarised", "--askap-raw"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--polarised" in err[0] and "--askap-raw" in err[0]
    assert not (tmp_path / "x").exists()


def test_polarised_truth_files_and_dterm_scale(tmp_path: Path) -> None:
    from flint._sim_pol import pol_truth_paths
    from flint.sim import SimOptions

    _sim(tmp_path, "--pol-dterm-rms", "0.03", "--n-sources", "6")
    truth = np.load(next(tmp_path.glob("*.truth.npz")))
    d = truth["dterms"]
    assert d.shape == (1, 24, 1, 2)
    assert 0.015 < np.sqrt(np.mean(np.abs(d) ** 2)) < 0.045  # ~ the rms asked for
    g = truth["bandpass"]
    assert np.allclose(np.angle(g[..., 1] / g[..., 0]), truth["xy_phase_rad"])  # the XY-phase is in the gains
    paths = pol_truth_paths(tmp_path, SimOptions(n_beams=1, polarised=True))
    rows = _truth(tmp_path)
    assert len(rows) == 9 and paths["pb_cube"].exists()
    assert sum(float(r["frac_lin"]) == 0 for r in rows) >= 1  # unpolarised sources to measure leakage on
