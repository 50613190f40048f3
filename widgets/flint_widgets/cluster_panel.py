"""Start, scale and watch a Dask cluster from a cluster spec.

Start is :func:`flint.prefect.clusters.start_cluster`; the scale and adapt buttons call
``cluster.scale(n)`` / ``cluster.adapt(minimum=, maximum=)``; the numbers come from
:mod:`flint_widgets.cluster_info`. A background thread refreshes the numbers while the
cluster runs, without blocking the kernel.
"""

from __future__ import annotations

import html
import logging
import os
import threading
from pathlib import Path
from typing import Any

from flint.errors import FlintConfigError
from flint.prefect.clusters import ClusterSpec, load_cluster_spec, start_cluster, validate_spec
from flint_widgets._common import ErrorArea, failed_html, guarded, link_html, message_html, pre
from flint_widgets._logs import LogPane, quiet_local_workers
from flint_widgets.cluster_builder import ClusterBuilder, problems_of
from flint_widgets.cluster_info import (
    ClusterCounts,
    DashboardLinks,
    JobState,
    cluster_counts,
    dashboard_links,
    dask_sidebar_html,
    format_bytes,
    job_states,
    link_template,
    tail_text,
)

__all__ = ["ClusterPanel"]

logger = logging.getLogger(__name__)


