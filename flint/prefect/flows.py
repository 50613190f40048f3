"""flint's flows: tasks wired together, per beam in parallel, driven by the strategy file.

``bandpass``
    per beam: copy -> bandpass (flag -> solve -> [apply -> flag -> re-solve] * flag_rounds)
``continuum``
    per beam: copy -> apply bandpass -> flag -> image round 0 -> [self-cal -> image] * n;
    per round: convolve to a common beam -> linmos; last round: source finding ->
    validation (figure and numbers reported as Prefect artifacts).
``probe``
    the same shape with stand-in stages (for the orchestration tests and benchmarks).

A beam's chain never waits for another beam: only the per-round mosaic joins them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow

from flint.errors import FlintInputError
from flint.naming import parse_name, product_name
from flint.prefect import tasks as T

__all__ = ["bandpass_flow", "continuum_flow", "probe_flow", "find_by_beam", "validation_numbers", "check_flow_inputs"]


def find_by_beam(
    where: str | list[str],
    suffix: str,
    beams: list[int] | None = None,
    calibrator: bool | None = None,
) -> dict[int, str]:
    """Files named ``SB*.beamNN...<suffix>`` in a folder (or a list of paths), keyed by beam.

    In a folder holding several observations, ``calibrator=True`` keeps PKS B1934-638's
    files and ``calibrator=False`` the others; two files for one beam are an error.
    """
    from flint.sim import CALIBRATOR_FIELD

    if isinstance(where, str | os.PathLike) and Path(where).is_dir():
        paths = sorted(Path(where).glob(f"SB*.beam*{suffix}"))
        if calibrator is not None and len({parse_name(p).field for p in paths}) > 1:
            paths = [p for p in paths if (parse_name(p).field == CALIBRATOR_FIELD) == calibrator]
    else:
        paths = [Path(p) for p in ([where] if isinstance(where, str | os.PathLike) else where)]
    out: dict[int, str] = {}
    for p in paths:
        beam = parse_name(p).beam
        if beam is not None and (beams is None or beam in beams):
            if beam in out:
                raise FlintInputError(
                    f"{where}: beam {beam} matches both {Path(out[beam]).name} and {p.name}; "
                    "pass the files (a list) or a folder holding one observation"
                )
            out[beam] = os.fspath(p)
    if not out:
        raise FlintInputError(f"{where}: no SB<sbid>.<field>.beamNN*{suffix} found" + (f" for beams {beams}" if beams else ""))
    return out


def _existing(where: str | list[str], what: str) -> None:
    for p in [where] if isinstance(where, str | os.PathLike) else where:
        if not Path(p).exists():
            raise FlintInputError(f"{p}: no such {what}; check the path")


def _solutions_by_beam(solutions: str | list[str], beams: list[int]) -> dict[int, str]:
    sols = find_by_beam(solutions, ".aocalibrate.bin", beams)
    missing = sorted(set(beams) - set(sols))
    if missing:
        raise FlintInputError(f"{solutions}: no bandpass solutions for beams {missing}; run the bandpass flow first")
    return sols


def check_flow_inputs(name: str, parameters: dict[str, Any]) -> None:
    """Check a flow's inputs exist and fit together (raises :class:`FlintInputError`).

    What the flow itself would find wrong only after it started: missing Measurement
    Sets, beams without solutions, a missing reference catalogue, a bad strategy file.
    """
    p = parameters
    if name == "bandpass":
        _existing(p["bandpass"], "bandpass Measurement Set or folder")
        find_by_beam(p["bandpass"], ".ms", p.get("beams"), calibrator=True)
    elif name == "continuum":
        _existing(p["science"], "science Measurement Set or folder")
        _existing(p["solutions"], "solutions file or folder")
        mss = find_by_beam(p["science"], ".ms", p.get("beams"), calibrator=False)
        _solutions_by_beam(p["solutions"], sorted(mss))
        if p.get("reference"):
            _existing(p["reference"], "reference catalogue")
    if name in ("bandpass", "continuum"):
        _strategy(p.get("strategy"))


def _strategy(path: str | None) -> Any:
    from flint.strategy import load_strategy

    return load_strategy(path)


def _calibrated_flag_options(strat: Any, round: int) -> Any:
    """The strategy's flagging options, on the calibrated column unless the strategy names one."""
    opts = strat.options_for("flagging", round)
    if "column" not in strat.raw_options("flagging", round):
        opts = opts.with_options(column="CORRECTED_DATA")
    return opts


@flow(name="flint-bandpass")
def bandpass_flow(bandpass: str | list[str], out_dir: str, strategy: str | None = None, beams: list[int] | None = None) -> dict[int, str]:
    """Solve a bandpass per beam of a PKS B1934-638 observation; returns ``{beam: solution file}``.

    Per beam: copy the MS into ``out_dir`` -> :func:`flint.calibrate.run_bandpass` (flag ->
    solve -> [apply -> flag -> re-solve] x ``flag_rounds`` of the strategy's ``bandpass``
    options) -> ``SB<sbid>.B1934-638.beamNN.aocalibrate.bin`` (+ plot) in ``out_dir``.
    """
    strat = _strategy(strategy)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    options = strat.options_for("bandpass", 0)
    results = {}
    for beam, ms_path in find_by_beam(bandpass, ".ms", beams, calibrator=True).items():
        label = f"beam{beam:02d}"
        ms = T.copy_ms_task.submit(ms_path, out_dir, label)
        results[beam] = T.bandpass_task.submit(ms, options, None, out_dir, label)
    return {b: T._path(f.result(), "solutions") for b, f in results.items()}


