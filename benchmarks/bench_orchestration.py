"""Benchmark flint's orchestration (Prefect on Dask) against plain calls, all in one run.

On one simulated field (``--n-beams``, default 2, one self-cal round, images of
``--image-size`` pixels with one wsclean thread per worker) it prints:

(a) overhead: the continuum flow's wall time on a warm 2-worker LocalCluster vs
    * the sum of its stages called as plain functions in sequence (same data, same order;
      in a process with a Dask worker's one-thread BLAS/OpenMP limits, and for information
      in the benchmark's own process),
    * the ideal 2-worker time: those measured stage times list-scheduled on 2 workers
      along the flow's dependencies (per-beam chains in parallel, then the mosaic);
    target: flow <= 1.03 x ideal;
    and the 1-worker flow's time split into inside its task runs (each against its plain call:
    the stages' own run-to-run scatter) and outside them (the orchestration itself: on one
    worker the tasks run one after another); ``--overhead-only`` measures this part alone;
(b) warm path: submit -> first task running with a :class:`~flint.prefect.warm.WarmSession`
    (median of ``--repeats`` probe flows) vs a cold submit (temporary Prefect server + new
    LocalCluster, as ``flint flow`` does without ``PREFECT_API_URL``); target <= 2 s;
(c) parallel efficiency 1 -> 2 workers: T(1 worker) / (2 x T(2 workers)) for the whole flow
    and for its per-beam part (first task start -> last per-beam task end); target >= 90 %;
    and the same ratio for the per-beam chains run as plain calls in 1 vs 2 processes (no
    Prefect, no Dask): what the machine allows, the reference for the workers' figure.

Usage::

    .venv/bin/python benchmarks/bench_orchestration.py [--n-beams 2] [--image-size 1024]
        [--pixel-arcsec 6] [--repeats 3] [--work-dir DIR] [--api-url URL] [--overhead-only | --efficiency-only]

The machine is shared: the script prints its load average; rerun when it was busy.
"""

from __future__ import annotations

import argparse
import heapq
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

LOCAL = {
    "cluster_class": "distributed.LocalCluster",
    "cluster_kwargs": {"threads_per_worker": 1, "processes": True, "memory_limit": "4GB", "dashboard_address": ":0"},
}


def _cluster(n_workers: int) -> dict[str, Any]:
    spec = {**LOCAL, "cluster_kwargs": {**LOCAL["cluster_kwargs"], "n_workers": n_workers}}  # type: ignore[dict-item]
    return spec


def _strategy(work: Path, size: int, pixel: float) -> Path:
    from flint.strategy import default_strategy_path

    data = yaml.safe_load(default_strategy_path().read_text())
    data["defaults"]["wsclean"].update(size=size, scale_arcsec=pixel, threads=1)
    out = work / "bench_strategy.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


# ------------------------------------------------------------------ (a) plain calls
def plain_calls(science: list[Path], solutions: dict[int, str], reference: Path, strategy: Path, out: Path) -> dict[str, float]:
    """The continuum flow's stages as plain calls in sequence; ``{task name: seconds}``."""
    from flint.calibrate import run_apply, run_selfcal
    from flint.convol import run_convol
    from flint.flagging import run_flagging
    from flint.linmos import run_linmos
    from flint.ms import copy_ms
    from flint.naming import parse_name, product_name
    from flint.prefect.flows import _calibrated_flag_options, find_by_beam
    from flint.source_finding import run_source_finding
    from flint.strategy import load_strategy
    from flint.validation import run_validation

    strat = load_strategy(strategy)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        res = fn(*args, **kw)
        times[name] = time.perf_counter() - t0
        return res

    mss = find_by_beam([os.fspath(p) for p in science], ".ms")
    n = strat.n_rounds
    images: dict[int, dict[int, Any]] = {r: {} for r in range(n + 1)}
    for beam, path in mss.items():
        lb = f"beam{beam:02d}"
        ms = timed(f"copy-{lb}", copy_ms, path, out / Path(path).name, overwrite=True)
        ms = timed(f"apply-{lb}", run_apply, ms, solutions[beam], strat.options_for("apply", 0)).ms
        timed(f"flag-{lb}", run_flagging, ms, _calibrated_flag_options(strat, 0))
        images[0][beam] = timed(f"image-{lb}.round0", image_like_flow, ms, strat, 0, out, None)
        for r in range(1, n + 1):
            res = timed(f"selfcal-{lb}.round{r}", run_selfcal, ms, strat.options_for("selfcal", r))
            ms = getattr(res, "ms", ms)
            images[r][beam] = timed(f"image-{lb}.round{r}", image_like_flow, ms, strat, r, out, images[r - 1][beam])
    first = parse_name(next(iter(mss.values())))
    mosaic = None
    for r, imgs in images.items():
        conv = timed(f"convol-round{r}", run_convol, [imgs[b].image for b in sorted(imgs)], strat.options_for("convol", r))
        name = out / product_name(first.sbid, first.field, round=r, suffix="linmos.fits")
        mosaic = timed(f"linmos-round{r}", run_linmos, list(conv.images), strat.options_for("linmos", r), output=name).mosaic
    cat = timed(f"source_finding-round{n}", run_source_finding, mosaic, strat.options_for("source_finding", n)).catalogue
    timed(f"validation-round{n}", run_validation, cat, reference, strat.options_for("validation", n), image=mosaic, output_dir=out)
    return times


