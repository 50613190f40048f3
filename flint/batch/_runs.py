"""Batch runs of notebooks: one folder per run, a job script that runs papermill.

Every run, local or on SLURM, is prepared the same way. A new folder
``<output_dir>/<notebook>-<YYYYmmddTHHMMSS>-<xxxx>/`` is written atomically with

``input.ipynb``        a copy of the notebook as it was submitted
``parameters.yaml``    the parameters given (checked against the notebook's ``parameters`` cell)
``cluster.yaml``       the cluster YAML, when one was given
``versions.yaml``      Python, its executable, host and every installed package's version
``run.yaml``           what was run, how, and when
``jupyter/kernels/python3/kernel.json``  a kernelspec whose ``argv`` is this very Python
``job.sh``             the script that runs papermill (``sbatch job.sh`` or ``bash job.sh``)

The job script points ``JUPYTER_PATH`` at the run's own kernelspec, so the kernel is
the submitter's Python wherever the job lands (no "kernel not found", no ``python``
from the wrong ``PATH``). While it runs it writes ``pid`` and ``started``; the executed
notebook ``<notebook>.ipynb`` is saved after every cell (and every
``autosave_cell_every`` seconds during long cells); at the end ``exit_code``. Output of
the job goes to ``job.log``; SLURM runs also record ``slurm_job_id``. A failing cell
leaves the executed notebook with its traceback and a non-zero ``exit_code``.

The state of a run (:func:`run_status`) comes from these markers and, while a SLURM job
has not finished, from ``scontrol show job``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from flint.batch._params import check_parameters, read_notebook, read_parameters
from flint.errors import (
    FlintCommandError,
    FlintConfigError,
    FlintError,
    FlintInputError,
    FlintOptionsError,
)
from flint.io import atomic_path, atomic_write_text, load_yaml_file, remove_path
from flint.options import BaseOptions
from flint.runner import run_command

__all__ = [
    "BatchOptions",
    "BatchRun",
    "prepare_run",
    "run_notebook",
    "submit_notebook",
    "run_status",
    "list_runs",
    "wait_for_run",
    "sbatch_directives",
    "notebook_error",
    "walltime_seconds",
    "TERMINAL_STATES",
    "DEFAULT_OUTPUT_DIR",
]

logger = logging.getLogger(__name__)

#: where runs go when no output folder is given (``$FLINT_RUNS_DIR`` overrides)
DEFAULT_OUTPUT_DIR = Path(os.environ.get("FLINT_RUNS_DIR", "flint-runs"))
#: states after which a run will not change any more
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "LOST"})
_KERNEL_NAME = "python3"
_SLURM_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "RESIZING"}
_SLURM_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "RESV_DEL_HOLD"}
_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


class BatchOptions(BaseOptions):
    """How a notebook batch run is executed."""

    output_dir: Path = DEFAULT_OUTPUT_DIR
    """Folder under which every run gets its own sub-folder."""
    execution_timeout: int | None = Field(default=3600, gt=0)
    """Seconds one cell may run before the run fails (``None``: no limit)."""
    start_timeout: int = Field(default=120, gt=0)
    """Seconds to wait for the kernel to start."""
    autosave_cell_every: int = Field(default=10, ge=0)
    """Save the executed notebook every this many seconds while a long cell runs (0: after each cell only)."""
    walltime: str | None = None
    """Limit for the whole run (SLURM syntax: ``MM``, ``HH:MM:SS``, ``D-HH:MM:SS``); ``sbatch --time`` on SLURM, ``timeout`` locally. Overrides the cluster YAML's walltime."""
    job_name: str | None = None
    """SLURM job name (default ``flint-nb-<notebook>``)."""
    log_output: bool = True
    """Copy what the cells print into the run's ``job.log``."""


@dataclass(frozen=True)
class BatchRun:
    """A run folder and what is known about it."""

    run_dir: Path
    notebook: Path
    """The notebook that was submitted (its copy is ``run_dir/input.ipynb``)."""
    output_notebook: Path
    """The executed notebook (exists once the run has started)."""
    mode: str
    """``local`` or ``slurm``."""
    state: str
    """PREPARED, PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, LOST or UNKNOWN."""
    parameters: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    exit_code: int | None = None
    error: str | None = None
    """``Exception: message`` of the first cell that failed."""
    created: str = ""
    started: str | None = None
    finished: str | None = None

    @property
    def job_script(self) -> Path:
        return self.run_dir / "job.sh"

    @property
    def log(self) -> Path:
        return self.run_dir / "job.log"

    @property
    def finished_ok(self) -> bool:
        return self.state == "COMPLETED"