class ClusterPanel:
    """Start/stop a cluster, scale it, and watch workers, tasks, jobs and the dashboard.

    Parameters
    ----------
    source
        A :class:`ClusterBuilder` (Start follows its validity), a :class:`ClusterSpec`,
        or the path of a cluster YAML file.
    refresh_interval
        Seconds between updates of the live numbers (0: only on :meth:`refresh`).
    jobs_every
        Refresh the batch-job table every this many updates (it calls ``squeue``).

    Attributes
    ----------
    cluster, client
        The running cluster (``None`` for a scheduler address) and its client.
    counts
        The latest :class:`ClusterCounts`.
    links
        The latest :class:`DashboardLinks`.
    jobs
        The latest batch-job states (dask-jobqueue clusters).
    """

    def __init__(
        self,
        source: ClusterBuilder | ClusterSpec | str | os.PathLike[str],
        refresh_interval: float = 1.0,
        jobs_every: int = 5,
    ) -> None:
        import ipywidgets as w

        self.errors = ErrorArea()
        self.builder = source if isinstance(source, ClusterBuilder) else None
        self._fixed_spec: ClusterSpec | None = None
        if isinstance(source, ClusterSpec):
            self._fixed_spec = source
        elif not isinstance(source, ClusterBuilder):
            self._fixed_spec = load_cluster_spec(source)
        self.refresh_interval = refresh_interval
        self.jobs_every = max(1, jobs_every)
        self.cluster: Any = None
        self.client: Any = None
        self.spec: ClusterSpec | None = None
        self.counts: ClusterCounts | None = None
        self.links: DashboardLinks | None = None
        self.jobs: list[JobState] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._ticks = 0
        self._last_refresh_error = ""
        self.adaptive: tuple[int, int] | None = None
        self._link_before: Any = None  # distributed.dashboard.link before Start (put back by Stop)
        self._link_set = False

        self.start_button = w.Button(description="Start", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.start_message = w.HTML()
        self.status = w.HTML(message_html("not running", ok=True))
        self.address = w.Text(description="scheduler", disabled=False, layout=w.Layout(width="420px"))
        self.dashboard = w.HTML()
        self.worker_count = w.HTML("0")
        self.worker_count.add_class("flint-worker-count")
        self.numbers = w.HTML()
        self.scale_n = w.IntText(value=1, description="workers", layout=w.Layout(width="180px"))
        self.scale_button = w.Button(description="Scale", icon="arrows-v", disabled=True)
        self.adapt_min = w.IntText(value=0, description="min", layout=w.Layout(width="150px"))
        self.adapt_max = w.IntText(value=4, description="max", layout=w.Layout(width="150px"))
        self.adapt_button = w.Button(description="Adapt", icon="magic", disabled=True)
        self.adapt_message = w.HTML()
        self.jobs_table = w.HTML()
        self.log_choice = w.Dropdown(options=[], description="log of")
        self.log_button = w.Button(description="Show log", icon="file-text-o", disabled=True)
        self.log_view = w.HTML()
        self.log = LogPane(("distributed", "tornado", "bokeh", "flint.prefect.clusters"), "Dask log of this kernel")

        # CSS classes: selectors for the browser test (tests/browser)
        for widget, css in (
            (self.start_button, "flint-start"), (self.stop_button, "flint-stop"), (self.scale_n, "flint-scale-n"),
            (self.scale_button, "flint-scale"), (self.adapt_button, "flint-adapt"), (self.status, "flint-cluster-status"),
        ):
            widget.add_class(css)
        self.start_button.on_click(guarded(self.errors, "start")(lambda _b: self.start()))
        self.stop_button.on_click(guarded(self.errors, "stop")(lambda _b: self.stop()))
        self.scale_button.on_click(guarded(self.errors, "scale")(lambda _b: self.scale(self.scale_n.value)))
        self.adapt_button.on_click(guarded(self.errors, "adapt")(lambda _b: self.adapt(self.adapt_min.value, self.adapt_max.value)))
        self.log_button.on_click(guarded(self.errors, "log")(lambda _b: self.show_log(self.log_choice.value)))
        for box in (self.adapt_min, self.adapt_max):
            box.observe(guarded(self.errors, "adapt bounds")(lambda _c: self._check_adapt()), names="value")
        if self.builder is not None:
            self.builder.on_change(lambda _b: self._update_buttons())

        self.widget = w.VBox(
            [
                w.HTML("<b>Dask cluster</b>"),
                w.HBox([self.start_button, self.stop_button, self.status]),
                self.start_message,
                self.address,
                self.dashboard,
                w.HBox([w.HTML("workers:&nbsp;"), self.worker_count, w.HTML("&nbsp;·&nbsp;"), self.numbers]),
                w.HBox([self.scale_n, self.scale_button]),
                w.HBox([self.adapt_min, self.adapt_max, self.adapt_button, self.adapt_message]),
                self.jobs_table,
                w.HBox([self.log_choice, self.log_button]),
                self.log_view,
                self.errors.output,
                self.log.widget,
            ]
        )
        self.widget.add_class("flint-cluster-panel")
        self._update_buttons()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        return self.client is not None

    def current_spec(self) -> ClusterSpec | None:
        """The spec Start would use (``None`` while the builder's form has problems)."""
        if self.builder is not None:
            return self.builder.spec
        return self._fixed_spec

    def _update_buttons(self) -> None:
        spec = self.current_spec()
        self.start_button.disabled = self.running or spec is None
        if spec is None and self.builder is not None:
            self.start_message.value = message_html("Start is disabled until the cluster spec above is valid")
        else:
            self.start_message.value = ""
        self.stop_button.disabled = not self.running
        can_scale = self.running and self.cluster is not None
        self.scale_button.disabled = not can_scale
        self.log_button.disabled = not self.running
        self._check_adapt()

    def _check_adapt(self) -> None:
        """Check the adaptive bounds with the spec validator; disable Adapt on a problem."""
        bounds = {"minimum": self.adapt_min.value, "maximum": self.adapt_max.value}
        _, problems = problems_of({"cluster_class": "distributed.LocalCluster", "adapt_kwargs": bounds})
        self.adapt_message.value = message_html("; ".join(problems.values()))
        self.adapt_button.disabled = bool(problems) or not (self.running and self.cluster is not None)

    # ------------------------------------------------------------------ actions

    def start(self) -> tuple[Any, Any]:
        """Start the cluster of the current spec (or connect to its address)."""
        if self.running:
            raise FlintConfigError("a cluster is already running in this panel; Stop it first")
        spec = self.current_spec()
        if spec is None:
            problems = self.builder.problems if self.builder is not None else {}
            raise FlintConfigError(f"the cluster spec has problems ({', '.join(problems)}); fix them before Start")
        spec = validate_spec(spec)
        self.status.value = message_html(f"starting {spec.cluster_class or spec.address} ...", ok=True)
        self.log.attach()
        try:
            self.cluster, self.client = start_cluster(spec)
        except Exception as exc:
            self.status.value = failed_html(exc)
            raise
        try:
            if quiet_local_workers(self.client, self.cluster):
                logger.info("worker processes log to %s (not into the notebook's cells)", self.log.path)
        except Exception as exc:  # the cluster works; its workers' lines may reach the cells
            logger.warning("could not send the workers' log lines to %s: %s", self.log.path, exc)
        self.spec = spec
        self.adaptive = None
        if spec.adapt_kwargs:
            self.adaptive = (int(spec.adapt_kwargs.get("minimum", 0)), int(spec.adapt_kwargs.get("maximum", 0)))
            self.adapt_min.value = int(spec.adapt_kwargs.get("minimum", 0))
            self.adapt_max.value = int(spec.adapt_kwargs.get("maximum", self.adapt_max.value))
        self._show_running()
        self.address.value = str(self.client.scheduler.address)
        self.links = dashboard_links(self.client, self.cluster)
        self._use_proxy_links(self.links)
        self._show_links()
        self._update_buttons()
        self.refresh()
        if self.refresh_interval > 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="flint-cluster-panel", daemon=True)
            self._thread.start()
        return self.cluster, self.client

    def _use_proxy_links(self, links: DashboardLinks) -> None:
        """While the cluster runs, ``client.dashboard_link`` names the dashboard through the proxy.

        That is what dask-labextension's "search" button reads from the notebook's kernel
        (its default client's ``dashboard_link``); :meth:`stop` puts the setting back.
        """
        import dask.config

        if not self._link_set:
            self._link_before = dask.config.get("distributed.dashboard.link", None)
        dask.config.set({"distributed.dashboard.link": link_template(links)})
        self._link_set = True

    def _restore_links(self) -> None:
        import dask.config

        if self._link_set:
            dask.config.set({"distributed.dashboard.link": self._link_before})
            self._link_set = False

    def scale(self, n: int) -> None:
        """Ask for ``n`` workers (stops adaptive scaling, like Dask's own widget)."""
        cluster = self._require_cluster()
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise FlintConfigError(f"workers: must be a whole number >= 0 (got {n!r})")
        adaptive = getattr(cluster, "_adaptive", None)
        if adaptive is not None:
            adaptive.stop()
        cluster.scale(n)
        self.adaptive = None
        self._show_running()
        self.refresh()

    def adapt(self, minimum: int, maximum: int) -> None:
        """Scale adaptively between ``minimum`` and ``maximum`` workers."""
        cluster = self._require_cluster()
        _, problems = problems_of({"cluster_class": "distributed.LocalCluster", "adapt_kwargs": {"minimum": minimum, "maximum": maximum}})
        if problems:
            raise FlintConfigError(f"adapt_kwargs: {'; '.join(problems.values())}")
        cluster.adapt(minimum=minimum, maximum=maximum)
        self.adaptive = (minimum, maximum)
        self._show_running()
        self.refresh()

    def _show_running(self) -> None:
        assert self.spec is not None
        mode = f" · adaptive {self.adaptive[0]}–{self.adaptive[1]} workers" if self.adaptive else ""
        self.status.value = message_html(f"running: {self.spec.cluster_class or 'scheduler'}{mode}", ok=True)

    def stop(self) -> None:
        """Stop the refresh thread, close the client and the cluster."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        client, cluster = self.client, self.cluster
        self.client = self.cluster = None
        try:
            if client is not None:
                client.close()
        finally:
            self._restore_links()
            if cluster is not None:
                cluster.close()
        self.address.value = ""  # a stopped cluster's address must not be picked up
        self.adaptive = None
        self.worker_count.value = "0"
        self.numbers.value = ""
        self.dashboard.value = ""
        self._update_buttons()
        self.status.value = message_html("stopped", ok=True)  # last: the status is what one waits on

    def show_log(self, choice: str | None) -> str:
        """Show the log of a worker (``worker:<address>``) or a batch job (``job:<name>``)."""
        client = self._require_client()
        if not choice:
            raise FlintConfigError("no worker chosen; start some workers and pick one from the list")
        kind, _, ident = choice.partition(":")
        if kind == "job":
            job = next((j for j in self.jobs if j.name == ident), None)
            if job is None or job.log_file is None:
                raise FlintConfigError(f"job {ident}: no log file (set log_directory in the cluster spec)")
            text = tail_text(job.log_file)
        else:
            logs = client.get_worker_logs(n=80, workers=[ident])
            text = "\n".join(f"{level} {msg}" for level, msg in logs.get(ident, []))
            if self.cluster is not None and getattr(self.cluster, "processes", True) is False:
                text = ("(these workers are threads of this kernel: they share one log, so these lines "
                        "are every worker's)\n" + text)
        self.log_view.value = pre(text or "(empty)")
        return text

    # ------------------------------------------------------------------ refresh

    def _require_client(self) -> Any:
        if self.client is None:
            raise FlintConfigError("no cluster is running; press Start first")
        return self.client

    def _require_cluster(self) -> Any:
        self._require_client()
        if self.cluster is None:
            raise FlintConfigError(f"connected to a running scheduler at {self.address.value}; scale it where it was started")
        return self.cluster

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_interval):
            try:
                self.refresh()
            except Exception as exc:  # shown once per distinct message, the loop goes on
                if str(exc) != self._last_refresh_error:
                    self._last_refresh_error = str(exc)
                    self.errors.show(exc, "refresh")

    def refresh(self) -> None:
        """Update the live numbers (and every few calls the batch-job table)."""
        with self._lock:
            client = self.client
            if client is None:
                return
            counts = cluster_counts(client, self.cluster)
            self.counts = counts
            self.worker_count.value = str(counts.workers)
            tasks = ", ".join(f"{n} {s}" for s, n in sorted(counts.tasks.items()) if n) or "none"
            requested = f" (requested {counts.requested})" if counts.requested is not None else ""
            self.numbers.value = (
                f"<span class='flint-cluster-numbers'>{requested} threads: {counts.threads} · "
                f"memory: {format_bytes(counts.memory_bytes)} · tasks: {html.escape(tasks)}</span>"
            )
            if self.spec is not None and self.spec.is_jobqueue and self._ticks % self.jobs_every == 0:
                self.jobs = job_states(self.cluster, client)
                self._show_jobs()
            self._ticks += 1
            self._update_log_choices()
            self.log.flush()

    def _update_log_choices(self) -> None:
        assert self.client is not None
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        options = [(f"worker {w.get('name', addr)}", f"worker:{addr}") for addr, w in sorted(workers.items())]
        options += [(f"job {j.name} ({j.job_id}) log file", f"job:{j.name}") for j in self.jobs if j.log_file]
        if [v for _, v in options] != [v for _, v in self.log_choice.options]:
            current = self.log_choice.value
            self.log_choice.options = options
            values = [v for _, v in options]
            if current in values:
                self.log_choice.value = current
            elif values:
                self.log_choice.value = values[0]  # a worker is chosen: Show log works at once

    def _show_links(self) -> None:
        links = self.links
        if links is None:
            return
        self.dashboard.value = (
            f"Dashboard: {link_html(links.proxy, links.proxy, 'flint-dashboard-link')} (through jupyter-server-proxy) · direct: "
            f"<code>{html.escape(links.direct)}</code><br>"
            f"Attach from code: <code>DaskTaskRunner(address=\"{html.escape(self.address.value)}\")</code><br>"
            f"dask-labextension: {dask_sidebar_html(links)} (or its search button finds <code>{html.escape(links.proxy)}</code>)"
        )

    def _show_jobs(self) -> None:
        if not self.jobs:
            self.jobs_table.value = "<i>no batch jobs</i>"
            return
        rows = "".join(
            f"<tr><td>{html.escape(j.name)}</td><td>{html.escape(j.job_id or '-')}</td>"
            f"<td class='flint-job-state'>{html.escape(j.state)}</td><td>{html.escape(j.reason)}</td>"
            f"<td>{j.connected_workers}</td><td>{html.escape(str(j.log_file or ''))}</td></tr>"
            for j in self.jobs
        )
        self.jobs_table.value = (
            "<table class='flint-jobs'><tr><th>job</th><th>id</th><th>state</th><th>reason</th>"
            f"<th>workers</th><th>log</th></tr>{rows}</table>"
        )

    def log_file_of(self, name: str) -> Path | None:
        """The log file of batch job ``name`` (``None`` when unknown)."""
        return next((j.log_file for j in self.jobs if j.name == name), None)
