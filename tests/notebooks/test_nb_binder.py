"""binder/: a fresh virtual environment built from its requirements + postBuild runs the quickstart."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nbtools import NOTEBOOKS, REPO, cell_text, errors, load

pytestmark = pytest.mark.integration  # ~3 min here (install 93 s from the pip cache, quickstart 87 s): not "slow"

BINDER = REPO / "binder"


def test_binder_files_are_consistent() -> None:
    apt = BINDER.joinpath("apt.txt").read_text().split()
    assert {"wsclean", "aoflagger", "casacore-tools"} <= set(apt)
    post = BINDER / "postBuild"
    assert os.access(post, os.X_OK) and '".[lab]"' in post.read_text()


def test_fresh_venv_from_binder_runs_quickstart(tmp_path: Path) -> None:
    for tool in ("wsclean",):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt.txt)")
    venv = tmp_path / "venv"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # no --system-site-packages
    py = venv / "bin" / "python"
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    env.pop("JUPYTER_PATH", None)
    build = REPO / "build"  # pip's in-tree build folder must not be left behind
    had_build = build.exists()
    try:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(BINDER / "requirements.txt")], check=True, cwd=REPO, env=env, timeout=900)
        subprocess.run(["bash", str(BINDER / "postBuild")], check=True, cwd=REPO, env=env, timeout=1200)
    finally:
        if not had_build:
            shutil.rmtree(build, ignore_errors=True)
    install_s = time.perf_counter() - t0
    # the kernel the notebook runs in is the venv's Python, not this one
    specs = json.loads(subprocess.run([str(py), "-m", "jupyter", "kernelspec", "list", "--json"], check=True, capture_output=True, text=True, env=env).stdout)
    argv0 = specs["kernelspecs"]["python3"]["spec"]["argv"][0]
    assert Path(argv0).parent in (venv / "bin", Path("python")) or argv0 == "python" or argv0.startswith(str(venv)), argv0
    out = tmp_path / "01_quickstart.ipynb"
    t1 = time.perf_counter()
    proc = subprocess.run(
        [str(py), "-m", "papermill", str(NOTEBOOKS / "01_quickstart.ipynb"), str(out), "-k", "python3", "--cwd", str(tmp_path), "--no-progress-bar",
         "-p", "n_workers", "1"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    run_s = time.perf_counter() - t1
    print(f"\nbinder venv: install {install_s:.0f} s, quickstart {run_s:.0f} s")
    nb = load(out)
    assert proc.returncode == 0 and not errors(nb), proc.stderr[-3000:]
    text = "\n".join(cell_text(nb))
    assert "at least 80% of the bright reference sources found: True" in text
    assert str(venv) in subprocess.run([str(py), "-c", "import flint, sys; print(flint.__file__, sys.prefix)"], capture_output=True, text=True, env=env, cwd=tmp_path).stdout
