"""``flint nb``: run notebooks with papermill (here or as SLURM jobs), list the runs."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

__all__ = ["register"]

_RUN_EPILOG = """\
parameters are checked against the notebook's cell tagged 'parameters' before anything runs:
  -p n_beams 2 -p beams '[0, 1]'      values converted to the declared types
  -y 'robust: -0.5'                    YAML keeps its own types
  -f params.yaml                       a YAML file of name: value
examples:
  flint nb run notebooks/01_quickstart.ipynb -p n_beams 2
  flint nb run analysis.ipynb -f params.yaml --sbatch slurm.yaml --sbatch-args='--partition=debug'
  flint nb list
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "nb",
        help="run notebooks as batch jobs (papermill, locally or with sbatch)",
        description="Run a notebook with papermill in its own run folder, here or as a SLURM job; list runs.",
    )
    nsub = p.add_subparsers(dest="nb_command", metavar="<nb-command>")
    nsub.required = True

    r = nsub.add_parser(
        "run",
        help="run a notebook with papermill (locally, or submit it with sbatch)",
        description=(
            "Check the parameters against the notebook's 'parameters' cell, write a run folder "
            "(input copy, parameters.yaml, cluster.yaml, versions.yaml, job.sh) and run papermill: "
            "here (waits) or through sbatch (returns the job id; see 'flint nb list')."
        ),
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("notebook", type=Path, help="the .ipynb to run")
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="set a parameter (converted to its declared type)")
    r.add_argument("-y", "--yaml", dest="yaml_text", default=None, metavar="YAML", help="parameters as a YAML string")
    r.add_argument("-f", "--parameters-file", type=Path, default=None, metavar="FILE", help="parameters from a YAML file")
    r.add_argument("--output", type=Path, default=None, metavar="DIR", help="folder for the run folders (default: $FLINT_RUNS_DIR or ./flint-runs)")
    r.add_argument("--sbatch", type=Path, default=None, metavar="CLUSTER_YAML", help="submit with sbatch; resources (partition, account, CPUs, memory, walltime, prologue) from this cluster YAML")
    r.add_argument("--sbatch-args", action="append", default=[], metavar="ARGS", help="extra sbatch arguments, e.g. --sbatch-args='--partition=debug --mem=2G' (implies sbatch)")
    r.add_argument("--cluster", type=Path, default=None, metavar="CLUSTER_YAML", help="cluster YAML to record with a local run (and pass as the 'cluster' parameter if the notebook has one)")
    r.add_argument("--walltime", default=None, help="limit for the whole run, e.g. 02:00:00")
    r.add_argument("--execution-timeout", type=int, default=None, help="seconds one cell may run (default 3600)")
    r.add_argument("--start-timeout", type=int, default=None, help="seconds to wait for the kernel (default 120)")
    r.add_argument("--autosave-cell-every", type=int, default=None, help="save the output notebook every N s during long cells (default 10)")
    r.add_argument("--job-name", default=None, help="SLURM job name (default flint-nb-<notebook>)")
    r.add_argument("--wait", action="store_true", help="with sbatch: wait for the job and exit non-zero if it failed")
    r.add_argument("--json", action="store_true", help="print the run as JSON")
    r.set_defaults(func=_run)

    lst = nsub.add_parser("list", help="list runs and their states", description="Runs under the output folder, oldest first, with their states (SLURM jobs from scontrol).")
    lst.add_argument("--output", type=Path, default=None, metavar="DIR", help="folder holding the run folders (default: $FLINT_RUNS_DIR or ./flint-runs)")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)

    par = nsub.add_parser("params", help="show the parameters a notebook declares", description="Name, type, default and help of each parameter in the notebook's 'parameters' cell.")
    par.add_argument("notebook", type=Path, help="the .ipynb")
    par.set_defaults(func=_params)


def _as_dict(run: Any) -> dict[str, Any]:
    return {
        "run_dir": str(run.run_dir),
        "notebook": str(run.notebook),
        "output_notebook": str(run.output_notebook),
        "mode": run.mode,
        "state": run.state,
        "job_id": run.job_id,
        "exit_code": run.exit_code,
        "error": run.error,
        "parameters": run.parameters,
        "created": run.created,
        "started": run.started,
        "finished": run.finished,
    }


def _run(args: argparse.Namespace) -> int:
    from flint.batch import (
        BatchOptions,
        collect_parameters,
        read_parameters,
        run_notebook,
        submit_notebook,
        wait_for_run,
    )
    from flint.errors import FlintOptionsError

    declared = read_parameters(args.notebook)
    params = collect_parameters(
        declared,
        pairs=[tuple(p) for p in args.parameter],
        yaml_text=args.yaml_text,
        yaml_file=args.parameters_file,
        where=str(args.notebook),
    )
    given = {
        "output_dir": args.output,
        "walltime": args.walltime,
        "execution_timeout": args.execution_timeout,
        "start_timeout": args.start_timeout,
        "autosave_cell_every": args.autosave_cell_every,
        "job_name": args.job_name,
    }
    options = BatchOptions.create(**{k: v for k, v in given.items() if v is not None})
    sbatch_args = [a for chunk in args.sbatch_args for a in shlex.split(chunk)]
    if args.sbatch is not None and args.cluster is not None:
        raise FlintOptionsError("give the cluster YAML once: --sbatch CLUSTER_YAML (SLURM) or --cluster CLUSTER_YAML (local)")
    if args.sbatch is not None or sbatch_args:
        run = submit_notebook(args.notebook, params, options, cluster_yaml=args.sbatch, sbatch_args=sbatch_args)
        if not args.json:
            print(f"submitted {args.notebook.name} as SLURM job {run.job_id}")
            print(f"  run folder: {run.run_dir}")
            print(f"  log:        {run.log}")
        if args.wait:
            run = wait_for_run(run, timeout=float("inf"), poll=5.0)
    else:
        if not args.json:
            print(f"running {args.notebook.name} with papermill under {options.output_dir} ...", flush=True)
        run = run_notebook(args.notebook, params, options, cluster_yaml=args.cluster)
    if args.json:
        print(json.dumps(_as_dict(run), indent=2))
    elif run.state not in ("PENDING", "RUNNING"):
        print(f"{run.state}: {run.output_notebook}")
        if run.error:
            print(f"  error: {run.error}")
            print(f"  log:   {run.log}")
    return 0 if run.state in ("COMPLETED", "PENDING", "RUNNING") else 1


def _list(args: argparse.Namespace) -> int:
    from flint.batch import list_runs

    runs = list_runs(args.output)
    if args.json:
        print(json.dumps([_as_dict(r) for r in runs], indent=2))
        return 0
    if not runs:
        print("no runs")
        return 0
    rows = [("RUN", "STATE", "MODE", "JOB", "CREATED", "ERROR")]
    for r in runs:
        err = (r.error or "")[:60]
        rows.append((r.run_dir.name, r.state, r.mode, r.job_id or "-", r.created[:19], err))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)) + "  " + row[5])
    return 0


def _params(args: argparse.Namespace) -> int:
    from flint.batch import read_parameters

    declared = read_parameters(args.notebook)
    if not declared:
        print(f"{args.notebook} has no cell tagged 'parameters'")
        return 0
    for p in declared.values():
        line = f"{p.name}: {p.describe()} = {p.source}"
        print(f"{line:<50} # {p.help}" if p.help else line)
    return 0
