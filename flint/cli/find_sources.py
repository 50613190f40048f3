"""``flint find-sources``: BANE + aegean source finding."""

from __future__ import annotations

import argparse
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from flint.source_finding import SourceFindingOptions

    p = sub.add_parser(
        "find-sources",
        help="find sources in images (BANE + aegean)",
        description=(
            "Estimate background and noise with BANE, fit components with aegean, and write "
            "<image>.comp.csv / .comp.fits (plus .bkg.fits / .rms.fits) beside each image."
        ),
    )
    p.add_argument("images", type=Path, nargs="+", help="restored single-plane FITS images (Jy/beam)")
    add_options_arguments(p, SourceFindingOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flint.source_finding import SourceFindingOptions, run_source_finding

    opts = options_from_args(args, SourceFindingOptions)
    for image in args.images:
        result = run_source_finding(image, opts)
        print(f"{image}: {result.n_components} components -> {result.catalogue}")
    return 0
