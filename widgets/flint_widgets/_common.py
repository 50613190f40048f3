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

__all__ = ["ErrorArea", "guarded", "pre", "message_html", "failed_html", "one_line", "link_html"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def one_line(exc: BaseException, limit: int = 240) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    if not isinstance(exc, FlintError) and text:
        line = f"{type(exc).__name__}: {line}"
    return line if len(line) <= limit else line[: limit - 1] + "…"


class ErrorArea:
    """A visible area where callback errors are shown, the latest first.

    Each error is one line (``context: message``); the full traceback of an unexpected
    error (not a :class:`~flint.errors.FlintError`) is folded underneath it. Callers
    :meth:`clear` it when an action succeeds, so old errors do not linger.

    Attributes
    ----------
    output
        The widget to place in the layout (an ``ipywidgets.HTML``).
    entries
        ``(line, details)`` of each shown error, newest first.
    last_error
        The most recent exception shown (``None`` after :meth:`clear`).
    """

    def __init__(self, max_entries: int = 10) -> None:
        import ipywidgets as w

        self.output = w.HTML(layout=w.Layout(max_height="260px", overflow="auto"))
        self.output.add_class("flint-errors")
        self.entries: list[tuple[str, str]] = []
        self.max_entries = max_entries
        self.last_error: BaseException | None = None

    def show(self, exc: BaseException, context: str = "") -> None:
        """Show ``exc`` on top: its one-line message, and its traceback folded for unexpected errors."""
        self.last_error = exc
        where = f"{context}: " if context else ""
        line = f"{where}{one_line(exc)}"
        details = ""
        if not isinstance(exc, FlintError):
            details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        elif "\n" in str(exc).strip():
            details = str(exc)
        logger.error("%s%s", where, exc)
        self.entries.insert(0, (line, details))
        del self.entries[self.max_entries:]
        self._render()

    def _render(self) -> None:
        parts = []
        for i, (line, details) in enumerate(self.entries):
            style = "color:#c62828" + (";font-weight:bold" if i == 0 else ";opacity:0.75")
            head = f'<span class="flint-error-line" style="{style}">{html.escape(line)}</span>'
            if details:
                parts.append(f"<details><summary>{head}</summary>{pre(details, '200px')}</details>")
            else:
                parts.append(f"<div>{head}</div>")
        self.output.value = "".join(parts)

    def clear(self) -> None:
        """Remove the shown errors."""
        self.last_error = None
        self.entries = []
        self.output.value = ""

    @property
    def text(self) -> str:
        """Everything currently shown, newest first (for tests and logs)."""
        return "".join(f"{line}\n{details}" for line, details in self.entries)


def failed_html(exc: BaseException | str) -> str:
    """The status line after a failure: ``failed: <one line>`` in red."""
    return message_html(f"failed: {exc if isinstance(exc, str) else one_line(exc)}")


def guarded(errors: ErrorArea, context: str = "", clear: bool = True) -> Callable[[F], F]:
    """Decorate a callback so any exception it raises is shown in ``errors``.

    With ``clear`` a callback that succeeds removes the errors shown before (the user's
    latest action worked, so old failures no longer describe the state).
    """

    def deco(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                out = func(*args, **kwargs)
            except Exception as exc:  # shown to the user, never swallowed
                errors.show(exc, context or func.__name__.strip("_").replace("_", " "))
                return None
            if clear and errors.entries:
                errors.clear()
            return out

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


def link_html(href: str, text: str, css: str = "") -> str:
    """A link that looks like one (JupyterLab's theme hides link colours in widget HTML)."""
    cls = f" class='{html.escape(css)}'" if css else ""
    return (
        f"<a{cls} href='{html.escape(href)}' target='_blank' rel='noopener' "
        f"style='color:var(--jp-content-link-color,#1976d2);text-decoration:underline'>{html.escape(text)}</a>"
    )
