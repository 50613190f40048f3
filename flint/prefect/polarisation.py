"""The polarisation flow: after the continuum flow's self-cal, IQUV cubes -> mosaics -> leakage and RM products.

``polarisation``
    per beam, in parallel: WSClean ``-pol IQUV -join-polarizations`` channel cubes of the
    continuum flow's self-calibrated MS (``<base>.{i,q,u,v}.image.cube.fits``, per-channel
    ``BEAMS``; the MS is only read: no ``MODEL_DATA`` written); then, joining the beams:
    one common beam per channel across every beam and Stokes parameter
    (:func:`flint.convol.run_convol`, ``natural`` mode) -> cube linmos per Stokes parameter
    (:func:`flint.linmos.run_linmos`; with ``pb_cube``, an ASKAP holography beam cube, its
    Stokes-I response and the removal of its Q/U/V leakage) -> leakage check
    (:func:`flint.leakage.run_leakage`: V/I, Q/I, U/I at the catalogue's compact, isolated,
    bright components) -> RM synthesis (:func:`flint.polarisation.run_rmsynth`, RM-Tools):
    peak polarised intensity and RM maps, per-component RM and polarised fraction.

The continuum flow's folder is the input: its ``SB<sbid>.<field>.beamNN.ms`` and the
catalogue of its last mosaic (``*.round<N>.linmos.comp.csv``, highest ``N``) unless
``catalogue`` names another. The bandpass those MSs carry should be a full-Jones one
(``flint calibrate bandpass --full-jones``, strategy key ``bandpass: {full_jones: true}``):
XX/YY gains leave the on-axis leakage in. Self-cal should not solve X and Y amplitudes
apart against a Stokes-I model (it would absorb Stokes Q): use phase-only rounds
(:func:`pol_strategy` writes such a strategy).
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

__all__ = [
    "polarisation_flow",
    "check_polarisation_inputs",
    "final_catalogue",
    "pol_wsclean_options",
    "pol_strategy",
    "iquv_cubes_task",
    "stokes_linmos_task",
    "leakage_task",
    "rmsynth_task",
    "STOKES",
]

logger = logging.getLogger(__name__)

STOKES = ("i", "q", "u", "v")
_CAT_RE = re.compile(r"\.round(\d+)\.linmos\.comp\.csv$")


def final_catalogue(continuum_dir: str | os.PathLike[str]) -> str:
    """The continuum flow's catalogue of its last mosaic (``*.round<N>.linmos.comp.csv``, highest ``N``)."""
    folder = Path(continuum_dir)
    found = [(int(m.group(1)), p) for p in folder.glob("*.round*.linmos.comp.csv") if (m := _CAT_RE.search(p.name))]
    if not found:
        raise FlintInputError(
            f"{folder}: no catalogue *.round<N>.linmos.comp.csv; give the continuum flow's --out-dir, or a catalogue with --catalogue"
        )
    return os.fspath(max(found)[1])


def check_polarisation_inputs(parameters: dict[str, Any]) -> None:
    """The polarisation flow's checks before submission (raises :class:`FlintInputError` naming the flag)."""
    cont = parameters.get("continuum")
    if not cont or not Path(cont).is_dir():
        raise FlintInputError(f"{cont}: no such folder; give the continuum flow's output folder (flint flow polarisation CONTINUUM_DIR)")
    find_by_beam(cont, ".ms", parameters.get("beams"), calibrator=False)
    cat = parameters.get("catalogue")
    if cat is not None and not Path(cat).is_file():
        raise FlintInputError(f"{cat}: no such catalogue; give flint find-sources' catalogue with --catalogue")
    if cat is None:
        final_catalogue(cont)
    pb = parameters.get("pb_cube")
    if pb is not None:
        from flint.primary_beam import HolographyBeams

        if not Path(pb).is_file():
            raise FlintInputError(f"{pb}: no such holography beam cube (--pb-cube)")
        HolographyBeams(pb)
    _strategy(parameters.get("strategy"))


