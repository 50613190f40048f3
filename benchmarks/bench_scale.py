"""Benchmark: time and peak memory of every flint stage on one beam as the data grow 4x.

Every stage runs in a fresh Python process; the parent samples the resident set size of the
whole process tree (the stage's Python plus WSClean, AOFlagger, BANE/aegean children) every
0.1 s with psutil, and the child reports its own and its children's ``ru_maxrss`` and CPU
time (user + system, children included). Peak RSS is the largest of the three. So no stage
inherits another's peak, and external programs are counted. The sampler also records the tree's
peak *anonymous* RSS (RSS minus file-backed and shared pages): a program that memory-maps its
temporary files (WSClean does) shows their pages in RSS, though the kernel can drop them.

Visibility stages (``kind="ms"``) run at 288 channels x ``--sizes`` integrations of one beam
(default 120 and 480, 4x apart; 36 antennas, 630 baselines), in the order of the pipeline:

* ``sim``: :func:`flint.sim.simulate_field` of one beam (writes the MS the others use);
* ``simcal``: :func:`flint.sim.simulate_bandpass` of one beam (PKS B1934-638, same size);
* ``read``: the reference -- a plain python-casacore read of the whole DATA column in row
  blocks of ~64 MB (what any stage must at least do);
* ``bandpass``: :func:`flint.calibrate.run_bandpass` on the calibrator MS (defaults: one
  AOFlagger pass on the calibrated residuals, two solves);
* ``apply``: :func:`flint.calibrate.run_apply` of those solutions, DATA -> CORRECTED_DATA;
* ``flag``: :func:`flint.flagging.run_flagging` of CORRECTED_DATA (the flow's options);
* ``image``: :func:`flint.imaging.run_imaging` (WSClean; the packaged strategy's round-0
  options with ``--wsclean-size`` pixels (default 1536, the strategy's), 2 threads, ``-abs-mem`` ``--abs-mem-gb``);
  writes MODEL_DATA;
* ``selfcal``: :func:`flint.calibrate.run_selfcal` with the strategy's round-1 options
  (phase, 10 s intervals: one solution interval per integration) -- solve + apply;
* ``subtract``: :func:`flint.subtract.run_subtract` of the clean model (WSClean -predict,
  ``-abs-mem`` ``--abs-mem-gb``, then CORRECTED_DATA - model into a new column).

Image-plane stages (``kind="image"``) do not grow with the integrations; what grows for them
is the number of beam images: ``--beams`` (default 9 and 36, 4x apart) of ``--image-size``
pixels (default 3000 at 4 arcsec), synthetic WSClean-like restored images (noise + point
sources seen through a Gaussian primary beam) on a 36-beam ``closepack`` footprint, 0.9 deg
pitch:

* ``convol``: :func:`flint.convol.run_convol` of the beam images to their common beam;
* ``linmos``: :func:`flint.linmos.run_linmos` of the convolved images;
* ``sourcefind``: :func:`flint.source_finding.run_source_finding` (BANE + aegean) of the mosaic.

It prints per stage and size: wall and CPU time, the ratio to ``read`` (visibility stages),
peak RSS; then per stage the growth exponents (time and RSS ~ size^k) and the RSS ratio
largest/smallest, flagging RSS growth > 20 % and CPU time exponent > 1.15; and an
extrapolation to one full 10 h beam (3600 integrations, from the fitted exponent) and to a
36-beam observation on N workers (per-beam time x ceil(36 / N), plus the image-plane stages
measured at 36 beams). Results go to ``<out>/bench_scale.json`` and a figure of time and
RSS against relative size to ``<out>/bench_scale.png`` (``--figure`` another copy).

Usage::

    .venv/bin/python benchmarks/bench_scale.py [--quick] [--sizes 120 480] [--beams 9 36]
        [--stages sim simcal read bandpass ...] [--out benchmarks/results] [--work /tmp/x]
        [--figure docs/images/bench_scale_stages.png] [--keep]

``--quick``: 48 channels x 30/120 integrations, 2/8 beam images of 1000 pixels, WSClean 1024 px.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

CHUNK_MB = 64.0
FULL_BEAM_TIMES = 3600
"""Integrations of one real 10 h ASKAP beam."""
N_BASELINES = 36 * 35 // 2


@dataclass(frozen=True)
class Ctx:
    """What a stage's child process is told."""

    work: Path
    n_channels: int
    n_times: int
    n_beams: int
    image_size: int
    wsclean_size: int
    abs_mem_gb: float


