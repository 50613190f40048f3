"""``flint convol``: convolve images to a common restoring beam."""

from __future__ import annotations

import argparse
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from flint.convol import ConvolOptions

    p = sub.add_parser(
        "convol",
        help="convolve images to their smallest common restoring beam",
        description=(
            "Find the smallest beam all images can be convolved to (or use --target-beam), "
            "convolve each image to it keeping Jy/beam, and write <image>.conv.fits. Cubes "
            "(FREQ/STOKES planes, per-channel BEAMS table) are convolved plane by plane: "
            "--mode natural gives each channel the smallest beam common to all cubes at that "
            "channel (for RM synthesis), --mode total one beam for all channels."
        ),
    )
    p.add_argument("images", type=Path, nargs="+", help="restored FITS images or cubes (Jy/beam)")
    add_options_arguments(p, ConvolOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flint.convol import ConvolOptions, run_convol

    result = run_convol(args.images, options_from_args(args, ConvolOptions))
    bmaj, bmin, bpa = result.beam
    if result.channel_beams is not None and len({b[:2] for b in result.channel_beams}) > 1:
        print(f"common beam per channel ({len(result.channel_beams)} channels), largest: {bmaj:.2f}\" x {bmin:.2f}\" PA {bpa:.1f} deg")
        for chan, (a, b, pa) in enumerate(result.channel_beams):
            print(f"  channel {chan}: {a:.2f}\" x {b:.2f}\" PA {pa:.1f} deg")
    else:
        print(f"common beam: {bmaj:.2f}\" x {bmin:.2f}\" PA {bpa:.1f} deg")
    for path in result.images:
        print(path)
    return 0
