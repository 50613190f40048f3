"""Image-domain stages on small synthetic FITS images with known answers.

convol: the convolved beam is the common beam to 1 %; linmos: the PB/noise weighting
formula; validation: numbers of a hand-checked case; bad inputs give one clear error.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from _imaging_synth import fit_beam, gaussian, header, write

from flint.convol import ConvolOptions, run_convol
from flint.errors import FlintImageError, FlintInputError
from flint.images import read_beam, read_image
from flint.linmos import LinmosOptions, run_linmos
from flint.primary_beam import angular_separation_deg, gaussian_pb
from flint.validation import ValidationOptions, run_validation

PIX = 2.0


# --------------------------------------------------------------------------- convol
def test_convolved_beam_equals_common_beam(tmp_path: Path) -> None:
    n = 200
    beams = [(20.0, 10.0, 30.0), (18.0, 12.0, -40.0), (25.0, 8.0, 80.0)]
    paths = [write(tmp_path / f"b{i}.fits", gaussian(n, PIX, *b), header(n, PIX), beam=b) for i, b in enumerate(beams)]
    res = run_convol(paths)
    bmaj, bmin, bpa = res.beam
    assert bmaj >= 25.0 and bmin >= 12.0  # contains every input beam
    for path in res.images:
        assert path.name.endswith(".conv.fits")
        hb = read_beam(path)
        assert hb.major.to_value("arcsec") == pytest.approx(bmaj) and hb.pa.to_value("deg") == pytest.approx(bpa)
        maj, mn, pa, peak = fit_beam(read_image(path).data, PIX)
        assert maj == pytest.approx(bmaj, rel=0.01)
        assert mn == pytest.approx(bmin, rel=0.01)
        assert ((pa - bpa + 90) % 180 - 90) == pytest.approx(0.0, abs=1.0)
        assert peak == pytest.approx(1.5, rel=0.01)  # a point source keeps its Jy/beam peak
    for src in paths:
        assert src.exists()  # inputs untouched


def test_convol_to_a_given_beam_and_identity(tmp_path: Path) -> None:
    n = 128
    p = write(tmp_path / "a.fits", gaussian(n, PIX, 20, 10, 30), header(n, PIX), beam=(20, 10, 30))
    res = run_convol([p], ConvolOptions(target_beam=(30.0, 30.0, 0.0), suffix="c30", out_dir=tmp_path / "out"))
    assert res.images == [tmp_path / "out" / "a.c30.fits"]
    maj, mn, _, _ = fit_beam(read_image(res.images[0]).data, PIX)
    assert maj == pytest.approx(30, rel=0.01) and mn == pytest.approx(30, rel=0.01)
    same = run_convol([p], ConvolOptions(suffix="same"))  # a single image: its own beam
    assert np.array_equal(read_image(same.images[0]).data, read_image(p).data)


def test_convol_bad_inputs(tmp_path: Path) -> None:
    n = 64
    good = write(tmp_path / "good.fits", gaussian(n, PIX, 20, 10, 30), header(n, PIX))
    nobeam = write(tmp_path / "nobeam.fits", gaussian(n, PIX, 20, 10, 30), header(n, PIX), beam=None)
    h = header(n, PIX)
    h["BUNIT"] = "JY/PIXEL"
    perpix = write(tmp_path / "perpix.fits", gaussian(n, PIX, 20, 10, 30), h)
    with pytest.raises(FlintInputError, match="no images"):
        run_convol([])
    with pytest.raises(FlintImageError, match="BMAJ"):
        run_convol([good, nobeam])
    with pytest.raises(FlintImageError, match="Jy/beam"):
        run_convol([good, perpix])
    with pytest.raises(FlintImageError, match="larger target_beam"):
        run_convol([good], ConvolOptions(target_beam=(15.0, 15.0, 0.0)))
    with pytest.raises(FlintImageError, match="no such FITS image"):
        run_convol([tmp_path / "missing.fits"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.fits", "nobeam.fits", "perpix.fits"]
    # the beam an image lacks can be given: a 20" x 10" source convolved to 30" x 30"
    given = run_convol([nobeam], ConvolOptions(input_beam=(20.0, 10.0, 30.0), target_beam=(30.0, 30.0, 0.0), out_dir=tmp_path / "o"))
    maj, mn, _, peak = fit_beam(read_image(given.images[0]).data, PIX)
    assert maj == pytest.approx(30, rel=0.01) and mn == pytest.approx(30, rel=0.01) and peak == pytest.approx(1.5, rel=0.01)
    assert "BMAJ" not in read_image(nobeam).header


# --------------------------------------------------------------------------- linmos
SOURCES_FLUX = 1.0


def _beam_images(tmp_path: Path, sigmas: tuple[float, float], seed: int = 3) -> tuple[list[Path], list[tuple[float, float]], list[tuple[float, float]]]:
    """Two beams 0.8 deg apart seeing three 1 Jy blobs (one half-way) through the Gaussian PB, plus noise."""
    rng = np.random.default_rng(seed)
    n, pix, blob = 300, 10.0, 100.0
    centres = [(150.0, -30.0), (150.0 + 0.8 / np.cos(np.radians(30.0)), -30.0)]
    mid = ((centres[0][0] + centres[1][0]) / 2, -30.0)
    sources = [(centres[0][0] + 0.1, -29.9), mid, (centres[1][0] - 0.05, -30.15)]
    paths = []
    for i, (ra, dec) in enumerate(centres):
        h = header(n, pix, ra, dec)
        img = read_image(write(tmp_path / f"raw{i}.fits", np.zeros((n, n)), h))
        yy, xx = np.mgrid[0:n, 0:n]
        data = sigmas[i] * rng.standard_normal((n, n))
        for sra, sdec in sources:
            x0, y0 = (float(v) for v in img.wcs.world_to_pixel_values(sra, sdec))
            pb = float(gaussian_pb(angular_separation_deg(ra, dec, sra, sdec), 887.5e6))
            data += SOURCES_FLUX * pb * np.exp(-4 * np.log(2) * ((xx - x0) ** 2 + (yy - y0) ** 2) / (blob / pix) ** 2)
        paths.append(write(tmp_path / f"SB7.TEST.beam{i:02d}.round0.image.fits", data, h))
        (tmp_path / f"raw{i}.fits").unlink()
    return paths, centres, sources


def test_linmos_weighting_formula(tmp_path: Path) -> None:
    sigmas = (1e-3, 2e-3)
    paths, centres, sources = _beam_images(tmp_path, sigmas)
    res = run_linmos(paths, LinmosOptions(pb_cutoff=0.1))
    assert res.mosaic == tmp_path / "SB7.TEST.round0.linmos.fits"
    assert res.weight == tmp_path / "SB7.TEST.round0.linmos.weight.fits"
    assert res.noise_jy == pytest.approx(sigmas, rel=0.05)
    mos, wt = read_image(res.mosaic), read_image(res.weight)
    ok = np.isfinite(mos.data)
    for ra, dec in sources:  # every source once, at its true (PB-corrected) flux
        x, y = (int(round(float(v))) for v in mos.wcs.world_to_pixel_values(ra, dec))
        assert float(np.nanmax(mos.data[y - 2 : y + 3, x - 2 : x + 3])) == pytest.approx(SOURCES_FLUX, rel=0.02)
    # weight = sum PB^2 / sigma^2 at the midpoint and at each beam centre
    for ra, dec in [centres[0], centres[1], sources[1]]:
        x, y = (int(round(float(v))) for v in wt.wcs.world_to_pixel_values(ra, dec))
        expected = 0.0
        for c, s, path in zip(centres, res.noise_jy, paths, strict=True):
            px, py = (float(v) for v in read_image(path).wcs.world_to_pixel_values(ra, dec))
            pb = float(gaussian_pb(angular_separation_deg(c[0], c[1], ra, dec), 887.5e6))
            if pb >= 0.1 and 0 <= px < 300 and 0 <= py < 300:  # inside that beam image
                expected += pb**2 / s**2
        assert float(wt.data[y, x]) == pytest.approx(expected, rel=0.02)
    # half-way, the mosaic is less noisy than either beam alone would be there
    x, y = (int(round(float(v))) for v in wt.wcs.world_to_pixel_values(*sources[1]))
    pb_mid = float(gaussian_pb(0.4, 887.5e6))
    assert 1 / np.sqrt(wt.data[y, x]) < min(sigmas) / pb_mid
    # empty borders trimmed; outside the PB cutoff of both beams -> blank
    assert ok[0].any() and ok[-1].any() and ok[:, 0].any() and ok[:, -1].any()
    assert not ok.all()
    assert mos.header["BMAJ"] == pytest.approx(20 / 3600) and mos.header["BUNIT"] == "JY/BEAM"


def test_linmos_bad_inputs(tmp_path: Path) -> None:
    paths, _, _ = _beam_images(tmp_path, (1e-3, 1e-3))
    with pytest.raises(FlintInputError, match="no images"):
        run_linmos([])
    h = read_image(paths[1]).header
    h["BUNIT"] = "K"
    odd = write(tmp_path / "kelvin.fits", read_image(paths[1]).data, h)
    with pytest.raises(FlintImageError, match="different brightness units"):
        run_linmos([paths[0], odd])
    with pytest.raises(FlintInputError, match="overwrite an input"):
        run_linmos(paths, output=paths[0])
    assert not list(tmp_path.glob("*linmos*"))


# --------------------------------------------------------------------------- validation
def _csv(path: Path, rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def test_validation_numbers_of_a_hand_checked_case(tmp_path: Path) -> None:
    arc = 1 / 3600
    ref = _csv(tmp_path / "ref.csv", [
        ["name", "ra_deg", "dec_deg", "flux_jy", "alpha", "ref_freq_hz"],
        ["A", 10.0, 0.0, 1.0, 0.0, 1e9],
        ["B", 10.1, 0.0, 2.0, -1.0, 1e9],   # 4 Jy at 0.5 GHz
        ["C", 10.0, 0.1, 0.5, 0.0, 1e9],
        ["D", 10.04, 0.04, 0.2, 0.0, 1e9],  # in the field, bright enough, not found
        ["E", 20.0, 20.0, 5.0, 0.0, 1e9],   # far outside the field
    ])
    cat = _csv(tmp_path / "x.comp.csv", [
        ["ra", "dec", "int_flux", "peak_flux", "local_rms", "snr"],
        [10.0 + arc, 0.0, 1.1, 1.1, 0.01, 110],        # A: +1" RA, ratio 1.1
        [10.1, 2 * arc, 3.6, 3.6, 0.01, 360],          # B: +2" Dec, ratio 0.9
        [10.0 - arc, 0.1 - arc, 0.5, 0.5, 0.01, 50],   # C: -1", -1", ratio 1.0
        [10.05, 0.05, 0.3, 0.3, 0.01, 30],             # no counterpart
    ])
    res = run_validation(cat, ref, ValidationOptions(freq_hz=0.5e9), output_dir=tmp_path / "v")
    assert (res.n_reference, res.n_found) == (4, 3)
    assert res.completeness == pytest.approx(0.75)
    assert res.n_flux == 3
    assert res.flux_ratio_median == pytest.approx(1.0)
    assert res.flux_ratio_scatter == pytest.approx(1.4826 * 0.1)
    assert res.ra_offset_arcsec == pytest.approx(0.0, abs=1e-6)
    assert res.dec_offset_arcsec == pytest.approx(0.0, abs=1e-6)
    assert res.ra_offset_scatter_arcsec == pytest.approx(1.4826, rel=1e-4)
    assert res.dec_offset_scatter_arcsec == pytest.approx(1.4826, rel=1e-4)
    assert res.n_unmatched == 1
    assert res.noise_jy == pytest.approx(0.01)
    assert res.figure == tmp_path / "v" / "x.validation.png"
    assert res.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from astropy.table import Table

    m = Table.read(res.matches_table, format="ascii.csv")
    assert list(m["name"]) == ["A", "B", "C", "D"]
    row = {r["name"]: r for r in m}
    assert row["A"]["flux_ratio"] == pytest.approx(1.1) and row["A"]["dra_arcsec"] == pytest.approx(1.0, rel=1e-6)
    assert row["B"]["ref_flux_jy"] == pytest.approx(4.0) and row["B"]["ddec_arcsec"] == pytest.approx(2.0, rel=1e-6)
    assert str(row["D"]["matched"]) == "False" and str(row["D"]["expected"]) == "True"
    summary = dict(line.split(",", 1) for line in res.summary_table.read_text().splitlines()[1:])
    assert float(summary["completeness"]) == pytest.approx(0.75)
    assert float(summary["flux_ratio_median"]) == pytest.approx(1.0)


def test_validation_pb_correction_and_image_footprint(tmp_path: Path) -> None:
    n, pix = 400, 10.0
    img = write(tmp_path / "beam.fits", 1e-3 * np.random.default_rng(5).standard_normal((n, n)), header(n, pix, 150.0, -30.0, freq=888e6))
    seps = [0.1, 0.3, 0.45]
    dec = [-30.0 + s for s in seps]
    ref_rows: list[list[object]] = [["name", "ra_deg", "dec_deg", "flux_jy"]]
    cat_rows: list[list[object]] = [["ra", "dec", "int_flux", "local_rms"]]
    for i, d in enumerate(dec):
        ref_rows.append([f"S{i}", 150.0, d, 0.5])
        cat_rows.append([150.0, d, 0.5 * float(gaussian_pb(seps[i], 888e6)), 1e-3])
    ref_rows.append(["OUT", 170.0, -30.0, 1.0])  # off the image
    res = run_validation(_csv(tmp_path / "c.csv", cat_rows), _csv(tmp_path / "r.csv", ref_rows), ValidationOptions(pb_correct=True, ref_freq=888e6), image=img)  # the table states no frequency
    assert res.freq_hz == pytest.approx(888e6)
    assert (res.n_reference, res.n_found) == (3, 3)
    assert res.flux_ratio_median == pytest.approx(1.0, abs=1e-9)
    assert res.flux_ratio_scatter == pytest.approx(0.0, abs=1e-9)
    assert res.noise_jy == pytest.approx(1e-3, rel=0.05)
    with pytest.raises(FlintInputError, match="pb-correct"):
        run_validation(tmp_path / "c.csv", tmp_path / "r.csv", ValidationOptions(pb_correct=True))


def test_validation_bad_inputs(tmp_path: Path) -> None:
    cat = _csv(tmp_path / "c.csv", [["ra", "dec", "int_flux"], [1, 2, 3]])
    bad = _csv(tmp_path / "r.csv", [["x", "y", "flux_jy"], [1, 2, 3]])
    with pytest.raises(FlintInputError, match="no RA column"):
        run_validation(cat, bad)
    with pytest.raises(FlintInputError, match="no such catalogue"):
        run_validation(tmp_path / "none.csv", bad)


# --------------------------------------------------------------------------- source finding
def test_source_finding_bad_inputs(tmp_path: Path) -> None:
    from flint.source_finding import run_source_finding

    n = 64
    nobeam = write(tmp_path / "nobeam.fits", gaussian(n, PIX, 20, 10, 30), header(n, PIX), beam=None)
    with pytest.raises(FlintImageError, match="no restoring beam"):
        run_source_finding(nobeam)
    h = header(n, PIX)
    h["BUNIT"] = "JY/PIXEL"
    perpix = write(tmp_path / "perpix.fits", gaussian(n, PIX, 20, 10, 30), h)
    with pytest.raises(FlintImageError, match="Jy/beam"):
        run_source_finding(perpix)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nobeam.fits", "perpix.fits"]


def test_linmos_keeps_the_peak_of_sources_between_pixels(tmp_path: Path) -> None:
    """Point sources at 3 pixels per beam, at random sub-pixel positions in two offset beam grids:
    the mosaic's beam-fitted amplitude at each true position is the source's flux to 0.5 % with
    the default interpolation (auto: bicubic from 2.5 pixels per beam minor axis); bilinear
    interpolation smooths the peaks (>= 3 % low). Below 2.5 pixels (notebook 07's 11" at 6") auto
    is bilinear: there bicubic's fitted integrated fluxes read 4 % lower (0.903 vs 0.940)."""
    from flint.linmos import _order

    assert _order(LinmosOptions(), 11.0, 6.0) == "bilinear" and _order(LinmosOptions(), 11.0, 4.0) == "bicubic"
    assert _order(LinmosOptions(interpolation="bicubic"), 11.0, 6.0) == "bicubic"
    n, pix, fwhm = 256, 4.0, 12.0
    centres = [(150.0, -30.0), (150.0 + 0.5 / np.cos(np.radians(30.0)), -30.0)]
    rng = np.random.default_rng(1)
    srcs = [(150.0 + rng.uniform(-0.05, 0.55) / np.cos(np.radians(30.0)), -30.0 + rng.uniform(-0.15, 0.15)) for _ in range(12)]
    paths = []
    for i, (ra, dec) in enumerate(centres):
        h = header(n, pix, ra, dec)
        img = read_image(write(tmp_path / f"raw{i}.fits", np.zeros((n, n)), h))
        yy, xx = np.mgrid[0:n, 0:n]
        data = np.zeros((n, n))
        for sra, sdec in srcs:
            x0, y0 = (float(v) for v in img.wcs.world_to_pixel_values(sra, sdec))
            pb = float(gaussian_pb(angular_separation_deg(ra, dec, sra, sdec), 887.5e6))
            data += pb * np.exp(-4 * np.log(2) * ((xx - x0) ** 2 + (yy - y0) ** 2) / (fwhm / pix) ** 2)
        paths.append(write(tmp_path / f"SB7.T.beam{i:02d}.round0.image.fits", data, h, beam=(fwhm, fwhm, 0.0)))
    amps: dict[str, list[float]] = {}
    for order in ("bicubic", "bilinear"):
        opts = LinmosOptions(pb_cutoff=0.1, noise="none") if order == "bicubic" else LinmosOptions(pb_cutoff=0.1, noise="none", interpolation=order)
        m = read_image(run_linmos(paths, opts, output=tmp_path / f"m_{order}.fits").mosaic)
        yy, xx = np.mgrid[0 : m.data.shape[0], 0 : m.data.shape[1]]
        amps[order] = []
        for sra, sdec in srcs:
            x0, y0 = (float(v) for v in m.wcs.world_to_pixel_values(sra, sdec))
            r2 = (xx - x0) ** 2 + (yy - y0) ** 2
            sel = (r2 <= (fwhm / pix) ** 2) & np.isfinite(m.data)
            if sel.sum() < 20:  # outside both beams' PB cutoff
                continue
            t = np.exp(-4 * np.log(2) * r2[sel] / (fwhm / pix) ** 2)
            amps[order].append(float(np.sum(m.data[sel] * t) / np.sum(t * t)))
    assert len(amps["bicubic"]) >= 6
    assert np.median(amps["bicubic"]) == pytest.approx(1.0, abs=0.005) and min(amps["bicubic"]) > 0.99
    assert np.median(amps["bilinear"]) < 0.97


def test_linmos_leaves_out_the_images_edges(tmp_path: Path) -> None:
    """A blob on an image's last columns (as WSClean's wrapped restore puts there) reaches the
    mosaic only with ``edge_beams=0`` (the default); with 2 each image's outer 2 beams (2 x 20" /
    10" = 4 pixels) are left out, and the rest of the mosaic is unchanged."""
    paths, centres, _ = _beam_images(tmp_path, (1e-3, 1e-3))
    img = read_image(paths[0])
    data = img.data.copy()
    data[150:153, -3:] += 0.5  # 0.5 Jy on the edge pixels of beam 0 (PB there > the cutoff)
    write(paths[0], data, img.header)
    x_edge = float(img.wcs.pixel_to_world_values(299, 151)[0])
    everything = run_linmos(paths, LinmosOptions(), output=tmp_path / "all.fits")
    default = run_linmos(paths, LinmosOptions(edge_beams=2.0), output=tmp_path / "cut.fits")
    for res, has_blob in ((everything, True), (default, False)):
        mos = read_image(res.mosaic)
        x, y = (int(round(float(v))) for v in mos.wcs.world_to_pixel_values(x_edge, float(img.wcs.pixel_to_world_values(299, 151)[1])))
        box = mos.data[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3]  # empty if trimmed away
        peak = float(np.nanmax(box)) if np.isfinite(box).any() else 0.0
        assert (peak > 0.3) == has_blob, (res.mosaic, peak)
    a, b = read_image(everything.mosaic), read_image(default.mosaic)
    xc, yc = (int(round(float(v))) for v in a.wcs.world_to_pixel_values(*centres[1]))
    xd, yd = (int(round(float(v))) for v in b.wcs.world_to_pixel_values(*centres[1]))
    assert float(b.data[yd, xd]) == pytest.approx(float(a.data[yc, xc]), rel=1e-6)
