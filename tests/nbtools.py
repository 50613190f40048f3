"""Helpers for the notebook tests: build small notebooks, read executed ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


def code_cell(source: str, tags: Iterable[str] = ()) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": source, "outputs": [], "execution_count": None}


def write_notebook(path: Path, params: str, *bodies: str) -> Path:
    """A notebook with a ``parameters`` cell and one code cell per body."""
    nb = {
        "cells": [code_cell(params, ["parameters"]), *(code_cell(b) for b in bodies)],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 4,
    }
    path.write_text(json.dumps(nb))
    return path


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def cell_text(nb: dict[str, Any]) -> list[str]:
    """Everything each code cell printed (streams and plain-text results)."""
    out = []
    for cell in nb["cells"]:
        text = ""
        for o in cell.get("outputs", []):
            if o["output_type"] == "stream":
                text += "".join(o["text"])
            elif o["output_type"] in ("execute_result", "display_data"):
                text += "".join(o.get("data", {}).get("text/plain", ""))
        out.append(text)
    return out


def errors(nb: dict[str, Any]) -> list[tuple[str, str]]:
    return [(o["ename"], o["evalue"]) for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]


def injected(nb: dict[str, Any]) -> str:
    """Source of papermill's ``injected-parameters`` cell ('' if none)."""
    for cell in nb["cells"]:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            src = cell["source"]
            return "".join(src) if isinstance(src, list) else str(src)
    return ""


#: seconds per papermill execution in this session (printed by the tutorials' module)
TIMINGS: dict[str, float] = {}


def papermill(name: str, out_dir: Path, params: dict[str, object] | None = None, env: dict[str, str] | None = None,
              timeout: float = 400) -> tuple[dict[str, Any], Path]:
    """Execute ``notebooks/<name>.ipynb`` with papermill in ``out_dir``; return it executed."""
    out = out_dir / f"{name}.ipynb"
    argv = [sys.executable, "-m", "papermill", str(NOTEBOOKS / f"{name}.ipynb"), str(out), "-k", "python3",
            "--cwd", str(out_dir), "--no-progress-bar", "--execution-timeout", str(int(timeout))]
    if params:
        argv += ["-y", yaml.safe_dump(params)]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    TIMINGS[name] = time.perf_counter() - t0
    assert out.exists(), proc.stderr[-3000:]
    nb = load(out)
    assert proc.returncode == 0 and not errors(nb), f"{name} failed: {errors(nb)}\n{proc.stderr[-3000:]}"
    return nb, out


def printed(nb: dict[str, Any]) -> str:
    """Everything the notebook's code cells printed, one string."""
    return "\n".join(cell_text(nb))
