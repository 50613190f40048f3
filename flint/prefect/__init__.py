"""flint's orchestration layer: Prefect tasks and flows on a Dask task runner.

Importing ``flint.prefect`` is cheap and does not import Prefect: the cluster
specification (:mod:`flint.prefect.clusters`) is used by the notebook widgets and
by core-only code, and the names below are resolved on first use.

Modules
-------
clusters
    cluster YAML -> validated :class:`~flint.prefect.clusters.ClusterSpec` -> Dask
    task runner, job-script preview, a cluster started for a notebook.
tasks, flows
    the ``bandpass`` and ``continuum`` flows (import Prefect).
running
    run a flow in the foreground or background from Python (returns a handle).
server
    a self-hosted Prefect API server on PostgreSQL (``flint server``).
warm
    a Prefect server and a Dask cluster kept alive for an interactive session.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ClusterSpec",
    "validate_spec",
    "load_cluster_spec",
    "job_script",
    "task_runner",
    "start_cluster",
    "run_flow",
    "submit_flow",
    "FlowHandle",
    "WarmSession",
]

_LAZY = {
    "ClusterSpec": "flint.prefect.clusters",
    "validate_spec": "flint.prefect.clusters",
    "load_cluster_spec": "flint.prefect.clusters",
    "job_script": "flint.prefect.clusters",
    "task_runner": "flint.prefect.clusters",
    "start_cluster": "flint.prefect.clusters",
    "run_flow": "flint.prefect.running",
    "submit_flow": "flint.prefect.running",
    "FlowHandle": "flint.prefect.running",
    "WarmSession": "flint.prefect.warm",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flint.prefect' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