@dataclass(frozen=True)
class Stage:
    """One measured stage: ``run(ctx)`` in a child process."""

    name: str
    run: Callable[[Ctx], None]
    kind: Literal["ms", "image"] = "ms"
    report: bool = True
    """False for set-up steps (measured, but not a pipeline stage)."""


# ----------------------------------------------------------------- visibility stages
def _sim_options(ctx: Ctx) -> Any:
    from flint.sim import SimOptions

    return SimOptions(
        n_beams=1, n_channels=ctx.n_channels, n_times=ctx.n_times, chunk_mb=CHUNK_MB, seed=7
    )


def _ms(ctx: Ctx) -> Path:
    from flint.naming import beam_ms_name, field_name

    return ctx.work / beam_ms_name(_sim_options(ctx).sbid, field_name("SIM_FIELD"), 0)


def _strategy() -> Any:
    from flint.strategy import default_strategy_path, load_strategy

    return load_strategy(default_strategy_path())


def run_sim(ctx: Ctx) -> None:
    from flint.sim import simulate_field

    simulate_field(ctx.work, _sim_options(ctx))


def run_simcal(ctx: Ctx) -> None:
    from flint.sim import simulate_bandpass

    simulate_bandpass(ctx.work / "cal", _sim_options(ctx))


def run_read(ctx: Ctx) -> None:
    import casacore.tables as ct

    with ct.table(str(_ms(ctx)), ack=False) as t:
        step = max(1, int(CHUNK_MB * 1e6 // (ctx.n_channels * 4 * 8)))
        for start in range(0, t.nrows(), step):
            t.getcol("DATA", startrow=start, nrow=min(step, t.nrows() - start))


def run_bandpass(ctx: Ctx) -> None:
    from flint.calibrate import BandpassOptions
    from flint.calibrate import run_bandpass as bandpass

    cal = next(p for p in sorted((ctx.work / "cal").glob("*.ms")))
    bandpass(cal, BandpassOptions(plot=False), output=ctx.work / "bandpass.bin")


def run_apply(ctx: Ctx) -> None:
    from flint.calibrate import run_apply as apply

    sols = ctx.work / "bandpass.bin"
    if not sols.exists():  # the bandpass stage was not run: apply the true bandpass
        from flint.calibrate.aocal import AOSolutions, write_solutions

        truth = np.load(next(ctx.work.glob("*.truth.npz")))
        write_solutions(sols, AOSolutions.from_gains(truth["bandpass"][:1]))
    apply(_ms(ctx), sols)


def run_flag(ctx: Ctx) -> None:
    from flint.flagging import run_flagging

    opts = _strategy().options_for("flagging", 0)
    run_flagging(_ms(ctx), opts.with_options(column="CORRECTED_DATA"))


def _wsclean_options(ctx: Ctx) -> Any:
    return (
        _strategy()
        .options_for("wsclean", 0)
        .with_options(size=ctx.wsclean_size, threads=2, abs_mem_gb=ctx.abs_mem_gb)
    )


def run_image(ctx: Ctx) -> None:
    from flint.imaging import run_imaging

    run_imaging(_ms(ctx), _wsclean_options(ctx), out_dir=ctx.work / "img", round=0)


def run_selfcal(ctx: Ctx) -> None:
    from flint.calibrate import run_selfcal as selfcal

    selfcal(_ms(ctx), _strategy().options_for("selfcal", 1))


def run_subtract(ctx: Ctx) -> None:
    from flint.subtract import SubtractOptions
    from flint.subtract import run_subtract as subtract

    model = next((ctx.work / "img").glob("*.round0.model.fits"))
    subtract(_ms(ctx), SubtractOptions(model_prefix=model, threads=2, overwrite=True, abs_mem_gb=ctx.abs_mem_gb))


# ----------------------------------------------------------------- image-plane stages
PB_FWHM_DEG = 1.0
FREQ_HZ = 888.0e6
PITCH_DEG = 0.9
SCALE_ARCSEC = 4.0


def _image_dir(ctx: Ctx) -> Path:
    return ctx.work / f"beams{ctx.n_beams}"


def run_mkimages(ctx: Ctx) -> None:
    """Write ``n_beams`` WSClean-like restored images (set-up, not a pipeline stage)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from flint._askap import footprint_offsets_deg

    rng = np.random.default_rng(11)
    ra0, dec0 = 150.0, -30.0
    offs = footprint_offsets_deg(36, PITCH_DEG, "closepack")[: ctx.n_beams]
    # one sky for all beams: 30 sources per square degree over the footprint, S^-1.5 counts
    span = np.abs(offs).max(axis=0) + 2.0
    n_src = int(30 * 4 * span[0] * span[1])
    src_dx, src_dy = rng.uniform(-span[0], span[0], n_src), rng.uniform(-span[1], span[1], n_src)
    src_flux = 1e-3 * (1 - rng.uniform(0, 0.999, n_src)) ** (-1 / 1.5)
    n = ctx.image_size
    out = _image_dir(ctx)
    out.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[-6:7, -6:7]
    for b, (dx, dy) in enumerate(offs):
        bmaj = (12.0 + 0.8 * rng.uniform()) / 3600
        bmin = (11.0 + 0.5 * rng.uniform()) / 3600
        header = fits.Header()
        for k, v in (("NAXIS", 4), ("NAXIS1", n), ("NAXIS2", n), ("NAXIS3", 1), ("NAXIS4", 1)):
            header[k] = v
        header.update(
            CTYPE1="RA---SIN",
            CRPIX1=n // 2 + 1,
            CDELT1=-SCALE_ARCSEC / 3600,
            CUNIT1="deg",
            CRVAL1=ra0 + dx / math.cos(math.radians(dec0 + dy)),
            CTYPE2="DEC--SIN",
            CRPIX2=n // 2 + 1,
            CDELT2=SCALE_ARCSEC / 3600,
            CUNIT2="deg",
            CRVAL2=dec0 + dy,
            CTYPE3="FREQ",
            CRPIX3=1,
            CDELT3=288e6,
            CRVAL3=FREQ_HZ,
            CUNIT3="Hz",
            CTYPE4="STOKES",
            CRPIX4=1,
            CDELT4=1,
            CRVAL4=1,
            BUNIT="JY/BEAM",
            BMAJ=bmaj,
            BMIN=bmin,
            BPA=10.0 * rng.uniform(),
            RADESYS="FK5",
            EQUINOX=2000.0,
        )
        wcs = WCS(header).celestial
        data = rng.normal(0.0, 1e-4, (n, n)).astype(np.float32)
        px, py = wcs.wcs_world2pix(ra0 + src_dx / math.cos(math.radians(dec0)), dec0 + src_dy, 0)
        r2 = (src_dx - dx) ** 2 + (src_dy - dy) ** 2
        pb = np.exp(-4 * math.log(2) * r2 / PB_FWHM_DEG**2)
        sig = bmaj * 3600 / SCALE_ARCSEC / 2.3548
        stamp = np.exp(-(xx**2 + yy**2) / (2 * sig**2)).astype(np.float32)
        for x, y, s in zip(
            np.rint(px).astype(int), np.rint(py).astype(int), src_flux * pb, strict=True
        ):
            if 6 <= x < n - 7 and 6 <= y < n - 7 and s > 1e-4:
                data[y - 6 : y + 7, x - 6 : x + 7] += s * stamp
        fits.PrimaryHDU(data[None, None], header).writeto(
            out / f"SB101.SIM_FIELD.beam{b:02d}.round1.image.fits", overwrite=True
        )


def run_convol(ctx: Ctx) -> None:
    from flint.convol import ConvolOptions
    from flint.convol import run_convol as convol

    convol(sorted(_image_dir(ctx).glob("*.round1.image.fits")), ConvolOptions())


def run_linmos(ctx: Ctx) -> None:
    from flint.linmos import LinmosOptions
    from flint.linmos import run_linmos as linmos

    linmos(
        sorted(_image_dir(ctx).glob("*.round1.image.conv.fits")),
        LinmosOptions(pb_fwhm_deg=PB_FWHM_DEG),
        output=_image_dir(ctx) / "SB101.SIM_FIELD.round1.linmos.fits",
    )


def run_sourcefind(ctx: Ctx) -> None:
    from flint.source_finding import run_source_finding

    run_source_finding(_image_dir(ctx) / "SB101.SIM_FIELD.round1.linmos.fits")


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("sim", run_sim),
        Stage("simcal", run_simcal),
        Stage("read", run_read),
        Stage("bandpass", run_bandpass),
        Stage("apply", run_apply),
        Stage("flag", run_flag),
        Stage("image", run_image),
        Stage("selfcal", run_selfcal),
        Stage("subtract", run_subtract),
        Stage("mkimages", run_mkimages, kind="image", report=False),
        Stage("convol", run_convol, kind="image"),
        Stage("linmos", run_linmos, kind="image"),
        Stage("sourcefind", run_sourcefind, kind="image"),
    )
}


# ----------------------------------------------------------------- measuring
def child(stage: str, ctx: Ctx) -> None:
    """Run one stage; print wall time, CPU time and peak RSS (self, children) as JSON."""
    t0 = time.perf_counter()
    STAGES[stage].run(ctx)
    dt = time.perf_counter() - t0
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "seconds": dt,
                "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                "rss_self_mb": me.ru_maxrss / 1024.0,
                "rss_children_mb": kids.ru_maxrss / 1024.0,
            }
        )
    )


def _tree_rss_mb(proc: Any) -> tuple[float, float]:
    """(RSS, anonymous RSS) of the process tree in MB. Anonymous = RSS minus the file-backed and
    shared pages (psutil's ``shared``: RssFile + RssShmem), i.e. what the kernel cannot drop and
    re-read: a memory-mapped temporary file counts in RSS, not here."""
    import psutil

    total = anon = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                m = p.memory_info()
                total += m.rss
                anon += m.rss - getattr(m, "shared", 0)
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total / 2**20, anon / 2**20


def measure(stage: str, ctx: Ctx) -> dict[str, float]:
    """Run ``stage`` in a fresh process, sampling its process tree's RSS every 0.1 s."""
    import psutil

    argv = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        stage,
        "--work",
        str(ctx.work),
        "--n-channels",
        str(ctx.n_channels),
        "--n-times",
        str(ctx.n_times),
        "--n-beams",
        str(ctx.n_beams),
        "--image-size",
        str(ctx.image_size),
        "--wsclean-size",
        str(ctx.wsclean_size),
        "--abs-mem-gb",
        str(ctx.abs_mem_gb),
    ]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        peak = [0.0, 0.0]
        ps = psutil.Process(proc.pid)

        def sample() -> None:
            while proc.poll() is None:
                rss, anon = _tree_rss_mb(ps)
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], anon)
                time.sleep(0.1)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        rc = proc.wait()
        th.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if rc != 0:
        raise SystemExit(
            f"{stage} ({ctx.n_times} integrations, {ctx.n_beams} beams) failed:\n{stderr[-3000:]}"
        )
    r = dict(json.loads(stdout.strip().splitlines()[-1]))
    r["rss_tree_mb"] = peak[0]
    r["anon_tree_mb"] = peak[1]
    r["peak_rss_mb"] = max(peak[0], r["rss_self_mb"], r["rss_children_mb"])
    return r


