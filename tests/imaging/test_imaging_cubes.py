"""IQUV images, channel cubes and channel-block imaging with WSClean on the simulated field.

Beam 0 of ``sim_field_ideal`` (12 x 1 MHz channels, unpolarised sky: XX = YY, XY = YX = 0)
imaged on a small grid (256 x 8 arcsec pixels, restoring beam ~35 x 21 arcsec). WSClean runs
with ``-no-update-model-required``, so the shared MS is only read. Checked against the
simulator's truth (apparent flux = true flux x Gaussian primary beam) and against WSClean's
own per-channel headers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from _imaging_synth import fit_beam
from astropy.io import fits

from flint.cli import main
from flint.cubes import CubeReader, read_cube_info
from flint.errors import FlintInputError
from flint.imaging import (
    ChannelBlockResult,
    ImagingResult,
    WSCleanOptions,
    assemble_channel_blocks,
    run_channel_block,
    run_imaging,
)
from flint.ms import open_table
from flint.sim import SimOptions, SimResult, SkyModel, read_sky

from conftest import require_tool, writable_copy

BASE = "SB101.SIM_FIELD.beam00.round0"
#: small grid, enough clean for the bright sources; one thread: reproducible to the bit
CUBE_OPTS = WSCleanOptions(size=256, scale_arcsec=8.0, niter=2000, channels_out=12, update_model=False, threads=1)
CUBE_FLAGS = ["--size", "256", "--scale-arcsec", "8", "--niter", "2000", "--threads", "1"]  # flint image-cube
SMALL_FLAGS = [*CUBE_FLAGS, "--no-update-model"]  # flint image


@dataclass(frozen=True)
class IQUVRun:
    out: Path
    stdout: dict[str, str]
    ms: Path
    sky: SkyModel
    """The true sky of ``ms``: the simulated one plus :data:`EXTRA`."""


#: unpolarised sources added to beam 0 (east, north offsets in deg; Jy at 888 MHz): the
#: simulator puts one bright source near each beam centre, the IQUV test wants several
EXTRA = ((0.15, 0.06, 1.0), (-0.09, 0.16, 0.6), (-0.16, -0.13, 0.4))


def _with_extra_sources(ms: Path, sky: SkyModel, centre: tuple[float, float], opts: SimOptions) -> SkyModel:
    """DATA += the EXTRA sources' visibilities (XX = YY, XY = YX = 0; noise kept); the full sky."""
    from flint.sim import _offset_radec, predict_model

    ra, dec = _offset_radec(centre[0], centre[1], np.array([e[0] for e in EXTRA]), np.array([e[1] for e in EXTRA]))
    extra = SkyModel([f"EXTRA{i}" for i in range(len(EXTRA))], ra, dec, np.array([e[2] for e in EXTRA]), np.full(len(EXTRA), -0.7), sky.ref_freq_hz)
    with open_table(ms, mode="rw") as t:
        vis = predict_model(extra, t.getcol("UVW"), _ms_freqs(ms), centre, centre, opts.pb_fwhm_deg, opts.pb_ref_freq_hz)
        data = t.getcol("DATA")
        data[..., 0] += vis
        data[..., 3] += vis
        t.putcol("DATA", data)
    cat = lambda a, b: np.concatenate([a, b])  # noqa: E731
    return SkyModel(sky.name + extra.name, cat(sky.ra_deg, ra), cat(sky.dec_deg, dec), cat(sky.flux_jy, extra.flux_jy), cat(sky.alpha, extra.alpha), sky.ref_freq_hz)


def _ms_freqs(ms: Path) -> np.ndarray:
    with open_table(ms, subtable="SPECTRAL_WINDOW") as t:
        return np.asarray(t.getcol("CHAN_FREQ")[0], dtype=float)


@pytest.fixture(scope="module")
def iquv_run(tmp_path_factory: pytest.TempPathFactory, sim_field_ideal: SimResult, sim_options: SimOptions) -> IQUVRun:
    """Beam 0 with :data:`EXTRA` added, through ``flint image MS --pol IQUV --channels-out 12
    --cube --keep-channel-images`` (in-process)."""
    import contextlib
    import io

    require_tool("wsclean")
    d = tmp_path_factory.mktemp("iquv")
    ms = writable_copy(sim_field_ideal.ms_paths[0], d).path
    sky = _with_extra_sources(ms, read_sky(sim_field_ideal.sky_csv), sim_field_ideal.beam_centres_deg[0], sim_options)  # type: ignore[arg-type]
    out = d / "images"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["image", str(ms), "--round", "0", "--out-dir", str(out), "--pol", "IQUV",
                   "--channels-out", "12", "--cube", "--cube-products", "image", "residual", "psf", "--keep-channel-images", "--json", *SMALL_FLAGS])
    assert rc == 0
    return IQUVRun(out=out, stdout=json.loads(buf.getvalue())[0], ms=ms, sky=sky)


