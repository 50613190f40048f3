"""Cluster builder: values typed into the form -> validated spec, YAML, job script; bad input blocks Start."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flint.prefect.clusters import load_cluster_spec
from flint_widgets.cluster_builder import ClusterBuilder, problems_of
from flint_widgets.cluster_panel import ClusterPanel


def _msg(builder: ClusterBuilder, group: str, key: str) -> str:
    return str(builder._messages[f"{group}.{key}"].value)


def test_default_local_form_is_valid_and_previews_yaml() -> None:
    b = ClusterBuilder()
    assert b.valid and b.problems == {}
    assert b.spec is not None and b.spec.is_local
    assert b.spec.cluster_kwargs == {"n_workers": 1, "threads_per_worker": 1, "processes": True, "memory_limit": "2GB"}
    assert yaml.safe_load(b.spec.to_yaml()) == b.spec.to_dict()
    assert "n_workers: 1" in b.yaml_preview.value
    assert "no job script" in b.script_preview.value
    assert not b.save_button.disabled


def test_slurm_fields_build_the_spec_and_job_script(tmp_path: Path) -> None:
    b = ClusterBuilder(platform="SLURM")
    b.set_values(
        cores="2", processes="1", job_cpu="8", memory="16GB", walltime="0-02:30:00", queue="work",
        account="ja3", interface="lo", job_extra_directives="--qos=high\n--exclusive",
        job_script_prologue="source /opt/venv/bin/activate", log_directory=str(tmp_path / "logs"),
    )
    b.adapt.value = True
    b.set_values(minimum="1", maximum="6")
    assert b.valid, b.problems
    spec = b.spec
    assert spec is not None and spec.cluster_class == "dask_jobqueue.SLURMCluster"
    kw = spec.cluster_kwargs
    assert kw["cores"] == 2 and kw["job_cpu"] == 8 and kw["memory"] == "16GB" and kw["walltime"] == "0-02:30:00"
    assert kw["job_extra_directives"] == ["--qos=high", "--exclusive"]
    assert spec.adapt_kwargs == {"minimum": 1, "maximum": 6}
    script = b.script_preview.value
    for expected in ("#SBATCH -p work", "#SBATCH -A ja3", "#SBATCH --cpus-per-task=8", "#SBATCH --qos=high", "#SBATCH -t 0-02:30:00", "source /opt/venv/bin/activate"):
        assert expected in script, expected
    # fields a class does not take are hidden and not written (HTCondor has no walltime/queue/account)
    b.platform.value = "HTCondor"
    assert "walltime" not in b.visible_fields() and "queue" not in b.visible_fields()
    assert b.spec is not None and "walltime" not in b.spec.cluster_kwargs


@pytest.mark.parametrize(
    ("field", "text", "words"),
    [
        ("cores", "-2", "positive whole number"),
        ("memory", "16", "with a unit"),
        ("walltime", "2h", "HH:MM:SS"),
        ("walltime", "01:75:00", "below 60"),
        ("cores", "two", "positive whole number"),
    ],
)
def test_bad_field_shows_inline_message_and_disables_start(field: str, text: str, words: str) -> None:
    b = ClusterBuilder(platform="SLURM")
    panel = ClusterPanel(b, refresh_interval=0)
    assert not panel.start_button.disabled
    b.set_values(**{field: text})
    assert not b.valid and field in b.problems
    assert words in _msg(b, "jobqueue", field)
    assert "problem" in b.status.value
    assert panel.start_button.disabled and b.save_button.disabled
    assert "Start is disabled" in panel.start_message.value
    # a click that gets through anyway (e.g. from code) starts nothing and says why
    panel.start_button.click()
    assert panel.cluster is None and panel.client is None
    assert "has problems" in panel.errors.text
    b.set_values(**{field: {"cores": "1", "memory": "4GB", "walltime": "01:00:00"}[field]})
    assert b.valid and not panel.start_button.disabled and _msg(b, "jobqueue", field) == ""


def test_adapt_max_below_min_and_several_problems_at_once() -> None:
    b = ClusterBuilder(platform="SLURM")
    b.adapt.value = True
    b.set_values(minimum="5", maximum="2", cores="-1", memory="4", walltime="4h")
    assert set(b.problems) == {"minimum", "cores", "memory", "walltime"}
    assert "larger than maximum" in _msg(b, "adapt", "minimum")
    assert "4 problems" in b.status.value


def test_problems_of_uses_the_loader_validator() -> None:
    spec, problems = problems_of({"cluster_class": "dask_jobqueue.SLURMCluster", "cluster_kwargs": {"cores": 1, "memory": "1GB", "walltme": "01:00:00"}})
    assert spec is None and "did you mean 'walltime'" in problems["walltme"]


def test_other_keywords_and_load_save_roundtrip(tmp_path: Path) -> None:
    b = ClusterBuilder(platform="SLURM")
    b.extra.value = "job_name: flint-test\njob_mem: 3GB"
    assert b.valid and b.spec is not None and b.spec.cluster_kwargs["job_name"] == "flint-test"
    b.path.value = str(tmp_path / "mine.yaml")
    b.save_button.click()
    assert b.errors.text == ""
    saved = load_cluster_spec(tmp_path / "mine.yaml")
    assert saved.to_dict() == b.spec.to_dict()
    # loading a file fills the form; unknown-to-the-form keywords land in 'other keywords'
    other = ClusterBuilder()
    other.path.value = str(tmp_path / "mine.yaml")
    other.load_button.click()
    assert other.platform.value == "SLURM" and other.spec is not None
    assert other.spec.to_dict() == saved.to_dict()
    assert "job_name: flint-test" in other.extra.value
    # broken YAML under other keywords: inline message, no spec
    other.extra.value = "job_name: [unclosed"
    assert not other.valid and "not valid YAML" in str(other._messages["extra"].value)


def test_presets_and_load_errors_are_shown(tmp_path: Path) -> None:
    b = ClusterBuilder()
    b.preset.value = "slurm"
    b.use_preset.click()
    assert b.platform.value == "SLURM" and b.spec is not None
    assert b.spec.to_dict() == load_cluster_spec("slurm").to_dict()
    assert b.fields["jobqueue"]["walltime"].value == "0-04:00:00"
    b.path.value = str(tmp_path / "missing.yaml")
    b.load_button.click()
    assert "missing.yaml: cluster spec file not found" in b.errors.text
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster_class: dask_jobqueue.SLURMCluster\ncluster_kwargs: {cores: 0, memory: 1GB}\n")
    b.errors.clear()
    b.path.value = str(bad)
    b.load_button.click()
    assert "cluster_kwargs.cores" in b.errors.text
    # saving an invalid form writes nothing
    b.set_values(memory="lots")
    b.path.value = str(tmp_path / "never.yaml")
    b.save_button.click()
    assert not (tmp_path / "never.yaml").exists() and "fix them before saving" in b.errors.text
