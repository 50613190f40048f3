"""``flint server start|stop|status``: the self-hosted Prefect API server on PostgreSQL.

Secrets never travel on the command line: the database URL comes from
``$FLINT_PREFECT_DATABASE_URL``, a 0600 file given with ``--database-url-file`` or
``<state-dir>/database-url``; without any of them flint runs its own PostgreSQL in
``<state-dir>/pgdata``. The API auth string is kept in ``<state-dir>/auth-string`` (0600)
and only that file's path is ever printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args

__all__ = ["register"]

_EPILOG = """\
examples:
  flint server start --state-dir /scratch/$USER/flint-server --port 4310
  eval "$(flint server start --state-dir DIR --exports-only)"   # point this shell at it
  flint server status --state-dir DIR        # exit status 0 only when API and database are healthy
  flint server stop --state-dir DIR          # stops what 'start' started (PIDs in DIR/server.json)

database (never on the command line):
  $FLINT_PREFECT_DATABASE_URL, or --database-url-file FILE (mode 0600), or DIR/database-url (0600);
  otherwise flint initialises and runs its own PostgreSQL in DIR/pgdata.
"""


def _state_dir_arg(p: argparse.ArgumentParser) -> None:
    from flint.prefect.server import DEFAULT_STATE_DIR

    p.add_argument(
        "--state-dir", dest="state_dir", type=Path, default=None,
        help=f"the server's state folder (default: $FLINT_SERVER_DIR or {DEFAULT_STATE_DIR})",
    )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from flint.prefect.server import ServerOptions

    p = sub.add_parser(
        "server",
        help="run a self-hosted Prefect API server on PostgreSQL (start/stop/status)",
        description=(
            "A Prefect API server (uvicorn) on PostgreSQL for flows run from several shells, "
            "notebooks or SLURM jobs. Binds 127.0.0.1 unless --host says otherwise; the API auth "
            "string and CSRF protection are on by default."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssub = p.add_subparsers(dest="server_command", metavar="<server-command>")
    ssub.required = True

    st = ssub.add_parser(
        "start",
        help="start PostgreSQL (if flint manages it) and the Prefect API; print what to export",
        description="Start the server, wait until the API and its database answer, print the PREFECT_API_URL to export.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument(
        "--database-url-file", type=Path, default=None, metavar="FILE",
        help="read the SQLAlchemy database URL from this file (mode 0600; the URL holds a password)",
    )
    st.add_argument("--exports-only", action="store_true", help="print only the export lines (for eval)")
    add_options_arguments(st, ServerOptions, group_title="server options")
    st.set_defaults(func=_start)

    so = ssub.add_parser("stop", help="stop the server (and the PostgreSQL flint started)", description="Stop what 'start' started from the state folder, by the PIDs it recorded.")
    _state_dir_arg(so)
    so.add_argument("--keep-database", action="store_true", help="leave flint's own PostgreSQL running")
    so.set_defaults(func=_stop)

    sa = ssub.add_parser("status", help="API and database health (exit 1 when unhealthy)", description="Report the server's process, API and database health; exit status 1 unless all are healthy.")
    _state_dir_arg(sa)
    sa.add_argument("--json", action="store_true", help="print JSON")
    sa.set_defaults(func=_status)


def _state_dir(args: argparse.Namespace) -> Path:
    from flint.prefect.server import DEFAULT_STATE_DIR

    return Path(args.state_dir) if args.state_dir is not None else DEFAULT_STATE_DIR


def _start(args: argparse.Namespace) -> int:
    from flint.prefect.server import ServerOptions, read_secret_file, start_server

    opts = options_from_args(args, ServerOptions)
    db_url = read_secret_file(args.database_url_file) if args.database_url_file is not None else None
    info = start_server(opts, database_url=db_url)
    if args.exports_only:
        print(info.exports())
        return 0
    auth_file = Path(info.state_dir) / "auth-string"
    print(f"Prefect API  {info.api_url}  (pid {info.pid}, state {info.state_dir})")
    print(f"database     {info.database}" + ("  (flint-managed PostgreSQL)" if info.managed_postgres else ""))
    if auth_file.exists():
        print(f"auth string  {auth_file}  (0600; give it to clients, never paste it into scripts)")
    elif opts.auth:
        print("auth string  from $PREFECT_API_AUTH_STRING")
    print("point clients (shells, notebooks, SLURM jobs) at it with:")
    print(info.exports())
    return 0


def _stop(args: argparse.Namespace) -> int:
    from flint.prefect.server import stop_server

    state = _state_dir(args)
    if stop_server(state, keep_database=args.keep_database):
        print(f"stopped the flint Prefect server of {state}")
    else:
        print(f"no flint Prefect server was started from {state}; nothing to stop")
    return 0


def _status(args: argparse.Namespace) -> int:
    from flint.prefect.server import server_status

    st = server_status(_state_dir(args))
    healthy = st.running and st.api_ok and st.db_ok
    if args.json:
        print(json.dumps({"healthy": healthy, "running": st.running, "api_ok": st.api_ok, "db_ok": st.db_ok,
                          "api_url": st.api_url, "pid": st.pid, "message": st.message}))
    else:
        print(f"{'healthy' if healthy else 'UNHEALTHY'}: {st.message}")
        if st.api_url:
            print(f"api  {st.api_url}" + (f"  (pid {st.pid})" if st.pid else ""))
    return 0 if healthy else 1

