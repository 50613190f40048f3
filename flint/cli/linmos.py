"""``flint linmos``: primary-beam-weighted mosaic of beam images."""

from __future__ import annotations

import argparse
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from flint.linmos import LinmosOptions

    p = sub.add_parser(
        "linmos",
        help="mosaic beam images with primary-beam weighting",
        description=(
            "Co-add beam images onto one sky grid: sum(w I/PB)/sum(w) with w = PB^2/sigma^2, "
            "a Gaussian primary beam centred on each image's reference direction (or, with "
            "--pb-cube, an ASKAP holography beam cube, removing the Stokes-I leakage into Q/U/V). "
            "Writes the mosaic and its weight (inverse-variance) image. Cubes are mosaicked "
            "channel by channel with bounded memory, keeping their BEAMS table."
        ),
    )
    p.add_argument("images", type=Path, nargs="+", help="beam images (convolve them to a common beam first)")
    p.add_argument("-o", "--output", type=Path, default=None, help="mosaic file (default SB<sbid>.<field>[.roundN].linmos.fits)")
    add_options_arguments(p, LinmosOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flint.linmos import LinmosOptions, run_linmos

    result = run_linmos(args.images, options_from_args(args, LinmosOptions), output=args.output)
    print(f"mosaic  {result.mosaic}")
    if result.weight is not None:
        print(f"weight  {result.weight}")
    return 0
