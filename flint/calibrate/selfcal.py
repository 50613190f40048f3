"""Self-calibration gain solve against ``MODEL_DATA`` (which wsclean writes), and apply.

The same solver as the bandpass (:mod:`flint.calibrate._solver`), with solution
intervals in time, optional channel averaging, a uv-range cut and a minimum SNR.
Phase-only mode keeps every gain amplitude at exactly 1.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from flint.calibrate._checks import require_sky_frame
from flint.calibrate._msdata import read_layout
from flint.calibrate._solve_ms import SolveSpec, resolve_antenna, solve_ms
from flint.calibrate.aocal import write_solutions
from flint.calibrate.apply import apply_solutions
from flint.calibrate.bandpass import default_solutions_path
from flint.ms import MS, calibrated_column, require_columns
from flint.options import BaseOptions

__all__ = ["SelfcalOptions", "SelfcalResult", "run_selfcal"]

logger = logging.getLogger(__name__)


class SelfcalOptions(BaseOptions):
    """How to self-calibrate a Measurement Set against its MODEL_DATA."""

    mode: Literal["phase", "amp+phase"] = "phase"
    """Solve phases only (amplitudes stay 1) or amplitudes and phases."""
    interval_s: float | None = Field(default=60.0, gt=0.0)
    """Solution interval (s); None: one solution for the whole observation."""
    chans_per_solution: int | None = Field(default=None, ge=1)
    """Channels averaged per solution; None: one solution across the band."""
    uv_min_lambda: float = Field(default=0.0, ge=0.0)
    """Ignore baselines shorter than this (wavelengths)."""
    uv_max_lambda: float | None = Field(default=None, gt=0.0)
    """Ignore baselines longer than this (wavelengths); None: no limit."""
    min_snr: float = Field(default=3.0, ge=0.0)
    """Flag solutions with a lower signal-to-noise; their data are flagged when applied."""
    ref_antenna: int | str = 0
    """Reference antenna (index or name)."""
    data_column: str | None = None
    """Column to calibrate; default CORRECTED_DATA if present, else DATA."""
    model_column: str = "MODEL_DATA"
    """Column with the model visibilities (e.g. predicted by wsclean)."""
    output_column: str = "CORRECTED_DATA"
    """Column the self-calibrated visibilities are written to."""
    apply: bool = True
    """Apply the solutions after solving."""
    round: int | None = Field(default=None, ge=0)
    """Self-cal round, used in the solution file name (``...roundN.selfcal.bin``)."""
    max_iter: int = Field(default=200, ge=1)
    """StEFCal iteration limit; unconverged solutions are flagged."""
    tol: float = Field(default=1e-7, gt=0.0)
    """Convergence tolerance (relative change of the gains)."""
    plot: bool = False
    """Write a PNG of the solutions next to them."""
    force: bool = False
    """Solve even on a raw ASKAP MS (instrument frame, beam phase centre not applied)."""


@dataclass(frozen=True)
class SelfcalResult:
    """What :func:`run_selfcal` wrote."""

    ms: MS
    """The MS, with ``column`` the self-calibrated column (or the input column if not applied)."""
    solutions: Path
    plot: Path | None
    data_column: str
    n_flagged_solutions: int
    residual_rms_before: float
    """Weighted RMS of data - model before (Jy)."""
    residual_rms_after: float
    """Weighted RMS of data - gains x model x gains^H (Jy)."""


def run_selfcal(
    ms: MS | str | os.PathLike[str],
    options: SelfcalOptions | None = None,
    output: str | os.PathLike[str] | None = None,
) -> SelfcalResult:
    """Solve gains against MODEL_DATA, write AO-format solutions and apply them.

    Parameters
    ----------
    ms
        The Measurement Set (one beam), or its path; must have ``MODEL_DATA``.
    options
        :class:`SelfcalOptions`.
    output
        Solution file; default ``SB<sbid>.<field>.beam<NN>[.round<N>].selfcal.bin`` next to the MS.

    Raises
    ------
    FlintMSError
        Missing data or model column, wrong correlations.
    FlintCalibrationError
        All data flagged.
    """
    opts = options or SelfcalOptions()
    ms = MS.cast(ms)
    require_sky_frame(ms, "flint calibrate selfcal", opts.force)
    column = opts.data_column if opts.data_column is not None else calibrated_column(ms)
    require_columns(ms, column, opts.model_column)
    layout = read_layout(ms, column)
    spec = SolveSpec(
        column=column,
        model_spectrum=None,
        model_column=opts.model_column,
        interval_s=opts.interval_s,
        chans_per_solution=opts.chans_per_solution,
        phase_only=opts.mode == "phase",
        ref_antenna=resolve_antenna(layout, opts.ref_antenna),
        uv_min_lambda=opts.uv_min_lambda,
        uv_max_lambda=opts.uv_max_lambda,
        max_iter=opts.max_iter,
        tol=opts.tol,
        min_snr=opts.min_snr,
    )
    outcome = solve_ms(layout, spec)
    out_path = Path(output) if output is not None else default_solutions_path(ms, "selfcal.bin", opts.round)
    write_solutions(out_path, outcome.solutions)
    plot = None
    if opts.plot:
        from flint.calibrate.plot import plot_solutions

        plot = plot_solutions(out_path)
    result_ms = ms.with_(column=column)
    if opts.apply:
        apply_solutions(layout, outcome.solutions, column, opts.output_column, flag_bad_solutions=True)
        result_ms = ms.with_(column=opts.output_column)
    return SelfcalResult(
        ms=result_ms,
        solutions=out_path,
        plot=plot,
        data_column=column,
        n_flagged_solutions=outcome.n_flagged_solutions,
        residual_rms_before=outcome.residual_rms_before,
        residual_rms_after=outcome.residual_rms_after,
    )
