"""Submit a flint flow from a notebook and follow it: a table of beams x stages.

Submitting is one call, run in a thread so the kernel is never blocked while a server
starts: :meth:`flint.prefect.warm.WarmSession.submit` for the "warm session" choice (a
Prefect server and the cluster kept between runs), else
:func:`flint.prefect.running.submit_flow`. The table is :meth:`FlowHandle.progress`. The stage options are forms generated from the option
models the strategy file configures (:mod:`flint.strategy`); changed values are written
into a strategy file next to the outputs and passed to the flow.
"""

from __future__ import annotations

import html
import inspect
import logging
import os
import threading
import typing
from pathlib import Path
from typing import Any

from flint.errors import FlintConfigError, FlintError
from flint.io import atomic_write_text
from flint_widgets._common import ErrorArea, failed_html, guarded, link_html, message_html, one_line
from flint_widgets._logs import LogPane, capture_logs, quiet_local_workers, run_line

__all__ = ["FlowLauncher", "FLOW_TOOLS", "flow_parameters", "parse_parameter", "write_strategy", "progress_table_html", "cancel_flow_run", "flow_run_url",
           "task_run_log_lines"]

logger = logging.getLogger(__name__)

#: file written into out_dir when a run is cancelled (the results browser shows it)
CANCELLED_MARKER = "FLINT_RUN_CANCELLED.txt"

#: flow -> the strategy tools (option models) its stages use
FLOW_TOOLS: dict[str, tuple[str, ...]] = {
    "bandpass": ("bandpass",),  # its flagging rounds are BandpassOptions fields
    "continuum": ("apply", "flagging", "wsclean", "selfcal", "convol", "linmos", "source_finding", "validation"),
    "line": ("wsclean", "linmos"),  # the cubes start from the last round's wsclean options
    "polarisation": ("wsclean", "linmos"),  # IQUV cubes from the last round's wsclean options; linmos (+ --pb-cube)
    "probe": (),
}
_ENV_KEYS = ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")
_STATE_COLOURS = {
    "Completed": "#c8e6c9", "Running": "#bbdefb", "Pending": "#eeeeee", "Scheduled": "#eeeeee",
    "Failed": "#ffcdd2", "Crashed": "#ffcdd2", "Cancelled": "#ffe0b2", "Cancelling": "#ffe0b2",
    "Cached": "#dcedc8", "Retrying": "#fff9c4", "AwaitingRetry": "#fff9c4",
}


def flow_parameters(flow_name: str) -> dict[str, tuple[Any, Any]]:
    """Parameter name -> (type, default) of a flow (``strategy`` excluded: the strategy forms set it)."""
    from flint.prefect.running import get_flow

    fn = get_flow(flow_name).fn
    hints = typing.get_type_hints(fn)
    out: dict[str, tuple[Any, Any]] = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name == "strategy":
            continue
        out[name] = (hints.get(name, str), None if p.default is inspect.Parameter.empty else p.default)
    return out


def parse_parameter(kind: Any, text: str, default: Any = None) -> Any:
    """Form text -> a flow parameter value of type ``kind`` (lists: commas or new lines)."""
    text = text.strip()
    if not text:
        return default
    spelled = str(kind)
    items = [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]
    if "list[int]" in spelled:
        try:
            return [int(t) for t in items]
        except ValueError:
            raise FlintConfigError(f"{text!r}: give whole numbers separated by commas, e.g. 0, 1, 2") from None
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    if "list[str]" in spelled and len(items) > 1:
        return items
    return text


def write_strategy(path: str | os.PathLike[str], base: str | None, tool_values: dict[str, dict[str, Any]]) -> Path:
    """Write ``base`` (a strategy file, ``None``: the packaged default) with ``tool_values`` in its defaults.

    The result is validated (:func:`flint.strategy.parse_strategy`) before it is written.
    """
    from flint.strategy import load_strategy, parse_strategy

    strategy = load_strategy(base or None)
    data = strategy.as_dict()
    for tool, values in tool_values.items():
        if values:
            data["defaults"].setdefault(tool, {}).update(values)
    checked = parse_strategy(data, source=os.fspath(path))
    return atomic_write_text(Path(path), checked.to_yaml())


