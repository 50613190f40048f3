"""The one gateway through which flint runs external programs.

Commands are argv lists (never a shell string). Each call is logged; a non-zero exit
raises :class:`~flint.errors.FlintCommandError` carrying the exit status and the tail of
the program's output.

A program dies with the flint process that started it: it runs in its own process group
and, on Linux, with ``PR_SET_PDEATHSIG`` (SIGKILL), so killing flint (even with SIGKILL)
kills WSClean too; an interrupt or exception in flint kills the program's whole group.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from flint.errors import FlintCommandError, FlintInputError

__all__ = ["run_command", "which_or_raise", "child_preexec", "kill_group"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return None
    return prctl


_PRCTL = _load_prctl()  # resolved once, before any fork: the child only calls it


def child_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child die with this process (Linux; ``None`` elsewhere).

    The child asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), and
    kills itself if the parent is already gone. Process groups are set with
    ``process_group=0``, not here.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def _preexec() -> None:  # runs in the forked child: no imports, no allocation-heavy work
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os.kill(os.getpid(), signal.SIGKILL)

    return _preexec


def kill_group(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group of ``proc`` (a child started with ``process_group=0``), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
        logger.warning("process %d did not end after SIGKILL", proc.pid)


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
            process_group=0,  # its own group: everything it starts can be killed together
            preexec_fn=child_preexec(),  # and it dies with flint (SIGKILL included)
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
        kill_group(proc)
        raise FlintCommandError(args, -9, "\n".join(tail) + f"\n(killed after {timeout} s)") from None
    except BaseException:  # KeyboardInterrupt, SystemExit, a failing log handler ...
        logger.warning("stopping %s (pid %d) and its process group", Path(args[0]).name, proc.pid)
        kill_group(proc)
        raise
    if rc != 0:
        raise FlintCommandError(args, rc, "\n".join(tail))
    return "\n".join(lines)
