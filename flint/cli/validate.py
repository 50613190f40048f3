"""``flint validate``: compare a source catalogue with a reference catalogue."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from flint.cli._options import add_options_arguments, options_from_args

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from flint.validation import ValidationOptions

    p = sub.add_parser(
        "validate",
        help="validate a catalogue against a reference (the simulator's sky or a survey table)",
        description=(
            "Cross-match a component catalogue with a reference catalogue: the simulator's "
            "SB<sbid>.<field>.sky.csv or a survey table (VizieR FITS, CSV or VOTable: NVSS, SUMSS, "
            "RACS-low, ICRF-like position-only). Numeric RA/Dec columns are preferred over "
            "sexagesimal ones and units come from the table (--ra-col/--dec-col/--flux-col/"
            "--flux-unit otherwise); reference fluxes are scaled to the image frequency with "
            "--spectral-index (default -0.8) from --ref-freq (default: from the table or its survey). "
            "Reports completeness (overall and per SNR bin), flux ratio, astrometric offsets, the "
            "inner-mosaic noise against the thermal noise of the MSs (--ms), and the spurious "
            "fraction of components >= 5 sigma; writes a PNG figure and CSV tables. "
            "Use --pb-correct for single-beam images."
        ),
    )
    p.add_argument("catalogue", type=Path, help="component catalogue (from flint find-sources)")
    p.add_argument("reference", type=Path, help="reference catalogue (FITS, CSV or VOTable)")
    p.add_argument("--image", type=Path, default=None, help="the image the catalogue came from (its rms map and linmos weight are used when beside it)")
    p.add_argument("--weight", type=Path, default=None, help="the linmos weight image (default: <image stem>.weight.fits if present)")
    p.add_argument("--ms", type=Path, nargs="+", default=None, metavar="MS", help="the Measurement Sets imaged (one per beam): thermal noise from their weights and flags")
    p.add_argument("--output-dir", type=Path, default=None, help="folder of the outputs (default: the catalogue's)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    add_options_arguments(p, ValidationOptions)
    p.set_defaults(func=run)


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def run(args: argparse.Namespace) -> int:
    from flint.validation import ValidationOptions, run_validation, summary_lines

    result = run_validation(
        args.catalogue,
        args.reference,
        options_from_args(args, ValidationOptions),
        image=args.image,
        output_dir=args.output_dir,
        ms=args.ms,
        weight=args.weight,
    )
    if args.json:
        numbers = {k: _json_value(v) for k, v in result.numbers().items()}
        extra = {"figure": str(result.figure), "matches": str(result.matches_table), "summary": str(result.summary_table)}
        print(json.dumps(numbers | extra | {"bins": [{k: _json_value(v) for k, v in b.items()} for b in result.bins_table()]}, indent=2))
    else:
        for line in summary_lines(result):
            print(line)
        print(f"figure               {result.figure}")
        print(f"tables               {result.matches_table}, {result.summary_table}")
    return 0