@pytest.fixture(scope="module")
def full_i_cube(tmp_path_factory: pytest.TempPathFactory, sim_field_ideal: SimResult) -> ImagingResult:
    """Stokes I, 12 channels in one WSClean run, assembled into cubes."""
    require_tool("wsclean")
    return run_imaging(sim_field_ideal.ms_paths[0], CUBE_OPTS.with_options(cube=True), out_dir=tmp_path_factory.mktemp("full"), round=0)


# --------------------------------------------------------------------------- IQUV cubes
def test_iquv_cubes_are_named_with_beams_and_frequencies(iquv_run: IQUVRun, sim_field_ideal: SimResult) -> None:
    out = iquv_run.out
    freqs = _ms_freqs(sim_field_ideal.ms_paths[0])
    for code, p in enumerate("iquv", start=1):
        for kind in ("image", "residual"):
            cube = out / f"{BASE}.{p}.{kind}.cube.fits"
            assert iquv_run.stdout[f"{p}.{kind}.cube"] == str(cube)
            info = read_cube_info(cube)
            assert info.axes.shape == (1, 12, 256, 256)  # STOKES, FREQ, y, x
            assert info.stokes == (code,)
            np.testing.assert_allclose(info.freqs_hz, freqs, rtol=0, atol=1.0)  # the MS channels, to 1 Hz
            assert info.beams is not None and info.beams_from_table and info.header["CASAMBM"] is True
            with fits.open(cube) as hdul:
                table = hdul["BEAMS"].data
                assert len(table) == 12 and list(table["CHAN"]) == list(range(12)) and set(table["POL"]) == {0}
            with CubeReader(cube) as reader:
                for c in (0, 5, 11):  # each row is that channel image's beam; each plane that image
                    chan = out / f"{BASE}.{p}.ch{c:04d}.{kind}.fits"
                    h = fits.getheader(chan)
                    assert info.beams.as_tuple(c) == pytest.approx((h["BMAJ"] * 3600, h["BMIN"] * 3600, h["BPA"]), rel=1e-6)
                    assert np.array_equal(reader.plane(c), fits.getdata(chan)[0, 0].astype(np.float64))
    psf = read_cube_info(out / f"{BASE}.psf.cube.fits")
    assert psf.axes.shape == (1, 12, 256, 256) and psf.beams is not None
    # the beam changes with channel (the table is not one beam repeated)
    assert np.ptp(read_cube_info(out / f"{BASE}.i.image.cube.fits").beams.bmaj_arcsec) > 0.1  # type: ignore[union-attr]
    # MFS products per Stokes, per-channel models kept for flint subtract, nothing of WSClean's left
    for p in "iquv":
        assert (out / f"{BASE}.{p}.image.fits").is_file() and (out / f"{BASE}.{p}.model.fits").is_file()
        assert len(list(out.glob(f"{BASE}.{p}.ch*.model.fits"))) == 12
    assert not [f for f in out.iterdir() if f.name.startswith(".") or "-MFS-" in f.name or "-0000-" in f.name]


