"""Benchmark: time and peak memory of flint's stages at 288 channels as the integrations grow.

For each size (288 channels x 120, 480, 1920 integrations of one beam, 36 antennas;
``--quick``: 48 channels x 30, 60, 120) every stage runs in a fresh Python process that
reports its wall time and peak resident set size (``ru_maxrss``), so no stage inherits
another's peak. Stages (``STAGES``; add an entry to measure another):

* ``sim``: :func:`flint.sim.simulate_field` of one beam (writes the MS the others use);
* ``read``: the reference -- a plain python-casacore read of the whole DATA column,
  in row blocks of ~64 MB (what any stage must at least do);
* ``flag``: :func:`flint.flagging.run_flagging` (AOFlagger, flint's ASKAP strategy);
* ``apply``: :func:`flint.calibrate.run_apply` of the true bandpass to DATA -> CORRECTED_DATA.

It prints, per stage and size: wall and CPU time (user + system; on a shared machine the
wall time includes waiting for a core), visibilities per second, the ratio to ``read``,
peak RSS; and per stage the fitted growth exponents (time and RSS ~ size^k; 1 = linear,
0 = flat) and the RSS ratio largest/smallest size. Results go to ``<out>/bench_scale.json``
and a figure of time and RSS against size to ``<out>/bench_scale.png``.

Usage::

    .venv/bin/python benchmarks/bench_scale.py [--quick] [--sizes 120 480 1920]
        [--stages sim read flag apply] [--out benchmarks/results] [--work /tmp/x] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_MB = 64.0


@dataclass(frozen=True)
class Stage:
    """One measured stage: ``run(ms_path, work_dir, n_channels, n_times)`` in a child process."""

    name: str
    run: Callable[[Path, Path, int, int], None]
    needs_ms: bool = True
    """False only for the stage that writes the MS."""


def _sim_options(n_channels: int, n_times: int) -> Any:
    from flint.sim import SimOptions

    return SimOptions(n_beams=1, n_channels=n_channels, n_times=n_times, chunk_mb=CHUNK_MB, seed=7)


def _ms_path(work: Path, n_channels: int, n_times: int) -> Path:
    from flint.naming import beam_ms_name, field_name

    return work / beam_ms_name(_sim_options(n_channels, n_times).sbid, field_name("SIM_FIELD"), 0)


def run_sim(ms: Path, work: Path, n_channels: int, n_times: int) -> None:
    from flint.sim import simulate_field

    simulate_field(work, _sim_options(n_channels, n_times))


def run_read(ms: Path, work: Path, n_channels: int, n_times: int) -> None:
    import casacore.tables as ct

    with ct.table(str(ms), ack=False) as t:
        step = max(1, int(CHUNK_MB * 1e6 // (n_channels * 4 * 8)))
        for start in range(0, t.nrows(), step):
            t.getcol("DATA", startrow=start, nrow=min(step, t.nrows() - start))


def run_flag(ms: Path, work: Path, n_channels: int, n_times: int) -> None:
    from flint.flagging import run_flagging

    run_flagging(ms)


def run_apply(ms: Path, work: Path, n_channels: int, n_times: int) -> None:
    from flint.calibrate import run_apply as apply
    from flint.calibrate.aocal import AOSolutions, write_solutions

    truth = np.load(next(work.glob("*.truth.npz")))
    sols = work / "truth_bandpass.bin"
    write_solutions(sols, AOSolutions.from_gains(truth["bandpass"][:1]))
    apply(ms, sols)


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("sim", run_sim, needs_ms=False),
        Stage("read", run_read),
        Stage("flag", run_flag),
        Stage("apply", run_apply),
    )
}


def child(stage: str, work: Path, n_channels: int, n_times: int) -> None:
    """Run one stage and print its wall time and peak RSS as JSON (the last stdout line)."""
    t0 = time.perf_counter()
    STAGES[stage].run(_ms_path(work, n_channels, n_times), work, n_channels, n_times)
    dt = time.perf_counter() - t0
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": dt, "cpu_s": use.ru_utime + use.ru_stime, "peak_rss_mb": use.ru_maxrss / 1024.0}))


def measure(stage: str, work: Path, n_channels: int, n_times: int) -> dict[str, float]:
    argv = [sys.executable, __file__, "--child", stage, "--work", str(work), "--n-channels", str(n_channels), "--n-times", str(n_times)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{stage} at {n_times} integrations failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _slope(x: list[float], y: list[float]) -> float:
    if len(x) < 2:
        return float("nan")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for stage in dict.fromkeys(r["stage"] for r in results):
        rs = [r for r in results if r["stage"] == stage]
        x = [r["n_vis"] for r in rs]
        ax_t.loglog(x, [r["seconds"] for r in rs], "o-", label=stage)
        ax_m.semilogx(x, [r["peak_rss_mb"] for r in rs], "o-", label=stage)
    ax_t.set_xlabel("visibilities (rows x channels x correlations)")
    ax_t.set_ylabel("wall time (s)")
    ax_m.set_xlabel("visibilities (rows x channels x correlations)")
    ax_m.set_ylabel("peak RSS (MB)")
    ax_m.set_ylim(bottom=0)
    ax_t.legend()
    ax_m.legend()
    fig.suptitle("flint at growing size (one beam, 36 antennas)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (48 channels x 30/60/120 integrations)")
    ap.add_argument("--n-channels", type=int, default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="numbers of integrations")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the Measurement Sets")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n-times", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    n_chan = args.n_channels or (48 if args.quick else 288)
    if args.child:
        child(args.child, args.work, n_chan, args.n_times)
        return 0
    sizes = args.sizes or ([30, 60, 120] if args.quick else [120, 480, 1920])
    stages = ["sim", *[s for s in args.stages if s != "sim"]]
    args.out.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="bench_scale.", dir=args.work))
    nbl = 36 * 35 // 2
    results: list[dict[str, Any]] = []
    print(f"{'stage':<8}{'n_times':>8}{'n_vis':>14}{'time s':>10}{'cpu s':>9}{'vis/s':>12}{'x read':>8}{'RSS MB':>9}", flush=True)
    try:
        for n_times in sizes:
            work = base / f"t{n_times}"
            work.mkdir()
            n_vis = n_times * nbl * n_chan * 4
            row: dict[str, dict[str, float]] = {}
            for stage in stages:
                row[stage] = measure(stage, work, n_chan, n_times)
            for stage, r in row.items():
                ratio = r["seconds"] / row["read"]["seconds"] if "read" in row else float("nan")
                results.append({"stage": stage, "n_times": n_times, "n_channels": n_chan, "n_vis": n_vis, **r, "x_read": ratio})
                print(f"{stage:<8}{n_times:>8}{n_vis:>14.4g}{r['seconds']:>10.1f}{r.get('cpu_s', float('nan')):>9.1f}{n_vis / r['seconds']:>12.3g}"
                      f"{ratio:>8.2f}{r['peak_rss_mb']:>9.0f}", flush=True)
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print("\ngrowth: wall time, CPU time and RSS ~ size^k (1 = linear, 0 = flat); RSS largest/smallest size")
    for stage in stages:
        rs = [r for r in results if r["stage"] == stage]
        x = [float(r["n_vis"]) for r in rs]
        kt = _slope(x, [r["seconds"] for r in rs])
        kc = _slope(x, [r["cpu_s"] for r in rs])
        km = _slope(x, [r["peak_rss_mb"] for r in rs])
        print(f"  {stage:<8} time k={kt:.2f}  CPU k={kc:.2f}  RSS k={km:.3f}  RSS ratio {rs[-1]['peak_rss_mb'] / rs[0]['peak_rss_mb']:.2f}")
    (args.out / "bench_scale.json").write_text(json.dumps({"chunk_mb": CHUNK_MB, "cpus": os.cpu_count(), "results": results}, indent=1))
    plot(results, args.out / "bench_scale.png")
    print(f"\nwrote {args.out / 'bench_scale.json'} and {args.out / 'bench_scale.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