def _slope(x: list[float], y: list[float]) -> float:
    if len(x) < 2 or min(y) <= 0:
        return float("nan")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def plot(results: list[dict[str, Any]], paths: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    for stage in dict.fromkeys(r["stage"] for r in results):
        rs = [r for r in results if r["stage"] == stage]
        x = [r["x"] / rs[0]["x"] for r in rs]
        style = "o-" if rs[0]["kind"] == "ms" else "s--"
        ax_t.loglog(x, [r["cpu_s"] for r in rs], style, label=stage)
        ax_m.semilogx(x, [r["peak_rss_mb"] for r in rs], style, label=stage)
    xs = np.array([1.0, 4.0])
    ax_t.loglog(xs, 2.0 * xs, "k:", lw=1, label="linear")
    for ax in (ax_t, ax_m):
        ax.set_xticks([1, 2, 4], ["1", "2", "4"])
        ax.minorticks_off()
    ax_t.set_xlabel("relative size (integrations; image stages: beams)")
    ax_t.set_ylabel("CPU time (s, children included)")
    ax_m.set_xlabel("relative size (integrations; image stages: beams)")
    ax_m.set_ylabel("peak RSS of the process tree (MB)")
    ax_m.set_ylim(bottom=0)
    ax_t.legend(fontsize=7, ncol=2)
    ax_m.legend(fontsize=7, ncol=2)
    n_chan = results[0]["n_channels"]
    fig.suptitle(
        f"flint stages at growing size (one beam, 36 antennas, {n_chan} channels; image stages: beam images of a closepack footprint)"
    )
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)


