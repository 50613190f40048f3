"""Bandpass calibration against PKS B1934-638.

Per-antenna, per-channel XX/YY gains are solved against the Reynolds (1994) flux model
of PKS B1934-638 (a point source at the phase centre), with the solve -> flag -> solve
rounds AO ``calibrate`` users run: solve (ignoring non-finite and zero samples), flag the
bad samples and run AOFlagger on the calibrated residuals (data / gains - model: RFI
stands out once the calibrator and the bandpass are removed; computed on the fly, one
AOFlagger pass per round), solve again. Flags are only added. The solutions are written
in the AO format.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from flint import _askap
from flint.calibrate import _solver
from flint.calibrate._checks import require_sky_frame
from flint.calibrate._msdata import MSLayout, read_layout
from flint.calibrate._solve_ms import SolveSpec, resolve_antenna, solve_ms
from flint.calibrate.aocal import AOSolutions, write_solutions
from flint.calibrate.fields import FieldChoice, choose_bandpass_field
from flint.errors import FlintInputError, FlintMSError
from flint.ms import MS, open_table
from flint.naming import parse_name, product_name
from flint.options import BaseOptions
from flint.primary_beam import angular_separation_deg

__all__ = ["BandpassOptions", "BandpassResult", "run_bandpass", "default_solutions_path"]

logger = logging.getLogger(__name__)


class BandpassOptions(BaseOptions):
    """How to solve for the bandpass of a PKS B1934-638 observation."""

    column: str = "DATA"
    """Data column holding the calibrator visibilities."""
    ref_antenna: int | str = 0
    """Reference antenna (index or name): its phase is set to zero in every channel."""
    preflag: bool = True
    """Deterministic flags of the data column (NaN/zero samples, zero UVW): written by the first
    flag round (a separate pass before the first solve only without flag rounds or with
    ``preflag_aoflagger``)."""
    preflag_aoflagger: bool = False
    """Also run AOFlagger in the preflag, on the spectrum-flattened raw data (a second AOFlagger
    pass; the flag rounds on the calibrated residuals find the RFI without it)."""
    flag_rounds: int = Field(default=1, ge=0, le=10)
    """Rounds of AOFlagger on the calibrated residuals (data / gains - model) -> solve again after the first solve."""
    aoflagger: bool = True
    """Use AOFlagger in the flagging steps (otherwise only the deterministic flags)."""
    strategy: Path | None = None
    """AOFlagger strategy file; default flint's calibrator.lua for the flag rounds (askap.lua for the preflag)."""
    max_iter: int = Field(default=200, ge=1)
    """StEFCal iteration limit; solutions that have not converged by then are flagged."""
    tol: float = Field(default=1e-7, gt=0.0)
    """Convergence tolerance (relative change of the gains between iterations)."""
    min_snr: float = Field(default=5.0, ge=0.0)
    """Flag solutions whose signal-to-noise (from the fit residuals) is lower."""
    outlier_nsigma: float | None = Field(default=8.0, gt=0.0)
    """Flag channels whose gain amplitude departs this many robust sigma from its neighbours; None: off."""
    smooth_window_channels: int | None = Field(default=None, ge=3)
    """Smooth the final solutions across channels (Savitzky-Golay window, channels) after
    flagging outlier channels (:mod:`flint.calibrate._smooth`); None: no smoothing."""
    check_field: bool = True
    """Refuse data whose phase centre is not PKS B1934-638."""
    max_offset_arcmin: float = Field(default=1.0, gt=0.0)
    """Largest allowed distance between the phase centre and PKS B1934-638 (arcmin)."""
    plot: bool = True
    """Write a PNG of the solutions next to them."""
    field: str | None = None
    """Field (name or FIELD_ID) holding PKS B1934-638; default: the field named for the MS's beam
    (ASKAP's 36-field bandpass MSs), else the one whose phase centre is nearest 1934-638."""
    force: bool = False
    """Solve even on a raw ASKAP MS (instrument frame, beam phase centre not applied)."""
    full_jones: bool = False
    """Solve all four Jones terms per antenna and channel (gains, leakage; :mod:`flint.calibrate._jones`,
    whose docstring states what an unpolarised calibrator fixes) instead of XX/YY gains; needs XX XY YX YY."""
    xy_phase: str | None = None
    """With ``full_jones``: the reference antenna's XY-phase, a number (deg) or an on-dish-calibration CSV
    (``beam, antenna, freq_hz, xy_phase_deg``); None: 0 (removed upstream, as ASKAP's beamformer does)."""


