"""Flow runs shared by the flow tests and the worker-fault test (no tests here).

Each run happens once per pytest session, whichever module asks first: the temporary
Prefect server, the bandpass flow (``flint flow bandpass --background``) and the
continuum flow (``flint flow continuum``, foreground) on the session's simulated data.
The server is stopped when the session ends.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest

from flint.sim import SimResult

STRATEGY = Path(__file__).parent / "data" / "flow_strategy.yaml"
BEAMS = (0, 1, 2)

_CACHE: dict[str, Any] = {}


def api_url(config: pytest.Config) -> str:
    """A temporary local Prefect server for the session's flow runs."""
    if "api_url" not in _CACHE:
        from flint.prefect.running import start_temporary_server

        info, stop = start_temporary_server()
        config.add_cleanup(stop)
        _CACHE["api_url"] = info.api_url
    return str(_CACHE["api_url"])


def cli(argv: list[str]) -> tuple[int, str]:
    """``flint <argv>`` in this process; returns the exit status and what it printed."""
    from flint.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(argv)
    return rc, buf.getvalue()


def parse_products(text: str) -> dict[str, Any]:
    """Products as ``flint flow`` prints them (``<what>: <path or number>`` lines)."""
    products: dict[str, Any] = {"images": {}, "mosaics": {}, "validation": {}, "solutions": {}}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        words = key.split()
        if words[:2] == ["image", "round"]:
            products["images"].setdefault(int(words[2]), {})[int(words[4])] = value
        elif words[:2] == ["mosaic", "round"]:
            products["mosaics"][int(words[2])] = value
        elif words[:2] == ["solutions", "beam"]:
            products["solutions"][int(words[2])] = value
        elif key == "catalogue":
            products["catalogue"] = value
        elif key == "validation figure":
            products["validation"]["figure"] = value
        elif words[:1] == ["validation"] and len(words) == 2:
            products["validation"][words[1]] = float(value)
        elif key in ("flow run", "state"):
            products[key] = value.split()[0]
    return products


def bandpass_run(sim_bandpass: SimResult, tmp_path_factory: pytest.TempPathFactory, url: str) -> dict[str, Any]:
    """``flint flow bandpass --background`` on all beams, followed to its end (once per session)."""
    if "bandpass" in _CACHE:
        return dict(_CACHE["bandpass"])
    out = tmp_path_factory.mktemp("flow_bandpass")
    argv = ["flow", "bandpass", *map(os.fspath, sim_bandpass.ms_paths), "--out-dir", os.fspath(out)]
    rc, text = cli([*argv, "--strategy", os.fspath(STRATEGY), "--api-url", url, "--background"])
    assert rc == 0, text
    started = re.search(r"started: PID (\d+), log (\S+)", text)
    run_id = re.search(r"^flow run: (\S+)", text, re.M)
    assert started and run_id, text
    pid, log = int(started[1]), Path(started[2])
    _, status = os.waitpid(pid, 0)  # the detached command is this process's child
    assert os.waitstatus_to_exitcode(status) == 0, log.read_text()[-2000:]
    _CACHE["bandpass"] = {"out": out, "run_id": run_id[1], "log": log, "products": parse_products(log.read_text())}
    return dict(_CACHE["bandpass"])


def continuum_argv(sim_field: SimResult, solutions: Path, out: Path) -> list[str]:
    """``flint flow continuum`` arguments for the session's field (all beams, test strategy)."""
    argv = ["flow", "continuum", *map(os.fspath, sim_field.ms_paths), "--solutions", os.fspath(solutions)]
    return [*argv, "--reference", os.fspath(sim_field.sky_csv or ""), "--out-dir", os.fspath(out), "--strategy", os.fspath(STRATEGY)]


def continuum_run(sim_field: SimResult, bandpass: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, url: str) -> dict[str, Any]:
    """``flint flow continuum`` in the foreground on the bandpass run's solutions (once per session)."""
    if "continuum" in _CACHE:
        return dict(_CACHE["continuum"])
    out = tmp_path_factory.mktemp("flow_continuum")
    rc, text = cli([*continuum_argv(sim_field, bandpass["out"], out), "--api-url", url])
    assert rc == 0, text
    _CACHE["continuum"] = {"out": out, "text": text, "products": parse_products(text)}
    return dict(_CACHE["continuum"])
