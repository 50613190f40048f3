"""Raw ASKAP data image right only after ``flint ms preprocess`` (WSClean, against the truth).

One beam of ``flint sim --askap-raw`` with perfect antennas is imaged by WSClean (Stokes I
and V) before and after preprocessing. After: the bright sources sit at their true
positions (< 1 arcsec) with the right flux (ratio 1 +- 0.03) and |V|/I < 0.5 %. Before:
they are displaced by the beam offset (~0.64 deg) and come out at half their flux
(ASKAPsoft's I = XX + YY read as I = (XX + YY) / 2).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from flint.cli import main
from flint.primary_beam import angular_separation_deg, gaussian_pb
from flint.runner import run_command
from flint.sim import SimOptions, SimResult, read_sky, simulate_field

from conftest import require_tool

OPTS = SimOptions(
    askap_raw=True, n_beams=1, n_antennas=36, n_channels=4, n_times=12, n_sources=0, n_bright=3,
    bright_flux_jy=(0.8, 1.2), noise_jy=0.02, gain_amp_scatter=0.0, gain_phase_scatter_deg=0.0,
    bandpass_ripple=0.0, phase_drift_deg=0.0, seed=11,
)


@pytest.fixture(scope="module")
def raw_ideal(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    return simulate_field(tmp_path_factory.mktemp("raw_ideal"), OPTS)


def _image(ms: Path, name: Path) -> tuple[dict[str, np.ndarray], WCS]:
    wsclean = require_tool("wsclean")
    run_command([
        wsclean, "-size", "1536", "1536", "-scale", "3asec", "-pol", "I,V", "-niter", "3000", "-mgain", "0.8",
        "-auto-threshold", "3", "-weight", "briggs", "0", "-name", str(name), "-no-update-model-required", str(ms),
    ])
    out = {}
    for pol in ("I", "V"):
        with fits.open(f"{name}-{pol}-image.fits") as hdul:
            out[pol] = np.asarray(hdul[0].data[0, 0], dtype=float)
            wcs = WCS(hdul[0].header).celestial
    return out, wcs


def _peak(image: np.ndarray, x: float, y: float, r: int = 12, fit: int = 5) -> tuple[float, float, float]:
    """Peak near (x, y): position from an elliptical-Gaussian fit to the (2 fit + 1)^2 pixels around it."""
    from scipy.optimize import curve_fit

    xi, yi = int(round(x)), int(round(y))
    box = image[yi - r : yi + r + 1, xi - r : xi + r + 1]
    py, px = np.unravel_index(np.argmax(box), box.shape)
    cy, cx = yi - r + int(py), xi - r + int(px)
    sub = image[cy - fit : cy + fit + 1, cx - fit : cx + fit + 1]
    yy, xx = np.mgrid[-fit : fit + 1, -fit : fit + 1]

    def g(c: tuple[np.ndarray, np.ndarray], a: float, x0: float, y0: float, sxx: float, syy: float, sxy: float) -> np.ndarray:
        u, v = c[0] - x0, c[1] - y0
        return (a * np.exp(-0.5 * (sxx * u * u + syy * v * v + 2 * sxy * u * v))).ravel()

    p0 = (float(sub.max()), 0.0, 0.0, 0.2, 0.2, 0.0)
    popt, _ = curve_fit(g, (xx.astype(float), yy.astype(float)), sub.ravel(), p0=p0, maxfev=5000)
    return cx + float(popt[1]), cy + float(popt[2]), float(box[py, px])


@pytest.mark.slow
def test_preprocessed_raw_beam_images_at_truth_and_raw_does_not(raw_ideal: SimResult, tmp_path: Path) -> None:
    src = raw_ideal.ms_paths[0]
    raw = shutil.copytree(src, tmp_path / "raw.ms")
    pre = tmp_path / "pre.ms"
    assert main(["ms", "preprocess", str(raw), "--output-ms", str(pre)]) == 0
    sky = read_sky(raw_ideal.sky_csv)  # type: ignore[arg-type]
    ra0, dec0 = raw_ideal.beam_centres_deg[0]
    freq = OPTS.freq_start_hz + OPTS.channel_width_hz * (OPTS.n_channels - 1) / 2
    apparent = sky.flux_at(np.array([freq]))[:, 0] * gaussian_pb(
        angular_separation_deg(ra0, dec0, sky.ra_deg, sky.dec_deg), freq, OPTS.pb_fwhm_deg, OPTS.pb_ref_freq_hz
    )
    bright = [i for i in np.argsort(apparent)[::-1] if apparent[i] > 0.3][:3]
    assert len(bright) >= 2

    images, wcs = _image(pre, tmp_path / "pre")
    offsets, ratios, v_over_i = [], [], []
    for i in bright:
        x, y = wcs.world_to_pixel_values(sky.ra_deg[i], sky.dec_deg[i])
        px, py, peak = _peak(images["I"], float(x), float(y))
        ra, dec = wcs.pixel_to_world_values(px, py)
        offsets.append(3600 * float(angular_separation_deg(ra, dec, sky.ra_deg[i], sky.dec_deg[i])))
        ratios.append(peak / apparent[i])
        v_over_i.append(abs(images["V"][int(round(py)), int(round(px))]) / peak)
    print(f"preprocessed: offsets {np.round(offsets, 3)} arcsec, flux ratios {np.round(ratios, 4)}, |V|/I {np.round(v_over_i, 5)}")
    assert max(offsets) < 1.0
    assert np.median(ratios) == pytest.approx(1.0, abs=0.03)
    assert max(v_over_i) < 0.005

    # the same data without preprocessing: wrong place, half the flux
    images_raw, wcs_raw = _image(raw, tmp_path / "raw")
    boresight = (OPTS.ra_deg, OPTS.dec_deg)
    shift_deg = float(angular_separation_deg(boresight[0], boresight[1], ra0, dec0))
    raw_ratios, raw_offsets = [], []
    for i in bright:
        x, y = wcs_raw.world_to_pixel_values(sky.ra_deg[i], sky.dec_deg[i])
        at_truth = images_raw["I"][int(round(float(y))), int(round(float(x)))] if 0 <= x < 1536 and 0 <= y < 1536 else 0.0
        assert abs(at_truth) < 0.1 * apparent[i]  # nothing at the true position
        # where it lands: same offset from the image centre (boresight) as from its beam centre
        xs, ys = wcs.world_to_pixel_values(sky.ra_deg[i], sky.dec_deg[i])
        px, py, peak = _peak(images_raw["I"], float(xs), float(ys))
        ra, dec = wcs_raw.pixel_to_world_values(px, py)
        raw_offsets.append(float(angular_separation_deg(ra, dec, sky.ra_deg[i], sky.dec_deg[i])))
        raw_ratios.append(peak / apparent[i])
    print(f"raw: offsets {np.round(raw_offsets, 3)} deg (beam offset {shift_deg:.3f} deg), flux ratios {np.round(raw_ratios, 4)}")
    assert min(raw_offsets) > 0.5 and all(abs(o - shift_deg) < 0.05 for o in raw_offsets)
    assert np.median(raw_ratios) == pytest.approx(0.5, abs=0.03)
