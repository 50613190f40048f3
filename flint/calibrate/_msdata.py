"""Reading and writing the parts of a Measurement Set that flagging and calibration need.

Numerics never see tables: this module turns an MS into a :class:`MSLayout` (antennas,
channels, correlations, times) and hands out row chunks as arrays. Columns are
rewritten through a temporary column that is renamed into place only when complete.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flint.errors import FlintMSError
from flint.ms import CORR_NAMES, MS, open_table, require_columns

__all__ = [
    "MSLayout",
    "read_layout",
    "row_chunks",
    "read_rows",
    "write_rows",
    "rows_per_chunk",
    "ReplaceColumn",
]

logger = logging.getLogger(__name__)

#: bytes of visibility data (per column) a chunk may hold
CHUNK_BYTES = 96 * 1024**2


@dataclass(frozen=True)
class MSLayout:
    """What flagging and calibration need to know about a Measurement Set."""

    path: Path
    n_rows: int
    antennas: list[str]
    freqs_hz: NDArray[np.float64]
    corr_types: list[int]
    times: NDArray[np.float64]
    """Sorted unique TIME values (MJD seconds)."""
    integration_s: float
    phase_centre_deg: tuple[float, float]
    time_sorted: bool
    """Whether the rows are in non-decreasing TIME order."""

    @property
    def n_antennas(self) -> int:
        return len(self.antennas)

    @property
    def n_channels(self) -> int:
        return len(self.freqs_hz)

    @property
    def corr_names(self) -> list[str]:
        return [CORR_NAMES.get(c, str(c)) for c in self.corr_types]

    @property
    def xx_yy(self) -> tuple[int, int]:
        """Indices of the XX and YY correlations."""
        return self.corr_types.index(9), self.corr_types.index(12)

    @property
    def full_jones(self) -> bool:
        """True when all four linear correlations XX XY YX YY are present (in order)."""
        return self.corr_types == [9, 10, 11, 12]

    @property
    def start_s(self) -> float:
        return float(self.times[0] - self.integration_s / 2) if len(self.times) else 0.0

    @property
    def end_s(self) -> float:
        return float(self.times[-1] + self.integration_s / 2) if len(self.times) else 0.0


def read_layout(ms: MS | Path, column: str | None = None, linear: bool = True) -> MSLayout:
    """Describe ``ms``; check it has one spectral window and (if ``linear``) XX and YY.

    Raises
    ------
    FlintMSError
        Missing column, several spectral windows, or non-linear correlations.
    """
    ms = MS.cast(ms)
    need = ["ANTENNA1", "ANTENNA2", "TIME", "FLAG"]
    if column:
        need.append(column)
    require_columns(ms, *need)
    with open_table(ms.path) as tab:
        n_rows = tab.nrows()
        if n_rows == 0:
            raise FlintMSError(f"{ms.path}: the main table has no rows; nothing to do")
        ddid = np.unique(tab.getcol("DATA_DESC_ID")) if "DATA_DESC_ID" in tab.colnames() else np.array([0])
        field_ids = np.unique(tab.getcol("FIELD_ID")) if "FIELD_ID" in tab.colnames() else np.array([0])
        time_col = tab.getcol("TIME")
        interval = float(np.median(tab.getcol("INTERVAL"))) if "INTERVAL" in tab.colnames() else 0.0
    if len(ddid) != 1:
        raise FlintMSError(
            f"{ms.path}: has {len(ddid)} spectral windows / data descriptions; "
            "split it into one MS per spectral window first"
        )
    with open_table(ms.path, subtable="DATA_DESCRIPTION") as t:
        spw = int(t.getcol("SPECTRAL_WINDOW_ID")[int(ddid[0])])
        pol = int(t.getcol("POLARIZATION_ID")[int(ddid[0])])
    with open_table(ms.path, subtable="SPECTRAL_WINDOW") as t:
        freqs = np.asarray(t.getcell("CHAN_FREQ", spw), dtype=float)
    with open_table(ms.path, subtable="POLARIZATION") as t:
        corr = [int(c) for c in t.getcell("CORR_TYPE", pol)]
    with open_table(ms.path, subtable="ANTENNA") as t:
        names = [str(n) for n in t.getcol("NAME")]
    with open_table(ms.path, subtable="FIELD") as t:
        # the phase centre of the field the rows belong to (the first, if several)
        fid = int(field_ids[0]) if len(field_ids) and 0 <= int(field_ids[0]) < t.nrows() else 0
        pd = t.getcell("PHASE_DIR", fid)[0]
    if linear and not (9 in corr and 12 in corr):
        shown = " ".join(CORR_NAMES.get(c, str(c)) for c in corr)
        raise FlintMSError(
            f"{ms.path}: correlations are {shown}; flint calibrates linear feeds and needs "
            "XX and YY (ASKAP writes XX XY YX YY)"
        )
    times = np.unique(time_col)
    if interval <= 0 and len(times) > 1:
        interval = float(np.median(np.diff(times)))
    return MSLayout(
        path=ms.path,
        n_rows=n_rows,
        antennas=names,
        freqs_hz=freqs,
        corr_types=corr,
        times=times,
        integration_s=interval,
        phase_centre_deg=(float(np.degrees(pd[0]) % 360.0), float(np.degrees(pd[1]))),
        time_sorted=bool(np.all(np.diff(time_col) >= 0)),
    )


def rows_per_chunk(layout: MSLayout, bytes_per_vis: int = 8) -> int:
    """Rows per chunk so one column of a chunk holds about :data:`CHUNK_BYTES`.

    When every integration has the same number of rows, the chunk holds whole
    integrations (so reductions over a regular time x baseline grid apply).
    """
    per_row = max(1, layout.n_channels * len(layout.corr_types) * bytes_per_vis)
    rows = max(1, CHUNK_BYTES // per_row)
    n_times = len(layout.times)
    if n_times and layout.n_rows % n_times == 0:
        per_time = layout.n_rows // n_times
        rows = max(per_time, rows // per_time * per_time)
    return rows


def row_chunks(n_rows: int, chunk: int) -> Iterator[tuple[int, int]]:
    """``(startrow, nrow)`` pairs covering ``n_rows``."""
    for start in range(0, n_rows, chunk):
        yield start, min(chunk, n_rows - start)


def read_rows(tab: Any, columns: list[str], rows: NDArray[np.int64] | tuple[int, int]) -> dict[str, Any]:
    """Read ``columns`` for a contiguous ``(start, nrow)`` range or a sorted row list."""
    if isinstance(rows, tuple):
        start, nrow = rows
        return {c: tab.getcol(c, startrow=start, nrow=nrow) for c in columns}
    rows = np.asarray(rows)
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return read_rows(tab, columns, (int(rows[0]), len(rows)))
    sel = tab.selectrows(rows.tolist())
    try:
        return {c: sel.getcol(c) for c in columns}
    finally:
        sel.close()


def write_rows(tab: Any, column: str, value: NDArray[Any], rows: NDArray[np.int64] | tuple[int, int]) -> None:
    """Write ``value`` to ``column`` for a contiguous range or a sorted row list."""
    if isinstance(rows, tuple):
        tab.putcol(column, value, startrow=rows[0], nrow=rows[1])
        return
    rows = np.asarray(rows)
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        tab.putcol(column, value, startrow=int(rows[0]), nrow=len(rows))
        return
    sel = tab.selectrows(rows.tolist())
    try:
        sel.putcol(column, value)
    finally:
        sel.close()


class ReplaceColumn:
    """Write a whole data column through a temporary column, renamed into place at the end.

    Use inside an open read-write table::

        with ReplaceColumn(tab, "CORRECTED_DATA", like="DATA") as tmp_name:
            tab.putcol(tmp_name, ...)

    On success the old column (if any) is removed and the temporary renamed; on an
    exception the temporary column is removed and the old one is untouched.
    """

    def __init__(self, tab: Any, name: str, like: str = "DATA") -> None:
        self.tab = tab
        self.name = name
        self.like = like
        self.tmp = f"{name}_FLINT_TMP"

    def __enter__(self) -> str:
        from casacore.tables import makecoldesc

        tab = self.tab
        if self.tmp in tab.colnames():
            tab.removecols([self.tmp])
        src = self.name if self.name in tab.colnames() else self.like
        desc = makecoldesc(self.tmp, tab.getcoldesc(src))
        # data-manager names must be unique and survive the rename: add a random tag
        group = f"{self.name}_dm_{secrets.token_hex(4)}"
        desc["desc"]["dataManagerGroup"] = group
        dm = tab.getdminfo(src)
        spec: dict[str, Any] = {}
        if "DEFAULTTILESHAPE" in dm.get("SPEC", {}):
            spec = {"DEFAULTTILESHAPE": dm["SPEC"]["DEFAULTTILESHAPE"]}
            dm_type = dm["TYPE"]
        else:
            dm_type = "StandardStMan"
        desc["desc"]["dataManagerType"] = dm_type
        tab.addcols(desc, {"TYPE": dm_type, "NAME": group, "SPEC": spec})
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        tab = self.tab
        if exc_type is not None:
            if self.tmp in tab.colnames():
                tab.removecols([self.tmp])
            return
        if self.name in tab.colnames():
            tab.removecols([self.name])
        tab.renamecol(self.tmp, self.name)
        tab.flush()
