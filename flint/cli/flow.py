"""``flint flow bandpass|continuum|line``: run a flint flow through Prefect on a Dask cluster.

Everything that can be checked is checked before anything is submitted: the inputs
(Measurement Sets, solutions per beam, reference catalogue, strategy file), the cluster
YAML, a scheduler ``address`` and ``$PREFECT_API_URL`` (or ``--api-url``). Any problem is
one line on standard error and exit status 1.

In the foreground (the default) the command prints the flow-run id, then the products
and the validation numbers. ``--background`` starts the same command detached (its
output in ``<out-dir>/flint-flow-<flow>.log``), prints its PID and flow-run id, and returns.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from flint.errors import FlintError

__all__ = ["register", "print_products"]

_EPILOG = """\
examples:
  flint flow bandpass data/ --out-dir run/bandpass
  flint flow continuum data/SB101.*.ms --solutions run/bandpass --reference data/SB101.SIM_FIELD.sky.csv \\
      --out-dir run/continuum --cluster-config slurm --strategy my-strategy.yaml --beams 0 1 2
  flint flow continuum ... --background      # detached; follow it in the Prefect UI or the log
  flint flow continuum casda/ --already-calibrated --out-dir run/continuum   # CASDA data: no bandpass
  flint flow line run/continuum --out-dir run/line      # line-free channels found per beam (--fit-channels auto)

Inputs may carry flint's names, raw ASKAP names (SB39400.RACS_0635-31.beam0.ms) or CASDA names
(scienceData.<field>.SB<sbid>.<field>.beam08_averaged_cal.leakage.ms); raw ASKAP MSs (instrument
frame) are preprocessed (fixms) as the flow's first stage, on the flow's copy.

