"""What the cluster panel shows, as plain functions (no widgets).

These read a running Dask cluster: counts of workers, threads, memory and tasks,
the dashboard link through jupyter-server-proxy, and the batch jobs of a
dask-jobqueue cluster (state, pending reason, log file). They hold no widget code,
so the same calls work in a script.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from flint.errors import FlintCommandError
from flint.runner import run_command

__all__ = [
    "ClusterCounts",
    "DashboardLinks",
    "JobState",
    "cluster_counts",
    "dashboard_links",
    "link_template",
    "dask_sidebar_html",
    "job_states",
    "job_log_path",
    "tail_text",
    "format_bytes",
]

logger = logging.getLogger(__name__)

_DEFAULT_PROXY_TEMPLATE = "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status"


@dataclass(frozen=True)
class ClusterCounts:
    """Live numbers of a cluster."""

    workers: int
    threads: int
    memory_bytes: int
    tasks: dict[str, int]
    requested: int | None = None

    @property
    def tasks_total(self) -> int:
        return sum(self.tasks.values())


@dataclass(frozen=True)
class DashboardLinks:
    """Where the Dask dashboard is.

    Attributes
    ----------
    proxy
        Link through jupyter-server-proxy (works from a browser that only reaches JupyterLab).
    direct
        The scheduler's own dashboard URL (for dask-labextension's sidebar, or an SSH tunnel).
    port
        The dashboard's port.
    """

    proxy: str
    direct: str
    port: int


@dataclass(frozen=True)
class JobState:
    """One batch job of a dask-jobqueue cluster."""

    name: str
    job_id: str | None
    state: str
    reason: str = ""
    connected_workers: int = 0
    log_file: Path | None = None


def format_bytes(n: int | float) -> str:
    """``3.2 GiB``-style size."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def cluster_counts(client: Any, cluster: Any = None) -> ClusterCounts:
    """Workers, threads, memory and task states of the scheduler ``client`` talks to."""
    info = client.scheduler_info(n_workers=-1)
    workers = info.get("workers", {})
    tasks: Counter[str] = Counter()
    for w in workers.values():
        tasks.update(w.get("metrics", {}).get("task_counts", {}) or {})
    requested = None
    if cluster is not None and hasattr(cluster, "worker_spec"):
        spec = cluster.worker_spec
        requested = sum(len(s.get("group", [""])) for s in spec.values()) if spec else 0
    return ClusterCounts(
        workers=len(workers),
        threads=sum(int(w.get("nthreads", 0)) for w in workers.values()),
        memory_bytes=sum(int(w.get("memory_limit", 0) or 0) for w in workers.values()),
        tasks=dict(tasks),
        requested=requested,
    )


def _is_loopback_or_any(host: str) -> bool:
    if host in ("", "localhost", "*"):
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _dashboard_listen_hosts(cluster: Any) -> list[str] | None:
    """Hosts the in-process scheduler's dashboard listens on (``None``: unknown)."""
    scheduler = getattr(cluster, "scheduler", None)
    server = getattr(scheduler, "http_server", None)
    sockets = getattr(server, "_sockets", None)
    if not sockets:
        return None
    return [str(s.getsockname()[0]) for s in sockets.values()]


def dashboard_links(client: Any, cluster: Any = None, template: str | None = None) -> DashboardLinks:
    """The dashboard link through jupyter-server-proxy, and the direct one.

    ``template`` (default: dask's ``distributed.dashboard.link`` when it goes through a
    proxy, else ``{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status`` with the prefix ``/``
    outside JupyterHub) is formatted with ``host``, ``port`` and the environment.
    When the dashboard listens only on a non-loopback address (a scheduler bound to
    an HPC interface), the link names that host: ``proxy/<host>:<port>/status`` (allow
    the host in ``ServerProxy.host_allowlist``).
    """
    import dask.config

    info = client.scheduler_info(n_workers=0)
    port = info.get("services", {}).get("dashboard")
    if port is None:
        raise FlintCommandError(["dask-scheduler"], 0, "the scheduler runs without a dashboard; start it with dashboard_address=':0'")
    sched_host = urlparse(info.get("address", "")).hostname or "localhost"
    listen = _dashboard_listen_hosts(cluster)
    if listen and all(_is_loopback_or_any(h) for h in listen) and not any(h in ("", "0.0.0.0", "::") for h in listen):
        sched_host = listen[0]  # loopback only: the scheduler's own host name would not answer
    elif listen and not any(_is_loopback_or_any(h) for h in listen):
        sched_host = listen[0]
    direct = f"http://{sched_host}:{port}/status"
    if template is None:
        configured = str(dask.config.get("distributed.dashboard.link", ""))
        template = configured if "proxy" in configured else _DEFAULT_PROXY_TEMPLATE
    port_part: str = str(port)
    if listen is not None and not any(_is_loopback_or_any(h) for h in listen):
        port_part = f"{listen[0]}:{port}"
    env = {**os.environ}
    env.setdefault("JUPYTERHUB_SERVICE_PREFIX", "/")
    proxy = template.format(**{**env, "host": sched_host, "port": port_part, "scheme": "http"})
    return DashboardLinks(proxy=proxy, direct=direct, port=int(port))