def pol_wsclean_options(strat: Any, n_channels: int, size: int | None = None, scale_arcsec: float | None = None, niter: int = 1000) -> Any:
    """WSClean options of the IQUV cubes: the strategy's last round, ``-pol IQUV -join-polarizations``,
    one image per MS channel (each cleaned on its own, with its own restoring beam), WSClean's
    auto-mask (5 sigma) then deep inside that mask to 1 sigma in at most ``niter`` iterations per
    channel, no local-RMS map, image cubes only, the MS only read.

    Why 1 sigma: a channel's noise is large (one 8 MHz channel of a 200 s snapshot: ~40 mJy),
    and stopping at 3 sigma left up to ~120 mJy of a 1-2 Jy source in the residual, whose
    dirty-beam shape is not the restoring beam: the bright sources' I/Q/U/V read 1-4 % low
    (measured per channel against the truth: 0.960-0.993 at 3 sigma, 0.975-1.002 at 1 sigma).

    Channels are not joined: WSClean 3.1's joined deconvolution of 36 channels x 4 Stokes images
    updates every image at each iteration and took over 5 minutes per beam on a 512-pixel image
    (independent channels: seconds each). ``-squared-channel-joining`` stays available through
    the strategy's wsclean options for joined runs."""
    return last_round_wsclean(strat, size, scale_arcsec).with_options(
        pol="IQUV", join_polarizations=True, channels_out=n_channels, cube=True, cube_products=("image",),
        join_channels=False, fit_spectral_pol=None, squared_channel_joining=False, fits_mask=None, local_rms=False,
        auto_mask=5.0, auto_threshold=1.0, niter=niter, update_model=False, data_column="CORRECTED_DATA",
    )


def pol_strategy(
    path: str | os.PathLike[str],
    size: int | None = None,
    scale_arcsec: float | None = None,
    xy_phase: str | None = None,
    channels_out: int = 4,
    fit_spectral_pol: int = 2,
) -> Path:
    """The packaged strategy for polarisation, written to ``path``: a full-Jones bandpass
    (``xy_phase``: the reference antenna's XY-phase, deg or an ODC CSV), phase-only self-cal and,
    for the continuum rounds, WSClean's spectral fitting (``-join-channels -channels-out
    channels_out -fit-spectral-pol fit_spectral_pol``; ``channels_out=1``: plain MFS).

    Amplitude self-cal solves X and Y apart against a Stokes-I model and would take Stokes Q
    into the gains; the bandpass (full-Jones) sets the amplitudes instead.

    Spectral fitting: polarisation wants ASKAP's whole 288 MHz (32 % of 888 MHz), over which a
    source of spectral index -0.8 changes by 25 % and the primary beam's response more off-axis;
    one flat MFS model leaves that in the residuals of every bright source. Measured on the
    ``flint demo --pol`` field (2026-12-03, continuum flow alone, same data): plain MFS 16.4x
    thermal, 7 of 12 inner >= 5 sigma components spurious, 66 s; 4 sub-bands with a linear fit
    10.2x, 2 of 6, 81 s; 8 sub-bands with a quadratic fit 9.8x, 2 of 6, 85 s.
    The polarisation flow's own cubes set their channels themselves (:func:`pol_wsclean_options`).
    """
    import yaml

    from flint.io import atomic_write_text
    from flint.strategy import default_strategy_path

    text = yaml.safe_load(default_strategy_path().read_text())
    for spec in (text.get("rounds") or {}).values():
        if "selfcal" in (spec or {}):
            spec["selfcal"]["mode"] = "phase"
    text["defaults"].setdefault("bandpass", {})["full_jones"] = True
    if xy_phase is not None:
        text["defaults"]["bandpass"]["xy_phase"] = str(xy_phase)
    if size is not None:
        text["defaults"]["wsclean"]["size"] = size
    if scale_arcsec is not None:
        text["defaults"]["wsclean"]["scale_arcsec"] = scale_arcsec
    if channels_out > 1:
        text["defaults"]["wsclean"].update(channels_out=channels_out, join_channels=True, fit_spectral_pol=fit_spectral_pol)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out, yaml.safe_dump(text, sort_keys=False))


