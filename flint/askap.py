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

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from flint.errors import FlintMSError
from flint.io import atomic_path, remove_path
from flint.ms import MS, open_table
from flint.options import BaseOptions

__all__ = [
    "FRAME_KEYWORD",
    "FIXMS_MARKER",
    "Frame",
    "ms_frame",
    "require_sky_frame",
    "mark_frame",
    "PreprocessOptions",
    "PreprocessResult",
    "preprocess_askap",
]

logger = logging.getLogger(__name__)

#: main-table keyword in which flint records the frame (``"sky"`` or ``"preprocessing"``)
FRAME_KEYWORD = "FLINT_FRAME"
#: FEED column fixms adds when it rotates the correlations to the sky frame
FIXMS_MARKER = "INSTRUMENT_RECEPTOR_ANGLE"

Frame = Literal["sky", "instrument", "unknown"]

_INSTRUMENT_DATA = "INSTRUMENT_DATA"


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


# --------------------------------------------------------------------------- preprocessing
class PreprocessOptions(BaseOptions):
    """How ``flint ms preprocess`` turns a raw ASKAP Measurement Set into a sky-frame one."""

    output_ms: Path | None = None
    """Write a preprocessed copy here (atomically) instead of working in place."""
    overwrite: bool = False
    """Replace an existing ``output_ms``."""
    chunk_rows: int = Field(default=2000, ge=1)
    """Rows fixms reads, rotates and writes at a time: memory is bounded by this, not by the MS
    (measured: 1000 rows of 288 channels -> 179 MB peak RSS on a 184 MB MS, 108 MB of it imports)."""
    fix_stokes_factor: bool = True
    """Undo ASKAPsoft's I = XX + YY normalisation (fixms's default; leave on for ASKAP data)."""


@dataclass(frozen=True)
class PreprocessResult:
    """What :func:`preprocess_askap` did.

    Attributes
    ----------
    ms
        The sky-frame Measurement Set (the input, or ``output_ms``).
    source
        The Measurement Set that was read.
    changed
        ``False`` when the input was already in the sky frame (nothing written).
    pol_axis_deg
        The third-axis (roll) angle fixms rotated by, if it ran.
    message
        One line saying what happened.
    """

    ms: MS
    source: Path
    changed: bool
    pol_axis_deg: float | None
    message: str


def _check_raw_askap(path: Path) -> None:
    """One-line errors naming the table for MSs fixms cannot (or must not) process."""
    with open_table(path, subtable="OBSERVATION") as t:
        tel = str(t.getcell("TELESCOPE_NAME", 0)) if t.nrows() and "TELESCOPE_NAME" in t.colnames() else ""
    if not tel.strip().upper().startswith("ASKAP"):
        raise FlintMSError(
            f"{path}/OBSERVATION: TELESCOPE_NAME is {tel!r}, not ASKAP; "
            "`flint ms preprocess` is only for raw ASKAP Measurement Sets"
        )
    with open_table(path, subtable="FEED") as t:
        if "BEAM_OFFSET" not in t.colnames():
            raise FlintMSError(
                f"{path}/FEED: no BEAM_OFFSET column, so the beam phase centre is unknown; "
                "not a raw ASKAP Measurement Set"
            )
    with open_table(path, subtable="ANTENNA") as t:
        mount = str(t.getcell("MOUNT", 0)) if t.nrows() else ""
    if mount != "equatorial":
        raise FlintMSError(
            f"{path}/ANTENNA: MOUNT is {mount!r}; fixms handles only ASKAP's pol-axis tracking "
            "mode ('equatorial')"
        )
    with open_table(path) as t:
        cols = t.colnames()
        if "DATA" not in cols and _INSTRUMENT_DATA not in cols:
            raise FlintMSError(f"{path}: no DATA column; nothing to preprocess")
        if "CORRECTED_DATA" in cols:
            raise FlintMSError(
                f"{path}: has CORRECTED_DATA in the instrument frame; preprocess the raw MS "
                "before calibrating it (remove the column with a fresh copy of the data)"
            )
        feed1, feed2 = np.unique(t.getcol("FEED1")), np.unique(t.getcol("FEED2"))
    if len(feed1) != 1 or len(feed2) != 1 or feed1[0] != feed2[0]:
        raise FlintMSError(
            f"{path}: FEED1/FEED2 hold several beams ({sorted(set(feed1) | set(feed2))}); "
            "fixms needs one beam per Measurement Set (split it by beam first)"
        )


