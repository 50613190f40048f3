"""Value checks for cluster-specification keys (the ones people type into a form).

Each check returns ``None`` when the value is fine, or a short message saying what is
wrong and what a good value looks like. No Dask or Prefect imports here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "check_positive_int",
    "check_nonnegative_int",
    "check_memory",
    "check_memory_limit",
    "check_walltime",
    "check_string_list",
    "check_string",
    "VALUE_CHECKS",
    "RENAMED_KWARGS",
    "parse_walltime_seconds",
]

_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKMGTPE]i?B|[kKMGTPE]|B)\s*$")
_WALLTIME_RE = re.compile(r"^(?:(?P<days>\d+)-)?(?P<h>\d{1,3}):(?P<m>\d{2}):(?P<s>\d{2})$")


def check_positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"must be a positive whole number such as 1 or 8 (got {value!r})"
    return None


def check_nonnegative_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"must be a whole number >= 0 (got {value!r})"
    return None


def check_memory(value: Any) -> str | None:
    """Memory with a unit: ``"4GB"``, ``"500MiB"``, ``"1.5 TB"``."""
    if not isinstance(value, str) or not _MEMORY_RE.match(value):
        return f"must be an amount with a unit such as '4GB' or '500MiB' (got {value!r})"
    if float(_MEMORY_RE.match(value).group(1)) <= 0:  # type: ignore[union-attr]
        return f"must be more than zero (got {value!r})"
    return None


def check_memory_limit(value: Any) -> str | None:
    """A Dask worker ``memory_limit``: ``"auto"``, a fraction/byte count, or an amount with a unit."""
    if value == "auto" or value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return None
    if check_memory(value) is None:
        return None
    return f"must be 'auto', a number of bytes or an amount with a unit such as '4GB' (got {value!r})"


def parse_walltime_seconds(value: str) -> int:
    """Seconds in a ``HH:MM:SS`` or ``D-HH:MM:SS`` walltime (assumes it passed :func:`check_walltime`)."""
    m = _WALLTIME_RE.match(value.strip())
    if m is None:
        raise ValueError(value)
    days = int(m["days"] or 0)
    return ((days * 24 + int(m["h"])) * 60 + int(m["m"])) * 60 + int(m["s"])


def check_walltime(value: Any) -> str | None:
    """SLURM-style walltime ``HH:MM:SS`` or ``D-HH:MM:SS``."""
    good = "use HH:MM:SS or D-HH:MM:SS such as '04:00:00' or '1-12:00:00'"
    if not isinstance(value, str):
        return f"must be a quoted string; {good} (got {value!r})"
    m = _WALLTIME_RE.match(value.strip())
    if m is None:
        return f"{good} (got {value!r})"
    if int(m["m"]) >= 60 or int(m["s"]) >= 60:
        return f"minutes and seconds must be below 60; {good} (got {value!r})"
    if m["days"] is not None and int(m["h"]) >= 24:
        return f"hours must be below 24 after a day count; {good} (got {value!r})"
    if parse_walltime_seconds(value) == 0:
        return f"must be longer than zero (got {value!r})"
    return None


def check_string_list(value: Any) -> str | None:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        return f"must be a list of strings, e.g. ['--qos=normal'] (got {value!r})"
    return None


def check_string(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"must be a non-empty string (got {value!r})"
    return None


#: cluster_kwargs key -> check (applies whatever the cluster class)
VALUE_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "cores": check_positive_int,
    "processes": check_positive_int,
    "job_cpu": check_positive_int,
    "threads_per_worker": check_positive_int,
    "n_workers": check_nonnegative_int,
    "memory": check_memory,
    "job_mem": check_memory,
    "memory_limit": check_memory_limit,
    "walltime": check_walltime,
    "job_extra_directives": check_string_list,
    "job_script_prologue": check_string_list,
    "worker_extra_args": check_string_list,
    "job_directives_skip": check_string_list,
    "interface": check_string,
    "log_directory": check_string,
    "local_directory": check_string,
    "queue": check_string,
    "account": check_string,
    "job_name": check_string,
}

#: keyword names dask-jobqueue renamed (old -> new)
RENAMED_KWARGS: dict[str, str] = {
    "job_extra": "job_extra_directives",
    "env_extra": "job_script_prologue",
    "extra": "worker_extra_args",
    "header_skip": "job_directives_skip",
}