def walltime_seconds(text: str, where: str = "walltime") -> int:
    """Seconds in a SLURM time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``).

    Examples
    --------
    >>> walltime_seconds("0-01:30:00"), walltime_seconds("90"), walltime_seconds("01:00:00")
    (5400, 5400, 3600)
    """
    m = _WALLTIME.match(str(text).strip())
    if not m:
        raise FlintOptionsError(f"{where}: {text!r} is not a SLURM time limit; write e.g. '0-02:00:00', '02:00:00' or '120' (minutes)")
    days, a, b, c = m.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        return int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    if c is not None:  # HH:MM:SS
        return int(a) * 3600 + int(b) * 60 + int(c)
    if b is not None:  # MM:SS
        return int(a) * 60 + int(b)
    return int(a) * 60  # MM


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _safe_name(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "notebook"


def _load_cluster_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FlintInputError(f"cluster YAML {path} does not exist")
    data = load_yaml_file(path)
    if not isinstance(data, dict):
        raise FlintConfigError(f"{path}: expected a mapping with 'cluster_class' and 'cluster_kwargs'")
    kwargs = data.get("cluster_kwargs", {}) or {}
    if not isinstance(kwargs, dict):
        raise FlintConfigError(f"{path}: 'cluster_kwargs' must be a mapping, got {type(kwargs).__name__}")
    return data


def _mem_mb(value: Any, where: str) -> int:
    from dask.utils import parse_bytes

    try:
        nbytes = parse_bytes(value) if isinstance(value, str) else int(value)
    except (ValueError, TypeError):
        raise FlintConfigError(f"{where}: memory {value!r} is not a size; write e.g. '16GB'") from None
    return max(1, -(-int(nbytes) // 2**20))


def sbatch_directives(cluster: Mapping[str, Any] | None, options: BatchOptions, job_name: str, where: str = "cluster YAML") -> tuple[list[str], list[str]]:
    """``#SBATCH`` options and prologue lines for the notebook's job.

    From a ``dask_jobqueue.SLURMCluster`` spec: ``queue`` (partition), ``account``,
    ``walltime``, ``memory``, ``job_cpu`` (else ``cores``), ``job_extra_directives`` and
    ``job_script_prologue`` (e.g. ``module load``). ``options.walltime`` wins over the YAML.

    Examples
    --------
    >>> spec = {"cluster_class": "dask_jobqueue.SLURMCluster",
    ...         "cluster_kwargs": {"cores": 1, "job_cpu": 4, "memory": "4GB", "queue": "work"}}
    >>> sbatch_directives(spec, BatchOptions(walltime="01:00:00"), "nb")[0]
    ['--job-name=nb', '--partition=work', '--time=01:00:00', '--cpus-per-task=4', '--mem=3815M']
    """
    kw: Mapping[str, Any] = {}
    if cluster and str(cluster.get("cluster_class", "")).endswith("SLURMCluster"):
        kw = cluster.get("cluster_kwargs") or {}
    opts = [f"--job-name={job_name}"]
    if kw.get("queue"):
        opts.append(f"--partition={kw['queue']}")
    if kw.get("account"):
        opts.append(f"--account={kw['account']}")
    walltime = options.walltime or kw.get("walltime")
    if walltime:
        walltime_seconds(str(walltime), f"{where}: walltime")
        opts.append(f"--time={walltime}")
    cpus = kw.get("job_cpu") or kw.get("cores")
    if cpus:
        opts.append(f"--cpus-per-task={int(cpus)}")
    if kw.get("memory"):
        opts.append(f"--mem={_mem_mb(kw['memory'], where)}M")
    for extra in kw.get("job_extra_directives") or []:
        opts.append(str(extra).removeprefix("#SBATCH").strip())
    prologue = [str(line) for line in (kw.get("job_script_prologue") or [])]
    return opts, prologue


def _versions() -> dict[str, Any]:
    from importlib import metadata

    pkgs = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            pkgs[name] = dist.version
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "prefix": sys.prefix,
        "host": socket.gethostname(),
        "platform": sys.platform,
        "packages": dict(sorted(pkgs.items(), key=lambda kv: kv[0].lower())),
    }


def _require_runtime() -> None:
    for module, why in (("papermill", "runs the notebook"), ("ipykernel", "is the notebook's kernel")):
        if importlib.util.find_spec(module) is None:
            raise FlintInputError(
                f"{module} ({why}) is not installed for {sys.executable}; install it with: pip install 'flint[lab]'"
            )


def _kernelspec() -> dict[str, Any]:
    return {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": True, "flint_python": sys.executable},
    }


def _marker(run_dir: str, name: str, command: str) -> str:
    return f'{command} > "{run_dir}/.{name}.tmp" && mv -f "{run_dir}/.{name}.tmp" "{run_dir}/{name}"'


def _job_script(run_dir: Path, output_nb: str, options: BatchOptions, mode: str, directives: Sequence[str], prologue: Sequence[str], notebook: Path) -> str:
    q = shlex.quote
    rd = str(run_dir)
    argv = [sys.executable, "-m", "papermill", "input.ipynb", output_nb, "-f", "parameters.yaml", "-k", _KERNEL_NAME, "--cwd", rd]
    argv += ["--autosave-cell-every", str(options.autosave_cell_every), "--start-timeout", str(options.start_timeout)]
    if options.execution_timeout is not None:
        argv += ["--execution-timeout", str(options.execution_timeout)]
    argv += ["--log-output" if options.log_output else "--no-log-output", "--no-progress-bar"]
    if mode == "local" and options.walltime:
        argv = ["timeout", "--kill-after=30", str(walltime_seconds(options.walltime)), *argv]
    lines = ["#!/bin/bash"]
    if mode == "slurm":
        lines += [f"#SBATCH {d}" for d in directives]
        lines += [f"#SBATCH --output={rd}/job.log", f"#SBATCH --chdir={rd}"]
    lines += [
        f"# Written by flint on {_now()}: runs {notebook.name} with papermill in the Python",
        "# environment that prepared it. Submit with 'sbatch job.sh' or run with 'bash job.sh'.",
        "set -u",
        f"RUN_DIR={q(rd)}",
        'cd "$RUN_DIR" || exit 1',
    ]
    if mode == "local":
        lines.append('exec >>"$RUN_DIR/job.log" 2>&1')
    lines += [
        '# the run\'s own kernelspec: the kernel is this Python, wherever the job lands',
        'export JUPYTER_PATH="$RUN_DIR/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"',
        "export PYTHONUNBUFFERED=1",
        *prologue,
        _marker("$RUN_DIR", "pid", 'echo "$(hostname) $$"'),
        _marker("$RUN_DIR", "started", "date -Iseconds"),
        " ".join(q(a) for a in argv),
        "rc=$?",
        _marker("$RUN_DIR", "exit_code", 'echo "$rc"'),
        _marker("$RUN_DIR", "finished", "date -Iseconds"),
        'exit "$rc"',
        "",
    ]
    return "\n".join(lines)


def prepare_run(
    notebook: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    options: BatchOptions | None = None,
    *,
    cluster_yaml: str | os.PathLike[str] | None = None,
    mode: str = "local",
) -> BatchRun:
    """Check the parameters and write a new run folder (see the module docstring).

    Parameters
    ----------
    notebook
        The ``.ipynb`` to run.
    parameters
        Values for parameters declared in its ``parameters`` cell (typed: ``int``,
        ``float``, ``str``, lists, ...); unknown names and wrong types raise before
        anything is written.
    options
        Timeouts, output folder, job name.
    cluster_yaml
        A cluster YAML: copied into the run; a ``dask_jobqueue.SLURMCluster`` spec also
        sets the job's partition/account/CPUs/memory/walltime. When the notebook declares
        a ``cluster`` parameter that was not given, it is set to the copy's path.
    mode
        ``local`` or ``slurm``.
    """
    if mode not in ("local", "slurm"):
        raise FlintOptionsError(f"mode must be 'local' or 'slurm', got {mode!r}")
    options = options or BatchOptions()
    nb_path = Path(notebook).resolve()
    nb = read_notebook(nb_path)
    declared = read_parameters(nb)
    values = check_parameters(declared, dict(parameters or {}), where=str(nb_path))
    if options.walltime:
        walltime_seconds(options.walltime, "BatchOptions.walltime")
    cluster = None
    if cluster_yaml is not None:
        cluster = _load_cluster_yaml(Path(cluster_yaml))
    _require_runtime()
    stem = _safe_name(nb_path.stem)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    run_dir = (Path(options.output_dir) / f"{stem}-{stamp}-{secrets.token_hex(2)}").resolve()
    if cluster is not None and "cluster" in declared and "cluster" not in values:
        values["cluster"] = check_parameters(declared, {"cluster": str(run_dir / "cluster.yaml")})["cluster"]
        logger.info("parameter 'cluster' set to the run's copy of %s", cluster_yaml)
    job_name = options.job_name or f"flint-nb-{stem}"
    directives, prologue = sbatch_directives(cluster, options, job_name, where=str(cluster_yaml)) if mode == "slurm" else ([], [])
    output_nb = f"{stem}.ipynb" if stem != "input" else "output.ipynb"
    created = _now()
    info = {
        "notebook": str(nb_path),
        "output_notebook": output_nb,
        "mode": mode,
        "created": created,
        "python": sys.executable,
        "kernel": _KERNEL_NAME,
        "options": json.loads(options.model_dump_json()),
        "cluster_yaml": str(Path(cluster_yaml).resolve()) if cluster_yaml is not None else None,
        "sbatch_directives": directives,
    }
    with atomic_path(run_dir, overwrite=False) as tmp:
        tmp.mkdir()
        shutil.copyfile(nb_path, tmp / "input.ipynb")
        (tmp / "parameters.yaml").write_text(yaml.safe_dump(values, sort_keys=False) if values else "{}\n")
        if cluster_yaml is not None:
            shutil.copyfile(cluster_yaml, tmp / "cluster.yaml")
        (tmp / "versions.yaml").write_text(yaml.safe_dump(_versions(), sort_keys=False))
        kdir = tmp / "jupyter" / "kernels" / _KERNEL_NAME
        kdir.mkdir(parents=True)
        (kdir / "kernel.json").write_text(json.dumps(_kernelspec(), indent=1))
        (tmp / "job.sh").write_text(_job_script(run_dir, output_nb, options, mode, directives, prologue, nb_path))
        (tmp / "job.sh").chmod(0o755)
        (tmp / "run.yaml").write_text(yaml.safe_dump(info, sort_keys=False))
    logger.info("prepared run %s", run_dir)
    return BatchRun(
        run_dir=run_dir,
        notebook=nb_path,
        output_notebook=run_dir / output_nb,
        mode=mode,
        state="PREPARED",
        parameters=values,
        created=created,
    )


def run_notebook(
    notebook: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    options: BatchOptions | None = None,
    *,
    cluster_yaml: str | os.PathLike[str] | None = None,
) -> BatchRun:
    """Run a notebook with papermill here and now; return the finished run.

    A failing notebook does not raise: the returned run has ``state == "FAILED"``,
    ``error`` set and the executed notebook (with the traceback) in place.
    Bad parameters raise :class:`~flint.errors.FlintOptionsError` before anything runs.

    Examples
    --------
    ``run = run_notebook("notebooks/01_quickstart.ipynb", {"n_beams": 2})`` then
    ``run.state``, ``run.output_notebook``.
    """
    run = prepare_run(notebook, parameters, options, cluster_yaml=cluster_yaml, mode="local")
    logger.info("running %s locally; log in %s", run.notebook.name, run.log)
    try:
        run_command(["bash", str(run.job_script)], cwd=run.run_dir)
    except FlintCommandError as exc:
        logger.debug("job script exited with %s", exc.returncode)
    return run_status(run.run_dir)


def submit_notebook(
    notebook: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    options: BatchOptions | None = None,
    *,
    cluster_yaml: str | os.PathLike[str] | None = None,
    sbatch_args: Sequence[str] = (),
) -> BatchRun:
    """Write the run folder and submit its job script with ``sbatch``; return at once.

    ``sbatch_args`` are passed to ``sbatch`` as given (they override the script's
    ``#SBATCH`` lines). The SLURM job id is written to ``slurm_job_id``. If ``sbatch``
    fails the run folder is removed and :class:`~flint.errors.FlintCommandError` raised.
    """
    run = prepare_run(notebook, parameters, options, cluster_yaml=cluster_yaml, mode="slurm")
    argv = ["sbatch", "--parsable", *[str(a) for a in sbatch_args], str(run.job_script)]
    try:
        out = run_command(argv, cwd=run.run_dir)
    except FlintError:
        remove_path(run.run_dir)
        raise
    lines = [line for line in out.splitlines() if line.strip()]
    job_id = lines[-1].split(";")[0].strip() if lines else ""
    if not job_id.isdigit():
        remove_path(run.run_dir)
        raise FlintCommandError(argv, 0, f"could not read a job id from sbatch's output: {out!r}")
    atomic_write_text(run.run_dir / "slurm_job_id", job_id + "\n")
    info = yaml.safe_load((run.run_dir / "run.yaml").read_text())
    info["sbatch_argv"] = argv
    info["slurm_job_id"] = job_id
    atomic_write_text(run.run_dir / "run.yaml", yaml.safe_dump(info, sort_keys=False))
    logger.info("submitted %s as SLURM job %s; output in %s", run.notebook.name, job_id, run.run_dir)
    return run_status(run.run_dir)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def notebook_error(path: Path) -> str | None:
    """``Name: message`` of the first error output in an executed notebook."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            if out.get("output_type") == "error":
                return f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".strip()
    return None


def _slurm_state(job_id: str) -> str | None:
    """SLURM's JobState for a job, ``None`` when SLURM no longer knows it."""
    try:
        out = run_command(["scontrol", "show", "job", "-o", job_id], timeout=30)
    except FlintCommandError:
        return None
    m = re.search(r"\bJobState=(\S+)", out)
    return m.group(1) if m else None


def _pid_alive(text: str) -> bool | None:
    parts = text.split()
    if len(parts) != 2 or not parts[1].isdigit():
        return None
    if parts[0] != socket.gethostname():
        return None
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_status(run_dir: str | os.PathLike[str]) -> BatchRun:
    """Read a run folder and work out its state.

    ``exit_code`` present: COMPLETED (0), TIMEOUT (124, local walltime) or FAILED. Otherwise a
    SLURM job's state from ``scontrol`` (PENDING, RUNNING, CANCELLED, TIMEOUT, FAILED, ...),
    a local run's from its ``pid``; a job that ended without writing ``exit_code`` is LOST.
    """
    rd = Path(run_dir).resolve()
    info_text = _read(rd / "run.yaml")
    if info_text is None:
        raise FlintInputError(f"{rd} is not a flint batch run (no run.yaml)")
    info = yaml.safe_load(info_text) or {}
    params = yaml.safe_load(_read(rd / "parameters.yaml") or "{}") or {}
    out_nb = rd / str(info.get("output_notebook", "output.ipynb"))
    job_id = _read(rd / "slurm_job_id") or None
    mode = str(info.get("mode", "local"))

    def code() -> int | None:
        text = _read(rd / "exit_code")
        return int(text) if text and text.lstrip("-").isdigit() else None

    exit_code = code()
    state = "UNKNOWN"
    if exit_code is None and mode == "slurm" and job_id:
        try:
            sl = _slurm_state(job_id)
        except FlintInputError:  # no scontrol here
            sl = "UNKNOWN"
        exit_code = code()  # the job may have finished meanwhile
        if exit_code is None:
            if sl is None:
                state = "LOST"
            elif sl in _SLURM_PENDING:
                state = "PENDING"
            elif sl in _SLURM_RUNNING:
                state = "RUNNING"
            elif sl == "COMPLETED":
                state = "LOST"  # the script ended without writing exit_code
            elif sl in ("CANCELLED", "TIMEOUT", "UNKNOWN"):
                state = sl
            else:  # FAILED, NODE_FAIL, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE, PREEMPTED
                state = "FAILED"
    elif exit_code is None:
        pid = _read(rd / "pid")
        if pid is None:
            state = "PREPARED"
        else:
            alive = _pid_alive(pid)
            state = "RUNNING" if alive else ("UNKNOWN" if alive is None else "LOST")
            exit_code = code()
    if exit_code is not None:
        state = "COMPLETED" if exit_code == 0 else ("TIMEOUT" if exit_code == 124 and mode == "local" else "FAILED")
    error = notebook_error(out_nb) if state not in ("PREPARED", "PENDING", "COMPLETED") else None
    return BatchRun(
        run_dir=rd,
        notebook=Path(str(info.get("notebook", ""))),
        output_notebook=out_nb,
        mode=mode,
        state=state,
        parameters=params,
        job_id=job_id,
        exit_code=exit_code,
        error=error,
        created=str(info.get("created", "")),
        started=_read(rd / "started"),
        finished=_read(rd / "finished"),
    )


def list_runs(output_dir: str | os.PathLike[str] | None = None) -> list[BatchRun]:
    """Every run under ``output_dir`` (default :data:`DEFAULT_OUTPUT_DIR`), oldest first."""
    root = Path(output_dir) if output_dir is not None else DEFAULT_OUTPUT_DIR
    if not root.is_dir():
        return []
    runs = [run_status(d) for d in root.iterdir() if (d / "run.yaml").is_file()]
    return sorted(runs, key=lambda r: (r.created, r.run_dir.name))


def wait_for_run(run: BatchRun | str | os.PathLike[str], timeout: float = 600.0, poll: float = 2.0) -> BatchRun:
    """Poll a run until it reaches a terminal state; raise ``TimeoutError`` after ``timeout`` s."""
    rd = run.run_dir if isinstance(run, BatchRun) else Path(run)
    deadline = time.monotonic() + timeout
    while True:
        status = run_status(rd)
        if status.state in TERMINAL_STATES:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {rd} still {status.state} after {timeout:.0f} s")
        time.sleep(poll)
