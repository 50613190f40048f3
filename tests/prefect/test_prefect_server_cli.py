"""``flint server start|stop|status`` through ``flint.cli.main`` on a real PostgreSQL.

One server for the module (flint's own PostgreSQL, initdb-ed on first start): the tests
run in file order — start and health, a probe flow visible through the API, then the
database going down, stop (nothing left by PID), restart (history kept).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flint.cli import main
from flint.prefect._postgres import PostgresInstance, free_port, stop_postgres

from services import _require_tool, drain_prefect_clients

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class CliServer:
    """The server under test and everything its CLI calls printed or logged."""

    state: Path
    port: int
    out: list[str] = field(default_factory=list)
    log: io.StringIO = field(default_factory=io.StringIO)

    def run(self, *argv: str) -> tuple[int, str]:
        """``flint <argv>``; returns (exit status, stdout + stderr) and keeps the text."""
        buf = io.StringIO()
        handler = logging.StreamHandler(self.log)
        handler.setLevel(logging.DEBUG)
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                rc = main(list(argv))
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
        self.out.append(buf.getvalue())
        return rc, buf.getvalue()

    def start(self) -> tuple[int, str]:
        return self.run("server", "start", "--state-dir", str(self.state), "--port", str(self.port))

    @property
    def auth(self) -> str:
        return (self.state / "auth-string").read_text().strip()

    @property
    def pg(self) -> PostgresInstance:
        return PostgresInstance(data_dir=self.state / "pgdata", port=int((self.state / "postgres-port").read_text()))

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        return True
    return False


def _postmaster_pid(pg: PostgresInstance) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().split()[0])


@pytest.fixture(scope="module")
def cli_server() -> Iterator[CliServer]:
    for tool in ("initdb", "pg_ctl", "postgres"):
        if shutil.which(tool) is None and not list(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}")):
            _require_tool(tool)
    mp = pytest.MonkeyPatch()
    for var in ("FLINT_PREFECT_DATABASE_URL", "PREFECT_API_AUTH_STRING", "PREFECT_API_URL"):
        mp.delenv(var, raising=False)
    # under /tmp (not pytest's 0700 folder): flint's PostgreSQL runs as the postgres user
    state = Path(tempfile.mkdtemp(prefix="flint-cli-server-"))
    mp.setenv("PREFECT_LOCAL_STORAGE_PATH", str(state / "results"))
    srv = CliServer(state=state, port=free_port())
    try:
        yield srv
    finally:
        drain_prefect_clients()
        srv.run("server", "stop", "--state-dir", str(state))
        mp.undo()
        shutil.rmtree(state, ignore_errors=True)


def _secrets(srv: CliServer) -> list[str]:
    pw = srv.pg.password_file.read_text().strip()
    assert len(srv.auth) > 20 and len(pw) > 20
    return [srv.auth, srv.auth.split(":", 1)[1], pw]


def _assert_no_secret_anywhere(srv: CliServer) -> None:
    texts = {"cli output": "".join(srv.out), "log records": srv.log.getvalue()}
    for f in [srv.state / "server.log", srv.state / "server.json", srv.state / "pgdata" / "server.log"]:
        if f.exists():
            texts[str(f)] = f.read_text(errors="replace")
    for pid_file in [srv.state / "server.json"]:
        if pid_file.exists():
            import json

            pid = json.loads(pid_file.read_text())["pid"]
            if _alive(pid):
                texts[f"/proc/{pid}/cmdline"] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    for secret in _secrets(srv):
        for where, text in texts.items():
            assert secret not in text, f"a secret leaked into {where}"


def test_start_prints_exports_and_status_is_healthy(cli_server: CliServer) -> None:
    srv = cli_server
    t0 = time.monotonic()
    rc, out = srv.start()
    took = time.monotonic() - t0
    assert rc == 0, out
    assert f"export PREFECT_API_URL={srv.api_url}\n" in out
    assert f'export PREFECT_API_AUTH_STRING="$(cat {srv.state / "auth-string"})"' in out
    assert "flint-managed PostgreSQL" in out and ":***@127.0.0.1" in out
    assert stat.S_IMODE((srv.state / "auth-string").stat().st_mode) == 0o600
    assert stat.S_IMODE(srv.pg.password_file.stat().st_mode) == 0o600
    rc, out = srv.run("server", "status", "--state-dir", str(srv.state))
    assert rc == 0 and out.startswith("healthy: API ok, database ok"), out
    # a second start on the same folder is refused, the running one is untouched
    rc, out = srv.run("server", "start", "--state-dir", str(srv.state), "--port", str(srv.port))
    assert rc == 1 and "already runs" in out
    _assert_no_secret_anywhere(srv)
    logging.getLogger(__name__).info("flint server start (initdb + PostgreSQL + API) took %.1f s", took)


def test_probe_flow_runs_against_it_and_is_visible(cli_server: CliServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.task_runners import ThreadPoolTaskRunner

    from flint.prefect.running import prefect_api, submit_flow

    srv = cli_server
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", srv.auth)
    handle = submit_flow("probe", {"out_dir": str(tmp_path), "n_beams": 2, "rounds": 0, "seconds": 0.1},
                         api_url=srv.api_url, runner=ThreadPoolTaskRunner(max_workers=2), background=False)
    assert Path(handle.result()["mosaics"][0]).read_text() == (
        "beam=0 round=0 after=-\nbeam=1 round=0 after=-\n"
    )
    with prefect_api(srv.api_url, srv.auth), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["flint-probe"])),
                                       sort=FlowRunSort.START_TIME_DESC, limit=50)
    states = {r.id: r.state.name if r.state else None for r in runs}
    assert states == {handle.flow_run_id: "Completed"}
    (srv.state / "probe-run-id").write_text(str(handle.flow_run_id))
    # without the auth string the API refuses
    monkeypatch.delenv("PREFECT_API_AUTH_STRING")
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(srv.api_url + "/admin/version", timeout=5)  # noqa: S310
    assert err.value.code == 401


def test_database_down_then_stop_leaves_nothing_then_restart_keeps_history(cli_server: CliServer) -> None:
    import json
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    from flint.prefect.running import prefect_api

    srv = cli_server
    run_id = uuid.UUID((srv.state / "probe-run-id").read_text())
    api_pid = json.loads((srv.state / "server.json").read_text())["pid"]
    pg = srv.pg
    pg_pid = _postmaster_pid(pg)
    assert _alive(api_pid) and _alive(pg_pid)
    drain_prefect_clients()  # the probe run's logs/events reach the API before it goes away

    # the database goes away under the running API: status says so and exits non-zero
    stop_postgres(pg)
    rc, out = srv.run("server", "status", "--state-dir", str(srv.state))
    assert rc == 1 and "UNHEALTHY: API ok, database DOWN" in out, out

    rc, out = srv.run("server", "stop", "--state-dir", str(srv.state))
    assert rc == 0 and "stopped" in out
    assert not _alive(api_pid) and not _alive(pg_pid)
    assert not _port_open(srv.port) and not _port_open(pg.port)
    assert not (srv.state / "server.json").exists()
    rc, out = srv.run("server", "status", "--state-dir", str(srv.state))
    assert rc == 1 and "no flint Prefect server" in out

    # start again on the same folder: same PostgreSQL data, the earlier run is still there
    rc, out = srv.start()
    assert rc == 0, out
    assert _postmaster_pid(srv.pg) != pg_pid and srv.pg.port == pg.port
    with prefect_api(srv.api_url, srv.auth), get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
                                      sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=50)
    assert run.state is not None and run.state.name == "Completed"
    assert {t.name for t in tasks} == {"probe-beam00.round0", "probe-beam01.round0", "probe_mosaic-round0"}
    rc, out = srv.run("server", "status", "--state-dir", str(srv.state))
    assert rc == 0, out
    new_api, new_pg = json.loads((srv.state / "server.json").read_text())["pid"], _postmaster_pid(srv.pg)
    drain_prefect_clients()
    rc, _ = srv.run("server", "stop", "--state-dir", str(srv.state))
    assert rc == 0 and not _alive(new_api) and not _alive(new_pg)
    _assert_no_secret_anywhere(srv)


def test_database_url_file_must_be_private(tmp_path: Path) -> None:
    url_file = tmp_path / "db-url"
    url_file.write_text("postgresql+asyncpg://flint:hunter2-secret@127.0.0.1:1/prefect\n")
    os.chmod(url_file, 0o644)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = main(["server", "start", "--state-dir", str(tmp_path / "s"), "--port", str(free_port()),
                   "--database-url-file", str(url_file)])
    assert rc == 1
    assert f"{url_file}: secret file is readable by others (mode 644); run 'chmod 600 {url_file}'" in buf.getvalue()
    assert "hunter2" not in buf.getvalue()
    assert not (tmp_path / "s" / "server.json").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to the postgres user")
def test_state_dir_the_database_user_cannot_enter(tmp_path: Path) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = main(["server", "start", "--state-dir", str(hidden / "s"), "--port", str(free_port())])
    assert rc == 1
    assert "cannot enter" in buf.getvalue() and "choose a state folder" in buf.getvalue()
    assert not (hidden / "s" / "pgdata").exists()


def test_status_and_stop_without_a_server(tmp_path: Path) -> None:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["server", "status", "--state-dir", str(tmp_path), "--json"]) == 1
        assert main(["server", "stop", "--state-dir", str(tmp_path)]) == 0
    first, second = buf.getvalue().splitlines()
    import json

    assert json.loads(first)["healthy"] is False and json.loads(first)["running"] is False
    assert second.endswith("nothing to stop")
