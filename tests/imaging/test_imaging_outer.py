"""``WSCleanOptions.outer_size``: clean a wider field than the products keep.

A bright source outside a beam's image is never cleaned there: its sidelobes stay in the
image (issue 13: the one spurious component of the 6-beam closepack field is such a
sidelobe) and self-cal's model lacks it. With ``outer_size`` WSClean images and cleans the
wider field, the products are cut back to ``size`` on the same pixel grid, and the clean
model (and ``MODEL_DATA``) keeps the outer source.

The data: beam 0 of the ideal field with ``DATA`` re-predicted (:func:`flint.sim.predict_model`,
no primary beam, the simulator's noise) from two sources: 2 Jy at 0.3 deg east of the phase
centre -- outside the 256 x 6" image (half-width 0.21 deg), inside the 512-pixel outer field
(half-width 0.43 deg) -- and 50 mJy at 0.05 deg inside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from flint.errors import FlintInputError
from flint.imaging import ImagingResult, WSCleanOptions, run_imaging, wsclean_argv
from flint.ms import MS, open_table
from flint.sim import SimOptions, SimResult, SkyModel, _offset_radec, predict_model

from conftest import require_tool, writable_copy

SIZE, OUTER, SCALE = 256, 512, 6.0
OPTS = WSCleanOptions(size=SIZE, scale_arcsec=SCALE, robust=0.0, niter=5000, auto_threshold=3.0, auto_mask=5.0, mgain=0.8)


@pytest.fixture(scope="module")
def outlier_ms(tmp_path_factory: pytest.TempPathFactory, sim_field_ideal: SimResult, sim_options: SimOptions) -> tuple[MS, SkyModel]:
    d = tmp_path_factory.mktemp("outer")
    ms = writable_copy(sim_field_ideal.ms_paths[0], d)
    with open_table(ms.path, subtable="FIELD") as t:
        ra0, dec0 = np.degrees(np.asarray(t.getcol("PHASE_DIR"))[0, 0])
    ra0 %= 360.0
    ra, dec = _offset_radec(ra0, dec0, np.array([0.30, 0.05]), np.array([0.0, 0.02]))
    sky = SkyModel(["OUT", "IN"], ra, dec, np.array([2.0, 0.05]), np.array([0.0, 0.0]), sim_options.pb_ref_freq_hz)
    with open_table(ms.path, subtable="SPECTRAL_WINDOW") as t:
        freqs = t.getcol("CHAN_FREQ")[0]
    rng = np.random.default_rng(20261202)
    with open_table(ms.path, mode="rw") as t:
        uvw = t.getcol("UVW")
        model = predict_model(sky, uvw, freqs, (ra0, dec0), None)
        data = np.zeros((len(uvw), len(freqs), 4), dtype=np.complex64)
        data[..., 0] = data[..., 3] = model
        data += sim_options.noise_jy * (rng.standard_normal(data.shape) + 1j * rng.standard_normal(data.shape))
        t.putcol("DATA", data.astype(np.complex64))
    return ms, sky


@pytest.fixture(scope="module")
def both(outlier_ms: tuple[MS, SkyModel], tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImagingResult]:
    """The same MS imaged at ``size`` only and with ``outer_size`` (MODEL_DATA of the second kept)."""
    require_tool("wsclean")
    ms, _ = outlier_ms
    d = tmp_path_factory.mktemp("outer_images")
    plain = run_imaging(ms.with_(column="DATA"), OPTS, out_dir=d / "plain", round=0)
    outer = run_imaging(ms.with_(column="DATA"), OPTS.with_options(outer_size=OUTER), out_dir=d / "outer", round=0)
    return {"plain": plain, "outer": outer}


def test_outer_size_argv_and_validation() -> None:
    argv = wsclean_argv(["x.ms"], OPTS.with_options(outer_size=OUTER), "n")
    i = argv.index("-size")
    assert argv[i + 1 : i + 3] == [str(OUTER), str(OUTER)]
    assert argv[argv.index("-super-weight") + 1] == "2"  # the weighting of a SIZE image
    assert "-super-weight" not in wsclean_argv(["x.ms"], OPTS, "n")
    assert "-super-weight" not in wsclean_argv(["x.ms"], OPTS.with_options(outer_size=OUTER, weight="natural"), "n")
    for bad in (SIZE, SIZE - 2, SIZE + 3):
        with pytest.raises(ValueError, match="outer_size"):
            OPTS.with_options(outer_size=bad)


def test_products_are_cut_to_size_on_the_same_grid(both: dict[str, ImagingResult]) -> None:
    plain, outer = both["plain"], both["outer"]
    assert plain.outer_image is None
    assert outer.outer_image is not None and outer.outer_image.name.endswith(".round0.outer.image.fits")
    for kind in ("image", "residual", "psf"):
        with fits.open(outer.files[kind]) as h, fits.open(plain.files[kind]) as p:
            assert h[0].data.shape[-2:] == (SIZE, SIZE), kind
            # the same pixels on the sky as the plain run: the grid is unchanged by the cut
            w_out, w_plain = WCS(h[0].header).celestial, WCS(p[0].header).celestial
            for px in ((0, 0), (SIZE // 2, SIZE // 2), (SIZE - 1, 17)):
                np.testing.assert_allclose(w_out.pixel_to_world_values(*px), w_plain.pixel_to_world_values(*px), atol=1e-9)
    whole = fits.getdata(outer.outer_image)
    assert whole.shape[-2:] == (OUTER, OUTER)
    lo = (OUTER - SIZE) // 2
    np.testing.assert_array_equal(fits.getdata(outer.image), whole[..., lo : lo + SIZE, lo : lo + SIZE])
    # the clean model stays whole: it is the sky model flint subtract predicts
    assert fits.getdata(outer.model).shape[-2:] == (OUTER, OUTER)


def test_the_outer_source_is_cleaned_and_its_sidelobes_leave_the_image(
    both: dict[str, ImagingResult], outlier_ms: tuple[MS, SkyModel]
) -> None:
    """Measured (2026-12-02): model flux 3.99 Jy (plain) and 2.05 Jy (outer), residual rms 29.6
    and 0.68 mJy/beam; the thresholds below have margins of >= 2x."""
    plain, outer = both["plain"], both["outer"]
    ms, sky = outlier_ms
    m_plain, m_outer = float(np.sum(fits.getdata(plain.model))), float(np.sum(fits.getdata(outer.model)))
    r_plain, r_outer = float(np.std(fits.getdata(plain.residual))), float(np.std(fits.getdata(outer.residual)))
    print(f"model flux plain {m_plain:.4f} Jy, outer {m_outer:.4f} Jy; residual rms plain {r_plain * 1e3:.3f}, outer {r_outer * 1e3:.3f} mJy/beam")
    # the control: at ``size`` alone the outer source's sidelobes are cleaned as if they were
    # sources (3.99 Jy of model for 0.05 Jy of sky inside the image) and fill the residual
    assert abs(m_plain - 0.05) > 1.0
    assert m_outer == pytest.approx(2.05, rel=0.05)  # both sources, to 5 %
    with fits.open(outer.model) as h:
        w = WCS(h[0].header).celestial
        x, y = (int(round(float(v))) for v in w.world_to_pixel_values(sky.ra_deg[0], sky.dec_deg[0]))
        assert not (OUTER - SIZE) // 2 <= x < (OUTER + SIZE) // 2  # outside the kept field
        assert float(np.sum(np.squeeze(h[0].data)[y - 3 : y + 4, x - 3 : x + 4])) == pytest.approx(2.0, rel=0.05)
    assert r_outer < 0.1 * r_plain  # measured 0.023
    # the inner source's peak is no longer disturbed by the outer one's sidelobes
    with fits.open(outer.image) as h:
        w = WCS(h[0].header).celestial
        x, y = (int(round(float(v))) for v in w.world_to_pixel_values(sky.ra_deg[1], sky.dec_deg[1]))
        peak_outer = float(np.squeeze(h[0].data)[y, x])
    peak_plain = float(np.squeeze(fits.getdata(plain.image))[y, x])
    print(f"inner 50 mJy source: peak plain {peak_plain * 1e3:.2f}, outer {peak_outer * 1e3:.2f} mJy/beam")
    assert abs(peak_outer - 0.05) < 0.1 * 0.05  # measured 50.0 mJy/beam
    assert abs(peak_plain - 0.05) > 0.2 * 0.05  # the control: 22.2 mJy/beam at size alone


def test_a_mask_of_the_kept_size_is_one_clear_error(both: dict[str, ImagingResult], outlier_ms: tuple[MS, SkyModel], tmp_path: Path) -> None:
    """With ``outer_size`` WSClean needs a mask of the whole field: one error naming the fix, nothing run."""
    ms, _ = outlier_ms
    small = tmp_path / "small.mask.fits"
    fits.PrimaryHDU(np.ones((1, 1, SIZE, SIZE), np.float32), fits.getheader(both["outer"].image)).writeto(small)
    with pytest.raises(FlintInputError, match=r"256 x 256 pixels but WSClean images 512 x 512 \(--outer-size 512\).*outer.image.fits"):
        run_imaging(ms.with_(column="DATA"), OPTS.with_options(outer_size=OUTER, fits_mask=small), out_dir=tmp_path / "x", round=1)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
