"""The one gateway through which flint runs external programs.

Commands are argv lists (never a shell string). Each call is logged; a non-zero exit
raises :class:`~flint.errors.FlintCommandError` carrying the exit status and the tail of
the program's output.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from flint.errors import FlintCommandError, FlintInputError

__all__ = ["run_command", "which_or_raise"]

logger = logging.getLogger(__name__)


def which_or_raise(program: str, hint: str = "") -> str:
    """Return the full path of ``program`` on PATH, or raise a clear error."""
    found = shutil.which(program)
    if found is None:
        msg = f"'{program}' was not found on PATH"
        raise FlintInputError(f"{msg}; {hint}" if hint else msg)
    return found


def run_command(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    tail_lines: int = 30,
    timeout: float | None = None,
) -> str:
    """Run ``argv``, stream its output to the log and return it.

    Parameters
    ----------
    argv
        The program and its arguments, as a list. Never a shell string.
    cwd
        Working directory.
    env
        Extra environment variables (added to the current environment).
    tail_lines
        How many of the last output lines go into the error on failure.
    timeout
        Seconds after which the program is killed.

    Returns
    -------
    str
        The program's combined standard output and error.
    """
    if isinstance(argv, str | bytes):
        raise TypeError("run_command takes an argv list, not a shell string")
    args = [os.fspath(a) for a in argv]
    if not args:
        raise ValueError("run_command: empty argv")
    full_env = None
    if env:
        full_env = {**os.environ, **env}
    logger.info("running: %s", " ".join(args))
    tail: deque[str] = deque(maxlen=tail_lines)
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            args,
            cwd=Path(cwd) if cwd is not None else None,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except FileNotFoundError:
        raise FlintInputError(f"'{args[0]}' was not found; install it or put it on PATH") from None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            tail.append(line)
            logger.debug("%s: %s", Path(args[0]).name, line)
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise FlintCommandError(args, -9, "\n".join(tail) + f"\n(killed after {timeout} s)") from None
    if rc != 0:
        raise FlintCommandError(args, rc, "\n".join(tail))
    return "\n".join(lines)
