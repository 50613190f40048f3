"""Prefect tasks: a flint library function plus retries, caching and naming. No science here.

Every task
  * is named ``<stage>-<label>`` (label ``beam03`` / ``beam03.round1`` / ``round1``), so
    :meth:`flint.prefect.running.FlowHandle.progress` can report per-beam stages;
  * persists its (small) result under a cache key made of the task name, the flow run
    and the inputs: when Dask recomputes a finished task after losing the worker that
    held its result, Prefect returns the cached result and the side effect (a file
    written, a Measurement Set changed) is not repeated;
  * appends one line to ``<out_dir>/flint-stages.log`` when its function has run, the
    record tests and people use to see what ran where.

Retries are on where running the function again is harmless (outputs are written
atomically; re-flagging ORs flags). Self-calibration changes the data it reads and is not
retried.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import task
from prefect.context import TaskRunContext

__all__ = [
    "cache_key",
    "stage_log",
    "read_stage_log",
    "copy_ms_task",
    "preprocess_task",
    "flag_task",
    "bandpass_task",
    "apply_task",
    "selfcal_task",
    "image_task",
    "convol_task",
    "linmos_task",
    "source_finding_task",
    "validation_task",
    "probe_task",
    "probe_mosaic_task",
    "STAGE_LOG",
]

STAGE_LOG = "flint-stages.log"


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return {"__model__": type(obj).__name__, **obj.model_dump(mode="json")}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__dc__": type(obj).__name__, **{f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "path") and isinstance(getattr(obj, "path", None), os.PathLike):  # MS handles
        return os.fspath(obj.path)
    return obj if isinstance(obj, str | int | float | bool | type(None)) else repr(obj)


def cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key: task name + flow run + inputs (so reruns inside one flow run are free)."""
    flow_run_id = str(context.task_run.flow_run_id) if context.task_run.flow_run_id else "none"
    blob = json.dumps([context.task.name, flow_run_id, _jsonable(parameters)], sort_keys=True, default=str)
    return f"flint-{context.task.name}-{hashlib.sha256(blob.encode()).hexdigest()[:32]}"


def stage_log(out_dir: str | os.PathLike[str], stage: str, label: str) -> None:
    """Append ``stage label host pid time slurm_job`` to the stage log (one ``write``: atomic append)."""
    path = Path(out_dir) / STAGE_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    job = os.environ.get("SLURM_JOB_ID", "-")
    line = f"{stage}\t{label}\t{socket.gethostname()}\t{os.getpid()}\t{time.time():.3f}\t{job}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_stage_log(out_dir: str | os.PathLike[str]) -> list[tuple[str, str, str, int, float, str]]:
    """Entries of the stage log: ``(stage, label, host, pid, time, slurm_job_id or "-")``."""
    path = Path(out_dir) / STAGE_LOG
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        stage, label, host, pid, t, job = line.split("\t")
        out.append((stage, label, host, int(pid), float(t), job))
    return out


def _path(obj: Any, *attrs: str) -> str:
    """The file a stage result names (first of ``attrs`` present), or ``obj`` itself as a path."""
    for attr in attrs:
        value = getattr(obj, attr, None)
        if value is not None:
            return os.fspath(getattr(value, "path", value))
    return os.fspath(getattr(obj, "path", obj))


_SAFE = {"cache_key_fn": cache_key, "persist_result": True, "retries": 1, "retry_delay_seconds": 2}
_ONCE = {"cache_key_fn": cache_key, "persist_result": True, "retries": 0}


@contextlib.contextmanager
def _children_allowed() -> Iterator[None]:
    """Let a library function start a process pool inside a (daemonic) Dask worker process.

    Dask's nanny starts workers as daemonic processes, which ``multiprocessing`` forbids
    to have children; BANE (source finding) always works through a ``multiprocessing``
    pool, even with one core. The pool is joined before the function returns.
    """
    import multiprocessing

    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    daemon = config.get("daemon")
    if daemon:
        config["daemon"] = False
    try:
        yield
    finally:
        if daemon:
            config["daemon"] = daemon


def _ms(obj: Any) -> Any:
    """The :class:`~flint.ms.MS` a stage result carries (``.ms``), or ``obj`` itself."""
    return getattr(obj, "ms", obj)