@dataclass(frozen=True)
class BandpassResult:
    """What :func:`run_bandpass` wrote."""

    ms: MS
    solutions: Path
    """The AO-format ``.bin`` file."""
    plot: Path | None
    n_flagged_solutions: int
    """(antenna, channel) cells flagged in the solutions."""
    flagged_fraction: float
    """Fraction of the calibrator's visibilities flagged at the end."""
    residual_rms_jy: float
    """Weighted RMS of data - model after calibration (Jy)."""
    n_rounds: int
    seconds: float
    field: str = ""
    """Name of the field the solutions were solved on."""
    field_id: int = 0
    """Its FIELD_ID."""
    field_reason: str = ""
    """Why that field was chosen."""


def default_solutions_path(ms: MS, suffix: str = "aocalibrate.bin", round: int | None = None) -> Path:
    """``SB<sbid>.<field>.beam<NN>[.round<N>].<suffix>`` next to the MS (or ``<stem>.<suffix>``)."""
    try:
        p = parse_name(ms.path)
        name = product_name(p.sbid, p.field, p.beam if p.beam is not None else ms.beam, round if round is not None else p.round, suffix)
    except FlintInputError:
        stem = ms.path.name[:-3] if ms.path.name.endswith(".ms") else ms.path.name
        name = f"{stem}.round{round}.{suffix}" if round is not None else f"{stem}.{suffix}"
    return ms.path.parent / name


def run_bandpass(
    ms: MS | str | os.PathLike[str],
    options: BandpassOptions | None = None,
    output: str | os.PathLike[str] | None = None,
) -> BandpassResult:
    """Solve the bandpass of a PKS B1934-638 observation and write AO-format solutions.

    Parameters
    ----------
    ms
        The calibrator Measurement Set (one beam), or its path.
    options
        :class:`BandpassOptions`.
    output
        Solution file; default ``SB<sbid>.B1934-638.beam<NN>.aocalibrate.bin`` next to the MS.

    Returns
    -------
    BandpassResult

    Raises
    ------
    FlintMSError
        Missing column, wrong correlations, or the phase centre is not PKS B1934-638.
    FlintCalibrationError
        All data flagged.
    """
    import tempfile
    import time

    t0 = time.perf_counter()
    opts = options or BandpassOptions()
    ms = MS.cast(ms)
    require_sky_frame(ms, "flint calibrate bandpass", opts.force)
    read_layout(ms, opts.column)  # columns, spectral windows and correlations, before anything is written
    choice = choose_bandpass_field(ms, opts.field)
    logger.info("%s: solving on field %d %r (%s)", ms.path, choice.field_id, choice.name, choice.reason)
    out_path = Path(output) if output is not None else default_solutions_path(ms)
    if choice.whole_ms:
        return _solve(ms, ms, opts, out_path, choice, t0)
    # several fields (an ASKAP 36-field bandpass MS): solve on a copy of the chosen field's rows only
    with tempfile.TemporaryDirectory(prefix=f".{ms.path.name}.field{choice.field_id}.", dir=ms.path.parent) as tmp:
        work = Path(tmp) / ms.path.name
        with open_table(ms.path) as tab:
            sel = tab.query(f"FIELD_ID=={choice.field_id}")
            try:
                sel.copy(str(work), deep=True).close()
            finally:
                sel.close()
        return _solve(ms, ms.with_(path=work), opts, out_path, choice, t0)