def progress_table_html(progress: dict[Any, dict[str, str]]) -> str:
    """An HTML table of ``{beam: {stage: state}}`` (rows: beams and the mosaic, columns: stages)."""
    if not progress:
        return "<i>no task has started yet</i>"
    stages: list[str] = []
    for per in progress.values():
        for s in per:
            if s not in stages:
                stages.append(s)
    keys = sorted(progress, key=lambda k: (isinstance(k, str), k if isinstance(k, int) else 0, str(k)))
    head = "".join(f"<th>{html.escape(s)}</th>" for s in stages)
    rows = []
    for k in keys:
        label = f"beam {k:02d}" if isinstance(k, int) else str(k)
        cells = []
        for s in stages:
            state = progress[k].get(s, "")
            colour = _STATE_COLOURS.get(state, "transparent")
            cells.append(f"<td class='flint-state' data-state='{html.escape(state)}' style='background:{colour}'>{html.escape(state)}</td>")
        rows.append(f"<tr><th>{html.escape(label)}</th>{''.join(cells)}</tr>")
    return f"<table class='flint-progress'><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def flow_run_url(api_url: str, flow_run_id: Any) -> str:
    """The Prefect UI page of a flow run served by the server at ``api_url`` (through jupyter-server-proxy when flint started it in Jupyter)."""
    from flint.prefect.running import prefect_ui_url

    return prefect_ui_url(api_url, flow_run_id)


def cancel_flow_run(handle: Any) -> None:
    """Cancel a flow run (:meth:`FlowHandle.cancel`: no task starts, programs killed, ends Cancelled)."""
    cancel = getattr(handle, "cancel", None)
    if callable(cancel):
        cancel()
        return
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    from flint.prefect.running import prefect_api

    with prefect_api(handle.api_url, getattr(handle, "_auth", None)), get_client(sync_client=True) as client:
        client.set_flow_run_state(handle.flow_run_id, Cancelled(message="cancelled from the flint launcher"), force=True)


def task_run_log_lines(handle: Any, after: Any = None, names: dict[Any, str] | None = None) -> list[tuple[Any, Any, str, int]]:
    """``(id, timestamp, line, level)`` of the run's task-run log records on its Prefect API, oldest first.

    Task runs execute on the Dask workers (other processes, other hosts); their lines reach
    this kernel only through the Prefect API. ``after``: only records from then on (a
    datetime); ``names``: task run id -> name, completed from the API when a record's task
    run is not in it.
    """
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTimestamp
    from prefect.client.schemas.sorting import LogSort

    from flint.prefect.running import prefect_api

    names = {} if names is None else names
    flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[handle.flow_run_id]))
    if after is not None:
        flt.timestamp = LogFilterTimestamp(after_=after)
    with prefect_api(handle.api_url, getattr(handle, "_auth", None)), handle._client() as client:
        logs = [log for log in client.read_logs(log_filter=flt, sort=LogSort.TIMESTAMP_ASC, limit=200, offset=0)
                if log.task_run_id is not None]
        if any(log.task_run_id not in names for log in logs):
            names.update({run.id: run.name for run in handle._task_runs()})
    out = []
    for log in logs:  # the flow run's own lines come from this kernel's logging
        local = log.timestamp.astimezone()  # the kernel's own lines are in local time
        line = run_line(f"{local:%H:%M:%S}", int(log.level), log.name, log.message, names.get(log.task_run_id, "?"))
        out.append((log.id, log.timestamp, line, int(log.level)))
    return out


