"""Batch runs of notebooks with papermill, here or as SLURM jobs (``flint nb``).

A notebook declares its parameters in a cell tagged ``parameters``; a run checks the
given values against them (names and types) before anything starts, then executes the
notebook with papermill in its own folder — locally (:func:`run_notebook`) or through
``sbatch`` (:func:`submit_notebook`) — using a kernel that is the submitter's own
Python. :func:`list_runs` / :func:`run_status` report what happened.

papermill is never imported here: it runs in the job (``python -m papermill``).

Examples
--------
>>> from flint.batch import read_parameters
>>> nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]},
...                  "source": ["n_beams = 2\\n", "robust = -0.5\\n"]}]}
>>> {k: p.kind for k, p in read_parameters(nb).items()}
{'n_beams': 'int', 'robust': 'float'}
"""

from flint.batch._params import (
    NotebookParameter,
    check_parameters,
    collect_parameters,
    parse_cli_value,
    read_notebook,
    read_parameters,
)
from flint.batch._runs import (
    DEFAULT_OUTPUT_DIR,
    TERMINAL_STATES,
    BatchOptions,
    BatchRun,
    list_runs,
    notebook_error,
    prepare_run,
    run_notebook,
    run_status,
    sbatch_directives,
    submit_notebook,
    wait_for_run,
    walltime_seconds,
)

__all__ = [
    "NotebookParameter",
    "read_notebook",
    "read_parameters",
    "check_parameters",
    "collect_parameters",
    "parse_cli_value",
    "BatchOptions",
    "BatchRun",
    "prepare_run",
    "run_notebook",
    "submit_notebook",
    "run_status",
    "list_runs",
    "wait_for_run",
    "notebook_error",
    "sbatch_directives",
    "walltime_seconds",
    "TERMINAL_STATES",
    "DEFAULT_OUTPUT_DIR",
]
