"""flint's Jupyter widgets (installed with the ``lab`` extra).

Widgets hold no business logic: each builds a cluster spec or options and calls a
public ``flint`` / ``flint.prefect`` function. ``import flint_widgets`` is cheap; the
classes are imported on first use.

Classes
-------
ClusterBuilder
    form for the cluster YAML, validated as you type, with YAML and job-script previews.
ClusterPanel
    start/stop, scale and adapt a cluster; live counts, batch jobs, logs, dashboard link.
FlowLauncher
    submit the bandpass / continuum flow in the background; beams x stages table; cancel.
ResultsBrowser
    list a run's products; show images (WCS axes), catalogues (sortable), figures.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ClusterBuilder", "ClusterPanel", "FlowLauncher", "ResultsBrowser", "OptionsForm"]

_LAZY = {
    "ClusterBuilder": "flint_widgets.cluster_builder",
    "ClusterPanel": "flint_widgets.cluster_panel",
    "FlowLauncher": "flint_widgets.launcher",
    "ResultsBrowser": "flint_widgets.results",
    "OptionsForm": "flint_widgets.options_form",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flint_widgets' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
