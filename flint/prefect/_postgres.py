"""A private PostgreSQL cluster in a folder: initdb, start, stop (Debian's PostgreSQL).

Used by ``flint server`` (a database for the Prefect API) and by the test fixtures.
PostgreSQL refuses to run as root: when flint runs as root the server runs as the
``postgres`` system user (``runuser``), and the data folder is owned by it.
The password is generated once, kept in a 0600 file beside the data folder and never
logged or put on a command line.
"""

from __future__ import annotations

import glob
import logging
import os
import secrets
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from flint.errors import FlintError, FlintInputError
from flint.runner import run_command

__all__ = ["PostgresInstance", "pg_bin", "init_postgres", "start_postgres", "stop_postgres", "postgres_running", "free_port"]

logger = logging.getLogger(__name__)

_RUN_AS = "postgres"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pg_bin(program: str) -> str:
    """Full path of a PostgreSQL server program (``initdb``, ``pg_ctl``, ``postgres``)."""
    found = shutil.which(program)
    if found:
        return found
    for cand in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"), reverse=True):
        return cand
    raise FlintInputError(
        f"PostgreSQL's '{program}' was not found; install PostgreSQL (Debian: apt-get install postgresql) "
        "or use the apptainer recipe in deploy/"
    )


def _as_db_user(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", _RUN_AS, "--", *argv]
    return argv


@dataclass(frozen=True)
class PostgresInstance:
    """A PostgreSQL cluster flint manages in ``data_dir``."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    user: str = "flint"
    database: str = "prefect"

    @property
    def password_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.password"

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def url(self, driver: str = "postgresql+asyncpg") -> str:
        """Connection URL (contains the password: never log it)."""
        return f"{driver}://{self.user}:{self.password()}@{self.host}:{self.port}/{self.database}"

    def safe_url(self) -> str:
        """The URL with the password masked, for messages."""
        return f"postgresql://{self.user}:***@{self.host}:{self.port}/{self.database}"


def _chown_for_db(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user=_RUN_AS, group=_RUN_AS)


def init_postgres(data_dir: str | os.PathLike[str], *, port: int, user: str = "flint", database: str = "prefect") -> PostgresInstance:
    """Create a PostgreSQL cluster in ``data_dir`` (empty or missing) with a password user.

    The folder's parents must be traversable by the database user when running as root
    (e.g. under ``/tmp`` or ``/var/lib``, not under ``/root``).
    """
    data_dir = Path(data_dir).resolve()
    inst = PostgresInstance(data_dir=data_dir, port=port, user=user, database=database)
    if (data_dir / "PG_VERSION").exists():
        return inst
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _chown_for_db(data_dir)
    password = secrets.token_urlsafe(24)
    fd = os.open(inst.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    # initdb reads the password from a file the database user can read; removed afterwards
    pwfile = data_dir.parent / f".{data_dir.name}.initpw"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    _chown_for_db(pwfile)
    try:
        run_command(
            _as_db_user([pg_bin("initdb"), "-D", str(data_dir), "-U", user, f"--pwfile={pwfile}",
                         "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions"])
        )
    finally:
        pwfile.unlink(missing_ok=True)
    conf = data_dir / "postgresql.conf"
    with conf.open("a") as fh:
        fh.write(f"\n# flint\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{data_dir}'\n"
                 "max_connections = 200\nfsync = on\n")
    start_postgres(inst)
    try:
        env = {"PGPASSWORD": password}
        run_command(_as_db_user([pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, database]), env=env)
        psql = [pg_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", database, "-v", "ON_ERROR_STOP=1"]
        run_command(_as_db_user([*psql, "-c", "CREATE EXTENSION IF NOT EXISTS pg_trgm"]), env=env)
    finally:
        stop_postgres(inst)
    return inst


def postgres_running(inst: PostgresInstance) -> bool:
    """Whether the server of ``inst`` accepts connections."""
    try:
        with socket.create_connection((inst.host, inst.port), timeout=1):
            return (inst.data_dir / "postmaster.pid").exists()
    except OSError:
        return False


def start_postgres(inst: PostgresInstance, timeout: float = 60) -> None:
    """Start the server of ``inst`` (no-op when it already runs)."""
    if postgres_running(inst):
        return
    log = inst.data_dir / "server.log"
    run_command(
        _as_db_user([pg_bin("pg_ctl"), "-D", str(inst.data_dir), "-l", str(log), "-w", "-t", str(int(timeout)),
                     "-o", f"-p {inst.port}", "start"])
    )
    deadline = time.monotonic() + timeout
    while not postgres_running(inst):
        if time.monotonic() > deadline:
            raise FlintError(f"PostgreSQL in {inst.data_dir} did not accept connections within {timeout} s; see {log}")
        time.sleep(0.2)
    logger.info("PostgreSQL running at %s", inst.safe_url())


def stop_postgres(inst: PostgresInstance, timeout: float = 60) -> None:
    """Stop the server of ``inst`` (fast shutdown; no-op when it is not running)."""
    if not (inst.data_dir / "postmaster.pid").exists():
        return
    run_command(_as_db_user([pg_bin("pg_ctl"), "-D", str(inst.data_dir), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"]))
