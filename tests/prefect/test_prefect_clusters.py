"""Cluster specification: loading, validation messages, job-script preview (no services)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flint.errors import FlintConfigError
from flint.prefect.clusters import (
    ClusterSpec,
    check_scheduler_reachable,
    example_specs,
    job_script,
    load_cluster_spec,
    valid_cluster_kwargs,
    validate_spec,
)

SLURM = "dask_jobqueue.SLURMCluster"


def _slurm(**kw: object) -> dict:
    return {"cluster_class": SLURM, "cluster_kwargs": {"cores": 1, "memory": "1GB", **kw}}


def test_import_is_cheap_and_prefect_free() -> None:
    code = (
        "import sys, flint.prefect.clusters, flint.prefect;"
        "bad = [m for m in ('prefect', 'prefect_dask', 'distributed', 'dask_jobqueue', 'ipywidgets') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_packaged_examples_validate() -> None:
    assert {"local", "slurm"} <= set(example_specs())
    local = load_cluster_spec("local")
    assert local.is_local and local.cluster_kwargs["n_workers"] == 2
    slurm = load_cluster_spec("slurm")
    assert slurm.is_jobqueue
    kw = slurm.cluster_kwargs
    for key in ("job_cpu", "memory", "walltime", "job_extra_directives", "interface", "log_directory", "job_script_prologue", "local_directory"):
        assert key in kw, key
    assert kw["processes"] == 1 and slurm.adapt_kwargs == {"minimum": 1, "maximum": 36}


def test_roundtrip_yaml(tmp_path: Path) -> None:
    spec = validate_spec(_slurm(walltime="01:00:00"), source="x")
    p = tmp_path / "c.yaml"
    p.write_text(spec.to_yaml())
    again = load_cluster_spec(p)
    assert again.to_dict() == spec.to_dict()
    assert again.runner_kwargs()["cluster_class"] == SLURM


def test_job_script_preview_contains_resources_and_api_url() -> None:
    spec = validate_spec(_slurm(job_cpu=4, walltime="0-02:30:00", job_extra_directives=["--qos=high"], interface="lo"))
    script = job_script(spec, api_url="http://127.0.0.1:4999/api")
    assert "#SBATCH --cpus-per-task=4" in script
    assert "#SBATCH -t 0-02:30:00" in script
    assert "#SBATCH --qos=high" in script
    assert "export PREFECT_API_URL=http://127.0.0.1:4999/api" in script
    assert "--interface lo" in script
    # the auth string is read from its file by the job, never written into the script
    script = job_script(spec, api_url="http://h:1/api", auth_file="/home/u/.flint/auth")
    assert 'PREFECT_API_AUTH_STRING="$(cat /home/u/.flint/auth)"' in script


def test_job_script_refuses_local() -> None:
    with pytest.raises(FlintConfigError, match="only for dask_jobqueue"):
        job_script(load_cluster_spec("local"))


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (_slurm(walltme="01:00:00"), r"cluster_kwargs\.walltme: unknown keyword .*did you mean 'walltime'"),
        (_slurm(job_cpus=4), r"did you mean 'job_cpu'"),  # a SLURMJob keyword
        ({"cluster_class": "distributed.LocalCluster", "cluster_kwargs": {"n_worker": 2}}, r"did you mean 'n_workers'"),
        ({"cluster_class": "distributed.LocalClustr"}, r"not an allowed Dask cluster class; did you mean 'distributed.LocalCluster'"),
        ({"cluster_class": "os.system"}, r"'os.system' is not an allowed"),
        ({"cluster_class": "dask_jobqueue.SLURMClster"}, r"did you mean 'SLURMCluster'"),
        ({**_slurm(), "adapt_kwargs": {"minimum": 4, "maximum": 2}}, r"adapt_kwargs\.minimum: minimum \(4\) is larger than maximum \(2\)"),
        ({**_slurm(), "adapt_kwargs": {"minimum_jobs": 3, "maximum_jobs": 1}}, r"minimum_jobs \(3\) is larger"),
        ({**_slurm(), "adapt_kwargs": {"minimun": 1}}, r"did you mean 'minimum'"),
        (_slurm(cores=0), r"cluster_kwargs\.cores: must be a positive whole number"),
        (_slurm(cores="4"), r"cluster_kwargs\.cores: must be a positive whole number"),
        (_slurm(processes=2), r"processes: 2 worker processes cannot share 1 cores"),
        ({"cluster_class": SLURM, "cluster_kwargs": {"cores": 1, "memory": "16"}}, r"memory: must be an amount with a unit such as '4GB'"),
        ({"cluster_class": SLURM, "cluster_kwargs": {"cores": 1}}, r"cluster_kwargs\.memory: is required"),
        (_slurm(walltime="4h"), r"walltime: use HH:MM:SS or D-HH:MM:SS"),
        (_slurm(walltime="01:75:00"), r"minutes and seconds must be below 60"),
        (_slurm(walltime="1-30:00:00"), r"hours must be below 24"),
        (_slurm(walltime=3600), r"must be a quoted string"),
        (_slurm(env_extra=["module load x"]), r"renamed in dask-jobqueue; use 'job_script_prologue'"),
        (_slurm(job_extra_directives="--qos=x"), r"must be a list of strings"),
        (_slurm(asynchronous=True), r"is set by flint"),
        ({"adress": "tcp://h:1"}, r"adress: unknown key; did you mean 'address'"),
        ({"address": "tcp://h:1", "cluster_class": SLURM}, r"address: connects to a running scheduler; remove cluster_class"),
        ({"address": "myhost"}, r"address: 'myhost' is not a scheduler address"),
        ({"cluster_kwargs": {}}, r"cluster_class: missing"),
    ],
)
def test_bad_specs_name_key_and_fix(data: dict, pattern: str) -> None:
    with pytest.raises(FlintConfigError, match=pattern) as info:
        validate_spec(data, source="my.yaml")
    assert str(info.value).startswith("my.yaml: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["4GB", "500MiB", "1.5 TB", "64G"])
def test_memory_units_accepted(value: str) -> None:
    assert validate_spec(_slurm(memory=value)).cluster_kwargs["memory"] == value


@pytest.mark.parametrize("value", ["00:10:00", "48:00:00", "1-00:00:00", "7-23:59:59"])
def test_walltimes_accepted(value: str) -> None:
    assert validate_spec(_slurm(walltime=value)).cluster_kwargs["walltime"] == value


def test_allowlist_option_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"cluster_class": "distributed.SpecCluster", "cluster_kwargs": {"workers": {}}}
    with pytest.raises(FlintConfigError, match="not an allowed"):
        validate_spec(data)
    spec = validate_spec(data, allowed_classes=["distributed.SpecCluster"])
    assert spec.cluster_class == "distributed.SpecCluster"
    with pytest.raises(FlintConfigError, match=r"did you mean 'workers'"):
        validate_spec({**data, "cluster_kwargs": {"workers_": {}}}, allowed_classes=["distributed.SpecCluster"])
    monkeypatch.setenv("FLINT_ALLOWED_CLUSTER_CLASSES", "distributed.SpecCluster")
    assert validate_spec(data).cluster_class == "distributed.SpecCluster"


def test_valid_kwargs_include_job_class() -> None:
    names = valid_cluster_kwargs(SLURM)
    assert {"walltime", "job_cpu", "cores", "memory", "interface", "scheduler_options"} <= set(names)


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("cluster_class: distributed.LocalCluster\ncluster_kwargs:\n  n_workers: [1, 2\n")
    with pytest.raises(FlintConfigError, match=rf"{p}: not valid YAML at line \d+"):
        load_cluster_spec(p)
    p.write_text("")
    with pytest.raises(FlintConfigError, match="the file is empty"):
        load_cluster_spec(p)
    p.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(FlintConfigError, match=r"YAML tags are not allowed \(!!python/object/apply:os.system\)"):
        load_cluster_spec(p)
    with pytest.raises(FlintConfigError, match="not found"):
        load_cluster_spec(tmp_path / "nope.yaml")


def test_unreachable_scheduler_address() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = validate_spec({"address": f"tcp://127.0.0.1:{port}"}, source="sched.yaml")
    assert isinstance(spec, ClusterSpec)
    with pytest.raises(FlintConfigError, match=rf"sched.yaml: address: no Dask scheduler answers at tcp://127.0.0.1:{port}"):
        check_scheduler_reachable(spec.address or "", timeout=2, source=spec.source)
