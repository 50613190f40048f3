"""``flint mask``: a clean mask (WSClean ``-fits-mask``) from a restored image."""

from __future__ import annotations

import argparse
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from flint.masking import MaskingOptions

    p = sub.add_parser(
        "mask",
        help="make a clean mask from a restored image (for flint image --fits-mask)",
        description=(
            "Signal-to-noise islands of a restored image: pixels above --flood-snr in islands "
            "that reach --seed-snr, eroded by the restoring beam's core (it trims their edges; "
            "an island it removes whole keeps its pixels above --seed-snr unless "
            "--no-keep-seeds). The noise is the local robust rms of "
            "the residual image beside it (or of the image). Writes <stem>.mask.fits on the "
            "image's grid: pass it to the next round's imaging with --fits-mask."
        ),
    )
    p.add_argument("image", type=Path, help="restored FITS image (e.g. SB1.F.beam00.round0.image.fits)")
    p.add_argument("-o", "--output", type=Path, default=None, help="mask file (default <stem>.mask.fits beside the image)")
    p.add_argument("--residual", type=Path, default=None, help="residual image for the noise (default: the image's residual sibling)")
    add_options_arguments(p, MaskingOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flint.masking import MaskingOptions, make_clean_mask

    result = make_clean_mask(args.image, options_from_args(args, MaskingOptions), output=args.output, residual=args.residual)
    print(f"mask: {result.mask}")
    print(f"islands: {result.n_islands}")
    print(f"pixels: {result.n_pixels}")
    print(f"noise_jy: {result.noise_jy:.4g}")
    return 0
