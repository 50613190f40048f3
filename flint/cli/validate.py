"""``flint validate``: compare a source catalogue with a reference catalogue."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from flint.validation import ValidationOptions

    p = sub.add_parser(
        "validate",
        help="validate a catalogue against a reference (e.g. the simulator's sky)",
        description=(
            "Cross-match a component catalogue with a reference catalogue (FITS/CSV with "
            "RA/Dec/flux columns; the simulator writes SB<sbid>.<field>.sky.csv) and report "
            "completeness, flux ratio, astrometric offsets and noise; writes a PNG figure and "
            "CSV tables. Use --pb-correct for single-beam images."
        ),
    )
    p.add_argument("catalogue", type=Path, help="component catalogue (from flint find-sources)")
    p.add_argument("reference", type=Path, help="reference catalogue")
    p.add_argument("--image", type=Path, default=None, help="the image the catalogue came from")
    p.add_argument("--output-dir", type=Path, default=None, help="folder of the outputs (default: the catalogue's)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    add_options_arguments(p, ValidationOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flint.validation import ValidationOptions, run_validation

    result = run_validation(
        args.catalogue, args.reference, options_from_args(args, ValidationOptions), image=args.image, output_dir=args.output_dir
    )
    numbers = result.numbers()
    if args.json:
        print(json.dumps(numbers | {"figure": str(result.figure), "matches": str(result.matches_table), "summary": str(result.summary_table)}, indent=2))
    else:
        for key, value in numbers.items():
            print(f"{key:26s} {value}")
        print(f"{'figure':26s} {result.figure}")
        print(f"{'tables':26s} {result.matches_table}, {result.summary_table}")
    return 0
