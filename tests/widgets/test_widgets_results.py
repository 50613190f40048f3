"""Results browser on small real files: a FITS image with a WCS, a catalogue, a PNG figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flint_widgets.results import ResultsBrowser, list_products, render_image_png, sort_table


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    from astropy.io import fits
    from astropy.table import Table
    from astropy.wcs import WCS

    rng = np.random.default_rng(7)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    wcs.wcs.crval = [150.0, -30.0]
    wcs.wcs.crpix = [33, 33]
    wcs.wcs.cdelt = [-4 / 3600, 4 / 3600]
    data = rng.normal(0, 1e-3, (64, 64))
    data[32, 40] = 0.5
    header = wcs.to_header()
    header["BUNIT"] = "JY/BEAM"
    header["BMAJ"], header["BMIN"], header["BPA"] = 12 / 3600, 10 / 3600, 0.0
    fits.PrimaryHDU(data, header).writeto(tmp_path / "SB1.F.beam00.round1.image.fits")
    fits.PrimaryHDU(data, header).writeto(tmp_path / "SB1.F.beam00.round1.image_rms.fits")  # BANE map: hidden
    Table({"source": [0, 1, 2], "int_flux": [0.02, 0.5, 0.1], "ra": [150.0, 150.01, 149.99]}).write(
        tmp_path / "SB1.F.round1.linmos.comp.csv", format="ascii.csv"
    )
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "SB1.F.round1.linmos.validation.png")
    (tmp_path / "flint-stages.log").write_text("not a product\n")
    return tmp_path


def test_list_products_by_kind(run_dir: Path) -> None:
    products = {p.path.name: p for p in list_products(run_dir)}
    assert set(products) == {"SB1.F.beam00.round1.image.fits", "SB1.F.round1.linmos.comp.csv", "SB1.F.round1.linmos.validation.png"}
    assert products["SB1.F.beam00.round1.image.fits"].kind == "image"
    assert products["SB1.F.beam00.round1.image.fits"].beam == 0 and products["SB1.F.beam00.round1.image.fits"].round == 1
    assert products["SB1.F.round1.linmos.comp.csv"].kind == "table"
    assert products["SB1.F.round1.linmos.validation.png"].kind == "figure"
    assert len(list_products(run_dir, include_maps=True)) == 4


def test_render_image_has_wcs_axes_and_is_a_png(run_dir: Path) -> None:
    png = render_image_png(run_dir / "SB1.F.beam00.round1.image.fits")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_browser_shows_image_sorted_table_and_figure(run_dir: Path) -> None:
    b = ResultsBrowser()
    b.directory.value = str(run_dir)
    b.refresh_button.click()
    assert b.errors.text == ""
    assert "3 products: 1 images, 1 tables, 1 figures" in b.summary.value
    b.choice.value = str(run_dir / "SB1.F.beam00.round1.image.fits")
    assert b.image.value[:4] == b"\x89PNG" and b.image.layout.display == ""
    b.choice.value = str(run_dir / "SB1.F.round1.linmos.comp.csv")
    assert b.sort_by.value == "int_flux" and b.descending.value
    html = b.table_view.value
    assert html.index("0.5") < html.index("0.1") < html.index("0.02")
    b.descending.value = False
    html = b.table_view.value
    assert html.index("0.02") < html.index("0.1") < html.index("0.5")
    assert b.image.layout.display == "none"
    b.choice.value = str(run_dir / "SB1.F.round1.linmos.validation.png")
    assert b.image.value == (run_dir / "SB1.F.round1.linmos.validation.png").read_bytes()
    assert list(sort_table(b.table, "ra")["ra"]) == [149.99, 150.0, 150.01]


def test_bad_folder_is_reported_in_the_widget(tmp_path: Path) -> None:
    b = ResultsBrowser()
    b.directory.value = str(tmp_path / "nope")
    b.refresh_button.click()
    assert "nope: not a folder" in b.errors.text


def test_folder_made_later_by_the_run(run_dir: Path, tmp_path: Path) -> None:
    """A run's output folder before the run: no error, then the products once it exists."""
    later = tmp_path / "later"
    b = ResultsBrowser(later)
    assert b.errors.text == "" and "no products yet" in b.summary.value
    assert b.products == []
    later.symlink_to(run_dir, target_is_directory=True)
    b.refresh_button.click()
    assert b.errors.text == ""
    assert len(b.products) == len(list_products(run_dir)) > 0
