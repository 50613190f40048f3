"""A notebook's declared parameters: read from its ``parameters`` cell, values checked.

The cell tagged ``parameters`` is parsed with :mod:`ast` (never executed). Every
top-level ``name = value`` (or ``name: type = value``) declares a parameter; its type
comes from the annotation when there is one, else from the default's literal type.
A trailing ``# comment`` is its help text. Values given for a run are checked against
these types before anything runs: an unknown name or a wrong type is an error naming
the parameter, what it expects and the closest declared name.
"""

from __future__ import annotations

import ast
import difflib
import io
import json
import os
import tokenize
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flint.errors import FlintInputError, FlintOptionsError
from flint.io import load_yaml_text

__all__ = [
    "NotebookParameter",
    "read_notebook",
    "parameters_cell",
    "read_parameters",
    "check_parameters",
    "parse_cli_value",
    "collect_parameters",
]

#: kinds a parameter can have ("any" accepts every YAML value)
KINDS = ("bool", "int", "float", "str", "list", "dict", "any")
_SIMPLE = {"bool": "bool", "int": "int", "float": "float", "str": "str", "list": "list", "tuple": "list", "dict": "dict", "Path": "str"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class NotebookParameter:
    """One parameter declared in a notebook's ``parameters`` cell."""

    name: str
    kind: str
    """One of ``bool, int, float, str, list, dict, any``."""
    default: Any
    """The default as a Python value (``None`` when it is not a literal)."""
    source: str
    """The default as written in the cell."""
    optional: bool = False
    """``None`` is accepted (default ``None`` or an ``X | None`` annotation)."""
    item_kind: str | None = None
    """For lists: the kind every item must have (``None``: anything)."""
    help: str = ""
    """The trailing comment on the declaration."""

    def describe(self) -> str:
        """``int`` / ``list of float`` / ``str or None``."""
        text = self.kind if self.item_kind is None else f"{self.kind} of {self.item_kind}"
        return f"{text} or None" if self.optional and self.kind != "any" else text


def read_notebook(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a notebook file as JSON, with a clear error if it is not one."""
    p = Path(path)
    if not p.is_file():
        raise FlintInputError(f"notebook {p} does not exist")
    try:
        nb = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FlintInputError(f"{p} is not a Jupyter notebook (invalid JSON: {exc})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise FlintInputError(f"{p} is not a Jupyter notebook (no 'cells' list)")
    return nb


def _source(cell: Mapping[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def parameters_cell(nb: Mapping[str, Any]) -> str | None:
    """Source of the first code cell tagged ``parameters`` (``None`` if there is none)."""
    for cell in nb.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.get("cell_type") == "code" and "parameters" in tags:
            return _source(cell)
    return None


def _kind_of_value(value: Any) -> tuple[str, str | None, bool]:
    """(kind, item_kind, optional) inferred from a literal default."""
    if value is None:
        return "any", None, True
    if isinstance(value, bool):
        return "bool", None, False
    if isinstance(value, int):
        return "int", None, False
    if isinstance(value, float):
        return "float", None, False
    if isinstance(value, str):
        return "str", None, False
    if isinstance(value, list | tuple):
        kinds = {_kind_of_value(v)[0] for v in value}
        if kinds == {"int", "float"}:
            kinds = {"float"}
        item = kinds.pop() if len(kinds) == 1 and not kinds & {"any"} else None
        return "list", item, False
    if isinstance(value, dict):
        return "dict", None, False
    return "any", None, False


def _kind_of_annotation(node: ast.expr) -> tuple[str, str | None, bool] | None:
    """(kind, item_kind, optional) from an annotation; ``None`` if not understood."""
    optional = False
    # X | None, Optional[X]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        parts = [node.left, node.right]
        rest = [p for p in parts if not (isinstance(p, ast.Constant) and p.value is None)]
        if len(rest) != 1:
            return None
        optional, node = True, rest[0]
    elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Optional":
        optional, node = True, node.slice
    if isinstance(node, ast.Name) and node.id in _SIMPLE:
        return _SIMPLE[node.id], None, optional
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in ("list", "tuple", "List", "Tuple"):
        inner = node.slice
        if isinstance(inner, ast.Tuple):  # tuple[float, ...] / tuple[int, int]
            elts = [e for e in inner.elts if not (isinstance(e, ast.Constant) and e.value is Ellipsis)]
            inner = elts[0] if elts else inner
        item = _SIMPLE.get(inner.id) if isinstance(inner, ast.Name) else None
        return "list", item, optional
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in ("dict", "Dict"):
        return "dict", None, optional
    if isinstance(node, ast.Name) and node.id == "Any":
        return "any", None, True
    return None


def _comments(src: str) -> dict[int, str]:
    out: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    return out


def _strip_magics(src: str) -> str:
    # IPython magics and shell escapes are not Python; blank them (keeps line numbers)
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines())


def read_parameters(notebook: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, NotebookParameter]:
    """The parameters a notebook declares in its cell tagged ``parameters``.

    Parameters
    ----------
    notebook
        Path of a ``.ipynb`` file, or the notebook already loaded as a dict.

    Returns
    -------
    dict
        Name -> :class:`NotebookParameter`, in declaration order (empty when the
        notebook has no ``parameters`` cell).

    Examples
    --------
    >>> nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]},
    ...                  "source": "n_beams = 2  # beams to simulate\\nname: str | None = None"}]}
    >>> p = read_parameters(nb)
    >>> p["n_beams"].kind, p["n_beams"].default, p["n_beams"].help
    ('int', 2, 'beams to simulate')
    >>> p["name"].describe()
    'str or None'
    """
    where = "<notebook>"
    if not isinstance(notebook, Mapping):
        where = str(notebook)
        notebook = read_notebook(notebook)
    src = parameters_cell(notebook)
    if src is None:
        return {}
    src = _strip_magics(src)
    try:
        tree = ast.parse(src)
    except SyntaxError as exc:
        raise FlintInputError(f"{where}: the 'parameters' cell is not valid Python (line {exc.lineno}: {exc.msg})") from None
    comments = _comments(src)
    found: dict[str, NotebookParameter] = {}
    for stmt in tree.body:
        target: ast.expr | None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value, annotation = stmt.targets[0], stmt.value, None
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value, annotation = stmt.target, stmt.value, stmt.annotation
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        text = ast.get_source_segment(src, value) or ""
        try:
            default = ast.literal_eval(value)
            kind, item, optional = _kind_of_value(default)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            default, (kind, item, optional) = None, ("any", None, False)
        if annotation is not None:
            ann = _kind_of_annotation(annotation)
            if ann is not None:
                kind, item, optional = ann[0], ann[1] or item, ann[2] or default is None
        if isinstance(default, tuple):
            default = list(default)
        found[target.id] = NotebookParameter(
            name=target.id,
            kind=kind,
            default=default,
            source=text,
            optional=optional,
            item_kind=item,
            help=comments.get(stmt.end_lineno or stmt.lineno, ""),
        )
    return found


def _check_item(kind: str, value: Any) -> tuple[bool, Any]:
    if kind == "any":
        return True, value
    if kind == "bool":
        return isinstance(value, bool), value
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if kind == "str":
        return isinstance(value, str), value
    if kind == "list":
        return isinstance(value, list | tuple), list(value) if isinstance(value, list | tuple) else value
    if kind == "dict":
        return isinstance(value, dict), value
    return False, value


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _check_value(param: NotebookParameter, value: Any) -> Any:
    """The value (ints widened to float where a float is declared) or a FlintOptionsError."""
    if value is None:
        if param.optional or param.kind == "any":
            return None
        raise FlintOptionsError(f"parameter '{param.name}' expects {param.describe()} (default {param.source}), got None")
    ok, out = _check_item(param.kind, value)
    if not ok:
        raise FlintOptionsError(
            f"parameter '{param.name}' expects {param.describe()} (default {param.source}), got {_type_name(value)} {value!r}"
        )
    if param.kind == "list" and param.item_kind:
        items = []
        for i, item in enumerate(out):
            good, conv = _check_item(param.item_kind, item)
            if not good:
                raise FlintOptionsError(
                    f"parameter '{param.name}' expects {param.describe()} (default {param.source}), "
                    f"but item {i} is {_type_name(item)} {item!r}"
                )
            items.append(conv)
        out = items
    try:
        yaml.safe_dump(out)
    except yaml.YAMLError:
        raise FlintOptionsError(f"parameter '{param.name}': {value!r} cannot be written to YAML; give numbers, strings, lists or dicts") from None
    return out


def _unknown(name: str, declared: Iterable[str], where: str) -> FlintOptionsError:
    names = list(declared)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    listing = ", ".join(names) if names else "none (tag a cell 'parameters' to declare some)"
    return FlintOptionsError(f"{where} has no parameter '{name}'{hint}; it declares: {listing}")


def check_parameters(
    declared: Mapping[str, NotebookParameter], values: Mapping[str, Any], where: str = "the notebook"
) -> dict[str, Any]:
    """Check typed values against the declared parameters; return them (floats widened).

    Raises
    ------
    FlintOptionsError
        On the first unknown name (with the closest declared one) or wrong type.

    Examples
    --------
    >>> decl = {"n": NotebookParameter("n", "int", 2, "2"), "x": NotebookParameter("x", "float", 1.0, "1.0")}
    >>> check_parameters(decl, {"n": 3, "x": 2})
    {'n': 3, 'x': 2.0}
    >>> check_parameters(decl, {"m": 3})
    Traceback (most recent call last):
    ...
    flint.errors.FlintOptionsError: the notebook has no parameter 'm'; it declares: n, x
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in declared:
            raise _unknown(name, declared, where)
        out[name] = _check_value(declared[name], value)
    return out


