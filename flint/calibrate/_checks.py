"""Safety checks calibration runs before it touches data: frame, beam, flags."""

from __future__ import annotations

import logging
from pathlib import Path

from flint.errors import FlintCalibrationError, FlintInputError
from flint.ms import MS, ms_beam, name_beam, open_table

__all__ = ["require_sky_frame", "data_beam", "check_beam", "require_unflagged_data"]

logger = logging.getLogger(__name__)


def require_sky_frame(ms: MS, what: str, force: bool = False) -> None:
    """Refuse a raw ASKAP Measurement Set (instrument frame) unless ``force``.

    The rule lives in :func:`flint.askap.require_sky_frame` (the MS records its frame);
    it is imported here, when needed, so calibration does not depend on it at import time.
    """
    if force:
        return
    try:
        from flint.askap import require_sky_frame as _require
    except ModuleNotFoundError as exc:  # the ASKAP module is not installed in this build
        if exc.name != "flint.askap":
            raise
        return
    _require(ms, what)


def data_beam(ms: MS) -> int | None:
    """The beam of ``ms``: ``FEED.BEAM_ID``/``FEED1`` from the table, else the file name."""
    from_table = ms_beam(ms)
    from_name = name_beam(ms.path)
    if from_table is not None and from_name is not None and from_table != from_name:
        logger.warning("%s: the table says beam %d but the name says beam %d; using the table's", ms.path, from_table, from_name)
    return from_table if from_table is not None else from_name


def check_beam(solutions_beam: int | None, ms: MS, beam: int | None, solutions: Path) -> None:
    """Refuse solutions of another beam (when both beams are known)."""
    if solutions_beam is None or beam is None or solutions_beam == beam:
        return
    raise FlintInputError(
        f"{solutions}: solutions are for beam {solutions_beam} but {ms.path} is beam {beam}; "
        f"use the beam-{beam:02d} solutions (or --force)"
    )


def require_unflagged_data(ms: MS, flag_option: str = "--allow-all-flagged") -> float:
    """Flagged fraction of ``ms``; raise when every visibility is flagged."""
    from flint.ms import flagged_fraction

    with open_table(ms.path) as tab:
        frac = flagged_fraction(tab)
    if frac >= 1.0:
        raise FlintCalibrationError(
            f"{ms.path}: every visibility is flagged, so there is nothing to calibrate "
            f"(check the flags with 'flint ms summary'; {flag_option} writes the column anyway)"
        )
    return frac
