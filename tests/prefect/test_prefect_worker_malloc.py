"""flint's Dask workers keep glibc's malloc default (no ``MALLOC_TRIM_THRESHOLD_`` from the nanny).

Dask's nanny exports ``MALLOC_TRIM_THRESHOLD_=65536`` into its own process's environment and so
into every worker and every program a worker starts (WSClean too). That switches off glibc's
dynamic mmap threshold and made ``run_convol`` on the pol demo's cubes 4x slower (15 s -> 62 s;
``benchmarks/bench_worker_malloc.py``). Each check runs in a fresh interpreter with the variable
removed from its environment, so no other test's cluster can have set it.
"""

from __future__ import annotations

import os
import subprocess
import sys

from flint.prefect.clusters import job_script, validate_spec, worker_prologue

_ENV = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_" and not k.startswith("DASK_")}

_LOCAL = """
import os
from flint.prefect.clusters import start_cluster, validate_spec
spec = validate_spec({"cluster_class": "distributed.LocalCluster",
                      "cluster_kwargs": {"n_workers": 1, "threads_per_worker": 1, "dashboard_address": None}})
cluster, client = start_cluster(spec)
try:
    env = client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS")))
    print(repr(list(env.values())[0]), repr(os.environ.get("MALLOC_TRIM_THRESHOLD_")))
finally:
    client.close(); cluster.close()
"""


def test_local_cluster_workers_have_no_malloc_trim_threshold() -> None:
    out = subprocess.run([sys.executable, "-c", _LOCAL], capture_output=True, text=True, env=_ENV, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # the worker: no MALLOC_TRIM_THRESHOLD_, Dask's other pre-spawn settings kept (OMP_NUM_THREADS 1);
    # the flint process's own environment is left without it too
    assert out.stdout.split("\n")[-2] == "(None, '1') None"


def test_default_dask_config_would_set_it() -> None:
    """The control: without flint's call a nanny would export the variable (so the test above can fail)."""
    code = "from distributed.nanny import _get_env_variables as g; print(g('distributed.nanny.pre-spawn-environ').get('MALLOC_TRIM_THRESHOLD_'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_ENV, check=True)
    assert out.stdout.strip() == "65536"


def test_batch_job_script_keeps_the_default() -> None:
    spec = validate_spec({"cluster_class": "dask_jobqueue.SLURMCluster", "cluster_kwargs": {"cores": 1, "memory": "1GB"}})
    script = job_script(spec, api_url="http://127.0.0.1:4999/api")
    line = next(x for x in worker_prologue() if "DASK_DISTRIBUTED__NANNY" in x)
    assert line in script
    # the job's shell line, then the nanny's environment as Dask computes it on the node
    code = "from distributed.nanny import _get_env_variables as g; e = g('distributed.nanny.pre-spawn-environ'); print(e.get('MALLOC_TRIM_THRESHOLD_'), e.get('OMP_NUM_THREADS'))"
    out = subprocess.run(["bash", "-c", f'{line}\nexec "$0" -c "$1"', sys.executable, code], capture_output=True, text=True, env=_ENV, check=True)
    assert out.stdout.strip() == "None 1"
