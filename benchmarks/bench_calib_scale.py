"""Memory and time of flint's self-cal solve, flagging and bandpass at ASKAP channel counts.

Every measurement runs in a fresh subprocess (its own peak RSS), on Measurement Sets made
by ``flint sim`` in the same run, and is printed as a ratio to a reference measured in the
same run:

* **self-cal solve** (per-channel amplitude+phase, the largest normal equations): peak RSS,
  accumulator size and time against the number of solution intervals (default 5, 20, 60),
  for flint's blocked solve and for all intervals accumulated at once (what flint did
  before; ``max_accumulator_bytes`` unlimited);
* **flagging**: ``flint flag`` (packaged ``askap.lua``) against the ``aoflagger`` CLI with the
  same strategy on a copy of the same MS, in its default read mode (all in memory) and with
  ``-indirect-read`` (reordered through a temporary file, like flint), each with its
  default threads and with ``-j 1``;
* **bandpass**: ``run_bandpass`` (defaults) against one flagging pass plus its solves, and
  the old flow (AOFlagger also before the first solve, ``preflag_aoflagger=True``).

Usage::

    .venv/bin/python benchmarks/bench_calib_scale.py [--n-channels 288] [--n-times 60]
        [--n-antennas 36] [--intervals 5 20 60] [--repeat 3] [--keep] [--data KEPT/sim]

The default MS is 36 antennas x 288 channels x 60 integrations (~390 MB of DATA per MS).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Collection
from pathlib import Path

#: run in each subprocess before the measured code: a timer and the peak-RSS report
_PRELUDE = """
import json, resource, sys, time
t0 = time.perf_counter()
"""
_EPILOGUE = """
out = dict(seconds=time.perf_counter() - t0,
           rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           child_rss_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
out.update(globals().get("extra", {}))
print("BENCH_RESULT " + json.dumps(out))
"""


def measure(code: str, setup: str = "") -> dict[str, float]:
    """Run ``setup`` (untimed) then ``code`` in a fresh python; return seconds, peak RSS (MB) and extras."""
    script = textwrap.dedent(setup) + _PRELUDE + textwrap.dedent(code) + _EPILOGUE
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return dict(json.loads(line[len("BENCH_RESULT ") :]))
    raise RuntimeError(f"measurement failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def copy_ms(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def simulate(work: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """Field and bandpass MSs (one beam, RFI on) through the ``flint sim`` CLI."""
    flint = Path(sys.executable).with_name("flint")
    argv = [str(flint), "-q", "sim", str(work / "sim"), "--n-beams", "1", "--n-antennas", str(args.n_antennas),
            "--n-channels", str(args.n_channels), "--n-times", str(args.n_times), "--rfi", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"flint sim failed: {proc.stderr[-2000:]}")
    field, bandpass = find_sim(work / "sim")
    print(f"flint sim: {time.perf_counter() - t0:.1f} s -> {field.name}, {bandpass.name}")
    return field, bandpass


def find_sim(folder: Path) -> tuple[Path, Path]:
    """The field and bandpass MSs ``flint sim`` wrote under ``folder``."""
    mss = sorted(p for p in folder.rglob("*.ms") if (p / "table.dat").exists() and "copy" not in p.name)
    field = next(p for p in mss if "1934" not in p.name)
    bandpass = next(p for p in mss if "1934" in p.name)
    return field, bandpass


def bench_selfcal(field: Path, work: Path, args: argparse.Namespace, read: dict[str, float]) -> None:
    ms = copy_ms(field, work / "selfcal.ms")
    measure(f"""
        import numpy as np
        from flint.ms import MS, add_column, open_table
        ms = MS.cast({str(ms)!r})
        add_column(ms, "MODEL_DATA", like="DATA", fill="zero")
        with open_table(ms.path, mode="rw") as tab:
            for start in range(0, tab.nrows(), 20000):
                d = tab.getcol("DATA", startrow=start, nrow=20000)
                d[..., 1:3] = 0
                tab.putcol("MODEL_DATA", d, startrow=start, nrow=20000)
        """)
    total_s = args.n_times * 9.95
    print("\nself-cal solve (amp+phase, per channel) vs number of solution intervals")
    print(f"{'intervals':>9} {'mode':>14} {'accum MB':>9} {'peak RSS MB':>12} {'time s':>8} {'/read':>6}")
    setup = f"""
        from flint.calibrate._msdata import read_layout
        from flint.calibrate._solve_ms import SolveSpec, solve_ms
        layout = read_layout({str(ms)!r}, "DATA")
        """
    for n in args.intervals:
        for mode, budget in (("blocked", None), ("all at once", 1 << 50)):
            kw = "" if budget is None else f", max_accumulator_bytes={budget}"
            r = measure(f"""
                spec = SolveSpec(column="DATA", model_spectrum=None, interval_s={total_s / n + 1e-3}, chans_per_solution=1,
                                 phase_only=False, ref_antenna=0, min_snr=0.0{kw})
                o = solve_ms(layout, spec)
                extra = dict(acc_mb=o.accumulator_bytes / 1e6, n_int=o.solutions.n_intervals)
                """, setup)
            print(f"{int(r['n_int']):>9} {mode:>14} {r['acc_mb']:>9.1f} {r['rss_mb']:>12.0f} {r['seconds']:>8.2f} {r['seconds'] / read['seconds']:>6.2f}")


def interleaved(
    cases: list[tuple[str, Path, str]], work: Path, repeat: int, child: Collection[str] = ()
) -> dict[str, dict[str, float]]:
    """Measure each ``(label, source MS, code)`` on a fresh copy of the MS (``{ms}`` in the code),
    ``repeat`` rounds taken in turn; median time, largest peak RSS (the child's for ``child`` labels)."""
    import statistics

    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in cases}
    for _ in range(max(1, repeat)):
        for label, src, code in cases:
            ms = copy_ms(src, work / "case.ms")
            r = measure(code.replace("{ms}", str(ms)))
            if label in child:
                r["rss_mb"] = r["child_rss_mb"]
            runs[label].append(r)
    out = {}
    for label, rs in runs.items():
        med = dict(rs[0])
        med["seconds"] = statistics.median(r["seconds"] for r in rs)
        med["rss_mb"] = max(r["rss_mb"] for r in rs)
        out[label] = med
    return out


def bench_flagging(field: Path, work: Path, read: dict[str, float], repeat: int) -> None:
    from flint.flagging import default_strategy

    strategy = str(default_strategy())
    print(f"\nflagging (askap.lua) vs the aoflagger CLI on copies of the same MS (median of {repeat}, taken in turn)")
    exe = str(Path(sys.executable).with_name("flint"))
    cases = [("flint flag CLI (whole baselines)", field, f"""
        import json, subprocess
        out = subprocess.run({[exe, "-q", "flag", "--json"]!r} + ["{{ms}}"], check=True, capture_output=True, text=True).stdout
        extra = dict(flagged=json.loads(out)[0]["flagged_after"])
        """)]
    for label, flags in (("aoflagger CLI (default)", []), ("aoflagger CLI -j 1", ["-j", "1"]),
                         ("aoflagger CLI -indirect-read", ["-indirect-read"]),
                         ("aoflagger CLI -indirect-read -j 1", ["-indirect-read", "-j", "1"])):
        argv = ["aoflagger", *flags, "-strategy", strategy, "-column", "DATA"]
        cases.append((label, field, f"""
            import subprocess
            subprocess.run({argv!r} + ["{{ms}}"], check=True, capture_output=True)
            """))
    res = interleaved(cases, work, repeat, child={label for label, _, _ in cases})
    flint = res[cases[0][0]]
    print(f"{'who':>36} {'time s':>8} {'peak RSS MB':>12} {'/read':>6} {'flint/this':>10}")
    for label, r in res.items():
        print(f"{label:>36} {r['seconds']:>8.2f} {r['rss_mb']:>12.0f} {r['seconds'] / read['seconds']:>6.1f} "
              f"{flint['seconds'] / r['seconds']:>10.2f}")
    print(f"flint flagged {100 * flint['flagged']:.2f} % of the field's visibilities")


def bench_bandpass(bandpass: Path, work: Path, read: dict[str, float], repeat: int) -> None:
    from flint.flagging import calibrator_strategy

    print(f"\nbandpass: run_bandpass vs one flagging pass + its solves (median of {repeat}, taken in turn)")
    cases = [
        ("run_bandpass (defaults)", bandpass, """
            from flint.calibrate import BandpassOptions, run_bandpass
            r = run_bandpass("{ms}", BandpassOptions(plot=False))
            extra = dict(nflag=r.n_flagged_solutions)
            """),
        ("old flow (AOFlagger before + after)", bandpass, """
            from flint.calibrate import BandpassOptions, run_bandpass
            r = run_bandpass("{ms}", BandpassOptions(plot=False, preflag_aoflagger=True))
            extra = dict(nflag=r.n_flagged_solutions)
            """),
        ("flag", bandpass, f"""
            from flint.flagging import FlagOptions, run_flagging
            run_flagging("{{ms}}", FlagOptions(strategy={str(calibrator_strategy())!r}))
            """),
        ("solves", bandpass, """
            import numpy as np
            from flint._askap import b1934_flux_jy
            from flint.calibrate._msdata import read_layout
            from flint.calibrate._solve_ms import SolveSpec, solve_ms
            layout = read_layout("{ms}", "DATA")
            spec = SolveSpec(column="DATA", model_spectrum=np.asarray(b1934_flux_jy(layout.freqs_hz)), interval_s=None,
                             chans_per_solution=1, phase_only=False, ref_antenna=0, min_snr=5.0, outlier_nsigma=8.0)
            for _ in range(2):
                solve_ms(layout, spec)
            """),
    ]
    res = interleaved(cases, work, repeat)
    flag, solves = res["flag"], res["solves"]
    ref = flag["seconds"] + solves["seconds"]
    print(f"  one flagging pass (calibrator.lua):  {flag['seconds']:8.2f} s  ({flag['seconds'] / read['seconds']:.1f}x read)")
    print(f"  two solves:                          {solves['seconds']:8.2f} s  ({solves['seconds'] / read['seconds']:.1f}x read)")
    for label in ("run_bandpass (defaults)", "old flow (AOFlagger before + after)"):
        r = res[label]
        print(f"  {label + ':':<36} {r['seconds']:8.2f} s  {r['rss_mb']:6.0f} MB  ({r['seconds'] / read['seconds']:.1f}x read, "
              f"{r['seconds'] / ref:.2f}x flag pass + solves; {int(r['nflag'])} flagged solutions)")
    full = res["run_bandpass (defaults)"]
    verdict = "within" if full["seconds"] <= 1.5 * ref else "NOT within"
    print(f"  bandpass / (flag pass + solves) = {full['seconds'] / ref:.2f} ({verdict} the 1.5x goal)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-channels", type=int, default=288)
    ap.add_argument("--n-times", type=int, default=60)
    ap.add_argument("--n-antennas", type=int, default=36)
    ap.add_argument("--intervals", type=int, nargs="+", default=[5, 20, 60])
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the flagging and bandpass measurements (median)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["selfcal", "flagging", "bandpass"])
    ap.add_argument("--keep", action="store_true", help="keep the simulated data")
    ap.add_argument("--data", type=Path, default=None, help="reuse the 'sim' folder of a --keep run instead of simulating")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flint_bench_calscale_", dir=Path.cwd()))
    try:
        if args.data is not None:
            field, bandpass = find_sim(args.data)
            print(f"reusing {field} and {bandpass}")
        else:
            field, bandpass = simulate(work, args)
        read = measure(f"""
            from casacore.tables import table
            with table({str(field)!r}, ack=False) as t:
                n = t.getcol("DATA").size
            extra = dict(n_vis=n)
            """)
        print(f"reference: plain python-casacore getcol('DATA'): {read['seconds']:.2f} s, {read['rss_mb']:.0f} MB peak "
              f"({read['n_vis'] / 1e6:.1f} M visibilities)")
        if "selfcal" not in args.skip:
            bench_selfcal(field, work, args, read)
        if "flagging" not in args.skip:
            bench_flagging(field, work, read, args.repeat)
        if "bandpass" not in args.skip:
            bench_bandpass(bandpass, work, read, args.repeat)
    finally:
        if args.keep:
            print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
