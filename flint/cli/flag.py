"""``flint flag``: flag bad data and RFI (AOFlagger) in Measurement Sets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from flint.flagging import FlagOptions

    p = sub.add_parser(
        "flag",
        help="flag RFI (AOFlagger) and bad data",
        description=(
            "Flag NaN/zero visibilities, zero-UVW rows, listed antennas and edge channels, and "
            "RFI found by AOFlagger with flint's ASKAP strategy. New flags are OR-ed with the "
            "existing ones; nothing is unflagged unless --clear-existing is given."
        ),
    )
    p.add_argument("ms", type=Path, nargs="+", help="Measurement Set(s)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_options_arguments(p, FlagOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flint.flagging import FlagOptions, run_flagging

    opts = options_from_args(args, FlagOptions)
    results = [run_flagging(ms, opts) for ms in args.ms]
    if args.json:
        print(json.dumps([{"ms": str(r.ms.path), "flagged_before": r.flagged_before, "flagged_after": r.flagged_after, "strategy": str(r.strategy) if r.strategy else None} for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.ms.path}: flagged {100 * r.flagged_before:.2f}% -> {100 * r.flagged_after:.2f}%")
    return 0