class FlowLauncher:
    """Choose a flow, its inputs, options, cluster and Prefect API; submit; follow; cancel.

    Parameters
    ----------
    panel
        A :class:`~flint_widgets.cluster_panel.ClusterPanel` whose running cluster can be used.
    flow
        Initial flow: ``"bandpass"`` or ``"continuum"`` (``"probe"``: a stand-in flow).
    poll_interval
        Seconds between updates of the progress table.
    """

    def __init__(self, panel: Any = None, flow: str = "bandpass", poll_interval: float = 2.0) -> None:
        import ipywidgets as w

        self.errors = ErrorArea()
        self.panel = panel
        self.poll_interval = poll_interval
        self.handle: Any = None
        self.result: Any = None
        self.progress: dict[Any, dict[str, str]] = {}
        self.state = ""
        self._submit_thread: threading.Thread | None = None
        self._poll_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._results_listeners: list[Any] = []
        self.session: Any = None  # the WarmSession of the "warm session" Prefect API choice
        self._session_key: str | None = None
        self._session_lock = threading.Lock()
        self._cancel_thread: threading.Thread | None = None
        # what close() puts back: the Prefect environment as it was before this launcher
        self._env_before = {k: os.environ.get(k) for k in _ENV_KEYS}

        self.flow = w.Dropdown(options=list(FLOW_TOOLS), value=flow, description="flow")
        self.param_box = w.VBox()
        self.params: dict[str, Any] = {}
        self._param_types: dict[str, tuple[Any, Any]] = {}
        self.strategy_path = w.Text(description="strategy", placeholder="(packaged default)", layout=w.Layout(width="60%"))
        self.strategy_load = w.Button(description="Load strategy", icon="folder-open")
        self.options_box = w.Accordion()
        self.option_forms: dict[str, Any] = {}
        cluster_options = [("YAML file / preset", "yaml")]
        if panel is not None:
            cluster_options.insert(0, ("the cluster panel's running cluster", "panel"))
        self.cluster_choice = w.Dropdown(options=cluster_options, description="cluster", style={"description_width": "100px"},
                                         layout=w.Layout(width="45%"))
        self.cluster_yaml = w.Text(value="local", description="YAML", placeholder="local, slurm or a path")
        self.api_choice = w.Dropdown(
            options=[
                ("warm session: server + cluster kept while this launcher lives", "local"),
                ("temporary server per run (or $PREFECT_API_URL)", "temporary"),
                ("Prefect server URL", "url"),
            ],
            description="Prefect API",
            style={"description_width": "100px"},
            layout=w.Layout(width="60%"),
        )
        self.api_url = w.Text(description="URL", placeholder="http://host:4200/api")
        self.submit_button = w.Button(description="Submit", button_style="primary", icon="rocket")
        self.cancel_button = w.Button(description="Cancel", button_style="warning", icon="times", disabled=True)
        self.status = w.HTML()
        self.status.add_class("flint-flow-status")
        self.link = w.HTML()
        self.table = w.HTML()
        self.table.add_class("flint-progress-table")
        self.log = LogPane(("prefect", "flint", "httpx"), "flow log")
        self._log_ids: set[Any] = set()
        self._log_after: Any = None
        self._task_names: dict[Any, str] = {}

        self.flow.add_class("flint-flow-choice")
        self.cluster_choice.add_class("flint-cluster-choice")
        self.cluster_yaml.add_class("flint-cluster-yaml")
        self.submit_button.add_class("flint-submit")
        self.cancel_button.add_class("flint-cancel")
        self.flow.observe(guarded(self.errors, "flow")(lambda _c: self._build_forms()), names="value")
        self.strategy_load.on_click(guarded(self.errors, "strategy")(lambda _b: self._build_forms()))
        self.cluster_choice.observe(lambda _c: self._show_choices(), names="value")
        self.api_choice.observe(lambda _c: self._show_choices(), names="value")
        self.submit_button.on_click(guarded(self.errors, "submit")(lambda _b: self.submit()))
        self.cancel_button.on_click(guarded(self.errors, "cancel")(lambda _b: self.cancel()))

        self.widget = w.VBox(
            [
                w.HTML("<b>Flow launcher</b>"),
                self.flow,
                self.param_box,
                w.HBox([self.strategy_path, self.strategy_load]),
                self.options_box,
                w.HBox([self.cluster_choice, self.cluster_yaml]),
                w.HBox([self.api_choice, self.api_url]),
                w.HBox([self.submit_button, self.cancel_button, self.status]),
                self.link,
                self.table,
                self.errors.output,
                self.log.widget,
            ]
        )
        self.widget.add_class("flint-launcher")
        self._build_forms()
        self._show_choices()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ forms

    def _show_choices(self) -> None:
        self.cluster_yaml.layout.display = "" if self.cluster_choice.value == "yaml" else "none"
        self.api_url.layout.display = "" if self.api_choice.value == "url" else "none"

    def _build_forms(self) -> None:
        import ipywidgets as w

        from flint.strategy import load_strategy, tool_options_class
        from flint_widgets.options_form import OptionsForm

        name = self.flow.value
        old = {k: c.value for k, c in self.params.items()}
        self._param_types = flow_parameters(name)
        self.params = {}
        for pname, (kind, default) in self._param_types.items():
            if kind is bool:  # a switch, e.g. the continuum flow's already_calibrated (CASDA data)
                c = w.Checkbox(value=bool(old.get(pname, default)), description=pname, indent=False)
                c.add_class(f"flint-param-{pname}")
                self.params[pname] = c
                continue
            spelled = str(kind)
            hint = "comma-separated beam numbers (empty: all)" if "list[int]" in spelled else ("a folder or paths" if "list[str]" in spelled else "")
            c = w.Text(value=old.get(pname, "" if default is None else str(default)), description=pname, placeholder=hint,
                       layout=w.Layout(width="70%"), style={"description_width": "100px"})
            c.add_class(f"flint-param-{pname}")
            self.params[pname] = c
        self.param_box.children = list(self.params.values())
        if "already_calibrated" in self.params and "solutions" in self.params:
            calibrated, solutions = self.params["already_calibrated"], self.params["solutions"]
            calibrated.description = "already calibrated (no solutions, no apply)"
            calibrated.style = {"description_width": "initial"}

            def follow(_c: Any = None) -> None:
                solutions.layout.display = "none" if calibrated.value else ""

            calibrated.observe(follow, names="value")
            follow()

        strategy = load_strategy(self.strategy_path.value.strip() or None)
        self.option_forms = {}
        children, titles = [], []
        for tool in FLOW_TOOLS[name]:
            try:
                model = tool_options_class(tool)
            except FlintError as exc:
                logger.warning("no options form for %s: %s", tool, exc)
                continue
            # the strategy's defaults (per-round overrides stay as the file has them)
            values = {k: v for k, v in strategy.defaults.get(tool, {}).items() if k in model.model_fields}
            form = OptionsForm(model, values)
            self.option_forms[tool] = form
            children.append(form.widget)
            titles.append(f"{tool} options ({model.__name__})")
        self.options_box.children = children
        for i, t in enumerate(titles):
            self.options_box.set_title(i, t)
        self.options_box.selected_index = None

    def set_params(self, **values: Any) -> None:
        """Type flow parameters into the form (``beams=[0, 1]`` is written as ``0, 1``)."""
        for k, v in values.items():
            if k not in self.params:
                raise FlintConfigError(f"the {self.flow.value} flow has no parameter {k!r}; it takes {', '.join(self.params)}")
            if isinstance(self.params[k].value, bool):
                self.params[k].value = bool(v)
                continue
            self.params[k].value = ", ".join(map(str, v)) if isinstance(v, list | tuple) else str(v)

    def parameters(self) -> dict[str, Any]:
        """The flow parameters the form describes (strategy included when options were changed)."""
        out: dict[str, Any] = {}
        for name, c in self.params.items():
            kind, default = self._param_types[name]
            if kind is bool:
                out[name] = bool(c.value)
                continue
            if name == "solutions" and bool(getattr(self.params.get("already_calibrated"), "value", False)):
                out[name] = None  # already-calibrated data take no solutions (the field is hidden)
                continue
            value = parse_parameter(kind, c.value, default)
            if value is None and default is None and "None" not in str(kind):
                raise FlintConfigError(f"{name}: required; type a value")
            out[name] = value
        problems = {t: f.problem for t, f in self.option_forms.items() if not f.check()}
        if problems:
            raise FlintConfigError("; ".join(f"{t} options: {p}" for t, p in problems.items()))
        changed = {t: f.changed() for t, f in self.option_forms.items()}
        base = self.strategy_path.value.strip() or None
        if "strategy" in inspect.signature(self._flow_fn()).parameters:
            if any(changed.values()) and out.get("out_dir"):
                out["strategy"] = os.fspath(write_strategy(Path(out["out_dir"]) / f"{self.flow.value}.strategy.yaml", base, changed))
            elif base:
                out["strategy"] = base
        return out

    def _flow_fn(self) -> Any:
        from flint.prefect.running import get_flow

        return get_flow(self.flow.value).fn

    def cluster(self) -> Any:
        """The cluster spec for the run: the panel's scheduler address, or a YAML file / preset."""
        from flint.prefect.clusters import validate_spec
        from flint.prefect.running import resolve_cluster

        if self.cluster_choice.value == "panel":
            if self.panel is None or not self.panel.running:
                raise FlintConfigError("the cluster panel has no running cluster; press Start there, or choose a YAML file")
            return validate_spec({"address": self.panel.address.value}, source="cluster panel")
        return resolve_cluster(self.cluster_yaml.value.strip() or "local")

    def api(self) -> str | None:
        """The Prefect API URL the form names (``None``: the warm session's or a temporary server)."""
        if self.api_choice.value == "url":
            url = self.api_url.value.strip()
            if not url.startswith(("http://", "https://")):
                raise FlintConfigError(f"Prefect API URL {url!r}: give e.g. http://127.0.0.1:4200/api")
            return url
        return None

    def warm_session(self, cluster: Any) -> Any:
        """The launcher's :class:`~flint.prefect.warm.WarmSession` for ``cluster`` (slow the first time: call in a thread).

        One session (a Prefect server and the Dask cluster, or the panel's scheduler) serves
        every run while the cluster choice stays the same; another cluster gets a new session.
        """
        from flint.prefect.warm import WarmSession

        key = cluster.to_yaml()
        with self._session_lock:
            if self.session is not None and key != self._session_key:
                self.session.close()
                self.session = None
            if self.session is None:
                session = WarmSession(address=cluster.address, start=False) if cluster.address else WarmSession(cluster, start=False)
                session.on_stage = self._stage
                self.session = session.start()
                self._session_key = key
                if quiet_local_workers(session.client, session.cluster):
                    logger.info("worker processes log to %s (not into the notebook's cells)", self.log.path)
            return self.session

    def _stage(self, text: str) -> None:
        """Show what the first submit is doing (server, cluster, workers...)."""
        self.status.value = message_html(f"{self.flow.value}: {text} …", ok=True)

    def close(self) -> None:
        """Cancel a run still going, close the warm session and put the environment back.

        Afterwards the launcher is as new: the next Submit starts a fresh session, and no
        ``PREFECT_API_URL`` of a stopped server is left in ``os.environ`` (workers, job scripts).
        """
        if self.handle is not None and not self.handle.done():
            logger.warning("closing the launcher: cancelling flow run %s", self.handle.flow_run_id)
            cancel_flow_run(self.handle)
        self._stop.set()
        for thread in (self._submit_thread, self._cancel_thread):
            if thread is not None:
                thread.join(timeout=30)
        with self._session_lock:
            if self.session is not None:
                self.session.close()
            self.session = self._session_key = None
        for key, value in self._env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.handle, self.state = None, ""
        self.cancel_button.disabled = True
        self.submit_button.disabled = False
        self.status.value = message_html("closed: the next Submit starts a new Prefect server and cluster", ok=True)
        self.log.close()

    # ------------------------------------------------------------------ run

    def submit(self) -> None:
        """Check everything, then submit the flow in a background thread (the kernel stays free)."""
        if self._submit_thread is not None and self._submit_thread.is_alive():
            raise FlintConfigError("a flow is being submitted; wait for it")
        if self.handle is not None and not self.handle.done():
            raise FlintConfigError("a flow run is still going; Cancel it or wait")
        self.api()  # a bad URL or a missing cluster is reported before anything is written
        cluster = self.cluster()
        params = self.parameters()
        flow_name = self.flow.value
        self.handle, self.result, self.progress, self.state = None, None, {}, "Submitting"
        self.log.attach()  # again after close(): this run's lines go to the pane
        self._log_ids, self._log_after, self._task_names = set(), None, {}
        self.status.value = message_html(f"{flow_name}: submitting …", ok=True)
        self.table.value = ""
        self.link.value = ""
        self.errors.clear()
        self._stop.clear()
        self._submit_thread = threading.Thread(target=self._submit_in_thread, args=(flow_name, params, cluster), daemon=True)
        self._submit_thread.start()

    def _submit_in_thread(self, flow_name: str, params: dict[str, Any], cluster: Any) -> None:
        from flint.prefect.running import submit_flow

        try:
            if self.api_choice.value == "local":
                handle = self.warm_session(cluster).submit(flow_name, params)
            else:
                handle = submit_flow(flow_name, params, cluster=cluster, api_url=self.api())
        except Exception as exc:
            self.state = "Failed to submit"
            self.errors.show(exc, "submit")  # before the status line: the status is what one waits on
            self.status.value = failed_html(exc)
            return
        self.handle = handle
        capture_logs()  # Prefect (imported by now) installed its console handler: route it to the pane
        self.cancel_button.disabled = False
        self.status.value = message_html(f"{flow_name}: submitted", ok=True)
        url = flow_run_url(handle.api_url, handle.flow_run_id)
        temp = self.api_choice.value == "temporary" and not self._env_before.get("PREFECT_API_URL")
        self.link.value = (
            f"flow run <code>{handle.flow_run_id}</code>"
            + ("" if temp else " · " + link_html(url, "open in the Prefect UI", "flint-prefect-link"))
        )
        self._poll_loop()

    def _poll_loop(self) -> None:
        last_error = ""
        while True:
            done = self.handle.done()
            try:
                self.refresh()
            except Exception as exc:  # shown once per distinct message; polling goes on
                if str(exc) != last_error:
                    last_error = str(exc)
                    self.errors.show(exc, "progress update")
            self._pull_task_logs()
            if done or self._stop.wait(self.poll_interval):
                break
        self._finish()

        def tail() -> None:  # the workers send their lines to the API in batches (every ~2 s)
            for delay in (2.0, 3.0, 5.0):
                if self._stop.wait(delay) or self.handle is not handle:
                    return
                self._pull_task_logs(final=True)

        handle = self.handle
        threading.Thread(target=tail, name="flint-log-tail", daemon=True).start()

    def _pull_task_logs(self, final: bool = False) -> None:
        """Add the run's new task-run lines (from the Prefect API) to the log pane."""
        import datetime

        handle = self.handle
        if handle is None:
            return
        try:
            lines = task_run_log_lines(handle, self._log_after, self._task_names)
        except Exception as exc:  # the pane says so; a temporary server may be gone after the run
            if not final:  # once per distinct problem
                self.log.add(f"(the task-run lines could not be read from the Prefect API: {one_line(exc)})", logging.WARNING, once=True)
            self.log.flush()
            return
        for log_id, stamp, line, level in lines:
            if log_id not in self._log_ids:
                self._log_ids.add(log_id)
                self.log.add(line, level, once=True)  # thread workers: this kernel logged it too
            # records of several workers arrive out of order: look back a little each time
            self._log_after = max(self._log_after or stamp, stamp - datetime.timedelta(seconds=30))
        self.log.flush()

    def refresh(self) -> None:
        """Update the state and the beams x stages table from the Prefect API."""
        handle = self.handle
        if handle is None:
            return
        self.progress = handle.progress()
        state = handle.state()
        self.table.value = progress_table_html(self.progress)
        cancelling = self._cancel_thread is not None and self._cancel_thread.is_alive()
        if getattr(handle, "cancel_requested", False) and (cancelling or not handle.done()):
            state = "Cancelling"  # until nothing of the run is running
        self.state = state
        if state in ("Completed", "Failed", "Crashed", "Cancelled"):
            self.cancel_button.disabled = True  # nothing left to cancel (before _finish's last word)
        if state in ("Failed", "Crashed"):
            self.status.value = failed_html(f"{handle.flow_name} {state}")
        else:
            self.status.value = message_html(f"{handle.flow_name}: {state}", ok=state not in ("Cancelling", "Cancelled"))

    def _finish(self) -> None:
        handle = self.handle
        if handle is None:
            return
        self.cancel_button.disabled = True
        if getattr(handle, "cancel_requested", False):
            if self._cancel_thread is not None:
                self._cancel_thread.join(timeout=120)
            self.state = "Cancelled"
            self.status.value = message_html(f"{handle.flow_name}: Cancelled", ok=False)
            self._mark_cancelled(handle)
            return
        try:
            self.result = handle.result(timeout=0)
        except Exception as exc:
            self.state = "Failed"
            self.errors.show(exc, f"{handle.flow_name} flow")
            self.status.value = failed_html(exc)
            return
        self.state = "Completed"
        self.errors.clear()  # the run worked: earlier errors no longer describe the state
        self.status.value = message_html(f"{handle.flow_name}: Completed", ok=True)
        for callback in self._results_listeners:
            guarded(self.errors, "results")(callback)(self)

    def on_complete(self, callback: Any) -> None:
        """Call ``callback(launcher)`` when a run completes (e.g. to list its products)."""
        self._results_listeners.append(callback)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the submitted run finished and the table shows its end; ``False`` on timeout."""
        import time

        end = None if timeout is None else time.monotonic() + timeout
        for thread_name in ("_submit_thread",):
            t = getattr(self, thread_name)
            if t is not None:
                t.join(None if end is None else max(0.0, end - time.monotonic()))
                if t.is_alive():
                    return False
        return True

    def cancel(self) -> None:
        """Cancel the running flow run in a background thread.

        The status reads "cancelling" until nothing of the run is running (no task starts,
        its external programs are killed), then "Cancelled", and stays so.
        """
        handle = self.handle
        if handle is None or handle.done():
            raise FlintConfigError("no flow run is going; nothing to cancel")
        self.cancel_button.disabled = True
        self.state = "Cancelling"
        self.status.value = message_html(f"{handle.flow_name}: cancelling …", ok=False)

        def run() -> None:
            try:
                cancel_flow_run(handle)
            except Exception as exc:
                self.errors.show(exc, "cancel")

        self._cancel_thread = threading.Thread(target=run, name="flint-cancel", daemon=True)
        self._cancel_thread.start()

    def _mark_cancelled(self, handle: Any) -> None:
        """Leave a note in the run's out_dir: its products are those of a cancelled run."""
        out_dir = self.params.get("out_dir")
        if out_dir is None or not out_dir.value.strip() or not Path(out_dir.value).expanduser().is_dir():
            return
        atomic_write_text(Path(out_dir.value).expanduser() / CANCELLED_MARKER,
                          f"flow run {handle.flow_run_id} ({handle.flow_name}) was cancelled; products here are incomplete\n")
