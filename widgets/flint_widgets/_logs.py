"""Library, Dask and Prefect logs in a collapsible pane per widget (and a file), not in cells.

In a kernel, a log line written to stderr lands in whichever cell runs at that moment,
so background threads (the flow engine, Dask, Prefect's client) spray lines into
unrelated cells. :func:`capture_logs` swaps the console handlers of the root logger and
of the ``distributed`` / ``prefect`` / server loggers for one handler that writes the
file ``$FLINT_LOG_DIR/notebook-<date>.log`` (default ``~/.flint/logs``) and feeds every
:class:`LogPane`. :func:`release_logs` puts the handlers back.
"""

from __future__ import annotations

import collections
import html
import logging
import os
import sys
import threading
import time
from pathlib import Path

__all__ = ["LogPane", "capture_logs", "release_logs", "log_file"]

#: loggers whose console handlers are replaced (besides the root logger)
_CAPTURED = ("distributed", "prefect", "prefect.flow_runs", "prefect.task_runs", "uvicorn", "fastapi", "tornado", "bokeh")
_lock = threading.RLock()
_panes: list[LogPane] = []
_swapped: list[tuple[logging.Logger, logging.Handler]] = []
_handler: _FanOut | None = None


def log_file() -> Path:
    """Where the captured lines are written."""
    folder = Path(os.environ.get("FLINT_LOG_DIR", Path.home() / ".flint" / "logs")).expanduser()
    return folder / f"notebook-{time.strftime('%Y%m%d')}.log"


def _is_console(h: logging.Handler) -> bool:
    stream = getattr(h, "stream", None)
    return type(h).__name__ in ("PrefectConsoleHandler", "StreamHandler", "RichHandler") and stream in (
        sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__, None,
    ) and not isinstance(h, logging.FileHandler)


class _FanOut(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        self.file: logging.FileHandler | None = None
        try:
            path = log_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = logging.FileHandler(path, encoding="utf-8")
            self.file.setFormatter(self.formatter)
        except OSError:  # no writable home: the panes still get the lines
            self.file = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if self.file is not None:
                self.file.emit(record)
            with _lock:
                panes = list(_panes)
            for pane in panes:
                if pane.wants(record.name):
                    pane.add(line, record.levelno)
        except Exception:  # a log handler never raises
            self.handleError(record)


def capture_logs() -> None:
    """Route console log output to the panes and the file (idempotent; call again after imports)."""
    global _handler
    with _lock:
        if _handler is None:
            _handler = _FanOut()
        for logger in [logging.getLogger(), *(logging.getLogger(n) for n in _CAPTURED)]:
            for h in list(logger.handlers):
                if h is not _handler and _is_console(h):
                    logger.removeHandler(h)
                    _swapped.append((logger, h))
            if logger is logging.getLogger() or any(lg is logger for lg, _ in _swapped):
                if _handler not in logger.handlers:
                    logger.addHandler(_handler)


def release_logs() -> None:
    """Put the console handlers back (when the last widget is closed)."""
    global _handler
    with _lock:
        for logger, h in _swapped:
            logger.addHandler(h)
        _swapped.clear()
        if _handler is not None:
            for logger in [logging.getLogger(), *(logging.getLogger(n) for n in _CAPTURED)]:
                logger.removeHandler(_handler)
            if _handler.file is not None:
                _handler.file.close()
            _handler = None


class LogPane:
    """A collapsed "log" section showing the captured lines of some loggers.

    Parameters
    ----------
    prefixes
        Logger names (and their children) this pane shows.
    title
        Title of the collapsed section.
    max_lines
        Lines kept (older ones are only in the file).
    """

    def __init__(self, prefixes: tuple[str, ...], title: str = "log", max_lines: int = 300) -> None:
        import ipywidgets as w

        self.prefixes = prefixes
        self.title = title
        self.lines: collections.deque[tuple[str, int]] = collections.deque(maxlen=max_lines)
        self.view = w.HTML()
        self.widget = w.Accordion(children=[self.view])
        self.widget.set_title(0, f"{title} (0 lines; file {log_file()})")
        self.widget.selected_index = None
        self.widget.add_class("flint-log-pane")
        self._last_render = 0.0
        with _lock:
            _panes.append(self)
        capture_logs()

    def wants(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def add(self, line: str, level: int) -> None:
        self.lines.append((line, level))
        now = time.monotonic()
        if now - self._last_render > 0.5 or level >= logging.WARNING:
            self.render()

    def render(self) -> None:
        self._last_render = time.monotonic()
        rows = []
        for line, level in list(self.lines)[::-1]:  # newest first
            colour = "#c62828" if level >= logging.ERROR else ("#e65100" if level >= logging.WARNING else "inherit")
            rows.append(f"<div style='color:{colour}'>{html.escape(line)}</div>")
        self.view.value = (
            "<div style='font-family:monospace;font-size:11px;max-height:220px;overflow:auto;white-space:pre-wrap'>"
            + "".join(rows) + "</div>"
        )
        self.widget.set_title(0, f"{self.title} ({len(self.lines)} lines, newest first; file {log_file()})")

    @property
    def text(self) -> str:
        return "\n".join(line for line, _ in self.lines)

    def close(self) -> None:
        """Stop feeding this pane; the last pane closed gives the console its handlers back."""
        with _lock:
            if self in _panes:
                _panes.remove(self)
            last = not _panes
        if last:
            release_logs()