@task(name="iquv_cubes", task_run_name="iquv_cubes-{label}", **T._SAFE)  # type: ignore[call-overload]
def iquv_cubes_task(ms: str, options: Any, out_dir: str, label: str) -> dict[str, str]:
    """IQUV channel cubes of one beam; returns ``{stokes: cube path}``."""
    from flint.imaging import run_imaging
    from flint.ms import MS

    result = run_imaging(MS.cast(ms), options, out_dir=out_dir)
    cubes = {k.split(".")[0]: os.fspath(v) for k, v in result.cubes.items() if k.endswith("image")}
    missing = [p for p in STOKES if p not in cubes]
    if missing:
        raise FlintInputError(f"{ms}: imaging made no {'/'.join(missing)} cube (got {sorted(result.cubes)}); check the wsclean options")
    T.stage_log(out_dir, "iquv_cubes", label)
    return cubes


@task(name="stokes_linmos", task_run_name="stokes_linmos-{label}", **T._SAFE)  # type: ignore[call-overload]
def stokes_linmos_task(conv: Any, stokes: str, options: Any, output: str, out_dir: str, label: str) -> Any:
    """Cube linmos of one Stokes parameter's convolved beam cubes (Q/U/V: I cubes for leakage removal)."""
    from flint.linmos import run_linmos

    paths = [Path(p) for p in conv.images]
    n = len(paths) // len(STOKES)
    k = STOKES.index(stokes)
    mine = paths[k * n : (k + 1) * n]
    if options.pb_cube is not None and stokes != "i":
        options = options.with_options(stokes_i=paths[:n])
    result = run_linmos(mine, options, output=output)
    T.stage_log(out_dir, "stokes_linmos", label)
    return result


@task(name="leakage", task_run_name="leakage-{label}", **T._SAFE)  # type: ignore[call-overload]
def leakage_task(mosaics: dict[str, Any], catalogue: str, out_dir: str, label: str) -> Any:
    """V/I (Q/I, U/I) at the catalogue's components of the mosaics."""
    from flint.leakage import LeakageOptions, run_leakage

    path = {p: os.fspath(T._path(m, "mosaic")) for p, m in mosaics.items()}
    opts = LeakageOptions(overwrite=True, min_snr=10.0)
    try:
        result = run_leakage(path["v"], path["i"], catalogue, opts, image_q=path["q"], image_u=path["u"])
    except FlintInputError as exc:  # no component passes the selection: the check has nothing to say, the products stand
        logger.warning("leakage check skipped: %s", exc)
        result = None
    T.stage_log(out_dir, "leakage", label)
    return result


@task(name="rmsynth", task_run_name="rmsynth-{label}", **T._SAFE)  # type: ignore[call-overload]
def rmsynth_task(mosaics: dict[str, Any], catalogue: str, out_dir: str, label: str) -> Any:
    """RM synthesis of the Q/U mosaics (RM-Tools): PI and RM maps, the components' RM and polarised fraction."""
    from flint.polarisation import RMSynthOptions, run_rmsynth

    path = {p: os.fspath(T._path(m, "mosaic")) for p, m in mosaics.items()}
    result = run_rmsynth(path["q"], path["u"], RMSynthOptions(overwrite=True), i_cube=path["i"], catalogue=catalogue)
    T.stage_log(out_dir, "rmsynth", label)
    return result