def image_like_flow(ms: Any, strat: Any, round: int, out: Path | str, previous: Any) -> Any:
    """:func:`flint.imaging.run_imaging` as the flow's image task calls it: from round 1 on,
    inside a clean mask made from the previous round's image (when the strategy has masking)."""
    from flint.imaging import product_base, run_imaging
    from flint.masking import make_clean_mask

    options = strat.options_for("wsclean", round)
    if previous is not None and "masking" in strat.tools:
        mask_path = Path(out) / f"{product_base(ms, round)}.mask.fits"
        mask = make_clean_mask(previous.outer_image or previous.image, strat.options_for("masking", round), output=mask_path)
        options = options.with_options(fits_mask=mask.mask)
    return run_imaging(ms, options, out_dir=out, round=round)


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its reaped children (and theirs)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def beam_chain(ms_path: str, solutions: str, strategy: str, out: str) -> tuple[float, float]:
    """One beam's chain as plain calls (copy -> apply -> flag -> image -> [self-cal -> image]).

    Returns the wall-clock ``(start, end)`` of the work (imports excluded).
    """
    from flint.calibrate import run_apply, run_selfcal
    from flint.flagging import run_flagging
    from flint.ms import copy_ms
    from flint.prefect.flows import _calibrated_flag_options
    from flint.strategy import load_strategy

    strat: Any = load_strategy(strategy)
    t0 = time.time()
    ms = copy_ms(ms_path, Path(out) / Path(ms_path).name, overwrite=True)
    ms = run_apply(ms, solutions, strat.options_for("apply", 0)).ms
    run_flagging(ms, _calibrated_flag_options(strat, 0))
    img = image_like_flow(ms, strat, 0, out, None)
    for r in range(1, strat.n_rounds + 1):
        ms = getattr(run_selfcal(ms, strat.options_for("selfcal", r)), "ms", ms)
        img = image_like_flow(ms, strat, r, out, img)
    return t0, time.time()


def chains_in_processes(science: list[Path], solutions: dict[int, str], strategy: Path, out: Path, processes: int) -> float:
    """The per-beam chains as plain calls in ``processes`` processes at once: the machine's own
    parallel speed, without Prefect or Dask (the reference for the workers' efficiency)."""
    from flint.naming import parse_name

    out.mkdir(parents=True, exist_ok=True)
    with in_worker_like_processes(processes) as pool:
        futures = [pool.submit(beam_chain, os.fspath(p), solutions[parse_name(p).beam or 0], os.fspath(strategy), os.fspath(out)) for p in science]
        spans = [f.result() for f in futures]
    return max(e for _, e in spans) - min(s for s, _ in spans)


#: what a Dask nanny sets in its workers' environment (distributed.nanny.pre-spawn-environ)
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_TRIM_THRESHOLD_": "65536"}


