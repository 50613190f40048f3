"""Benchmark flint's bandpass solver against a plain python-casacore read of the same data.

Prints, measured in the same run on the same simulated PKS B1934-638 Measurement Set:

* the time of one plain ``getcol("DATA")`` of every visibility (python-casacore);
* the time of a full bandpass solve (read DATA + FLAG + WEIGHT, accumulate the normal
  equations, StEFCal, reference, flag, build the solutions) and its throughput;
* their ratio (target: the solve within 3x of the read);
* informational: ``run_bandpass`` with its default flag -> solve -> apply -> flag rounds;
* if a CASA environment is given (``--casa-python``, a python with ``casatasks``), the
  time of CASA ``gaincal`` (bandpass-like: per-channel, ``solint='inf'``) on a copy of the
  same MS, and the ratio; otherwise it prints that the comparison was skipped.

Usage::

    .venv/bin/python benchmarks/bench_calibrate.py [--n-channels 288] [--n-times 40]
        [--casa-python /tmp/casa_venv/bin/python]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from flint._askap import b1934_flux_jy
from flint.calibrate import BandpassOptions, read_solutions, run_bandpass
from flint.calibrate._msdata import read_layout
from flint.calibrate._solve_ms import SolveSpec, solve_ms
from flint.ms import open_table
from flint.runner import run_command
from flint.sim import SimOptions, simulate_bandpass

T = TypeVar("T")


def _timed(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    times: list[float] = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _plain_read(ms: Path) -> int:
    with open_table(ms) as tab:
        data = tab.getcol("DATA")
    return int(data.size)


def _casa_gaincal(casa_python: Path, ms: Path, work: Path) -> float:
    """Run CASA gaincal (per-channel amplitude+phase, like a bandpass) and return its wall time."""
    import casacore

    home = work / "casa_home"
    (home / ".casa").mkdir(parents=True, exist_ok=True)
    measures = Path(casacore.__file__).parent / "data"
    (home / ".casa" / "config.py").write_text(
        textwrap.dedent(
            f"""
            measurespath = {str(measures)!r}
            measures_auto_update = False
            data_auto_update = False
            skipnetworkcheck = True
            nologfile = True
            """
        )
    )
    script = work / "gaincal_bench.py"
    caltable = work / "bench.G"
    script.write_text(
        textwrap.dedent(
            f"""
            import time
            from casatasks import gaincal, setjy
            ms = {str(ms)!r}
            setjy(vis=ms, field='0', standard='Perley-Butler 2010', usescratch=True)  # model for 1934-638
            t0 = time.perf_counter()
            gaincal(vis=ms, caltable={str(caltable)!r}, solint='inf,1MHz', refant='0', calmode='ap',
                    gaintype='G', minsnr=0.0, combine='scan')
            print('GAINCAL_SECONDS', time.perf_counter() - t0)
            """
        )
    )
    out = run_command([str(casa_python), str(script)], cwd=work, env={"HOME": str(home)})
    for line in out.splitlines():
        if line.startswith("GAINCAL_SECONDS"):
            return float(line.split()[1])
    raise RuntimeError("gaincal did not report its time:\n" + out[-2000:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-channels", type=int, default=288)
    ap.add_argument("--n-times", type=int, default=40)
    ap.add_argument("--n-antennas", type=int, default=36)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--casa-python", type=Path, default=None, help="python of an environment with casatasks")
    ap.add_argument("--keep", action="store_true", help="keep the simulated data")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="flint_bench_cal_"))
    try:
        opts = SimOptions(n_beams=1, n_channels=args.n_channels, n_times=args.n_times, n_antennas=args.n_antennas)
        t0 = time.perf_counter()
        sim = simulate_bandpass(work, opts)
        ms = sim.ms_paths[0]
        layout = read_layout(ms, "DATA")
        n_vis_all = layout.n_rows * layout.n_channels * len(layout.corr_types)
        size_mb = n_vis_all * 8 / 1e6
        print(f"data: {layout.n_rows} rows x {layout.n_channels} channels x {len(layout.corr_types)} correlations "
              f"= {n_vis_all / 1e6:.1f} M visibilities ({size_mb:.0f} MB of DATA); simulated in {time.perf_counter() - t0:.1f} s")

        _plain_read(ms)  # warm the page cache so both timings read from memory
        t_read, _ = _timed(lambda: _plain_read(ms), args.repeat)
        print(f"plain python-casacore read of DATA:       {t_read:8.3f} s  ({n_vis_all / t_read / 1e6:7.1f} M vis/s)")

        spec = SolveSpec(
            column="DATA", model_spectrum=b1934_flux_jy(layout.freqs_hz), interval_s=None, chans_per_solution=1,
            phase_only=False, ref_antenna=0, min_snr=5.0, outlier_nsigma=8.0,
        )
        t_solve, outcome = _timed(lambda: solve_ms(layout, spec), args.repeat)
        n_used = layout.n_rows * layout.n_channels * 2  # XX and YY enter the solve
        print(f"flint bandpass solve (read+accumulate+StEFCal): {t_solve:8.3f} s  "
              f"({n_vis_all / t_solve / 1e6:7.1f} M vis/s read, {n_used / t_solve / 1e6:7.1f} M XX/YY vis/s solved, "
              f"{outcome.n_iter} iterations)")
        ratio = t_solve / t_read
        verdict = "within" if ratio <= 3.0 else "NOT within"
        print(f"solve / read ratio:                        {ratio:8.2f}   ({verdict} the 3x target)")

        truth = np.load(sim.truth)["bandpass"][0]
        gains = outcome.solutions.gains[0]
        ref = truth * np.conj(truth[:1]) / np.abs(truth[:1])
        r = gains / ref
        print(f"accuracy vs truth: max |amp| error {100 * np.nanmax(np.abs(np.abs(r) - 1)):.3f} %, "
              f"max phase error {np.degrees(np.nanmax(np.abs(np.angle(r)))):.3f} deg")

        copy = work / "flagged_copy.ms"
        shutil.copytree(ms, copy)
        t0 = time.perf_counter()
        res = run_bandpass(copy, BandpassOptions(plot=False))
        t_full = time.perf_counter() - t0
        print(f"run_bandpass (preflag, solve, AOFlagger on the residuals x1, solve): {t_full:.2f} s "
              f"({t_full / t_read:.1f}x the read); {res.n_flagged_solutions} flagged solutions")
        assert read_solutions(res.solutions).n_channels == layout.n_channels

        casa = args.casa_python
        if casa is None or not Path(casa).exists():
            print("CASA gaincal comparison: skipped (no --casa-python with casatasks given)")
        else:
            casa_ms = work / "casa_copy.ms"
            shutil.copytree(ms, casa_ms)
            try:
                t_casa = _casa_gaincal(Path(casa), casa_ms, work)
            except Exception as exc:  # report, do not hide
                print(f"CASA gaincal comparison: failed ({str(exc).splitlines()[0]})")
            else:
                print(f"CASA gaincal alone (solint=inf, per channel, ap; setjy and imports not timed): {t_casa:8.3f} s; flint solve is "
                      f"{t_casa / t_solve:.1f}x faster (gaincal / flint = {t_casa / t_solve:.2f})")
    finally:
        if args.keep:
            print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
