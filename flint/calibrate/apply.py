"""Apply AO-format solutions to a Measurement Set: ``CORRECTED_DATA = J_p^-1 V J_q^-H``.

``DATA`` is never overwritten. The corrected column is written through a temporary
column renamed into place at the end, so an error leaves the MS as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from flint.calibrate import _solver
from flint.calibrate._checks import check_beam, data_beam, require_sky_frame, require_unflagged_data
from flint.calibrate._msdata import (
    MSLayout,
    ReplaceColumn,
    read_layout,
    read_rows,
    row_chunks,
    rows_per_chunk,
)
from flint.calibrate.aocal import AOSolutions
from flint.calibrate.caltables import load_solutions
from flint.errors import FlintInputError
from flint.io import atomic_path
from flint.ms import MS, open_table
from flint.options import BaseOptions

__all__ = ["ApplyOptions", "ApplyResult", "run_apply", "apply_solutions", "check_solutions_fit"]

logger = logging.getLogger(__name__)


class ApplyOptions(BaseOptions):
    """How to apply solutions to a Measurement Set."""

    data_column: str = "DATA"
    """Column holding the visibilities to correct."""
    output_column: str = "CORRECTED_DATA"
    """Column the calibrated visibilities are written to (never DATA)."""
    output_ms: Path | None = None
    """Write into a copy of the MS at this path instead of the MS itself."""
    flag_bad_solutions: bool = True
    """Flag visibilities whose solution is flagged (NaN) or singular (flags are only added)."""
    overwrite: bool = Field(default=False)
    """Allow ``output_ms`` to replace an existing MS."""
    allow_all_flagged: bool = False
    """Write the output column even when every visibility is already flagged (default: refuse)."""
    force: bool = False
    """Apply even solutions named for another beam, or to a raw ASKAP MS (instrument frame)."""

    @field_validator("output_column")
    @classmethod
    def _not_data(cls, v: str) -> str:
        if v.upper() == "DATA":
            raise ValueError("refusing to overwrite DATA; use --output-column CORRECTED_DATA (or --output-ms for a new MS)")
        return v


@dataclass(frozen=True)
class ApplyResult:
    """What :func:`run_apply` wrote."""

    ms: MS
    """The calibrated MS, with ``column`` set to the corrected column."""
    solutions: Path
    flagged_before: float
    flagged_after: float


def check_solutions_fit(sols: AOSolutions, layout: MSLayout, source: str) -> None:
    """Raise :class:`FlintInputError` unless ``sols`` matches the MS's antennas and channels."""
    if sols.n_antennas != layout.n_antennas or sols.n_channels != layout.n_channels:
        raise FlintInputError(
            f"{source}: solutions are for {sols.n_antennas} antennas x {sols.n_channels} channels but "
            f"{layout.path} has {layout.n_antennas} antennas x {layout.n_channels} channels; "
            "use the solutions of the matching beam/observation"
        )


def apply_solutions(
    layout: MSLayout,
    sols: AOSolutions,
    data_column: str,
    output_column: str,
    flag_bad_solutions: bool = True,
) -> tuple[float, float]:
    """Write ``sols`` applied to ``data_column`` into ``output_column``; return flag fractions."""
    check_solutions_fit(sols, layout, "solutions")
    chunk = max(1, rows_per_chunk(layout, 48))
    flagged0 = flagged1 = 0
    total = 0
    any_bad = sols.n_flagged > 0
    jones, group = sols.grouped_jones, sols.channel_group
    # A chunk's rows fall in a few solution intervals: give the solver only those, as it inverts
    # every interval it is given (with all of them, each chunk cost grew with the number of
    # intervals and the apply's time with its square: self-cal at 10 s intervals took 7x the
    # time for 4x the integrations). Diagonal solutions only, so the subset takes the same
    # branch of correct_visibilities as the whole set (same bytes); full-Jones sets go whole.
    # Channels sharing a solution (self-cal) are inverted once per group.
    subset = jones.shape[0] > 1 and sols.diagonal
    with open_table(layout.path, mode="rw") as tab:
        rewrite_flags = flag_bad_solutions and any_bad
        with ReplaceColumn(tab, output_column, like=data_column) as tmp:
            flag_ctx = ReplaceColumn(tab, "FLAG", like="FLAG") if rewrite_flags else None
            tmp_flag = flag_ctx.__enter__() if flag_ctx else None
            try:
                for rng in row_chunks(layout.n_rows, chunk):
                    d = read_rows(tab, ["ANTENNA1", "ANTENNA2", "TIME", data_column, "FLAG"], rng)
                    iv = sols.interval_of(d["TIME"], layout.times)
                    jc = jones
                    if subset:
                        used, iv = np.unique(iv, return_inverse=True)
                        jc = jones[used]
                    corrected, bad = _solver.correct_visibilities(
                        d[data_column], jc, iv, d["ANTENNA1"], d["ANTENNA2"], layout.corr_types, group
                    )
                    tab.putcol(tmp, corrected, startrow=rng[0], nrow=rng[1])
                    flags = d["FLAG"]
                    flagged0 += int(flags.sum())
                    total += flags.size
                    if flag_bad_solutions:
                        flags = flags | bad[:, :, None]
                    flagged1 += int(flags.sum())
                    if tmp_flag:
                        tab.putcol(tmp_flag, flags, startrow=rng[0], nrow=rng[1])
            except BaseException as exc:
                if flag_ctx:
                    flag_ctx.__exit__(type(exc), exc, None)
                raise
            if flag_ctx:
                flag_ctx.__exit__(None, None, None)
    return flagged0 / max(total, 1), flagged1 / max(total, 1)


