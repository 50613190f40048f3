"""Cube I/O (BEAMS table, axis orders, assembly) and ``flint convol`` on cubes, by hand-checked numbers.

A point source restored with a beam of area Omega_in and convolved to Omega_out keeps its
peak in Jy/beam, and its pixel sum grows by Omega_out / Omega_in (its flux in Jy is
unchanged): for circular beams of FWHM a and b that is (b / a)**2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _cube_synth import cube_header, gaussian, write_cube
from astropy.io import fits

from flint.cli import main
from flint.convol import ConvolOptions, run_convol
from flint.cubes import BeamTable, CubeReader, CubeWriter, assemble_cube, read_cube_info
from flint.errors import FlintImageError

PIX = 2.0
N = 96
FREQS = [887.5e6, 888.5e6, 889.5e6]


def _point_cube(path: Path, fwhms: list[float], stokes: list[int] | None = None, stokes_first: bool = False, amp: float = 1.5) -> Path:
    """A point source restored per channel with a circular beam of FWHM ``fwhms[c]`` (0: blank channel)."""
    stokes = stokes or [1]
    data = np.zeros((len(fwhms), len(stokes), N, N))
    beams = np.zeros((len(fwhms), len(stokes), 3))
    for c, f in enumerate(fwhms):
        for p in range(len(stokes)):
            data[c, p] = gaussian(N, PIX, f, f, 0.0, amp * (p + 1)) if f > 0 else np.nan
            beams[c, p] = (f, f, 0.0)
    return write_cube(path, data, cube_header(N, PIX, FREQS[: len(fwhms)], stokes, stokes_first=stokes_first), beams)


def _peak_and_sum(plane: np.ndarray) -> tuple[float, float]:
    return float(np.nanmax(plane)), float(np.nansum(plane))


# --------------------------------------------------------------------------- I/O
@pytest.mark.parametrize("stokes_first", [False, True])
def test_cube_write_read_roundtrip_with_beams_table(tmp_path: Path, stokes_first: bool) -> None:
    hdr = cube_header(8, PIX, FREQS, [1, 2, 3, 4], stokes_first=stokes_first)
    table = BeamTable.from_beams([[None if (c, p) == (1, 2) else _beam(20 + c, 10 + p, 5.0 * c) for p in range(4)] for c in range(3)])
    out = tmp_path / "c.fits"
    with CubeWriter(out, hdr, beams=table) as w:
        for c in range(3):
            for p in range(4):
                w.write_plane(np.full((8, 8), 10.0 * c + p), chan=c, pol=p)
    with fits.open(out) as hdul:  # the layout CASA and ASKAP write
        assert hdul[0].header["CASAMBM"] is True
        assert hdul[1].name == "BEAMS" and hdul[1].header["NCHAN"] == 3 and hdul[1].header["NPOL"] == 4
        assert hdul[1].columns["BMAJ"].unit == "arcsec" and hdul[1].columns["BPA"].unit == "deg"
        assert list(hdul[1].data["CHAN"][:5]) == [0, 0, 0, 0, 1] and list(hdul[1].data["POL"][:5]) == [0, 1, 2, 3, 0]
        assert hdul[0].data.shape == ((3, 4, 8, 8) if stokes_first else (4, 3, 8, 8))
    info = read_cube_info(out)
    assert (info.nchan, info.npol, info.stokes) == (3, 4, (1, 2, 3, 4))
    assert info.freqs_hz == pytest.approx(FREQS)
    assert info.beams is not None and info.beams_from_table
    assert info.beams.as_tuple(2, 3) == pytest.approx((22.0, 13.0, 10.0))
    assert info.beams.beam(1, 2) is None  # blank row (NaN) stays blank
    with CubeReader(out) as r:
        for c in range(3):
            for p in range(4):
                assert np.all(r.plane(c, p) == 10.0 * c + p)


def _beam(a: float, b: float, pa: float) -> object:
    from flint.cubes import make_beam

    return make_beam(a, b, pa)


def test_cube_writer_error_leaves_nothing(tmp_path: Path) -> None:
    hdr = cube_header(8, PIX, FREQS)
    with pytest.raises(ValueError, match="plane of shape"):
        with CubeWriter(tmp_path / "c.fits", hdr) as w:
            w.write_plane(np.zeros((8, 8)), chan=0)
            w.write_plane(np.zeros((4, 4)), chan=1)
    assert list(tmp_path.iterdir()) == []


def test_assemble_cube_from_channel_images(tmp_path: Path) -> None:
    planes = []
    for c, f in enumerate(FREQS):  # WSClean-like per-channel images, given out of order
        h = cube_header(16, PIX, [f])
        h["BMAJ"], h["BMIN"], h["BPA"] = (20 + c) / 3600, (10 + c) / 3600, 3.0 * c
        p = tmp_path / f"x-{c:04d}-image.fits"
        fits.PrimaryHDU(np.full((1, 1, 16, 16), float(c), dtype=np.float32), h).writeto(p)
        planes.append(p)
    out = assemble_cube(planes[::-1], tmp_path / "x.image.cube.fits")
    info = read_cube_info(out)
    assert info.nchan == 3 and info.freqs_hz == pytest.approx(FREQS)
    assert info.beams is not None and info.beams.as_tuple(2) == pytest.approx((22.0, 12.0, 6.0))
    with CubeReader(out) as r:
        assert [float(r.plane(c)[0, 0]) for c in range(3)] == [0.0, 1.0, 2.0]
    with pytest.raises(FlintImageError, match="missing or repeated"):
        assemble_cube([planes[0], planes[0]], tmp_path / "bad.fits")
    assert not (tmp_path / "bad.fits").exists()


# --------------------------------------------------------------------------- convol
def test_convol_cube_natural_per_channel_common_beam(tmp_path: Path) -> None:
    a = _point_cube(tmp_path / "a.fits", [20.0, 30.0, 0.0])  # channel 2 flagged in a
    b = _point_cube(tmp_path / "b.fits", [25.0, 24.0, 22.0])
    res = run_convol([a, b])
    assert res.channel_beams is not None
    # hand: circular beams -> the common beam of a channel is its largest beam
    assert [cb[0] for cb in res.channel_beams] == pytest.approx([25.0, 30.0, 22.0], rel=1e-3)
    assert res.beam[0] == pytest.approx(30.0, rel=1e-3)
    ina, inb = read_cube_info(a), read_cube_info(b)
    outa, outb = read_cube_info(res.images[0]), read_cube_info(res.images[1])
    assert outa.beams is not None and outa.beams_from_table and "BMAJ" not in outa.header
    assert outa.beams.as_tuple(1)[0] == pytest.approx(30.0, rel=1e-3)
    with CubeReader(a, ina) as ra, CubeReader(b, inb) as rb, CubeReader(res.images[0], outa) as oa, CubeReader(res.images[1], outb) as ob:
        for c, (fa, fb, common) in enumerate([(20.0, 25.0, 25.0), (30.0, 24.0, 30.0), (0.0, 22.0, 22.0)]):
            for src, out, f in ((ra, oa, fa), (rb, ob, fb)):
                if f == 0:
                    assert np.all(np.isnan(out.plane(c)))  # blank stays blank
                    continue
                peak_in, sum_in = _peak_and_sum(src.plane(c))
                peak, total = _peak_and_sum(out.plane(c))
                assert peak == pytest.approx(peak_in, rel=0.01)  # Jy/beam peak of a point source
                assert total / sum_in == pytest.approx((common / f) ** 2, rel=0.005)  # Omega_out / Omega_in


def test_convol_cube_total_mode_4d_either_axis_order(tmp_path: Path) -> None:
    outs = []
    for order in (False, True):
        d = tmp_path / ("sf" if order else "fs")
        d.mkdir()
        a = _point_cube(d / "a.fits", [20.0, 26.0], stokes=[1, 2], stokes_first=order)
        b = _point_cube(d / "b.fits", [22.0, 18.0], stokes=[1, 2], stokes_first=order)
        res = run_convol([a, b], ConvolOptions(mode="total"))
        assert res.beam[0] == pytest.approx(26.0, rel=1e-3)
        info = read_cube_info(res.images[1])
        assert info.beams is not None and info.beams.is_uniform()
        assert info.header["BMAJ"] * 3600 == pytest.approx(26.0, rel=1e-3)
        with CubeReader(res.images[1], info) as r:
            planes = {(c, p): r.plane(c, p) for c in range(2) for p in range(2)}
        for (c, p), plane in planes.items():
            f = [22.0, 18.0][c]
            peak, total = _peak_and_sum(plane)
            assert peak == pytest.approx(1.5 * (p + 1), rel=0.01)  # Stokes planes keep their own peaks
            src = gaussian(N, PIX, f, f, 0.0, 1.5 * (p + 1))
            assert total / src.sum() == pytest.approx((26.0 / f) ** 2, rel=0.005)
        outs.append(planes)
    for key in outs[0]:  # same numbers whatever the axis order on disk
        assert np.allclose(outs[0][key], outs[1][key], atol=1e-6)


def test_convol_cube_cli_and_missing_beam(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a cube like the one the issue reports, (1, 36, 12, 12): no BEAMS table, no BMAJ
    data = np.zeros((36, 1, 12, 12))
    data[:, 0, 6, 6] = 1.0
    bare = write_cube(tmp_path / "bare.fits", data, cube_header(12, PIX, [887.5e6 + k * 1e6 for k in range(36)]), None)
    assert main(["convol", str(bare), "--out-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bare.fits" in err[0] and "--input-beam" in err[0]
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
    assert main(["convol", str(bare), "--input-beam", "10", "10", "0", "--target-beam", "12", "12", "0", "--out-dir", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "bare.conv.fits" in out
    info = read_cube_info(tmp_path / "o" / "bare.conv.fits")
    assert info.nchan == 36 and info.beams is not None and info.beams.as_tuple(35) == pytest.approx((12.0, 12.0, 0.0))
