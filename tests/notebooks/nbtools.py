"""Helpers for the notebook tests: build small notebooks, read executed ones."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
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
