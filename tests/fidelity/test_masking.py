"""Clean masks (flint.masking, ``flint mask``): SNR islands, flood fill, beam erosion, WSClean -fits-mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from flint.cli import main
from flint.errors import FlintOptionsError
from flint.imaging import WSCleanOptions, run_imaging
from flint.masking import MaskingOptions, beam_kernel, flood_fill_islands, make_clean_mask
from flint.sim import SimResult

from conftest import require_tool, writable_copy

N = 256
PIX = 4.0  # arcsec
BEAM = (14.0, 10.0, 30.0)  # arcsec, arcsec, deg
NOISE = 1e-3
#: (x, y, peak SNR): three sources above the seed level, one below
SOURCES = [(60, 60, 50.0), (190, 70, 20.0), (70, 190, 9.0), (190, 190, 3.5)]


def _header() -> fits.Header:
    w = WCS(naxis=4)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN", "FREQ", "STOKES"]
    w.wcs.crval = [150.0, -30.0, 887.5e6, 1.0]
    w.wcs.crpix = [N / 2 + 1, N / 2 + 1, 1, 1]
    w.wcs.cdelt = [-PIX / 3600, PIX / 3600, 1e6, 1]
    h = w.to_header()
    h["BUNIT"] = "JY/BEAM"
    h["BMAJ"], h["BMIN"], h["BPA"] = BEAM[0] / 3600, BEAM[1] / 3600, BEAM[2]
    return h


def _beam_image(x0: float, y0: float) -> np.ndarray:
    y, x = np.mgrid[0:N, 0:N].astype(float)
    th = np.radians(BEAM[2])
    dx, dy = x - x0, y - y0
    u = -np.sin(th) * dx + np.cos(th) * dy
    v = np.cos(th) * dx + np.sin(th) * dy
    s = 2.0 * np.sqrt(2.0 * np.log(2.0))
    return np.exp(-0.5 * ((u / (BEAM[0] / PIX / s)) ** 2 + (v / (BEAM[1] / PIX / s)) ** 2))


def _noise(seed: int) -> np.ndarray:
    """Noise correlated on the beam's scale (like an interferometric image), rms NOISE."""
    from scipy.signal import fftconvolve

    white = np.random.default_rng(seed).normal(size=(N, N))
    k = _beam_image(N / 2, N / 2)[N // 2 - 12 : N // 2 + 13, N // 2 - 12 : N // 2 + 13]
    corr = fftconvolve(white, k, mode="same")
    return NOISE * corr / corr[20:-20, 20:-20].std()


def _write(path: Path, data: np.ndarray) -> Path:
    fits.PrimaryHDU(data.astype(np.float32)[None, None], _header()).writeto(path)
    return path


@pytest.fixture()
def restored(tmp_path: Path) -> tuple[Path, Path]:
    """A restored image with four point sources and its residual (the noise alone)."""
    noise = _noise(7)
    img = noise + sum(snr * NOISE * _beam_image(x, y) for x, y, snr in SOURCES)
    return _write(tmp_path / "f.round0.image.fits", img), _write(tmp_path / "f.round0.residual.fits", noise)


def _near(mask: np.ndarray, x: int, y: int, r: int = 4) -> bool:
    return bool(mask[y - r : y + r + 1, x - r : x + r + 1].any())


def test_mask_holds_the_sources_above_the_seed_and_nothing_else(restored: tuple[Path, Path]) -> None:
    image, _ = restored
    result = make_clean_mask(image)
    mask = np.squeeze(fits.getdata(result.mask))
    assert mask.shape == (N, N) and fits.getdata(result.mask).shape == (1, 1, N, N)
    assert result.mask.name == "f.round0.mask.fits"
    for x, y, snr in SOURCES:
        assert _near(mask, x, y) == (snr >= 5.0), (x, y, snr)
    # every mask pixel belongs to one of the sources above the seed level
    yy, xx = np.nonzero(mask)
    d = np.min([np.hypot(xx - x, yy - y) for x, y, snr in SOURCES if snr >= 5.0], axis=0)
    assert d.max() <= 10
    assert result.noise_jy == pytest.approx(NOISE, rel=0.15)
    assert result.n_pixels == int(mask.sum()) > 0


def test_erosion_removes_islands_smaller_than_the_beam(restored: tuple[Path, Path], tmp_path: Path) -> None:
    image, residual = restored
    data = np.squeeze(fits.getdata(image)).astype(float)
    data[128, 128] = 8.0 * NOISE  # a single-pixel spike: no beam-shaped island
    spiky = _write(tmp_path / "spike.image.fits", data)
    kept = np.squeeze(fits.getdata(make_clean_mask(spiky, MaskingOptions(erode=False), residual=residual).mask))
    eroded = np.squeeze(fits.getdata(make_clean_mask(spiky, MaskingOptions(), output=tmp_path / "e.fits", residual=residual).mask))
    assert kept[128, 128] == 1 and eroded[128, 128] == 0
    assert _near(eroded, 60, 60) and eroded.sum() < kept.sum()


def test_flood_fill_grows_seeded_islands_only() -> None:
    snr = np.zeros((20, 20))
    snr[2:8, 2:8] = 3.5
    snr[4, 4] = 7.0  # seeded island
    snr[12:18, 12:18] = 4.5  # bright but unseeded island
    mask, n = flood_fill_islands(snr, seed_snr=5.0, flood_snr=3.0)
    assert n == 1 and mask[2:8, 2:8].all() and not mask[12:18, 12:18].any()


def test_beam_kernel_follows_the_position_angle() -> None:
    k0 = beam_kernel(10.0, 4.0, 0.0, 0.5)  # major axis north-south: taller than wide
    k90 = beam_kernel(10.0, 4.0, 90.0, 0.5)
    assert k0.shape[0] > k0.shape[1] and k90.shape[1] > k90.shape[0]
    assert int(k0.sum()) == int(k90.sum())


def test_cli_writes_the_mask_and_reports_it(restored: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, _ = restored
    out = tmp_path / "m.fits"
    assert main(["mask", str(image), "-o", str(out), "--seed-snr", "30"]) == 0
    text = capsys.readouterr().out
    assert f"mask: {out}" in text and "islands: 1" in text
    mask = np.squeeze(fits.getdata(out))
    assert _near(mask, 60, 60) and not _near(mask, 190, 70)


def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = _header()
    del h["BMAJ"], h["BMIN"], h["BPA"]
    img = tmp_path / "nobeam.image.fits"
    fits.PrimaryHDU(np.zeros((1, 1, N, N), np.float32), h).writeto(img)
    before = img.read_bytes()
    assert main(["mask", str(img)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nobeam.image.fits" in err[0] and "BMAJ" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nobeam.image.fits"] and img.read_bytes() == before
    assert main(["mask", str(img), "--seed-snr", "3", "--flood-snr", "4"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--flood-snr" in err[0]
    with pytest.raises(FlintOptionsError):
        MaskingOptions.create(seed_snr=3.0, flood_snr=4.0)


def test_wsclean_cleans_only_inside_the_mask(tmp_path: Path, sim_field_ideal: SimResult) -> None:
    """Round 0 -> mask -> round 1 with ``flint image --fits-mask``: the clean model lies inside it."""
    require_tool("wsclean")
    ms = writable_copy(sim_field_ideal.ms_paths[0], tmp_path)
    common = ["--size", "512", "--scale-arcsec", "8", "--niter", "2000", "--threads", "1", "--out-dir", str(tmp_path)]
    assert main(["image", str(ms.path), *common, "--round", "0"]) == 0
    image0 = tmp_path / "SB101.SIM_FIELD.beam00.round0.image.fits"
    mask = make_clean_mask(image0, MaskingOptions(seed_snr=8.0))
    assert mask.n_islands >= 2
    opts = WSCleanOptions(size=512, scale_arcsec=8.0, niter=2000, threads=1, auto_mask=None, fits_mask=mask.mask)
    run_imaging(ms, opts, out_dir=tmp_path, round=1)
    model = np.squeeze(fits.getdata(tmp_path / "SB101.SIM_FIELD.beam00.round1.model.fits"))
    inside = np.squeeze(fits.getdata(mask.mask)) > 0
    assert np.abs(model).sum() > 0
    assert np.abs(model[~inside]).sum() == 0.0
    # the masked sources are cleaned at least as deeply as with WSClean's own auto-mask
    from scipy.ndimage import binary_dilation

    model0 = np.squeeze(fits.getdata(tmp_path / "SB101.SIM_FIELD.beam00.round0.model.fits"))
    near = binary_dilation(inside, iterations=3)
    assert model.sum() >= 0.95 * model0[near].sum()




def test_strategy_masking_tool_starts_in_round_1() -> None:
    from flint.errors import FlintConfigError
    from flint.strategy import parse_strategy

    ok = parse_strategy({"defaults": {"masking": {"seed_snr": 6.0}}, "rounds": {1: {"masking": {"flood_snr": 2.5}}}})
    m = ok.options_for("masking", 1)
    assert isinstance(m, MaskingOptions) and (m.seed_snr, m.flood_snr) == (6.0, 2.5)
    with pytest.raises(FlintConfigError, match=r"rounds\.0\.masking"):
        parse_strategy({"rounds": {0: {"masking": {}}, 1: {}}})
    with pytest.raises(FlintConfigError, match=r"defaults\.masking.*--flood-snr"):
        parse_strategy({"defaults": {"masking": {"seed_snr": 3.0, "flood_snr": 4.0}}, "rounds": {1: {}}})


def test_erosion_keeps_a_faint_source_narrower_than_the_restoring_beam(tmp_path: Path) -> None:
    """A faint source that is mostly uncleaned flux has the dirty beam's core, narrower than the
    restoring beam in the header. The erosion alone removes its island whole (it then stays out
    of every later round's model, and its dirty-beam sidelobes become components of their own);
    ``keep_seeds`` keeps its pixels above the seed level. A one-pixel spike is still dropped.
    """
    noise = _noise(11)
    y, x = np.mgrid[0:N, 0:N].astype(float)
    s = 2.0 * np.sqrt(2.0 * np.log(2.0))
    # 8 sigma, 14" x 7" at PA 30 deg: the header's beam is 14" x 10"
    th = np.radians(BEAM[2])
    u = -np.sin(th) * (x - 128) + np.cos(th) * (y - 128)
    v = np.cos(th) * (x - 128) + np.sin(th) * (y - 128)
    narrow = np.exp(-0.5 * ((u / (BEAM[0] / PIX / s)) ** 2 + (v / (7.0 / PIX / s)) ** 2))
    data = noise + 8.0 * NOISE * narrow + 50.0 * NOISE * _beam_image(60, 60)
    data[200, 60] = 9.0 * NOISE  # a one-pixel spike
    image = _write(tmp_path / "faint.image.fits", data)
    residual = _write(tmp_path / "faint.residual.fits", noise)
    dropped = np.squeeze(fits.getdata(make_clean_mask(image, MaskingOptions(keep_seeds=False), output=tmp_path / "a.fits", residual=residual).mask))
    kept = np.squeeze(fits.getdata(make_clean_mask(image, MaskingOptions(), output=tmp_path / "b.fits", residual=residual).mask))
    assert not _near(dropped, 128, 128) and _near(dropped, 60, 60)
    assert _near(kept, 128, 128, r=1) and _near(kept, 60, 60)
    assert kept[200, 60] == 0 and dropped[200, 60] == 0
    # the kept pixels are the source's seed pixels only: the island above 5 sigma
    assert 1 <= int(kept[120:137, 120:137].sum()) <= int((8.0 * narrow >= 5.0 - 1.5).sum())
