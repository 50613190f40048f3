"""Fault tolerance on the real SLURM: ``scancel`` a Dask worker job mid-flow.

The probe flow (per-beam chains of CPU-bound stages, per-round mosaics) runs on
``dask_jobqueue.SLURMCluster`` under adapt (2..2 jobs), reporting to a flint server on the
PostgreSQL fixture. Once a worker job has finished a stage (so it holds a result others
need) it is cancelled with ``scancel``. The flow must complete, every stage must have run
exactly once (one ``flint-stages.log`` marker each: results lost with the worker are
recomputed from Prefect's cache, not by running the stage again) and the products must be
byte-identical to an undisturbed run.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flint.prefect._postgres import PostgresInstance, free_port
from flint.prefect.running import FlowHandle, submit_flow
from flint.prefect.server import ServerInfo, ServerOptions, start_server, stop_server
from flint.prefect.tasks import read_stage_log

from services import SlurmService, drain_prefect_clients

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_BEAMS, ROUNDS, SECONDS = 2, 2, 3.0
EXPECTED = {("probe", f"beam{b:02d}.round{r}") for b in range(N_BEAMS) for r in range(ROUNDS + 1)} | {
    ("probe_mosaic", f"round{r}") for r in range(ROUNDS + 1)
}


@pytest.fixture(scope="module")
def fault_server(postgres_server: PostgresInstance, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """A flint server on the PostgreSQL fixture; workers and this process share its API and result store."""
    state = tmp_path_factory.mktemp("fault-server")
    mp = pytest.MonkeyPatch()
    mp.setenv("FLINT_PREFECT_DATABASE_URL", postgres_server.url())
    mp.setenv("PREFECT_LOCAL_STORAGE_PATH", str(state / "results"))
    opts = ServerOptions(state_dir=state, port=free_port(), graceful_shutdown=2)
    info = start_server(opts)
    mp.setenv("PREFECT_API_AUTH_STRING", (state / "auth-string").read_text().strip())  # inherited by sbatch jobs
    try:
        yield info
    finally:
        drain_prefect_clients()
        stop_server(state)
        mp.undo()


def _cluster_yaml(tmp_path: Path, job_name: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cluster.yaml"
    path.write_text(
        "cluster_class: dask_jobqueue.SLURMCluster\n"
        "cluster_kwargs:\n"
        f"  cores: 1\n  processes: 1\n  memory: 1500MB\n  walltime: '00:15:00'\n  interface: lo\n  job_name: {job_name}\n"
        f"  log_directory: {tmp_path / 'slurm-logs'}\n"
        "  scheduler_options: {dashboard_address: ':0'}\n"
        f"  job_script_prologue: ['export PREFECT_LOCAL_STORAGE_PATH={os.environ['PREFECT_LOCAL_STORAGE_PATH']}']\n"
        "adapt_kwargs: {minimum: 2, maximum: 2}\n"
    )
    return path


def _our_jobs(slurm: SlurmService, job_name: str) -> dict[str, str]:
    """Job id -> state of this cluster's worker jobs (selected by their unique job name)."""
    out = slurm.run("squeue", "-h", "-n", job_name, "-o", "%i %T")
    return dict(line.split() for line in out.splitlines() if line.strip())


def _run(slurm: SlurmService, info: ServerInfo, tmp_path: Path, out: Path) -> tuple[FlowHandle, str]:
    job_name = f"flint-fault-{uuid.uuid4().hex[:8]}"
    handle = submit_flow("probe", {"out_dir": str(out), "n_beams": N_BEAMS, "rounds": ROUNDS, "seconds": SECONDS},
                         cluster=str(_cluster_yaml(tmp_path, job_name)), api_url=info.api_url, background=True)
    return handle, job_name


def _products(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("SB0.PROBE.*.txt"))}


def _assert_each_stage_once(log: list[tuple[str, str, str, int, float, str]]) -> None:
    counts = Counter((stage, label) for stage, label, *_ in log)
    assert set(counts) == EXPECTED
    assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n != 1}


def test_scancel_worker_job_mid_flow(slurm_cluster: SlurmService, fault_server: ServerInfo, tmp_path: Path) -> None:
    # undisturbed reference run
    ref_out = tmp_path / "ref"
    handle, _ = _run(slurm_cluster, fault_server, tmp_path / "a", ref_out)
    handle.result(timeout=300)
    _assert_each_stage_once(read_stage_log(ref_out))
    reference = _products(ref_out)
    assert len(reference) == N_BEAMS * (ROUNDS + 1) + ROUNDS + 1

    # the same flow; cancel a worker job that has finished a stage while the flow is mid-way
    out = tmp_path / "disturbed"
    handle, job_name = _run(slurm_cluster, fault_server, tmp_path / "b", out)
    victim: str | None = None
    cancelled_at = 0.0
    deadline = time.monotonic() + 240
    while victim is None and time.monotonic() < deadline and not handle.done():
        log = read_stage_log(out)
        running = {j for j, state in _our_jobs(slurm_cluster, job_name).items() if state == "RUNNING"}
        done_by = [entry[5] for entry in log if entry[5] in running]
        if done_by and len(log) < len(EXPECTED) - 3:
            victim = done_by[0]
            slurm_cluster.run("scancel", victim)
            cancelled_at = time.time()
        time.sleep(0.2)
    assert victim is not None, f"no worker job finished a stage early enough to be cancelled: {read_stage_log(out)}"
    stages_before = len([e for e in read_stage_log(out) if e[4] <= cancelled_at])

    result: dict[str, Any] = handle.result(timeout=300)
    log = read_stage_log(out)
    _assert_each_stage_once(log)
    assert stages_before < len(EXPECTED) - 2, "the cancel came too late to matter"
    # nothing ran in the cancelled job after the cancel; the rest ran in other worker jobs
    assert all(e[4] <= cancelled_at + 1.0 for e in log if e[5] == victim)
    assert {e[5] for e in log if e[4] > cancelled_at + 1.0} - {victim}
    assert all(j.isdigit() for j in {e[5] for e in log})
    assert victim not in _our_jobs(slurm_cluster, job_name)
    # identical products, and the API saw every task complete
    assert _products(out) == reference
    assert sorted(result["mosaics"]) == list(range(ROUNDS + 1))
    handle._final = None  # ask the API
    assert handle.state() == "Completed"
    states = handle.task_states()
    # finished results lost with the job were recomputed from Prefect's cache (state
    # Cached) without running the stage again; only stages the cancelled job had finished
    by_victim = {f"{stage}-{label}" for stage, label, *_, job in log if job == victim}
    cached = {name for name, state in states.items() if state == "Cached"}
    assert set(states.values()) <= {"Completed", "Cached"}, states
    assert cached <= by_victim, (cached, by_victim)
    print(f"cancelled job {victim} after {stages_before}/{len(EXPECTED)} stages; it had finished {sorted(by_victim)}; "
          f"recomputed from cache: {sorted(cached)}")