@task(name="copy", task_run_name="copy-{label}", **_SAFE)  # type: ignore[call-overload]
def copy_ms_task(ms: str, dest_dir: str, label: str) -> Any:
    """Copy an input Measurement Set into the run's folder (inputs are never modified).

    The copy carries flint's name (``SB<sbid>.<field>.beam<NN>.ms``) whatever name the
    input had (raw ASKAP, CASDA), so every product does too. A copy left by an earlier
    attempt of this task is replaced (the copy is atomic, so it is complete or absent).
    """
    from flint.ms import copy_ms
    from flint.naming import flint_ms_name

    dest = Path(dest_dir) / flint_ms_name(ms)
    out = copy_ms(ms, dest, overwrite=True)
    stage_log(dest_dir, "copy", label)
    return out


@task(name="preprocess", task_run_name="preprocess-{label}", **_SAFE)  # type: ignore[call-overload]
def preprocess_task(ms: Any, out_dir: str, label: str) -> Any:
    """Preprocess a raw ASKAP MS in place (the flow's copy): :func:`flint.askap.preprocess_askap`.

    Beam phase centre into ``FIELD``, instrument -> sky frame, Stokes normalisation (fixms).
    Idempotent (fixms's marker in the MS), so a retry is harmless. Returns the MS handle.
    """
    from flint.askap import PreprocessOptions, preprocess_askap
    from flint.ms import MS

    result = preprocess_askap(MS.cast(_path(_ms(ms))), PreprocessOptions())
    stage_log(out_dir, "preprocess", label)
    return result.ms


@task(name="flag", task_run_name="flag-{label}", **_SAFE)  # type: ignore[call-overload]
def flag_task(ms: Any, options: Any, out_dir: str, label: str) -> Any:
    """Flag ``ms`` (flags are only added, so a retry is harmless); returns the MS handle."""
    from flint.flagging import run_flagging

    handle = _ms(ms)
    run_flagging(handle, options)
    stage_log(out_dir, "flag", label)
    return handle


@task(name="bandpass", task_run_name="bandpass-{label}", **_SAFE)  # type: ignore[call-overload]
def bandpass_task(ms: Any, options: Any, output: str | None, out_dir: str, label: str) -> Any:
    """Solve the bandpass (flag -> solve -> flag/re-solve rounds, per the options)."""
    from flint.calibrate import run_bandpass

    result = run_bandpass(_ms(ms), options, output=output)
    stage_log(out_dir, "bandpass", label)
    return result


@task(name="apply", task_run_name="apply-{label}", **_SAFE)  # type: ignore[call-overload]
def apply_task(ms: Any, solutions: Any, options: Any, out_dir: str, label: str) -> Any:
    """Apply a solution file (``DATA`` -> ``CORRECTED_DATA``); returns the calibrated MS handle."""
    from flint.calibrate import run_apply

    result = run_apply(_ms(ms), _path(solutions, "solutions"), options)
    stage_log(out_dir, "apply", label)
    return result.ms


@task(name="selfcal", task_run_name="selfcal-{label}", **_ONCE)  # type: ignore[call-overload]
def selfcal_task(ms: Any, options: Any, out_dir: str, label: str, after: Any = None) -> Any:
    """Solve and apply self-calibration against ``MODEL_DATA`` (``after``: the imaging that wrote it)."""
    from flint.calibrate import run_selfcal

    result = run_selfcal(_ms(ms), options)
    stage_log(out_dir, "selfcal", label)
    return result


@task(name="image", task_run_name="image-{label}", **_SAFE)  # type: ignore[call-overload]
def image_task(
    ms: Any, options: Any, out_dir: str, round: int, label: str, after: Any = None, mask_from: Any = None, mask_options: Any = None
) -> Any:
    """Image ``ms`` (its current column) with WSClean; products named with ``round``.

    With ``mask_from`` (the previous round's imaging result) and ``mask_options``, a clean
    mask is made from that image first (:func:`flint.masking.make_clean_mask`) and given
    to WSClean (``fits_mask``).
    """
    from flint.imaging import product_base, run_imaging

    if mask_from is not None and mask_options is not None:
        from flint.masking import make_clean_mask

        out = Path(out_dir) / f"{product_base(_ms(ms), round)}.mask.fits"
        mask = make_clean_mask(_path(mask_from, "outer_image", "image"), mask_options, output=out)
        options = options.with_options(fits_mask=mask.mask)
    result = run_imaging(_ms(ms), options, out_dir=out_dir, round=round)
    stage_log(out_dir, "image", label)
    return result