Prefect API: --api-url, else $PREFECT_API_URL (checked first), else a temporary local server.
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out-dir", type=Path, required=True, help="folder for the flow's products (created)")
    p.add_argument(
        "--cluster-config",
        default="local",
        help="cluster YAML file or packaged example name (local, slurm; default: local)",
    )
    p.add_argument("--strategy", type=Path, default=None, help="strategy YAML (default: the packaged one)")
    p.add_argument("--beams", type=int, nargs="+", default=None, help="only these beams (default: all found)")
    p.add_argument("--api-url", default=None, help="Prefect API URL (default: $PREFECT_API_URL or a temporary server)")
    p.add_argument("--background", action="store_true", help="start detached, print PID and flow-run id, return")
    p.add_argument("--timeout", type=float, default=None, help="foreground: give up waiting after this many seconds")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "flow",
        help="run the bandpass or continuum flow through Prefect on a Dask cluster",
        description=(
            "Run a flint flow (per beam in parallel on the Dask cluster the YAML file describes), "
            "checking every input before anything is submitted."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fsub = p.add_subparsers(dest="flow_name", metavar="<flow>")
    fsub.required = True
    bp = fsub.add_parser("bandpass", help="flag and solve a bandpass per beam of PKS B1934-638")
    bp.add_argument("inputs", nargs="+", help="calibrator Measurement Sets (SB<sbid>.<field>.beam<N>.ms, one per beam; 36-field ASKAP MSs too) or their folder")
    _common(bp)
    bp.set_defaults(func=run)
    co = fsub.add_parser("continuum", help="calibrate, self-calibrate, image, mosaic and validate a field")
    co.add_argument("inputs", nargs="+", help="science Measurement Sets (one per beam) or their folder")
    co.add_argument("--solutions", nargs="+", default=None, help="bandpass solution files or their folder")
    co.add_argument(
        "--already-calibrated",
        action="store_true",
        help="the data are bandpass-calibrated already (CASDA: calibrated by the observatory); no --solutions",
    )
    co.add_argument("--reference", type=Path, default=None, help="reference catalogue (CSV) for validation")
    _common(co)
    co.set_defaults(func=run)
    po = fsub.add_parser("polarisation", help="IQUV cubes per beam, common beam per channel, cube linmos, leakage check, RM synthesis (after the continuum flow)")
    po.add_argument("inputs", nargs=1, help="the continuum flow's output folder (self-calibrated MSs and its catalogue; only read)")
    po.add_argument("--pb-cube", type=Path, default=None, help="ASKAP holography beam cube: its Stokes-I beams and Q/U/V leakage removal in linmos")
    po.add_argument("--catalogue", type=Path, default=None, help="components for the leakage check and RM table (default: the continuum flow's last)")
    po.add_argument("--size", type=int, default=None, help="cube image size in pixels (default: the strategy's)")
    po.add_argument("--scale-arcsec", type=float, default=None, help="cube pixel size in arcsec (default: the strategy's)")
    _common(po)
    po.set_defaults(func=run)
    li = fsub.add_parser("line", help="continuum-subtract, image channel cubes per beam and mosaic them (after the continuum flow)")
    li.add_argument("inputs", nargs=1, help="the continuum flow's output folder (self-calibrated MSs and clean models; only read)")
    li.add_argument("--fit-channels", default=None, help="line-free channels of the polynomial uv-continuum fit: auto (default: "
                    "found per beam in a first-pass dirty cube), all, or ranges e.g. 0~9,50~63")
    li.add_argument("--uvcontsub-order", type=_order, default=1, help="order of that polynomial, or 'none' for no fit (default 1)")
    li.add_argument("--channel-block", type=int, default=8, help="channels imaged per task (default 8)")
    li.add_argument("--size", type=int, default=None, help="cube image size in pixels (default: the strategy's)")
    li.add_argument("--scale-arcsec", type=float, default=None, help="cube pixel size in arcsec (default: the strategy's)")
    _common(li)
    li.set_defaults(func=run)


def _order(text: str) -> int | None:
    """``--uvcontsub-order``: an integer, or ``none`` for no polynomial fit."""
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an order; give 0-5 or 'none'") from None


def _one_or_list(values: list[str]) -> str | list[str]:
    folder = len(values) == 1 and Path(values[0]).is_dir() and not (Path(values[0]) / "table.dat").exists()
    return values[0] if folder else [os.path.abspath(v) for v in values]


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    def absolute(v: str | list[str]) -> str | list[str]:
        return os.path.abspath(v) if isinstance(v, str) else v

    params: dict[str, Any] = {"out_dir": os.path.abspath(args.out_dir)}
    if args.flow_name == "bandpass":
        params["bandpass"] = absolute(_one_or_list(args.inputs))
    elif args.flow_name == "polarisation":
        params["continuum"] = os.path.abspath(args.inputs[0])
        params.update(pb_cube=os.path.abspath(args.pb_cube) if args.pb_cube else None, size=args.size, scale_arcsec=args.scale_arcsec,
                      catalogue=os.path.abspath(args.catalogue) if args.catalogue else None)
    elif args.flow_name == "line":
        params["continuum"] = os.path.abspath(args.inputs[0])
        params.update(fit_channels=args.fit_channels, uvcontsub_order=args.uvcontsub_order, channel_block=args.channel_block,
                      size=args.size, scale_arcsec=args.scale_arcsec)
    else:
        params["science"] = absolute(_one_or_list(args.inputs))
        params["solutions"] = absolute(_one_or_list(args.solutions)) if args.solutions else None
        params["already_calibrated"] = bool(args.already_calibrated)
        params["reference"] = os.path.abspath(args.reference) if args.reference else None
    params["strategy"] = os.path.abspath(args.strategy) if args.strategy else None
    params["beams"] = args.beams
    return params


def _check(args: argparse.Namespace, params: dict[str, Any]) -> Any:
    """Every check that can run before submission; returns the cluster spec."""
    from flint.prefect.clusters import check_scheduler_reachable
    from flint.prefect.flows import check_flow_inputs
    from flint.prefect.running import resolve_cluster
    from flint.prefect.server import check_api_reachable

    spec = resolve_cluster(args.cluster_config)
    strategy_log = logging.getLogger("flint.strategy")
    level = strategy_log.level
    strategy_log.setLevel(logging.WARNING)  # the flow logs its strategy when it runs; errors stay one line
    try:
        check_flow_inputs(args.flow_name, params)
    finally:
        strategy_log.setLevel(level)
    if spec.address:
        check_scheduler_reachable(spec.address, source=spec.source)
    url = args.api_url or os.environ.get("PREFECT_API_URL")
    if url:
        check_api_reachable(url)
    return spec


def run(args: argparse.Namespace) -> int:
    params = _parameters(args)
    spec = _check(args, params)
    if args.background:
        return _start_detached(args)
    from flint.prefect.running import submit_flow

    handle = submit_flow(args.flow_name, params, cluster=spec, api_url=args.api_url, background=True)
    print(f"flow run: {handle.flow_run_id} ({args.flow_name}, cluster {spec.cluster_class or spec.address})", flush=True)
    if not handle.wait(args.timeout):
        raise FlintError(f"flow run {handle.flow_run_id} still running after {args.timeout} s (it goes on in this process until it exits)")
    products = handle.result()
    print(f"state: {handle.state()}")
    print_products(args.flow_name, products)
    _print_inputs(args.flow_name, params["out_dir"])
    return 0


def _print_inputs(flow_name: str, out_dir: str) -> None:
    """What the flow did with each input: preprocessed (raw ASKAP) or not, bandpass field."""
    from flint.prefect.flows import read_input_report

    for row in read_input_report(out_dir, flow_name):
        beam = int(row["beam"])
        if row.get("field"):
            print(f"bandpass field beam {beam:02d}: {row['field']}")
        if row.get("preprocessed"):
            print(f"preprocessed beam {beam:02d}: {row['input']} ({row['frame']} frame)")


def print_products(flow_name: str, products: Any) -> None:
    """Print a flow's products (and validation numbers) one per line."""
    if flow_name == "bandpass":
        for beam, path in sorted(products.items(), key=lambda kv: int(kv[0])):
            print(f"solutions beam {int(beam):02d}: {path}")
        return
    if flow_name == "line":
        for beam, path in sorted(products.get("cubes", {}).items(), key=lambda kv: int(kv[0])):
            print(f"cube beam {int(beam):02d}: {path}")
        for beam, sub in sorted(products.get("subtract", {}).items(), key=lambda kv: int(kv[0])):
            if sub.get("line_channels") is not None:
                print(f"line channels beam {int(beam):02d}: {sub['line_channels'] or 'none'} (fitted over {sub['fit_channels']})")
        print(f"cube mosaic: {products['mosaic']}")
        return
    if flow_name == "polarisation":
        for p, path in products["mosaics"].items():
            print(f"mosaic {p.upper()}: {path}")
        print(f"leakage: {products['leakage']['table']} (median |V/I| {products['leakage'].get('median_abs_v_over_i', float('nan')):.4g})")
        print(f"rm synthesis: {products['rmsynth']['pi_map']}, {products['rmsynth']['rm_map']}, table {products['rmsynth']['table']}")
        return
    for r, per_beam in sorted(products.get("images", {}).items()):
        for beam, path in sorted(per_beam.items()):
            print(f"image round {r} beam {int(beam):02d}: {path}")
    for r, path in sorted(products.get("mosaics", {}).items()):
        print(f"mosaic round {r}: {path}")
    if products.get("catalogue"):
        print(f"catalogue: {products['catalogue']}")
    if products.get("already_calibrated"):
        print("already calibrated: True (no bandpass applied)")

    val = products.get("validation")
    if val:
        print(f"validation figure: {val['figure']}")
        for k, v in val.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                print(f"validation {k}: {v:.6g}")


def _start_detached(args: argparse.Namespace, wait_s: float = 180.0) -> int:
    """Start this command again without ``--background``, detached; print its PID and run id."""
    argv = _argv_from(args)
    out_dir = Path(args.out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / f"flint-flow-{args.flow_name}.log"
    with open(log, "wb") as fh:
        # a long-lived child (not run_command, which waits for the program to finish)
        proc = subprocess.Popen(
            [sys.executable, "-m", "flint.cli", *argv], stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    print(f"started: PID {proc.pid}, log {log}", flush=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith("flow run: "):
                print(line, flush=True)
                return 0
        if proc.poll() is not None:
            tail = " | ".join(text.strip().splitlines()[-3:])
            raise FlintError(f"the detached flow exited ({proc.returncode}) before submitting: {tail} (log {log})")
        time.sleep(0.5)
    print(f"flow run: not submitted after {wait_s:.0f} s yet; see {log}", flush=True)
    return 0


def _argv_from(args: argparse.Namespace) -> list[str]:
    """The foreground command line equivalent to ``args``."""
    argv = ["flow", args.flow_name, *args.inputs, "--out-dir", os.fspath(args.out_dir), "--cluster-config", os.fspath(args.cluster_config)]
    if args.flow_name == "continuum":
        if args.solutions:
            argv += ["--solutions", *args.solutions]
        if args.already_calibrated:
            argv += ["--already-calibrated"]
        if args.reference:
            argv += ["--reference", os.fspath(args.reference)]
    if args.flow_name == "line":
        for flag in ("fit_channels", "uvcontsub_order", "channel_block", "size", "scale_arcsec"):
            if getattr(args, flag) is not None:
                argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        if args.uvcontsub_order is None:
            argv += ["--uvcontsub-order", "none"]
    if args.flow_name == "polarisation":
        for flag in ("pb_cube", "catalogue", "size", "scale_arcsec"):
            if getattr(args, flag) is not None:
                argv += [f"--{flag.replace('_', '-')}", os.fspath(getattr(args, flag)) if isinstance(getattr(args, flag), Path) else str(getattr(args, flag))]
    if args.strategy:
        argv += ["--strategy", os.fspath(args.strategy)]
    if args.beams:
        argv += ["--beams", *map(str, args.beams)]
    if args.api_url:
        argv += ["--api-url", args.api_url]
    if args.timeout is not None:
        argv += ["--timeout", str(args.timeout)]
    return argv
