"""Cluster specifications: one YAML file describes where flint's Dask workers run.

The file has exactly the shape :class:`prefect_dask.DaskTaskRunner` takes::

    cluster_class: dask_jobqueue.SLURMCluster
    cluster_kwargs: {cores: 1, processes: 1, job_cpu: 8, memory: 64GB, walltime: "0-04:00:00"}
    adapt_kwargs: {minimum: 1, maximum: 36}

or ``address: tcp://host:8786`` for a scheduler that is already running. It is
loaded with ``yaml.safe_load`` and validated by :func:`validate_spec` before anything
starts: the class must be allowed, every keyword must exist for that class (typos are
reported with the closest valid name), values people type into a form (cores, memory,
walltime, adapt bounds) are checked.

This module does not import Prefect (nor Dask) at import time: the notebook widgets
and core-only code use it. :func:`task_runner` imports ``prefect_dask`` when called.

Examples
--------
>>> spec = validate_spec({"cluster_class": "distributed.LocalCluster",
...                       "cluster_kwargs": {"n_workers": 2, "threads_per_worker": 1}})
>>> spec.cluster_kwargs["n_workers"]
2
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import os
import shlex
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from flint.errors import FlintConfigError
from flint.io import load_yaml_file
from flint.prefect._spec_checks import RENAMED_KWARGS, VALUE_CHECKS, check_nonnegative_int

__all__ = [
    "ClusterSpec",
    "validate_spec",
    "load_cluster_spec",
    "spec_problems",
    "spec_file_problems",
    "resolve_spec_path",
    "example_specs",
    "example_spec_path",
    "valid_cluster_kwargs",
    "check_scheduler_reachable",
    "worker_prologue",
    "job_script",
    "task_runner",
    "start_cluster",
    "ALLOWED_CLASSES_ENV",
]

logger = logging.getLogger(__name__)

#: environment variable with extra allowed cluster classes (comma separated)
ALLOWED_CLASSES_ENV = "FLINT_ALLOWED_CLUSTER_CLASSES"

_TOP_KEYS = ("cluster_class", "cluster_kwargs", "adapt_kwargs", "address")
_LOCAL_NAMES = {"distributed.LocalCluster", "dask.distributed.LocalCluster", "distributed.deploy.local.LocalCluster"}
#: keywords flint (or DaskTaskRunner) sets itself
_RESERVED_KWARGS = {"asynchronous", "loop", "job_cls", "self"}
_ADAPT_BOUNDS = (("minimum", "maximum"), ("minimum_jobs", "maximum_jobs"), ("minimum_cores", "maximum_cores"))
_EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "clusters"


@dataclass(frozen=True)
class ClusterSpec:
    """A validated cluster specification.

    Attributes
    ----------
    cluster_class
        Dotted name of the Dask cluster class (``None`` when ``address`` is given).
    cluster_kwargs
        Keywords for the cluster class.
    adapt_kwargs
        Keywords for ``cluster.adapt`` (``None``: no adaptive scaling).
    address
        Address of an already running Dask scheduler.
    source
        Where the spec came from (file path or ``"<cluster spec>"``), used in messages.
    """

    cluster_class: str | None = None
    cluster_kwargs: dict[str, Any] = field(default_factory=dict)
    adapt_kwargs: dict[str, Any] | None = None
    address: str | None = None
    source: str = "<cluster spec>"

    @property
    def is_jobqueue(self) -> bool:
        """True for a ``dask_jobqueue`` batch-system cluster."""
        return bool(self.cluster_class and self.cluster_class.startswith("dask_jobqueue."))

    @property
    def is_local(self) -> bool:
        """True for a ``distributed.LocalCluster``."""
        return self.cluster_class in _LOCAL_NAMES

    def to_dict(self) -> dict[str, Any]:
        """The spec as the plain mapping a YAML file holds."""
        if self.address:
            return {"address": self.address}
        out: dict[str, Any] = {"cluster_class": self.cluster_class, "cluster_kwargs": dict(self.cluster_kwargs)}
        if self.adapt_kwargs is not None:
            out["adapt_kwargs"] = dict(self.adapt_kwargs)
        return out

    def to_yaml(self) -> str:
        """The spec as YAML text (what :func:`load_cluster_spec` reads back)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def runner_kwargs(self) -> dict[str, Any]:
        """Keywords for :class:`prefect_dask.DaskTaskRunner`."""
        if self.address:
            return {"address": self.address}
        out: dict[str, Any] = {"cluster_class": self.cluster_class, "cluster_kwargs": dict(self.cluster_kwargs)}
        if self.adapt_kwargs:
            out["adapt_kwargs"] = dict(self.adapt_kwargs)
        return out


