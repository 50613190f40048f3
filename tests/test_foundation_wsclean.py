"""The simulator's Measurement Sets open in wsclean and image to the right sky."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from flint.primary_beam import angular_separation_deg, gaussian_pb
from flint.runner import run_command
from flint.sim import SimResult, read_sky

from conftest import require_tool


@pytest.mark.slow
def test_wsclean_dirty_image_peaks_on_brightest_true_sources(tmp_path: Path, sim_field_ideal: SimResult) -> None:
    wsclean = require_tool("wsclean")
    ms = sim_field_ideal.ms_paths[0]
    ra0, dec0 = sim_field_ideal.beam_centres_deg[0]
    run_command([wsclean, "-size", "512", "512", "-scale", "20asec", "-name", str(tmp_path / "dirty"), "-no-update-model-required", str(ms)])
    with fits.open(tmp_path / "dirty-image.fits") as hdul:
        image = hdul[0].data[0, 0]
        wcs = WCS(hdul[0].header).celestial
    sky = read_sky(sim_field_ideal.sky_csv)  # type: ignore[arg-type]
    apparent = sky.flux_jy * gaussian_pb(angular_separation_deg(ra0, dec0, sky.ra_deg, sky.dec_deg), 887.5e6)
    brightest = np.argsort(apparent)[::-1][:3]
    for i in brightest:
        x, y = wcs.world_to_pixel_values(sky.ra_deg[i], sky.dec_deg[i])
        xi, yi = int(round(float(x))), int(round(float(y)))
        box = image[yi - 5 : yi + 6, xi - 5 : xi + 6]
        py, px = np.unravel_index(np.argmax(box), box.shape)
        # the brightest pixel near the source sits within one pixel of its true position
        assert abs(px - 5) <= 1 and abs(py - 5) <= 1, (sky.name[i], px - 5, py - 5)
        assert box.max() > 0.5 * apparent[i]
    # and the image's brightest pixel is one of those sources (not a mirror image)
    gy, gx = np.unravel_index(np.argmax(image), image.shape)
    ra, dec = wcs.pixel_to_world_values(gx, gy)
    sep_arcsec = 3600 * angular_separation_deg(ra, dec, sky.ra_deg[brightest], sky.dec_deg[brightest])
    assert sep_arcsec.min() < 30.0
