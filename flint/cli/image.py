"""``flint image``: image Measurement Sets with WSClean."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args
from flint.options import BaseOptions

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from flint.imaging import WSCleanOptions

    p = sub.add_parser(
        "image",
        help="image and deconvolve Measurement Sets with WSClean",
        description=(
            "Run WSClean on each Measurement Set (the binary on PATH, or inside an apptainer/"
            "singularity image with --container) and name the products "
            "SB<sbid>.<field>.beamNN[.roundN].{image,residual,model,psf}.fits. The clean "
            "model is written to MODEL_DATA for self-calibration; --niter 0 makes only the "
            "dirty image and the PSF and leaves the MS untouched. Options come from the "
            "strategy file's wsclean section for --round (if --strategy is given), then "
            "from the flags below."
        ),
    )
    p.add_argument("ms", type=Path, nargs="+", help="Measurement Set(s), one beam each")
    p.add_argument("--out-dir", type=Path, default=None, help="folder for the products (default: beside each MS)")
    p.add_argument("--round", type=int, default=None, help="self-calibration round recorded in the names")
    p.add_argument("--strategy", type=Path, default=None, help="strategy YAML to take the wsclean options from ('default' for the packaged one)")
    p.add_argument("--json", action="store_true", help="print the products as JSON")
    p.add_argument("--force", action="store_true", help="image even a raw ASKAP MS (instrument frame; normally run 'flint ms preprocess' first)")
    add_options_arguments(p, WSCleanOptions)
    p.set_defaults(func=run)


def strategy_options(strategy: Path | None, tool: str, round: int | None) -> BaseOptions | None:
    """Options of ``tool`` from a strategy file (``default``: the packaged one), or None."""
    if strategy is None:
        return None
    from flint.strategy import load_strategy

    strat = load_strategy(None if str(strategy) == "default" else strategy)
    return strat.options_for(tool, round or 0)


def run(args: argparse.Namespace) -> int:
    from flint.imaging import WSCleanOptions, run_imaging

    base = strategy_options(args.strategy, "wsclean", args.round)
    opts = options_from_args(args, WSCleanOptions, base=base)
    results = []
    for path in args.ms:
        results.append(run_imaging(path, opts, out_dir=args.out_dir, round=args.round, force=args.force))
    if args.json:
        print(json.dumps([{k: str(v) for k, v in r.products.items()} | {"ms": str(r.ms.path)} for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.ms.path}:")
            for kind, path in r.products.items():
                print(f"  {kind:9s} {path}")
    return 0