def parse_cli_value(param: NotebookParameter, text: str) -> Any:
    """Convert a command-line string to the parameter's declared type.

    Strings stay strings (``-p field 123`` gives ``'123'`` when ``field`` is a string);
    numbers, booleans, lists and dicts are parsed, and anything else is an error.

    Examples
    --------
    >>> parse_cli_value(NotebookParameter("beams", "list", [0, 1], "[0, 1]", item_kind="int"), "[0, 2]")
    [0, 2]
    >>> parse_cli_value(NotebookParameter("n", "int", 2, "2"), "two")
    Traceback (most recent call last):
    ...
    flint.errors.FlintOptionsError: parameter 'n' expects int (default 2), got 'two'
    """
    bad = FlintOptionsError(f"parameter '{param.name}' expects {param.describe()} (default {param.source}), got {text!r}")
    if param.optional and text.strip() in ("None", "null", "~"):
        return None
    if param.kind == "str":
        return text
    if param.kind == "bool":
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise bad
    if param.kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise bad from None
    if param.kind == "float":
        try:
            return float(text.strip())
        except ValueError:
            raise bad from None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        if param.kind == "any":
            return text
        raise bad from None
    return _check_value(param, value)


def collect_parameters(
    declared: Mapping[str, NotebookParameter],
    *,
    pairs: Iterable[tuple[str, str]] = (),
    yaml_text: str | None = None,
    yaml_file: str | os.PathLike[str] | None = None,
    where: str = "the notebook",
) -> dict[str, Any]:
    """Merge ``-f`` file, ``-y`` YAML and ``-p key value`` pairs (later ones win), checked.

    ``pairs`` are strings converted with :func:`parse_cli_value`; YAML values keep
    their YAML types and must match the declared ones.
    """
    merged: dict[str, Any] = {}
    for label, text in ((str(yaml_file), None), ("-y", yaml_text)):
        if label == "None" or (label == "-y" and text is None):
            continue
        if text is None:
            p = Path(label)
            if not p.is_file():
                raise FlintInputError(f"parameters file {p} does not exist")
            text, label = p.read_text(encoding="utf-8"), str(p)
        data = load_yaml_text(text, label)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise FlintInputError(f"{label}: expected a mapping 'name: value', got {_type_name(data)}")
        merged.update(check_parameters(declared, data, where))
    for name, text in pairs:
        if name not in declared:
            raise _unknown(name, declared, where)
        merged[name] = parse_cli_value(declared[name], text)
    return merged
