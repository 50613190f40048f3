"""``flint calibrate``: bandpass, apply, self-cal and plots of AO-format solutions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from flint.calibrate import ApplyOptions, BandpassOptions, SelfcalOptions

    p = sub.add_parser(
        "calibrate",
        help="bandpass / self-cal gain solutions, apply, plot",
        description="Solve, apply and plot antenna gain solutions (AO calibrate binary format).",
    )
    csub = p.add_subparsers(dest="calibrate_command", metavar="<calibrate-command>")
    csub.required = True

    b = csub.add_parser(
        "bandpass",
        help="solve the bandpass of a PKS B1934-638 observation",
        description=(
            "Flag, solve per-antenna per-channel XX/YY gains against the Reynolds (1994) model of "
            "PKS B1934-638, flag the calibrated residuals (data/gains - model) with AOFlagger and solve again; write AO-format solutions "
            "(SB<sbid>.B1934-638.beam<NN>.aocalibrate.bin) and a PNG. On an ASKAP 36-field calibrator MS only "
            "the field named for the MS's beam is used (else the one nearest 1934-638; --field chooses)."
        ),
    )
    b.add_argument("ms", type=Path, nargs="+", help="calibrator Measurement Set(s), one per beam")
    b.add_argument("--output", type=Path, default=None, help="solution file (only with one MS)")
    b.add_argument("--json", action="store_true", help="print the results as JSON")
    add_options_arguments(b, BandpassOptions)
    b.set_defaults(func=_bandpass)

    a = csub.add_parser(
        "apply",
        help="apply solutions to CORRECTED_DATA",
        description=(
            "Write J_p^-1 V J_q^-H to CORRECTED_DATA (DATA is never overwritten). Solutions: AO-format .bin, "
            "ASKAP calparameters tables (the MS's beam is taken from it) or CASA B/G/T Jones caltables. "
            "Solutions named for another beam than the MS's are refused (--force overrides)."
        ),
    )
    a.add_argument("ms", type=Path, help="Measurement Set")
    a.add_argument("solutions", type=Path, help="AO-format solution file (.bin), ASKAP calparameters table or CASA bandpass caltable")
    add_options_arguments(a, ApplyOptions)
    a.set_defaults(func=_apply)

    s = csub.add_parser(
        "selfcal",
        help="self-calibrate against MODEL_DATA",
        description="Solve gains against MODEL_DATA (phase or amp+phase), write them and apply to CORRECTED_DATA.",
    )
    s.add_argument("ms", type=Path, help="Measurement Set with MODEL_DATA")
    s.add_argument("--output", type=Path, default=None, help="solution file")
    s.add_argument("--json", action="store_true", help="print the result as JSON")
    add_options_arguments(s, SelfcalOptions)
    s.set_defaults(func=_selfcal)

    pl = csub.add_parser("plot", help="plot solutions as PNG", description="Amplitude and phase against channel per antenna.")
    pl.add_argument("solutions", type=Path, help="AO-format solution file (.bin), ASKAP calparameters table or CASA caltable")
    pl.add_argument("--beam", type=int, default=None, help="beam to plot from a calparameters table holding several")
    pl.add_argument("--output", type=Path, default=None, help="PNG path (default: next to the solutions)")
    pl.set_defaults(func=_plot)


def _bandpass(args: argparse.Namespace) -> int:
    from flint.calibrate import BandpassOptions, run_bandpass
    from flint.errors import FlintOptionsError

    opts = options_from_args(args, BandpassOptions)
    if args.output is not None and len(args.ms) > 1:
        raise FlintOptionsError("--output names one solution file; give one MS, or leave --output out")
    results = [run_bandpass(ms, opts, output=args.output) for ms in args.ms]
    if args.json:
        print(json.dumps([{"ms": str(r.ms.path), "solutions": str(r.solutions), "plot": str(r.plot) if r.plot else None, "n_flagged_solutions": r.n_flagged_solutions, "flagged_fraction": r.flagged_fraction, "residual_rms_jy": r.residual_rms_jy, "field": r.field, "field_id": r.field_id, "field_reason": r.field_reason} for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.ms.path}: field {r.field} ({r.field_reason}); solutions {r.solutions} ({r.n_flagged_solutions} flagged), data flagged {100 * r.flagged_fraction:.2f}%, residual rms {r.residual_rms_jy:.3g} Jy")
    return 0


def _apply(args: argparse.Namespace) -> int:
    from flint.calibrate import ApplyOptions, run_apply

    r = run_apply(args.ms, args.solutions, options_from_args(args, ApplyOptions))
    print(f"{r.ms.path}: {r.ms.column} written; flagged {100 * r.flagged_before:.2f}% -> {100 * r.flagged_after:.2f}%")
    return 0


def _selfcal(args: argparse.Namespace) -> int:
    from flint.calibrate import SelfcalOptions, run_selfcal

    r = run_selfcal(args.ms, options_from_args(args, SelfcalOptions), output=args.output)
    if args.json:
        print(json.dumps({"ms": str(r.ms.path), "column": r.ms.column, "solutions": str(r.solutions), "n_flagged_solutions": r.n_flagged_solutions, "residual_rms_before": r.residual_rms_before, "residual_rms_after": r.residual_rms_after}, indent=2))
    else:
        print(f"{r.ms.path}: solutions {r.solutions} ({r.n_flagged_solutions} flagged); residual rms {r.residual_rms_before:.3g} -> {r.residual_rms_after:.3g} Jy; {r.ms.column} written")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from flint.calibrate import plot_solutions

    print(plot_solutions(args.solutions, args.output, beam=args.beam))
    return 0
