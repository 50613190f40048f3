"""The beams x rounds thumbnail grid of the results browser, on small FITS files named as the flows name them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flint.naming import product_name
from flint_widgets.results import ResultsBrowser
from flint_widgets.thumbnails import MOSAIC, grid_cells, thumbnail

SBID, FIELD = 101, "SIM_FIELD"


def _image(
    path: Path, source_xy: tuple[int, int] | None = None, n: int = 64, seed: int = 0
) -> Path:
    from astropy.io import fits
    from astropy.wcs import WCS

    rng = np.random.default_rng(seed)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    wcs.wcs.crval = [150.0, -30.0]
    wcs.wcs.crpix = [n / 2 + 1, n / 2 + 1]
    wcs.wcs.cdelt = [-10 / 3600, 10 / 3600]
    data = rng.normal(0, 1e-3, (n, n))
    if source_xy is not None:
        data[source_xy[1], source_xy[0]] = 0.5  # one bright pixel: a point source
    header = wcs.to_header()
    header["BUNIT"] = "JY/BEAM"
    fits.PrimaryHDU(data.astype(np.float32), header).writeto(path)
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A continuum flow's out_dir: 3 beams x 2 rounds (image, residual, psf, model, mask, conv) and a mosaic per round."""
    for beam in range(3):
        for rnd in range(2):
            _image(
                tmp_path / product_name(SBID, FIELD, beam, rnd, "image.fits"),
                (10 + 10 * beam, 40),
                seed=beam * 10 + rnd,
            )
            for other in ("residual.fits", "psf.fits", "model.fits", "image.conv.fits"):
                _image(tmp_path / product_name(SBID, FIELD, beam, rnd, other), seed=99)
            if rnd:
                _image(tmp_path / product_name(SBID, FIELD, beam, rnd, "mask.fits"), seed=98)
    for rnd in range(2):
        _image(
            tmp_path / product_name(SBID, FIELD, None, rnd, "linmos.fits"), (32, 32), seed=50 + rnd
        )
        _image(tmp_path / product_name(SBID, FIELD, None, rnd, "linmos.weight.fits"), seed=97)
    return tmp_path


def test_grid_cells_pick_each_beams_restored_image_and_the_mosaics(run_dir: Path) -> None:
    cells = grid_cells(sorted(run_dir.iterdir()))
    assert cells.rows == [MOSAIC, 0, 1, 2] and cells.rounds == [0, 1]
    assert len(cells.cells) == 8
    assert cells.cells[(1, 1)].name == "SB101.SIM_FIELD.beam01.round1.image.fits"
    assert cells.cells[(MOSAIC, 0)].name == "SB101.SIM_FIELD.round0.linmos.fits"


def test_a_point_source_stays_visible_in_the_thumbnail(tmp_path: Path) -> None:
    # 256 px -> 64 px: sampling every 4th pixel would miss a one-pixel source at (101, 150)
    path = _image(tmp_path / "SB1.F.beam00.round0.image.fits", (101, 150), n=256)
    tile = thumbnail(path, size=64)
    assert tile.shape == (64, 64, 3) and tile.dtype == np.uint8
    brightness = tile.astype(float).sum(axis=2)
    iy, ix = np.unravel_index(np.argmax(brightness), brightness.shape)
    assert (ix, iy) == (101 // 4, 63 - 150 // 4)  # north up: the top row is the highest y
    others = np.delete(brightness.ravel(), iy * 64 + ix)
    assert brightness[iy, ix] > 2 * np.median(others) and brightness[iy, ix] > 1.5 * np.percentile(
        others, 99
    )


def test_results_browser_grid_opens_the_clicked_image_and_follows_new_rounds(run_dir: Path) -> None:
    b = ResultsBrowser(run_dir)
    grid = b.thumbnails
    assert b.errors.text == "" and grid.errors.text == ""
    assert grid.widget.layout.display == ""
    assert "3 beams, 2 rounds, 8 images" in grid.caption.value
    assert grid.png.value[:4] == b"\x89PNG"
    lay = grid.layout
    # a click in the middle of beam 01 / round 1's tile (bqplot's y goes up; the picture's rows go down)
    x = lay["x0"] + 1 * lay["step"] + lay["size"] / 2
    y = lay["y0"] + 2 * lay["step"] + lay["size"] / 2  # rows: mosaic, beam 00, beam 01, ...
    grid._clicked({"data": {"click_x": x, "click_y": lay["height"] - y}})
    want = run_dir / "SB101.SIM_FIELD.beam01.round1.image.fits"
    assert b.choice.value == str(want) and b.viewer.path == want
    assert b.viewer.widget.layout.display == ""
    grid._clicked(
        {"data": {"click_x": 2.0, "click_y": lay["height"] - 2.0}}
    )  # the label corner: nothing opens
    assert b.choice.value == str(want) and "click on a thumbnail" in grid.caption.value
    assert grid.cell_at(lay["x0"] + lay["size"] + 1, lay["y0"] + 1) is None  # the gap between tiles
    # the mosaic row
    grid.open(MOSAIC, 0)
    assert b.viewer.path == run_dir / "SB101.SIM_FIELD.round0.linmos.fits"

    # a new round appears (as during a run): the grid grows, one beam's tile still missing
    before = grid.png.value
    for beam in (0, 1):
        _image(run_dir / product_name(SBID, FIELD, beam, 2, "image.fits"), (20, 20), seed=70 + beam)
    b.refresh()
    assert grid.cells.rounds == [0, 1, 2] and (2, 2) not in grid.cells.cells
    assert "3 beams, 3 rounds, 10 images" in grid.caption.value
    assert grid.png.value != before
    with pytest.raises(Exception, match="no image for 2 round 2"):
        grid.open(2, 2)


def test_no_grid_without_beam_round_images(tmp_path: Path) -> None:
    _image(tmp_path / "other.fits")
    b = ResultsBrowser(tmp_path)
    assert b.thumbnails.widget.layout.display == "none" and b.thumbnails.cells.cells == {}
