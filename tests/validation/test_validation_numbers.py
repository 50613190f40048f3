"""Honest validation numbers on hand-computable synthetic cases, and one-line CLI errors.

A 100 x 100 image (10" pixels) with a BANE-like rms map (1 mJy left of column 40, 3 mJy
right of it) and a linmos-like weight map (1.0 left, 0.2 right): the inner region
(weight >= half the peak) is the left 40 columns. Components and reference sources are
placed on pixel centres so every count below follows from the layout by hand.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flint.cli import main
from flint.validation import run_validation, thermal_noise_from_counts

N, PIX_ARCSEC, RA0, DEC0, FREQ = 100, 10.0, 150.0, -30.0, 888e6


def _header() -> Any:
    from astropy.io import fits

    h = fits.Header()
    h["NAXIS"], h["NAXIS1"], h["NAXIS2"] = 2, N, N
    h["CTYPE1"], h["CTYPE2"] = "RA---SIN", "DEC--SIN"
    h["CRPIX1"], h["CRPIX2"] = N / 2 + 1, N / 2 + 1
    h["CRVAL1"], h["CRVAL2"] = RA0, DEC0
    h["CDELT1"], h["CDELT2"] = -PIX_ARCSEC / 3600, PIX_ARCSEC / 3600
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    h["BUNIT"] = "JY/BEAM"
    h["BMAJ"], h["BMIN"], h["BPA"] = 30 / 3600, 30 / 3600, 0.0
    h["FREQ"] = FREQ
    return h


def _fits(path: Path, data: np.ndarray) -> Path:
    from astropy.io import fits

    fits.PrimaryHDU(data.astype(np.float32), _header()).writeto(path)
    return path


def _world(x: float, y: float, ddec_arcsec: float = 0.0) -> tuple[float, float]:
    from astropy.wcs import WCS

    ra, dec = WCS(_header()).pixel_to_world_values(x, y)
    return float(ra), float(dec) + ddec_arcsec / 3600


def _csv(path: Path, rows: list[list[Any]]) -> Path:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


@pytest.fixture()
def field(tmp_path: Path) -> dict[str, Path]:
    """Image + rms + weight maps, a catalogue and a reference with a hand-counted layout."""
    rng = np.random.default_rng(3)
    img = _fits(tmp_path / "mosaic.fits", 1e-3 * rng.standard_normal((N, N)))
    rms = np.full((N, N), 3e-3)
    rms[:, :40] = 1e-3
    weight = np.full((N, N), 0.2)
    weight[:, :40] = 1.0
    _fits(tmp_path / "mosaic.rms.fits", rms)
    _fits(tmp_path / "mosaic.weight.fits", weight)
    # components: (name, pixel x, y, Dec offset arcsec, snr); local rms from the map
    comps = [
        ("C1", 20, 20, 0.0, 6.0),   # inner, spurious, 5-7
        ("C2", 20, 10, 1.0, 6.0),   # inner, matches R1, 5-7
        ("C3", 20, 30, 0.0, 8.0),   # inner, spurious, 7-10
        ("C4", 70, 30, 0.0, 8.0),   # outer, spurious, 7-10
        ("C5", 20, 40, 0.0, 15.0),  # inner, matches R2, 10-20
        ("C6", 70, 10, 0.0, 30.0),  # outer, matches R3, >= 20
        ("C7", 20, 40, 5.0, 25.0),  # inner, a second component of R2 (not spurious, unmatched), >= 20
        ("C8", 20, 80, 0.0, 4.0),   # below 5 sigma: ignored
        ("C9", 70, 70, 0.0, 50.0),  # outer, spurious, >= 20
    ]
    rows: list[list[Any]] = [["ra", "dec", "int_flux", "peak_flux", "local_rms", "snr"]]
    for _, x, y, dd, snr in comps:
        ra, dec = _world(x, y, dd)
        local = 1e-3 if x < 40 else 3e-3
        rows.append([ra, dec, snr * local, snr * local, local, snr])
    cat = _csv(tmp_path / "mosaic.comp.csv", rows)
    # reference: (name, x, y, flux Jy) -> apparent SNR = flux / local rms
    refs = [("R1", 20, 10, 6e-3), ("R2", 20, 40, 15e-3), ("R3", 70, 10, 90e-3), ("R4", 20, 60, 8e-3), ("R5", 70, 50, 36e-3)]
    rrows: list[list[Any]] = [["name", "ra_deg", "dec_deg", "flux_jy", "alpha", "ref_freq_hz"]]
    for name, x, y, flux in refs:
        ra, dec = _world(x, y)
        rrows.append([name, ra, dec, flux, 0.0, FREQ])
    rrows.append(["R6", 170.0, -30.0, 1.0, 0.0, FREQ])  # far outside the image
    ref = _csv(tmp_path / "ref.csv", rrows)
    return {"image": img, "catalogue": cat, "reference": ref, "dir": tmp_path}


def test_spurious_completeness_and_inner_noise_by_hand(field: dict[str, Path]) -> None:
    res = run_validation(field["catalogue"], field["reference"], image=field["image"], output_dir=field["dir"] / "v")
    assert res.noise_jy == pytest.approx(1e-3, rel=1e-6)  # median of the rms map where weight >= 0.5
    assert "inner" in res.noise_region
    # >= 5 sigma: C1-C7, C9; spurious (no reference within 10"): C1, C3, C4, C9
    assert (res.n_components, res.n_spurious, res.spurious_fraction) == (8, 4, pytest.approx(0.5))
    # inner (x < 40): C1, C2, C3, C5, C7; spurious C1, C3
    assert (res.n_components_inner, res.n_spurious_inner, res.spurious_fraction_inner) == (5, 2, pytest.approx(0.4))
    assert res.n_unmatched == 5  # C1, C3, C4, C7 (extra component of R2), C9
    got = {b.label: (b.n_components, b.n_spurious, b.n_components_inner, b.n_spurious_inner, b.n_reference, b.n_found) for b in res.bins}
    assert got == {
        "snr5_7": (2, 1, 2, 1, 1, 1),     # C1 C2 | R1 found
        "snr7_10": (2, 2, 1, 1, 1, 0),    # C3 C4 | R4 missed
        "snr10_20": (1, 0, 1, 0, 2, 1),   # C5 | R2 found, R5 (36 mJy / 3 mJy = 12) missed
        "snr20_up": (3, 1, 1, 0, 1, 1),   # C6 C7 C9 | R3 (90 / 3 = 30) found
    }
    numbers = res.numbers()
    assert numbers["spurious_fraction_snr7_10"] == pytest.approx(1.0)
    assert numbers["completeness_snr10_20"] == pytest.approx(0.5)
    # completeness >= 10 sigma: R2, R3 found, R5 missed
    assert (res.n_reference, res.n_found) == (3, 2)
    assert np.isnan(res.thermal_jy) and np.isnan(res.noise_to_thermal)  # no MS given
    assert res.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_weight_map_the_noise_is_over_the_whole_image(field: dict[str, Path]) -> None:
    (field["dir"] / "mosaic.weight.fits").unlink()
    res = run_validation(field["catalogue"], field["reference"], image=field["image"], output_dir=field["dir"] / "v")
    assert res.noise_jy == pytest.approx(3e-3, rel=1e-6)  # 60 % of the pixels are at 3 mJy
    assert "whole image" in res.noise_region
    assert (res.n_components_inner, res.n_spurious_inner) == (8, 4)  # the inner region is everything


def test_cli_prints_spurious_counts_below_10_sigma(field: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["validate", str(field["catalogue"]), str(field["reference"]), "--image", str(field["image"]), "--output-dir", str(field["dir"] / "c")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "spurious             4/8 (0.50); inner 2/5 (0.40)" in out
    assert "unmatched components 5" in out
    assert "noise                1.000 mJy/beam" in out
    assert main([*args, "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["n_spurious"] == 4 and numbers["spurious_fraction_inner_snr5_7"] == pytest.approx(0.5)
    assert numbers["thermal_jy"] is None  # NaN becomes null in JSON
    assert [b["n_components"] for b in numbers["bins"]] == [2, 2, 1, 3]
    # a stricter threshold counts fewer
    assert main([*args, "--json", "--spurious-snr", "7", "--snr-bins", "7", "20"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert (numbers["n_components"], numbers["n_spurious"]) == (6, 3)


def test_thermal_noise_of_issue_13_numbers() -> None:
    # 0.3 Jy per real part of each correlation, I = (XX+YY)/2, 226 695 unflagged visibilities
    assert thermal_noise_from_counts(226_695, 0.3) == pytest.approx(0.3 / np.sqrt(2) / np.sqrt(226_695))
    assert thermal_noise_from_counts(226_695, 0.3) == pytest.approx(0.45e-3, abs=0.005e-3)


# --------------------------------------------------------------------------- one-line errors
def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_non_table_files_give_one_line(field: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    png = field["dir"] / "figure.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    empty = field["dir"] / "empty.fits"
    empty.write_bytes(b"")
    for bad in (png, field["image"], empty, field["dir"]):
        _one_line_error(capsys, ["validate", str(field["catalogue"]), str(bad)], str(bad))
        _one_line_error(capsys, ["validate", str(bad), str(field["reference"])], str(bad))
    assert not list(field["dir"].glob("*.validation.*"))  # nothing written


def test_non_overlapping_reference_is_an_error(field: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    far = _csv(field["dir"] / "far.csv", [["ra_deg", "dec_deg", "flux_jy", "ref_freq_hz"], [330.0, 30.0, 1.0, FREQ], [331.0, 30.0, 1.0, FREQ]])
    _one_line_error(capsys, ["validate", str(field["catalogue"]), str(far), "--image", str(field["image"])], str(far), "none of its 2 sources")
    _one_line_error(capsys, ["validate", str(field["catalogue"]), str(far)], str(far), "same sky")  # without an image too
    assert not list(field["dir"].glob("*.validation.*"))


def test_unknown_frequency_and_unit_name_their_flags(field: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    ra, dec = _world(20, 40)
    nofreq = _csv(field["dir"] / "nofreq.csv", [["ra", "dec", "flux_jy"], [ra, dec, 0.015]])
    cat, img = str(field["catalogue"]), str(field["image"])
    _one_line_error(capsys, ["validate", cat, str(nofreq), "--image", img], str(nofreq), "--ref-freq")
    assert main(["validate", cat, str(nofreq), "--image", img, "--ref-freq", str(FREQ), "--output-dir", str(field["dir"] / "o")]) == 0
    capsys.readouterr()
    nounit = _csv(field["dir"] / "nounit.csv", [["_RAJ2000", "_DEJ2000", "S1.4"], [ra, dec, 15.0]])
    _one_line_error(capsys, ["validate", cat, str(nounit), "--image", img], str(nounit), "--flux-unit")
    assert main(["validate", cat, str(nounit), "--image", img, "--flux-unit", "mJy", "--spectral-index", "0", "--json", "--output-dir", str(field["dir"] / "o")]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["flux_ratio_median"] == pytest.approx(1.0)  # 15 mJy at 1.4 GHz (from the name) with index 0
    _one_line_error(capsys, ["validate", cat, str(nounit), "--image", img, "--flux-unit", "parsec"], "--flux-unit")
    _one_line_error(capsys, ["validate", cat, str(nounit), "--ra-col", "RAJ2000"], "RAJ2000", "--ra-col")
    _one_line_error(capsys, ["validate", cat, str(nounit), "--snr-bins", "7", "5"], "--snr-bins")
    _one_line_error(capsys, ["validate", cat, str(nounit), "--spectral-index", "nan"], "--spectral-index")
    _one_line_error(capsys, ["validate", cat, str(field["reference"]), "--image", img, "--ms", str(field["dir"] / "missing.ms")], "missing.ms")