# --------------------------------------------------------------------------- helpers


def _err(source: str, key: str, msg: str) -> FlintConfigError:
    return FlintConfigError(f"{source}: {key}: {msg}")


def _closest(name: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def _allowed_extra(allowed_classes: Iterable[str]) -> set[str]:
    extra = {c.strip() for c in allowed_classes if c.strip()}
    env = os.environ.get(ALLOWED_CLASSES_ENV, "")
    extra |= {c.strip() for c in env.split(",") if c.strip()}
    return extra


def _import_class(dotted: str) -> Any:
    module_name, _, attr = dotted.rpartition(".")
    if not module_name:
        raise ImportError(f"{dotted!r} is not a dotted name")
    module = importlib.import_module(module_name)
    obj = getattr(module, attr)
    if not isinstance(obj, type):
        raise ImportError(f"{dotted} is not a class")
    return obj  # a class; typed Any because its __init__ and attributes are inspected


def _params(func: Any) -> tuple[set[str], bool]:
    """Named parameters of ``func`` and whether it takes ``**kwargs``."""
    sig = inspect.signature(func)
    names = {
        n
        for n, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "self"
    }
    var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw


@cache
def _class_kwargs(dotted: str) -> tuple[frozenset[str], bool]:
    """Valid keywords for cluster class ``dotted``, and whether anything else may pass."""
    cls = _import_class(dotted)
    if dotted in _LOCAL_NAMES:
        from distributed import Nanny, Worker

        names: set[str] = set()
        for f in (cls.__init__, Nanny.__init__, Worker.__init__):
            names |= _params(f)[0]
        return frozenset(names - _RESERVED_KWARGS - {"scheduler_ip", "scheduler_port", "scheduler_file"}), False
    job_cls = getattr(cls, "job_cls", None)
    if dotted.startswith("dask_jobqueue.") and job_cls is not None:
        from dask_jobqueue.core import Job, JobQueueCluster

        names = set()
        for f in (cls.__init__, JobQueueCluster.__init__, job_cls.__init__, Job.__init__):
            names |= _params(f)[0]
        return frozenset(names - _RESERVED_KWARGS - {"scheduler", "config_name"}), False
    names, var_kw = _params(cls.__init__)
    return frozenset(names - _RESERVED_KWARGS), var_kw


@cache
def _job_kwargs(dotted: str) -> frozenset[str]:
    """Keywords accepted by the job class of a dask_jobqueue cluster class."""
    from dask_jobqueue.core import Job

    cls = _import_class(dotted)
    names = _params(cls.job_cls.__init__)[0] | _params(Job.__init__)[0]
    return frozenset(names - {"scheduler", "name", "config_name"})


def valid_cluster_kwargs(cluster_class: str) -> list[str]:
    """Sorted keyword names ``cluster_class`` accepts (for a form's completion list)."""
    return sorted(_class_kwargs(cluster_class)[0])


def _check_class(name: Any, source: str, allowed_classes: Iterable[str]) -> str:
    if not isinstance(name, str) or not name.strip():
        raise _err(source, "cluster_class", f"must be a dotted class name such as 'distributed.LocalCluster' (got {name!r})")
    name = name.strip()
    extra = _allowed_extra(allowed_classes)
    if name in _LOCAL_NAMES:
        return name
    if name.startswith("dask_jobqueue."):
        import dask_jobqueue

        attr = name.split(".", 1)[1]
        known = [n for n in dir(dask_jobqueue) if n.endswith("Cluster") and n != "JobQueueCluster"]
        if attr not in known:
            hint = _closest(attr, known) or f"; choose one of {', '.join(sorted(known))}"
            raise _err(source, "cluster_class", f"dask_jobqueue has no cluster class {attr!r}{hint}")
        return name
    if name in extra:
        try:
            _import_class(name)
        except (ImportError, AttributeError) as exc:
            raise _err(source, "cluster_class", f"cannot import allowed class {name!r} ({exc}); install its package") from None
        return name
    allowed = ["distributed.LocalCluster", "dask_jobqueue.<Name>Cluster", *sorted(extra)]
    hint = _closest(name, ["distributed.LocalCluster", "dask_jobqueue.SLURMCluster", "dask_jobqueue.PBSCluster", *extra])
    raise _err(
        source,
        "cluster_class",
        f"{name!r} is not an allowed Dask cluster class{hint or '.'} Allowed: {', '.join(allowed)} "
        f"(add others to ${ALLOWED_CLASSES_ENV}, comma separated)",
    )


def _check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false (got {value!r})"


#: keywords in dask-jobqueue's signatures that its clusters refuse at start: they belong in
#: ``scheduler_options``
JOBQUEUE_SCHEDULER_KWARGS = ("dashboard_address", "host")


def _kwarg_problem(cls_name: str, key: Any, value: Any, valid: frozenset[str], open_ended: bool) -> str | None:
    """What is wrong with one ``cluster_kwargs`` entry (``None``: nothing)."""
    if not isinstance(key, str):
        return "keyword names must be strings"
    if key in _RESERVED_KWARGS:
        return "is set by flint; remove it"
    if key in RENAMED_KWARGS and cls_name.startswith("dask_jobqueue."):
        return f"was renamed in dask-jobqueue; use '{RENAMED_KWARGS[key]}'"
    if key in JOBQUEUE_SCHEDULER_KWARGS and cls_name.startswith("dask_jobqueue."):
        return f"{cls_name} refuses it when the cluster starts; put it under scheduler_options (scheduler_options: {{{key}: {value!r}}})"
    if key not in valid and not open_ended:
        hint = _closest(key, valid) or f"; see the parameters of {cls_name}"
        return f"unknown keyword for {cls_name}{hint}"
    check = _check_bool if key == "processes" and cls_name in _LOCAL_NAMES else VALUE_CHECKS.get(key)
    return check(value) if check is not None else None


def _cluster_kwargs_problems(cls_name: str, kwargs: Any, source: str) -> tuple[dict[str, Any], list[FlintConfigError]]:
    """The usable keywords and every problem found (one error each)."""
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        return {}, [_err(source, "cluster_kwargs", f"must be a mapping of keyword: value (got {type(kwargs).__name__})")]
    valid, open_ended = _class_kwargs(cls_name)
    out: dict[str, Any] = {}
    problems: list[FlintConfigError] = []
    for key, value in kwargs.items():
        problem = _kwarg_problem(cls_name, key, value, valid, open_ended)
        if problem:
            problems.append(_err(source, f"cluster_kwargs.{key}", problem))
        else:
            out[key] = list(value) if isinstance(value, tuple) else value
    if cls_name.startswith("dask_jobqueue."):
        for needed, example in (("cores", "1"), ("memory", "'4GB'")):
            if needed not in kwargs:
                problems.append(_err(source, f"cluster_kwargs.{needed}", f"is required for {cls_name}; add e.g. {needed}: {example}"))
    cores, processes = out.get("cores"), out.get("processes")
    if isinstance(cores, int) and isinstance(processes, int) and processes > cores:
        problems.append(_err(source, "cluster_kwargs.processes", f"{processes} worker processes cannot share {cores} cores; set processes <= cores"))
    return out, problems


def _check_cluster_kwargs(cls_name: str, kwargs: Any, source: str) -> dict[str, Any]:
    out, problems = _cluster_kwargs_problems(cls_name, kwargs, source)
    if problems:
        raise problems[0]
    return out


def _adapt_problems(adapt: Any, source: str) -> list[FlintConfigError]:
    """Every problem of an ``adapt_kwargs`` mapping (one error each)."""
    if adapt is None:
        return []
    if not isinstance(adapt, Mapping):
        return [_err(source, "adapt_kwargs", f"must be a mapping such as {{minimum: 1, maximum: 4}} (got {adapt!r})")]
    from distributed.deploy.adaptive import Adaptive

    valid = (_params(Adaptive.__init__)[0] - {"cluster", "worker_key"}) | {
        "minimum_jobs", "maximum_jobs", "minimum_cores", "maximum_cores", "minimum_memory", "maximum_memory",
    }
    problems: list[FlintConfigError] = []
    for key in adapt:
        if key not in valid:
            hint = _closest(str(key), valid) or f"; valid keys: {', '.join(sorted(valid))}"
            problems.append(_err(source, f"adapt_kwargs.{key}", f"unknown adaptive-scaling keyword{hint}"))
    for lo_key, hi_key in _ADAPT_BOUNDS:
        bad = False
        for key in (lo_key, hi_key):
            problem = check_nonnegative_int(adapt[key]) if key in adapt else None
            if problem:
                bad = True
                problems.append(_err(source, f"adapt_kwargs.{key}", problem))
        lo, hi = adapt.get(lo_key), adapt.get(hi_key)
        if not bad and lo is not None and hi is not None and lo > hi:
            problems.append(_err(source, f"adapt_kwargs.{lo_key}", f"{lo_key} ({lo}) is larger than {hi_key} ({hi}); make {lo_key} <= {hi_key}"))
    if adapt.get("maximum") == 0 or adapt.get("maximum_jobs") == 0:
        problems.append(_err(source, "adapt_kwargs.maximum", "a maximum of 0 workers can run nothing; set it to 1 or more"))
    return problems


def _check_adapt(adapt: Any, source: str) -> dict[str, Any] | None:
    problems = _adapt_problems(adapt, source)
    if problems:
        raise problems[0]
    return None if adapt is None else dict(adapt)


def _check_address(address: Any, source: str) -> str:
    if not isinstance(address, str) or not address.strip():
        raise _err(source, "address", f"must be a scheduler address such as 'tcp://10.0.0.5:8786' (got {address!r})")
    address = address.strip()
    url = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme not in ("tcp", "tls", "ucx", "ws", "wss", "inproc") or not url.hostname or port is None:
        raise _err(source, "address", f"{address!r} is not a scheduler address; use 'tcp://host:port', e.g. 'tcp://10.0.0.5:8786'")
    return address


# --------------------------------------------------------------------------- public API


def validate_spec(
    data: Mapping[str, Any] | ClusterSpec,
    *,
    source: str = "<cluster spec>",
    allowed_classes: Iterable[str] = (),
) -> ClusterSpec:
    """Check a cluster specification and return it as a :class:`ClusterSpec`.

    Parameters
    ----------
    data
        The mapping read from a cluster YAML file (or built by a form).
    source
        Name used in error messages (the file path).
    allowed_classes
        Extra dotted cluster-class names to accept besides ``distributed.LocalCluster``
        and ``dask_jobqueue.*Cluster`` (also read from ``FLINT_ALLOWED_CLUSTER_CLASSES``).

    Raises
    ------
    FlintConfigError
        Naming ``source``, the offending key and the fix.
    """
    if isinstance(data, ClusterSpec):
        source = data.source
        data = data.to_dict()
    if not isinstance(data, Mapping):
        raise FlintConfigError(f"{source}: a cluster spec must be a mapping with 'cluster_class' or 'address' (got {type(data).__name__})")
    for key in data:
        if key not in _TOP_KEYS:
            hint = _closest(str(key), _TOP_KEYS) or f"; valid keys: {', '.join(_TOP_KEYS)}"
            raise _err(source, str(key), f"unknown key{hint}")
    if data.get("address") is not None:
        others = [k for k in ("cluster_class", "cluster_kwargs", "adapt_kwargs") if data.get(k)]
        if others:
            raise _err(source, "address", f"connects to a running scheduler; remove {', '.join(others)} (or remove address)")
        return ClusterSpec(address=_check_address(data["address"], source), source=source)
    if data.get("cluster_class") is None:
        raise _err(source, "cluster_class", "missing; give e.g. 'distributed.LocalCluster' or 'dask_jobqueue.SLURMCluster' (or an 'address')")
    cls_name = _check_class(data["cluster_class"], source, allowed_classes)
    kwargs = _check_cluster_kwargs(cls_name, data.get("cluster_kwargs"), source)
    adapt = _check_adapt(data.get("adapt_kwargs"), source)
    return ClusterSpec(cluster_class=cls_name, cluster_kwargs=kwargs, adapt_kwargs=adapt, source=source)


def spec_problems(
    data: Any, *, source: str = "<cluster spec>", allowed_classes: Iterable[str] = ()
) -> list[str]:
    """Every problem of a cluster specification, one line each (``[]``: it is valid).

    Unlike :func:`validate_spec`, which stops at the first problem, this goes on where the
    rest can still be checked (all keywords, all adaptive bounds).
    """
    if not isinstance(data, Mapping):
        try:
            validate_spec(data, source=source, allowed_classes=allowed_classes)
        except FlintConfigError as exc:
            return [str(exc)]
        return []
    problems: list[FlintConfigError] = []
    for key in data:
        if key not in _TOP_KEYS:
            hint = _closest(str(key), _TOP_KEYS) or f"; valid keys: {', '.join(_TOP_KEYS)}"
            problems.append(_err(source, str(key), f"unknown key{hint}"))
    known = {k: v for k, v in data.items() if k in _TOP_KEYS}
    if known.get("address") is not None or known.get("cluster_class") is None:
        try:
            validate_spec(known, source=source, allowed_classes=allowed_classes)
        except FlintConfigError as exc:
            problems.append(exc)
        return [str(p) for p in problems]
    try:
        cls_name = _check_class(known["cluster_class"], source, allowed_classes)
    except FlintConfigError as exc:
        problems.append(exc)  # keywords cannot be checked without the class
    else:
        problems += _cluster_kwargs_problems(cls_name, known.get("cluster_kwargs"), source)[1]
    problems += _adapt_problems(known.get("adapt_kwargs"), source)
    return [str(p) for p in problems]


def load_cluster_spec(path: str | os.PathLike[str], *, allowed_classes: Iterable[str] = ()) -> ClusterSpec:
    """Read and validate a cluster YAML file (``yaml.safe_load`` only).

    ``path`` may also name a packaged example (``"local"``, ``"slurm"``).
    """
    p = resolve_spec_path(path)
    return validate_spec(_read_spec_file(p), source=str(p), allowed_classes=allowed_classes)


def resolve_spec_path(path: str | os.PathLike[str]) -> Path:
    """The file ``path`` names: itself, or a packaged example (``"local"``, ``"slurm"``)."""
    p = Path(path)
    if not p.exists() and not p.suffix and (_EXAMPLES_DIR / f"{p.name}.yaml").exists():
        p = _EXAMPLES_DIR / f"{p.name}.yaml"
    if not p.is_file():
        examples = ", ".join(example_specs())
        raise FlintConfigError(f"{p}: cluster spec file not found; give a YAML file path or a packaged example ({examples})")
    return p


def spec_file_problems(path: str | os.PathLike[str], *, allowed_classes: Iterable[str] = ()) -> list[str]:
    """Every problem of the cluster YAML file ``path``, one line each (``[]``: it is valid)."""
    try:
        p = resolve_spec_path(path)
        data = _read_spec_file(p)
    except FlintConfigError as exc:
        return [str(exc)]
    return spec_problems(data, source=str(p), allowed_classes=allowed_classes)


def _read_spec_file(p: Path) -> Any:
    data = load_yaml_file(p)
    if data is None:
        raise FlintConfigError(f"{p}: the file is empty; give at least 'cluster_class: distributed.LocalCluster'")
    return data


def example_specs() -> list[str]:
    """Names of the packaged example cluster specs (``flint/data/clusters/*.yaml``)."""
    return sorted(p.stem for p in _EXAMPLES_DIR.glob("*.yaml"))


def example_spec_path(name: str) -> Path:
    """Path of a packaged example cluster spec."""
    p = _EXAMPLES_DIR / f"{name}.yaml"
    if not p.is_file():
        raise FlintConfigError(f"no packaged cluster spec {name!r}; choose one of {', '.join(example_specs())}")
    return p


def check_scheduler_reachable(address: str, timeout: float = 5.0, source: str = "<cluster spec>") -> None:
    """Raise :class:`FlintConfigError` unless something listens at the scheduler ``address``."""
    url = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = url.hostname, url.port
    if host is None or port is None:
        raise _err(source, "address", f"{address!r} has no host:port")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise _err(
            source, "address", f"no Dask scheduler answers at {address} ({exc.strerror or exc}); start it or fix the address"
        ) from None


#: Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in every worker (its
#: ``distributed.nanny.pre-spawn-environ``). Setting it switches off glibc's dynamic mmap
#: threshold, so every array over 128 KiB is a fresh mmap and page-faulted again: measured on
#: the pol demo's 8 IQUV cubes, ``run_convol`` took 62 s with it and 15 s without it (radio-beam's
#: ``common_beam`` and numpy's small temporaries), RM synthesis 45 s against 22 s. flint's workers
#: keep glibc's default (``benchmarks/bench_worker_malloc.py``). A ``MALLOC_TRIM_THRESHOLD_`` in
#: the environment still reaches the workers.
_NANNY_MALLOC_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def keep_glibc_malloc_default() -> None:
    """Stop Dask nannies started by this process from setting ``MALLOC_TRIM_THRESHOLD_``."""
    import dask.config

    dask.config.set({_NANNY_MALLOC_KEY: None})


def worker_prologue(api_url: str | None = None, auth_file: str | os.PathLike[str] | None = None) -> list[str]:
    """Shell lines flint adds to a batch job so workers share one Prefect API.

    Without them each worker would start its own ephemeral Prefect server. The API
    auth string is never written: when it lives in a file, the job reads that file.
    The nanny on the node keeps glibc's malloc default (see :func:`keep_glibc_malloc_default`).
    """
    lines = [
        "export PREFECT_SERVER_ANALYTICS_ENABLED=false",
        """export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON='{"MALLOC_TRIM_THRESHOLD_": None}'""",
    ]
    if api_url:
        lines.append(f"export PREFECT_API_URL={shlex.quote(api_url)}")
    if auth_file:
        lines.append(f'export PREFECT_API_AUTH_STRING="$(cat {shlex.quote(str(auth_file))})"')
    return lines


def _with_prologue(spec: ClusterSpec, api_url: str | None, auth_file: str | os.PathLike[str] | None) -> dict[str, Any]:
    kwargs = dict(spec.cluster_kwargs)
    if spec.is_jobqueue:
        kwargs["job_script_prologue"] = [*kwargs.get("job_script_prologue", []), *worker_prologue(api_url, auth_file)]
    return kwargs


def _default_api_url() -> str | None:
    return os.environ.get("PREFECT_API_URL") or None


def job_script(
    spec: ClusterSpec,
    *,
    api_url: str | None = None,
    auth_file: str | os.PathLike[str] | None = None,
) -> str:
    """The batch script one worker job would be submitted with (nothing is submitted).

    ``api_url`` defaults to ``$PREFECT_API_URL``; the lines flint adds for it are included.
    """
    if not spec.is_jobqueue or spec.cluster_class is None:
        raise FlintConfigError(f"{spec.source}: cluster_class: job scripts exist only for dask_jobqueue classes (got {spec.cluster_class or spec.address})")
    cls = _import_class(spec.cluster_class)
    allowed = _job_kwargs(spec.cluster_class)
    kwargs = {k: v for k, v in _with_prologue(spec, api_url or _default_api_url(), auth_file).items() if k in allowed}
    job = cls.job_cls(scheduler="tcp://SCHEDULER_ADDRESS:PORT", name="flint-worker-0", **kwargs)
    return str(job.job_script())


def task_runner(
    spec: ClusterSpec,
    *,
    api_url: str | None = None,
    auth_file: str | os.PathLike[str] | None = None,
    check: bool = True,
) -> Any:
    """A :class:`prefect_dask.DaskTaskRunner` for ``spec`` (imports Prefect).

    For a batch-system cluster the workers get ``PREFECT_API_URL`` (``api_url`` or the
    environment) so they share the flow's Prefect API. With ``check`` an ``address`` is
    checked to be reachable first, so a typo fails before any work is submitted.
    """
    from prefect_dask import DaskTaskRunner

    if spec.address:
        if check:
            check_scheduler_reachable(spec.address, source=spec.source)
        return DaskTaskRunner(address=spec.address)
    keep_glibc_malloc_default()
    url = api_url or _default_api_url()
    if spec.is_jobqueue and not url:
        logger.warning(
            "%s: no PREFECT_API_URL for the batch workers; each will start its own Prefect server "
            "(slow). Start one with 'flint server start' or use flint.prefect.warm.", spec.source,
        )
    kwargs = spec.runner_kwargs()
    kwargs["cluster_kwargs"] = _with_prologue(spec, url, auth_file)
    return DaskTaskRunner(**kwargs)


def start_cluster(
    spec: ClusterSpec,
    *,
    api_url: str | None = None,
    auth_file: str | os.PathLike[str] | None = None,
) -> tuple[Any, Any]:
    """Start the cluster of ``spec`` (or connect to its ``address``) for a notebook.

    Returns
    -------
    (cluster, client)
        ``cluster`` is ``None`` when connecting to an ``address``. Close both when done
        (``client.close(); cluster.close()``).
    """
    from distributed import Client

    if spec.address:
        check_scheduler_reachable(spec.address, source=spec.source)
        return None, Client(spec.address)
    assert spec.cluster_class is not None
    keep_glibc_malloc_default()
    cls = _import_class(spec.cluster_class)
    kwargs = _with_prologue(spec, api_url or _default_api_url(), auth_file)
    logger.info("starting %s with %s", spec.cluster_class, {k: v for k, v in kwargs.items() if k != "job_script_prologue"})
    cluster = cls(**kwargs)
    try:
        if spec.adapt_kwargs:
            cluster.adapt(**spec.adapt_kwargs)
        client = Client(cluster)
    except BaseException:
        cluster.close()
        raise
    return cluster, client
