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
            "SB<sbid>.<field>.beamNN[.roundN].{image,residual,model,psf}.fits (with --pol IQUV: "
            ".i.image.fits, .q.image.fits, ...; with --channels-out N --cube: channel cubes "
            ".i.image.cube.fits ... with a per-channel BEAMS table; per-channel models stay as "
            ".chNNNN.model.fits for flint subtract). The clean "
            "model is written to MODEL_DATA for self-calibration; --niter 0 makes only the "
            "dirty image and the PSF and leaves the MS untouched. Options come from the "
            "strategy file's wsclean section for --round (if --strategy is given), then "
            "from the flags below."
        ),
    )
    _common_arguments(p)
    add_options_arguments(p, WSCleanOptions)
    p.set_defaults(func=run)

    c = sub.add_parser(
        "image-cube",
        help="image a channel cube in channel blocks (spectral line) and assemble it",
        description=(
            "Image every MS channel on its own with WSClean, --channel-block channels per WSClean "
            "run (-channel-range; each channel its own restoring beam), then stream the per-channel "
            "images into SB<sbid>.<field>.beamNN[.roundN].<p>.<kind>.cube.fits (p = i, q, u, v) with a "
            "per-channel BEAMS table. MODEL_DATA is not written. --channel-range limits the channels; "
            "--keep-channel-images keeps the per-channel images. A flow runs the blocks as separate tasks."
        ),
    )
    _common_arguments(c)
    c.add_argument("--channel-block", type=int, default=8, help="channels imaged per WSClean run (default: 8)")
    add_options_arguments(c, WSCleanOptions, exclude=_CUBE_FIXED)
    c.set_defaults(func=run_cube)


def _common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ms", type=Path, nargs="+", help="Measurement Set(s), one beam each")
    p.add_argument("--out-dir", type=Path, default=None, help="folder for the products (default: beside each MS)")
    p.add_argument("--round", type=int, default=None, help="self-calibration round recorded in the names")
    p.add_argument("--strategy", type=Path, default=None, help="strategy YAML to take the wsclean options from ('default' for the packaged one)")
    p.add_argument("--json", action="store_true", help="print the products as JSON")
    p.add_argument("--force", action="store_true", help="image even a raw ASKAP MS (instrument frame; normally run 'flint ms preprocess' first)")


#: options ``flint image-cube`` sets itself (one output channel per MS channel, each on its own)
_CUBE_FIXED = ("channels_out", "join_channels", "fit_spectral_pol", "squared_channel_joining", "update_model", "cube")


def strategy_options(strategy: Path | None, tool: str, round: int | None) -> BaseOptions | None:
    """Options of ``tool`` from a strategy file (``default``: the packaged one), or None."""
    if strategy is None:
        return None
    from flint.strategy import load_strategy

    strat = load_strategy(None if str(strategy) == "default" else strategy)
    return strat.options_for(tool, round or 0)


def strategy_masking(strategy: Path | None, round: int | None) -> BaseOptions | None:
    """The strategy's ``masking`` options for ``round`` (rounds >= 1 that use a clean mask), or None."""
    if strategy is None or not round:
        return None
    from flint.strategy import load_strategy

    strat = load_strategy(None if str(strategy) == "default" else strategy)
    return strat.options_for("masking", round) if "masking" in strat.tools else None


def _mask_from_previous_round(path: Path, out_dir: Path | None, round: int, masking: BaseOptions) -> Path:
    """The clean mask of ``round`` made from round ``round - 1``'s image, as the continuum flow does."""
    from flint.errors import FlintInputError
    from flint.imaging import product_base
    from flint.masking import make_clean_mask
    from flint.ms import MS

    ms = MS.cast(path)
    folder = out_dir if out_dir is not None else ms.path.parent
    previous = folder / f"{product_base(ms, round - 1)}.image.fits"
    outer = folder / f"{product_base(ms, round - 1)}.outer.image.fits"  # the whole field, with --outer-size
    if outer.is_file():
        previous = outer
    if not previous.is_file():
        raise FlintInputError(
            f"{previous}: no such image; round {round} of the strategy cleans inside a mask made from round "
            f"{round - 1}'s image: image round {round - 1} into the same --out-dir first, or give --fits-mask"
        )
    mask = make_clean_mask(previous, masking, output=folder / f"{product_base(ms, round)}.mask.fits")  # type: ignore[arg-type]
    return Path(mask.mask)


def run(args: argparse.Namespace) -> int:
    from flint.imaging import WSCleanOptions, run_imaging

    base = strategy_options(args.strategy, "wsclean", args.round)
    opts = options_from_args(args, WSCleanOptions, base=base)
    masking = strategy_masking(args.strategy, args.round) if opts.fits_mask is None else None
    results = []
    for path in args.ms:
        o = opts
        if masking is not None:
            o = opts.with_options(fits_mask=_mask_from_previous_round(Path(path), args.out_dir, args.round, masking))
        results.append(run_imaging(path, o, out_dir=args.out_dir, round=args.round, force=args.force))
    if args.json:
        print(json.dumps([{k: str(v) for k, v in r.products.items()} | {"ms": str(r.ms.path)} for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.ms.path}:")
            for kind, path in r.products.items():
                print(f"  {kind:9s} {path}")
    return 0


def run_cube(args: argparse.Namespace) -> int:
    from flint.errors import FlintOptionsError
    from flint.imaging import WSCleanOptions, run_cube_imaging

    if args.channel_block < 1:
        raise FlintOptionsError(f"--channel-block must be >= 1, got {args.channel_block}")
    base = strategy_options(args.strategy, "wsclean", args.round)
    opts = options_from_args(args, WSCleanOptions, base=base)
    results = [
        run_cube_imaging(path, opts, channel_block=args.channel_block, out_dir=args.out_dir, round=args.round, force=args.force)
        for path in args.ms
    ]
    if args.json:
        print(json.dumps([{k: str(v) for k, v in r.cubes.items()} | {"ms": str(r.ms.path), "channels": list(r.channels)} for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.ms.path}: channels {r.channels[0]}-{r.channels[1] - 1}")
            for kind, path in r.cubes.items():
                print(f"  {kind:12s} {path}")
    return 0
