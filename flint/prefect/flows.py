"""flint's flows: tasks wired together, per beam in parallel, driven by the strategy file.

``bandpass``
    per beam: copy -> [preprocess] -> bandpass (basic flags -> solve -> [flag the calibrated
    residuals -> re-solve] * flag_rounds; on a 36-field PKS B1934-638 MS only the field of the beam)
``continuum``
    per beam: copy -> [preprocess] -> apply bandpass (skipped with ``already_calibrated``)
    -> flag -> image round 0 -> [self-cal -> image] * n; per round: convolve to a common
    beam -> linmos; last round: source finding -> validation (figure and numbers reported
    as Prefect artifacts).
``probe``
    the same shape with stand-in stages (for the orchestration tests and benchmarks).

Inputs may carry flint's names, raw ASKAP names (``SB39400.RACS_0635-31.beam0.ms``) or
CASDA names (``scienceData.<field>.SB<sbid>.<field>.beam08_averaged_cal.leakage.ms``);
the copy in ``out_dir`` and every product carry flint's names. A raw ASKAP MS (instrument
frame, :func:`flint.askap.ms_frame` says ``"instrument"``) is preprocessed (fixms: beam
phase centre, sky frame, Stokes normalisation) as its first stage, on the flow's copy; the
flows record which beams they preprocessed (``inputs`` artifact, continuum products).

A beam's chain never waits for another beam: only the per-round mosaic joins them.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from prefect import flow

from flint.errors import FlintInputError
from flint.naming import parse_name, product_name
from flint.prefect import tasks as T

__all__ = [
    "bandpass_flow",
    "continuum_flow",
    "probe_flow",
    "find_by_beam",
    "is_calibrator_field",
    "input_frames",
    "read_input_report",
    "INPUT_REPORT",
    "validation_numbers",
    "check_flow_inputs",
]

logger = logging.getLogger(__name__)

#: PKS B1934-638 under the names it is observed with (B1934-638, PKS_B1934-638, 1934-638, ...)
_CALIBRATOR_RE = re.compile(r"(?:^|[^0-9])1934-638(?:$|[^0-9])")


def is_calibrator_field(field: str) -> bool:
    """Whether a field name (from a file name) is PKS B1934-638, the ASKAP bandpass calibrator.

    >>> [is_calibrator_field(f) for f in ("B1934-638", "PKS_B1934-638", "EMU_0529-60", "RACS_1934-63")]
    [True, True, False, False]
    """
    return _CALIBRATOR_RE.search(field) is not None


def _is_folder(path: str | os.PathLike[str]) -> bool:
    """A folder of inputs (a Measurement Set is a directory too, but not a folder of them)."""
    return Path(path).is_dir() and not (Path(path) / "table.dat").exists()


def _parses(path: Path) -> bool:
    try:
        return parse_name(path).beam is not None
    except FlintInputError:
        return False


def find_by_beam(
    where: str | list[str],
    suffix: str,
    beams: list[int] | None = None,
    calibrator: bool | None = None,
) -> dict[int, str]:
    """Files of one beam each in a folder (or a list of paths), keyed by beam.

    Names flint reads (:func:`flint.naming.parse_name`): ``SB<sbid>.<field>.beam<N>...<suffix>``
    (beam zero-padded or not) and CASDA's ``scienceData.<field>.SB<sbid>.<field>.beam<NN>...``.
    In a folder holding several observations, ``calibrator=True`` keeps PKS B1934-638's
    files and ``calibrator=False`` the others; two files for one beam are an error.
    """
    if isinstance(where, str | os.PathLike) and _is_folder(where):
        paths = sorted(p for p in Path(where).glob(f"*{suffix}") if _parses(p))
        if calibrator is not None and len({parse_name(p).field for p in paths}) > 1:
            paths = [p for p in paths if is_calibrator_field(parse_name(p).field) == calibrator]
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
        raise FlintInputError(
            f"{where}: no SB<sbid>.<field>.beamNN*{suffix} (flint or raw ASKAP) or "
            f"scienceData.<field>.SB<sbid>.<field>.beamNN*{suffix} (CASDA) found"
            + (f" for beams {beams}" if beams else "")
        )
    return out


def input_frames(paths: dict[int, str]) -> dict[int, str]:
    """``{beam: "sky" | "instrument" | "unknown"}``: the frame each input MS records
    (:func:`flint.askap.ms_frame`); ``"instrument"`` marks raw ASKAP data to preprocess."""
    from flint.askap import ms_frame

    return {beam: str(ms_frame(Path(p))) for beam, p in paths.items()}


def _start_beam(ms_path: str, frame: str, out_dir: str, label: str) -> Any:
    """Copy an input MS into ``out_dir`` (flint's name); preprocess it when it is raw ASKAP data."""
    ms = T.copy_ms_task.submit(ms_path, out_dir, label)
    if frame == "instrument":
        ms = T.preprocess_task.submit(ms, out_dir, label)
    return ms


def _report_inputs(
    flow_name: str, out_dir: str, mss: dict[int, str], frames: dict[int, str], fields: dict[int, str] | None = None
) -> None:
    """Say, per beam, which input was used, its frame, whether it was preprocessed and
    (bandpass) which field was solved on: a Prefect artifact, the flow's log and
    ``<out_dir>/flint-<flow>-inputs.json`` (:func:`read_input_report`)."""
    import json

    from prefect.artifacts import create_table_artifact

    from flint.io import atomic_write_text

    rows = []
    for beam, path in sorted(mss.items()):
        row = {"beam": beam, "input": Path(path).name, "frame": frames[beam], "preprocessed": frames[beam] == "instrument"}
        if fields is not None:
            row["field"] = fields.get(beam, "")
        rows.append(row)
        logger.info("%s beam %02d: %s", flow_name, beam, ", ".join(f"{k}={v}" for k, v in row.items() if k != "beam"))
    create_table_artifact(key=f"flint-{flow_name}-inputs", table=rows, description=f"inputs of the {flow_name} flow, per beam")
    atomic_write_text(Path(out_dir) / INPUT_REPORT.format(flow=flow_name), json.dumps(rows, indent=1) + "\n")


def _existing(where: str | list[str], what: str) -> None:
    for p in [where] if isinstance(where, str | os.PathLike) else where:
        if not Path(p).exists():
            raise FlintInputError(f"{p}: no such {what}; check the path")


INPUT_REPORT = "flint-{flow}-inputs.json"


def read_input_report(out_dir: str | os.PathLike[str], flow_name: str) -> list[dict[str, Any]]:
    """The per-beam input report a flow run wrote into ``out_dir`` (``[]`` when there is none).

    One row per beam: ``beam``, ``input`` (the name it came with), ``frame``,
    ``preprocessed`` and, for the bandpass flow, ``field`` (the field solved on). The same
    table is published as the Prefect artifact ``flint-<flow>-inputs``.
    """
    import json

    path = Path(out_dir) / INPUT_REPORT.format(flow=flow_name)
    return [dict(r) for r in json.loads(path.read_text())] if path.exists() else []


def _check_calibration_mode(solutions: Any, already_calibrated: bool) -> None:
    if solutions and already_calibrated:
        raise FlintInputError("continuum flow: --solutions and --already-calibrated both given; give one of them")
    if not solutions and not already_calibrated:
        raise FlintInputError(
            "continuum flow: no bandpass solutions; pass --solutions (the bandpass flow's folder), "
            "or --already-calibrated for data the observatory calibrated (CASDA)"
        )


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
        field = _strategy(p.get("strategy")).options_for("bandpass", 0).field
        for ms_path in find_by_beam(p["bandpass"], ".ms", p.get("beams"), calibrator=True).values():
            _check_bandpass_field(ms_path, field)
    elif name == "continuum":
        _existing(p["science"], "science Measurement Set or folder")
        _check_calibration_mode(p.get("solutions"), bool(p.get("already_calibrated")))
        mss = find_by_beam(p["science"], ".ms", p.get("beams"), calibrator=False)
        if p.get("solutions"):
            _existing(p["solutions"], "solutions file or folder")
            _solutions_by_beam(p["solutions"], sorted(mss))
        if p.get("reference"):
            _existing(p["reference"], "reference catalogue")
    if name in ("bandpass", "continuum"):
        _strategy(p.get("strategy"))
    if name == "polarisation":  # the polarisation flow's own module checks its inputs
        from flint.prefect.polarisation import check_polarisation_inputs

        check_polarisation_inputs(p)
    if name == "line":
        from flint.prefect.line import check_line_inputs  # the line flow's own module

        check_line_inputs(p)


def _check_bandpass_field(ms_path: str, field: str | None) -> None:
    """Refuse a calibrator MS whose beam has no field of its own (36-field ASKAP MSs), before
    anything is submitted; the field the flow will use is chosen by :mod:`flint.calibrate`."""
    from flint.calibrate.fields import choose_bandpass_field
    from flint.errors import FlintMSError

    try:
        choice = choose_bandpass_field(ms_path, field)
    except FlintMSError as err:  # the flow's fixes: the strategy's bandpass field, or --beams
        text = str(err).replace("--field NAME", "the field (bandpass: field: NAME in --strategy)").replace("to --field", "as bandpass: field: in --strategy")
        raise FlintInputError(f"{text}; or leave the beam out with --beams") from None
    logger.debug("%s: bandpass field %d %r (%s)", ms_path, choice.field_id, choice.name, choice.reason)


def _strategy(path: str | None) -> Any:
    from flint.strategy import load_strategy

    return load_strategy(path)


def last_round_wsclean(strat: Any, size: int | None = None, scale_arcsec: float | None = None) -> Any:
    """The strategy's WSClean options of its last round, with ``size``/``scale_arcsec`` replaced
    when given (the starting point of the cube flows' imaging)."""
    opts = strat.options_for("wsclean", int(strat.n_rounds))
    given = {"size": size, "scale_arcsec": scale_arcsec}
    return opts.with_options(**{k: v for k, v in given.items() if v is not None})


def _calibrated_flag_options(strat: Any, round: int, column: str = "CORRECTED_DATA") -> Any:
    """The strategy's flagging options, on the calibrated ``column`` unless the strategy names one."""
    opts = strat.options_for("flagging", round)
    if "column" not in strat.raw_options("flagging", round):
        opts = opts.with_options(column=column)
    return opts


@flow(name="flint-bandpass")
def bandpass_flow(bandpass: str | list[str], out_dir: str, strategy: str | None = None, beams: list[int] | None = None) -> dict[int, str]:
    """Solve a bandpass per beam of a PKS B1934-638 observation; returns ``{beam: solution file}``.

    Per beam: copy the MS into ``out_dir`` (flint's name) -> preprocess if it is raw ASKAP
    data -> :func:`flint.calibrate.run_bandpass` (basic flags -> solve -> [flag the
    calibrated residuals -> re-solve] x ``flag_rounds`` of the strategy's ``bandpass`` options; on a 36-field MS
    only the field of the beam, chosen by :mod:`flint.calibrate`) ->
    ``SB<sbid>.B1934-638.beamNN.aocalibrate.bin`` (+ plot) in ``out_dir``. The field solved
    on and the preprocessing are reported per beam in the ``flint-bandpass-inputs`` artifact.
    """
    strat = _strategy(strategy)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    options = strat.options_for("bandpass", 0)
    mss = find_by_beam(bandpass, ".ms", beams, calibrator=True)
    frames = input_frames(mss)
    results = {}
    for beam, ms_path in mss.items():
        label = f"beam{beam:02d}"
        ms = _start_beam(ms_path, frames[beam], out_dir, label)
        results[beam] = T.bandpass_task.submit(ms, options, None, out_dir, label)
    done = {b: f.result() for b, f in results.items()}
    _report_inputs("bandpass", out_dir, mss, frames, {b: _solved_field(r) for b, r in done.items()})
    return {b: T._path(r, "solutions") for b, r in done.items()}


def _solved_field(result: Any) -> str:
    """The field a bandpass result says it solved on: ``name (#id, why)``."""
    reason = f", {result.field_reason}" if result.field_reason else ""
    return f"{result.field} (#{result.field_id}{reason})"


@flow(name="flint-continuum")
def continuum_flow(
    science: str | list[str],
    out_dir: str,
    solutions: str | list[str] | None = None,
    reference: str | None = None,
    strategy: str | None = None,
    beams: list[int] | None = None,
    already_calibrated: bool = False,
) -> dict[str, Any]:
    """Calibrate, self-calibrate, image and mosaic a science field; validate the last mosaic.

    ``already_calibrated``: the data are bandpass-calibrated already (CASDA data, which the
    observatory calibrated): no ``solutions``, no apply stage; flagging and imaging start
    from the calibrated column as it is. Without it, ``solutions`` are required.

    Returns ``{"mosaics": {round: path}, "images": {round: {beam: path}}, "catalogue": path,
    "validation": {"figure": path, <numbers>}, "preprocessed": [beams], "already_calibrated":
    bool}`` (validation only with a ``reference``).
    """
    _check_calibration_mode(solutions, already_calibrated)
    strat = _strategy(strategy)
    n_rounds = int(strat.n_rounds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mss = find_by_beam(science, ".ms", beams, calibrator=False)
    sols = _solutions_by_beam(solutions, sorted(mss)) if solutions else {}
    frames = input_frames(mss)
    first = parse_name(next(iter(mss.values())))
    images: dict[int, dict[int, Any]] = {r: {} for r in range(n_rounds + 1)}
    final_ms: dict[int, Any] = {}
    for beam, ms_path in mss.items():
        label = f"beam{beam:02d}"
        ms = _start_beam(ms_path, frames[beam], out_dir, label)
        if already_calibrated:
            flag_opts = _calibrated_flag_options(strat, 0, _calibrated_column(ms_path))
        else:
            ms = T.apply_task.submit(ms, sols[beam], strat.options_for("apply", 0), out_dir, label)
            flag_opts = _calibrated_flag_options(strat, 0)
        ms = T.flag_task.submit(ms, flag_opts, out_dir, label)
        img = T.image_task.submit(ms, strat.options_for("wsclean", 0), out_dir, 0, f"{label}.round0")
        images[0][beam] = img
        for r in range(1, n_rounds + 1):
            rl = f"{label}.round{r}"
            ms = T.selfcal_task.submit(ms, strat.options_for("selfcal", r), out_dir, rl, after=img)
            masking = strat.options_for("masking", r) if "masking" in strat.tools else None
            img = T.image_task.submit(ms, strat.options_for("wsclean", r), out_dir, r, rl, mask_from=img, mask_options=masking)
            images[r][beam] = img
        final_ms[beam] = ms
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
        "preprocessed": sorted(b for b, f in frames.items() if f == "instrument"),
        "already_calibrated": already_calibrated,
    }
    _report_inputs("continuum", out_dir, mss, frames)
    if reference:
        last_ms = [final_ms[b] for b in sorted(final_ms)]
        val = T.validation_task.submit(
            sf, reference, strat.options_for("validation", n_rounds), last, out_dir, f"round{n_rounds}", ms=last_ms
        ).result()
        products["validation"] = _report_validation(val)
    return products


def _calibrated_column(ms_path: str) -> str:
    """The column already-calibrated data are read from (``CORRECTED_DATA`` if present, else ``DATA``)."""
    from flint.ms import calibrated_column

    return calibrated_column(ms_path)


def validation_numbers(val: Any) -> dict[str, float]:
    """The numeric fields of a validation result (completeness, flux ratio, offsets, noise vs
    thermal, spurious fraction and completeness per SNR bin, ...)."""
    import dataclasses

    if hasattr(val, "numbers"):
        items = dict(val.numbers())
    else:
        fields = [f.name for f in dataclasses.fields(val)] if dataclasses.is_dataclass(val) else list(vars(val))
        items = {name: getattr(val, name) for name in fields}
    return {k: v for k, v in items.items() if isinstance(v, int | float) and not isinstance(v, bool)}


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
