"""Issue 10 (hardening), CLI side: bad inputs give one line naming the flag or the file.

Each test runs ``flint`` the way a user does (``flint.cli.main`` in-process, or a
subprocess where a process must be watched) and first reproduces the reported failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flint.cli import main


def cli(*argv: str) -> tuple[int, str, str]:
    """``flint <argv>`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["-q", *argv])
    return rc, out.getvalue(), err.getvalue()


def _one_line_error(rc: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc != 0
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------- 2: server stop and PIDs


def test_server_stop_refuses_a_pid_that_is_not_its_server(tmp_path: Path) -> None:
    """A server.json naming an unrelated process (stale or reused PID): stop refuses, the process lives."""
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)  # its own group, like the server
    try:
        state = tmp_path / "state"
        state.mkdir()
        (state / "server.json").write_text(json.dumps({
            "api_url": "http://127.0.0.1:1/api", "pid": sleeper.pid, "state_dir": str(state),
            "database": "sqlite", "managed_postgres": False,
        }))
        rc, _, err = cli("server", "stop", "--state-dir", str(state))
        line = _one_line_error(rc, err)
        assert f"pid {sleeper.pid} is no longer the Prefect server" in line and "sleep 300" in line
        assert sleeper.poll() is None, "flint server stop signalled a process it did not start"
        assert (state / "server.json").exists()  # nothing changed
        rc, out, _ = cli("server", "status", "--state-dir", str(state))
        assert rc == 1 and "not running (stale state)" in out
    finally:
        sleeper.kill()
        sleeper.wait()


# ----------------------------------------------------------------- 10: YAML tags


@pytest.mark.parametrize("kind", ["strategy", "cluster"])
def test_yaml_python_tags_are_refused_as_tags(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "hacked"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"version: 1\ndefaults: !!python/object/apply:os.system ['touch {marker}']\n")
    if kind == "strategy":
        rc, _, err = cli("image", str(tmp_path / "x.ms"), "--strategy", str(bad))
    else:
        rc, _, err = cli("cluster", "check", str(bad))
    line = _one_line_error(rc, err)
    assert "YAML tags are not allowed (!!python/object/apply:os.system)" in line and str(bad) in line
    assert "indentation" not in line
    assert not marker.exists()


# ----------------------------------------------------------------- 7: flint demo checks first


def test_demo_checks_the_strategy_before_simulating(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrounds: {1: {wsclean: {nitre: 3}}}\n")
    out = tmp_path / "demo"
    t0 = time.perf_counter()
    rc, stdout, err = cli("demo", str(out), "--strategy", str(bad))
    line = _one_line_error(rc, err)
    assert f"{bad}: rounds.1.wsclean.nitre: unknown option" in line
    assert not out.exists(), "the demo simulated before checking its strategy"
    assert stdout == ""
    print(f"refused in {time.perf_counter() - t0:.2f} s")
    rc, _, err = cli("demo", str(out), "--cluster-config", str(tmp_path / "nope.yaml"))
    assert "cluster spec file not found" in _one_line_error(rc, err) and not out.exists()
    rc, _, err = cli("demo", str(out), "--n-beams", "0")
    assert _one_line_error(rc, err).startswith("flint demo: error: --n-beams:") and not out.exists()


# ----------------------------------------------------------------- 12: flint cluster


def test_cluster_check_lists_every_problem(tmp_path: Path) -> None:
    rc, out, err = cli("cluster", "check", "slurm")
    assert rc == 0 and out.strip() == "slurm: ok" and err == ""
    bad = tmp_path / "c.yaml"
    bad.write_text(
        "cluster_class: dask_jobqueue.SLURMCluster\n"
        "cluster_kwargs: {cores: 0, memroy: 4GB, walltime: '25:61:00'}\n"
        "adapt_kwargs: {minimum: 4, maximum: 2}\nextra: 1\n"
    )
    rc, out, err = cli("cluster", "check", str(bad))
    lines = err.splitlines()
    assert rc == 1 and out == ""
    assert all(line.startswith(f"flint cluster check: {bad}: ") for line in lines), err
    where = sorted(line.split(": ")[2] for line in lines)
    assert where == sorted(["extra", "cluster_kwargs.cores", "cluster_kwargs.memroy", "cluster_kwargs.walltime",
                            "cluster_kwargs.memory", "adapt_kwargs.minimum"]), err
    assert "did you mean 'memory'?" in err


def test_cluster_check_refuses_local_only_keywords_on_slurm(tmp_path: Path) -> None:
    """dashboard_address/host sit in dask-jobqueue's signatures but its clusters refuse them at
    start (the widget's Local -> SLURM switch left them behind and still said valid)."""
    spec = tmp_path / "switched.yaml"
    spec.write_text(
        "cluster_class: dask_jobqueue.SLURMCluster\n"
        "cluster_kwargs: {cores: 1, memory: 4GB, dashboard_address: ':0'}\n"
    )
    rc, out, err = cli("cluster", "check", str(spec))
    line = _one_line_error(rc, err)
    assert "cluster_kwargs.dashboard_address" in line and "scheduler_options" in line
    spec.write_text(
        "cluster_class: dask_jobqueue.SLURMCluster\n"
        "cluster_kwargs: {cores: 1, memory: 4GB, scheduler_options: {dashboard_address: ':0'}}\n"
    )
    assert cli("cluster", "check", str(spec))[0] == 0
    local = tmp_path / "local.yaml"
    local.write_text("cluster_class: distributed.LocalCluster\ncluster_kwargs: {n_workers: 1, dashboard_address: ':0'}\n")
    assert cli("cluster", "check", str(local))[0] == 0


def test_cluster_job_script_prints_the_sbatch_script_and_the_packaged_text_names_it(tmp_path: Path) -> None:
    from flint.prefect.clusters import example_spec_path

    text = example_spec_path("slurm").read_text()
    assert "flint flow job-script" not in text and "flint cluster job-script" in text
    spec = tmp_path / "s.yaml"
    spec.write_text(text.replace("memory: 64GB", "memory: 12GB").replace("job_cpu: 8", "job_cpu: 3"))
    proc = subprocess.run([sys.executable, "-m", "flint.cli", "-q", "cluster", "job-script", str(spec),
                           "--api-url", "http://10.0.0.1:4310/api"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PREFECT_API_AUTH_STRING": "s3cret"})
    assert proc.returncode == 0, proc.stderr
    script = proc.stdout
    assert script.startswith("#!/usr/bin/env bash")
    assert "#SBATCH --cpus-per-task=3" in script and "#SBATCH --account=YOUR_ACCOUNT" in script
    assert "export PREFECT_API_URL=http://10.0.0.1:4310/api" in script
    assert "tcp://SCHEDULER_ADDRESS:PORT" in script  # nothing started: a placeholder address
    assert "s3cret" not in script
    rc, _, err = cli("cluster", "job-script", "local")
    assert "job scripts exist only for dask_jobqueue classes" in _one_line_error(rc, err)


# ----------------------------------------------------------------- 4: no Python advice on the CLI

_PYTHON_ADVICE = ("=True", "=False", "pass None", "=None", "Options(", "with_options")


def test_cli_errors_name_flags_not_python_calls(tmp_path: Path) -> None:
    """A handful of bad inputs across the commands: each error is one line, with no Python advice."""
    ms = tmp_path / "x.ms"
    strategy = tmp_path / "s.yaml"
    strategy.write_text("version: 1\n")
    calls = [
        ["image", str(ms), "--niter", "-1"],
        ["image", str(ms), "--join-channels"],
        ["image", str(ms), "--fit-spectral-pol", "2"],
        ["image", str(ms), "--container", str(tmp_path / "none.sif")],
        ["image", str(ms), "--strategy", str(tmp_path / "none.yaml")],
        ["image", str(ms), "--strategy", str(strategy), "--round", "3"],
        ["find-sources", str(tmp_path / "none.fits")],
        ["find-sources", str(tmp_path / "none.fits"), "--blas-threads", "0"],
        ["demo", str(tmp_path / "d"), "--n-beams", "0"],
        ["cluster", "check", str(tmp_path / "none.yaml")],
        ["server", "start", "--state-dir", str(tmp_path / "srv"), "--web-concurrency", "2"],
        ["ms", "copy", str(ms), str(tmp_path / "y.ms")],
    ]
    for argv in calls:
        rc, _, err = cli(*argv)
        if rc == 2:  # argparse usage error (an unknown subcommand on this checkout)
            continue
        line = _one_line_error(rc, err)
        bad = [a for a in _PYTHON_ADVICE if a in line]
        assert not bad, f"flint {' '.join(argv)}: {line}"


def test_sigterm_stops_the_demo_and_the_prefect_server_it_started(tmp_path: Path) -> None:
    """``kill PID`` on a running ``flint demo``: it exits with 143 and takes the temporary
    Prefect API server (uvicorn) it started with it. Before, SIGTERM ended Python without its
    ``atexit`` handlers and the server was left running, owned by init."""
    import signal

    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-m", "flint.cli", "demo", str(tmp_path / "demo")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
    )
    server: list[psutil.Process] = []
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 600  # a hang guard: the server starts after the simulation
        while not server and proc.poll() is None and time.monotonic() < deadline:
            server = [c for c in parent.children(recursive=True) if "uvicorn" in " ".join(c.cmdline())]
            time.sleep(0.5)
        assert server, "the demo started no Prefect server"
        proc.send_signal(signal.SIGTERM)  # the demo's process alone, as `kill PID` does
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 143 and "flint: terminated" in err, (proc.returncode, err[-2000:])
        gone, alive = psutil.wait_procs(server, timeout=120)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        for p in server:  # only the server this test's demo started
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
