"""``flint cluster check|job-script``: look at a cluster YAML before anything starts.

``check`` validates the file with the loader the flows use and prints one line per
problem (exit status 1 if there is any). ``job-script`` prints the batch script one
worker job of a ``dask_jobqueue`` cluster would be submitted with; nothing is submitted
and no scheduler is started.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register"]

_EPILOG = """\
examples:
  flint cluster check my-slurm.yaml          # one line per problem; exit 1 if any
  flint cluster check slurm                  # a packaged example (local, slurm)
  flint cluster job-script my-slurm.yaml     # the sbatch script of one worker job
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "cluster",
        help="check a cluster YAML file, or print the SLURM job script it would submit",
        description=(
            "A cluster YAML file (cluster_class, cluster_kwargs, adapt_kwargs, or address) says "
            "where flint's Dask workers run. These commands read it as the flows do, without "
            "starting anything."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    csub = p.add_subparsers(dest="cluster_command", metavar="<cluster-command>")
    csub.required = True

    ck = csub.add_parser(
        "check",
        help="validate a cluster YAML file: one line per problem, exit 1 if any",
        description="Validate a cluster YAML file (or packaged example name) and print every problem found, one per line.",
    )
    ck.add_argument("file", help="cluster YAML file, or a packaged example name (local, slurm)")
    ck.set_defaults(func=_check)

    js = csub.add_parser(
        "job-script",
        help="print the batch job script one worker job would be submitted with",
        description=(
            "Print the job script a dask_jobqueue cluster class (e.g. SLURMCluster) would submit "
            "for one worker, including the lines flint adds so workers share one Prefect API. "
            "Nothing is submitted; the scheduler address is a placeholder."
        ),
    )
    js.add_argument("file", help="cluster YAML file, or a packaged example name (slurm)")
    js.add_argument("--api-url", default=None, help="Prefect API URL the workers should use (default: $PREFECT_API_URL)")
    js.set_defaults(func=_job_script)


def _check(args: argparse.Namespace) -> int:
    from flint.prefect.clusters import spec_file_problems

    problems = spec_file_problems(args.file)
    for line in problems:
        print(f"flint cluster check: {' '.join(line.split())}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.file}: ok")
    return 0


def _job_script(args: argparse.Namespace) -> int:
    from flint.prefect.clusters import job_script, load_cluster_spec

    spec = load_cluster_spec(Path(args.file))
    print(job_script(spec, api_url=args.api_url))
    return 0
