"""``flint ms preprocess``: raw ASKAP Measurement Sets to the sky frame (via fixms)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args
from flint.errors import FlintOptionsError

__all__ = ["register_ms_subcommand"]

logger = logging.getLogger(__name__)


def register_ms_subcommand(msub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    """Add ``preprocess`` to the ``flint ms`` subcommands."""
    from flint.askap import PreprocessOptions

    p = msub.add_parser(
        "preprocess",
        help="put raw ASKAP Measurement Sets in the sky frame (fixms)",
        description=(
            "Apply the ASKAP beam phase centre (FEED.BEAM_OFFSET -> FIELD) and rotate the "
            "correlations from the instrument frame to the sky frame, undoing ASKAPsoft's "
            "I = XX + YY, with fixms. The raw visibilities are kept in INSTRUMENT_DATA, the "
            "sky-frame ones go to DATA. Already preprocessed Measurement Sets are left alone. "
            "In place unless --output-ms is given; an interrupted run is undone by re-running."
        ),
    )
    p.add_argument("ms", type=Path, nargs="+", help="raw ASKAP Measurement Set(s), one beam each")
    add_options_arguments(p, PreprocessOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from flint.askap import PreprocessOptions, preprocess_askap

    opts = options_from_args(args, PreprocessOptions)
    if opts.output_ms is not None and len(args.ms) > 1:
        raise FlintOptionsError(f"--output-ms names one output but {len(args.ms)} Measurement Sets were given; preprocess them one at a time")
    for ms in tqdm(args.ms, desc="preprocess", unit="MS", disable=len(args.ms) < 2):
        print(preprocess_askap(ms, opts).message)
    return 0
