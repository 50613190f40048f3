"""The warm path: one Prefect server and one Dask cluster kept alive for a notebook session.

Without it every flow run pays a temporary Prefect server (~14 s here) and a new Dask
cluster. A :class:`WarmSession` starts both once (or connects to a running scheduler /
Prefect API) and submits every flow to them, so a submit costs only the API round trips
and the first task starts within a second or two.

Examples
--------
>>> with WarmSession("local") as session:                               # doctest: +SKIP
...     h = session.submit("bandpass", bandpass="data/", out_dir="run/bp")
...     h.wait(); print(h.progress())
...     h2 = session.submit("continuum", science=[...], solutions="run/bp", out_dir="run/c")

``close()`` (or leaving the ``with`` block) stops only what the session started: the
temporary server by the PID it recorded, the Dask cluster it created. An existing
scheduler (``address``) or Prefect API (``api_url``) is left running.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from flint.errors import FlintError
from flint.prefect.clusters import ClusterSpec, validate_spec

__all__ = ["WarmSession"]

logger = logging.getLogger(__name__)


def _warm_worker() -> str:
    """Run on each worker at start: import Prefect and flint's tasks once, ahead of the first flow."""
    import flint.prefect.tasks  # noqa: F401  (imports prefect)

    return "warm"


class WarmSession:
    """A Prefect server and a Dask cluster kept alive between flow submissions.

    Parameters
    ----------
    cluster
        A :class:`~flint.prefect.clusters.ClusterSpec`, cluster YAML path, packaged example
        name (``"local"``) or mapping; ignored when ``address`` is given.
    address
        An already running Dask scheduler to use instead (checked reachable; not stopped).
    api_url
        A Prefect API to use (checked reachable; not stopped). Default: ``$PREFECT_API_URL``
        if set, else a temporary local server started by the session.
    start
        Start now (default); otherwise on first :meth:`submit` or :meth:`start`.
    """

    def __init__(
        self,
        cluster: ClusterSpec | str | os.PathLike[str] | Mapping[str, Any] | None = "local",
        *,
        address: str | None = None,
        api_url: str | None = None,
        start: bool = True,
    ) -> None:
        from flint.prefect.running import resolve_cluster

        self.spec: ClusterSpec = validate_spec({"address": address}, source="address") if address else resolve_cluster(cluster)
        self._api_url_arg = api_url or os.environ.get("PREFECT_API_URL") or None
        self.api_url: str | None = None
        self.server_pid: int | None = None
        self.cluster: Any = None
        self.client: Any = None
        self._stop_server: Callable[[], None] | None = None
        self._handles: list[Any] = []
        self.on_stage: Callable[[str], None] | None = None
        """Called with a short text at each start-up stage (for a notebook's status line)."""
        if start:
            self.start()

    # ------------------------------------------------------------------ life cycle
    @property
    def started(self) -> bool:
        """Whether the server and the cluster are up."""
        return self.client is not None

    @property
    def address(self) -> str:
        """The Dask scheduler's address."""
        if self.client is None:
            raise FlintError("the warm session is not started (call start())")
        return str(self.client.scheduler.address)

    def start(self) -> WarmSession:
        """Start (or connect to) the Prefect API and the Dask cluster; idempotent."""
        if self.started:
            return self
        from flint.prefect.clusters import start_cluster
        from flint.prefect.running import prefect_api, start_temporary_server
        from flint.prefect.server import check_api_reachable

        def stage(text: str) -> None:
            logger.info("warm session: %s", text)
            if self.on_stage is not None:
                self.on_stage(text)

        try:
            if self._api_url_arg:
                stage(f"checking the Prefect API {self._api_url_arg}")
                self.api_url = check_api_reachable(self._api_url_arg)
            else:
                stage("starting a Prefect server (about 10 s)")
                info, self._stop_server = start_temporary_server()
                self.api_url, self.server_pid = info.api_url, info.pid
                logger.info("warm session: Prefect server %s (pid %d)", info.api_url, info.pid)
            # workers (LocalCluster processes, batch jobs) inherit the API URL
            with prefect_api(self.api_url, os.environ.get("PREFECT_API_AUTH_STRING")):
                stage(f"starting the Dask cluster ({self.spec.cluster_class or self.spec.address})")
                self.cluster, self.client = start_cluster(self.spec, api_url=self.api_url)
                if self.cluster is not None and not self.spec.adapt_kwargs:
                    stage("waiting for the first Dask worker")
                    self.client.wait_for_workers(1, timeout=120)
                stage("importing flint and Prefect on the workers")
                self.client.run(_warm_worker)
                import flint.prefect.flows  # noqa: F401  (this process: Prefect, the flows)
        except BaseException:
            self.close()
            raise
        logger.info("warm session: Dask scheduler %s", self.address)
        return self

    def close(self) -> None:
        """Stop what the session started (cluster, temporary server); leave the rest running."""
        for h in self._handles:
            if not h.done():
                logger.warning("warm session closing while flow run %s is still running", h.flow_run_id)
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
        if self._stop_server is not None:
            self._stop_server()
            self._stop_server = None
        self.server_pid = None

    def __enter__(self) -> WarmSession:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.address if self.started else "not started"
        return f"WarmSession(api_url={self.api_url!r}, scheduler={where!r})"

    # ------------------------------------------------------------------ flows
    def submit(self, flow: Any, parameters: Mapping[str, Any] | None = None, /, *, background: bool = True, **params: Any) -> Any:
        """Start ``flow`` (a name or a flow) on the session's server and cluster; returns a FlowHandle.

        Parameters are given as a mapping, as keywords, or both.
        """
        from prefect_dask import DaskTaskRunner

        from flint.prefect.running import submit_flow

        self.start()
        assert self.api_url is not None
        merged = {**dict(parameters or {}), **params}
        runner = DaskTaskRunner(address=self.address)
        if self.on_stage is not None:
            self.on_stage("creating the flow run")
        handle = submit_flow(flow, merged, api_url=self.api_url, runner=runner, background=background)
        self._handles.append(handle)
        return handle

    def run(self, flow: Any, parameters: Mapping[str, Any] | None = None, /, **params: Any) -> Any:
        """Run ``flow`` in the foreground on the session; returns its result."""
        return self.submit(flow, parameters, background=False, **params).result()