def _solve(ms: MS, work: MS, opts: BandpassOptions, out_path: Path, choice: FieldChoice, t0: float) -> BandpassResult:
    """[Preflag ->] solve -> [flag the residuals -> solve] on ``work`` (``ms`` or a copy of its field)."""
    import time

    from flint.calibrate.plot import plot_solutions
    from flint.flagging import FlagOptions, calibrator_strategy, flag_ms, run_flagging
    from flint.ms import summarise

    layout = read_layout(work, opts.column)
    if opts.check_field:
        sep = 60.0 * float(angular_separation_deg(layout.phase_centre_deg[0], layout.phase_centre_deg[1], _askap.B1934_RA_DEG, _askap.B1934_DEC_DEG))
        if sep > opts.max_offset_arcmin:
            raise FlintMSError(
                f"{ms.path}: phase centre of field {choice.name!r} ({layout.phase_centre_deg[0]:.4f}, {layout.phase_centre_deg[1]:.4f}) deg is "
                f"{sep:.1f} arcmin from PKS B1934-638; bandpass calibration needs 1934-638 at the phase centre "
                "(pick the field with --field, or use --no-check-field)"
            )
    ref = resolve_antenna(layout, opts.ref_antenna)
    solver: Callable[..., Any] = solve_ms
    if opts.full_jones:  # all four Jones terms; the XY-phase from --xy-phase (flint.calibrate._jones)
        from flint.calibrate._checks import data_beam
        from flint.calibrate._jones import read_xy_phase, solve_full_jones

        solver = partial(solve_full_jones, xy_phase_rad=read_xy_phase(opts.xy_phase, data_beam(ms), ref, layout.freqs_hz))
    spec = SolveSpec(
        column=opts.column,
        model_spectrum=np.asarray(_askap.b1934_flux_jy(layout.freqs_hz), dtype=float),
        interval_s=None,
        chans_per_solution=1,
        phase_only=False,
        ref_antenna=ref,
        max_iter=opts.max_iter,
        tol=opts.tol,
        min_snr=opts.min_snr,
        outlier_nsigma=opts.outlier_nsigma,
    )
    flag_opts = FlagOptions(column=opts.column, aoflagger=opts.aoflagger, strategy=opts.strategy)
    if opts.preflag and (opts.preflag_aoflagger or opts.flag_rounds == 0):
        # (with preflag_aoflagger) raw calibrator data carry the full bandpass: flatten it so AOFlagger sees RFI, not ripple
        run_flagging(work, flag_opts.with_options(aoflagger=opts.aoflagger and opts.preflag_aoflagger, flatten_spectrum=True))
    # otherwise the deterministic flags are written by the first flag round (one pass fewer); the
    # first solve already ignores non-finite and exactly-zero samples and FLAG_ROW
    # before a flag round, keep every solution: the residuals of a flagged one could not be judged
    first = spec if opts.flag_rounds == 0 else replace(spec, min_snr=0.0, outlier_nsigma=None)
    outcome = solver(layout, first)
    for i in range(opts.flag_rounds):
        # AOFlagger on the calibrated residuals (data / gains - model), computed on the fly: noise
        # plus RFI, with the calibrator and the bandpass gone; nothing but FLAG is written
        residual = _residuals(layout, outcome.solutions, spec.model_spectrum, opts.column)
        fr = flag_ms(work, flag_opts.with_options(strategy=opts.strategy or calibrator_strategy(), flag_zero_uvw=opts.preflag, subtract_time_median=True), residual)
        if fr.flagged_after - fr.flagged_before > 0.1:
            logger.warning(
                "%s: flag round %d flagged %.1f%% more of the calibrator's data (%.1f%% -> %.1f%%); "
                "check the solutions plot and the AOFlagger strategy",
                ms.path, i + 1, 100 * (fr.flagged_after - fr.flagged_before), 100 * fr.flagged_before, 100 * fr.flagged_after,
            )
        outcome = solver(layout, spec)
    if opts.smooth_window_channels is not None:
        from flint.calibrate._smooth import SmoothOptions, smooth_solutions

        smoothed, _ = smooth_solutions(outcome.solutions, SmoothOptions(window_channels=opts.smooth_window_channels, ref_antenna=ref))
        outcome = replace(outcome, solutions=smoothed)
    write_solutions(out_path, outcome.solutions)
    plot = plot_solutions(out_path) if opts.plot else None
    frac = summarise(work, check_data=False).flagged_fraction
    n_flag = int(outcome.solutions.flagged.sum())
    logger.info("%s: bandpass -> %s (%d flagged solutions, %.2f%% data flagged)", ms.path, out_path, n_flag, 100 * frac)
    return BandpassResult(
        ms=ms,
        solutions=out_path,
        plot=plot,
        n_flagged_solutions=n_flag,
        flagged_fraction=frac,
        residual_rms_jy=outcome.residual_rms_after,
        n_rounds=1 + opts.flag_rounds,
        seconds=time.perf_counter() - t0,
        field=choice.name,
        field_id=choice.field_id,
        field_reason=choice.reason,
    )


def _residuals(layout: MSLayout, sols: AOSolutions, spectrum: Any, column: str) -> Callable[[dict[str, Any]], tuple[Any, Any]]:
    """Transform for :func:`flint.flagging.flag_ms`: ``column`` corrected by ``sols`` minus the point-source model."""
    x, y = layout.xx_yy

    def transform(d: dict[str, Any]) -> tuple[Any, Any]:
        iv = sols.interval_of(d["TIME"], layout.times)
        res, bad = _solver.correct_visibilities(
            d[column], sols.grouped_jones, iv, d["ANTENNA1"], d["ANTENNA2"], layout.corr_types, sols.channel_group
        )
        res[..., x] -= spectrum.astype(np.float32)
        res[..., y] -= spectrum.astype(np.float32)
        res[bad] = 0
        return res, bad

    return transform
