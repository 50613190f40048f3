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
]

logger = logging.getLogger(__name__)

FLOW_NAMES = ("bandpass", "continuum", "probe")
_LABEL_RE = re.compile(r"^(?P<stage>[a-z_]+)-(?:beam(?P<beam>\d+))?\.?(?:round(?P<round>\d+))?")


def get_flow(name_or_flow: Any) -> Any:
    """The Prefect flow object for ``"bandpass"``, ``"continuum"`` or ``"probe"`` (or a flow)."""
    if not isinstance(name_or_flow, str):
        return name_or_flow
    from flint.prefect import flows

    table = {"bandpass": flows.bandpass_flow, "continuum": flows.continuum_flow, "probe": flows.probe_flow}
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


@contextlib.contextmanager
def prefect_api(api_url: str, auth_string: str | None = None) -> Iterator[None]:
    """Point this process (Prefect settings and ``os.environ``, inherited by workers) at ``api_url``."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")}
    os.environ["PREFECT_API_URL"] = api_url
    updates: dict[Any, Any] = {PREFECT_API_URL: api_url}
    if auth_string:
        os.environ["PREFECT_API_AUTH_STRING"] = auth_string
        updates[PREFECT_API_AUTH_STRING] = auth_string
    try:
        with temporary_settings(updates=updates):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_temporary_server() -> tuple[ServerInfo, Callable[[], None]]:
    """Start a throw-away local Prefect server (SQLite in a temp dir).

    Returns its :class:`~flint.prefect.server.ServerInfo` and the function that stops it
    (by the PID it recorded) and removes its folder; that function also runs at
    interpreter exit if nobody called it.
    """
    import atexit
    import shutil

    from flint.prefect._postgres import free_port

    state = Path(tempfile.mkdtemp(prefix="flint-prefect-"))

    def cleanup() -> None:
        atexit.unregister(cleanup)
        stop_server(state)
        shutil.rmtree(state, ignore_errors=True)

    atexit.register(cleanup)  # also when the interpreter exits with the run unfinished
    try:
        info = start_server(ServerOptions(state_dir=state, port=free_port(), auth=False), database_url=f"sqlite+aiosqlite:///{state}/prefect.db")
    except BaseException:
        cleanup()
        raise
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

    def done(self) -> bool:
        """Whether the run has finished (in any state)."""
        return self._thread is None or not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to finish; ``False`` when ``timeout`` passed first."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.done()

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


def _drain_api_workers() -> None:
    """Send the logs and events still queued for the API (before a temporary server stops)."""
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)
        EventsWorker.drain_all(timeout=5)
    except Exception as exc:  # pragma: no cover - best effort
        logger.debug("draining Prefect's API workers failed: %s", exc)


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
    handle = FlowHandle(flow_run_id=flow_run.id, api_url=url, flow_name=flow_obj.name, submitted_at=submitted_at, _auth=auth)

    def target() -> None:
        from prefect.flow_engine import run_flow as engine_run

        try:
            with prefect_api(url, auth):
                handle._state = engine_run(configured, flow_run=flow_run, parameters=params, return_type="state")
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
