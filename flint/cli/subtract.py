"""``flint subtract``: predict the continuum model and subtract it from the visibilities."""

from __future__ import annotations

import argparse
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from flint.subtract import SubtractOptions

    p = sub.add_parser(
        "subtract",
        help="continuum subtraction: predict the clean model (WSClean -predict) and subtract it",
        description=(
            "Predict the final self-cal round's clean model (--model-prefix) into MODEL_DATA at "
            "every channel with WSClean -predict, write CORRECTED_DATA - MODEL_DATA into a new "
            "column (CONTSUB_DATA), and with --uvcontsub-order fit and subtract a polynomial per "
            "baseline and integration over the line-free --fit-channels (by default found in a "
            "first-pass dirty cube of the subtracted data: per-pixel baseline, robust clipping of "
            "each channel's peak and minimum, dilation by the line width; --linefree-* tune it). "
            "DATA and CORRECTED_DATA are only read; the new column appears only when complete."
        ),
    )
    p.add_argument("ms", type=Path, metavar="MS", help="calibrated Measurement Set of one beam")
    from flint.linefree import LineFreeOptions

    add_options_arguments(p, SubtractOptions, exclude=("line_free",))
    add_options_arguments(p, LineFreeOptions, prefix="linefree_", group_title="automatic line-free channels (--fit-channels auto)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flint.linefree import LineFreeOptions, format_channel_ranges
    from flint.subtract import SubtractOptions, run_subtract

    line_free = options_from_args(args, LineFreeOptions, prefix="linefree_")
    r = run_subtract(args.ms, options_from_args(args, SubtractOptions).with_options(line_free=line_free))
    if r.models is not None:
        kind = f"{len(r.models.paths)} channel model(s)" if r.models.per_channel else "one model (flat spectrum)"
        print(f"predicted {kind}: {r.models.paths[0]}")
    if r.line_free is not None:
        print(f"line channels found: {format_channel_ranges(r.line_free.line) or 'none'}")
    if r.fit_channels is not None:
        print(f"polynomial of order {r.uvcontsub_order} fitted over channels {r.fit_channels}")
    print(f"{r.ms.path}: {r.column} written ({r.n_rows} rows); rms {r.rms_in_jy:.4g} -> {r.rms_out_jy:.4g} Jy")
    if r.n_unfit:
        print(f"{r.n_unfit} spectra had too few line-free channels to fit; left as is")
    return 0
