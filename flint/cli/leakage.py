"""``flint leakage``: V/I (and Q/I, U/I) leakage at catalogued components."""

from __future__ import annotations

import argparse
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from flint.leakage import LeakageOptions

    p = sub.add_parser(
        "leakage",
        help="polarisation leakage (V/I, Q/I, U/I) at the components of a catalogue",
        description=(
            "Read Stokes V (and with --image-q/--image-u, Q and U) and Stokes I at the isolated, "
            "compact, bright components of a flint find-sources catalogue, channel by channel for "
            "cubes, and write <V image>.leakage.csv (one row per component and channel) and "
            "<V image>.leakage.png (leakage against distance from the beam centre)."
        ),
    )
    p.add_argument("image_v", type=Path, metavar="IMAGE_V", help="Stokes-V image or cube (an IQUV cube works too)")
    p.add_argument("image_i", type=Path, metavar="IMAGE_I", help="Stokes-I image or cube on the same grid")
    p.add_argument("catalogue", type=Path, metavar="CATALOGUE", help="component catalogue (<image>.comp.csv from flint find-sources)")
    p.add_argument("--image-q", type=Path, default=None, help="Stokes-Q image or cube: measure Q/I too")
    p.add_argument("--image-u", type=Path, default=None, help="Stokes-U image or cube: measure U/I too")
    add_options_arguments(p, LeakageOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flint.leakage import LeakageOptions, run_leakage

    opts = options_from_args(args, LeakageOptions)
    r = run_leakage(args.image_v, args.image_i, args.catalogue, opts, image_q=args.image_q, image_u=args.image_u)
    print(f"{r.n_used} of {r.n_catalogue} components used, {r.n_channels} channel(s)")
    for name, value in r.median_abs.items():
        print(f"median |{name}/I| = {100 * value:.3f} %  (median {name}/I = {100 * r.median[name]:+.3f} %)")
    print(f"table   {r.table}")
    print(f"figure  {r.figure}")
    return 0