def _report(results: list[dict[str, Any]], stages: list[str], workers: list[int]) -> dict[str, Any]:
    print("\ngrowth over the largest/smallest size (k: y ~ size^k; 1 = linear, 0 = flat)")
    summary: dict[str, Any] = {}
    for stage in stages:
        rs = [r for r in results if r["stage"] == stage]
        if len(rs) < 2:
            continue
        x = [float(r["x"]) for r in rs]
        kt = _slope(x, [r["seconds"] for r in rs])
        kc = _slope(x, [r["cpu_s"] for r in rs])
        km = _slope(x, [r["peak_rss_mb"] for r in rs])
        ratio = rs[-1]["peak_rss_mb"] / rs[0]["peak_rss_mb"]
        anon = [float(r.get("anon_tree_mb", float("nan"))) for r in rs]
        anon_ratio = anon[-1] / anon[0] if anon[0] > 0 else float("nan")
        flags = []
        if ratio > 1.2:
            flags.append(f"RSS GROWS {ratio:.2f}x")
        if kc > 1.15:
            flags.append(f"CPU SUPER-LINEAR k={kc:.2f}")
        summary[stage] = {
            "k_wall": kt,
            "k_cpu": kc,
            "k_rss": km,
            "rss_ratio": ratio,
            "anon_ratio": anon_ratio,
            "flags": flags,
        }
        print(
            f"  {stage:<11} x{x[-1] / x[0]:.0f}: wall k={kt:5.2f}  CPU k={kc:5.2f}  RSS k={km:6.3f}  RSS ratio {ratio:5.2f} (anonymous {anon_ratio:5.2f})"
            f"  {'; '.join(flags) or 'ok'}"
        )
    ms_stages = [
        s
        for s in stages
        if STAGES[s].kind == "ms" and STAGES[s].report and s not in ("read", "sim", "simcal")
    ]
    img_stages = [s for s in stages if STAGES[s].kind == "image" and STAGES[s].report]
    print(
        f"\nextrapolation to one full beam ({FULL_BEAM_TIMES} integrations) from the largest size and the fitted CPU exponent"
    )
    beam: dict[str, float] = {}
    beam_cpu: dict[str, float] = {}
    for stage in ms_stages:
        rs = [r for r in results if r["stage"] == stage]
        if not rs:
            continue
        k = summary.get(stage, {}).get("k_cpu", 1.0)
        k = 1.0 if not math.isfinite(k) else max(k, 1.0)
        f = (FULL_BEAM_TIMES / rs[-1]["n_times"]) ** k
        beam[stage], beam_cpu[stage] = rs[-1]["seconds"] * f, rs[-1]["cpu_s"] * f
        print(
            f"  {stage:<11} wall {beam[stage]:8.0f} s  CPU {beam_cpu[stage]:8.0f} s  peak RSS {rs[-1]['peak_rss_mb']:6.0f} MB (as at the largest size, if flat)"
        )
    # the continuum chain of one beam with the packaged strategy: bandpass, apply, flag, then
    # image x (rounds + 1) and self-cal x rounds (subtract is the line flow's, not counted)
    rounds = int(_strategy().n_rounds)
    times = {"bandpass": 1, "apply": 1, "flag": 1, "image": rounds + 1, "selfcal": rounds}
    per_beam = sum(beam[s] * k for s, k in times.items() if s in beam)
    per_beam_cpu = sum(beam_cpu[s] * k for s, k in times.items() if s in beam_cpu)
    img = {
        s: [r for r in results if r["stage"] == s][-1]
        for s in img_stages
        if any(r["stage"] == s for r in results)
    }
    img_s = sum(r["seconds"] for r in img.values())
    img_cpu = sum(r["cpu_s"] for r in img.values())
    nb = max((r["n_beams"] for r in img.values()), default=0)
    print(
        f"  per-beam continuum chain (bandpass, apply, flag, {rounds + 1} x image, {rounds} x self-cal): "
        f"wall {per_beam:.0f} s = {per_beam / 3600:.2f} h (at this run's load), CPU {per_beam_cpu:.0f} s = {per_beam_cpu / 3600:.2f} h"
    )
    print(
        f"36 beams on N workers of one core each: per-beam chain x ceil(36 / N) + image-plane stages measured at {nb} beams "
        f"(wall {img_s:.0f} s, CPU {img_cpu:.0f} s); 'CPU' = the time on idle cores"
    )
    extra = {}
    for n in workers:
        tot = per_beam * math.ceil(36 / n) + img_s
        tot_cpu = per_beam_cpu * math.ceil(36 / n) + img_cpu
        extra[n] = {"wall_s": tot, "cpu_s": tot_cpu}
        print(f"  N = {n:>2}: wall {tot / 3600:7.2f} h   CPU {tot_cpu / 3600:7.2f} h")
    return {
        "growth": summary,
        "full_beam_wall_s": beam,
        "full_beam_cpu_s": beam_cpu,
        "per_beam_wall_s": per_beam,
        "per_beam_cpu_s": per_beam_cpu,
        "image_plane_wall_s": img_s,
        "image_plane_cpu_s": img_cpu,
        "observation_s": extra,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="48 channels x 30/120 integrations, 2/8 images of 1000 px",
    )
    ap.add_argument("--n-channels", type=int, default=None)
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help="numbers of integrations (visibility stages)",
    )
    ap.add_argument(
        "--beams",
        type=int,
        nargs="+",
        default=None,
        help="numbers of beam images (image-plane stages)",
    )
    ap.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="pixels of each beam image (image-plane stages)",
    )
    ap.add_argument(
        "--wsclean-size", type=int, default=None, help="pixels of the WSClean image (image stage)"
    )
    ap.add_argument(
        "--abs-mem-gb",
        type=float,
        default=0.5,
        help="WSClean -abs-mem (image and subtract stages). The default is below what the smallest size's data "
        "need, so both sizes run in the regime of a real beam (22 GB of DATA against any node's cap): WSClean "
        "keeps data in memory up to the cap, and at a cap above the data it grows with them until the cap",
    )
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    ap.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[2, 12, 36],
        help="workers of the 36-beam extrapolation",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--figure", type=Path, default=None, help="also save the figure here")
    ap.add_argument(
        "--work", type=Path, default=None, help="scratch folder (default: a temporary one)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the Measurement Sets and images")
    ap.add_argument(
        "--replot",
        type=Path,
        default=None,
        help="print the growth table and redraw the figure of a saved bench_scale.json",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n-times", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--n-beams", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    n_chan = args.n_channels or (48 if args.quick else 288)
    img_size = args.image_size or (1000 if args.quick else 3000)
    ws_size = args.wsclean_size or (1024 if args.quick else 1536)
    if args.child:
        child(
            args.child,
            Ctx(args.work, n_chan, args.n_times, args.n_beams, img_size, ws_size, args.abs_mem_gb),
        )
        return 0
    if args.replot:
        saved = json.loads(args.replot.read_text())
        done = list(dict.fromkeys(r["stage"] for r in saved["results"]))
        _report(saved["results"], done, args.workers)
        figs = [args.replot.with_suffix(".png"), *([args.figure] if args.figure else [])]
        plot(saved["results"], figs)
        print(f"wrote {', '.join(map(str, figs))}")
        return 0
    sizes = args.sizes or ([30, 120] if args.quick else [120, 480])
    beams = args.beams or ([2, 8] if args.quick else [9, 36])
    stages = [s for s in STAGES if s in args.stages]
    if any(STAGES[s].kind == "ms" for s in stages) and "sim" not in stages:
        stages.insert(0, "sim")
    if any(STAGES[s].kind == "image" for s in stages) and "mkimages" not in stages:
        stages.insert(
            stages.index(next(s for s in stages if STAGES[s].kind == "image")), "mkimages"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="bench_scale.", dir=args.work))
    results: list[dict[str, Any]] = []
    load0 = os.getloadavg()
    print(
        f"{os.cpu_count()} CPUs, load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; scratch {base}"
    )
    print(
        f"{'stage':<11}{'size':>9}{'x (units)':>12}{'wall s':>9}{'CPU s':>9}{'x read':>8}{'RSS MB':>8}{'(py':>7}{' child':>7}{' tree)':>7}{'anon':>7}",
        flush=True,
    )

    def run_group(kind: str, label: str, ctx: Ctx, x: float) -> None:
        row: dict[str, dict[str, float]] = {}
        for stage in (s for s in stages if STAGES[s].kind == kind):
            r = measure(stage, ctx)
            row[stage] = r
            ratio = r["seconds"] / row["read"]["seconds"] if "read" in row else float("nan")
            if STAGES[stage].report:
                results.append(
                    {
                        "stage": stage,
                        "kind": kind,
                        "size": label,
                        "x": x,
                        "n_times": ctx.n_times,
                        "n_beams": ctx.n_beams,
                        "n_channels": ctx.n_channels,
                        "image_size": ctx.image_size,
                        **r,
                        "x_read": ratio,
                        "load": os.getloadavg()[0],
                    }
                )
            print(
                f"{stage:<11}{label:>9}{x:>12.4g}{r['seconds']:>9.1f}{r['cpu_s']:>9.1f}{ratio:>8.2f}{r['peak_rss_mb']:>8.0f}"
                f"{r['rss_self_mb']:>7.0f}{r['rss_children_mb']:>7.0f}{r['rss_tree_mb']:>7.0f}{r['anon_tree_mb']:>7.0f}"
                f"{'' if STAGES[stage].report else '   (set-up)'}",
                flush=True,
            )

    try:
        if any(STAGES[s].kind == "ms" for s in stages):
            for n_times in sizes:
                ctx = Ctx(
                    base / f"t{n_times}", n_chan, n_times, 1, img_size, ws_size, args.abs_mem_gb
                )
                ctx.work.mkdir()
                run_group("ms", f"{n_times}int", ctx, float(n_times * N_BASELINES * n_chan * 4))
                if not args.keep:
                    shutil.rmtree(ctx.work, ignore_errors=True)
        if any(STAGES[s].kind == "image" for s in stages):
            for n_beams in beams:
                ctx = Ctx(
                    base / f"b{n_beams}", n_chan, 0, n_beams, img_size, ws_size, args.abs_mem_gb
                )
                ctx.work.mkdir()
                run_group("image", f"{n_beams}bm", ctx, float(n_beams * img_size**2))
                mosaic = next(ctx.work.rglob("*.linmos.fits"), None)
                if mosaic is not None:
                    from astropy.io import fits

                    shape = fits.getheader(mosaic)
                    print(
                        f"  (mosaic of {n_beams} beams: {shape['NAXIS1']} x {shape['NAXIS2']} pixels)"
                    )
                if not args.keep:
                    shutil.rmtree(ctx.work, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    summary = _report(results, [s for s in stages if STAGES[s].report], args.workers)
    load1 = os.getloadavg()
    print(f"\nload average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    meta = {
        "chunk_mb": CHUNK_MB,
        "cpus": os.cpu_count(),
        "load_before": load0,
        "load_after": load1,
        "wsclean_size": ws_size,
        "abs_mem_gb": args.abs_mem_gb,
        "image_size": img_size,
    }
    (args.out / "bench_scale.json").write_text(
        json.dumps({**meta, "results": results, "summary": summary}, indent=1, default=str)
    )
    figs = [args.out / "bench_scale.png", *([args.figure] if args.figure else [])]
    plot(results, figs)
    print(f"wrote {args.out / 'bench_scale.json'} and {', '.join(map(str, figs))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
