"""Turn an options model into argparse arguments and back (``--field-name`` per field)."""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import ValidationError

from flint.errors import FlintOptionsError
from flint.options import BaseOptions

__all__ = ["add_options_arguments", "options_from_args", "flag_error", "build_options"]


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


def flag_error(exc: ValidationError, prefix: str = "", flags: dict[str, str] | None = None) -> FlintOptionsError:
    """A pydantic error as one line naming the CLI flags (``--n-beams: ...``), not the fields.

    ``flags`` maps a field to its flag where the flag is not ``--<prefix><field>``.
    """
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        inp = err.get("input")
        shown = "" if isinstance(inp, dict) else f" (got {inp!r})"
        if loc:
            name = loc[0]
            flag = (flags or {}).get(name) or "--" + (prefix + name).replace("_", "-")
            parts.append(f"{flag}: {msg}{shown}")
        else:  # a check across fields: its message names the flags
            parts.append(msg)
    return FlintOptionsError("; ".join(parts))


def build_options(model: type[BaseOptions], values: dict[str, Any], prefix: str = "", flags: dict[str, str] | None = None) -> Any:
    """``model(**values)``; a bad value raises :class:`FlintOptionsError` naming its CLI flag."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise flag_error(exc, prefix, flags) from None


def options_from_args(
    args: argparse.Namespace, model: type[BaseOptions], prefix: str = "", base: BaseOptions | None = None
) -> Any:
    """Build ``model`` from the parsed arguments (validated; bad values raise FlintOptionsError
    naming the ``--flag``)."""
    given = {}
    for name in model.model_fields:
        value = getattr(args, _dest(prefix, name), None)
        if value is not None:
            given[name] = value
    values = {**base.model_dump(), **given} if base is not None else given
    return build_options(model, values, prefix)
