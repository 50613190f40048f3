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
    assert set(products) == {"SB1.F.beam00.round1.image.fits", "SB1.F.round1.linmos.comp.csv", "SB1.F.round1.linmos.validation.png",
                             "flint-stages.log"}
    assert products["flint-stages.log"].kind == "log"
    assert products["SB1.F.beam00.round1.image.fits"].kind == "image"
    assert products["SB1.F.beam00.round1.image.fits"].beam == 0 and products["SB1.F.beam00.round1.image.fits"].round == 1
    assert products["SB1.F.round1.linmos.comp.csv"].kind == "table"
    assert products["SB1.F.round1.linmos.validation.png"].kind == "figure"
    assert len(list_products(run_dir, include_maps=True)) == 5


def test_render_image_has_wcs_axes_and_is_a_png(run_dir: Path) -> None:
    png = render_image_png(run_dir / "SB1.F.beam00.round1.image.fits")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_browser_shows_image_sorted_table_and_figure(run_dir: Path) -> None:
    b = ResultsBrowser()
    b.directory.value = str(run_dir)
    b.refresh_button.click()
    assert b.errors.text == ""
    assert "4 products: 1 images, 1 tables, 1 figures, 0 solution files, 1 logs" in b.listing.value
    b.choice.value = str(run_dir / "SB1.F.beam00.round1.image.fits")
    assert b.viewer.image_png.value[:4] == b"\x89PNG" and b.viewer.widget.layout.display == ""
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
    assert b.errors.text == "" and "no products yet" in b.listing.value
    assert b.products == []
    later.symlink_to(run_dir, target_is_directory=True)
    b.refresh_button.click()
    assert b.errors.text == ""
    assert len(b.products) == len(list_products(run_dir)) > 0


def test_viewer_stretch_readout_zoom_and_overlay(run_dir: Path) -> None:
    from astropy.table import Table

    from flint_widgets.viewer import ImageViewer, stretch, stretch_limits

    image = run_dir / "SB1.F.beam00.round1.image.fits"
    v = ImageViewer(image)
    assert v.data is not None
    shown = stretch(v.data)  # the default: the source stands out of the noise
    assert shown[32, 40] == pytest.approx(1.0) and float(np.median(shown)) < 0.5 and float(np.median(shown)) > 0.05
    # the colour bar names the values drawn black and white: -3 sigma .. +30 sigma of the 1 mJy noise
    lo, hi, curve = stretch_limits(v.data)
    assert lo == pytest.approx(-3e-3, abs=5e-4) and hi == pytest.approx(3e-2, abs=3e-3) and curve == "asinh"
    assert f"{lo:.3g} JY/BEAM" in v.colour_bar.value and f"{hi:.3g} JY/BEAM" in v.colour_bar.value
    text = v.readout(40, 32)
    assert text == "x 40, y 32: 0.5 JY/BEAM · RA 09h59m57.54s, Dec -30d00m00.0s"  # 8 px * 4" east at dec -30
    assert text in v.readout_text.value
    v.zoom((30, 50), (20, 40))
    assert (v.sx.min, v.sx.max, v.sy.min, v.sy.max) == (30, 50, 20, 40)
    v.zoom()
    assert (v.sx.min, v.sx.max) == (-0.5, 63.5)
    # a catalogue with one matched and one spurious component, one reference source not found
    w = v.wcs.celestial
    ra, dec = w.pixel_to_world_values([40, 10], [32, 50])
    Table({"ra": ra, "dec": dec, "int_flux": [0.5, 0.01]}).write(run_dir / "SB1.F.beam00.round1.image.comp.csv", format="ascii.csv")
    mra, mdec = w.pixel_to_world_values([40, 55], [32, 5])
    Table({"matched": [True, False], "expected": [True, True], "cat_index": [0, -1], "ref_ra_deg": mra, "ref_dec_deg": mdec}).write(
        run_dir / "SB1.F.round1.matches.csv", format="ascii.csv")
    b = ResultsBrowser(run_dir)
    b.choice.value = str(image)
    assert b.viewer.overlay_counts == {"matched": 1, "spurious": 1, "missed": 1}
    assert list(np.round(b.viewer.marks_overlay["matched"].x)) == [40] and list(np.round(b.viewer.marks_overlay["missed"].y)) == [5]
    assert "spurious 1" in b.viewer.legend.value


def test_subfolders_units_sexagesimal_and_solutions(run_dir: Path) -> None:
    from astropy.table import Table

    from flint.calibrate.aocal import AOSolutions, write_solutions

    sub = run_dir / "bandpass"
    sub.mkdir()
    jones = np.ones((1, 36, 8, 2, 2), dtype=complex)
    jones[0, 7, :, 0, 0] = 2.0  # antenna 7's XX gain
    write_solutions(sub / "SB1.B.beam00.bandpass.bin", AOSolutions(jones))
    Table({"ra": [150.0], "dec": [-30.5], "int_flux": [0.1]}).write(sub / "cat.comp.csv", format="ascii.csv")
    b = ResultsBrowser(run_dir)
    labels = [label for label, _ in b.choice.options]
    assert "[solutions] bandpass/SB1.B.beam00.bandpass.bin" in labels and "[table] bandpass/cat.comp.csv" in labels
    b.choice.value = str(sub / "SB1.B.beam00.bandpass.bin")
    assert len(b.antenna.options) == 36 and b.image.value[:4] == b"\x89PNG"
    first = b.image.value
    b.antenna.value = 7
    assert b.image.value != first
    b.choice.value = str(sub / "cat.comp.csv")
    html = b.table_view.value
    assert "<th>int_flux<br><small>[Jy]</small></th>" in html
    assert "10:00:00.00" in html and "-30:30:00.0" in html  # sexagesimal beside the degrees
    assert "150.000000" in html  # degrees keep 0.0036 arcsec, not 0.01 deg


def test_a_listing_leaves_the_product_on_show_alone_until_files_change(run_dir: Path) -> None:
    """The follow thread lists the folder again only when its files change.

    A real run's folder holds files that are not products (BANE's maps here, Measurement Sets,
    scratch files). Comparing the product count with the file count listed it again every few
    seconds, overwriting the description of the product on show (the browser test's
    'antenna 3 of' vanished that way in CI).
    """
    from flint.calibrate.aocal import AOSolutions, write_solutions

    write_solutions(run_dir / "SB1.B.beam00.bandpass.bin", AOSolutions(np.ones((1, 6, 4, 2, 2), dtype=complex)))
    b = ResultsBrowser(run_dir)
    b.refresh()
    assert len(b.products) < len(list(p for p in run_dir.rglob("*") if p.is_file()))  # non-products present
    assert not b.changed(run_dir)
    b.choice.value = str(run_dir / "SB1.B.beam00.bandpass.bin")
    b.antenna.value = 3
    assert "antenna 3 of 6" in b.summary.value
    assert not b.changed(run_dir)  # the follow loop would leave it on show
    (run_dir / "SB1.F.beam00.round1.image_bkg.fits").write_bytes(b"")  # a new file, not a product
    assert b.changed(run_dir)
    b.refresh()
    assert "antenna 3 of 6" in b.summary.value and "products:" in b.listing.value
    assert not b.changed(run_dir) and b.changed(run_dir.parent)
