"""Real ASKAP Measurement Sets: which frame an MS is in, and preprocessing with fixms.

The ASKAP correlator (and CASDA) write a Measurement Set whose ``FIELD`` holds the
footprint's boresight, whose ``FEED.BEAM_OFFSET`` holds the beam's offset from it, and
whose correlations are in the instrument frame (rotated by the third-axis "roll" angle
in ``FEED.RECEPTOR_ANGLE``) with ASKAPsoft's Stokes normalisation (I = XX + YY).
:func:`preprocess_askap` turns such an MS into a sky-frame one with the PyPI package
`fixms <https://github.com/AlecThomson/FixMS>`_, the community's implementation.

The frame rule
--------------
The frame is recorded in the MS, never inferred from a file name:

``"sky"``
    ``FEED`` has fixms's marker column ``INSTRUMENT_RECEPTOR_ANGLE`` (written by
    ``fix_ms_corrs`` when it rotates the correlations), or the main table's keyword
    ``FLINT_FRAME`` is ``"sky"`` (flint's default simulator, which writes sky-frame data,
    and ``flint ms preprocess``).
``"instrument"``
    ``OBSERVATION.TELESCOPE_NAME`` is ASKAP and ``FEED`` has ``BEAM_OFFSET`` and neither
    marker is present (what the correlator and CASDA write, and ``flint sim --askap-raw``);
    also an MS whose preprocessing was interrupted (``FLINT_FRAME`` is
    ``"preprocessing"``), whatever markers it holds.
``"unknown"``
    anything else (e.g. non-ASKAP data): stages proceed as before.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from flint.errors import FlintMSError
from flint.ms import MS, open_table

__all__ = [
    "FRAME_KEYWORD",
    "FIXMS_MARKER",
    "Frame",
    "ms_frame",
    "require_sky_frame",
    "mark_frame",
]

logger = logging.getLogger(__name__)

#: main-table keyword in which flint records the frame (``"sky"`` or ``"preprocessing"``)
FRAME_KEYWORD = "FLINT_FRAME"
#: FEED column fixms adds when it rotates the correlations to the sky frame
FIXMS_MARKER = "INSTRUMENT_RECEPTOR_ANGLE"

Frame = Literal["sky", "instrument", "unknown"]


def _path(ms: MS | str | os.PathLike[str]) -> Path:
    return ms.path if isinstance(ms, MS) else Path(ms)


def _frame_keyword(path: Path) -> str | None:
    with open_table(path) as tab:
        kws = tab.getkeywords()
    value = kws.get(FRAME_KEYWORD)
    return str(value) if value is not None else None


def ms_frame(ms: MS | str | os.PathLike[str]) -> Frame:
    """Which frame the visibilities of ``ms`` are in (see the module docstring for the rule).

    Parameters
    ----------
    ms
        A Measurement Set (path or :class:`~flint.ms.MS`).

    Returns
    -------
    str
        ``"sky"``, ``"instrument"`` or ``"unknown"``.
    """
    path = _path(ms)
    keyword = _frame_keyword(path)
    if keyword == "preprocessing":
        return "instrument"
    if keyword == "sky":
        return "sky"
    feed_cols: list[str] = []
    if (path / "FEED").exists():
        with open_table(path, subtable="FEED") as t:
            feed_cols = list(t.colnames())
    if FIXMS_MARKER in feed_cols:
        return "sky"
    telescope = ""
    if (path / "OBSERVATION").exists():
        with open_table(path, subtable="OBSERVATION") as t:
            if t.nrows() and "TELESCOPE_NAME" in t.colnames():
                telescope = str(t.getcell("TELESCOPE_NAME", 0))
    if telescope.strip().upper().startswith("ASKAP") and "BEAM_OFFSET" in feed_cols:
        return "instrument"
    return "unknown"


def require_sky_frame(ms: MS | str | os.PathLike[str], what: str) -> None:
    """Raise :class:`~flint.errors.FlintMSError` if ``ms`` is a raw (instrument-frame) ASKAP MS.

    Parameters
    ----------
    ms
        The Measurement Set a stage is about to use.
    what
        The stage, for the log (e.g. ``"flint image"``).
    """
    path = _path(ms)
    if ms_frame(path) == "instrument":
        logger.debug("%s refused %s: instrument frame", what, path)
        raise FlintMSError(
            f"{path}: raw ASKAP Measurement Set (instrument frame, beam phase centre not "
            f"applied); run `flint ms preprocess {path}` first (or --force)"
        )


def mark_frame(ms: MS | str | os.PathLike[str], frame: Literal["sky", "preprocessing"]) -> None:
    """Record ``frame`` in the main table's ``FLINT_FRAME`` keyword."""
    with open_table(_path(ms), mode="rw") as tab:
        tab.putkeyword(FRAME_KEYWORD, frame)
