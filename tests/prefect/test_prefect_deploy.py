"""deploy/: scripts parse, run argv-safely, hold no secrets; the apptainer recipe is well formed.

apptainer is not installed here: the .def file is checked structurally (header, sections,
shell syntax of each script section), not built.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flint.cli import main

from services import SlurmService

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SCRIPT = DEPLOY / "flint-server.sh"
SBATCH = DEPLOY / "flint-flow.sbatch"
DEF = DEPLOY / "flint-server.def"
ENV_EXAMPLE = DEPLOY / "server.env.example"

FLINT_CMD = f"{sys.executable} -m flint.cli"

# -------------------------------------------------------------------- secret scanner

_PLACEHOLDERS = {"USER:PASSWORD", "user:password"}
_URL_CREDS = re.compile(r"[a-z+]+://([^:/\s@]+:[^@\s]+)@")
_TOKEN = re.compile(r"(?<![\w/.-])[A-Za-z0-9_-]{24,}(?![\w/.-])")


def find_secrets(text: str) -> list[str]:
    """Lines of ``text`` that look like they carry a secret."""
    hits = []
    for line in text.splitlines():
        for creds in _URL_CREDS.findall(line):
            if creds not in _PLACEHOLDERS:
                hits.append(line)
        if re.search(r"PREFECT_API_AUTH_STRING=(?!\"\$\(cat )", line) or re.search(r"\bPGPASSWORD=", line):
            hits.append(line)
        for tok in _TOKEN.findall(line):  # random-looking: upper, lower and digits mixed
            if re.search(r"[a-z]", tok) and re.search(r"[A-Z]", tok) and re.search(r"\d", tok):
                hits.append(line)
    return hits


def test_secret_scanner_catches_planted_secrets() -> None:
    assert find_secrets("export FLINT_PREFECT_DATABASE_URL=postgresql+asyncpg://flint:s3cr3t@db:5432/prefect")
    assert find_secrets("export PREFECT_API_AUTH_STRING=flint:Zx81kQ")
    assert find_secrets("token = Qm9vX2Fzc3dvcmQtMTIzNDU2Nzg5MGFiY2Rl")
    assert not find_secrets('export PREFECT_API_AUTH_STRING="$(cat /state/auth-string)"')
    assert not find_secrets("# postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB")
    assert not find_secrets("PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE")


@pytest.mark.parametrize("name", ["README.md", "flint-server.sh", "flint-flow.sbatch", "flint-server.def", "server.env.example"])
def test_deploy_files_hold_no_secrets(name: str) -> None:
    assert find_secrets((DEPLOY / name).read_text()) == []


# -------------------------------------------------------------------- shell scripts


@pytest.mark.parametrize("path", [SCRIPT, SBATCH], ids=lambda p: p.name)
def test_scripts_pass_bash_n(path: Path) -> None:
    out = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_sbatch_directives_come_before_the_first_command() -> None:
    lines = SBATCH.read_text().splitlines()
    first_cmd = next(i for i, ln in enumerate(lines) if ln.strip() and not ln.startswith("#"))
    directives = [i for i, ln in enumerate(lines) if ln.startswith("#SBATCH")]
    assert directives and max(directives) < first_cmd  # sbatch stops reading at the first command
    assert lines[0].startswith("#!")


def test_sbatch_script_accepted_by_real_slurm(slurm_cluster: SlurmService) -> None:
    """``sbatch --test-only``: SLURM parses the directives and would schedule it (nothing runs)."""
    out = subprocess.run(["sbatch", "--test-only", "--mem=500M", "--time=00:05:00", str(SBATCH)],
                         capture_output=True, text=True, env={**os.environ, **slurm_cluster.env}, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "to start at" in out.stderr


def _script(*argv: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FLINT_", "PREFECT_API"))}
    return subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, env={**base, "FLINT_CMD": FLINT_CMD, **env},
                          cwd=cwd, timeout=60)


def test_server_script_status_without_server(tmp_path: Path) -> None:
    out = _script("status", env={"FLINT_SERVER_DIR": str(tmp_path / "s"), "FLINT_SERVER_CONFIG": "/nonexistent"}, cwd=tmp_path)
    assert out.returncode == 1
    assert out.stdout.startswith("UNHEALTHY: no flint Prefect server started from")


def test_server_script_refuses_a_readable_database_url_file(tmp_path: Path) -> None:
    url_file = tmp_path / "db-url"
    url_file.write_text("postgresql+asyncpg://flint:Hunter2Secret99@127.0.0.1:1/prefect\n")
    os.chmod(url_file, 0o644)
    out = _script("start", env={"FLINT_SERVER_DIR": str(tmp_path / "s"), "FLINT_DATABASE_URL_FILE": str(url_file),
                                "FLINT_SERVER_CONFIG": "/nonexistent"}, cwd=tmp_path)
    assert out.returncode == 1
    assert f"{url_file} is readable by others (mode 644); run 'chmod 600 {url_file}'" in out.stderr
    assert "Hunter2" not in out.stdout + out.stderr
    assert not (tmp_path / "s").exists()


def test_server_script_config_is_parsed_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    cfg = tmp_path / "server.env"
    cfg.write_text(f"# comment\nFLINT_SERVER_DIR={tmp_path / 's'}\nFLINT_SERVER_PORT=$(touch {marker})\n")
    out = _script("start", env={"FLINT_SERVER_CONFIG": str(cfg)}, cwd=tmp_path)
    assert out.returncode != 0
    assert not marker.exists(), "a config value was executed"
    assert "--port: invalid int value: '$(touch" in out.stderr  # passed literally, as one argv item
    cfg.write_text("FLINT_SERVER_PRT=4310\n")
    out = _script("start", env={"FLINT_SERVER_CONFIG": str(cfg)}, cwd=tmp_path)
    assert out.returncode == 1 and f"{cfg}:1: unknown key 'FLINT_SERVER_PRT'" in out.stderr


def test_server_script_exports_name_the_auth_file_not_the_secret(tmp_path: Path) -> None:
    state = tmp_path / "state dir"
    state.mkdir()
    (state / "server.json").write_text(json.dumps({"api_url": "http://10.0.0.5:4310/api", "pid": 1}))
    secret = "flint:Qm9vX2Fzc3dvcmQtMTIzNDU2Nzg5"
    (state / "auth-string").write_text(secret + "\n")
    out = _script("exports", env={"FLINT_SERVER_DIR": str(state), "FLINT_SERVER_CONFIG": "/nonexistent"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert secret not in out.stdout
    # the printed lines work in a shell: they export the URL and the file's content
    shown = subprocess.run(["bash", "-c", out.stdout + 'printf "%s|%s" "$PREFECT_API_URL" "$PREFECT_API_AUTH_STRING"'],
                           capture_output=True, text=True)
    assert shown.stdout == f"http://10.0.0.5:4310/api|{secret}"


def test_env_example_keys_are_known_to_the_script_and_map_to_cli_options() -> None:
    allowed = re.search(r'allowed_keys=" (.*?) "', SCRIPT.read_text(), re.S)
    assert allowed is not None
    allowed_keys = set(allowed.group(1).replace("\\\n", " ").split())
    keys = {ln.lstrip("#").split("=", 1)[0] for ln in ENV_EXAMPLE.read_text().splitlines() if re.match(r"#?FLINT_\w+=", ln)}
    assert keys and keys <= allowed_keys
    flags = set(re.findall(r"argv\+=\((--[a-z-]+)", SCRIPT.read_text()))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        main(["server", "start", "--help"])
    known = set(re.findall(r"(--[a-z][a-z-]+)", buf.getvalue()))
    assert flags and flags <= known, flags - known


# -------------------------------------------------------------------- apptainer recipe

_SECTIONS = {"%labels", "%help", "%files", "%post", "%environment", "%runscript", "%startscript", "%test", "%setup", "%app"}


def parse_def(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(header keywords, section -> body) of an apptainer definition file; raises on bad structure."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("%"):
            name = line.split()[0]
            if name not in _SECTIONS:
                raise ValueError(f"line {n}: unknown section {name}")
            if name in sections:
                raise ValueError(f"line {n}: section {name} twice")
            current = name
            sections[name] = []
        elif current is None:
            if line.strip() and not line.lstrip().startswith("#"):
                key, sep, value = line.partition(":")
                if not sep or not value.strip():
                    raise ValueError(f"line {n}: header lines are 'Keyword: value'")
                header[key.strip()] = value.strip()
        else:
            sections[current].append(line)
    return header, {k: "\n".join(v) for k, v in sections.items()}


def test_apptainer_def_is_well_formed() -> None:
    header, sections = parse_def(DEF.read_text())
    assert header["Bootstrap"] == "docker" and header["From"].startswith("python:3.11")
    for needed in ("%post", "%environment", "%runscript", "%startscript", "%files", "%test"):
        assert sections.get(needed, "").strip(), f"{needed} missing or empty"
    assert "postgresql-15" in sections["%post"] and "fastapi<0.155" in sections["%post"]
    assert "PREFECT_SERVER_ANALYTICS_ENABLED=false" in sections["%environment"]
    assert 'exec flint server "$@"' in sections["%runscript"]
    for src, _dest in (ln.split() for ln in sections["%files"].splitlines() if ln.strip()):
        assert (REPO / src).exists()
    sh = shutil.which("sh") or "/bin/sh"
    for name in ("%post", "%environment", "%runscript", "%startscript", "%test"):  # run by /bin/sh
        out = subprocess.run([sh, "-n"], input=sections[name], capture_output=True, text=True)
        assert out.returncode == 0, f"{name}: {out.stderr}"


def test_def_parser_rejects_bad_structure() -> None:
    with pytest.raises(ValueError, match="unknown section %postt"):
        parse_def("Bootstrap: docker\nFrom: debian\n%postt\n  true\n")
    with pytest.raises(ValueError, match="header lines"):
        parse_def("Bootstrap docker\n%post\n")
