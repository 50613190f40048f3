"""Flow launcher: forms from the flows and option models, real submissions followed in the table."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from flint.imaging import WSCleanOptions
from flint.strategy import load_strategy
from flint_widgets.cluster_builder import ClusterBuilder
from flint_widgets.cluster_panel import ClusterPanel
from flint_widgets.launcher import (
    CANCELLED_MARKER,
    FlowLauncher,
    parse_parameter,
    progress_table_html,
)
from flint_widgets.options_form import OptionsForm


def test_options_form_follows_the_model() -> None:
    form = OptionsForm(WSCleanOptions, {"niter": 500})
    weight = form.controls["weight"]
    assert list(weight.options) == ["briggs", "uniform", "natural"]  # Literal -> choices
    assert form.controls["niter"].value == "500"
    assert "Maximum number of minor clean iterations" in form.controls["niter"].tooltip  # field docstring as help
    assert ">= 0" in form.controls["niter"].tooltip
    assert form.check() and form.changed() == {}
    form.set(niter=700)
    assert form.changed() == {"niter": 700}
    form.set(niter=-5)
    assert not form.check() and "niter" in form.problem and "niter" in form.message.value
    form.set(niter=100, weight="natural", threshold_jy=None)
    opts = form.options()
    assert isinstance(opts, WSCleanOptions) and opts.niter == 100 and opts.weight == "natural" and opts.threshold_jy is None


def test_parse_parameter() -> None:
    assert parse_parameter(list[int] | None, "0, 2,5") == [0, 2, 5]
    assert parse_parameter(str | list[str], "/a/b") == "/a/b"
    assert parse_parameter(str | list[str], "/a.ms\n/b.ms") == ["/a.ms", "/b.ms"]
    assert parse_parameter(int, " ", 3) == 3


def test_changed_options_are_written_into_a_strategy_file(tmp_path: Path) -> None:
    launcher = FlowLauncher(flow="continuum")
    assert set(launcher.params) == {"science", "solutions", "out_dir", "reference", "beams", "already_calibrated"}
    assert launcher.params["already_calibrated"].value is False  # a checkbox (CASDA data: no solutions)
    assert {"wsclean", "selfcal", "linmos", "source_finding"} <= set(launcher.option_forms)
    launcher.set_params(science=str(tmp_path / "sci"), solutions=str(tmp_path / "sol"), out_dir=str(tmp_path / "out"), beams=[0, 1])
    launcher.option_forms["wsclean"].set(niter=1234, size=512)
    params = launcher.parameters()
    assert params["beams"] == [0, 1] and params["reference"] is None and params["already_calibrated"] is False
    launcher.set_params(already_calibrated=True)
    assert launcher.parameters()["already_calibrated"] is True
    written = Path(params["strategy"])
    assert written == tmp_path / "out" / "continuum.strategy.yaml"
    strategy = load_strategy(written)  # validated by the loader
    assert strategy.options_for("wsclean", 1).niter == 1234 and strategy.options_for("wsclean", 0).size == 512
    # round overrides of the base strategy are kept
    assert strategy.options_for("wsclean", 0).auto_mask == load_strategy(None).options_for("wsclean", 0).auto_mask
    assert yaml.safe_load(written.read_text())["version"] == 1


def test_bad_inputs_submit_nothing(tmp_path: Path) -> None:
    launcher = FlowLauncher(panel=ClusterPanel(ClusterBuilder(), refresh_interval=0), flow="bandpass")
    launcher.set_params(bandpass=str(tmp_path), out_dir=str(tmp_path / "out"), beams="a, b")
    assert launcher.cluster_choice.value == "panel"
    launcher.submit_button.click()
    assert "the cluster panel has no running cluster" in launcher.errors.text
    launcher.cluster_choice.value = "yaml"
    launcher.submit_button.click()
    assert "give whole numbers" in launcher.errors.text
    launcher.set_params(beams="")
    launcher.option_forms["bandpass"].set(max_iter=0)
    assert set(launcher.option_forms) == {"bandpass"}  # the options the bandpass flow reads
    launcher.option_forms["bandpass"].set(flag_rounds=2)  # a valid change too: a strategy file would be written
    launcher.submit_button.click()
    assert "bandpass options:" in launcher.errors.text and "max_iter" in launcher.errors.text
    launcher.option_forms["bandpass"].set(max_iter=50)
    launcher.api_choice.value = "url"
    launcher.api_url.value = "localhost:4200"
    launcher.submit_button.click()
    assert "give e.g. http://127.0.0.1:4200/api" in launcher.errors.text
    assert launcher.handle is None and launcher._submit_thread is None
    assert not (tmp_path / "out").exists()


def test_progress_table() -> None:
    html = progress_table_html({1: {"copy": "Completed", "flag": "Running"}, 0: {"copy": "Completed"}, "mosaic": {"linmos.round0": "Pending"}})
    assert html.index("beam 00") < html.index("beam 01") < html.index("mosaic")
    assert "data-state='Running'" in html and "<th>linmos.round0</th>" in html


@pytest.fixture
def running_panel() -> Iterator[ClusterPanel]:
    b = ClusterBuilder()
    # threads of this process; the limit applies to the whole pytest process (see test_widgets_panel)
    b.set_values(n_workers="2", threads_per_worker="1", processes=False, memory_limit="16GB")
    b.extra.value = "dashboard_address: '127.0.0.1:0'\nprotocol: tcp"
    panel = ClusterPanel(b, refresh_interval=0)
    panel.start()
    yield panel
    panel.stop()


@pytest.mark.slow
def test_submit_follow_and_fail_on_the_panels_cluster(running_panel: ClusterPanel, tmp_path: Path) -> None:
    env_before = os.environ.get("PREFECT_API_URL")
    launcher = FlowLauncher(panel=running_panel, flow="probe", poll_interval=0.5)
    try:
        launcher.cluster_choice.value = "panel"
        assert launcher.api_choice.value == "local"
        launcher.set_params(out_dir=str(tmp_path / "probe"), n_beams=2, rounds=1, seconds=0.3)
        launcher.submit_button.click()  # returns at once: the server starts in the background
        assert launcher.handle is None and launcher.state == "Submitting"
        assert launcher.wait(240)
        assert launcher.errors.text == "", launcher.errors.text
        assert launcher.state == "Completed"
        assert set(launcher.progress) == {0, 1, "mosaic"}
        assert launcher.progress[0] == {"probe.round0": "Completed", "probe.round1": "Completed"}
        assert launcher.table.value.count("data-state='Completed'") == 6
        assert "open in the Prefect UI" in launcher.link.value
        assert sorted(launcher.result["mosaics"]) == [0, 1]
        # the run's lines are in the launcher's log pane: the flow run's (this kernel) and its
        # task runs' (read back from the Prefect API: workers may be other processes or hosts)
        log = launcher.log.text
        assert "Beginning flow run" in log and "Finished in state Completed()" in log, log
        for task in ("probe-beam00.round0", "probe-beam01.round1", "probe_mosaic-round0"):
            assert f"prefect.task_runs: Task run '{task}' - Finished in state Completed()" in log, log
        assert "could not be read" not in log, log
        assert len(log.splitlines()) == len(set(log.splitlines())), log  # a line logged here and read from the API: once
        assert "lines, newest first" in launcher.log.widget.get_title(0)  # drawn, not only stored
        # the "warm session" choice: a WarmSession on the panel's scheduler, with its own Prefect server
        session = launcher.session
        assert session is not None and session.address == running_panel.address.value
        assert launcher.handle.api_url == session.api_url and session.server_pid is not None
        server_pid = session.server_pid

        # a flow that fails: its error is shown in the widget, not lost in the log
        launcher.flow.value = "bandpass"
        launcher.set_params(bandpass=str(tmp_path / "empty"), out_dir=str(tmp_path / "bp"))
        (tmp_path / "empty").mkdir()
        launcher.submit_button.click()
        assert launcher.wait(120)
        assert launcher.state == "Failed"
        assert "no SB<sbid>.<field>.beamNN*.ms" in launcher.errors.text
        assert "failed: " in launcher.status.value and "no SB&lt;sbid&gt;" in launcher.status.value
        assert launcher.session is session and session.server_pid == server_pid  # the same warm server, no new one
    finally:
        launcher.close()
    assert launcher.session is None and not _alive(server_pid)  # the session's server is stopped ...
    assert running_panel.running and running_panel.client.submit(sum, [1, 2]).result(timeout=30) == 3  # ... not the panel's cluster
    assert os.environ.get("PREFECT_API_URL") == env_before  # close() put the environment back

    # submit after close: a fresh session (new server); then Cancel, which stays Cancelled
    launcher.flow.value = "probe"
    out = tmp_path / "probe2"
    launcher.set_params(out_dir=str(out), n_beams=2, rounds=2, seconds=3)
    try:
        launcher.log.lines.clear()
        launcher.submit_button.click()
        assert launcher.log.attached  # close() detached the pane; the next Submit feeds it again
        assert _until(lambda: launcher.handle is not None and
                      "Running" in launcher.handle.task_states().values(), 240), launcher.errors.text
        assert launcher.session is not None and launcher.session.server_pid not in (None, server_pid)
        launcher.cancel_button.click()
        assert launcher.state == "Cancelling" and "cancelling" in launcher.status.value
        assert launcher.wait(120) and launcher.handle.done()
        assert launcher.state == "Cancelled" and "Cancelled" in launcher.status.value
        assert launcher.handle.state() == "Cancelled"  # the API's word, after the engine finished
        assert not list(out.glob("*mosaic*"))  # no mosaic: the remaining tasks never started
        assert (out / CANCELLED_MARKER).exists()
        assert launcher.errors.text == "", launcher.errors.text
        assert "Beginning flow run" in launcher.log.text, launcher.log.text
    finally:
        launcher.close()


def _alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return False


def _until(cond: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.2)
    return False
