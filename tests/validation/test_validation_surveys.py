"""Survey-format reference catalogues validate a flint mosaic (through the CLI).

The module fixture images the ideal simulated field (3 beams), convolves, mosaics and
finds sources, as ``flint flow`` would. The tests then write the simulator's truth in
real survey layouts and validate the mosaic's catalogue against them:

- VizieR's NVSS layout (FITS and VOTable): numeric ``_RAJ2000``/``_DEJ2000`` beside
  sexagesimal ``RAJ2000``/``DEJ2000``, ``S1.4`` in mJy at 1.4 GHz (the true spectral
  indices applied, so the -0.8 default leaves a known per-source ratio);
- SUMSS (sexagesimal only, ``St`` in mJy at 843 MHz), RACS-low (CSV: degrees,
  ``Total_flux`` in mJy with no unit in the file), ICRF-like (positions only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flint.cli import main
from flint.sim import SimResult, SkyModel, read_sky

from conftest import require_tool, writable_copy

pytestmark = [pytest.mark.slow]


@dataclass(frozen=True)
class Mosaic:
    ms: list[Path]
    mosaic: Path
    weight: Path
    catalogue: Path
    sky: SkyModel
    sky_csv: Path
    freq_hz: float


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory, sim_field_ideal: SimResult) -> Mosaic:
    """The ideal field: image (640 x 6", Briggs 0, auto-mask 5 / auto-threshold 3, no self-cal:
    the settings these numbers were measured with), common beam, linmos, BANE + aegean (via the CLI).
    """
    from flint.images import image_frequency_hz, read_header

    require_tool("wsclean")
    d = tmp_path_factory.mktemp("validation_mosaic")
    mss = [writable_copy(p, d).path for p in sim_field_ideal.ms_paths]
    img = d / "img"
    small = ["--size", "640", "--scale-arcsec", "6", "--weight", "briggs", "--robust", "0", "--niter", "50000",
             "--mgain", "0.8", "--auto-mask", "5", "--auto-threshold", "3"]
    assert main(["-q", "image", *map(str, mss), "--round", "1", "--out-dir", str(img), *small]) == 0
    images = sorted(img.glob("*.round1.image.fits"))
    assert len(images) == len(mss)
    assert main(["-q", "convol", *map(str, images)]) == 0
    assert main(["-q", "linmos", *[str(p.with_name(p.name.replace(".fits", ".conv.fits"))) for p in images]]) == 0
    mos = next(img.glob("*.linmos.fits"))
    assert main(["-q", "find-sources", str(mos)]) == 0
    freq = image_frequency_hz(read_header(mos))
    assert freq is not None
    assert sim_field_ideal.sky_csv is not None
    return Mosaic(
        ms=mss,
        mosaic=mos,
        weight=mos.with_name(mos.name.replace(".fits", ".weight.fits")),
        catalogue=mos.with_name(mos.name.replace(".fits", ".comp.csv")),
        sky=read_sky(sim_field_ideal.sky_csv),
        sky_csv=sim_field_ideal.sky_csv,
        freq_hz=freq,
    )


def _sexagesimal(ra: np.ndarray, dec: np.ndarray) -> tuple[list[str], list[str]]:
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    c = SkyCoord(ra * u.deg, dec * u.deg)
    return (
        list(c.ra.to_string(unit=u.hourangle, sep=" ", precision=2, pad=True)),
        list(c.dec.to_string(unit=u.deg, sep=" ", precision=1, alwayssign=True, pad=True)),
    )


def _write_nvss(sky: SkyModel, path: Path, fmt: str) -> Path:
    """The truth in VizieR's NVSS layout (VIII/65/nvss)."""
    from astropy.table import Column, Table

    s14 = 1e3 * sky.flux_jy * (1.4e9 / sky.ref_freq_hz) ** sky.alpha
    ra_s, dec_s = _sexagesimal(sky.ra_deg, sky.dec_deg)
    t = Table()
    t["_RAJ2000"] = Column(sky.ra_deg, unit="deg", description="Right ascension (FK5, Equinox=J2000.0) (computed by VizieR)")
    t["_DEJ2000"] = Column(sky.dec_deg, unit="deg", description="Declination (FK5, Equinox=J2000.0) (computed by VizieR)")
    t["NVSS"] = Column([f"J{r.replace(' ', '')[:8]}{d.replace(' ', '')[:7]}" for r, d in zip(ra_s, dec_s, strict=True)], description="Source name")
    t["RAJ2000"] = Column(ra_s, unit="h:m:s", description="Right Ascension J2000 (at epoch 1993.87)")
    t["DEJ2000"] = Column(dec_s, unit="d:m:s", description="Declination J2000 (at epoch 1993.87)")
    t["S1.4"] = Column(s14.astype(np.float32), unit="mJy", description="Integrated 1.4GHz flux density of radio source")
    t["e_S1.4"] = Column((0.02 * s14 + 0.45).astype(np.float32), unit="mJy", description="Mean error on S1.4")
    t.meta["name"] = "VIII/65/nvss"
    t.meta["description"] = "NRAO VLA Sky Survey"
    t.write(path, format=fmt)
    return path


