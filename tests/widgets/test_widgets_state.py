"""The widgets' state tells the truth (issue 12), checked without a browser.

- "✓ valid" means Start will not fail: switching platform translates or drops keywords;
- typing creates no folder (dask-jobqueue creates log_directory when it builds a job);
- a failed action says "failed: <one line>", the latest error first, traceback folded;
  a successful action clears old errors;
- ``prefect_api`` blocks overlapping in two threads leave the environment as it was
  (the leak behind "submit after close fails");
- Prefect's drain called inside a running event loop leaves no un-awaited coroutine;
- the servers flint starts tell their UI their own API URL (not port 4200), and inside
  Jupyter serve it behind jupyter-server-proxy.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import threading
import urllib.request
import warnings
from pathlib import Path

import pytest

from flint.errors import FlintConfigError
from flint_widgets._common import ErrorArea, guarded
from flint_widgets.cluster_builder import ClusterBuilder, problems_of, translate_kwargs
from flint_widgets.cluster_panel import ClusterPanel


def test_switching_platform_translates_keys_so_start_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    b = ClusterBuilder()
    b.extra.value = "dashboard_address: '127.0.0.1:0'\nprotocol: tcp\nthreads_per_worker_typo: 3"
    b.platform.value = "SLURM"
    assert b.preset.value == "slurm"  # the preset box follows the platform
    note = b.platform_note.value
    assert "dashboard_address moved into scheduler_options" in note and "dropped threads_per_worker_typo" in note
    assert b.valid, b.problems
    assert b.spec is not None
    kwargs = b.spec.cluster_kwargs
    assert kwargs["scheduler_options"] == {"dashboard_address": "127.0.0.1:0"} and kwargs["protocol"] == "tcp"
    # what Start does with it: the class accepts every keyword (no jobs are submitted here)
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(**kwargs)
    cluster.close()
    # and back: scheduler_options.dashboard_address becomes LocalCluster's own keyword
    b.platform.value = "Local"
    assert b.valid and b.spec is not None and b.spec.cluster_kwargs["dashboard_address"] == "127.0.0.1:0"
    assert "scheduler_options" not in b.spec.cluster_kwargs


def test_jobqueue_refused_keywords_are_a_problem_not_valid() -> None:
    b = ClusterBuilder(platform="SLURM")
    b.extra.value = "dashboard_address: ':8787'"
    assert not b.valid
    assert "scheduler_options" in b.problems["dashboard_address"]
    assert "valid" not in b.status.value and "problem" in b.status.value
    out, notes = translate_kwargs({"host": "10.0.0.1", "cores": 1}, "dask_jobqueue.PBSCluster")
    assert out == {"scheduler_options": {"host": "10.0.0.1"}, "cores": 1} and notes == ["host moved into scheduler_options"]


def test_typing_a_log_dir_creates_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    b = ClusterBuilder(platform="SLURM")
    for typed in ("l", "lo", "log", "logs"):
        b.set_values(log_directory=typed)
    assert b.valid
    assert "#SBATCH -e logs/" in b.script_preview.value  # the preview still names the folder
    b.load("slurm")  # the SLURM preset names flint_logs/slurm
    assert "flint_logs/slurm" in b.script_preview.value
    assert list(tmp_path.iterdir()) == []


def test_negative_cores_is_one_problem_not_a_made_up_one() -> None:
    _, problems = problems_of({"cluster_class": "dask_jobqueue.SLURMCluster",
                               "cluster_kwargs": {"cores": -2, "processes": 2, "memory": "4GB"}})
    assert set(problems) == {"cores"} and "-2" in problems["cores"]


def test_memory_rounding_is_explained() -> None:
    b = ClusterBuilder(platform="SLURM")
    b.set_values(memory="32GB")
    assert "--mem=30G" in b.script_preview.value
    assert "dask-jobqueue writes whole GiB" in b.memory_note.value and "29.80 GiB" in b.memory_note.value
    b.set_values(memory="32GiB")
    assert "--mem=32G" in b.script_preview.value and b.memory_note.value == ""


def test_invalid_fields_are_outlined() -> None:
    b = ClusterBuilder(platform="SLURM")
    b.set_values(cores="-1")
    assert "flint-invalid" in b.fields["jobqueue"]["cores"]._dom_classes
    b.set_values(cores="2")
    assert "flint-invalid" not in b.fields["jobqueue"]["cores"]._dom_classes


def test_failed_yaml_load_is_red_not_loaded(tmp_path: Path) -> None:
    b = ClusterBuilder()
    b.load("local")
    assert "loaded" in b.file_message.value
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster_class: distributed.LocalCluster\ncluster_kwargs: {n_workers: -1}\n")
    b.path.value = str(bad)
    b.load_button.click()
    assert "failed:" in b.file_message.value and "loaded" not in b.file_message.value
    assert "#c62828" in b.file_message.value  # red
    assert "n_workers" in b.errors.text


def test_errors_latest_first_folded_and_cleared_by_success() -> None:
    area = ErrorArea()
    calls = {"n": 0}

    @guarded(area, "first")
    def fails_unexpectedly() -> None:
        raise ValueError("low-level\nsecond line")

    @guarded(area, "second")
    def fails_cleanly() -> None:
        raise FlintConfigError("a clear message; do this")

    @guarded(area, "third")
    def works() -> None:
        calls["n"] += 1

    fails_unexpectedly()
    fails_cleanly()
    assert [line for line, _ in area.entries] == ["second: a clear message; do this", "first: ValueError: low-level"]
    value = area.output.value
    assert value.index("second: a clear message") < value.index("first: ValueError")
    assert "<details>" in value and "Traceback" in value  # the traceback is folded under its line
    works()
    assert calls["n"] == 1 and area.entries == [] and area.output.value == ""


def test_panel_start_failure_says_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    import flint_widgets.cluster_panel as cp

    def broken(spec: object) -> None:
        raise ValueError("Please pass 'dashboard_address' through 'scheduler_options'")

    monkeypatch.setattr(cp, "start_cluster", broken)
    panel = ClusterPanel(ClusterBuilder(), refresh_interval=0)
    panel.start_button.click()
    assert panel.status.value.startswith("<span") and "failed: ValueError: Please pass" in panel.status.value
    assert "starting" not in panel.status.value
    assert "Traceback" in panel.errors.output.value


def test_prefect_api_blocks_overlapping_in_threads_restore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from flint.prefect.running import prefect_api

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")  # the user's own setting
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, str | None] = {}

    def flow_run() -> None:  # the long block (the flow engine's)
        with prefect_api("http://127.0.0.1:2/api"):
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def poller() -> None:  # a short block opened inside the long one, closed after it
        a_in.wait(10)
        with prefect_api("http://127.0.0.1:2/api"):
            b_in.set()
            a_out.wait(10)
            seen["inside"] = os.environ.get("PREFECT_API_URL")

    threads = [threading.Thread(target=flow_run), threading.Thread(target=poller)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen["inside"] == "http://127.0.0.1:2/api"
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:1/api"  # not the stopped server's


def test_drain_in_a_running_event_loop_leaves_no_coroutine() -> None:
    from flint.prefect.running import _drain_api_workers

    async def in_kernel() -> None:  # a Jupyter kernel runs cells with a loop running
        _drain_api_workers()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(in_kernel())
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)], [str(w.message) for w in caught]


@pytest.mark.slow
def test_temporary_server_ui_knows_its_api_and_serves_behind_the_proxy() -> None:
    from flint.prefect.running import prefect_ui_url, start_temporary_server

    for behind in (False, True):
        info, stop = start_temporary_server(behind_jupyter=behind)
        try:
            port = info.api_url.rsplit(":", 1)[1].split("/")[0]
            root = f"http://127.0.0.1:{port}" + (f"/proxy/absolute/{port}" if behind else "")
            with urllib.request.urlopen(root + "/ui-settings", timeout=10) as r:
                settings = json.load(r)
            page = prefect_ui_url(info.api_url, "abc")
            if behind:
                assert settings["api_url"] == f"/proxy/{port}/api" and page == f"/proxy/absolute/{port}/runs/flow-run/abc"
            else:
                assert settings["api_url"] == info.api_url and page == f"http://127.0.0.1:{port}/runs/flow-run/abc"
            req = urllib.request.Request(root + "/runs/flow-run/abc", headers={"Accept": "text/html"})
            with urllib.request.urlopen(req, timeout=10) as r:
                html = r.read().decode()
            assert (f'src="/proxy/absolute/{port}/assets/' if behind else 'src="/assets/') in html
        finally:
            stop()


def _sleep_through_runner(seconds: int) -> str:
    from flint.runner import run_command

    return run_command(["sleep", str(seconds)])


@pytest.mark.slow
def test_cancel_kills_the_programs_workers_run(tmp_path: Path) -> None:
    """What Cancel does on the cluster: the program a worker runs (as wsclean would) is killed by its group."""
    from distributed import Client, LocalCluster

    from flint.errors import FlintCommandError
    from flint.prefect.running import kill_worker_programs

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        fut = client.submit(_sleep_through_runner, 120, pure=False)
        pids: list[int] = []
        for _ in range(100):  # until the worker has started it
            pids = kill_worker_programs(cluster.scheduler_address)
            if pids:
                break
            fut.result  # noqa: B018 - keep the future alive
            threading.Event().wait(0.2)
        assert len(pids) == 1
        with pytest.raises(FlintCommandError):
            fut.result(timeout=30)  # the task saw its program die (long before the 120 s sleep)
        assert not Path(f"/proc/{pids[0]}").exists() or "Z" in Path(f"/proc/{pids[0]}/stat").read_text().split(") ", 1)[1][:1]
        assert cluster.scheduler_address and client.submit(sum, [1, 2]).result(timeout=30) == 3  # the worker lives on


def test_library_logs_go_to_the_pane_and_file_not_the_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from flint_widgets import _logs
    from flint_widgets._logs import LogPane, log_file, release_logs

    monkeypatch.setenv("FLINT_LOG_DIR", str(tmp_path))
    release_logs()  # widgets of earlier tests opened the file elsewhere
    monkeypatch.setattr(_logs, "_panes", [])  # ... and their panes are not this test's
    root = logging.getLogger()
    console = logging.StreamHandler()  # what Prefect / distributed install: lines land in the running cell
    root.addHandler(console)
    try:
        pane = LogPane(("distributed",), "Dask log")
        logging.getLogger("distributed.scheduler").warning("Remove worker tcp://127.0.0.1:1")
        logging.getLogger("flint.imaging").warning("not for this pane")
        pane.close()
        assert console in root.handlers  # close() of the last pane gives the console back
    finally:
        root.removeHandler(console)
    assert "Remove worker tcp://127.0.0.1:1" in pane.text and "not for this pane" not in pane.text
    assert "Remove worker" in pane.view.value
    assert "Remove worker" not in capsys.readouterr().err  # not sprayed into the cell
    assert "Remove worker" in log_file().read_text()


def test_already_calibrated_hides_and_drops_the_solutions(tmp_path: Path) -> None:
    from flint_widgets.launcher import FlowLauncher

    launcher = FlowLauncher(flow="continuum")
    launcher.set_params(science=str(tmp_path / "sci"), solutions=str(tmp_path / "sol"), out_dir=str(tmp_path / "out"))
    assert launcher.parameters()["solutions"] == str(tmp_path / "sol")
    launcher.set_params(already_calibrated=True)
    assert launcher.params["solutions"].layout.display == "none"
    params = launcher.parameters()
    assert params["already_calibrated"] is True and params["solutions"] is None
    launcher.set_params(already_calibrated=False)
    assert launcher.params["solutions"].layout.display == ""
