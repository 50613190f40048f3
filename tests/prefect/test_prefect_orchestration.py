"""Orchestration on real services: a flow on SLURM workers, a flint server on PostgreSQL."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from flint.errors import FlintConfigError
from flint.prefect._postgres import PostgresInstance, free_port
from flint.prefect.clusters import validate_spec
from flint.prefect.running import submit_flow
from flint.prefect.server import (
    ServerOptions,
    check_api_reachable,
    server_status,
    start_server,
    stop_server,
)
from flint.prefect.tasks import read_stage_log

import conftest as _root
from services import SlurmService

if not hasattr(_root, "slurm_cluster"):  # until tests/conftest.py imports them
    from services import postgres_server, slurm_cluster  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def flint_server(postgres_server: PostgresInstance, tmp_path_factory: pytest.TempPathFactory):
    """``flint server`` (uvicorn + Prefect API) on the PostgreSQL fixture."""
    state = tmp_path_factory.mktemp("flint-server")
    mp = pytest.MonkeyPatch()
    mp.setenv("FLINT_PREFECT_DATABASE_URL", postgres_server.url())
    mp.setenv("PREFECT_LOCAL_STORAGE_PATH", str(state / "results"))
    opts = ServerOptions(state_dir=state, port=free_port())
    info = start_server(opts)
    try:
        yield opts, info
    finally:
        stop_server(state)
        mp.undo()


def _auth(opts: ServerOptions) -> str:
    return (opts.state_dir / "auth-string").read_text().strip()


def test_server_history_survives_restart(flint_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    opts, info = flint_server
    assert (opts.state_dir / "auth-string").stat().st_mode & 0o777 == 0o600
    assert _auth(opts) not in (opts.state_dir / "server.log").read_text()
    assert "***" in info.database and "PREFECT_API_AUTH_STRING=\"$(cat" in info.exports()
    status = server_status(opts.state_dir)
    assert status.running and status.api_ok and status.db_ok, status.message
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", _auth(opts))
    handle = submit_flow("probe", {"out_dir": str(tmp_path), "n_beams": 2, "rounds": 0, "seconds": 0.1},
                         api_url=info.api_url, runner=ThreadPoolTaskRunner(max_workers=2), background=False)
    assert handle.result()["mosaics"][0].endswith("SB0.PROBE.round0.mosaic.txt")
    handle._final = None  # ask the API, not the snapshot
    assert handle.state() == "Completed"
    assert set(handle.task_states()) == {"probe-beam00.round0", "probe-beam01.round0", "probe_mosaic-round0"}
    # stop leaves nothing running: the process is gone and the port is free
    assert stop_server(opts.state_dir)
    assert not server_status(opts.state_dir).running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((opts.host, opts.port), timeout=2).close()
    with pytest.raises(FlintConfigError, match="no Prefect API answers"):
        check_api_reachable(info.api_url, timeout=2)
    # restart on the same database: the earlier run is still there
    info2 = start_server(opts)
    assert info2.api_url == info.api_url
    handle._final = None
    assert handle.state() == "Completed"
    assert len(handle.task_states()) == 3


def test_unreachable_api_url_fails_before_submitting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    port = free_port()
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{port}/api")
    with pytest.raises(FlintConfigError, match=rf"PREFECT_API_URL=http://127.0.0.1:{port}/api: no Prefect API answers"):
        submit_flow("probe", {"out_dir": str(tmp_path)}, cluster="local")
    assert not (tmp_path / "flint-stages.log").exists()


def test_unreachable_scheduler_fails_before_submitting(flint_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opts, info = flint_server
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", _auth(opts))
    spec = validate_spec({"address": f"tcp://127.0.0.1:{free_port()}"}, source="sched.yaml")
    with pytest.raises(FlintConfigError, match="sched.yaml: address: no Dask scheduler answers"):
        submit_flow("probe", {"out_dir": str(tmp_path)}, cluster=spec, api_url=info.api_url)


def test_probe_flow_on_adaptive_slurm(slurm_cluster: SlurmService, flint_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opts, info = flint_server
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", _auth(opts))
    (tmp_path / "cluster.yaml").write_text(
        "cluster_class: dask_jobqueue.SLURMCluster\n"
        "cluster_kwargs:\n"
        "  cores: 1\n  processes: 1\n  memory: 1500MB\n  walltime: '00:15:00'\n  interface: lo\n"
        f"  log_directory: {tmp_path / 'slurm-logs'}\n"
        "  scheduler_options: {dashboard_address: ':0'}\n"
        f"  job_script_prologue: ['export PREFECT_LOCAL_STORAGE_PATH={os.environ['PREFECT_LOCAL_STORAGE_PATH']}']\n"
        "adapt_kwargs: {minimum: 1, maximum: 2}\n"
    )
    out = tmp_path / "out"
    handle = submit_flow("probe", {"out_dir": str(out), "n_beams": 2, "rounds": 1, "seconds": 0.5},
                         cluster=str(tmp_path / "cluster.yaml"), api_url=info.api_url, background=True)
    result = handle.result(timeout=240)
    assert Path(result["mosaics"][1]).read_text() == (
        "beam=0 round=1 after=SB0.PROBE.beam00.round0.txt\nbeam=1 round=1 after=SB0.PROBE.beam01.round0.txt\n"
    )
    log = read_stage_log(out)
    assert len(log) == 6
    jobs = {entry[5] for entry in log}
    assert "-" not in jobs, "every stage ran inside a SLURM job"
    assert all(j.isdigit() for j in jobs)
    progress = handle.progress()
    assert progress[0] == {"probe.round0": "Completed", "probe.round1": "Completed"}
    assert set(progress["mosaic"].values()) == {"Completed"}
