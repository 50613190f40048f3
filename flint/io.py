"""Atomic output helpers (products appear under their final name only when complete),
and the one safe YAML reader for configuration files."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write_text", "remove_path", "load_yaml_text", "load_yaml_file"]


def remove_path(path: Path) -> None:
    """Remove a file or a directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it into place on success.

    Works for files and directories (e.g. Measurement Sets). On an exception the
    temporary is removed and ``final`` is left untouched.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "out.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    >>> (d / "out.txt").read_text()
    'hello'
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} exists; remove it or allow overwriting")
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    tmp = tmpdir / final.name
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary {tmp}")
        if final.exists():
            # keep the old product until the new one is ready, then swap
            old = tmpdir / (final.name + ".old")
            os.replace(final, old)
            os.replace(tmp, final)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def load_yaml_text(text: str, source: str) -> Any:
    """Parse YAML ``text`` with ``yaml.safe_load``; errors name ``source`` and the line.

    A tag such as ``!!python/object`` is refused as such (never constructed), with a
    message saying tags are not allowed rather than suggesting a syntax fix.

    Raises
    ------
    FlintConfigError
        One line: the source, the line and column, and what to change.

    Examples
    --------
    >>> load_yaml_text("a: 1", "x.yaml")
    {'a': 1}
    """
    import yaml

    from flint.errors import FlintConfigError

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = str(getattr(exc, "problem", None) or str(exc).splitlines()[0])
        if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
            tag = problem.split("tag", 1)[1].strip().strip("'\"")
            raise FlintConfigError(
                f"{source}{where}: YAML tags are not allowed ({tag.replace('tag:yaml.org,2002:', '!!')}); "
                "write plain values (strings, numbers, lists, mappings) instead"
            ) from None
        raise FlintConfigError(f"{source}: not valid YAML{where}: {problem}; fix the syntax (indentation, colons, quotes)") from None


def load_yaml_file(path: str | os.PathLike[str]) -> Any:
    """Read and parse a YAML file safely (see :func:`load_yaml_text`)."""
    from flint.errors import FlintConfigError

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FlintConfigError(f"{p}: not a text (UTF-8) file; give a YAML file") from None
    except OSError as exc:
        raise FlintConfigError(f"{p}: cannot be read ({exc.strerror})") from None
    return load_yaml_text(text, str(p))