def _snapshot_subtable(path: Path, name: str) -> None:
    """Copy subtable ``name`` to ``<name>_OLD`` (fixms's backup) atomically, if absent."""
    from casacore.tables import table, tablecopy

    final = path / f"{name}_OLD"
    if final.exists():
        return
    tmp = path / f".{name}_OLD.flint-tmp"
    remove_path(tmp)
    tablecopy(str(path / name), str(tmp))
    with table(str(tmp), readonly=False, ack=False) as t:
        t.rename(str(final))


def _undo_interrupted(path: Path) -> None:
    """Bring an MS whose preprocessing was interrupted back to its raw state (idempotent).

    The raw visibilities are safe in ``INSTRUMENT_DATA`` (or still in ``DATA``), and the raw
    FEED values in fixms's ``FEED_OLD`` backup, which flint writes atomically before fixms
    touches FEED.
    """
    from casacore.tables import table

    if (path / "FEED_OLD").exists():
        with table(str(path / "FEED_OLD"), ack=False) as old, open_table(path, "rw", subtable="FEED") as t:
            for col in ("RECEPTOR_ANGLE", "BEAM_OFFSET"):
                t.putcol(col, old.getcol(col))
            if FIXMS_MARKER in t.colnames():
                t.removecols([FIXMS_MARKER])
    with open_table(path, "rw") as t:
        cols = t.colnames()
        if _INSTRUMENT_DATA in cols and "DATA" in cols:
            logger.info("%s: removing the partial sky-frame DATA of an interrupted run", path)
            t.removecols(["DATA"])


