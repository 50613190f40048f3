"""Helpers shared by the widgets: error routing and small display pieces.

Every callback a widget registers goes through :func:`guarded`, so an exception is
shown in the widget's visible error area (and logged) instead of disappearing into
the kernel log.
"""

from __future__ import annotations

import functools
import html
import logging
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from flint.errors import FlintError

__all__ = ["ErrorArea", "guarded", "pre", "message_html"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class ErrorArea:
    """A visible area (an ``ipywidgets.Output``) where callback errors are shown.

    Attributes
    ----------
    output
        The ``Output`` widget to place in the layout.
    last_error
        The most recent exception shown (``None`` after :meth:`clear`).
    """

    def __init__(self) -> None:
        import ipywidgets as w

        self.output = w.Output(layout=w.Layout(max_height="240px", overflow="auto"))
        self.last_error: BaseException | None = None

    def show(self, exc: BaseException, context: str = "") -> None:
        """Show ``exc``: its one-line message for flint errors, the traceback otherwise."""
        self.last_error = exc
        where = f"{context}: " if context else ""
        if isinstance(exc, FlintError):
            text = f"{where}{exc}\n"
        else:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            text = f"{where}{type(exc).__name__}: {exc}\n{tb}"
        logger.error("%s%s", where, exc)
        self.output.append_stderr(text)

    def clear(self) -> None:
        """Remove the shown errors."""
        self.last_error = None
        self.output.outputs = ()

    @property
    def text(self) -> str:
        """Everything currently shown (for tests and logs)."""
        return "".join(o.get("text", "") for o in self.output.outputs)


def guarded(errors: ErrorArea, context: str = "") -> Callable[[F], F]:
    """Decorate a callback so any exception it raises is shown in ``errors``."""

    def deco(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception as exc:  # shown to the user, never swallowed
                errors.show(exc, context or func.__name__.strip("_").replace("_", " "))
                return None

        return wrapper  # type: ignore[return-value]

    return deco


def pre(text: str, max_height: str = "300px") -> str:
    """HTML for a scrollable preformatted block."""
    return (
        f'<pre style="max-height:{max_height};overflow:auto;margin:0;padding:4px;'
        f'background:var(--jp-layout-color2,#f5f5f5);font-size:11px">{html.escape(text)}</pre>'
    )


def message_html(text: str, ok: bool = False) -> str:
    """An inline status message (red for problems, green for fine)."""
    colour = "#2e7d32" if ok else "#c62828"
    return f'<span style="color:{colour}">{html.escape(text)}</span>' if text else ""