def link_template(links: DashboardLinks) -> str:
    """A ``distributed.dashboard.link`` template that gives ``links.proxy`` for this cluster.

    Set while the panel's cluster runs, ``client.dashboard_link`` (what dask-labextension's
    "search" button asks the notebook's kernel for) names the dashboard through
    jupyter-server-proxy, which the sidebar can reach from any browser.
    """
    proxy = links.proxy.replace("{", "{{").replace("}", "}}")
    at = proxy.rfind(str(links.port))
    if at < 0:
        return proxy  # a template without the port: the link as it is
    return proxy[:at] + "{port}" + proxy[at + len(str(links.port)):]


def dask_sidebar_html(links: DashboardLinks) -> str:
    """Buttons that connect dask-labextension's sidebar to this dashboard (JupyterLab's command links).

    The buttons run dask-labextension's own commands with the proxy URL:
    ``dask:populate-dashboard-url`` (the sidebar's dashboard box, its plot buttons lit) and
    ``dask:populate-and-launch-layout`` (also opens the task stream, memory and progress panes).
    Outside JupyterLab they do nothing.
    """
    import html
    import json

    args = html.escape(json.dumps({"url": links.proxy}), quote=True)

    def button(command: str, label: str, css: str, title: str) -> str:
        return (f"<button class='jp-mod-styled jp-mod-accept {css}' style='margin:2px 6px 2px 0;cursor:pointer' "
                f"title='{html.escape(title, quote=True)}' data-commandlinker-command='{command}' "
                f"data-commandlinker-args='{args}'>{html.escape(label)}</button>")

    return (
        button("dask:populate-dashboard-url", "show in the Dask sidebar", "flint-dask-sidebar",
               "fill dask-labextension's dashboard box with this cluster's dashboard (open the Dask tab on the left)")
        + button("dask:populate-and-launch-layout", "open Dask panes", "flint-dask-panes",
                 "the sidebar's dashboard plus task stream, worker memory and progress panes beside the notebook")
    )


def job_log_path(job: Any) -> Path | None:
    """The log file a dask-jobqueue job writes (``<log_directory>/<job_name>-<job id>.err``)."""
    log_dir, job_id = getattr(job, "log_directory", None), getattr(job, "job_id", None)
    if not log_dir or not job_id:
        return None
    base = Path(os.path.expandvars(str(log_dir))).expanduser()
    name = getattr(job, "job_name", None) or "dask-worker"
    for suffix in (".err", ".out", ".log"):
        if (base / f"{name}-{job_id}{suffix}").exists():
            return base / f"{name}-{job_id}{suffix}"
    return base / f"{name}-{job_id}.err"


def _squeue(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    if not job_ids or shutil.which("squeue") is None:
        return {}
    out = run_command(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%r"], timeout=20)
    states: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1].lower(), "" if parts[2] in ("None", "(null)") else parts[2])
    return states


def job_states(cluster: Any, client: Any | None = None) -> list[JobState]:
    """Batch jobs of a dask-jobqueue cluster: pending (with reason), running, failed/ended.

    SLURM states and pending reasons come from ``squeue``; for other batch systems a
    job is "running" once its workers connected and "submitted" before.
    """
    jobs = getattr(cluster, "workers", {}) or {}
    connected: Counter[str] = Counter()
    if client is not None:
        for w in client.scheduler_info(n_workers=-1).get("workers", {}).values():
            name = str(w.get("name", ""))
            for job_name in jobs:
                if name == str(job_name) or name.startswith(f"{job_name}-"):
                    connected[str(job_name)] += 1
    ids = {str(n): str(j.job_id) for n, j in jobs.items() if getattr(j, "job_id", None)}
    is_slurm = type(cluster).__name__ == "SLURMCluster"
    try:
        queue = _squeue(list(ids.values())) if is_slurm else {}
    except FlintCommandError as exc:
        logger.warning("squeue failed: %s", exc)
        queue = {}
    out: list[JobState] = []
    for name, job in jobs.items():
        job_id = ids.get(str(name))
        state, reason = "submitting", ""
        if job_id is not None:
            if is_slurm:
                state, reason = queue.get(job_id, ("ended", "not in the queue: finished or failed; see its log"))
            else:
                state = "running" if connected[str(name)] else "submitted"
            if getattr(job, "status", "") == "closed":
                state = "closed"
        out.append(JobState(str(name), job_id, state, reason, connected[str(name)], job_log_path(job)))
    return out


def tail_text(path: Path, n_lines: int = 60) -> str:
    """The last ``n_lines`` of a text file (a message when it does not exist yet)."""
    if not path.exists():
        return f"{path} does not exist yet (the job has not started writing)"
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join(lines[-n_lines:])