def test_iquv_of_unpolarised_sky_matches_truth(iquv_run: IQUVRun, sim_field_ideal: SimResult, sim_options: SimOptions) -> None:
    """Every source brighter than 0.25 Jy apparent in the image (4: 0.33-0.93 Jy), every
    channel: Stokes I (Gaussian fit, the peak) within 2 % + 3 sigma of truth x primary beam
    (sigma: that channel's I residual rms, ~9 mJy: sidelobes of sources outside the small
    image) and the median ratio within 3 %; |Q|, |U|, |V| at them below 5 sigma of that
    plane (~2 mJy, thermal), their median over sources and channels below 0.5 % of I; the
    fitted width within 2 arcsec of the BEAMS row. Measured: I ratio median 0.981 (0.948-1.007),
    max |Q,U,V|/I 0.97 % (at the 0.33 Jy source, 1.6 sigma)."""
    from flint.images import robust_rms
    from flint.primary_beam import angular_separation_deg, gaussian_pb

    out, sky = iquv_run.out, iquv_run.sky
    ra0, dec0 = sim_field_ideal.beam_centres_deg[0]
    info = read_cube_info(out / f"{BASE}.i.image.cube.fits")
    pb = gaussian_pb(angular_separation_deg(ra0, dec0, sky.ra_deg, sky.dec_deg)[:, None], info.freqs_hz[None, :], sim_options.pb_fwhm_deg, sim_options.pb_ref_freq_hz)
    apparent = sky.flux_at(info.freqs_hz) * pb  # (source, channel) Jy
    xy = np.array(info.wcs.world_to_pixel_values(sky.ra_deg, sky.dec_deg)).T
    inside = np.all((xy > 10) & (xy < 245), axis=1)
    bright = np.flatnonzero(inside & (apparent.min(axis=1) > 0.25))
    assert len(bright) == 4, [sky.name[j] for j in bright]
    pix = [(int(round(xy[j, 0])), int(round(xy[j, 1]))) for j in bright]
    truth = apparent[bright]
    readers = {p: CubeReader(out / f"{BASE}.{p}.image.cube.fits") for p in "iquv"}
    readers["res"] = CubeReader(out / f"{BASE}.i.residual.cube.fits")
    ratios, leak = [], []
    try:
        for r in readers.values():
            r.__enter__()
        for c in range(info.nchan):
            planes = {p: r.plane(c) for p, r in readers.items()}
            bmaj, bmin, _ = info.beams.as_tuple(c)  # type: ignore[union-attr]
            for k, (x, y) in enumerate(pix):
                major, minor, _, peak = fit_beam(planes["i"][y - 7 : y + 8, x - 7 : x + 8], 8.0)
                ratios.append(peak / truth[k, c])
                sigma = robust_rms(planes["res"])
                assert abs(peak - truth[k, c]) <= 0.02 * truth[k, c] + 3 * sigma, (c, k, peak, truth[k, c], sigma)
                assert major == pytest.approx(bmaj, abs=2.0) and minor == pytest.approx(bmin, abs=2.0), (c, k)
                for p in "quv":
                    v = abs(planes[p][y, x])
                    leak.append(v / peak)
                    assert v < 5 * robust_rms(planes[p]), (p, c, k)
    finally:
        for r in readers.values():
            r.__exit__(None, None, None)
    print(f"I ratio median {np.median(ratios):.4f} range {min(ratios):.4f}-{max(ratios):.4f}; |Q,U,V|/I median {np.median(leak):.5f} max {max(leak):.5f}")
    assert float(np.median(ratios)) == pytest.approx(1.0, abs=0.03), f"median I ratio {np.median(ratios):.3f}"
    assert float(np.median(leak)) < 0.005, f"median |Q,U,V|/I at the bright sources {np.median(leak):.4f}"


# --------------------------------------------------------------------------- channel blocks
def test_channel_blocks_assemble_to_the_full_cube(tmp_path: Path, full_i_cube: ImagingResult, sim_field_ideal: SimResult) -> None:
    """Three uneven blocks (0-4, 5-9, 10-11) imaged at the same time on one MS (as a flow's
    tasks run them), given out of order, assemble to the one-run cube (pixels within 1e-6 of
    the peak, in practice identical), the same BEAMS and FREQ axis."""
    from concurrent.futures import ThreadPoolExecutor

    ms = sim_field_ideal.ms_paths[0]
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(run_channel_block, ms, s, e, CUBE_OPTS, out_dir=tmp_path, round=0) for s, e in ((10, 12), (0, 5), (5, 10))]
        blocks = [f.result() for f in futures]
    assert [p.name for p in blocks[0].images["i.image"]] == [f"{BASE}.ch0010.image.fits", f"{BASE}.ch0011.image.fits"]
    assert "-update-model-required" not in blocks[0].command and "-channel-range" in blocks[0].command
    cubes = assemble_channel_blocks(blocks)
    assert sorted(cubes.cubes) == ["i.image", "i.residual"] and cubes.channels == (0, 12)
    assert sorted(f.name for f in tmp_path.iterdir()) == [f"{BASE}.i.image.cube.fits", f"{BASE}.i.residual.cube.fits"]  # channel images removed
    for key in ("i.image", "i.residual"):
        _assert_same_cube(cubes.cubes[key], full_i_cube.cubes[key])


