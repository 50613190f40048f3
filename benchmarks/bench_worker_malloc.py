"""What Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` costs flint's numpy work (and why flint unsets it).

Dask's nanny exports ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``)
into every worker. Any explicit glibc malloc threshold switches off glibc's dynamic mmap
threshold, so each temporary array over 128 KiB is a new mmap, page-faulted and unmapped again.
:func:`flint.prefect.clusters.keep_glibc_malloc_default` drops the variable for flint's clusters.

The workload is the polarisation flow's convol step in miniature, with no files: radio-beam's
common beam of 8 beams for each of 36 channels (:func:`flint.convol.common_beam`), then 288
planes of 512 x 512 convolved to it (:func:`flint.convol.convolve_plane`). Each configuration
runs in a fresh interpreter; the reference is the same workload without the variable, in the
same run.

Measured (2026-12-03, idle 2-core machine): the pol demo's real ``run_convol`` (8 IQUV cubes,
36 channels, 512 pixels) took 15 s in a plain process, 62 s with the variable set and 63 s in a
Dask LocalCluster worker before the fix; RM synthesis 22 s against 45 s in the flow.

Usage::

    .venv/bin/python benchmarks/bench_worker_malloc.py [--channels 36]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from astropy.wcs import WCS
from flint.convol import common_beam, convolve_plane
from flint.cubes import make_beam

nchan = int(sys.argv[1])
rng = np.random.default_rng(1)
wcs = WCS(naxis=2)
wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
wcs.wcs.cdelt = [-6.0 / 3600, 6.0 / 3600]
wcs.wcs.crpix = [257, 257]
wcs.wcs.crval = [150.0, -30.0]
plane = rng.normal(size=(512, 512))
t0 = time.perf_counter()
targets = []
for c in range(nchan):
    scale = 1.0 + 0.01 * c
    beams = [make_beam(30.0 * scale * (1 + 0.002 * k), 20.0 * scale, 10.0 + 0.5 * k) for k in range(8)]
    targets.append((beams, common_beam(beams)))
t1 = time.perf_counter()
for beams, target in targets:
    for b in beams:
        convolve_plane(plane, wcs, b, target)
t2 = time.perf_counter()
print(json.dumps({"common_beam_s": t1 - t0, "convolve_s": t2 - t1, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(channels: int, trim: bool) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    if trim:
        env["MALLOC_TRIM_THRESHOLD_"] = "65536"
    out = subprocess.run([sys.executable, "-c", _CHILD, str(channels)], capture_output=True, text=True, env=env, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--channels", type=int, default=36)
    args = ap.parse_args()
    ref = _run(args.channels, trim=False)
    dask = _run(args.channels, trim=True)
    print(f"{'configuration':32s} {'common_beam s':>14s} {'convolve s':>11s} {'total ratio':>12s} {'peak RSS MB':>12s}")
    total_ref = ref["common_beam_s"] + ref["convolve_s"]
    for name, r in (("glibc default (flint's workers)", ref), ("MALLOC_TRIM_THRESHOLD_=65536", dask)):
        total = r["common_beam_s"] + r["convolve_s"]
        print(f"{name:32s} {r['common_beam_s']:14.2f} {r['convolve_s']:11.2f} {total / total_ref:12.2f} {r['peak_rss_mb']:12.0f}")


if __name__ == "__main__":
    main()
