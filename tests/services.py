"""Real services for integration tests: a single-node SLURM and a private PostgreSQL.

Fixtures (session scope; import them into a conftest):

``slurm_cluster``
    a running one-node SLURM (``slurmctld`` + ``slurmd``, ``auth/none``) with its own
    ``slurm.conf`` in a temp dir; ``SLURM_CONF`` is set for the whole session so
    ``sbatch``/``squeue``/dask-jobqueue find it. Yields a :class:`SlurmService`.
``postgres_server``
    a PostgreSQL cluster ``initdb``-ed into a temp dir (run as the ``postgres`` user when
    the tests run as root) on a free loopback port. Yields a
    :class:`flint.prefect._postgres.PostgresInstance` (``.url()`` for SQLAlchemy).

Both stop what they started (``scontrol shutdown`` / ``pg_ctl stop``, then kill by PID
only processes they started). A missing binary skips locally and fails in CI
(:func:`tests.conftest.require_tool`). The plain ``start_*``/``stop_*`` functions are
also used by the benchmarks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flint.prefect._postgres import (
    PostgresInstance,
    free_port,
    init_postgres,
    start_postgres,
    stop_postgres,
)

__all__ = [
    "SlurmService",
    "start_slurm",
    "stop_slurm",
    "slurm_cluster",
    "postgres_server",
    "start_postgres_service",
    "stop_postgres_service",
    "drain_prefect_clients",
]


def _require_tool(name: str) -> str:
    """``require_tool`` from tests/conftest.py (skip locally, fail in CI)."""
    import importlib

    try:
        mod = importlib.import_module("conftest")
    except ImportError:  # pragma: no cover - imported as a package
        mod = importlib.import_module("tests.conftest")
    return str(mod.require_tool(name))


@dataclass
class SlurmService:
    """A running single-node SLURM."""

    root: Path
    conf: Path
    node: str
    cpus: int
    pids: list[int] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, timeout: float = 30) -> str:
        """Run a SLURM client command against this cluster and return its output."""
        out = subprocess.run(list(argv), env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout

    def job_ids(self) -> list[str]:
        """Ids of the jobs SLURM currently knows as pending or running."""
        out = self.run("squeue", "-h", "-o", "%i %T")
        return [line.split()[0] for line in out.splitlines() if line.split()[1] in ("PENDING", "RUNNING", "CONFIGURING")]


def _pid_of(pidfile: Path, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pidfile.exists() and pidfile.read_text().strip():
            return int(pidfile.read_text().split()[0])
        time.sleep(0.1)
    raise RuntimeError(f"{pidfile} did not appear")


def start_slurm(root: Path, cpus: int | None = None, memory_mb: int = 8000, timeout: float = 60) -> SlurmService:
    """Write a slurm.conf under ``root``, start slurmctld and slurmd, wait for the node."""
    for tool in ("slurmctld", "slurmd", "sbatch", "scontrol"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(tool)
    root.mkdir(parents=True, exist_ok=True)
    node = socket.gethostname()
    cpus = cpus or os.cpu_count() or 1
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(exist_ok=True)
    ctld_port, d_port = free_port(), free_port()
    conf = root / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=flinttest",
                f"SlurmctldHost={node}(127.0.0.1)",
                f"SlurmctldPort={ctld_port}",
                f"SlurmdPort={d_port}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/none",
                "CredType=cred/none",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                "DefMemPerCPU=1000",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                "MailProg=/bin/true",
                "ReturnToService=2",
                "SchedulerType=sched/backfill",
                "MinJobAge=30",
                "KillWait=2",
                f"StateSaveLocation={root / 'state'}",
                f"SlurmdSpoolDir={root / 'spool'}",
                f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                f"SlurmdPidFile={root / 'slurmd.pid'}",
                f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
                f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
                f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
                "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    svc = SlurmService(root=root, conf=conf, node=node, cpus=cpus)
    env = {**os.environ, **svc.env}
    # -i: ignore state from an earlier run; both daemonise and write their pid files
    subprocess.run(["slurmctld", "-i", "-f", str(conf)], env=env, check=True, timeout=30)
    svc.pids.append(_pid_of(root / "slurmctld.pid"))
    subprocess.run(["slurmd", "-f", str(conf)], env=env, check=True, timeout=30)
    svc.pids.append(_pid_of(root / "slurmd.pid"))
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        try:
            state = svc.run("sinfo", "-h", "-N", "-o", "%T").strip()
        except (RuntimeError, subprocess.TimeoutExpired):
            state = ""
        if state in ("idle", "mixed", "allocated"):
            return svc
        time.sleep(0.5)
    stop_slurm(svc)
    raise RuntimeError(f"SLURM node did not become idle within {timeout} s (state {state!r}); logs in {root / 'log'}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_slurm(svc: SlurmService, timeout: float = 20) -> None:
    """Cancel remaining jobs, ``scontrol shutdown``, then kill (by PID) what is left of our daemons."""
    try:
        ids = svc.job_ids()
        if ids:
            svc.run("scancel", *ids)
    except (RuntimeError, subprocess.TimeoutExpired, IndexError):
        pass
    try:
        svc.run("scontrol", "shutdown")
    except (RuntimeError, subprocess.TimeoutExpired):
        pass
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in svc.pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in svc.pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmService]:
    """A running single-node SLURM for the whole session (``SLURM_CONF`` set)."""
    for tool in ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel"):
        _require_tool(tool)
    root = Path(tempfile.mkdtemp(prefix="flint-slurm-"))
    svc = start_slurm(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("SLURM_CONF", str(svc.conf))
    try:
        yield svc
    finally:
        mp.undo()
        stop_slurm(svc)
        shutil.rmtree(root, ignore_errors=True)


def start_postgres_service(base: Path | None = None) -> PostgresInstance:
    """``initdb`` a new PostgreSQL cluster under ``base`` (a new temp dir) and start it."""
    if base is None:
        base = Path(tempfile.mkdtemp(prefix="flint-pg-"))
    os.chmod(base, 0o711)  # the postgres user must traverse it when we are root
    inst = init_postgres(base / "pgdata", port=free_port())
    start_postgres(inst)
    return inst


def stop_postgres_service(inst: PostgresInstance, remove: bool = True) -> None:
    """Stop the server; remove its folder when ``remove``."""
    try:
        stop_postgres(inst)
    finally:
        if remove:
            shutil.rmtree(inst.data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresInstance]:
    """A private PostgreSQL (database ``prefect``, user ``flint``) on a free loopback port."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if shutil.which(tool) is None and not list(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}")):
            _require_tool(tool)
    if os.geteuid() == 0:
        _require_tool("runuser")
    inst = start_postgres_service()
    try:
        yield inst
    finally:
        stop_postgres_service(inst)


def drain_prefect_clients(timeout: float = 10) -> None:
    """Send this process's queued Prefect logs and events now, while their API still runs.

    Call before stopping a Prefect server a test used: otherwise the queues are drained at
    interpreter exit against a stopped server, and the client retries for a minute or more.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout)