@flow(name="flint-continuum")
def continuum_flow(
    science: str | list[str],
    solutions: str | list[str],
    out_dir: str,
    reference: str | None = None,
    strategy: str | None = None,
    beams: list[int] | None = None,
) -> dict[str, Any]:
    """Calibrate, self-calibrate, image and mosaic a science field; validate the last mosaic.

    Returns ``{"mosaics": {round: path}, "images": {round: {beam: path}}, "catalogue": path,
    "validation": {"figure": path, <numbers>}}`` (validation only with a ``reference``).
    """
    strat = _strategy(strategy)
    n_rounds = int(strat.n_rounds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mss = find_by_beam(science, ".ms", beams, calibrator=False)
    sols = _solutions_by_beam(solutions, sorted(mss))
    first = parse_name(next(iter(mss.values())))
    images: dict[int, dict[int, Any]] = {r: {} for r in range(n_rounds + 1)}
    for beam, ms_path in mss.items():
        label = f"beam{beam:02d}"
        ms = T.copy_ms_task.submit(ms_path, out_dir, label)
        ms = T.apply_task.submit(ms, sols[beam], strat.options_for("apply", 0), out_dir, label)
        ms = T.flag_task.submit(ms, _calibrated_flag_options(strat, 0), out_dir, label)
        img = T.image_task.submit(ms, strat.options_for("wsclean", 0), out_dir, 0, f"{label}.round0")
        images[0][beam] = img
        for r in range(1, n_rounds + 1):
            rl = f"{label}.round{r}"
            ms = T.selfcal_task.submit(ms, strat.options_for("selfcal", r), out_dir, rl, after=img)
            img = T.image_task.submit(ms, strat.options_for("wsclean", r), out_dir, r, rl)
            images[r][beam] = img
    mosaics = {}
    for r, imgs in images.items():
        conv = T.convol_task.submit([imgs[b] for b in sorted(imgs)], strat.options_for("convol", r), out_dir, f"round{r}")
        mosaic = os.fspath(out / product_name(first.sbid, first.field, round=r, suffix="linmos.fits"))
        mosaics[r] = T.linmos_task.submit(conv, strat.options_for("linmos", r), mosaic, out_dir, f"round{r}")
    last = mosaics[n_rounds]
    sf = T.source_finding_task.submit(last, strat.options_for("source_finding", n_rounds), out_dir, f"round{n_rounds}")
    products: dict[str, Any] = {
        "images": {r: {b: T._path(f.result(), "image") for b, f in imgs.items()} for r, imgs in images.items()},
        "mosaics": {r: T._path(m.result(), "mosaic") for r, m in mosaics.items()},
        "catalogue": T._path(sf.result(), "catalogue"),
    }
    if reference:
        val = T.validation_task.submit(sf, reference, strat.options_for("validation", n_rounds), last, out_dir, f"round{n_rounds}").result()
        products["validation"] = _report_validation(val)
    return products


def validation_numbers(val: Any) -> dict[str, float]:
    """The numeric fields of a validation result (completeness, flux ratio, offsets, ...)."""
    import dataclasses

    fields = [f.name for f in dataclasses.fields(val)] if dataclasses.is_dataclass(val) else list(vars(val))
    out: dict[str, float] = {}
    for name in fields:
        v = getattr(val, name)
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[name] = v
    return out


def _report_validation(val: Any) -> dict[str, Any]:
    """Publish the validation figure and numbers as Prefect artifacts; return them."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    figure = T._path(val, "figure")
    numbers = validation_numbers(val)
    create_markdown_artifact(
        key="flint-validation",
        markdown=f"# flint validation\n\nFigure: `{figure}`\n\n" + "\n".join(f"- **{k}**: {v:.4g}" for k, v in numbers.items()),
        description="validation of the last-round mosaic against the reference catalogue",
    )
    create_table_artifact(key="flint-validation-numbers", table=[{"quantity": k, "value": v} for k, v in numbers.items()])
    return {"figure": figure, **numbers}


@flow(name="flint-probe")
def probe_flow(out_dir: str, n_beams: int = 2, rounds: int = 1, seconds: float = 1.0) -> dict[str, Any]:
    """Stand-in pipeline of the continuum flow's shape (per-beam chains, per-round mosaics)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    per_round: dict[int, list[Any]] = {r: [] for r in range(rounds + 1)}
    for beam in range(n_beams):
        prev = None
        for r in range(rounds + 1):
            prev = T.probe_task.submit(out_dir, beam, r, seconds, f"beam{beam:02d}.round{r}", after=prev)
            per_round[r].append(prev)
    mosaics = {r: T.probe_mosaic_task.submit(parts, out_dir, r, f"round{r}") for r, parts in per_round.items()}
    return {"mosaics": {r: m.result() for r, m in mosaics.items()}}