def _validate(capsys: pytest.CaptureFixture[str], m: Mosaic, reference: Path, out: Path, *extra: str) -> dict[str, Any]:
    capsys.readouterr()
    argv = ["validate", str(m.catalogue), str(reference), "--image", str(m.mosaic), "--output-dir", str(out), "--json", *extra]
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _matches(numbers: dict[str, Any]) -> Any:
    from astropy.table import Table

    return Table.read(numbers["matches"], format="ascii.csv")


def _summary(numbers: dict[str, Any]) -> dict[str, str]:
    import csv

    with open(numbers["summary"]) as fh:
        return {row[0]: row[1] for row in csv.reader(fh)}


@pytest.fixture(scope="module")
def truth_numbers(mosaic: Mosaic, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Validation against the simulator's own sky CSV (its per-source spectral indices)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("truth_validation")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        argv = ["validate", str(mosaic.catalogue), str(mosaic.sky_csv), "--image", str(mosaic.mosaic), "--json", "--output-dir", str(out)]
        argv += ["--ms", *map(str, mosaic.ms)]
        assert main(argv) == 0
    return json.loads(buf.getvalue())


def test_truth_validation_reports_noise_thermal_and_spurious(truth_numbers: dict[str, Any], mosaic: Mosaic) -> None:
    from flint.images import read_image
    from flint.validation import thermal_noise

    n = truth_numbers
    # measured here: completeness 12/12, flux ratio 0.951 (one round, no self-cal)
    assert n["completeness"] >= 0.9 and n["flux_ratio_median"] == pytest.approx(1.0, abs=0.1)
    # noise: the median of BANE's rms map where the linmos weight >= half its peak (computed here independently)
    rms = read_image(mosaic.mosaic.with_name(mosaic.mosaic.name.replace(".fits", ".rms.fits"))).data
    w = read_image(mosaic.weight).data
    inner = np.isfinite(w) & (w >= 0.5 * np.nanmax(w))
    assert n["noise_jy"] == pytest.approx(float(np.median(rms[inner & np.isfinite(rms) & (rms > 0)])), rel=1e-6)
    thermal = float(np.median([thermal_noise(p).noise_jy for p in mosaic.ms]))
    assert n["thermal_jy"] == pytest.approx(thermal, rel=1e-9)
    assert n["noise_to_thermal"] == pytest.approx(n["noise_jy"] / thermal, rel=1e-9)
    # measured on this data (robust 0 imaging, one round, ideal antennas): the ratio is
    # above 1 (not natural weighting, deconvolution residuals) and well below 10
    assert 1.0 < n["noise_to_thermal"] < 10.0
    assert 0 <= n["n_spurious"] <= n["n_components"] and n["n_components"] >= n["n_found"]
    assert n["n_components_inner"] <= n["n_components"]
    assert sum(b["n_components"] for b in n["bins"]) == n["n_components"]


@pytest.mark.parametrize("fmt,suffix", [("fits", "fits"), ("votable", "vot")])
def test_nvss_layout_validates_the_mosaic(fmt: str, suffix: str, mosaic: Mosaic, truth_numbers: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = _write_nvss(mosaic.sky, tmp_path / f"nvss.{suffix}", fmt)
    n = _validate(capsys, mosaic, ref, tmp_path / "out")
    cols = _summary(n)["reference_columns"]
    assert "RA '_RAJ2000'" in cols and "Dec '_DEJ2000'" in cols  # numeric, not the sexagesimal columns
    assert "'S1.4' in mJy" in cols and "flux column name 'S1.4'" in cols
    # the same sources are matched as against the truth CSV
    m, t = _matches(n), _matches(truth_numbers)
    assert int(np.sum(m["matched"] == "True")) == int(np.sum(t["matched"] == "True")) >= 10
    # NVSS fluxes scaled from 1.4 GHz with -0.8: each matched source's ratio is (nu/1.4 GHz)^(alpha+0.8)
    alpha = dict(zip(mosaic.sky.name, mosaic.sky.alpha, strict=True))
    truth_ratio = {r["name"]: r["flux_ratio"] for r in t if r["used_in_stats"] == "True"}
    used = [r for r in m if r["used_in_stats"] == "True"]
    assert len(used) >= 10
    for r in used:
        expected = truth_ratio[_truth_name(r, t)] * (mosaic.freq_hz / 1.4e9) ** (alpha[_truth_name(r, t)] + 0.8)
        assert r["flux_ratio"] == pytest.approx(expected, rel=2e-3)  # S1.4 is stored as float32 mJy
    assert n["flux_ratio_median"] != pytest.approx(truth_numbers["flux_ratio_median"], abs=1e-3)  # the scaling shows


def _truth_name(row: Any, truth: Any) -> str:
    """The truth source at the same position as an NVSS row."""
    d = np.hypot((truth["ref_ra_deg"] - row["ref_ra_deg"]) * np.cos(np.radians(row["ref_dec_deg"])), truth["ref_dec_deg"] - row["ref_dec_deg"])
    return str(truth["name"][int(np.argmin(d))])


def test_nvss_fits_and_votable_agree(mosaic: Mosaic, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _validate(capsys, mosaic, _write_nvss(mosaic.sky, tmp_path / "nvss.fits", "fits"), tmp_path / "a")
    b = _validate(capsys, mosaic, _write_nvss(mosaic.sky, tmp_path / "nvss.xml", "votable"), tmp_path / "b")
    for key in ("n_reference", "n_found", "completeness", "flux_ratio_median", "ra_offset_arcsec", "n_spurious", "n_components"):
        assert a[key] == b[key], key


def test_sumss_racs_and_icrf_layouts(mosaic: Mosaic, truth_numbers: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from astropy.table import Column, Table

    sky = mosaic.sky
    ra_s, dec_s = _sexagesimal(sky.ra_deg, sky.dec_deg)
    n_matched_truth = int(np.sum(_matches(truth_numbers)["matched"] == "True"))

    # SUMSS: sexagesimal positions only, St in mJy at 843 MHz (from the survey's name)
    sumss = Table()
    sumss["RAJ2000"] = Column(ra_s, unit="h:m:s")
    sumss["DEJ2000"] = Column(dec_s, unit="d:m:s")
    sumss["St"] = Column(1e3 * sky.flux_jy * (843e6 / sky.ref_freq_hz) ** sky.alpha, unit="mJy", description="Total flux density")
    sumss.meta["name"] = "VIII/81B/sumss212"
    sumss.write(tmp_path / "sumss.fits")
    n = _validate(capsys, mosaic, tmp_path / "sumss.fits", tmp_path / "s", "--spectral-index", "-0.7")
    assert "known survey 'sumss'" in _summary(n)["reference_columns"]
    assert int(np.sum(_matches(n)["matched"] == "True")) == n_matched_truth
    assert abs(n["ra_offset_arcsec"]) < 1.0 and abs(n["dec_offset_arcsec"]) < 1.0  # 0.01 s / 0.1" strings
    assert n["flux_ratio_median"] == pytest.approx(1.0, abs=0.08)  # true indices -0.7 +- 0.2

    # RACS-low as CSV: degrees, Total_flux in mJy (a CSV carries no unit), 887.5 MHz
    racs = Table({"Gaussian_ID": sky.name, "RA": sky.ra_deg, "Dec": sky.dec_deg, "Total_flux": 1e3 * sky.flux_jy * (887.5e6 / sky.ref_freq_hz) ** sky.alpha})
    racs.write(tmp_path / "components.csv", format="ascii.csv")
    capsys.readouterr()
    assert main(["validate", str(mosaic.catalogue), str(tmp_path / "components.csv"), "--image", str(mosaic.mosaic)]) == 1
    assert "--flux-unit" in capsys.readouterr().err
    assert main(["validate", str(mosaic.catalogue), str(tmp_path / "components.csv"), "--image", str(mosaic.mosaic), "--flux-unit", "mJy"]) == 1
    assert "--ref-freq" in capsys.readouterr().err
    n = _validate(capsys, mosaic, tmp_path / "components.csv", tmp_path / "r", "--flux-unit", "mJy", "--ref-freq", "887.5e6")
    assert int(np.sum(_matches(n)["matched"] == "True")) == n_matched_truth
    assert n["flux_ratio_median"] == pytest.approx(truth_numbers["flux_ratio_median"], abs=0.02)  # 887.5 MHz ~ the image frequency

    # ICRF-like: names and sexagesimal positions only -> astrometry only
    icrf = Table({"ICRF": [f"ICRF {s}" for s in sky.name], "RAICRS": ra_s, "DEICRS": dec_s})
    icrf.write(tmp_path / "icrf.vot", format="votable")
    n = _validate(capsys, mosaic, tmp_path / "icrf.vot", tmp_path / "i")
    assert n["completeness"] is None and n["spurious_fraction"] is None and n["flux_ratio_median"] is None
    assert abs(n["ra_offset_arcsec"]) < 1.0 and abs(n["dec_offset_arcsec"]) < 1.0
    assert int(np.sum(_matches(n)["matched"] == "True")) == n_matched_truth


def test_nvss_not_overlapping_is_one_line(mosaic: Mosaic, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sky = mosaic.sky
    far = SkyModel(sky.name, (sky.ra_deg + 180.0) % 360.0, -sky.dec_deg, sky.flux_jy, sky.alpha, sky.ref_freq_hz)
    ref = _write_nvss(far, tmp_path / "nvss_far.fits", "fits")
    capsys.readouterr()
    assert main(["validate", str(mosaic.catalogue), str(ref), "--image", str(mosaic.mosaic), "--output-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(ref) in err[0] and "none of its" in err[0]
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
