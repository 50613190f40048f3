"""flint.batch and ``flint nb``: parameter checks, local papermill runs, run folders, states."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from nbtools import cell_text, errors, injected, load, write_notebook

from flint.batch import (
    BatchOptions,
    collect_parameters,
    list_runs,
    prepare_run,
    read_parameters,
    run_notebook,
    run_status,
    sbatch_directives,
    walltime_seconds,
)
from flint.cli import main
from flint.errors import FlintConfigError, FlintInputError, FlintOptionsError

PARAMS = """\
%matplotlib inline
n_beams = 2  # beams to simulate
robust = -0.5
field = "SIM_FIELD"
beams = [0, 1]
weights = [1, 2.5]
show = True
limits = {"lo": 1}
label: str | None = None
out_dir = str("work")
"""


@pytest.fixture()
def nb(tmp_path: Path) -> Path:
    body = (
        "import sys, json\n"
        "print(json.dumps({'n_beams': n_beams, 'robust': robust, 'field': field, 'beams': beams, 'label': label, 'show': show}))\n"
        "print(sys.executable)\n"
    )
    return write_notebook(tmp_path / "demo.ipynb", PARAMS, body, "if n_beams > 5:\n    raise ValueError(f'too many beams: {n_beams}')\n")


def test_read_parameters_types_defaults_help(nb: Path) -> None:
    p = read_parameters(nb)
    assert list(p) == ["n_beams", "robust", "field", "beams", "weights", "show", "limits", "label", "out_dir"]
    assert (p["n_beams"].kind, p["n_beams"].default, p["n_beams"].help) == ("int", 2, "beams to simulate")
    assert (p["robust"].kind, p["robust"].default) == ("float", -0.5)
    assert (p["beams"].kind, p["beams"].item_kind) == ("list", "int")
    assert p["weights"].item_kind == "float"  # ints and floats mixed: floats
    assert (p["show"].kind, p["limits"].kind) == ("bool", "dict")
    assert (p["label"].kind, p["label"].optional) == ("str", True)
    assert (p["out_dir"].kind, p["out_dir"].source) == ("any", 'str("work")')  # not a literal


def test_no_parameters_cell(tmp_path: Path) -> None:
    path = tmp_path / "plain.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": []}], "metadata": {}, "nbformat": 4, "nbformat_minor": 4}))
    assert read_parameters(path) == {}
    with pytest.raises(FlintOptionsError, match="has no parameter 'x'.*tag a cell 'parameters'"):
        collect_parameters(read_parameters(path), pairs=[("x", "2")])


def test_not_a_notebook(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(FlintInputError, match="bad.ipynb is not a Jupyter notebook"):
        read_parameters(bad)
    with pytest.raises(FlintInputError, match="does not exist"):
        read_parameters(tmp_path / "missing.ipynb")


def test_cli_strings_become_declared_types(nb: Path, tmp_path: Path) -> None:
    decl = read_parameters(nb)
    got = collect_parameters(
        decl,
        pairs=[("n_beams", "3"), ("robust", "1"), ("field", "123"), ("beams", "[2, 3]"), ("show", "no"), ("label", "None")],
    )
    assert got == {"n_beams": 3, "robust": 1.0, "field": "123", "beams": [2, 3], "show": False, "label": None}
    assert isinstance(got["robust"], float)
    pfile = tmp_path / "p.yaml"
    pfile.write_text("n_beams: 4\nweights: [1, 2]\n")
    got = collect_parameters(decl, yaml_file=pfile, yaml_text="n_beams: 5", pairs=[("robust", "0.25")])
    assert got == {"n_beams": 5, "weights": [1.0, 2.0], "robust": 0.25}  # -p over -y over -f


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"pairs": [("n_beam", "3")]}, "has no parameter 'n_beam' \\(did you mean 'n_beams'\\?\\)"),
        ({"pairs": [("n_beams", "3.5")]}, "'n_beams' expects int \\(default 2\\), got '3.5'"),
        ({"pairs": [("show", "maybe")]}, "'show' expects bool"),
        ({"pairs": [("beams", "[0, 'x']")]}, "'beams' expects list of int .* item 1 is str 'x'"),
        ({"pairs": [("limits", "[1]")]}, "'limits' expects dict"),
        ({"yaml_text": "field: 123"}, "'field' expects str \\(default \"SIM_FIELD\"\\), got int 123"),
        ({"yaml_text": "n_beams: true"}, "'n_beams' expects int .* got bool True"),
        ({"yaml_text": "robust: null"}, "'robust' expects float .* got None"),
        ({"yaml_text": "[1, 2]"}, "expected a mapping"),
    ],
)
def test_bad_parameters_rejected(nb: Path, kw: dict, message: str) -> None:
    with pytest.raises(FlintInputError, match=message):
        collect_parameters(read_parameters(nb), **kw)


def test_bad_parameters_rejected_before_anything_runs(nb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    with pytest.raises(FlintOptionsError, match="has no parameter 'nbeams'"):
        run_notebook(nb, {"nbeams": 3}, BatchOptions(output_dir=out))
    with pytest.raises(FlintOptionsError, match="'robust' expects float"):
        prepare_run(nb, {"robust": "-0.5"}, BatchOptions(output_dir=out), mode="slurm")
    rc = main(["nb", "run", str(nb), "-p", "n_beams", "two", "--output", str(out), "--sbatch-args=--partition=debug"])
    assert rc == 1
    assert "'n_beams' expects int (default 2), got 'two'" in capsys.readouterr().err
    with pytest.raises(FlintConfigError, match="not valid YAML"):
        bad = tmp_path / "cluster.yaml"
        bad.write_text("cluster_kwargs: [unclosed")
        prepare_run(nb, {}, BatchOptions(output_dir=out), cluster_yaml=bad)
    assert not out.exists() or not any(out.iterdir())  # no run folder was written


def test_walltime_and_sbatch_directives(tmp_path: Path) -> None:
    assert [walltime_seconds(t) for t in ("30", "1:30", "02:00:00", "1-00", "0-04:00:00")] == [1800, 90, 7200, 86400, 14400]
    with pytest.raises(FlintOptionsError, match="not a SLURM time limit"):
        walltime_seconds("2 hours")
    spec = {
        "cluster_class": "dask_jobqueue.SLURMCluster",
        "cluster_kwargs": {
            "cores": 1,
            "job_cpu": 8,
            "memory": "64GB",
            "walltime": "0-04:00:00",
            "queue": "work",
            "account": "ja3",
            "job_extra_directives": ["--qos=high"],
            "job_script_prologue": ["module load wsclean"],
        },
    }
    directives, prologue = sbatch_directives(spec, BatchOptions(), "flint-nb-x")
    assert directives == [
        "--job-name=flint-nb-x",
        "--partition=work",
        "--account=ja3",
        "--time=0-04:00:00",
        "--cpus-per-task=8",
        f"--mem={-(-64 * 10**9 // 2**20)}M",
        "--qos=high",
    ]
    assert prologue == ["module load wsclean"]
    directives, _ = sbatch_directives(spec, BatchOptions(walltime="00:10:00"), "j")
    assert "--time=00:10:00" in directives  # the option wins over the YAML
    local = {"cluster_class": "distributed.LocalCluster", "cluster_kwargs": {"n_workers": 2}}
    assert sbatch_directives(local, BatchOptions(), "j") == (["--job-name=j"], [])


def test_prepared_run_folder_and_job_script(nb: Path, tmp_path: Path) -> None:
    cluster = tmp_path / "slurm.yaml"
    cluster.write_text(yaml.safe_dump({"cluster_class": "dask_jobqueue.SLURMCluster", "cluster_kwargs": {"cores": 1, "memory": "1GB", "queue": "debug"}}))
    opts = BatchOptions(output_dir=tmp_path / "runs", execution_timeout=77, autosave_cell_every=5, walltime="00:05:00")
    run = prepare_run(nb, {"n_beams": 3}, opts, cluster_yaml=cluster, mode="slurm")
    rd = run.run_dir
    assert rd.parent == (tmp_path / "runs").resolve() and rd.name.startswith("demo-")
    assert {p.name for p in rd.iterdir()} == {"input.ipynb", "parameters.yaml", "cluster.yaml", "versions.yaml", "run.yaml", "jupyter", "job.sh"}
    assert yaml.safe_load((rd / "parameters.yaml").read_text()) == {"n_beams": 3}
    assert (rd / "cluster.yaml").read_text() == cluster.read_text()
    versions = yaml.safe_load((rd / "versions.yaml").read_text())
    from importlib.metadata import version

    assert versions["executable"] == sys.executable
    assert versions["packages"]["papermill"] == version("papermill")
    kernel = json.loads((rd / "jupyter/kernels/python3/kernel.json").read_text())
    assert kernel["argv"][:3] == [sys.executable, "-m", "ipykernel_launcher"]
    script = (rd / "job.sh").read_text()
    assert "#SBATCH --partition=debug" in script and "#SBATCH --time=00:05:00" in script
    assert f"#SBATCH --output={rd}/job.log" in script
    assert f"{sys.executable} -m papermill input.ipynb demo.ipynb -f parameters.yaml -k python3" in script
    assert "--autosave-cell-every 5" in script and "--execution-timeout 77" in script
    assert 'JUPYTER_PATH="$RUN_DIR/jupyter' in script
    assert run_status(rd).state == "PREPARED"


def test_local_run_injects_parameters_in_this_python(nb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    rc = main(["nb", "run", str(nb), "-p", "n_beams", "4", "-y", "beams: [5, 6]", "--output", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0, report
    assert report["state"] == "COMPLETED" and report["exit_code"] == 0 and report["mode"] == "local"
    executed = load(Path(report["output_notebook"]))
    assert "n_beams = 4" in injected(executed) and "beams = [5, 6]" in injected(executed)
    printed = cell_text(executed)
    values = json.loads(next(t for t in printed if t.startswith("{")).splitlines()[0])
    assert values == {"n_beams": 4, "robust": -0.5, "field": "SIM_FIELD", "beams": [5, 6], "label": None, "show": True}
    assert any(line == sys.executable for t in printed for line in t.splitlines())  # the kernel is this Python
    assert errors(executed) == []
    runs = list_runs(out)
    assert [r.state for r in runs] == ["COMPLETED"] and runs[0].parameters == {"n_beams": 4, "beams": [5, 6]}
    assert main(["nb", "list", "--output", str(out)]) == 0
    listing = capsys.readouterr().out
    assert runs[0].run_dir.name in listing and "COMPLETED" in listing and "local" in listing


def test_failing_notebook_keeps_output_and_exits_nonzero(nb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    rc = main(["nb", "run", str(nb), "-p", "n_beams", "9", "--output", str(out)])
    assert rc == 1
    assert "error: ValueError: too many beams: 9" in capsys.readouterr().out
    (run,) = list_runs(out)
    assert (run.state, run.exit_code, run.error) == ("FAILED", 1, "ValueError: too many beams: 9")
    executed = load(run.output_notebook)
    assert errors(executed) == [("ValueError", "too many beams: 9")]
    assert any("n_beams" in t for t in cell_text(executed))  # cells before the error ran and kept their output
    assert "too many beams" in run.log.read_text()


def test_cell_timeout_fails_the_run(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "slow.ipynb", "seconds = 60", "import time\ntime.sleep(seconds)")
    run = run_notebook(nb, {}, BatchOptions(output_dir=tmp_path / "runs", execution_timeout=2))
    assert run.state == "FAILED" and run.exit_code != 0
    assert run.output_notebook.exists()
    assert "CellTimeoutError: A cell timed out while it was being executed, after 2 seconds" in run.log.read_text()
