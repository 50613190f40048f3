"""Exceptions raised by flint.

Every error flint raises on purpose derives from :class:`FlintError`, so a CLI or a
notebook can catch one type and show its one-line message.  Messages name the input
(a path, a field, a key) and say how to fix it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FlintError",
    "FlintInputError",
    "FlintMSError",
    "FlintOptionsError",
    "FlintCommandError",
    "FlintCalibrationError",
    "FlintImageError",
    "FlintConfigError",
]


class FlintError(Exception):
    """Root of all flint errors."""


class FlintInputError(FlintError, ValueError):
    """An input (file, value) is unusable as given."""


class FlintMSError(FlintInputError):
    """A Measurement Set is missing, corrupt or lacks something flint needs."""


class FlintOptionsError(FlintInputError):
    """An option value is out of range or of the wrong type."""


class FlintConfigError(FlintInputError):
    """A configuration file (strategy, cluster YAML, ...) is malformed."""


class FlintCalibrationError(FlintError):
    """Calibration could not be done (e.g. all data flagged, solutions do not fit)."""


class FlintImageError(FlintInputError):
    """A FITS image is missing or lacks the keywords a stage needs."""


class FlintCommandError(FlintError):
    """An external program exited with a non-zero status.

    Attributes
    ----------
    argv
        The command that was run.
    returncode
        Its exit status.
    stderr_tail
        The last lines it wrote to standard error (or standard output).
    """

    def __init__(self, argv: list[str], returncode: int, stderr_tail: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        prog = argv[0] if argv else "<empty>"
        msg = f"{prog} exited with status {returncode}"
        if stderr_tail.strip():
            msg += f"; last output:\n{stderr_tail.rstrip()}"
        super().__init__(msg)

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled with its constructor's arguments (a Dask worker sends it back to the flow);
        # the default (the class and its one message) cannot rebuild it
        return (type(self), (self.argv, self.returncode, self.stderr_tail))
