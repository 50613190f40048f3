"""Turn an options model into argparse arguments and back (``--field-name`` per field)."""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from flint.options import BaseOptions

__all__ = ["add_options_arguments", "options_from_args"]


def _dest(prefix: str, name: str) -> str:
    return f"{prefix}{name}"


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def add_options_arguments(
    parser: argparse.ArgumentParser,
    model: type[BaseOptions],
    prefix: str = "",
    exclude: tuple[str, ...] = (),
    group_title: str | None = None,
) -> None:
    """Add one ``--option`` per field of ``model``; help text is the field docstring.

    Defaults are left as ``None`` so only the options given on the command line
    override the model's defaults.
    """
    group = parser.add_argument_group(group_title or f"{model.__name__} options")
    for name, info in model.model_fields.items():
        if name in exclude:
            continue
        flag = "--" + (prefix + name).replace("_", "-")
        dest = _dest(prefix, name)
        tp, _ = _unwrap_optional(info.annotation)
        default = info.default
        help_text = (info.description or "").strip().replace("%", "%%")
        if default is not None and not callable(default):
            help_text += f" (default: {default})".replace("%", "%%")
        origin = get_origin(tp)
        if tp is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif origin is Literal:
            group.add_argument(flag, dest=dest, choices=list(get_args(tp)), default=None, help=help_text)
        elif origin in (tuple, list):
            inner = [a for a in get_args(tp) if a is not Ellipsis]
            conv = inner[0] if inner and inner[0] in (int, float, str) else str
            nargs: int | str = len(inner) if origin is tuple and Ellipsis not in get_args(tp) else "+"
            group.add_argument(flag, dest=dest, nargs=nargs, type=conv, default=None, help=help_text)
        elif tp in (int, float, str):
            group.add_argument(flag, dest=dest, type=tp, default=None, help=help_text)
        elif tp is Path:
            group.add_argument(flag, dest=dest, type=Path, default=None, help=help_text)
        else:
            group.add_argument(flag, dest=dest, default=None, help=help_text)


def options_from_args(
    args: argparse.Namespace, model: type[BaseOptions], prefix: str = "", base: BaseOptions | None = None
) -> Any:
    """Build ``model`` from the parsed arguments (validated; bad values raise FlintOptionsError)."""
    given = {}
    for name in model.model_fields:
        value = getattr(args, _dest(prefix, name), None)
        if value is not None:
            given[name] = value
    if base is not None:
        return base.with_options(**given)
    return model.create(**given)