def in_worker_like_processes(processes: int) -> Any:
    """A spawn process pool whose processes get a Dask worker's thread limits."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    saved = {k: os.environ.get(k) for k in WORKER_ENV}
    os.environ.update(WORKER_ENV)
    try:
        pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
        pool.submit(int).result()  # start them now, with this environment
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return pool


def _deps(names: list[str]) -> dict[str, list[str]]:
    """The continuum flow's dependencies between task names (as the flow wires them)."""
    beams = sorted({n.split("-")[1].split(".")[0] for n in names if "-beam" in n})
    rounds = sorted({int(n.rsplit("round", 1)[1]) for n in names if n.startswith("linmos-")})
    deps: dict[str, list[str]] = {}
    for b in beams:
        chain = [f"copy-{b}", f"apply-{b}", f"flag-{b}", f"image-{b}.round0"]
        for r in rounds[1:]:
            chain += [f"selfcal-{b}.round{r}", f"image-{b}.round{r}"]
        deps[chain[0]] = []
        for prev, cur in zip(chain, chain[1:], strict=False):
            deps[cur] = [prev]
    for r in rounds:
        deps[f"convol-round{r}"] = [f"image-{b}.round{r}" for b in beams]
        deps[f"linmos-round{r}"] = [f"convol-round{r}"]
    last = rounds[-1]
    deps[f"source_finding-round{last}"] = [f"linmos-round{last}"]
    deps[f"validation-round{last}"] = [f"source_finding-round{last}"]
    return deps


def list_schedule(durations: dict[str, float], deps: dict[str, list[str]], workers: int) -> float:
    """Makespan of greedy list scheduling (ready tasks in name order) on ``workers``."""
    done: dict[str, float] = {}
    free = [0.0] * workers
    pending = dict(deps)
    while pending:
        ready = sorted((max([done[d] for d in ds] or [0.0]), n) for n, ds in pending.items() if all(d in done for d in ds))
        ready_at, name = ready[0]
        start = max(ready_at, heapq.heappop(free))
        done[name] = start + durations[name]
        heapq.heappush(free, done[name])
        del pending[name]
    return max(done.values())


