"""Cluster panel against a real LocalCluster: start, scale, adapt, counts, logs, dashboard, errors."""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flint_widgets._common import ErrorArea, guarded
from flint_widgets.cluster_builder import ClusterBuilder
from flint_widgets.cluster_panel import ClusterPanel


def _wait(cond: object, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def panel() -> Iterator[ClusterPanel]:
    b = ClusterBuilder()
    # threads of this process: cheap on a 2-core CI machine. The memory limit is checked
    # against this whole (pytest) process, which grows past 500 MB in a full run, so it
    # must be generous or the worker pauses itself.
    b.set_values(n_workers="1", threads_per_worker="1", processes=False, memory_limit="16GB")
    b.extra.value = "dashboard_address: '127.0.0.1:0'\nprotocol: tcp"
    p = ClusterPanel(b, refresh_interval=0.3)
    yield p
    if p.running:
        p.stop()


def test_start_scale_adapt_and_stop_a_real_local_cluster(panel: ClusterPanel) -> None:
    assert panel.scale_button.disabled and panel.stop_button.disabled
    panel.start_button.click()
    assert panel.errors.text == ""
    assert panel.running and panel.cluster is not None
    assert panel.address.value.startswith("tcp://127.0.0.1:")
    assert panel.start_button.disabled and not panel.stop_button.disabled
    assert panel.worker_count.value == "1" and panel.counts is not None and panel.counts.threads == 1
    assert panel.counts.memory_bytes == 16_000_000_000

    panel.scale_n.value = 2
    panel.scale_button.click()
    assert panel.errors.text == ""
    # the refresh thread (not the test) updates the count
    assert _wait(lambda: panel.worker_count.value == "2"), panel.worker_count.value
    assert len(panel.client.scheduler_info()["workers"]) == 2
    assert "threads: 2" in panel.numbers.value

    # work shows up in the task counts and runs on the cluster
    fut = panel.client.submit(sum, [1, 2, 3])
    assert fut.result(timeout=10) == 6
    assert _wait(lambda: panel.counts is not None and panel.counts.tasks.get("memory", 0) >= 1, 10)

    panel.adapt_min.value, panel.adapt_max.value = 1, 3
    assert not panel.adapt_button.disabled
    panel.adapt_button.click()
    adaptive = panel.cluster._adaptive
    assert adaptive is not None and adaptive.minimum == 1 and adaptive.maximum == 3

    cluster = panel.cluster
    panel.stop_button.click()
    assert not panel.running and panel.worker_count.value == "0"
    assert str(cluster.status.name) == "closed"
    assert not panel.start_button.disabled


def test_adapt_max_below_min_disables_adapt(panel: ClusterPanel) -> None:
    panel.start()
    panel.adapt_min.value, panel.adapt_max.value = 4, 2
    assert panel.adapt_button.disabled
    assert "larger than maximum" in panel.adapt_message.value
    panel.adapt_button.click()  # even when clicked from code, nothing changes
    assert panel.cluster._adaptive is None
    assert "adapt_kwargs" in panel.errors.text


def test_dashboard_link_through_the_proxy_and_worker_log(panel: ClusterPanel) -> None:
    # the workers are threads of this process: their log is what the "distributed" loggers of
    # this process emit. Other tests run `flint` CLIs in-process, which quiet those loggers to
    # WARNING; give them distributed's own default (INFO) for this test.
    quiet = logging.getLogger("distributed")
    saved = quiet.level
    quiet.setLevel(logging.INFO)
    try:
        _check_dashboard_and_log(panel)
    finally:
        quiet.setLevel(saved)


def _check_dashboard_and_log(panel: ClusterPanel) -> None:
    panel.start()
    links = panel.links
    assert links is not None
    assert links.proxy == f"/proxy/{links.port}/status"
    assert f"href='/proxy/{links.port}/status'" in panel.dashboard.value
    assert panel.address.value in panel.dashboard.value  # for DaskTaskRunner(address=...)
    with urllib.request.urlopen(links.direct, timeout=10) as r:  # the dashboard the proxy forwards to
        assert r.status == 200 and b"Dask" in r.read()
    assert _wait(lambda: len(panel.log_choice.options) == 1)
    assert panel.log_choice.value == panel.log_choice.options[0][1]  # the first worker is chosen already
    panel.log_button.click()
    assert "distributed.worker" in panel.log_view.value


def test_callback_errors_are_shown_not_swallowed() -> None:
    p = ClusterPanel(ClusterBuilder(), refresh_interval=0)
    p.scale_button.click()  # not running
    assert "scale: no cluster is running; press Start first" in p.errors.text
    p.log_button.click()
    assert "log: no cluster is running" in p.errors.text

    area = ErrorArea()

    @guarded(area, "boom")
    def callback() -> None:
        raise ZeroDivisionError("division by zero in a callback")

    callback()
    assert isinstance(area.last_error, ZeroDivisionError)
    assert "boom: ZeroDivisionError: division by zero in a callback" in area.text
    assert "Traceback" in area.text  # unexpected errors keep their traceback
    area.clear()
    assert area.text == "" and area.last_error is None


def test_dask_labextension_finds_the_panels_dashboard_through_the_proxy(panel: ClusterPanel) -> None:
    """What dask-labextension's search button runs in the kernel names the proxy link; the buttons carry it."""
    import json
    from html import unescape

    import dask.config

    before = dask.config.get("distributed.dashboard.link")
    panel.start()
    links = panel.links
    assert links is not None
    # the code dask-labextension 7 sends to the notebook's kernel (Private.checkKernel)
    from dask.distributed import default_client as _internal_jlab_default_client

    found = str(_internal_jlab_default_client().dashboard_link).replace("'", "").split("status")[0]
    assert found == f"/proxy/{links.port}/"
    # the panel's one-click buttons run dask-labextension's own commands with that URL
    page = unescape(panel.dashboard.value)
    for command in ("dask:populate-dashboard-url", "dask:populate-and-launch-layout"):
        assert f"data-commandlinker-command='{command}'" in page
    args = page.split("data-commandlinker-args='")[1].split("'")[0]
    assert json.loads(args) == {"url": links.proxy}
    panel.stop()
    assert dask.config.get("distributed.dashboard.link") == before  # Stop puts the setting back
    assert panel.dashboard.value == ""


def test_worker_processes_log_to_the_file_not_to_the_kernels_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A LocalCluster's worker processes share the kernel's stderr (ipykernel copies it into cells)."""
    from distributed import Client, LocalCluster

    from flint_widgets._logs import quiet_local_workers

    monkeypatch.setenv("FLINT_LOG_DIR", str(tmp_path))

    def log_on_worker() -> list[str]:
        logging.getLogger("prefect.task_runs").info("a line of a task run")
        return [f"{type(h).__name__}:{getattr(getattr(h, 'stream', None), 'name', '')}" for h in logging.getLogger().handlers]

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        assert quiet_local_workers(client, cluster)
        handlers = next(iter(client.run(log_on_worker).values()))
    assert not any(h.endswith(("<stderr>", "<stdout>")) for h in handlers), handlers
    text = "".join(p.read_text() for p in tmp_path.glob("notebook-*.log"))
    assert "prefect.task_runs" in text and "a line of a task run" in text
    # thread workers are this process: nothing to do
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        assert not quiet_local_workers(client, cluster)
