"""``flint linmos`` on cubes: the weighted average of two overlapping beams at a pixel, per
channel, with the Gaussian beam and with an ASKAP holography beam cube (5-D, IQUV,
leakage removed). Each beam sees a flat sky of its own (1 Jy in beam A, 2 Jy in beam B),
so the mosaic at a pixel is, by hand::

    (PB_A**2 * 1 + PB_B**2 * 2) / (PB_A**2 + PB_B**2)       (noise weighting off)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _cube_synth import (
    HOLO_FREQS,
    cube_header,
    holo_leak,
    holo_pb_truth,
    write_cube,
    write_holography,
)

from flint.cli import main
from flint.cubes import CubeReader, read_cube_info
from flint.linmos import LinmosOptions, run_linmos
from flint.primary_beam import angular_separation_deg, gaussian_pb

N, PIX_DEG = 120, 0.01
DEC = -30.0
CENTRES = [(150.0, DEC), (150.0 + 0.6 / np.cos(np.radians(DEC)), DEC)]
SKY = [1.0, 2.0]


def _offsets() -> tuple[np.ndarray, np.ndarray]:
    """(east, north) offsets in deg of every pixel from the image centre (SIN: exact)."""
    j, i = np.mgrid[0:N, 0:N]
    crpix = N / 2  # 0-based pixel of CRPIX = N/2 + 1
    return (crpix - i) * PIX_DEG, (j - crpix) * PIX_DEG


def _gaussian_inputs(tmp: Path, freqs: list[float]) -> list[Path]:
    paths = []
    for k, (ra, dec) in enumerate(CENTRES):
        hdr = cube_header(N, PIX_DEG * 3600, freqs, [1], ra=ra, dec=dec)
        east, north = _offsets()
        sep = np.hypot(east, north)
        data = np.stack([SKY[k] * gaussian_pb(sep, f)[None] for f in freqs])  # (chan, pol, y, x)
        beams = np.array([[[30.0 + c, 25.0, 10.0]] for c in range(len(freqs))])
        paths.append(write_cube(tmp / f"SB9.FIELD.beam{k:02d}.round1.i.image.cube.fits", data, hdr, beams))
    return paths


def _world_pixel(path: Path, ra: float, dec: float) -> tuple[int, int]:
    wcs = read_cube_info(path).wcs
    x, y = (float(v) for v in wcs.world_to_pixel_values(ra, dec))
    assert abs(x - round(x)) < 0.5 and abs(y - round(y)) < 0.5
    return int(round(x)), int(round(y))


def test_linmos_cube_gaussian_weighted_average_per_channel(tmp_path: Path) -> None:
    freqs = [800e6, 1000e6]
    paths = _gaussian_inputs(tmp_path, freqs)
    res = run_linmos(paths, LinmosOptions(noise="none", pb_cutoff=0.1))
    assert res.mosaic == tmp_path / "SB9.FIELD.round1.linmos.fits" and res.weight is not None
    info, winfo = read_cube_info(res.mosaic), read_cube_info(res.weight)
    assert (info.nchan, info.npol) == (2, 1) and info.freqs_hz == pytest.approx(freqs)
    assert info.beams is not None and info.beams.as_tuple(1) == pytest.approx((31.0, 25.0, 10.0))
    mid_ra = (CENTRES[0][0] + CENTRES[1][0]) / 2
    points = [(mid_ra, DEC), (CENTRES[0][0] + 0.15, DEC + 0.1), (CENTRES[1][0] - 0.1, DEC - 0.2)]
    with CubeReader(res.mosaic, info) as mos, CubeReader(res.weight, winfo) as wt:
        for c, f in enumerate(freqs):
            plane, weight = mos.plane(c), wt.plane(c)
            for ra, dec in points:
                x, y = _world_pixel(res.mosaic, ra, dec)
                wra, wdec = (float(v) for v in info.wcs.pixel_to_world_values(x, y))
                pbs = [float(gaussian_pb(angular_separation_deg(r0, d0, wra, wdec), f)) for r0, d0 in CENTRES]
                w = [p**2 if p >= 0.1 else 0.0 for p in pbs]
                expected = sum(wi * s for wi, s in zip(w, SKY, strict=True)) / sum(w)
                assert plane[y, x] == pytest.approx(expected, rel=2e-3)
                assert weight[y, x] == pytest.approx(sum(w), rel=5e-3)
        # the two channels differ (the beam narrows with frequency): the test could fail
        x, y = _world_pixel(res.mosaic, *points[1])
        assert abs(mos.plane(0)[y, x] - mos.plane(1)[y, x]) > 0.01
    for p in paths:
        assert p.exists()


def _holo_inputs(tmp: Path, freqs: list[float], stokes: list[int], names: list[str]) -> list[Path]:
    """Beam A (name beam01 -> holography BEAM 1) and beam B (beam00 -> BEAM 0), IQUV, leakage only."""
    beam_of = [1, 0]
    paths = []
    east, north = _offsets()
    leak = holo_leak(east, north)
    for k, (ra, dec) in enumerate(CENTRES):
        hdr = cube_header(N, PIX_DEG * 3600, freqs, stokes, ra=ra, dec=dec)
        data = np.zeros((len(freqs), len(stokes), N, N))
        for c, f in enumerate(freqs):
            i_app = SKY[k] * holo_pb_truth(beam_of[k], f, east, north)
            for p, code in enumerate(stokes):
                data[c, p] = i_app if code == 1 else leak[code] * i_app
        beams = np.tile([30.0, 30.0, 0.0], (len(freqs), len(stokes), 1))
        paths.append(write_cube(tmp / names[k], data, hdr, beams))
    return paths


def test_linmos_holography_cube_stokes_i_and_leakage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holo = write_holography(tmp_path / "akpb.iquv.closepack36.54.943MHz.SB55219.cube.fits")
    freqs = [HOLO_FREQS[0], (HOLO_FREQS[1] + HOLO_FREQS[2]) / 2]  # on a PB channel and between two
    names = ["SB9.FIELD.beam01.iquv.image.cube.fits", "SB9.FIELD.beam00.iquv.image.cube.fits"]
    paths = _holo_inputs(tmp_path, freqs, [1, 2, 3, 4], names)
    out = tmp_path / "mosaic.fits"
    args = ["linmos", *map(str, paths), "-o", str(out), "--pb-cube", str(holo), "--noise", "none"]
    assert main(args) == 0
    assert f"mosaic  {out}" in capsys.readouterr().out
    info = read_cube_info(out)
    assert info.stokes == (1, 2, 3, 4) and info.nchan == 2
    mid_ra = (CENTRES[0][0] + CENTRES[1][0]) / 2
    points = [(mid_ra, DEC), (CENTRES[0][0] + 0.1, DEC + 0.15), (CENTRES[1][0] - 0.05, DEC - 0.2)]
    with CubeReader(out, info) as mos:
        for c, f in enumerate(freqs):
            for ra, dec in points:
                x, y = _world_pixel(out, ra, dec)
                wra, wdec = (float(v) for v in info.wcs.pixel_to_world_values(x, y))
                w = []
                for (r0, d0), beam in zip(CENTRES, [1, 0], strict=True):
                    east = np.cos(np.radians(wdec)) * np.sin(np.radians(wra - r0))
                    north = np.sin(np.radians(wdec)) * np.cos(np.radians(d0)) - np.cos(np.radians(wdec)) * np.sin(np.radians(d0)) * np.cos(np.radians(wra - r0))
                    pb = float(holo_pb_truth(beam, f, np.degrees(east), np.degrees(north)))
                    w.append(pb**2 if pb >= 0.1 else 0.0)
                expected = sum(wi * s for wi, s in zip(w, SKY, strict=True)) / sum(w)
                assert mos.plane(c, 0)[y, x] == pytest.approx(expected, rel=3e-3)  # Stokes I
                for p in (1, 2, 3):  # Q, U, V: only leakage went in; removed to < 0.1 % of I
                    assert abs(mos.plane(c, p)[y, x]) < 1e-3 * expected
    # the leakage is there without its removal (so the check above can fail)
    raw = run_linmos(paths, LinmosOptions(pb_cube=holo, noise="none", remove_leakage=False), output=tmp_path / "raw.fits")
    with CubeReader(raw.mosaic) as r:
        x, y = _world_pixel(raw.mosaic, *points[1])
        assert r.plane(0, 1)[y, x] > 0.01  # L_Q = 0.01 + 0.04 r


def test_linmos_holography_unhappy_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holo = write_holography(tmp_path / "akpb.iquv.closepack36.54.943MHz.SB55219.cube.fits")
    noname = _holo_inputs(tmp_path, [HOLO_FREQS[0]], [1], ["a.fits", "b.fits"])
    assert main(["linmos", *map(str, noname), "--pb-cube", str(holo), "-o", str(tmp_path / "m.fits")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a.fits" in err[0] and "--pb-beams" in err[0]
    qonly = _holo_inputs(tmp_path, [HOLO_FREQS[0]], [2], ["SB9.F.beam01.q.fits", "SB9.F.beam00.q.fits"])
    assert main(["linmos", *map(str, qonly), "--pb-cube", str(holo), "-o", str(tmp_path / "m.fits")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SB9.F.beam01.q.fits" in err[0] and "--stokes-i" in err[0] and "--no-remove-leakage" in err[0]
    # given the I cubes, the Q mosaic has its leakage removed
    icubes = _holo_inputs(tmp_path, [HOLO_FREQS[0]], [1], ["SB9.F.beam01.i.fits", "SB9.F.beam00.i.fits"])
    assert main(["linmos", *map(str, qonly), "--pb-cube", str(holo), "--stokes-i", *map(str, icubes), "--noise", "none", "-o", str(tmp_path / "q.fits")]) == 0
    with CubeReader(tmp_path / "q.fits") as r:
        assert np.nanmax(np.abs(r.plane(0, 0))) < 2e-3
    assert not (tmp_path / "m.fits").exists()
    assert sorted(p.name for p in tmp_path.glob("*.tmp")) == []


def test_linmos_cube_equals_the_single_plane_mosaic(tmp_path: Path) -> None:
    """A cube whose channels are copies of a 2-D image mosaics, channel by channel, to the 2-D mosaic.

    The single-plane images carry their beam only in a one-row BEAMS table (as CASA writes).
    """
    rng = np.random.default_rng(5)
    east, north = _offsets()
    flat, cubes = [], []
    for k, (ra, dec) in enumerate(CENTRES):
        plane = SKY[k] * gaussian_pb(np.hypot(east, north), 887.5e6) + rng.normal(0, 0.01 * (k + 1), (N, N))
        beams = np.array([[[30.0, 25.0, 10.0]]])
        flat.append(write_cube(tmp_path / f"flat{k}.fits", plane[None, None], cube_header(N, PIX_DEG * 3600, [887.5e6], ra=ra, dec=dec), beams))
        two = np.stack([plane[None], plane[None]])
        cubes.append(write_cube(tmp_path / f"cube{k}.fits", two, cube_header(N, PIX_DEG * 3600, [887.5e6, 887.5e6 + 1.0], ra=ra, dec=dec), np.tile(beams, (2, 1, 1))))
    ref = run_linmos(flat, output=tmp_path / "flat.linmos.fits")
    res = run_linmos(cubes, output=tmp_path / "cube.linmos.fits")
    assert res.noise_jy == pytest.approx(ref.noise_jy, rel=1e-6)
    info = read_cube_info(res.mosaic)
    with CubeReader(ref.mosaic) as a, CubeReader(res.mosaic, info) as b:
        flat_plane = a.plane()
        flat_wcs = read_cube_info(ref.mosaic).wcs
        for x, y in [(30, 40), (90, 60), (150, 70), (100, 20)]:
            ra, dec = (float(v) for v in info.wcs.pixel_to_world_values(x, y))
            fx, fy = (int(round(float(v))) for v in flat_wcs.world_to_pixel_values(ra, dec))
            for c in range(2):
                assert b.plane(c)[y, x] == pytest.approx(flat_plane[fy, fx], rel=1e-4, abs=1e-6)


def test_linmos_cube_without_beam_is_one_line_and_inputs_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    east, north = _offsets()
    paths = []
    for k, (ra, dec) in enumerate(CENTRES):
        data = np.stack([gaussian_pb(np.hypot(east, north), f)[None] for f in (887e6, 888e6)])
        paths.append(write_cube(tmp_path / f"SB9.FIELD.beam{k:02d}.cube.fits", data, cube_header(N, PIX_DEG * 3600, [887e6, 888e6], ra=ra, dec=dec), None))
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert main(["linmos", *map(str, paths), "-o", str(tmp_path / "m.fits")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SB9.FIELD.beam00.cube.fits" in err[0] and "--input-beam" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # nothing half-written
    # convolved with the beam given, the same cubes mosaic; the inputs are never modified
    assert main(["convol", *map(str, paths), "--input-beam", "20", "20", "0", "--out-dir", str(tmp_path / "conv")]) == 0
    conv = sorted((tmp_path / "conv").glob("*.conv.fits"))
    assert main(["linmos", *map(str, conv), "-o", str(tmp_path / "m.fits")]) == 0
    assert read_cube_info(tmp_path / "m.fits").nchan == 2
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths] == digest


def test_linmos_cube_channel_blocks_equal_one_channel_at_a_time(tmp_path: Path) -> None:
    """Blocks of channels (one coordinate transform per block) give the channel-by-channel mosaic
    exactly, with a blank channel in one input and NaN pixels in another; the block size follows
    ``block_mb``."""
    from astropy.io import fits

    from flint.linmos import _channel_block, _grid, _inputs, _Responses

    freqs = [800e6, 850e6, 900e6, 950e6, 1000e6]
    paths = _gaussian_inputs(tmp_path, freqs)
    with fits.open(paths[0], mode="update") as hdul:
        hdul[0].data[:, 2] = np.nan  # input A: channel 2 blank (left out of that channel)
    with fits.open(paths[1], mode="update") as hdul:
        hdul[0].data[:, :, 10:20, 30:60] = np.nan  # input B: a blanked patch in every channel
    opts = LinmosOptions(noise="mad", pb_cutoff=0.1)
    whole = run_linmos(paths, opts.with_options(block_mb=1000.0), output=tmp_path / "blocks.fits")
    single = run_linmos(paths, opts.with_options(block_mb=0.0), output=tmp_path / "single.fits")
    for a, b in ((whole.mosaic, single.mosaic), (whole.weight, single.weight)):
        assert a is not None and b is not None
        da, db = fits.getdata(a), fits.getdata(b)
        np.testing.assert_array_equal(np.isnan(da), np.isnan(db))
        np.testing.assert_array_equal(np.nan_to_num(da), np.nan_to_num(db))
    assert whole.noise_jy == single.noise_jy
    # channel 2 holds input B alone: no pixel there has input A's weight
    with CubeReader(whole.weight, read_cube_info(whole.weight)) as wt:
        assert np.count_nonzero(wt.plane(2)) < np.count_nonzero(wt.plane(1))
    items = _inputs(paths, opts)
    _, shape = _grid(items, opts, _Responses(opts))
    assert _channel_block(items, 1, shape, 5, 1000.0) == 5
    assert _channel_block(items, 1, shape, 5, 0.0) == 1
    assert _channel_block(items, 1, shape, 5, 1.0) == 1  # less than one channel's worth: still one at a time
