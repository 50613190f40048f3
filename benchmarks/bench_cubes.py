"""Benchmark: peak memory of cube linmos and cube assembly as the channel count grows 4x.

Each measurement runs in a fresh Python process and reports its peak resident set size
(``ru_maxrss``), so one step cannot inherit another's peak. Measured in the same run:

* ``baseline``: import the cube stages and read one plane (the interpreter + libraries);
* ``load``: the reference of a non-streaming stage -- read one beam's whole cube with
  ``astropy.io.fits.getdata`` (grows with the cube);
* ``assemble``: :func:`flint.cubes.assemble_cube` of N single-plane images;
* ``linmos``: :func:`flint.linmos.run_linmos` of two overlapping beam cubes of N channels
  (blocks of channels within ``block_mb``, the default);
* ``linmos1``: the same one channel at a time (``block_mb=0``): the reference for the blocks'
  speed-up, printed as a time ratio;
* ``linefree``: :func:`flint.linefree.find_line_free` on one beam cube (the line flow's
  automatic line-free channels), its strips limited to 32 MB (``strip_mb``).

For each it prints peak RSS at N and 4N channels and their ratio (flat = 1.0), plus the
growth above the baseline, next to the growth of ``load`` (what holding the cube costs).

Usage::

    .venv/bin/python benchmarks/bench_cubes.py [--n-chan 24] [--npix 384]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _header(npix: int, nchan: int, ra: float, freq0: float = 887.5e6) -> dict[str, object]:
    return {
        "NAXIS": 4, "NAXIS1": npix, "NAXIS2": npix, "NAXIS3": nchan, "NAXIS4": 1,
        "CTYPE1": "RA---SIN", "CRVAL1": ra, "CRPIX1": npix / 2 + 1, "CDELT1": -0.004, "CUNIT1": "deg",
        "CTYPE2": "DEC--SIN", "CRVAL2": -30.0, "CRPIX2": npix / 2 + 1, "CDELT2": 0.004, "CUNIT2": "deg",
        "CTYPE3": "FREQ", "CRVAL3": freq0, "CRPIX3": 1.0, "CDELT3": 1e6, "CUNIT3": "Hz",
        "CTYPE4": "STOKES", "CRVAL4": 1.0, "CRPIX4": 1.0, "CDELT4": 1.0,
        "BUNIT": "JY/BEAM", "RADESYS": "FK5", "EQUINOX": 2000.0,
    }


def make_data(work: Path, nchan: int, npix: int) -> dict[str, list[str]]:
    """Two beam cubes (streamed to disk) and ``nchan`` single-plane channel images."""
    from astropy.io import fits

    from flint.cubes import BeamTable, CubeWriter

    rng = np.random.default_rng(nchan)
    cubes = []
    for k, ra in enumerate([150.0, 150.0 + 0.5 / np.cos(np.radians(30.0))]):
        path = work / f"SB1.BENCH.beam{k:02d}.n{nchan}.image.cube.fits"
        beams = BeamTable(np.linspace(30, 20, nchan)[:, None], np.full((nchan, 1), 18.0), np.zeros((nchan, 1)))
        with CubeWriter(path, fits.Header(_header(npix, nchan, ra)), beams=beams) as w:
            for c in range(nchan):
                w.write_plane(rng.normal(0, 1e-3, (npix, npix)), chan=c)
        cubes.append(str(path))
    planes = []
    for c in range(nchan):
        h = fits.Header(_header(npix, 1, 150.0, 887.5e6 + c * 1e6))
        h["BMAJ"], h["BMIN"], h["BPA"] = (30 - c * 0.01) / 3600, 18 / 3600, 0.0
        path = work / f"planes{nchan}" / f"x-{c:04d}-image.fits"
        path.parent.mkdir(exist_ok=True)
        fits.PrimaryHDU(rng.normal(0, 1e-3, (1, 1, npix, npix)).astype(np.float32), h).writeto(path)
        planes.append(str(path))
    return {"cubes": cubes, "planes": planes}


def child(op: str, files: dict[str, list[str]], work: Path) -> None:
    """Run one operation and print its peak RSS (MB) and wall time as JSON."""
    t0 = time.perf_counter()
    if op == "baseline":
        import reproject  # noqa: F401

        from flint.cubes import CubeReader
        from flint.linmos import run_linmos  # noqa: F401

        with CubeReader(files["cubes"][0]) as r:
            r.plane(0)
    elif op == "load":
        from astropy.io import fits

        data = fits.getdata(files["cubes"][0], memmap=False)
        float(np.nansum(data))
    elif op == "assemble":
        from flint.cubes import assemble_cube

        assemble_cube([Path(p) for p in files["planes"]], work / f"assembled.{len(files['planes'])}.fits")
    elif op in ("linmos", "linmos1"):
        from flint.linmos import LinmosOptions, run_linmos

        opts = LinmosOptions() if op == "linmos" else LinmosOptions(block_mb=0.0)
        run_linmos([Path(p) for p in files["cubes"]], opts, output=work / f"{op}.{len(files['planes'])}.fits")
    elif op == "linefree":
        from flint.linefree import LineFreeOptions, find_line_free

        find_line_free(files["cubes"][0], LineFreeOptions(strip_mb=32.0))
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rss_mb": rss_kb / 1024.0, "seconds": time.perf_counter() - t0}))


def measure(op: str, files: dict[str, list[str]], work: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", op, "--files", json.dumps(files), "--work", str(work)],
        check=True, capture_output=True, text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-chan", type=int, default=24, help="channels of the small case (the large has 4x)")
    ap.add_argument("--npix", type=int, default=384, help="pixels per side of each plane")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--files", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, json.loads(args.files), Path(args.work))
        return
    with tempfile.TemporaryDirectory(prefix="bench_cubes.") as tmp:
        work = Path(tmp)
        sizes = [args.n_chan, 4 * args.n_chan]
        data = {n: make_data(work, n, args.npix) for n in sizes}
        cube_mb = {n: n * args.npix**2 * 4 / 2**20 for n in sizes}
        print(f"planes {args.npix}x{args.npix} float32; one beam's cube {cube_mb[sizes[0]]:.0f} MB -> {cube_mb[sizes[1]]:.0f} MB (2 beams in linmos)")
        base = measure("baseline", data[sizes[0]], work)["rss_mb"]
        print(f"baseline (interpreter + libraries + one plane): {base:.0f} MB")
        print(f"{'operation':<10} {'N':>5} {'peak RSS MB':>12} {'4N':>5} {'peak RSS MB':>12} {'ratio 4N/N':>11} {'growth MB':>10} {'time 4N s':>10}")
        seconds = {}
        for op in ("load", "assemble", "linmos", "linmos1", "linefree"):
            small, large = (measure(op, data[n], work) for n in sizes)
            seconds[op] = large["seconds"]
            ratio = large["rss_mb"] / small["rss_mb"]
            print(
                f"{op:<10} {sizes[0]:>5} {small['rss_mb']:>12.0f} {sizes[1]:>5} {large['rss_mb']:>12.0f} "
                f"{ratio:>11.2f} {large['rss_mb'] - small['rss_mb']:>10.1f} {large['seconds']:>10.1f}"
            )
        print("flat = ratio ~1.0 and growth << the cube growth; 'load' shows what holding one cube costs")
        print(f"linmos in channel blocks vs one channel at a time (4N): {seconds['linmos'] / seconds['linmos1']:.2f}x the time")


if __name__ == "__main__":
    main()