@contextlib.contextmanager
def _stdout_to_stderr(discard: bool = False) -> Iterator[None]:
    """fixms's HISTORY writes make casacore print to the C-level stdout; keep stdout clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    target = os.open(os.devnull, os.O_WRONLY) if discard else os.dup(2)
    try:
        os.dup2(target, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(target)


def _preprocess_in_place(path: Path, opts: PreprocessOptions) -> float:
    import fixms.fix_ms_corrs
    import fixms.fix_ms_dir  # noqa: F401  (both set fixms's logger to INFO on import)
    from fixms.logger import logger as fixms_logger

    # fixms logs (and shows its tqdm progress bar) through its own handler at INFO: follow
    # flint's verbosity (``flint -q`` quiets it, and casacore's chatter about HISTORY)
    quiet = logger.getEffectiveLevel() > logging.INFO
    fixms_logger.setLevel(logging.WARNING if quiet else logging.INFO)
    with _stdout_to_stderr(quiet):
        return _outside_event_loop(_run_fixms, path, opts)


def _outside_event_loop(func: Any, *args: Any) -> Any:
    """Call ``func``; in a thread of its own when this thread runs an asyncio loop.

    fixms calls ``asyncio.run``, which refuses to start inside a running loop (a Jupyter
    kernel's cell, a Prefect async task). There the call goes to a helper thread, which
    has no loop, and this thread waits for it.
    """
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return func(*args)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flint-fixms") as pool:
        return pool.submit(func, *args).result()


def _run_fixms(path: Path, opts: PreprocessOptions) -> float:
    from fixms.fix_ms_corrs import fix_ms_corrs, get_pol_axis
    from fixms.fix_ms_dir import fix_ms_dir

    mark_frame(path, "preprocessing")  # from here until "sky", ms_frame says "instrument"
    _undo_interrupted(path)
    _snapshot_subtable(path, "FIELD")
    _snapshot_subtable(path, "FEED")
    fix_ms_dir(str(path))
    with open_table(path, "rw") as t:
        if _INSTRUMENT_DATA not in t.colnames():
            t.renamecol("DATA", _INSTRUMENT_DATA)  # the raw visibilities are never rewritten
        feed_idx = int(t.getcell("FEED1", 0))
    pol_axis = float(get_pol_axis(path, feed_idx=feed_idx).to_value("deg"))
    fix_ms_corrs(
        path,
        chunksize=opts.chunk_rows,
        max_chunks=1,  # one chunk in flight: memory bounded by chunk_rows
        data_column=_INSTRUMENT_DATA,
        corrected_data_column="DATA",
        fix_stokes_factor=opts.fix_stokes_factor,
    )
    with open_table(path, subtable="FEED") as t:
        marked = FIXMS_MARKER in t.colnames()
    with open_table(path) as t:
        has_data = "DATA" in t.colnames()
    if not (marked and has_data):
        raise FlintMSError(f"{path}: fixms did not rotate the correlations (see its log above)")
    mark_frame(path, "sky")
    return pol_axis


def preprocess_askap(
    ms: MS | str | os.PathLike[str], options: PreprocessOptions | None = None
) -> PreprocessResult:
    """Put a raw ASKAP Measurement Set in the sky frame with fixms.

    ``fixms.fix_ms_dir`` sets ``FIELD`` (phase, delay and reference directions) to the beam
    centre from ``FEED.BEAM_OFFSET``; ``fixms.fix_ms_corrs`` rotates the correlations by the
    third-axis angle and undoes ASKAPsoft's Stokes factor. The raw visibilities are kept in
    ``INSTRUMENT_DATA`` and the sky-frame ones written to ``DATA``, ``fix_ms_corrs`` reading
    and writing ``chunk_rows`` rows at a time. A sky-frame MS is left alone (fixms's marker
    ``FEED.INSTRUMENT_RECEPTOR_ANGLE``, or ``FLINT_FRAME = "sky"``): nothing is rotated twice.

    In place, the work is safe against interruption: the main-table keyword ``FLINT_FRAME``
    reads ``"preprocessing"`` until the end (so stages refuse the MS), the raw visibilities
    are only renamed (never rewritten), fixms's FEED/FIELD backups are written atomically
    before anything changes, and a re-run undoes a partial run and starts again. With
    ``output_ms`` the input is untouched and the copy appears under its final name only
    when complete.

    Parameters
    ----------
    ms
        The raw ASKAP Measurement Set (one beam).
    options
        :class:`PreprocessOptions`.

    Returns
    -------
    PreprocessResult
    """
    opts = options or PreprocessOptions()
    src = MS.cast(ms)
    path = src.path
    frame = ms_frame(path)
    if frame == "sky":
        msg = f"{path}: already in the sky frame (fixms marker or FLINT_FRAME=sky); nothing done"
        logger.info(msg)
        return PreprocessResult(ms=src, source=path, changed=False, pol_axis_deg=None, message=msg)
    _check_raw_askap(path)
    if opts.output_ms is None:
        pol = _preprocess_in_place(path, opts)
        out = src
    else:
        dest = Path(opts.output_ms)
        if dest.resolve() == path.resolve():
            raise FlintMSError(f"{dest}: --output-ms is the input itself; leave --output-ms out to work in place")
        if dest.exists() and not opts.overwrite:
            raise FlintMSError(f"{dest}: exists already; use --overwrite")
        with atomic_path(dest) as tmp:
            shutil.copytree(path, tmp, symlinks=True)
            pol = _preprocess_in_place(tmp, opts)
        out = src.with_(path=dest)
    msg = f"{out.path}: preprocessed (beam phase centre from FEED.BEAM_OFFSET, rotated by {pol:.1f} deg{', Stokes factor fixed' if opts.fix_stokes_factor else ''}); raw data in {_INSTRUMENT_DATA}"
    logger.info(msg)
    return PreprocessResult(ms=out.with_(column="DATA"), source=path, changed=True, pol_axis_deg=pol, message=msg)