# ------------------------------------------------------------------ runs through Prefect
def flow_run(session: Any, params: dict[str, Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    h = session.submit("continuum", params)
    h.result()
    return time.perf_counter() - t0, h


def per_beam_span(handle: Any) -> float:
    rows = [r for r in handle.timeline() if r["start"] is not None and r["end"] is not None]
    beam_rows = [r for r in rows if "-beam" in r["name"]]
    return max(r["end"] for r in beam_rows) - min(r["start"] for r in rows)


def _flow1(session_cls: Any, api: str, params: Callable[[str], dict[str, Any]], work: Path, args: Any, loads: list[float]) -> tuple[float, float, Any]:
    """The continuum flow on a warm 1-worker cluster: ``(wall s, CPU s, handle)``."""
    c0 = cpu_seconds()
    with session_cls(_cluster(1), api_url=api) as s1:
        flow1, h1 = flow_run(s1, params("flow1"))
        loads.append(os.getloadavg()[0])
    cpu_flow1 = cpu_seconds() - c0
    _drop(work / "flow1", args.keep)
    print(f"flow on 1 worker: {flow1:.1f} s (CPU {cpu_flow1:.1f} s)", flush=True)
    return flow1, cpu_flow1, h1


def _task_table(handle: Any, stage_s: dict[str, float], flow1: float) -> None:
    """Split the 1-worker flow's time: inside its task runs (per task, against the plain call) and outside them.

    On one worker the task runs are serial, so ``flow - sum(task runs)`` is the time the
    orchestration spends between and around them (submission, scheduling, Prefect's state
    changes and result persistence); ``task run - plain call`` is the stage's own run-to-run
    scatter plus whatever the task wrapper costs inside the run.
    """
    rows = {r["name"]: r["end"] - r["start"] for r in handle.timeline() if r["start"] is not None and r["end"] is not None}
    inside = sum(rows.values())
    plain = sum(stage_s.values())
    print(f"    the 1-worker flow's {len(rows)} task runs: {inside:7.1f} s inside them, {flow1 - inside:6.1f} s outside "
          f"({(flow1 - inside) / flow1:+.1%} of the flow, {(flow1 - inside) / max(len(rows), 1):.2f} s per task)")
    print(f"    inside the task runs vs the plain calls: {inside:.1f} s vs {plain:.1f} s ({(inside - plain) / flow1:+.1%} of the flow)")
    for name, sec in stage_s.items():
        got = rows.get(name)
        print(f"        {name:28s} plain {sec:7.2f} s   task run " + (f"{got:7.2f} s ({got / sec:5.3f} x)" if got else "      -"))


def _overhead_only(session_cls: Any, api: str, params: Callable[[str], dict[str, Any]], stage_s: dict[str, float],
                   cpu_plain: float, work: Path, args: Any, loads: list[float]) -> None:
    """(a)'s 1-worker overhead alone: the flow on a warm 1-worker cluster against the plain calls."""
    flow1, cpu_flow1, h1 = _flow1(session_cls, api, params, work, args, loads)
    plain = sum(stage_s.values())
    print(f"\n(a) continuum flow on a warm 1-worker cluster vs the same stages as plain calls ({len(stage_s)} stages)")
    print(f"    plain calls {plain:7.1f} s, CPU {cpu_plain:7.1f} s; flow {flow1:7.1f} s, CPU {cpu_flow1:7.1f} s -> overhead "
          f"(flow - plain) / flow = {(flow1 - plain) / flow1:+.1%} wall, {(cpu_flow1 - cpu_plain) / cpu_flow1:+.1%} CPU (target <= 3 %)")
    _task_table(h1, stage_s, flow1)
    loads.append(os.getloadavg()[0])
    print(f"\nload average (1 min) at the start and after each measurement: {', '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} CPUs")


def _efficiency_only(session_cls: Any, start_server: Any, args: Any, params: Callable[[str], dict[str, Any]], work: Path,
                     loads: list[float]) -> None:
    """(c) alone: the continuum flow on warm 2- and 1-worker clusters, T1 / (2 x T2)."""
    if args.api_url:
        api, stop = args.api_url, (lambda: None)
    else:
        info, stop = start_server()
        api = info.api_url
    try:
        with session_cls(_cluster(2), api_url=api) as s2:
            flow2, h2 = flow_run(s2, params("flow2"))
            loads.append(os.getloadavg()[0])
        _drop(work / "flow2", args.keep)
        print(f"flow on 2 workers: {flow2:.1f} s", flush=True)
        flow1, _, h1 = _flow1(session_cls, api, params, work, args, loads)
    finally:
        stop()
    span1, span2 = per_beam_span(h1), per_beam_span(h2)
    print(f"\n(c) parallel efficiency 1 -> 2 workers ({args.n_beams} beams)")
    print(f"    whole flow: T1 {flow1:.1f} s, T2 {flow2:.1f} s -> {flow1 / (2 * flow2):.1%}")
    print(f"    per-beam part: {span1:.1f} s vs {span2:.1f} s -> {span1 / (2 * span2):.1%} (target >= 90 %)")
    print(f"\nload average (1 min) at the start and after each measurement: {', '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} CPUs")
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)


def _drop(path: Path, keep: bool) -> None:
    """Delete a measurement's outputs (realistic sizes need many GB per run)."""
    if not keep:
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-beams", type=int, default=2)
    ap.add_argument("--n-channels", type=int, default=None, help="channels of the simulated MSs (default: the simulator's)")
    ap.add_argument("--n-times", type=int, default=None, help="integrations of the simulated MSs (default: the simulator's)")
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--pixel-arcsec", type=float, default=6.0)
    ap.add_argument("--repeats", type=int, default=3, help="probe flows for the warm-path latency")
    ap.add_argument("--skip-main", action="store_true", help="skip the plain calls in this process (information only)")
    ap.add_argument(
        "--overhead-only", action="store_true",
        help="measure (a)'s 1-worker overhead only: skip the 2-process chains, the 2-worker flow and (b), (c)",
    )
    ap.add_argument(
        "--efficiency-only", action="store_true",
        help="measure (c)'s 1 -> 2 worker efficiency of the flow alone: no plain calls, no 2-process chains, no (b)",
    )
    ap.add_argument("--keep", action="store_true", help="keep every run's outputs (default: delete each after it is measured)")
    ap.add_argument("--work-dir", type=Path, default=None)
    ap.add_argument(
        "--api-url", default=None,
        help="run the warm sessions against this Prefect API (e.g. 'flint server start' on PostgreSQL); default: a temporary SQLite server",
    )
    args = ap.parse_args()

    from flint.calibrate import run_bandpass
    from flint.ms import copy_ms
    from flint.prefect.running import start_temporary_server, submit_flow
    from flint.prefect.warm import WarmSession
    from flint.sim import SimOptions, simulate_bandpass, simulate_field

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="flint-bench-orch-"))
    work.mkdir(parents=True, exist_ok=True)
    loads = [os.getloadavg()[0]]
    print(f"work dir {work}; load average before: {loads[0]:.2f}", flush=True)
    size = {k: v for k, v in (("n_channels", args.n_channels), ("n_times", args.n_times)) if v is not None}
    opts = SimOptions.create(n_beams=args.n_beams, **size)
    bp = simulate_bandpass(work / "data", opts)
    field = simulate_field(work / "data", opts)
    sols = {}
    for beam, ms in zip(bp.beams, bp.ms_paths, strict=True):
        sols[beam] = os.fspath(run_bandpass(copy_ms(ms, work / "bp" / ms.name, overwrite=True)).solutions)
    print(f"data: {args.n_beams} beams x {opts.n_channels} channels x {opts.n_times} integrations", flush=True)
    strategy = _strategy(work, args.image_size, args.pixel_arcsec)
    assert field.sky_csv is not None
    sky = field.sky_csv

    def params(out: str) -> dict[str, Any]:
        return {
            "science": [os.fspath(p) for p in field.ms_paths],
            "solutions": os.fspath(work / "bp"),
            "out_dir": os.fspath(work / out),
            "reference": os.fspath(sky),
            "strategy": os.fspath(strategy),
        }

    if args.efficiency_only:
        return _efficiency_only(WarmSession, start_temporary_server, args, params, work, loads)
    # (a) plain calls: in a process with a Dask worker's thread limits (and, for information, in this one)
    stage_main: dict[str, float] = {}
    if not args.skip_main:
        stage_main = plain_calls(list(field.ms_paths), sols, sky, strategy, work / "plain-main")
        _drop(work / "plain-main", args.keep)
    c0 = cpu_seconds()
    with in_worker_like_processes(1) as pool:
        stage_s = pool.submit(plain_calls, list(field.ms_paths), sols, sky, strategy, work / "plain").result()
    cpu_plain = cpu_seconds() - c0
    loads.append(os.getloadavg()[0])
    _drop(work / "plain", args.keep)
    print(f"plain calls: {sum(stage_s.values()):.1f} s, CPU {cpu_plain:.1f} s", flush=True)
    plain = sum(stage_s.values())
    deps = _deps(list(stage_s))
    ideal2 = list_schedule(stage_s, deps, 2)
    ideal1 = list_schedule(stage_s, deps, 1)

    beam_serial = sum(v for k, v in stage_s.items() if "-beam" in k)
    if not args.overhead_only:
        c0 = cpu_seconds()
        beam_parallel = chains_in_processes(list(field.ms_paths), sols, strategy, work / "plain2", 2)
        cpu_chains = cpu_seconds() - c0
        loads.append(os.getloadavg()[0])
        _drop(work / "plain2", args.keep)
        print(f"per-beam chains in 2 processes: {beam_parallel:.1f} s, CPU {cpu_chains:.1f} s", flush=True)

    if args.api_url:
        api, stop = args.api_url, (lambda: None)
    else:
        info, stop = start_temporary_server()
        api = info.api_url
    print(f"Prefect API for the warm sessions: {api}", flush=True)
    try:
        if args.overhead_only:
            return _overhead_only(WarmSession, api, params, stage_s, cpu_plain, work, args, loads)
        c0 = cpu_seconds()
        with WarmSession(_cluster(2), api_url=api) as s2:
            flow2, h2 = flow_run(s2, params("flow2"))
            loads.append(os.getloadavg()[0])
            span2 = per_beam_span(h2)
            lat_warm = []
            for i in range(args.repeats):
                h = s2.submit("probe", out_dir=os.fspath(work / f"probe{i}"), n_beams=2, rounds=0, seconds=0.1)
                h.result()
                lat_warm.append(h.first_task_latency())
        cpu_flow2 = cpu_seconds() - c0
        _drop(work / "flow2", args.keep)
        print(f"flow on 2 workers: {flow2:.1f} s (CPU of the workers incl. the probes {cpu_flow2:.1f} s)", flush=True)
        flow1, cpu_flow1, h1 = _flow1(WarmSession, api, params, work, args, loads)
        span1 = per_beam_span(h1)
    finally:
        stop()
    # (b) cold: temporary server + a new LocalCluster, as a plain `flint flow` does
    t0 = time.perf_counter()
    hc = submit_flow("probe", {"out_dir": os.fspath(work / "probe-cold"), "n_beams": 2, "rounds": 0, "seconds": 0.1}, cluster=_cluster(2), background=False)
    hc.result()
    cold_total = time.perf_counter() - t0
    lat_cold = hc.first_task_latency()

    print(f"\n(a) continuum flow, {args.n_beams} beams x {opts.n_channels} channels x {opts.n_times} integrations, "
          f"{args.image_size} px, {len(stage_s)} stages")
    if stage_main:
        print(f"    stages as plain calls in sequence, this process:       {sum(stage_main.values()):7.1f} s")
    print(f"    the same in a process with a Dask worker's 1-thread env: {plain:7.1f} s, CPU {cpu_plain:7.1f} s  (the reference below)")
    for name, sec in stage_s.items():
        extra = f"   (this process {stage_main[name]:6.2f} s)" if name in stage_main else ""
        print(f"        {name:28s} {sec:7.2f} s{extra}")
    short = [n for n, sec in stage_s.items() if sec < 30.0]
    print(f"    stages under 30 s: {len(short)} of {len(stage_s)} ({', '.join(short) or 'none'})")
    print(f"    ideal on 1 worker (= plain):      {ideal1:7.1f} s")
    print(f"    ideal on 2 workers (schedule):    {ideal2:7.1f} s")
    print(f"    flow on warm 1-worker cluster:    {flow1:7.1f} s, CPU {cpu_flow1:7.1f} s -> overhead (flow - plain) / flow = "
          f"{(flow1 - plain) / flow1:+.1%} wall, {(cpu_flow1 - cpu_plain) / cpu_flow1:+.1%} CPU (target <= 3 %)")
    _task_table(h1, stage_s, flow1)
    print(f"    flow on warm 2-worker cluster:    {flow2:7.1f} s -> {flow2 / plain:.3f} x plain, {flow2 / ideal2:.3f} x ideal; "
          f"(flow - ideal) / flow = {(flow2 - ideal2) / flow2:+.1%} (target <= 3 %)")
    print("\n(b) submit -> first task running (probe flow, 2 workers)")
    good = [x for x in lat_warm if x is not None]
    print(f"    warm session: {', '.join(f'{x:.2f}' for x in good)} s  median {statistics.median(good):.2f} s (target <= 2 s)")
    print(f"    cold (temporary server + new LocalCluster): {lat_cold:.2f} s  (whole probe run {cold_total:.1f} s)")
    if lat_cold and good:
        print(f"    ratio cold / warm: {lat_cold / statistics.median(good):.1f}")
    print(f"\n(c) parallel efficiency 1 -> 2 workers ({args.n_beams} beams)")
    print(f"    whole flow: T1 {flow1:.1f} s, T2 {flow2:.1f} s -> {flow1 / (2 * flow2):.1%} (ideal schedule allows {ideal1 / (2 * ideal2):.1%})")
    print(f"    per-beam part: {span1:.1f} s vs {span2:.1f} s -> {span1 / (2 * span2):.1%} (target >= 90 %)")
    hw = beam_serial / (2 * beam_parallel)
    print(f"    the machine itself (per-beam chains as plain calls, 1 process {beam_serial:.1f} s vs 2 processes {beam_parallel:.1f} s, "
          f"CPU {cpu_chains:.1f} s): {hw:.1%}")
    print(f"    per-beam efficiency relative to the machine's: {span1 / (2 * span2) / hw:.1%}")
    loads.append(os.getloadavg()[0])
    print(f"\nload average (1 min) at the start and after each measurement: {', '.join(f'{x:.1f}' for x in loads)} on {os.cpu_count()} CPUs")
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