def run_apply(
    ms: MS | str | os.PathLike[str],
    solutions: str | os.PathLike[str],
    options: ApplyOptions | None = None,
) -> ApplyResult:
    """Apply an AO-format solution file to a Measurement Set.

    Parameters
    ----------
    ms
        The Measurement Set (or its path).
    solutions
        AO ``calibrate``-format ``.bin`` file (e.g. from :func:`run_bandpass`), an ASKAP
        ``calparameters`` table or a CASA B/G/T Jones caltable
        (:func:`flint.calibrate.caltables.load_solutions`).
    options
        :class:`ApplyOptions`; default: ``DATA`` -> ``CORRECTED_DATA`` in place.

    Returns
    -------
    ApplyResult
        ``result.ms.column == "CORRECTED_DATA"`` (the output column).

    Raises
    ------
    FlintInputError
        Missing/invalid solution file, its antennas/channels do not match the MS, or it is
        named for another beam (unless ``force``).
    FlintCalibrationError
        Every visibility is flagged (unless ``allow_all_flagged``).
    FlintMSError
        Missing data column or non-linear correlations.
    """
    opts = options or ApplyOptions()
    ms = MS.cast(ms)
    sols_path = Path(solutions)
    layout = read_layout(ms, opts.data_column)
    require_sky_frame(ms, "flint calibrate apply", opts.force)
    beam = data_beam(ms)
    loaded = load_solutions(sols_path, beam=beam, n_channels=layout.n_channels)
    sols = loaded.solutions
    check_solutions_fit(sols, layout, str(sols_path))
    if not opts.force:
        check_beam(loaded.beam, ms, beam, sols_path)
    if not opts.allow_all_flagged:
        require_unflagged_data(ms)
    if opts.output_ms is not None:
        out = Path(opts.output_ms)
        if out.exists() and out.resolve() == ms.path.resolve():
            raise FlintInputError(f"{out}: --output-ms is the input MS; leave --output-ms out to write in place")
        if out.exists() and not opts.overwrite:
            raise FlintInputError(f"{out}: exists already; remove it or use --overwrite")
        # build the calibrated copy under a temporary sibling name; it appears as `out` only when complete
        with atomic_path(out) as tmp:
            shutil.copytree(ms.path, tmp, symlinks=True)
            before, after = apply_solutions(
                read_layout(ms.with_(path=tmp), opts.data_column), sols, opts.data_column, opts.output_column, opts.flag_bad_solutions
            )
        ms = ms.with_(path=out)
    else:
        before, after = apply_solutions(layout, sols, opts.data_column, opts.output_column, opts.flag_bad_solutions)
    logger.info(
        "%s: applied %s (%s), %s -> %s; flagged %.2f%% -> %.2f%%",
        ms.path, sols_path.name, loaded.kind, opts.data_column, opts.output_column, 100 * before, 100 * after,
    )
    return ApplyResult(
        ms=ms.with_(column=opts.output_column),
        solutions=sols_path,
        flagged_before=before,
        flagged_after=after,
    )
