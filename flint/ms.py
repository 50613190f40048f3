"""Measurement Set handling (python-casacore).

Every casacore table flint touches is opened through :func:`open_table`, with an
explicit read-only or read-write mode. Table handles are never kept on objects that
travel between Dask tasks: :class:`MS` is a plain, picklable description (path, beam,
data column) and each function opens the table for as long as it needs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from flint.errors import FlintMSError
from flint.io import atomic_path

__all__ = [
    "MS",
    "MSSummary",
    "open_table",
    "summarise",
    "copy_ms",
    "split_by_field",
    "add_column",
    "rename_column",
    "require_columns",
    "data_columns",
    "calibrated_column",
    "ms_beam",
    "name_beam",
    "CORR_NAMES",
    "LINEAR_CORRS",
]

logger = logging.getLogger(__name__)

#: casacore Stokes enum -> name (the ones radio telescopes write)
CORR_NAMES: dict[int, str] = {
    1: "I", 2: "Q", 3: "U", 4: "V",
    5: "RR", 6: "RL", 7: "LR", 8: "LL",
    9: "XX", 10: "XY", 11: "YX", 12: "YY",
}
#: the four linear correlations ASKAP writes, as casacore codes
LINEAR_CORRS: tuple[int, int, int, int] = (9, 10, 11, 12)

_DATA_LIKE = ("DATA", "CORRECTED_DATA", "MODEL_DATA")


@dataclass(frozen=True)
class MS:
    """A Measurement Set of one beam: where it is and which data column to use.

    Attributes
    ----------
    path
        The ``.ms`` directory.
    beam
        ASKAP beam number, if known.
    column
        The data column stages read (``DATA``, ``CORRECTED_DATA``, ...).
    """

    path: Path
    beam: int | None = None
    column: str = "DATA"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def cast(cls, ms: MS | str | os.PathLike[str]) -> MS:
        """Accept an :class:`MS` or a path; read the beam number from the table."""
        if isinstance(ms, MS):
            return ms
        path = Path(ms)
        beam = None
        with contextlib.suppress(FlintMSError):
            beam = _beam_of(path)
        return cls(path=path, beam=beam)

    def with_(self, **kw: Any) -> MS:
        """A copy with fields replaced."""
        return replace(self, **kw)


def _check_ms_path(path: Path) -> None:
    if not path.exists():
        raise FlintMSError(f"{path}: no such Measurement Set; check the path")
    if not path.is_dir() or not (path / "table.dat").exists():
        raise FlintMSError(
            f"{path}: not a casacore table (no table.dat); give the .ms directory"
        )


@contextlib.contextmanager
def open_table(
    path: str | os.PathLike[str],
    mode: Literal["r", "rw"] = "r",
    subtable: str | None = None,
) -> Iterator[Any]:
    """Open a casacore table (or one of its subtables) and close it afterwards.

    Parameters
    ----------
    path
        The table (e.g. the ``.ms`` directory).
    mode
        ``"r"`` read-only, ``"rw"`` read-write.
    subtable
        Name of a subtable such as ``"ANTENNA"``.
    """
    from casacore.tables import table

    path = Path(path)
    _check_ms_path(path)
    name = str(path / subtable) if subtable else str(path)
    if subtable and not (path / subtable).exists():
        raise FlintMSError(f"{path}: has no {subtable} subtable; is it a Measurement Set?")
    try:
        tab = table(name, readonly=(mode == "r"), ack=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise FlintMSError(f"{name}: cannot be opened as a casacore table ({first})") from None
    try:
        yield tab
    finally:
        tab.close()


def data_columns(ms: MS | str | os.PathLike[str]) -> list[str]:
    """Names of the visibility-like columns present (DATA, CORRECTED_DATA, ...)."""
    ms = MS.cast(ms)
    with open_table(ms.path) as tab:
        cols = tab.colnames()
    return [c for c in cols if c in _DATA_LIKE or c.endswith("_DATA")]


def calibrated_column(ms: MS | str | os.PathLike[str]) -> str:
    """The column calibrated work reads by default: ``CORRECTED_DATA`` when the MS has it,
    else ``DATA`` (WSClean's own rule)."""
    return "CORRECTED_DATA" if "CORRECTED_DATA" in data_columns(ms) else "DATA"


def require_columns(ms: MS | str | os.PathLike[str], *columns: str) -> None:
    """Raise :class:`FlintMSError` naming the first missing column."""
    ms = MS.cast(ms)
    with open_table(ms.path) as tab:
        present = set(tab.colnames())
    for col in columns:
        if col not in present:
            raise FlintMSError(
                f"{ms.path}: has no {col} column (columns: {', '.join(sorted(present))}); "
                f"choose another column or create it first"
            )


def _beam_of(path: Path) -> int | None:
    with open_table(path) as tab:
        if "FEED1" not in tab.colnames() or tab.nrows() == 0:
            return None
        feeds = np.unique(tab.getcol("FEED1", nrow=min(tab.nrows(), 10000)))
    return int(feeds[0]) if len(feeds) == 1 else None


def ms_beam(ms: MS | str | os.PathLike[str]) -> int | None:
    """The ASKAP beam a Measurement Set holds, as recorded in the table.

    ``FEED.BEAM_ID`` of the feed the main table's ``FEED1`` names (ASKAP writes one
    feed per beam); ``FEED1`` itself when ``BEAM_ID`` is absent or negative (the
    casacore default). ``None`` when the rows hold several feeds or none.
    """
    path = MS.cast(ms).path
    feed = _beam_of(path)
    if feed is None:
        return None
    if (path / "FEED").exists():
        with open_table(path, subtable="FEED") as t:
            if "BEAM_ID" in t.colnames() and t.nrows():
                ids = np.asarray(t.getcol("FEED_ID"))
                beam_ids = np.asarray(t.getcol("BEAM_ID"))[ids == feed]
                good = np.unique(beam_ids[beam_ids >= 0])
                if len(good) == 1:
                    return int(good[0])
    return feed


def name_beam(path: str | os.PathLike[str]) -> int | None:
    """The beam number a file name carries (``...beam05...``, ``...beam5...``), or ``None``.

    Uses :func:`flint.naming.parse_name` when the name is a flint/ASKAP name; otherwise
    looks for one ``beam<N>`` token.

    Examples
    --------
    >>> name_beam("SB39400.RACS_0635-31.beam0.ms"), name_beam("calparameters.tab")
    (0, None)
    """
    import re

    from flint.errors import FlintInputError
    from flint.naming import parse_name

    with contextlib.suppress(FlintInputError):
        beam = parse_name(path).beam
        if beam is not None:
            return beam
    found = set(re.findall(r"(?:^|[._\-])beam(\d{1,3})(?=$|[._\-])", Path(path).name, flags=re.IGNORECASE))
    return int(found.pop()) if len(found) == 1 else None


@dataclass(frozen=True)
class MSSummary:
    """What is in a Measurement Set."""

    path: Path
    telescope: str
    n_rows: int
    antennas: list[str]
    n_baselines: int
    n_channels: int
    freqs_hz: np.ndarray = field(repr=False)
    channel_width_hz: float
    correlations: list[str]
    n_times: int
    start_mjd_s: float
    end_mjd_s: float
    integration_s: float
    fields: list[str]
    phase_centres_deg: list[tuple[float, float]]
    beams: list[int]
    flagged_fraction: float
    data_columns: list[str]
    warnings: list[str] = field(default_factory=list)
    """Problems a user should know about (all-zero UVW, NaN visibilities, no DATA column, ...)."""

    @property
    def n_antennas(self) -> int:
        return len(self.antennas)

    @property
    def centre_freq_hz(self) -> float:
        return float(np.mean(self.freqs_hz))

    @property
    def duration_s(self) -> float:
        return self.end_mjd_s - self.start_mjd_s + self.integration_s

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dictionary."""
        return {
            "path": str(self.path),
            "telescope": self.telescope,
            "n_rows": self.n_rows,
            "n_antennas": self.n_antennas,
            "n_baselines": self.n_baselines,
            "n_channels": self.n_channels,
            "freq_min_hz": float(self.freqs_hz.min()) if self.freqs_hz.size else None,
            "freq_max_hz": float(self.freqs_hz.max()) if self.freqs_hz.size else None,
            "channel_width_hz": self.channel_width_hz,
            "correlations": self.correlations,
            "n_times": self.n_times,
            "integration_s": self.integration_s,
            "duration_s": self.duration_s,
            "fields": self.fields,
            "phase_centres_deg": [list(p) for p in self.phase_centres_deg],
            "beams": self.beams,
            "flagged_fraction": self.flagged_fraction,
            "data_columns": self.data_columns,
            "warnings": self.warnings,
        }

    def __str__(self) -> str:
        f0, f1 = (self.freqs_hz.min() / 1e6, self.freqs_hz.max() / 1e6) if self.freqs_hz.size else (0, 0)
        centres = ", ".join(f"({ra:.4f}, {dec:.4f})" for ra, dec in self.phase_centres_deg)
        lines = [
            f"Measurement Set   {self.path}",
            f"telescope         {self.telescope}",
            f"antennas          {self.n_antennas}  ({self.n_baselines} baselines, {self.n_rows} rows)",
            f"channels          {self.n_channels}  ({f0:.3f}-{f1:.3f} MHz, {self.channel_width_hz / 1e6:.3f} MHz wide)",
            f"correlations      {' '.join(self.correlations)}",
            f"times             {self.n_times} x {self.integration_s:.2f} s ({self.duration_s / 60:.1f} min)",
            f"fields            {', '.join(self.fields)}",
            f"phase centres     {centres} deg",
            f"beams             {', '.join(str(b) for b in self.beams) or '-'}",
            f"flagged           {100 * self.flagged_fraction:.2f} %",
            f"data columns      {', '.join(self.data_columns) or '- (none)'}",
        ]
        return "\n".join(lines)


def flagged_fraction(tab: Any, chunk: int = 20000) -> float:
    """Fraction of visibilities flagged in an open main table (read in chunks)."""
    n = tab.nrows()
    if n == 0:
        return 0.0
    flagged = 0
    total = 0
    for start in range(0, n, chunk):
        nrow = min(chunk, n - start)
        flags = tab.getcol("FLAG", startrow=start, nrow=nrow)
        flagged += int(np.count_nonzero(flags))
        total += flags.size
    return flagged / total if total else 0.0


def summarise(ms: MS | str | os.PathLike[str], check_data: bool = True) -> MSSummary:
    """Summarise a Measurement Set.

    With ``check_data`` (default) ``DATA`` and ``UVW`` are read through once more to fill
    :attr:`MSSummary.warnings` (NaN visibilities, all-zero UVW, no DATA column).

    Raises
    ------
    FlintMSError
        If the path is not a readable Measurement Set.
    """
    ms = MS.cast(ms)
    with open_table(ms.path) as tab:
        cols = tab.colnames()
        for needed in ("ANTENNA1", "ANTENNA2", "TIME", "FLAG"):
            if needed not in cols:
                raise FlintMSError(f"{ms.path}: main table lacks {needed}; is it a Measurement Set?")
        a1 = tab.getcol("ANTENNA1")
        a2 = tab.getcol("ANTENNA2")
        times = np.unique(tab.getcol("TIME"))
        interval = float(tab.getcol("INTERVAL", nrow=1)[0]) if tab.nrows() and "INTERVAL" in cols else 0.0
        beams = sorted(int(b) for b in np.unique(tab.getcol("FEED1"))) if "FEED1" in cols else []
        frac = flagged_fraction(tab)
        n_rows = tab.nrows()
        dcols = [c for c in cols if c in _DATA_LIKE or c.endswith("_DATA")]
        warnings = _data_warnings(tab, ms.path, cols, a1 != a2, frac) if check_data else []
    with open_table(ms.path, subtable="ANTENNA") as t:
        antennas = list(t.getcol("NAME"))
    with open_table(ms.path, subtable="SPECTRAL_WINDOW") as t:
        freqs = np.asarray(t.getcol("CHAN_FREQ")[0], dtype=float)
        width = float(t.getcol("CHAN_WIDTH")[0][0])
    with open_table(ms.path, subtable="POLARIZATION") as t:
        corr_types = t.getcol("CORR_TYPE")[0]
    with open_table(ms.path, subtable="FIELD") as t:
        fields = list(t.getcol("NAME"))
        dirs = t.getcol("PHASE_DIR")  # (nfield, 1, 2) radians
    telescope = ""
    if (ms.path / "OBSERVATION").exists():
        with open_table(ms.path, subtable="OBSERVATION") as t:
            if t.nrows():
                telescope = str(t.getcol("TELESCOPE_NAME")[0])
    centres = [
        (float(np.degrees(d[0, 0]) % 360.0), float(np.degrees(d[0, 1]))) for d in dirs
    ]
    baselines = {(int(x), int(y)) for x, y in zip(a1, a2, strict=True)}
    return MSSummary(
        path=ms.path,
        telescope=telescope,
        n_rows=n_rows,
        antennas=antennas,
        n_baselines=len(baselines),
        n_channels=len(freqs),
        freqs_hz=freqs,
        channel_width_hz=width,
        correlations=[CORR_NAMES.get(int(c), str(int(c))) for c in corr_types],
        n_times=len(times),
        start_mjd_s=float(times.min()) if len(times) else 0.0,
        end_mjd_s=float(times.max()) if len(times) else 0.0,
        integration_s=interval,
        fields=fields,
        phase_centres_deg=centres,
        beams=beams,
        flagged_fraction=frac,
        data_columns=dcols,
        warnings=warnings,
    )


def _data_warnings(tab: Any, path: Path, cols: list[str], cross: np.ndarray, flagged: float, chunk: int = 20000) -> list[str]:
    """What is wrong with the data of an open main table (each a one-line message)."""
    out: list[str] = []
    n = tab.nrows()
    if n == 0:
        return [f"{path}: the main table has no rows"]
    if "DATA" not in cols:
        present = ", ".join(c for c in cols if c.endswith("DATA")) or "none"
        out.append(f"{path}: has no DATA column (data columns: {present}); flint reads the visibilities from DATA")
    if "UVW" in cols and cross.any():
        nonzero = False
        for start in range(0, n, chunk):
            nrow = min(chunk, n - start)
            uvw = tab.getcol("UVW", startrow=start, nrow=nrow)
            if np.any(uvw[cross[start:start + nrow]] != 0):
                nonzero = True
                break
        if not nonzero:
            out.append(f"{path}: UVW is zero on every cross-correlation row; the baselines are unknown, so it cannot be imaged or flagged by uv-range (re-create the MS or recompute UVW)")
    if "DATA" in cols:
        bad = total = 0
        for start in range(0, n, chunk):
            nrow = min(chunk, n - start)
            data = tab.getcol("DATA", startrow=start, nrow=nrow)
            bad += int(np.count_nonzero(~np.isfinite(data)))
            total += data.size
        if bad:
            out.append(f"{path}: {bad} of {total} DATA samples ({100 * bad / max(total, 1):.2g} %) are NaN/inf; run `flint flag` to flag them")
    if flagged >= 1.0:
        out.append(f"{path}: every visibility is flagged; nothing can be calibrated or imaged")
    return out


def copy_ms(
    ms: MS | str | os.PathLike[str], out: str | os.PathLike[str], overwrite: bool = False
) -> MS:
    """Deep-copy a Measurement Set to ``out`` (atomically). The input is untouched."""
    ms = MS.cast(ms)
    out = Path(out)
    _check_ms_path(ms.path)
    if out.exists() and not overwrite:
        raise FlintMSError(f"{out}: exists already; remove it or use --overwrite (overwrite=True)")
    with atomic_path(out) as tmp:
        shutil.copytree(ms.path, tmp, symlinks=True)
    return ms.with_(path=out)


def split_by_field(
    ms: MS | str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> dict[str, MS]:
    """Write one Measurement Set per field (``<stem>.<field>.ms``) into ``out_dir``."""
    from casacore.tables import taql  # noqa: F401  (taql registers with table)

    ms = MS.cast(ms)
    out_dir = Path(out_dir)
    with open_table(ms.path, subtable="FIELD") as t:  # fails on a bad input before anything is created
        names = [str(n) for n in t.getcol("NAME")]
    if out_dir.exists() and not out_dir.is_dir():
        raise FlintMSError(f"{out_dir}: exists and is not a folder; give a folder for the split Measurement Sets")
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, MS] = {}
    for field_id, name in enumerate(names):
        safe = "".join(ch if ch.isalnum() or ch in "_+-" else "_" for ch in name)
        out = out_dir / f"{ms.path.stem}.{safe}.ms"
        with open_table(ms.path) as tab:
            sel = tab.query(f"FIELD_ID=={field_id}")
            try:
                if sel.nrows() == 0:
                    logger.warning("%s: field %s has no rows; skipped", ms.path, name)
                    continue
                with atomic_path(out) as tmp:
                    sel.copy(str(tmp), deep=True).close()
            finally:
                sel.close()
        results[name] = ms.with_(path=out)
    return results


def add_column(
    ms: MS | str | os.PathLike[str],
    name: str,
    like: str = "DATA",
    fill: Literal["zero", "copy"] = "zero",
    overwrite: bool = False,
) -> MS:
    """Add a column shaped like ``like`` (e.g. ``CORRECTED_DATA`` like ``DATA``).

    ``fill="copy"`` copies the values of ``like``; ``"zero"`` fills with zeros.
    An existing column is left alone unless ``overwrite`` is true.
    """
    from casacore.tables import makecoldesc

    ms = MS.cast(ms)
    require_columns(ms, like)
    with open_table(ms.path, mode="rw") as tab:
        if name in tab.colnames():
            if not overwrite:
                return ms.with_(column=name)
        else:
            desc = makecoldesc(name, tab.getcoldesc(like))
            group = f"{name}_dm"
            desc["desc"]["comment"] = f"added by flint (like {like})"
            desc["desc"]["dataManagerGroup"] = group
            src_dm = tab.getdminfo(like)
            spec: dict[str, Any] = {}
            if "DEFAULTTILESHAPE" in src_dm.get("SPEC", {}):
                spec = {"DEFAULTTILESHAPE": src_dm["SPEC"]["DEFAULTTILESHAPE"]}
                dm_type = src_dm["TYPE"]
            else:
                dm_type = "StandardStMan"
            desc["desc"]["dataManagerType"] = dm_type
            tab.addcols(desc, {"TYPE": dm_type, "NAME": group, "SPEC": spec})
        # rows per chunk from the row size: ~64 MB of values at a time, whatever the channels
        row_bytes = max(int(np.prod(tab.getcell(like, 0).shape)) * 8, 1) if tab.nrows() else 1
        chunk = max(1, min(20000, (64 << 20) // row_bytes))
        for start in range(0, tab.nrows(), chunk):
            nrow = min(chunk, tab.nrows() - start)
            src = tab.getcol(like, startrow=start, nrow=nrow)
            tab.putcol(name, src if fill == "copy" else np.zeros_like(src), startrow=start, nrow=nrow)
    return ms.with_(column=name)


def rename_column(ms: MS | str | os.PathLike[str], old: str, new: str) -> MS:
    """Rename a column. Refuses to rename ``DATA`` or to clobber an existing column."""
    ms = MS.cast(ms)
    if old == "DATA":
        raise FlintMSError(f"{ms.path}: refusing to rename DATA (the raw visibilities); copy it instead")
    require_columns(ms, old)
    with open_table(ms.path, mode="rw") as tab:
        if new in tab.colnames():
            raise FlintMSError(f"{ms.path}: column {new} exists already; remove it first")
        tab.renamecol(old, new)
    return ms.with_(column=new) if ms.column == old else ms
