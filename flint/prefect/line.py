"""The spectral-line flow: after the continuum flow, continuum-subtracted channel cubes and their mosaic.

``line``
    per beam, in parallel: copy the continuum flow's self-calibrated MS into ``out_dir`` ->
    :func:`flint.subtract.run_subtract` (WSClean ``-predict`` of the beam's final-round clean
    model, ``CORRECTED_DATA - MODEL_DATA`` into ``CONTSUB_DATA``, then a first-order polynomial
    uv-continuum fit over the line-free channels, found per beam in a first-pass dirty cube by
    :mod:`flint.linefree` unless ``fit_channels`` lists them) -> one task per channel block
    (:func:`flint.imaging.run_channel_block`) -> :func:`flint.imaging.assemble_channel_blocks`
    (one image cube per beam, per-channel ``BEAMS``); then, joining the beams: common
    resolution per channel (:func:`flint.convol.run_convol`, ``natural`` mode) -> cube
    linmos (:func:`flint.linmos.run_linmos`, channel by channel).

The continuum flow's folder is the input: its ``SB<sbid>.<field>.beamNN.ms`` (the
self-calibrated data, only read: the flow works on copies) and, per beam, the clean model
of the last round found there (``<base>.round<N>.model.fits``, highest ``N``).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from prefect import flow, task

from flint.errors import FlintInputError
from flint.naming import parse_name, product_name
from flint.prefect import tasks as T
from flint.prefect.flows import _strategy, find_by_beam, last_round_wsclean

__all__ = ["line_flow", "final_models", "cube_wsclean_options", "check_line_inputs", "subtract_task", "channel_block_task", "assemble_task"]

logger = logging.getLogger(__name__)

_ROUND_RE = re.compile(r"\.round(\d+)\.model\.fits$")


def final_models(continuum_dir: str | os.PathLike[str], mss: dict[int, str]) -> dict[int, str]:
    """``{beam: model prefix}``: each beam's clean model of the highest self-cal round in ``continuum_dir``.

    The prefix is the model's path without ``.model.fits`` (``flint subtract --model-prefix``).
    """
    out: dict[int, str] = {}
    folder = Path(continuum_dir)
    for beam, ms in mss.items():
        stem = Path(ms).name.removesuffix(".ms")
        found = [(int(m.group(1)), p) for p in folder.glob(f"{stem}.round*.model.fits") if (m := _ROUND_RE.search(p.name))]
        if not found:
            raise FlintInputError(
                f"{folder}: no clean model {stem}.round<N>.model.fits for beam {beam}; give the continuum flow's --out-dir "
                "(run 'flint flow continuum' first)"
            )
        _, best = max(found)
        out[beam] = os.fspath(best).removesuffix(".model.fits")
    return out


def check_line_inputs(parameters: dict[str, Any]) -> None:
    """The line flow's checks before submission (raises :class:`FlintInputError` naming the flag)."""
    from flint.subtract import SubtractOptions

    cont = parameters.get("continuum")
    if not cont or not Path(cont).is_dir():
        raise FlintInputError(f"{cont}: no such folder; give the continuum flow's output folder (flint flow line CONTINUUM_DIR)")
    mss = find_by_beam(cont, ".ms", parameters.get("beams"), calibrator=False)
    final_models(cont, mss)
    if int(parameters.get("channel_block") or 1) < 1:
        raise FlintInputError(f"--channel-block {parameters.get('channel_block')}: give 1 or more channels per block")
    from flint.cli._options import build_options

    build_options(
        SubtractOptions,
        {"uvcontsub_order": parameters.get("uvcontsub_order", 1), "fit_channels": parameters.get("fit_channels")},
    )
    _strategy(parameters.get("strategy"))


def cube_wsclean_options(strat: Any, size: int | None = None, scale_arcsec: float | None = None) -> Any:
    """WSClean options of the channel cubes: the strategy's last round, naturally weighted, cleaned
    against its own auto-mask (5 sigma) to 3 sigma in every channel, on ``CONTSUB_DATA``, image cubes only.

    Natural weighting, as HI cubes are made for line sensitivity: much of a line's flux (its wings,
    every channel of a faint line) stays below the clean threshold, and that uncleaned part is in
    units of the dirty beam. The continuum strategy's Briggs-0 dirty beam has a main lobe narrower
    than its fitted restoring beam (a restoring-beam fit to it returns 0.875 of its peak), so a
    point source's line read with the restoring beam came out low: LINE001 of the line demo
    0.869 of its truth with Briggs 0, 0.892 with robust 0.5, 0.921 natural (seed 42); with 10x
    less noise 0.962 / 0.968 / 0.979 in the beam cube, against 0.988 in the visibilities.
    """
    return last_round_wsclean(strat, size, scale_arcsec).with_options(
        weight="natural", auto_mask=5.0, auto_threshold=3.0, fits_mask=None, data_column="CONTSUB_DATA", cube_products=("image",),
        channels_out=1, join_channels=False, fit_spectral_pol=None,
    )


@task(name="subtract", task_run_name="subtract-{label}", **T._SAFE)  # type: ignore[call-overload]
def subtract_task(ms: Any, options: Any, out_dir: str, label: str) -> Any:
    """Predict the continuum model and subtract it (a retry overwrites the half-made column: none is left)."""
    from flint.subtract import run_subtract

    result = run_subtract(T._ms(ms), options.with_options(overwrite=True))
    T.stage_log(out_dir, "subtract", label)
    return result