def test_image_cube_cli_two_blocks_equals_full_cube(tmp_path: Path, full_i_cube: ImagingResult, sim_field_ideal: SimResult, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["image-cube", str(sim_field_ideal.ms_paths[0]), "--channel-block", "6", "--round", "0", "--out-dir", str(tmp_path), "--json", *CUBE_FLAGS])
    assert rc == 0
    shown = json.loads(capsys.readouterr().out)[0]
    assert shown["channels"] == [0, 12]
    assert shown["i.image"] == str(tmp_path / f"{BASE}.i.image.cube.fits")
    _assert_same_cube(Path(shown["i.image"]), full_i_cube.cubes["i.image"])


def _assert_same_cube(a: Path, b: Path) -> None:
    ia, ib = read_cube_info(a), read_cube_info(b)
    assert ia.axes == ib.axes
    np.testing.assert_array_equal(ia.freqs_hz, ib.freqs_hz)
    np.testing.assert_allclose(ia.beams.bmaj_arcsec, ib.beams.bmaj_arcsec, rtol=1e-6)  # type: ignore[union-attr]
    np.testing.assert_allclose(ia.beams.bpa_deg, ib.beams.bpa_deg, rtol=1e-6)  # type: ignore[union-attr]
    with CubeReader(a) as ra, CubeReader(b) as rb:
        for c in range(ia.nchan):
            pa, pb = ra.plane(c), rb.plane(c)
            assert float(np.abs(pa - pb).max()) <= 1e-6 * float(np.abs(pb).max()), f"channel {c}"


def test_full_cube_keeps_channel_models_for_subtract(full_i_cube: ImagingResult) -> None:
    from flint.subtract import find_model_images

    out = full_i_cube.image.parent
    assert full_i_cube.image == out / f"{BASE}.image.fits"  # Stokes I alone: no .i. on the MFS products
    assert not list(out.glob(f"{BASE}.ch*.image.fits"))  # went into the cube
    found = find_model_images(out / BASE)
    assert found.per_channel and [p.name for p in found.paths] == [f"{BASE}.ch{c:04d}.model.fits" for c in range(12)]
    assert found.paths == full_i_cube.channel_models


# --------------------------------------------------------------------------- unhappy paths
@pytest.mark.parametrize(
    "args, flag",
    [
        (["image-cube", "{ms}", "--channel-range", "10", "20"], "--channel-range"),
        (["image", "{ms}", "--channels-out", "2", "--channel-range", "10", "20"], "--channel-range"),
        (["image-cube", "{ms}", "--channel-block", "0"], "--channel-block"),
        (["image", "{ms}", "--cube"], "--channels-out"),
        (["image", "{ms}", "--pol", "IQ2"], "--pol"),
        (["image", "{ms}", "--pol", "IQU", "--join-polarizations"], "--pol IQUV"),
    ],
)
def test_bad_cube_requests_one_line(args: list[str], flag: str, tmp_path: Path, sim_field_ideal: SimResult, capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("wsclean")
    flags = CUBE_FLAGS if args[0] == "image-cube" else SMALL_FLAGS
    argv = [a.format(ms=sim_field_ideal.ms_paths[0]) for a in args] + ["--out-dir", str(tmp_path / "out"), *flags]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and flag in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_assembling_blocks_with_a_gap_names_the_channels(tmp_path: Path, sim_field_ideal: SimResult) -> None:
    from flint.ms import MS

    ms = MS(sim_field_ideal.ms_paths[0])
    a = ChannelBlockResult(ms=ms, base=BASE, channels=(0, 4), images={"i.image": (tmp_path / "a.fits",)})
    b = ChannelBlockResult(ms=ms, base=BASE, channels=(6, 8), images={"i.image": (tmp_path / "b.fits",)})
    with pytest.raises(FlintInputError, match="leave channels 4-5 unimaged"):
        assemble_channel_blocks([b, a])
    with pytest.raises(FlintInputError, match="overlap"):
        assemble_channel_blocks([a, ChannelBlockResult(ms=ms, base=BASE, channels=(3, 8), images=a.images)])
