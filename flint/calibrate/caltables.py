"""Observatory calibration tables as flint solutions: ASKAP ``calparameters`` and CASA caltables.

Both are casacore tables. :func:`load_solutions` reads any solution source flint knows
and returns :class:`~flint.calibrate.aocal.AOSolutions` (the AO format, in memory):

* an AO ``calibrate`` ``.bin`` file (flint's own format);
* an ASKAPsoft ``calparameters`` table (``cbpcalibrator`` / ``ccalibrator``): columns
  ``TIME``, ``BANDPASS``/``BANDPASS_VALID`` (per row a cube ``(beam, antenna, 2*channel + pol)``
  as python-casacore returns it: ``2*chan`` is X, ``2*chan + 1`` is Y),
  ``GAIN``/``GAIN_VALID`` (``(beam, antenna, pol)``) and ``LEAKAGE``/``LEAKAGE_VALID``.
  A cell left undefined means "not solved"; the last row with a defined cell is used,
  as ASKAPsoft does. One table holds every beam: the MS's beam is taken from it.
  Jones = diag(bandpass x gain);
* a CASA caltable of ``VisCal`` ``B Jones`` (bandpass), ``G Jones`` or ``T Jones`` with one
  solution time: ``CPARAM``/``FLAG`` per row ``(channel, pol)``, ``ANTENNA1``,
  ``SPECTRAL_WINDOW_ID`` (one spectral window).

Any other table gets an error naming what it is and what flint reads.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from flint.calibrate.aocal import AOSolutions, read_solutions
from flint.errors import FlintInputError

__all__ = ["LoadedSolutions", "load_solutions", "solution_kind", "SUPPORTED_CASA_VISCAL"]

logger = logging.getLogger(__name__)

#: CASA calibration types flint converts (complex, diagonal, per antenna)
SUPPORTED_CASA_VISCAL = ("B Jones", "G Jones", "T Jones")

SolutionKind = Literal["ao", "askap-calparameters", "casa-caltable"]

_READS = "flint reads AO .bin files, ASKAP calparameters tables and CASA B/G/T Jones caltables"


@dataclass(frozen=True)
class LoadedSolutions:
    """Solutions read from a file or table, in the AO form."""

    solutions: AOSolutions
    kind: SolutionKind
    """Where they came from."""
    beam: int | None
    """The beam the solutions belong to, when the source says (a name, or the beam picked
    from a calparameters table)."""


def _is_table(path: Path) -> bool:
    return path.is_dir() and (path / "table.dat").exists()


def _open(path: Path) -> Any:
    from casacore.tables import table

    try:
        return table(str(path), readonly=True, ack=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise FlintInputError(f"{path}: cannot be opened as a casacore table ({first})") from None


def solution_kind(path: str | os.PathLike[str]) -> SolutionKind:
    """Which kind of solution source ``path`` is.

    Raises
    ------
    FlintInputError
        Missing path, or a casacore table flint does not read (e.g. a Measurement Set).
    """
    path = Path(path)
    if not path.exists():
        raise FlintInputError(f"{path}: no such solution file; give the .bin written by 'flint calibrate bandpass'")
    if not _is_table(path):
        return "ao"
    tab = _open(path)
    try:
        cols = set(tab.colnames())
        viscal = str(tab.getkeywords().get("VisCal", ""))
    finally:
        tab.close()
    if "CPARAM" in cols or "FPARAM" in cols:
        return "casa-caltable"
    if "TIME" in cols and cols & {"BANDPASS", "GAIN"}:
        return "askap-calparameters"
    if {"ANTENNA1", "ANTENNA2", "UVW"} <= cols:
        raise FlintInputError(f"{path}: is a Measurement Set, not solutions; give the solution file as the second argument")
    shown = ", ".join(sorted(cols)) or "none"
    raise FlintInputError(f"{path}: casacore table of unknown kind (VisCal {viscal or '-'}; columns: {shown}); {_READS}")


def _last_defined_row(tab: Any, column: str) -> int | None:
    if column not in tab.colnames():
        return None
    for row in range(tab.nrows() - 1, -1, -1):
        if tab.iscelldefined(column, row):
            return row
    return None


def _read_calparameters(path: Path, beam: int | None) -> LoadedSolutions:
    tab = _open(path)
    try:
        bp_row = _last_defined_row(tab, "BANDPASS")
        g_row = _last_defined_row(tab, "GAIN")
        if bp_row is None and g_row is None:
            raise FlintInputError(f"{path}: ASKAP calparameters table with no BANDPASS or GAIN solutions in any row; {_READS}")
        bp = bp_valid = gain = gain_valid = None
        if bp_row is not None:
            bp = np.asarray(tab.getcell("BANDPASS", bp_row))  # (beam, ant, 2*chan)
            bp_valid = np.asarray(tab.getcell("BANDPASS_VALID", bp_row), dtype=bool)
        if g_row is not None:
            gain = np.asarray(tab.getcell("GAIN", g_row))  # (beam, ant, 2)
            gain_valid = np.asarray(tab.getcell("GAIN_VALID", g_row), dtype=bool)
        l_row = _last_defined_row(tab, "LEAKAGE")
        leak_used = False
        if l_row is not None:
            leak = np.asarray(tab.getcell("LEAKAGE", l_row))
            valid = np.asarray(tab.getcell("LEAKAGE_VALID", l_row), dtype=bool)
            leak_used = bool(np.any(valid & (np.abs(leak) > 0)))
    finally:
        tab.close()
    ref = bp if bp is not None else gain
    assert ref is not None
    n_beams, n_ant = int(ref.shape[0]), int(ref.shape[1])
    if beam is None:
        if n_beams != 1:
            raise FlintInputError(
                f"{path}: ASKAP calparameters table holds {n_beams} beams and the beam of the data is unknown; "
                "apply it to an MS that records its beam (FEED.BEAM_ID or ...beamNN... in its name), or plot with --beam"
            )
        beam = 0
    if not 0 <= beam < n_beams:
        raise FlintInputError(f"{path}: ASKAP calparameters table holds beams 0..{n_beams - 1}; the data are beam {beam}")
    if bp is not None and bp_valid is not None:
        nc = bp.shape[2] // 2
        g = np.stack([bp[beam, :, 0::2], bp[beam, :, 1::2]], axis=-1).astype(np.complex128)  # (ant, chan, pol)
        v = np.stack([bp_valid[beam, :, 0::2], bp_valid[beam, :, 1::2]], axis=-1)
    else:
        nc = 1
        g = np.ones((n_ant, 1, 2), dtype=np.complex128)
        v = np.ones((n_ant, 1, 2), dtype=bool)
    if gain is not None and gain_valid is not None:
        if gain.shape[:2] != (n_beams, n_ant):
            raise FlintInputError(f"{path}: GAIN is shaped {gain.shape} but BANDPASS {ref.shape}; the table is inconsistent")
        g = g * gain[beam][:, None, :]
        v = v & gain_valid[beam][:, None, :]
    g[~v] = np.nan
    if leak_used:
        logger.warning("%s: the table's LEAKAGE (polarisation leakage) terms are not applied; only the parallel-hand gains are", path)
    logger.info("%s: ASKAP calparameters table, beam %d: %d antennas x %d channels", path, beam, n_ant, nc)
    sols = AOSolutions.from_gains(g[None], start_time=0.0, end_time=0.0)
    return LoadedSolutions(solutions=sols, kind="askap-calparameters", beam=beam)


def _read_casa(path: Path) -> LoadedSolutions:
    from flint.ms import name_beam

    tab = _open(path)
    try:
        cols = tab.colnames()
        viscal = str(tab.getkeywords().get("VisCal", "")).strip()
        if viscal not in SUPPORTED_CASA_VISCAL or "CPARAM" not in cols:
            raise FlintInputError(
                f"{path}: CASA caltable of type {viscal or 'unknown'!r} is not supported; "
                f"flint applies {', '.join(SUPPORTED_CASA_VISCAL)} tables (complex per-antenna gains)"
            )
        if tab.nrows() == 0:
            raise FlintInputError(f"{path}: CASA caltable has no rows (no solutions)")
        spw = np.unique(tab.getcol("SPECTRAL_WINDOW_ID"))
        times = np.unique(tab.getcol("TIME"))
        ant = np.asarray(tab.getcol("ANTENNA1"))
        cparam = np.asarray(tab.getcol("CPARAM"))  # (row, chan, pol)
        flag = np.asarray(tab.getcol("FLAG"), dtype=bool) if "FLAG" in cols else np.zeros(cparam.shape, bool)
    finally:
        tab.close()
    if len(spw) != 1:
        raise FlintInputError(f"{path}: CASA caltable holds {len(spw)} spectral windows; flint applies one (split the table by spw)")
    if len(times) != 1:
        raise FlintInputError(
            f"{path}: CASA caltable holds solutions at {len(times)} times; flint converts one solution per antenna "
            "(a bandpass solved with solint='inf', combine='scan')"
        )
    n_ant = int(ant.max()) + 1
    if (path / "ANTENNA").exists():
        sub = _open(path / "ANTENNA")
        try:
            n_ant = max(n_ant, sub.nrows())
        finally:
            sub.close()
    nc, npol = cparam.shape[1], cparam.shape[2]
    if npol not in (1, 2):
        raise FlintInputError(f"{path}: CASA caltable has {npol} polarisations per solution; flint applies 1 or 2 (X, Y)")
    g: NDArray[np.complex128] = np.full((n_ant, nc, 2), np.nan + 0j)
    vals = np.where(flag, np.nan, cparam).astype(np.complex128)
    if npol == 1:
        vals = np.repeat(vals, 2, axis=2)
    g[ant] = vals
    logger.info("%s: CASA %s caltable: %d antennas x %d channels", path, viscal, n_ant, nc)
    return LoadedSolutions(
        solutions=AOSolutions.from_gains(g[None], start_time=0.0, end_time=0.0),
        kind="casa-caltable",
        beam=name_beam(path),
    )


def load_solutions(
    path: str | os.PathLike[str], beam: int | None = None, n_channels: int | None = None
) -> LoadedSolutions:
    """Read solutions from an AO ``.bin`` file, an ASKAP calparameters table or a CASA caltable.

    Parameters
    ----------
    path
        The solution file or table.
    beam
        The beam of the data (picks the beam out of a calparameters table).
    n_channels
        The data's channel count: solutions with one channel (a frequency-independent gain)
        are repeated to it.

    Raises
    ------
    FlintInputError
        Missing, corrupt or unsupported source (the message says which kind it is).
    """
    from flint.ms import name_beam

    path = Path(path)
    kind = solution_kind(path)
    if kind == "ao":
        loaded = LoadedSolutions(solutions=read_solutions(path), kind="ao", beam=name_beam(path))
    elif kind == "askap-calparameters":
        loaded = _read_calparameters(path, beam)
    else:
        loaded = _read_casa(path)
    sols = loaded.solutions
    if n_channels is not None and sols.n_channels == 1 and n_channels > 1:
        loaded = LoadedSolutions(
            solutions=AOSolutions(
                sols.grouped_jones, sols.start_time, sols.end_time, channel_group=np.zeros(n_channels, dtype=np.int64)
            ),
            kind=loaded.kind,
            beam=loaded.beam,
        )
    return loaded
