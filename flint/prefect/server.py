"""A self-hosted Prefect API server on PostgreSQL: ``flint server start|stop|status``.

The server runs under uvicorn (``prefect.server.api.server:create_app``) with the
tuning knobs of a production deployment (web concurrency, SQLAlchemy pool size and
overflow, database timeouts, keep-alive, graceful shutdown). It binds 127.0.0.1 unless
told otherwise; Prefect's API auth string and CSRF protection are on by default.

Secrets
    The database URL comes from ``$FLINT_PREFECT_DATABASE_URL`` or the 0600 file
    ``<state_dir>/database-url``; without either, flint runs its own PostgreSQL in
    ``<state_dir>/pgdata`` (password in a 0600 file). The API auth string comes from
    ``$PREFECT_API_AUTH_STRING`` or the 0600 file ``<state_dir>/auth-string`` (generated).
    Secrets go to the server through its environment only: never on a command line,
    into a log or into a generated script.

State (``<state_dir>/server.json``) records the PID, its start time, URL and whether flint
started the database, so ``stop`` ends exactly what ``start`` started: before signalling, it
checks that the PID is still that process (same start time, a Prefect server command
line); a stale or reused PID is refused, never signalled.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from flint.errors import FlintConfigError, FlintError
from flint.options import BaseOptions
from flint.prefect._postgres import (
    PostgresInstance,
    free_port,
    init_postgres,
    start_postgres,
    stop_postgres,
)

__all__ = [
    "ServerOptions",
    "ServerInfo",
    "ServerStatus",
    "start_server",
    "stop_server",
    "server_status",
    "client_env",
    "use_server",
    "check_api_reachable",
    "read_secret_file",
    "DEFAULT_STATE_DIR",
]

logger = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path(os.environ.get("FLINT_SERVER_DIR", Path.home() / ".flint" / "prefect-server"))
DB_URL_ENV = "FLINT_PREFECT_DATABASE_URL"


class ServerOptions(BaseOptions):
    """How to run the self-hosted Prefect API server."""

    state_dir: Path = DEFAULT_STATE_DIR
    """Folder for the server's state, logs, secrets and (when flint manages it) the PostgreSQL data."""
    host: str = "127.0.0.1"
    """Address to bind. Keep 127.0.0.1 unless compute nodes must reach it (then the login node's address)."""
    port: int = Field(default=4310, ge=1, le=65535)
    """API port (not Prefect's default 4200, which is often taken)."""
    postgres_port: int | None = Field(default=None, ge=1, le=65535)
    """Port of the PostgreSQL flint manages (a free one is picked on first start)."""
    web_concurrency: int = Field(default=1, ge=1, le=64)
    """uvicorn worker processes. More than 1 needs Redis messaging configured (Prefect's rule)."""
    pool_size: int = Field(default=20, ge=1)
    """SQLAlchemy connection-pool size per worker process."""
    max_overflow: int = Field(default=20, ge=0)
    """Connections allowed beyond the pool under bursts."""
    db_timeout: float = Field(default=30.0, gt=0)
    """Seconds a database statement may take."""
    db_connection_timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for a database connection."""
    keep_alive: int = Field(default=30, ge=1)
    """HTTP keep-alive seconds (longer than any proxy's idle timeout)."""
    graceful_shutdown: int = Field(default=15, ge=0)
    """Seconds in-flight requests get to finish on stop."""
    auth: bool = True
    """Require Prefect's API auth string (basic auth) on every request."""
    csrf: bool = True
    """Prefect's CSRF protection."""
    start_timeout: float = Field(default=90.0, gt=0)
    """Seconds to wait for the API to answer after start."""
    ui_serve_base: str = "/"
    """URL path the Prefect UI is served under (``{port}`` is replaced by the port), e.g.
    ``/proxy/absolute/{port}`` when the browser reaches it through jupyter-server-proxy."""
    ui_api_url: str | None = None
    """API URL the UI in the browser calls (``{port}`` is replaced); default the server's own
    ``http://<host>:<port>/api`` (Prefect would otherwise tell the UI port 4200)."""


@dataclass(frozen=True)
class ServerInfo:
    """A running server: what to export and what to stop."""

    api_url: str
    pid: int
    state_dir: str
    database: str
    managed_postgres: bool
    postgres_data_dir: str | None = None
    postgres_port: int | None = None
    start_time: float | None = None
    """Creation time of the server process (seconds since the epoch, as psutil reports it)."""

    def exports(self) -> str:
        """Shell lines that point Prefect clients at this server (no secret in them)."""
        lines = [f"export PREFECT_API_URL={shlex.quote(self.api_url)}"]
        auth = Path(self.state_dir) / "auth-string"
        if auth.exists():
            lines.append(f'export PREFECT_API_AUTH_STRING="$(cat {shlex.quote(str(auth))})"')
        return "\n".join(lines)


@dataclass(frozen=True)
class ServerStatus:
    """Health of a server: API and database."""

    running: bool
    api_ok: bool
    db_ok: bool
    api_url: str | None
    pid: int | None
    message: str


# ------------------------------------------------------------------ secrets and state


def read_secret_file(path: Path) -> str:
    """Read a secret from a file that only its owner may read."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise FlintConfigError(f"{path}: secret file is readable by others (mode {mode:o}); run 'chmod 600 {path}'")
    return path.read_text().strip()


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")


def _auth_string(state_dir: Path, create: bool) -> str | None:
    env = os.environ.get("PREFECT_API_AUTH_STRING")
    if env:
        return env
    path = state_dir / "auth-string"
    if path.exists():
        return read_secret_file(path)
    if create:
        value = f"flint:{secrets.token_urlsafe(24)}"
        _write_secret(path, value)
        return value
    return None


def _state_file(state_dir: Path) -> Path:
    return state_dir / "server.json"


def _read_state(state_dir: Path) -> ServerInfo | None:
    p = _state_file(state_dir)
    if not p.exists():
        return None
    try:
        return ServerInfo(**json.loads(p.read_text()))
    except (ValueError, TypeError) as exc:
        raise FlintConfigError(f"{p}: not a flint server state file ({str(exc).splitlines()[0]}); delete it if no server runs") from None


#: what the server's command line holds (see :func:`_uvicorn_argv`)
_SERVER_MARKER = "prefect.server.api.server:create_app"


def _process_start_time(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _foreign_process(info: ServerInfo) -> str | None:
    """``None`` if ``info.pid`` is the server flint started, else what the PID is now."""
    import psutil

    try:
        proc = psutil.Process(info.pid)
        cmdline = proc.cmdline()
        created = proc.create_time()
    except psutil.NoSuchProcess:
        return None  # gone: nothing to signal either way
    except psutil.AccessDenied:
        return f"a process of another user (pid {info.pid})"
    same_start = info.start_time is None or abs(created - info.start_time) < 1.0
    if same_start and any(_SERVER_MARKER in part for part in cmdline):
        return None
    return f"'{' '.join(cmdline)[:80]}'"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1].split()[0] != "Z"
    except OSError:
        return True


# ------------------------------------------------------------------ HTTP helpers


def _get(url: str, auth: str | None = None, timeout: float = 5.0) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) URL from config
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")


def check_api_reachable(api_url: str | None = None, timeout: float = 5.0) -> str:
    """Raise a clear error unless the Prefect API at ``api_url`` (or ``$PREFECT_API_URL``) answers.

    Returns the URL checked. Called before any job is submitted.
    """
    url = api_url or os.environ.get("PREFECT_API_URL")
    if not url:
        raise FlintConfigError("PREFECT_API_URL is not set; export it (see 'flint server start') or unset it for an ephemeral server")
    health = url.rstrip("/") + "/health"
    try:
        code, body = _get(health, timeout=timeout)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FlintConfigError(
            f"PREFECT_API_URL={url}: no Prefect API answers ({reason}); start it with 'flint server start' "
            "or unset PREFECT_API_URL to use an ephemeral server"
        ) from None
    if code != 200:
        raise FlintConfigError(f"PREFECT_API_URL={url}: {health} answered HTTP {code}; is this a Prefect API URL (ending in /api)?")
    return url


# ------------------------------------------------------------------ database


def _database_url(opts: ServerOptions) -> tuple[str, PostgresInstance | None]:
    env = os.environ.get(DB_URL_ENV)
    if env:
        return env, None
    f = opts.state_dir / "database-url"
    if f.exists():
        return read_secret_file(f), None
    pg_dir = opts.state_dir / "pgdata"
    port_file = opts.state_dir / "postgres-port"
    if (pg_dir / "PG_VERSION").exists():
        port = int(port_file.read_text()) if port_file.exists() else (opts.postgres_port or free_port())
    else:
        port = opts.postgres_port or free_port()
        if os.geteuid() == 0:  # the postgres user must traverse the state dir and its parents
            _check_traversable(opts.state_dir)
            os.chmod(opts.state_dir, 0o711)
        init_postgres(pg_dir, port=port)
    port_file.write_text(str(port))
    inst = PostgresInstance(data_dir=pg_dir.resolve(), port=port)
    start_postgres(inst)
    return inst.url(), inst


def _check_traversable(state_dir: Path) -> None:
    for parent in state_dir.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise FlintConfigError(
                f"--state-dir {state_dir}: PostgreSQL runs as the 'postgres' user, which cannot enter {parent}; "
                "choose a state folder under /var/lib, /srv or /tmp, or give a database with $" + DB_URL_ENV
            )


def _safe(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


# ------------------------------------------------------------------ start / stop / status


def _ui_env(opts: ServerOptions) -> dict[str, str]:
    """The settings that make the server's UI call this server's API (not Prefect's default port 4200)."""
    host = "127.0.0.1" if opts.host in ("0.0.0.0", "::", "") else opts.host
    env = {"PREFECT_SERVER_UI_API_URL": (opts.ui_api_url or f"http://{host}:{{port}}/api").format(port=opts.port)}
    base = opts.ui_serve_base.format(port=opts.port)
    if base.strip("/"):
        env["PREFECT_SERVER_UI_SERVE_BASE"] = base
        # the UI bundle is copied with the base written into it: one copy per server, not Prefect's shared one
        env["PREFECT_SERVER_UI_STATIC_DIRECTORY"] = str(opts.state_dir / "ui")
    return env


def _server_env(opts: ServerOptions, db_url: str, auth: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env.update(
        {
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": db_url,
            "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": str(opts.pool_size),
            "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": str(opts.max_overflow),
            "PREFECT_SERVER_DATABASE_TIMEOUT": str(opts.db_timeout),
            "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": str(opts.db_connection_timeout),
            "PREFECT_SERVER_API_KEEPALIVE_TIMEOUT": str(opts.keep_alive),
            "PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "true" if opts.csrf else "false",
            "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true" if opts.csrf else "false",
            "PREFECT__SERVER_FINAL": "1",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        }
    )
    env.update(_ui_env(opts))
    if auth:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth
    if opts.web_concurrency > 1:
        env["PREFECT__SERVER_WEBSERVER_ONLY"] = "1"
    return env


def _uvicorn_argv(opts: ServerOptions) -> list[str]:
    import prefect

    return [
        sys.executable, "-m", "uvicorn",
        "--app-dir", str(Path(prefect.__file__).parent.parent),
        "--factory", "prefect.server.api.server:create_app",
        "--host", opts.host,
        "--port", str(opts.port),
        "--workers", str(opts.web_concurrency),
        "--timeout-keep-alive", str(opts.keep_alive),
        "--timeout-graceful-shutdown", str(opts.graceful_shutdown),
        "--log-level", "warning",
    ]


def start_server(options: ServerOptions | None = None, *, database_url: str | None = None) -> ServerInfo:
    """Start PostgreSQL (when flint manages it) and the Prefect API server; wait until healthy.

    ``database_url`` overrides where the database is (e.g. ``sqlite+aiosqlite:///x.db`` for
    a throw-away local server); otherwise see the module docstring.
    """
    opts = options or ServerOptions()
    opts.state_dir.mkdir(parents=True, exist_ok=True)
    current = _read_state(opts.state_dir)
    if current is not None and _pid_alive(current.pid) and _foreign_process(current) is None:
        raise FlintError(f"a flint Prefect server already runs from {opts.state_dir} (pid {current.pid}, {current.api_url}); stop it first with 'flint server stop --state-dir {opts.state_dir}'")
    if opts.web_concurrency > 1 and not os.environ.get("PREFECT_MESSAGING_BROKER"):
        raise FlintConfigError("--web-concurrency > 1 needs Redis messaging (PREFECT_MESSAGING_BROKER etc.); see deploy/README.md or use --web-concurrency 1")
    import socket

    try:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            s.bind((opts.host, opts.port))
    except OSError as exc:
        raise FlintConfigError(f"port {opts.port} on {opts.host} is not free ({exc.strerror}); choose another with --port") from None
    db_url, pg = (database_url, None) if database_url else _database_url(opts)
    auth = _auth_string(opts.state_dir, create=opts.auth) if opts.auth else None
    env = _server_env(opts, db_url, auth)
    if opts.web_concurrency > 1:  # migrate once, before the workers race for it
        from flint.runner import run_command

        run_command([sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"], env=env)
    log_path = opts.state_dir / "server.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(  # a daemon: run_command only runs programs to completion
            _uvicorn_argv(opts), env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=opts.state_dir,
        )
    host = "127.0.0.1" if opts.host in ("0.0.0.0", "::") else opts.host
    api_url = f"http://{host}:{opts.port}/api"
    info = ServerInfo(
        api_url=api_url, pid=proc.pid, state_dir=str(opts.state_dir), database=_safe(db_url),
        managed_postgres=pg is not None, postgres_data_dir=str(pg.data_dir) if pg else None,
        postgres_port=pg.port if pg else None, start_time=_process_start_time(proc.pid),
    )
    _state_file(opts.state_dir).write_text(json.dumps(asdict(info), indent=1))
    deadline = time.monotonic() + opts.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if _get(api_url + "/ready", timeout=2)[0] == 200:
                logger.info("Prefect server ready at %s (database %s)", api_url, info.database)
                return info
        except OSError:
            pass
        time.sleep(0.3)
    stop_server(opts.state_dir)
    tail = log_path.read_text(errors="replace").splitlines()[-15:]
    raise FlintError(f"the Prefect server did not become ready within {opts.start_timeout} s; last log lines:\n" + "\n".join(tail))


def stop_server(state_dir: Path | str = DEFAULT_STATE_DIR, timeout: float = 30.0, keep_database: bool = False) -> bool:
    """Stop the server started from ``state_dir`` (and the PostgreSQL flint started).

    Returns ``True`` when something was stopped.

    Raises
    ------
    FlintError
        When the recorded PID now belongs to another process (a stale ``server.json`` whose
        PID was reused): nothing is signalled.
    """
    state_dir = Path(state_dir)
    info = _read_state(state_dir)
    if info is None:
        return False
    stopped = False
    if _pid_alive(info.pid):
        other = _foreign_process(info)
        if other is not None:
            raise FlintError(
                f"{_state_file(state_dir)}: pid {info.pid} is no longer the Prefect server flint started "
                f"(it is {other}); not signalling it. If the server is gone, delete {_state_file(state_dir)}"
            )
        try:
            os.killpg(info.pid, signal.SIGTERM)  # uvicorn and its workers: the session we started
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while _pid_alive(info.pid) and time.monotonic() < deadline:
            try:
                os.waitpid(info.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        if _pid_alive(info.pid):
            os.killpg(info.pid, signal.SIGKILL)
        stopped = True
    if info.managed_postgres and info.postgres_data_dir and not keep_database:
        stop_postgres(PostgresInstance(data_dir=Path(info.postgres_data_dir), port=info.postgres_port or 0))
        stopped = True
    _state_file(state_dir).unlink(missing_ok=True)
    return stopped


def server_status(state_dir: Path | str = DEFAULT_STATE_DIR) -> ServerStatus:
    """Health of the server started from ``state_dir``: process, API, database, credentials."""
    state_dir = Path(state_dir)
    info = _read_state(state_dir)
    if info is None:
        return ServerStatus(False, False, False, None, None, f"no flint Prefect server started from {state_dir}")
    if not _pid_alive(info.pid) or _foreign_process(info) is not None:
        return ServerStatus(False, False, False, info.api_url, info.pid, f"server process {info.pid} is not running (stale state)")
    try:
        api_ok = _get(info.api_url + "/health", timeout=3)[0] == 200
        db_ok = _get(info.api_url + "/ready", timeout=5)[0] == 200
        auth = _auth_string(state_dir, create=False)
        auth_ok = _get(info.api_url + "/admin/version", auth=auth, timeout=3)[0] == 200
    except OSError as exc:
        return ServerStatus(True, False, False, info.api_url, info.pid, f"API does not answer: {exc}")
    msg = f"API {'ok' if api_ok else 'DOWN'}, database {'ok' if db_ok else 'DOWN'} ({info.database})"
    if api_ok and not auth_ok:
        msg += "; the stored auth string is rejected"
    return ServerStatus(True, api_ok, db_ok, info.api_url, info.pid, msg)


def client_env(state_dir: Path | str = DEFAULT_STATE_DIR) -> dict[str, str]:
    """Environment variables that point a Prefect client at the server in ``state_dir``."""
    state_dir = Path(state_dir)
    info = _read_state(state_dir)
    if info is None:
        raise FlintError(f"no flint Prefect server started from {state_dir}; run 'flint server start'")
    env = {"PREFECT_API_URL": info.api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    auth = _auth_string(state_dir, create=False)
    if auth:
        env["PREFECT_API_AUTH_STRING"] = auth
    return env


def use_server(state_dir: Path | str = DEFAULT_STATE_DIR) -> dict[str, Any]:
    """Point this process (and workers it starts) at the server in ``state_dir``."""
    env = client_env(state_dir)
    os.environ.update(env)
    return {"PREFECT_API_URL": env["PREFECT_API_URL"]}
