"""Library, Dask and Prefect logs in a collapsible pane per widget (and a file), not in cells.

In a kernel, a log line written to stderr lands in whichever cell runs at that moment,
so background threads (the flow engine, Dask, Prefect's client) spray lines into
unrelated cells. :func:`capture_logs` swaps the console handlers of the root logger and
of the ``distributed`` / ``prefect`` / server loggers for one handler that writes the
file ``$FLINT_LOG_DIR/notebook-<date>.log`` (default ``~/.flint/logs``) and feeds every
:class:`LogPane`. :func:`release_logs` puts the handlers back.

Worker *processes* of a LocalCluster started from the kernel inherit the kernel's stderr,
which ipykernel copies into the running cell: :func:`quiet_local_workers` makes their
console handlers write to the same file instead (the run's task-run lines reach the
launcher's pane from the Prefect API).
"""

from __future__ import annotations

import collections
import html
import logging
import os
import threading
import time
from pathlib import Path

__all__ = ["LogPane", "capture_logs", "release_logs", "log_file", "run_line", "quiet_local_workers"]

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
    """A stderr/stdout stream handler (Prefect's and rich's too), also one made before sys.stderr was replaced.

    A library imported before ipykernel (or pytest) swapped ``sys.stderr`` keeps the stream it
    found then (a wrapper of file descriptor 2, or a capture file): any stream handler counts,
    except one writing to a file opened by its path.
    """
    if isinstance(h, logging.FileHandler) or type(h).__name__ not in ("PrefectConsoleHandler", "StreamHandler", "RichHandler"):
        return False
    name = getattr(getattr(h, "stream", None), "name", None)
    return not (isinstance(name, str) and os.path.isabs(name))


def run_line(stamp: str, level: int, name: str, message: str, task_run: str | None = None, flow_run: str | None = None) -> str:
    """One pane line: ``HH:MM:SS LEVEL logger: [Task run 'x' - ]message`` (also for lines read from the Prefect API)."""
    who = f"Task run {task_run!r} - " if task_run else (f"Flow run {flow_run!r} - " if flow_run else "")
    return f"{stamp} {logging.getLevelName(level)} {name}: {who}{message}"


class _RunFormatter(logging.Formatter):
    """Names the Prefect task or flow run a record comes from (as Prefect's console does)."""

    def format(self, record: logging.LogRecord) -> str:
        text = run_line(self.formatTime(record, "%H:%M:%S"), record.levelno, record.name, record.getMessage(),
                        getattr(record, "task_run_name", None), getattr(record, "flow_run_name", None))
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _FanOut(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(_RunFormatter())
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
        self._dirty = False
        self.attach()

    def attach(self) -> None:
        """Feed this pane (again: a widget used after :meth:`close`, e.g. a launcher's next Submit)."""
        with _lock:
            if self not in _panes:
                _panes.append(self)
        capture_logs()

    @property
    def path(self) -> Path:
        """The file the lines are also written to."""
        return log_file()

    @property
    def attached(self) -> bool:
        with _lock:
            return self in _panes

    def wants(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def add(self, line: str, level: int, once: bool = False) -> None:
        """Add a line (redrawn at most twice a second; :meth:`flush` draws what is left).

        ``once``: not when the pane has the same line already (a record both logged here
        and read back from the Prefect API).
        """
        if once and any(line == old for old, _ in self.lines):
            return
        self.lines.append((line, level))
        self._dirty = True
        now = time.monotonic()
        if now - self._last_render > 0.5 or level >= logging.WARNING:
            self.render()

    def flush(self) -> None:
        """Draw the lines added since the last drawing (the widgets call it from their refresh loops)."""
        if self._dirty:
            self.render()

    def render(self) -> None:
        self._last_render = time.monotonic()
        self._dirty = False
        rows = []
        for line, level in list(self.lines)[::-1]:  # newest first
            colour = "#c62828" if level >= logging.ERROR else ("#e65100" if level >= logging.WARNING else "inherit")
            rows.append(f"<div style='color:{colour}'>{html.escape(line)}</div>")
        self.view.value = (
            "<div style='font-family:monospace;font-size:11px;line-height:1.4;max-height:220px;overflow:auto;white-space:pre-wrap'>"
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



def quiet_local_workers(client: object, cluster: object) -> bool:
    """Send the console lines of a LocalCluster's worker processes to :func:`log_file` (``True`` if it is one).

    Remote workers log where their batch system says; thread workers are this kernel
    (their lines already reach the panes).
    """
    if type(cluster).__name__ != "LocalCluster" or getattr(cluster, "processes", True) is False:
        return False
    from flint_widgets._worker_logs import QuietWorkerLogs

    path = log_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    client.register_plugin(QuietWorkerLogs(os.fspath(path), _CAPTURED), name=QuietWorkerLogs.name)  # type: ignore[attr-defined]
    return True