@task(name="cube_block", task_run_name="cube_block-{label}", **T._SAFE)  # type: ignore[call-overload]
def channel_block_task(subtracted: Any, start: int, end: int, options: Any, out_dir: str, label: str) -> Any:
    """Image MS channels ``[start, end)`` of the continuum-subtracted column."""
    from flint.imaging import run_channel_block

    result = run_channel_block(T._ms(subtracted), start, end, options, out_dir=out_dir)
    T.stage_log(out_dir, "cube_block", label)
    return result


@task(name="cube_assemble", task_run_name="cube_assemble-{label}", **T._SAFE)  # type: ignore[call-overload]
def assemble_task(blocks: list[Any], out_dir: str, label: str) -> str:
    """Stream a beam's channel blocks into its image cube; returns the cube's path."""
    from flint.imaging import assemble_channel_blocks

    result = assemble_channel_blocks(blocks, out_dir=out_dir)
    T.stage_log(out_dir, "cube_assemble", label)
    return os.fspath(next(p for k, p in result.cubes.items() if k.endswith("image")))


@flow(name="flint-line")
def line_flow(
    continuum: str,
    out_dir: str,
    strategy: str | None = None,
    beams: list[int] | None = None,
    fit_channels: str | None = None,
    uvcontsub_order: int | None = 1,
    channel_block: int = 8,
    size: int | None = None,
    scale_arcsec: float | None = None,
) -> dict[str, Any]:
    """Continuum-subtract, image channel cubes per beam, and mosaic them channel by channel.

    Parameters
    ----------
    continuum
        The continuum flow's output folder (self-calibrated MSs and clean models; only read).
    out_dir
        Folder for the copies, cubes and the mosaic.
    strategy
        The continuum flow's strategy (its last round's WSClean options are the cubes' base).
    fit_channels, uvcontsub_order
        Polynomial uv-continuum fit of this order (``None``: none) over these line-free channels:
        ``auto`` / ``None`` (found per beam, :mod:`flint.linefree`), ``all`` or ranges ``0~9,50~63``.
    channel_block
        Channels per imaging task.
    size, scale_arcsec
        Cube image size (pixels) and pixel scale (arcsec); default: the strategy's.

    Returns ``{"cubes": {beam: path}, "convolved": [paths], "mosaic": path, "weight": path,
    "noise_jy": [per-beam cube noise], "subtract": {beam: {"rms_in_jy", "rms_out_jy", "fit_channels",
    "line_channels"}}}`` (``fit_channels``: the channels the polynomial was fitted over;
    ``line_channels``: those found with lines, ``None`` when the channels were given).
    """
    from flint._imaging_cubes import channel_blocks, ms_channel_freqs
    from flint.subtract import SubtractOptions

    strat = _strategy(strategy)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mss = find_by_beam(continuum, ".ms", beams, calibrator=False)
    models = final_models(continuum, mss)
    wsopts = cube_wsclean_options(strat, size, scale_arcsec)
    first = parse_name(next(iter(mss.values())))
    cubes: dict[int, Any] = {}
    subs: dict[int, Any] = {}
    for beam, ms_path in sorted(mss.items()):
        label = f"beam{beam:02d}"
        nchan = len(ms_channel_freqs(ms_path))
        sub_opts = SubtractOptions(model_prefix=Path(models[beam]), uvcontsub_order=uvcontsub_order, fit_channels=fit_channels)
        ms = T.copy_ms_task.submit(ms_path, out_dir, label)
        subs[beam] = subtract_task.submit(ms, sub_opts, out_dir, label)
        blocks = [
            channel_block_task.submit(subs[beam], s, e, wsopts, out_dir, f"{label}.ch{s:04d}")
            for s, e in channel_blocks(0, nchan, channel_block)
        ]
        cubes[beam] = assemble_task.submit(blocks, out_dir, label)
    from flint.convol import ConvolOptions

    # radio-beam's common_beam fails to converge at its 1e-4 default on nearly equal beams (~0.5 deg PA apart)
    conv_opts = ConvolOptions(mode="natural", tolerance=1e-2)
    conv = T.convol_task.submit([cubes[b] for b in sorted(cubes)], conv_opts, out_dir, "line")
    mosaic_path = os.fspath(out / product_name(first.sbid, first.field, suffix="image.cube.linmos.fits"))
    # every pixel of the cubes (edge_beams 0): the strategy's continuum edge cut would take the outer 2 beams,
    # a fifth of a 400-pixel cube's area (the line demo's brightest continuum source with it)
    lin_opts = strat.options_for("linmos", int(strat.n_rounds)).with_options(edge_beams=0.0)
    mosaic = T.linmos_task.submit(conv, lin_opts, mosaic_path, out_dir, "line")
    lin = mosaic.result()
    return {
        "cubes": {b: f.result() for b, f in cubes.items()},
        "convolved": [os.fspath(p) for p in conv.result().images],
        "mosaic": os.fspath(lin.mosaic),
        "weight": os.fspath(lin.weight) if lin.weight else None,
        "noise_jy": list(lin.noise_jy),
        "subtract": {b: _subtract_summary(f.result()) for b, f in subs.items()},
    }


def _subtract_summary(r: Any) -> dict[str, Any]:
    from flint.linefree import format_channel_ranges

    lf = r.line_free
    return {
        "rms_in_jy": r.rms_in_jy,
        "rms_out_jy": r.rms_out_jy,
        "fit_channels": r.fit_channels,
        "line_channels": format_channel_ranges(lf.line) if lf is not None else None,
    }