@flow(name="flint-polarisation")
def polarisation_flow(
    continuum: str,
    out_dir: str,
    strategy: str | None = None,
    beams: list[int] | None = None,
    pb_cube: str | None = None,
    catalogue: str | None = None,
    size: int | None = None,
    scale_arcsec: float | None = None,
) -> dict[str, Any]:
    """IQUV cubes per beam, common beam per channel, cube linmos, leakage check and RM synthesis.

    Parameters
    ----------
    continuum
        The continuum flow's output folder (self-calibrated MSs, only read; its last catalogue).
    out_dir
        Folder for the cubes, mosaics, leakage table/figure and RM products.
    strategy
        The continuum flow's strategy (its last round's WSClean options are the cubes' base).
    pb_cube
        ASKAP holography beam cube (x, y, FREQ, STOKES, BEAM): its Stokes-I response and the
        removal of its Q/U/V leakage in linmos; ``None``: Gaussian beams, no leakage removed.
    catalogue
        Components for the leakage check and the RM table; default: the continuum flow's last.
    size, scale_arcsec
        Cube image size (pixels) and pixel scale (arcsec); default: the strategy's.

    Returns ``{"cubes": {beam: {stokes: path}}, "mosaics": {stokes: path}, "leakage": {"table",
    "figure", "median_abs_v_over_i", ...}, "rmsynth": {"pi_map", "rm_map", "table",
    "fwhm_rmsf_radm2"}, "catalogue": path, "pb_cube": path | None}``.
    """
    from flint._imaging_cubes import ms_channel_freqs

    strat = _strategy(strategy)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mss = find_by_beam(continuum, ".ms", beams, calibrator=False)
    cat = catalogue or final_catalogue(continuum)
    first = parse_name(next(iter(mss.values())))
    nchan = len(ms_channel_freqs(next(iter(mss.values()))))
    wsopts = pol_wsclean_options(strat, nchan, size, scale_arcsec)
    cubes = {beam: iquv_cubes_task.submit(ms, wsopts, out_dir, f"beam{beam:02d}") for beam, ms in sorted(mss.items())}
    done = {b: f.result() for b, f in cubes.items()}
    order = [done[b][p] for p in STOKES for b in sorted(done)]  # I of every beam, then Q, U, V
    from flint.convol import ConvolOptions

    conv = T.convol_task.submit(order, ConvolOptions(mode="natural"), out_dir, "polarisation")
    # every pixel of the cubes (edge_beams 0), as for the line cubes (flint.prefect.line)
    lin_opts = strat.options_for("linmos", int(strat.n_rounds)).with_options(pb_cube=Path(pb_cube) if pb_cube else None, edge_beams=0.0)
    mosaics = {
        p: stokes_linmos_task.submit(
            conv, p, lin_opts, os.fspath(out / product_name(first.sbid, first.field, suffix=f"{p}.image.cube.linmos.fits")), out_dir, p
        )
        for p in STOKES
    }
    leak = leakage_task.submit(mosaics, cat, out_dir, "mosaic")
    rm = rmsynth_task.submit(mosaics, cat, out_dir, "mosaic")
    lk, rs = leak.result(), rm.result()
    return {
        "cubes": {b: dict(c) for b, c in done.items()},
        "mosaics": {p: os.fspath(m.result().mosaic) for p, m in mosaics.items()},
        "leakage": {
            "table": os.fspath(lk.table), "figure": os.fspath(lk.figure), "n_used": lk.n_used,
            **{f"median_abs_{k.lower()}_over_i": float(v) for k, v in lk.median_abs.items()},
        } if lk is not None else {"table": None, "figure": None, "n_used": 0},
        "rmsynth": {
            "pi_map": os.fspath(rs.pi_map), "rm_map": os.fspath(rs.rm_map), "table": os.fspath(rs.table) if rs.table else None,
            "fwhm_rmsf_radm2": float(rs.fwhm_rmsf_radm2), "n_channels": int(rs.n_channels),
        },
        "catalogue": cat,
        "pb_cube": pb_cube,
    }
