"""``flint nb run --sbatch`` against a real single-node SLURM: parameters injected, states, failures."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from nbtools import cell_text, errors, injected, load, write_notebook

from flint.batch import BatchOptions, run_status, submit_notebook, wait_for_run
from flint.cli import main

import conftest as _root
from services import SlurmService

if not hasattr(_root, "slurm_cluster"):  # until tests/conftest.py imports them
    from services import slurm_cluster  # noqa: F401

pytestmark = pytest.mark.integration

BODY = "import os, sys, time\ntime.sleep(pause)\nprint('job', os.environ.get('SLURM_JOB_ID'), 'beams', n_beams)\nprint(sys.executable)\n"
FAIL = "if n_beams > 5:\n    raise RuntimeError(f'{n_beams} beams is too many')\n"


@pytest.fixture()
def nb(tmp_path: Path) -> Path:
    return write_notebook(tmp_path / "job_demo.ipynb", "n_beams = 2\npause = 0.0\ncluster = ''", BODY, FAIL)


def test_sbatch_run_injects_parameters_and_records_job(slurm_cluster: SlurmService, nb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "slurm.yaml"
    spec.write_text(yaml.safe_dump({"cluster_class": "dask_jobqueue.SLURMCluster", "cluster_kwargs": {"cores": 1, "memory": "500MB", "walltime": "00:10:00", "queue": "debug"}}))
    out = tmp_path / "runs"
    # --export=NONE: the job starts without the submitter's PATH/VIRTUAL_ENV, as on a
    # cluster whose nodes do not share the login shell; the run's kernelspec still finds this Python
    rc = main(["nb", "run", str(nb), "-p", "n_beams", "3", "-p", "pause", "2", "--output", str(out), "--sbatch", str(spec), "--sbatch-args=--export=NONE", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["mode"] == "slurm" and report["job_id"].isdigit()
    assert report["state"] in ("PENDING", "RUNNING")
    job_id = report["job_id"]
    rd = Path(report["run_dir"])
    assert (rd / "slurm_job_id").read_text().strip() == job_id
    assert job_id in slurm_cluster.job_ids() or (rd / "exit_code").exists()
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = run_status(rd).state
        seen.add(state)
        if state in ("COMPLETED", "FAILED", "LOST"):
            break
        time.sleep(0.5)
    assert state == "COMPLETED", (rd / "job.log").read_text()
    assert "RUNNING" in seen  # the 2 s pause is seen through scontrol
    executed = load(rd / "job_demo.ipynb")
    assert "n_beams = 3" in injected(executed)
    assert f'cluster = "{rd / "cluster.yaml"}"' in injected(executed)  # the notebook's cluster parameter points at the copy
    printed = "".join(cell_text(executed))
    assert f"job {job_id} beams 3" in printed
    assert sys.executable in printed.splitlines()
    assert main(["nb", "list", "--output", str(out)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if rd.name in line)
    assert row.split()[1:4] == ["COMPLETED", "slurm", job_id]


def test_sbatch_failing_notebook_leaves_error_and_failed_state(slurm_cluster: SlurmService, nb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    rc = main(["nb", "run", str(nb), "-p", "n_beams", "8", "--output", str(out), "--sbatch-args=--mem=500M", "--wait"])
    assert rc == 1
    assert "error: RuntimeError: 8 beams is too many" in capsys.readouterr().out
    (run,) = [r for r in (run_status(d) for d in out.iterdir())]
    assert (run.state, run.exit_code) == ("FAILED", 1)
    assert errors(load(run.output_notebook)) == [("RuntimeError", "8 beams is too many")]


def test_sbatch_cancelled_job(slurm_cluster: SlurmService, nb: Path, tmp_path: Path) -> None:
    run = submit_notebook(nb, {"pause": 120.0}, BatchOptions(output_dir=tmp_path / "runs"), sbatch_args=["--mem=500M"])
    assert run.job_id is not None
    deadline = time.monotonic() + 60
    while run_status(run.run_dir).state != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
    slurm_cluster.run("scancel", run.job_id)
    final = wait_for_run(run, timeout=60, poll=0.5)
    assert final.state == "CANCELLED"
    assert final.exit_code is None


def test_sbatch_failure_removes_run_folder(slurm_cluster: SlurmService, nb: Path, tmp_path: Path) -> None:
    from flint.errors import FlintCommandError

    out = tmp_path / "runs"
    with pytest.raises(FlintCommandError, match="sbatch exited with status"):
        submit_notebook(nb, {}, BatchOptions(output_dir=out), sbatch_args=["--partition=nosuchpartition"])
    assert not any(out.iterdir())
