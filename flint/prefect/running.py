"""Run a flint flow from Python: in the foreground, or in the background with a handle.

Which Prefect API
    ``api_url`` if given, else ``$PREFECT_API_URL`` (checked reachable before anything is
    submitted), else a temporary local Prefect server started for this run and shared
    with the Dask workers (so they do not each start their own).
Where the tasks run
    a :class:`~flint.prefect.clusters.ClusterSpec` (or a YAML path / packaged name) gives
    the Dask task runner; ``address`` specs are checked reachable first.

Examples
--------
>>> handle = submit_flow("continuum", {...}, cluster="local")      # doctest: +SKIP
>>> handle.progress()                                                # doctest: +SKIP
{3: {'copy': 'Completed', 'apply': 'Running'}, ...}
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flint.errors import FlintConfigError, FlintError
from flint.prefect.clusters import ClusterSpec, load_cluster_spec, task_runner, validate_spec
from flint.prefect.server import (
    ServerInfo,
    ServerOptions,
    check_api_reachable,
    start_server,
    stop_server,
)

__all__ = [
    "FLOW_NAMES",
    "get_flow",
    "prefect_api",
    "resolve_cluster",
    "run_flow",
    "submit_flow",
    "FlowHandle",
    "temporary_server",
    "start_temporary_server",
    "prefect_ui_url",
    "kill_worker_programs",
    "jupyter_proxy_prefix",
]

logger = logging.getLogger(__name__)

FLOW_NAMES = ("bandpass", "continuum", "line", "polarisation", "probe")
_LABEL_RE = re.compile(r"^(?P<stage>[a-z_]+)-(?:beam(?P<beam>\d+))?\.?(?:round(?P<round>\d+))?")


def get_flow(name_or_flow: Any) -> Any:
    """The Prefect flow object for ``"bandpass"``, ``"continuum"``, ``"line"`` or ``"probe"`` (or a flow)."""
    if not isinstance(name_or_flow, str):
        return name_or_flow
    from flint.prefect import flows

    table = {"bandpass": flows.bandpass_flow, "continuum": flows.continuum_flow, "probe": flows.probe_flow}
    if name_or_flow == "line":
        from flint.prefect.line import line_flow

        table["line"] = line_flow
    if name_or_flow == "polarisation":
        from flint.prefect.polarisation import polarisation_flow

        table["polarisation"] = polarisation_flow
    if name_or_flow not in table:
        raise FlintConfigError(f"unknown flow {name_or_flow!r}; choose one of {', '.join(FLOW_NAMES)}")
    return table[name_or_flow]


def resolve_cluster(cluster: ClusterSpec | str | os.PathLike[str] | Mapping[str, Any] | None) -> ClusterSpec:
    """A validated spec from a spec, a YAML path, a packaged example name or a mapping."""
    if cluster is None:
        return load_cluster_spec("local")
    if isinstance(cluster, ClusterSpec):
        return cluster
    if isinstance(cluster, Mapping):
        return validate_spec(cluster)
    return load_cluster_spec(cluster)


_ENV_KEYS = ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")
_env_lock = threading.Lock()
#: the (url, auth) of every prefect_api block now open, oldest first, and the environment before the first
_env_active: list[tuple[object, str, str | None]] = []
_env_saved: dict[str, str | None] = {}


def _apply_env(url: str | None, auth: str | None) -> None:
    values = {"PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": auth}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def prefect_api(api_url: str, auth_string: str | None = None) -> Iterator[None]:
    """Point this process (Prefect settings and ``os.environ``, inherited by workers) at ``api_url``.

    Blocks may overlap in several threads (a flow run and the launcher's progress polling):
    while any is open ``os.environ`` names the newest one still open, and when the last one
    closes the environment is exactly what it was before the first (nothing leaks).
    """
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    token = object()
    with _env_lock:
        if not _env_active:
            _env_saved.clear()
            _env_saved.update({k: os.environ.get(k) for k in _ENV_KEYS})
        auth = auth_string or _env_saved.get("PREFECT_API_AUTH_STRING")
        _env_active.append((token, api_url, auth))
        _apply_env(api_url, auth)
    updates: dict[Any, Any] = {PREFECT_API_URL: api_url}
    if auth_string:
        updates[PREFECT_API_AUTH_STRING] = auth_string
    try:
        with temporary_settings(updates=updates):
            yield
    finally:
        with _env_lock:
            _env_active[:] = [entry for entry in _env_active if entry[0] is not token]
            if _env_active:
                _apply_env(*_env_active[-1][1:])
            else:
                _apply_env(_env_saved.get("PREFECT_API_URL"), _env_saved.get("PREFECT_API_AUTH_STRING"))


#: API URL -> URL of the Prefect UI page root, for servers whose UI is not at <api root>/
_UI_ROOTS: dict[str, str] = {}


def jupyter_proxy_prefix() -> str | None:
    """``<base>/proxy/`` of jupyter-server-proxy when this process is a Jupyter kernel that has it, else ``None``."""
    import importlib.util

    in_kernel = bool(os.environ.get("JPY_SESSION_NAME") or os.environ.get("JPY_PARENT_PID"))
    if not in_kernel or importlib.util.find_spec("jupyter_server_proxy") is None:
        return None
    base = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    return base.rstrip("/") + "/proxy/"


def prefect_ui_url(api_url: str, flow_run_id: Any = None) -> str:
    """The Prefect UI (page of ``flow_run_id`` if given) of the server at ``api_url``.

    For a server flint started inside Jupyter this is a path through jupyter-server-proxy
    (``/proxy/absolute/<port>/...``), so it opens from any browser that reaches JupyterLab.
    """
    root = _UI_ROOTS.get(api_url, api_url.rstrip("/").removesuffix("/api"))
    return root if flow_run_id is None else f"{root.rstrip('/')}/runs/flow-run/{flow_run_id}"


def start_temporary_server(behind_jupyter: bool | None = None) -> tuple[ServerInfo, Callable[[], None]]:
    """Start a throw-away local Prefect server (SQLite in a temp dir).

    Returns its :class:`~flint.prefect.server.ServerInfo` and the function that stops it
    (by the PID it recorded) and removes its folder; that function also runs at
    interpreter exit if nobody called it.

    Its UI is told its own API URL. ``behind_jupyter`` (default: when this is a Jupyter
    kernel with jupyter-server-proxy) serves the UI under ``/proxy/absolute/<port>/`` and
    points it at ``/proxy/<port>/api``; :func:`prefect_ui_url` gives the link.
    """
    import atexit
    import shutil

    from flint.prefect._postgres import free_port

    state = Path(tempfile.mkdtemp(prefix="flint-prefect-"))
    prefix = jupyter_proxy_prefix() if behind_jupyter is None else ("/proxy/" if behind_jupyter else None)
    port = free_port()
    ui: dict[str, Any] = {}
    if prefix is not None:
        ui = {"ui_serve_base": f"{prefix}absolute/{port}", "ui_api_url": f"{prefix}{port}/api"}

    def cleanup() -> None:
        atexit.unregister(cleanup)
        stop_server(state)
        shutil.rmtree(state, ignore_errors=True)

    atexit.register(cleanup)  # also when the interpreter exits with the run unfinished
    try:
        opts = ServerOptions(state_dir=state, port=port, auth=False, **ui)
        info = start_server(opts, database_url=f"sqlite+aiosqlite:///{state}/prefect.db")
    except BaseException:
        cleanup()
        raise
    if prefix is not None:
        _UI_ROOTS[info.api_url] = ui["ui_serve_base"]
    return info, cleanup


@contextlib.contextmanager
def temporary_server() -> Iterator[str]:
    """A throw-away local Prefect server (SQLite in a temp dir) for one run; yields its API URL."""
    info, cleanup = start_temporary_server()
    try:
        yield info.api_url
    finally:
        cleanup()


@contextlib.contextmanager
def _api_for_run(api_url: str | None) -> Iterator[str]:
    url = api_url or os.environ.get("PREFECT_API_URL")
    if url:
        check_api_reachable(url)
        yield url
    else:
        with temporary_server() as url:
            yield url


def _create_run(flow: Any, parameters: dict[str, Any]) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.create_flow_run(flow, parameters=parameters)


def run_flow(
    flow: Any,
    parameters: Mapping[str, Any] | None = None,
    *,
    cluster: ClusterSpec | str | os.PathLike[str] | Mapping[str, Any] | None = None,
    api_url: str | None = None,
) -> Any:
    """Run a flow in the foreground and return its result (raises if it fails)."""
    handle = submit_flow(flow, parameters, cluster=cluster, api_url=api_url, background=False)
    return handle.result()


@dataclass
class FlowHandle:
    """A flow run started by :func:`submit_flow`."""

    flow_run_id: uuid.UUID
    api_url: str
    flow_name: str
    submitted_at: float = 0.0
    """``time.time()`` when :func:`submit_flow` was called."""
    _thread: threading.Thread | None = None
    _state: Any = None
    _error: BaseException | None = None
    _auth: str | None = None
    _final: dict[str, Any] | None = None
    scheduler_address: str | None = None
    """The Dask scheduler the tasks run on, when known (its workers' programs are stopped on cancel)."""
    cancel_requested: bool = False
    """Set by :meth:`cancel`; the run then ends Cancelled whatever its engine reports."""

    def done(self) -> bool:
        """Whether the run has finished (in any state)."""
        return self._thread is None or not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to finish; ``False`` when ``timeout`` passed first."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.done()

    def cancel(self, timeout: float = 60.0) -> list[int]:
        """Cancel the run: no further task starts, running external programs are killed, it ends Cancelled.

        1. the flow run is set ``Cancelling`` on the API, so the server refuses to start any
           further task run (or a retry);
        2. the external programs (WSClean, AOFlagger...) the scheduler's workers started
           through :mod:`flint.runner` are killed by their process group, again and again
           until the flow engine has stopped;
        3. the flow run is then forced to ``Cancelled`` and stays so; this returns once the
           engine has stopped and no worker executes a task of the run any more (a task busy
           in Python cannot be interrupted: its result is thrown away).

        Returns the PIDs of the programs killed. Waits at most ``timeout`` seconds for the engine.
        """
        from prefect.states import Cancelling

        self.cancel_requested = True
        if self.done():
            return []
        self._set_state(Cancelling(message="cancelled from flint"))
        killed: list[int] = []
        end = time.monotonic() + timeout
        while True:
            busy = 0
            if self.scheduler_address:
                killed += kill_worker_programs(self.scheduler_address)
                busy = run_still_executing(self.scheduler_address)
            if (self.wait(1.0) and not busy) or time.monotonic() > end:
                break
        if self.scheduler_address:
            killed += kill_worker_programs(self.scheduler_address)
        if not self.done():
            logger.warning("flow run %s: engine still busy %.0f s after cancel", self.flow_run_id, timeout)
        return killed

    def _cancel_open_task_runs(self) -> None:
        """Task runs a cancelled run left Pending/Running (their futures were cancelled) become Cancelled."""
        from prefect.states import Cancelled

        with prefect_api(self.api_url, self._auth), self._client() as client:
            for run in self._task_runs():
                if run.state is None or not run.state.is_final():
                    client.set_task_run_state(run.id, Cancelled(message="flow run cancelled"), force=True)

    def _set_state(self, state: Any) -> None:
        with prefect_api(self.api_url, self._auth), self._client() as client:
            client.set_flow_run_state(self.flow_run_id, state, force=True)

    def _client(self) -> Any:
        from prefect.client.orchestration import get_client

        return get_client(sync_client=True)

    def state(self) -> str:
        """The flow run's state name as the Prefect API reports it (``Running``, ``Completed``...)."""
        if self._final is not None:
            return str(self._final["state"])
        with prefect_api(self.api_url, self._auth), self._client() as client:
            run = client.read_flow_run(self.flow_run_id)
        return str(run.state.name) if run.state else "Unknown"

    def _task_runs(self) -> list[Any]:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.client.schemas.sorting import TaskRunSort

        flt = FlowRunFilter(id=FlowRunFilterId(any_=[self.flow_run_id]))
        runs: list[Any] = []
        with prefect_api(self.api_url, self._auth), self._client() as client:
            while True:  # the API serves at most 200 per request
                page = client.read_task_runs(flow_run_filter=flt, sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200, offset=len(runs))
                runs.extend(page)
                if len(page) < 200:
                    break
        return runs

    def task_states(self) -> dict[str, str]:
        """Task-run name -> state name, for every task run of this flow run."""
        if self._final is not None:
            return dict(self._final["tasks"])
        return {r.name: (r.state.name if r.state else "Unknown") for r in self._task_runs()}

    def timeline(self) -> list[dict[str, Any]]:
        """Task runs as ``{"name", "state", "start", "end"}`` (POSIX seconds or ``None``), by start."""
        if self._final is not None:
            return list(self._final["timeline"])

        def ts(t: Any) -> float | None:
            return None if t is None else float(t.timestamp())

        rows = [{"name": r.name, "state": r.state.name if r.state else "Unknown", "start": ts(r.start_time), "end": ts(r.end_time)} for r in self._task_runs()]
        return sorted(rows, key=lambda row: (row["start"] is None, row["start"] or 0.0))

    def first_task_latency(self) -> float | None:
        """Seconds from :func:`submit_flow` to the first task run entering ``Running``."""
        starts = [row["start"] for row in self.timeline() if row["start"] is not None]
        return min(starts) - self.submitted_at if starts else None

    def progress(self) -> dict[int | str, dict[str, str]]:
        """Per-beam stage progress: ``{beam: {stage[.roundN]: state}}``; mosaic stages under ``"mosaic"``."""
        out: dict[int | str, dict[str, str]] = {}
        for name, state in self.task_states().items():
            m = _LABEL_RE.match(name)
            if m is None:
                continue
            stage = m["stage"] + (f".round{m['round']}" if m["round"] is not None else "")
            key: int | str = int(m["beam"]) if m["beam"] is not None else "mosaic"
            out.setdefault(key, {})[stage] = state
        return out

    def result(self, timeout: float | None = None) -> Any:
        """Wait and return the flow's return value; raise :class:`FlintError` if it failed."""
        if not self.wait(timeout):
            raise FlintError(f"flow run {self.flow_run_id} still running after {timeout} s")
        if self._error is not None:
            raise self._error
        state = self._state
        if state is None:
            raise FlintError(f"flow run {self.flow_run_id} produced no state")
        if not state.is_completed():
            try:
                state.result(_sync=True)
            except FlintError:
                raise
            except BaseException as exc:
                raise FlintError(f"{self.flow_name} flow run {self.flow_run_id} ended {state.name}: {exc}") from exc
            raise FlintError(f"{self.flow_name} flow run {self.flow_run_id} ended {state.name}")
        # _sync: inside a running event loop (a Jupyter kernel) Prefect would hand back a coroutine
        return state.result(_sync=True)


def _kill_own_program_groups() -> list[int]:
    """On a Dask worker: SIGKILL the process groups of this worker's child processes that lead one.

    :mod:`flint.runner` starts every external program in its own process group
    (``process_group=0``); Dask's own helper processes do not lead a group, and servers
    (Prefect, PostgreSQL) start a session of their own, so they are left alone.
    """
    import signal

    import psutil

    killed = []
    for child in psutil.Process().children(recursive=False):
        try:
            # a group of its own but this session: flint.runner's programs (servers start new sessions)
            if os.getpgid(child.pid) == child.pid and os.getsid(child.pid) != child.pid:
                os.killpg(child.pid, signal.SIGKILL)
                killed.append(child.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return killed


def _flint_task_names() -> list[str]:
    """Function names of flint's Prefect tasks (the Dask keys of their runs start with them)."""
    from prefect import Task

    from flint.prefect import tasks

    return sorted({obj.fn.__name__ for obj in vars(tasks).values() if isinstance(obj, Task)})


def _unfinished_keys(dask_scheduler: Any, names: list[str]) -> list[Any]:
    """On the scheduler: keys of flint task runs not yet finished."""
    from dask.utils import key_split

    wanted = set(names)
    return [ts.key for ts in dask_scheduler.tasks.values()
            if key_split(ts.key) in wanted and ts.state not in ("memory", "erred", "forgotten", "released")]


def _still_executing(dask_worker: Any, names: list[str]) -> int:
    """On a worker: how many flint task runs are still executing (cancelled ones included)."""
    from dask.utils import key_split

    wanted = set(names)
    return sum(1 for ts in dask_worker.state.tasks.values()
               if key_split(ts.key) in wanted and ts.state in ("executing", "long-running", "cancelled"))


def run_still_executing(address: str) -> int:
    """Number of flint task runs the workers of the scheduler at ``address`` still execute."""
    from distributed import Client

    with Client(address, timeout=10, set_as_default=False) as client:
        return sum(client.run(_still_executing, names=_flint_task_names()).values())


def kill_worker_programs(address: str) -> list[int]:
    """Stop a cancelled run on the scheduler at ``address``; the PIDs of the programs killed.

    The Dask futures of flint's task runs that have not finished are cancelled (so no
    further stage starts: Prefect 3 orchestrates task runs in the client, a Cancelled flow
    run alone does not stop them), and the external programs the workers run are killed.
    Meant for the scheduler of one notebook session (a warm session, the panel's cluster).
    """
    from distributed import Client, Future

    try:
        with Client(address, timeout=10, set_as_default=False) as client:
            keys = client.run_on_scheduler(_unfinished_keys, names=_flint_task_names())
            if keys:
                client.cancel([Future(k, client) for k in keys], force=True, reason="cancelled from flint")
                logger.info("cancel: %d Dask task(s) cancelled", len(keys))
            found = client.run(_kill_own_program_groups)
    except OSError as exc:
        logger.warning("could not reach the scheduler %s to stop the run: %s", address, exc)
        return []
    pids = [pid for per in found.values() for pid in per]
    if pids:
        logger.info("cancel: killed external programs %s", pids)
    return pids


def _drain_api_workers() -> None:
    """Send the logs and events still queued for the API (before a temporary server stops).

    Drained from a thread of its own: with an event loop running in the calling thread (a
    Jupyter kernel) Prefect's ``drain_all`` would return a coroutine nobody awaits.
    """

    def drain() -> None:
        try:
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=5)
            EventsWorker.drain_all(timeout=5)
        except Exception as exc:  # pragma: no cover - best effort
            logger.debug("draining Prefect's API workers failed: %s", exc)

    thread = threading.Thread(target=drain, name="flint-drain-prefect", daemon=True)
    thread.start()
    thread.join(timeout=12)


def submit_flow(
    flow: Any,
    parameters: Mapping[str, Any] | None = None,
    *,
    cluster: ClusterSpec | str | os.PathLike[str] | Mapping[str, Any] | None = None,
    api_url: str | None = None,
    background: bool = True,
    runner: Any = None,
) -> FlowHandle:
    """Start a flow run and return its :class:`FlowHandle` (``background=False`` waits for it).

    Everything that can be checked is checked before anything is submitted: the cluster
    spec, the Prefect API (``api_url`` / ``$PREFECT_API_URL``) and a scheduler ``address``.
    A temporary local Prefect server (when no API is configured) lives as long as the run.
    """
    submitted_at = time.time()
    flow_obj = get_flow(flow)
    spec = resolve_cluster(cluster) if runner is None else None
    params = dict(parameters or {})
    stack = contextlib.ExitStack()
    auth = os.environ.get("PREFECT_API_AUTH_STRING")
    url = stack.enter_context(_api_for_run(api_url))
    try:
        if runner is None:
            assert spec is not None
            runner = task_runner(spec, api_url=url)  # checks a scheduler address
        configured = flow_obj.with_options(task_runner=runner)
        with prefect_api(url, auth):
            flow_run = _create_run(configured, params)
    except BaseException:
        stack.close()
        raise
    handle = FlowHandle(flow_run_id=flow_run.id, api_url=url, flow_name=flow_obj.name, submitted_at=submitted_at, _auth=auth,
                        scheduler_address=getattr(runner, "address", None) or (spec.address if spec is not None else None))

    def target() -> None:
        from prefect.flow_engine import run_flow as engine_run

        try:
            with prefect_api(url, auth):
                handle._state = engine_run(configured, flow_run=flow_run, parameters=params, return_type="state")
                if handle.cancel_requested:  # whatever the engine proposed last, the run was cancelled
                    from prefect.states import Cancelled

                    handle._state = Cancelled(message="cancelled from flint")
                    handle._set_state(handle._state)
                    handle._cancel_open_task_runs()
                # the API may go away with the run (temporary server): keep the last word
                final = {"tasks": handle.task_states(), "timeline": handle.timeline(), "state": handle.state()}
                handle._final = final
        except BaseException as exc:  # reported by handle.result()
            handle._error = exc
        finally:
            _drain_api_workers()
            stack.close()

    if background:
        handle._thread = threading.Thread(target=target, name=f"flint-flow-{flow_run.id}", daemon=True)
        handle._thread.start()
    else:
        target()
    return handle
