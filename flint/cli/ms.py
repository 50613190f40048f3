"""``flint ms``: inspect and manipulate Measurement Sets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("ms", help="inspect and manipulate Measurement Sets", description="Measurement Set utilities.")
    msub = p.add_subparsers(dest="ms_command", metavar="<ms-command>")
    msub.required = True

    s = msub.add_parser("summary", help="summarise a Measurement Set", description="Antennas, baselines, channels, correlations, times, fields, flags, columns.")
    s.add_argument("ms", type=Path, nargs="+", help="Measurement Set(s)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(func=_summary)

    c = msub.add_parser("copy", help="deep-copy a Measurement Set", description="Copy a Measurement Set (atomically).")
    c.add_argument("ms", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    c.set_defaults(func=_copy)

    sp = msub.add_parser("split", help="one Measurement Set per field", description="Split a Measurement Set by FIELD_ID.")
    sp.add_argument("ms", type=Path)
    sp.add_argument("out_dir", type=Path)
    sp.set_defaults(func=_split)

    a = msub.add_parser("add-column", help="add a data column", description="Add a column shaped like another (zeros or a copy).")
    a.add_argument("ms", type=Path)
    a.add_argument("name")
    a.add_argument("--like", default="DATA")
    a.add_argument("--fill", choices=["zero", "copy"], default="zero")
    a.set_defaults(func=_add)

    r = msub.add_parser("rename-column", help="rename a column", description="Rename a column (never DATA).")
    r.add_argument("ms", type=Path)
    r.add_argument("old")
    r.add_argument("new")
    r.set_defaults(func=_rename)

    from flint.cli.preprocess import register_ms_subcommand

    register_ms_subcommand(msub)


def _summary(args: argparse.Namespace) -> int:
    from flint.ms import summarise

    summaries = [summarise(m) for m in args.ms]
    for s in summaries:
        for w in s.warnings:
            print(f"flint ms summary: warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps([s.as_dict() for s in summaries], indent=2))
    else:
        print("\n\n".join(str(s) for s in summaries))
    return 0


def _copy(args: argparse.Namespace) -> int:
    from flint.ms import copy_ms

    print(copy_ms(args.ms, args.out, overwrite=args.overwrite).path)
    return 0


def _split(args: argparse.Namespace) -> int:
    from flint.ms import split_by_field

    for name, ms in split_by_field(args.ms, args.out_dir).items():
        print(f"{name}\t{ms.path}")
    return 0


def _add(args: argparse.Namespace) -> int:
    from flint.ms import add_column

    add_column(args.ms, args.name, like=args.like, fill=args.fill)
    return 0


def _rename(args: argparse.Namespace) -> int:
    from flint.ms import rename_column

    rename_column(args.ms, args.old, args.new)
    return 0
