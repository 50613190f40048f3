"""A Dask worker plugin: the worker process's console log lines go to a file, not the kernel's stderr.

Worker *processes* started from a kernel (a LocalCluster) share the kernel's stderr, and
ipykernel copies whatever arrives there into the cell that happens to run. Prefect's API
handler is left alone (the run's task-run lines still reach the Prefect server, where the
launcher's log pane reads them), and so is Dask's in-memory log (``client.get_worker_logs``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["QuietWorkerLogs"]


def _is_console(h: logging.Handler) -> bool:
    from flint_widgets._logs import _is_console as is_console

    return is_console(h)


class QuietWorkerLogs(WorkerPlugin):
    """Replace the console handlers of the root, Dask and Prefect loggers by a file handler on ``path``."""

    name = "flint-quiet-logs"

    def __init__(self, path: str, loggers: tuple[str, ...] = ("distributed", "prefect")) -> None:
        self.path = path
        self.loggers = loggers

    def setup(self, worker: Any) -> None:
        try:  # Prefect adds its console handler when it configures logging: have it do so now, then swap it
            from prefect.logging.configuration import ensure_logging_setup

            ensure_logging_setup()
        except ImportError:  # pragma: no cover - flint always has Prefect
            pass
        handler = logging.FileHandler(self.path, encoding="utf-8")
        handler.setLevel(logging.INFO)
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s %(levelname)s %(name)s [worker pid {os.getpid()}]: %(message)s",
                "%H:%M:%S",
            )
        )
        root = logging.getLogger()
        for logger in [root, *(logging.getLogger(n) for n in self.loggers)]:
            consoles = [h for h in logger.handlers if _is_console(h)]
            for h in consoles:
                logger.removeHandler(h)
            if (consoles or logger is root) and handler not in logger.handlers:
                logger.addHandler(handler)
