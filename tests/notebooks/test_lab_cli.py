"""``flint lab``: JupyterLab from the venv on 127.0.0.1 with a token, root-safe, URL and ssh line printed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from flint.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_print_only_names_url_ssh_and_a_root_safe_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.ipynb").write_text("{}")
    assert main(["lab", str(tmp_path / "a.ipynb"), "--port", "18765", "--print-only"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"http://127\.0\.0\.1:18765/lab/tree/a\.ipynb\?token=[0-9a-f]{48}", out)
    assert "ssh -N -L 18765:127.0.0.1:18765 " in out
    assert f"{sys.executable} -m jupyter lab" in out and "--ServerApp.ip=127.0.0.1" in out
    assert ("--allow-root" in out) == (os.geteuid() == 0)
    assert "<token>" in out  # the command line shown does not repeat the secret


def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["lab", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such file or folder" in err


@pytest.mark.slow
@pytest.mark.integration
def test_flint_lab_serves_the_tutorials_with_a_token(tmp_path: Path) -> None:
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws")}
    proc = subprocess.Popen([sys.executable, "-m", "flint.cli", "lab"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.match(r"JupyterLab: (http://127\.0\.0\.1:(\d+))/lab\?token=(\w+)", first)
        assert m, first
        base, token = m[1], m[3]
        end = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/contents/02_clusters.ipynb?content=0&token={token}", timeout=3) as r:
                    assert r.status == 200  # the tutorials are its root
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None and time.monotonic() < end, "JupyterLab did not come up"
                time.sleep(0.5)
        with pytest.raises(urllib.error.HTTPError) as no_token:
            urllib.request.urlopen(f"{base}/api/contents", timeout=5)
        assert no_token.value.code == 403
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
