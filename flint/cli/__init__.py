"""The ``flint`` command line: one subcommand per stage.

Each subcommand lives in its own module here and defines ``register(subparsers)``.
Subcommands parse their arguments into the stage's options model and call the
library; a :class:`~flint.errors.FlintError` becomes one line on standard error and a
non-zero exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from flint.errors import FlintError

__all__ = ["main", "build_parser"]

#: subcommand modules, in the order ``flint --help`` lists them
COMMAND_MODULES = [
    "demo",
    "sim",
    "ms",
    "flag",
    "calibrate",
    "image",
    "convol",
    "linmos",
    "mask",
    "find_sources",
    "validate",
    "leakage",
    "rmsynth",
    "subtract",
    "flow",
    "cluster",
    "server",
    "nb",
    "lab",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flint",
        description=(
            "flint: calibrate and image ASKAP-style radio-interferometer data. "
            "Each subcommand runs one unit of work; 'flint <command> --help' explains it."
        ),
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"flint.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"flint.cli.{name}":
                continue  # stage not built yet
            raise
        mod.register(sub)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if verbose < 2:
        for noisy in ("matplotlib", "PIL", "distributed", "asyncio", "httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM as ``SystemExit(143)``: ``finally`` blocks and ``atexit`` handlers run, so the
    servers and clusters a command started (Prefect's temporary API server, Dask workers) stop
    with it. By default SIGTERM ends Python without them, and Prefect's uvicorn outlived
    ``flint demo``."""
    print("flint: terminated", file=sys.stderr)
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    import threading

    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        rc = args.func(args)
    except FlintError as exc:
        print(f"flint {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flint: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
