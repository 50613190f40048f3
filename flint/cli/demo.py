"""``flint demo``: simulate a small ASKAP field and run what flint can do on it."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "demo",
        help="simulate a small field and process it end to end",
        description=(
            "Simulate PKS B1934-638 and a 3-beam science field, print their summary, "
            "then run the pipeline stages that are available on them."
        ),
    )
    p.add_argument("out_dir", type=Path, help="folder for the demo's data and products")
    p.add_argument("--seed", type=int, default=42, help="simulation seed (default 42)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flint.ms import summarise
    from flint.sim import SimOptions, simulate_bandpass, simulate_field

    out: Path = args.out_dir
    opts = SimOptions(seed=args.seed)
    data = out / "data"
    bp = simulate_bandpass(data, opts, progress=True)
    field = simulate_field(data, opts, progress=True)
    print(f"bandpass calibrator: {len(bp.ms_paths)} beams, science field: {len(field.ms_paths)} beams in {data}")
    print()
    print(summarise(field.ms_paths[0]))
    return 0