@task(name="convol", task_run_name="convol-{label}", **_SAFE)  # type: ignore[call-overload]
def convol_task(images: list[Any], options: Any, out_dir: str, label: str) -> Any:
    """Convolve the beams' restored images of one round to their common beam."""
    from flint.convol import run_convol

    result = run_convol([Path(_path(i, "image")) for i in images], options)
    stage_log(out_dir, "convol", label)
    return result


@task(name="linmos", task_run_name="linmos-{label}", **_SAFE)  # type: ignore[call-overload]
def linmos_task(images: Any, options: Any, output: str, out_dir: str, label: str) -> Any:
    """Mosaic ``images`` (a list of paths/imaging results, or a convolution result)."""
    from flint.linmos import run_linmos

    items = images.images if hasattr(images, "images") else images
    result = run_linmos([Path(_path(i, "image")) for i in items], options, output=output)
    stage_log(out_dir, "linmos", label)
    return result


@task(name="source_finding", task_run_name="source_finding-{label}", **_SAFE)  # type: ignore[call-overload]
def source_finding_task(image: Any, options: Any, out_dir: str, label: str) -> Any:
    """Find sources in a mosaic (or a beam image)."""
    from flint.source_finding import run_source_finding

    with _children_allowed():
        result = run_source_finding(_path(image, "mosaic", "image"), options)
    stage_log(out_dir, "source_finding", label)
    return result


@task(name="validation", task_run_name="validation-{label}", **_SAFE)  # type: ignore[call-overload]
def validation_task(
    catalogue: Any, reference: str, options: Any, image: Any, out_dir: str, label: str, ms: list[Any] | None = None
) -> Any:
    """Compare a catalogue with the reference catalogue; writes a figure and tables.

    ``ms``: the imaged Measurement Sets of the last round (one per beam), for the
    thermal-noise expectation and ``noise_to_thermal``.
    """
    from flint.validation import run_validation

    img = _path(image, "mosaic", "image") if image is not None else None
    mss = [_path(m, "ms") for m in ms] if ms else None
    result = run_validation(_path(catalogue, "catalogue"), reference, options, image=img, output_dir=out_dir, ms=mss)
    stage_log(out_dir, "validation", label)
    return result


@task(name="probe", task_run_name="probe-{label}", **_SAFE)  # type: ignore[call-overload]
def probe_task(out_dir: str, beam: int, round: int, seconds: float, label: str, after: Any = None) -> str:
    """A stand-in stage: works ``seconds`` (CPU) and writes a small deterministic product."""
    from flint.io import atomic_write_text
    from flint.naming import product_name

    deadline = time.perf_counter() + seconds
    acc = 0
    while time.perf_counter() < deadline:
        acc += 1
    text = f"beam={beam} round={round} after={os.path.basename(str(after)) if after else '-'}\n"
    out = atomic_write_text(Path(out_dir) / product_name(0, "PROBE", beam=beam, round=round, suffix="txt"), text)
    stage_log(out_dir, "probe", label)
    return os.fspath(out)


@task(name="probe_mosaic", task_run_name="probe_mosaic-{label}", **_SAFE)  # type: ignore[call-overload]
def probe_mosaic_task(parts: list[str], out_dir: str, round: int, label: str) -> str:
    """A stand-in mosaic: concatenates the beams' products of one round."""
    from flint.io import atomic_write_text
    from flint.naming import product_name

    text = "".join(Path(p).read_text() for p in sorted(parts))
    out = atomic_write_text(Path(out_dir) / product_name(0, "PROBE", round=round, suffix="mosaic.txt"), text)
    stage_log(out_dir, "probe_mosaic", label)
    return os.fspath(out)
