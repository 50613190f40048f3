"""The warm path: one Prefect server + one Dask cluster kept for several flow submissions.

Checked: two submits in one session both complete with the right products, on the same
server (started once) and the same cluster; the submit -> first-task latency of each is
printed (the second is expected far below a cold start, but timing is not asserted on a
shared 2-core machine). A second session on an existing scheduler and API stops neither;
``close()`` stops the temporary server (by its PID) and the cluster the session started.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOCAL_2 = {
    "cluster_class": "distributed.LocalCluster",
    "cluster_kwargs": {"n_workers": 2, "threads_per_worker": 1, "processes": True, "memory_limit": "2GB", "dashboard_address": ":0"},
}


def _alive(pid: int) -> bool:
    """Running (a zombie child not yet reaped counts as stopped)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _check_probe(products: dict, out: Path, n_beams: int, rounds: int) -> None:
    assert sorted(products["mosaics"]) == list(range(rounds + 1))
    for r, path in products["mosaics"].items():
        text = Path(path).read_text()
        assert Path(path).parent == out
        # one line per beam, in beam order, naming the previous round's product
        lines = text.splitlines()
        assert [line.split()[0] for line in lines] == [f"beam={b}" for b in range(n_beams)]
        assert all(f"round={r}" in line for line in lines)


def test_warm_session_two_submits_and_close(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    from flint.errors import FlintConfigError
    from flint.prefect.server import check_api_reachable
    from flint.prefect.tasks import read_stage_log
    from flint.prefect.warm import WarmSession

    t0 = time.perf_counter()
    session = WarmSession(LOCAL_2)
    start_s = time.perf_counter() - t0
    try:
        assert session.server_pid is not None and _alive(session.server_pid)
        pid, api, address = session.server_pid, session.api_url, session.address
        latencies = []
        for i in (1, 2):
            out = tmp_path / f"probe{i}"
            handle = session.submit("probe", out_dir=os.fspath(out), n_beams=2, rounds=1, seconds=0.2)
            assert handle.wait(120)
            _check_probe(handle.result(), out, 2, 1)
            assert handle.state() == "Completed"
            assert handle.api_url == api
            assert {b: handle.progress()[b] for b in (0, 1)} == {b: {"probe.round0": "Completed", "probe.round1": "Completed"} for b in (0, 1)}
            assert len(read_stage_log(out)) == 2 * 2 + 2  # 4 beam stages + 2 mosaics, each once
            latency = handle.first_task_latency()
            assert latency is not None and latency > 0
            latencies.append(latency)
        # the same server and cluster served both: nothing was started again
        assert (session.server_pid, session.api_url, session.address) == (pid, api, address)
        print(f"\nwarm session start {start_s:.1f} s; submit -> first task: 1st {latencies[0]:.2f} s, 2nd {latencies[1]:.2f} s")

        # a second session on an existing scheduler and API starts and stops neither
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://", dashboard_address=":0") as external:
            with WarmSession(address=external.scheduler_address, api_url=api) as other:
                assert other.server_pid is None
                out = tmp_path / "probe-external"
                h = other.submit("probe", {"out_dir": os.fspath(out), "n_beams": 1, "rounds": 0, "seconds": 0.1})
                _check_probe(h.result(timeout=120), out, 1, 0)
                assert {row[3] for row in read_stage_log(out)} == {os.getpid()}  # threads of this process
            check_api_reachable(api)  # still up
            with Client(external.scheduler_address) as c:
                assert c.submit(sum, [1, 2]).result(timeout=30) == 3  # still up
    finally:
        session.close()
    assert not _alive(pid), "the session's Prefect server survived close()"
    with pytest.raises(FlintConfigError, match="no Prefect API answers"):
        check_api_reachable(api, timeout=2)
    assert session.cluster is None and session.client is None
