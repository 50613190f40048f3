"""``flint lab``: start JupyterLab (from this Python environment) on the flint tutorials.

It binds 127.0.0.1 with a random token, adds ``--allow-root`` when run as root (HPC
containers, CI), prints the URL to open and the ``ssh -L`` line that reaches it from a
laptop when it runs on a remote node, then waits (Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
import getpass
import importlib.util
import logging
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

from flint.errors import FlintConfigError

__all__ = ["register", "lab_argv", "default_notebooks", "access_lines"]

logger = logging.getLogger(__name__)

_EPILOG = """\
examples:
  flint lab                          # the tutorials (notebooks/), first free port from 8888
  flint lab my_analysis/ --port 9000
  flint lab --print-only             # show the command, URL and ssh line; start nothing
on an HPC node: run it there, then on your laptop run the printed 'ssh -N -L ...' line
and open the printed http://127.0.0.1:<port>/... URL in your browser.
"""


def default_notebooks() -> Path:
    """``./notebooks`` if present, else the tutorials next to the flint sources, else the current folder."""
    here = Path.cwd() / "notebooks"
    if here.is_dir():
        return here
    import flint

    repo = Path(flint.__file__).resolve().parents[1] / "notebooks"
    return repo if repo.is_dir() else Path.cwd()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port(start: int) -> int:
    for port in range(start, start + 50):
        if _port_free(port):
            return port
    raise FlintConfigError(f"no free port in {start}-{start + 49}; choose one with --port")


def lab_argv(root: Path, port: int, token: str, open_path: str = "") -> list[str]:
    """The JupyterLab command line (this interpreter's ``jupyter lab``; 127.0.0.1, token, root-safe)."""
    argv = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
    ]
    if os.geteuid() == 0:
        argv.append("--allow-root")  # JupyterLab refuses root without it
    return argv


def access_lines(port: int, token: str, open_path: str = "") -> list[str]:
    """What to print: the URL, and the ssh tunnel line for a browser on another machine."""
    path = f"lab/tree/{open_path}" if open_path else "lab"
    user, host = getpass.getuser(), socket.gethostname()
    return [
        f"JupyterLab: http://127.0.0.1:{port}/{path}?token={token}",
        f"from another machine: ssh -N -L {port}:127.0.0.1:{port} {user}@{host}   (then open the URL above there)",
    ]


def _run(args: argparse.Namespace) -> int:
    target = Path(args.path).expanduser().resolve() if args.path else default_notebooks()
    if not target.exists():
        raise FlintConfigError(f"{target}: no such file or folder; give a notebook or a folder of notebooks")
    root, open_path = (target.parent, target.name) if target.is_file() else (target, "")
    if importlib.util.find_spec("jupyterlab") is None:
        raise FlintConfigError("JupyterLab is not installed in this environment; pip install 'flint[lab]' (or bash scripts/bootstrap.sh lab)")
    if args.port is not None and not _port_free(args.port):
        raise FlintConfigError(f"port {args.port} is taken; choose another with --port, or leave --port out")
    port = args.port if args.port is not None else _pick_port(8888)
    token = secrets.token_hex(24)
    argv = lab_argv(root, port, token, open_path)
    for line in access_lines(port, token, open_path):
        print(line, flush=True)
    if args.print_only:
        print(" ".join(a if not a.startswith("--IdentityProvider.token=") else "--IdentityProvider.token=<token>" for a in argv))
        return 0
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen(argv, cwd=root, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "lab",
        help="start JupyterLab on the flint tutorials (127.0.0.1, token; prints the URL and ssh line)",
        description=(
            "Start JupyterLab from this Python environment (no 'jupyter' on PATH needed) on 127.0.0.1 "
            "with a random token; adds --allow-root when run as root. Prints the URL and an 'ssh -L' line."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", nargs="?", default=None, help="a notebook or folder (default: the tutorials, notebooks/)")
    p.add_argument("--port", type=int, default=None, help="port to bind on 127.0.0.1 (default: first free from 8888)")
    p.add_argument("--print-only", action="store_true", help="print the URL, ssh line and command; start nothing")
    p.set_defaults(func=_run)
