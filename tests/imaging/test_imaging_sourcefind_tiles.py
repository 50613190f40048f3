"""Source finding in overlapping tiles gives the whole-image catalogue, each component once.

A 640 x 640 image at 4" (20" round beam: BANE's step 20 px, box 120 px, tile margin 160 px)
with 1 mJy noise (correlated over the beam) and 30 point sources at 8-200 sigma (at least 5 beams apart), six of them
straddling the tile cores' edges, searched whole and in 2 x 2 tiles of 320 px.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _imaging_synth import header, write
from astropy.io import fits
from astropy.table import Table
from scipy.ndimage import gaussian_filter

from flint._source_finding_tiles import plan_tiles
from flint.source_finding import SourceFindingOptions, run_source_finding

N, PIX, BEAM, NOISE = 640, 4.0, 20.0, 1e-3
CORE = 320


def _image(path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(11)
    # on the cores' edges (x or y = 320, +- a fraction of a pixel)
    pos = [(CORE + 0.3, 150.0), (CORE - 0.4, 470.0), (500.0, CORE - 0.2), (160.0, CORE + 0.4), (CORE + 0.1, CORE - 0.1), (CORE + 0.45, 40.0)]
    while len(pos) < 30:
        x, y = rng.uniform(30, N - 30, 2)
        if min(np.hypot(x - px, y - py) for px, py in pos) >= 5 * BEAM / PIX:
            pos.append((float(x), float(y)))
    flux = NOISE * np.exp(rng.uniform(np.log(8), np.log(200), len(pos)))
    yy, xx = np.mgrid[0:N, 0:N]
    s = BEAM / PIX / 2.3548
    data = gaussian_filter(rng.standard_normal((N, N)), s)  # noise correlated over the beam, as in a restored image
    data *= NOISE / data.std()
    for (x, y), f in zip(pos, flux, strict=True):
        data += f * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / s**2)
    return write(path, data, header(N, PIX), beam=(BEAM, BEAM, 0.0)), np.array([[x, y, f] for (x, y), f in zip(pos, flux, strict=True)])


def test_plan_tiles_partitions_the_image() -> None:
    plan = plan_tiles(1000, 700, 320, 160, 20)
    cover = np.zeros((1000, 700), int)
    for t in plan:
        cover[t.core] += 1
        assert t.read[0].start <= t.core[0].start and t.read[0].stop >= t.core[0].stop
        assert t.core[0].start % 20 == 0 and t.core[1].start % 20 == 0
    assert (cover == 1).all() and len(plan) == 4 * 3


def test_tiled_catalogue_equals_the_whole_image_one(tmp_path: Path) -> None:
    whole_dir, tiled_dir = tmp_path / "whole", tmp_path / "tiled"
    whole_dir.mkdir()
    tiled_dir.mkdir()
    img, truth = _image(whole_dir / "img.fits")
    tiled_img = Path(shutil_copy(img, tiled_dir / "img.fits"))
    whole = run_source_finding(img, SourceFindingOptions(tile_size=None))
    tiled = run_source_finding(tiled_img, SourceFindingOptions(tile_size=CORE))
    a = Table.read(whole.catalogue, format="ascii.csv")
    b = Table.read(tiled.catalogue, format="ascii.csv")
    assert len(a) >= 30 and len(b) == len(a)
    # each tiled component is one of the whole image's: same position (0.05 px) and flux (0.5 %)
    ra_a, dec_a = np.asarray(a["ra"], float), np.asarray(a["dec"], float)
    used = set()
    for row in b:
        d = np.hypot((ra_a - float(row["ra"])) * np.cos(np.radians(30.0)), dec_a - float(row["dec"])) * 3600 / PIX
        j = int(np.argmin(d))
        assert d[j] < 0.05, (row["ra"], row["dec"], d[j])
        assert float(row["peak_flux"]) == pytest.approx(float(a["peak_flux"][j]), rel=0.005)
        used.add(j)
    assert len(used) == len(a)  # no component twice, none missing
    # every true source (>= 8 sigma) is found once, also those on the cores' edges
    from astropy.wcs import WCS

    w = WCS(fits.getheader(tiled.image)).celestial
    px, py = w.world_to_pixel_values(np.asarray(b["ra"], float), np.asarray(b["dec"], float))
    for x, y, f in truth:
        near = np.hypot(np.asarray(px) - x, np.asarray(py) - y) < 1.0
        assert near.sum() == 1, (x, y, f, near.sum())
    # the noise map assembled from the tiles' cores is BANE's over the whole image to 5 %
    ra_map, rb_map = np.squeeze(fits.getdata(whole.rms)), np.squeeze(fits.getdata(tiled.rms))
    assert rb_map.shape == ra_map.shape and np.all(np.isfinite(rb_map))
    assert np.median(np.abs(rb_map / ra_map - 1)) < 0.02 and np.max(np.abs(rb_map / ra_map - 1)) < 0.1
    assert np.median(rb_map) == pytest.approx(NOISE, rel=0.05)
    assert sorted(p.name for p in tiled_dir.iterdir()) == ["img.bkg.fits", "img.comp.csv", "img.comp.fits", "img.fits", "img.rms.fits"]


def shutil_copy(src: Path, dst: Path) -> Path:
    import shutil

    return Path(shutil.copy(src, dst))
