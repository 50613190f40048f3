"""``flint demo``: simulate a small ASKAP observation and process it end to end.

1. ``flint sim``: PKS B1934-638 and a science field (3 beams by default), with the truth.
2. the ``bandpass`` flow: flag + solve a bandpass per beam of the calibrator.
3. the ``continuum`` flow: apply the bandpass, flag, image, self-calibrate, image again,
   convolve to a common beam, mosaic, find sources, and validate the catalogue against
   the simulator's sky.

Both flows run through Prefect on one Dask cluster (the packaged ``local`` cluster YAML
unless ``--cluster-config`` names another) and one temporary Prefect server, kept warm
between the two flows (:class:`flint.prefect.warm.WarmSession`).

Every input (simulation options, strategy file, cluster YAML, output folder) is checked
before anything is simulated or started.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from flint.cli._options import build_options

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "demo",
        help="simulate a small field and process it end to end",
        description=(
            "Simulate PKS B1934-638 and a science field, then run the bandpass and continuum "
            "flows on them (on a local Dask cluster by default) and compare the catalogue "
            "with the simulated sky."
        ),
    )
    p.add_argument("out_dir", type=Path, help="folder for the demo's data and products")
    p.add_argument("--seed", type=int, default=42, help="simulation seed (default 42)")
    p.add_argument("--n-beams", type=int, default=3, help="beams of the science field (default 3)")
    p.add_argument(
        "--cluster-config",
        default="local",
        help="cluster YAML file or packaged example name (default: local)",
    )
    p.add_argument("--strategy", type=Path, default=None, help="self-cal strategy YAML (default: packaged)")
    p.add_argument(
        "--simulate-only", action="store_true", help="only simulate the data and print its summary"
    )
    p.set_defaults(func=run)


def _stage(text: str) -> float:
    print(f"\n== {text}", flush=True)
    return time.perf_counter()


def _done(t0: float) -> None:
    print(f"   done in {time.perf_counter() - t0:.0f} s", flush=True)


def _check_inputs(args: argparse.Namespace) -> Any:
    """Check the strategy, the cluster YAML and the output folder; return the cluster spec."""
    from flint.errors import FlintInputError

    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise FlintInputError(f"{args.out_dir}: exists and is not a folder; give another OUT_DIR")
    if args.simulate_only:
        return None
    from flint.prefect.clusters import load_cluster_spec  # no Prefect import
    from flint.strategy import load_strategy

    load_strategy(args.strategy)
    return load_cluster_spec(args.cluster_config)


def run(args: argparse.Namespace) -> int:
    from flint.ms import summarise
    from flint.sim import SimOptions, simulate_bandpass, simulate_field

    out: Path = args.out_dir.absolute()
    opts = build_options(SimOptions, {"seed": args.seed, "n_beams": args.n_beams})
    cluster = _check_inputs(args)  # before anything is simulated or started
    data = out / "data"

    t0 = _stage(f"simulating PKS B1934-638 and a {opts.n_beams}-beam field in {data}")
    bp = simulate_bandpass(data, opts, progress=True)
    field = simulate_field(data, opts, progress=True)
    _done(t0)
    print(summarise(field.ms_paths[0]))
    if args.simulate_only:
        return 0

    # flint.prefect is imported here only: the rest of the CLI does not need Prefect
    from flint.cli.flow import print_products
    from flint.prefect.warm import WarmSession

    strategy = None if args.strategy is None else str(args.strategy)

    with WarmSession(cluster) as session:
        t0 = _stage(f"bandpass flow on {cluster.cluster_class}")
        solutions = session.run(
            "bandpass",
            bandpass=[str(p) for p in bp.ms_paths],
            out_dir=str(out / "bandpass"),
            strategy=strategy,
        )
        _done(t0)
        print_products("bandpass", solutions)

        t0 = _stage(f"continuum flow on {cluster.cluster_class}")
        products = session.run(
            "continuum",
            science=[str(p) for p in field.ms_paths],
            solutions=str(out / "bandpass"),
            out_dir=str(out / "continuum"),
            reference=str(field.sky_csv),
            strategy=strategy,
        )
        _done(t0)
    print_products("continuum", products)
    return 0
