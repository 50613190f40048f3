"""A form generated from a flint options model (a frozen :class:`flint.options.BaseOptions`).

Each field becomes a control chosen from its type (checkbox, whole number, number,
choice list, text), with its bounds and its docstring as help. The values are
checked by the model itself (:meth:`BaseOptions.create`), and only fields changed
from the model's defaults are returned, so a strategy file stays short.
"""

from __future__ import annotations

import html
import logging
import types
import typing
from typing import Any, Literal

import yaml
from pydantic.fields import FieldInfo

from flint.errors import FlintOptionsError
from flint.options import BaseOptions
from flint_widgets._common import message_html

__all__ = ["OptionsForm", "field_kind"]

logger = logging.getLogger(__name__)


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _norm(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    return value


def field_kind(info: FieldInfo) -> tuple[str, Any]:
    """The kind of control for a field: ``bool``, ``int``, ``float``, ``choice`` (with choices) or ``text``."""
    ann, _ = _strip_optional(info.annotation)
    if typing.get_origin(ann) is Literal:
        return "choice", list(typing.get_args(ann))
    if ann is bool:
        return "bool", None
    if ann is int:
        return "int", None
    if ann is float:
        return "float", None
    return "text", None


def _bounds(info: FieldInfo) -> str:
    parts = []
    for m in info.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            v = getattr(m, attr, None)
            if v is not None:
                parts.append(f"{sym} {v}")
    return ", ".join(parts)


class OptionsForm:
    """Controls for the fields of ``model`` with starting ``values``.

    Attributes
    ----------
    widget
        The ``VBox`` of controls.
    problem
        The model's message about the current values ('' when they are valid).
    """

    def __init__(self, model: type[BaseOptions], values: dict[str, Any] | None = None) -> None:
        import ipywidgets as w

        self.model = model
        self.start_values = dict(values or {})
        self.controls: dict[str, Any] = {}
        self._kinds: dict[str, str] = {}
        self._nullable: dict[str, bool] = {}
        self._annotations: dict[str, Any] = {}
        rows = []
        defaults = {n: f.get_default(call_default_factory=True) for n, f in model.model_fields.items()}
        self._defaults = defaults
        style = {"description_width": "150px"}
        for name, info in model.model_fields.items():
            kind, choices = field_kind(info)
            _, nullable = _strip_optional(info.annotation)
            value = self.start_values.get(name, defaults[name])
            desc = (info.description or "").strip()
            bounds = _bounds(info)
            tip = f"{name}: {desc}" + (f" ({bounds})" if bounds else "")
            if kind == "bool":
                c = w.Checkbox(value=bool(value), description=name, style=style, indent=False)
            elif kind == "choice":
                opts = [*choices, *([None] if nullable else [])]
                c = w.Dropdown(options=opts, value=value if value in opts else opts[0], description=name, style=style)
            else:
                # text boxes for numbers too: an empty box means None for optional fields
                c = w.Text(value=self._text(value), description=name, style=style, placeholder="(none)" if nullable else "")
            c.tooltip = tip
            self.controls[name] = c
            self._kinds[name] = kind
            self._nullable[name] = nullable
            self._annotations[name] = _strip_optional(info.annotation)[0]
            help_html = w.HTML(f"<span style='font-size:11px;color:var(--jp-ui-font-color2,#666)'>{html.escape(desc)}"
                               f"{' (' + html.escape(bounds) + ')' if bounds else ''}</span>")
            rows.append(w.HBox([c, help_html]))
            c.observe(lambda _c: self.check(), names="value")
        self.message = w.HTML()
        self.widget = w.VBox([*rows, self.message])
        self.problem = ""
        self.check()

    @staticmethod
    def _text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, list | tuple | dict):
            return yaml.safe_dump(value, default_flow_style=True).strip()
        return str(value)

    def _value(self, name: str) -> Any:
        kind, raw = self._kinds[name], self.controls[name].value
        if kind in ("bool", "choice"):
            return raw
        text = str(raw).strip()
        if text == "" and self._nullable[name]:
            return None
        if kind == "int":
            try:
                return int(text)
            except ValueError:
                return text
        if kind == "float":
            try:
                return float(text)
            except ValueError:
                return text
        if self._annotations[name] is str:
            return text
        if text == "":
            return [] if isinstance(self._defaults.get(name), list | tuple) else text
        try:  # e.g. ``int | str``, tuples, lists: read the text as YAML
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return text

    def values(self) -> dict[str, Any]:
        """Every field's current value (not yet checked)."""
        return {name: self._value(name) for name in self.controls}

    def changed(self) -> dict[str, Any]:
        """Fields whose value differs from the starting value (the strategy's, else the model default)."""
        start = {**self._defaults, **self.start_values}
        return {k: v for k, v in self.values().items() if _norm(v) != _norm(start.get(k))}

    def options(self) -> BaseOptions:
        """The options model for the current values (raises :class:`FlintOptionsError`)."""
        return self.model.create(**self.values())

    def check(self) -> bool:
        """Check the values with the model; show the problem under the form."""
        try:
            self.options()
        except FlintOptionsError as exc:
            self.problem = str(exc)
        else:
            self.problem = ""
        self.message.value = message_html(self.problem)
        return not self.problem

    def set(self, **values: Any) -> None:
        """Set controls by field name."""
        for name, value in values.items():
            if name not in self.controls:
                raise FlintOptionsError(f"{self.model.__name__}: no field {name!r}; fields: {', '.join(self.controls)}")
            kind = self._kinds[name]
            self.controls[name].value = value if kind in ("bool", "choice") else self._text(value)
