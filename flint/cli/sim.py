"""``flint sim``: write simulated ASKAP Measurement Sets with a known sky."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "sim",
        help="simulate a bandpass-calibrator and a science observation",
        description=(
            "Write Measurement Sets of PKS B1934-638 (one per beam) and of a science field "
            "of random point sources (one per beam), corrupted by known antenna gains and "
            "noise, with the truth (sky catalogue, gains) written beside them. With "
            "--askap-raw, write them as the ASKAP correlator does (boresight FIELD, "
            "FEED.BEAM_OFFSET, instrument frame, 36-field calibrator MSs): run "
            "'flint ms preprocess' on them before calibrating or imaging. With --polarised, the "
            "sources are polarised (fraction, angle, RM, some circular) and the antennas leak "
            "(D-terms, XY-phases, off-axis leakage); the truth (pol.csv, dterms, xyphase.csv, a "
            "holography-format beam cube) is written beside the MSs. Visibilities are "
            "predicted and written in chunks of --chunk-mb (memory stays flat at any size; "
            "the bytes do not depend on the chunk size)."
        ),
    )
    p.add_argument("out_dir", type=Path, help="folder to write into (created if needed)")
    p.add_argument("--what", choices=["both", "bandpass", "field"], default="both", help="which observation(s) to write")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    from flint.sim import SimOptions

    add_options_arguments(p, SimOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flint.ms import summarise
    from flint.sim import SimOptions, simulate_bandpass, simulate_field

    opts = options_from_args(args, SimOptions)
    results = {}
    if args.what in ("both", "bandpass"):
        results["bandpass"] = simulate_bandpass(args.out_dir, opts, progress=True)
    if args.what in ("both", "field"):
        results["field"] = simulate_field(args.out_dir, opts, progress=True)
    if args.json:
        print(json.dumps({
            k: {"ms": [str(p) for p in r.ms_paths], "truth": str(r.truth), "sky": str(r.sky_csv) if r.sky_csv else None,
                "n_visibilities": r.n_visibilities, "seconds": round(r.seconds, 3)}
            for k, r in results.items()
        }, indent=2))
    else:
        for kind, r in results.items():
            rate = r.n_visibilities / max(r.seconds, 1e-9)
            print(f"{kind}: {len(r.ms_paths)} Measurement Sets, truth in {r.truth}")
            print(f"  {r.n_visibilities} visibilities in {r.seconds:.1f} s ({rate:.3g} visibilities/s)")
            for p in r.ms_paths:
                print(f"  {p}")
        first = next(iter(results.values())).ms_paths[0]
        print()
        print(summarise(first))
    return 0
