"""The AO ``calibrate`` binary solution format ("MWAOCAL"), read and written.

Layout (little-endian), as documented in mwa-reduce and used by ``calibrate``,
``applysolutions`` and ``hyperdrive``::

    bytes  0-7   intro, "MWAOCAL\\0"
    bytes  8-11  uint32 fileType           (0: complex Jones solutions)
    bytes 12-15  uint32 structureType      (0: the ordering below)
    bytes 16-19  uint32 intervalCount
    bytes 20-23  uint32 antennaCount
    bytes 24-27  uint32 channelCount
    bytes 28-31  uint32 polarizationCount  (4: the 2x2 Jones matrix xx, xy, yx, yy)
    bytes 32-39  float64 startTime
    bytes 40-47  float64 endTime
    then intervals x antennas x channels x polarizations complex128 (re, im pairs)

A flagged solution is NaN. flint writes ``startTime``/``endTime`` as the MS ``TIME``
(MJD seconds) at the start of the first and the end of the last integration; AO
``calibrate`` writes 0 there. With several intervals, interval ``i`` covers the
``i``-th of ``intervalCount`` equal slices of ``[startTime, endTime]`` (or, when the
times are 0, of the MS's integrations).
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from flint.errors import FlintInputError
from flint.io import atomic_path

__all__ = ["AOSolutions", "read_solutions", "write_solutions", "HEADER_FORMAT", "MAGIC"]

logger = logging.getLogger(__name__)

MAGIC = b"MWAOCAL\0"
#: struct format of the 48-byte header
HEADER_FORMAT = "<8s6I2d"
_HEADER_SIZE = struct.calcsize(HEADER_FORMAT)


class AOSolutions:
    """Jones solutions ``(interval, antenna, channel, 2, 2)`` plus the time range.

    Solutions shared by a group of channels (self-cal's default is one solution across the
    band) are held once per group, with ``channel_group`` giving each channel's group: the
    per-channel array of 10 h of 10 s self-cal at 288 channels would be 2.4 GB, the grouped
    one 8 MB. :attr:`jones` expands them on demand; :func:`write_solutions` and
    :func:`flint.calibrate.apply.apply_solutions` work from the groups.

    Parameters
    ----------
    jones
        Complex 2x2 Jones matrices ``(interval, antenna, channel or group, 2, 2)``; NaN where flagged.
    start_time, end_time
        Time range covered (MS ``TIME`` units, MJD seconds; 0 if unknown).
    channel_group
        Group (index into ``jones``' third axis) of each channel; ``None``: one per channel.
    """

    __slots__ = ("_jones", "start_time", "end_time", "_group")

    def __init__(
        self,
        jones: NDArray[np.complex128],
        start_time: float = 0.0,
        end_time: float = 0.0,
        channel_group: NDArray[np.integer] | None = None,
    ) -> None:
        j = np.asarray(jones, dtype=np.complex128)
        if j.ndim != 5 or j.shape[-2:] != (2, 2):
            raise FlintInputError(
                f"AO solutions must be shaped (interval, antenna, channel, 2, 2); got {j.shape}"
            )
        if j.size == 0:
            raise FlintInputError(f"AO solutions hold no antennas/channels/intervals (shape {j.shape[:3]})")
        group = None
        if channel_group is not None:
            group = np.asarray(channel_group, dtype=np.int64)
            if group.ndim != 1 or group.size == 0 or group.min() < 0 or group.max() >= j.shape[2]:
                raise FlintInputError(
                    f"channel_group must give each channel a group in 0..{j.shape[2] - 1}; got {group.shape} values "
                    f"in {group.min() if group.size else None}..{group.max() if group.size else None}"
                )
            if group.size == j.shape[2] and np.array_equal(group, np.arange(group.size)):
                group = None
        self._jones, self._group = j, group
        self.start_time, self.end_time = float(start_time), float(end_time)

    def __repr__(self) -> str:
        return (
            f"AOSolutions({self.n_intervals} intervals x {self.n_antennas} antennas x {self.n_channels} channels"
            f" in {self.n_groups} group(s), {self.start_time}..{self.end_time})"
        )

    @property
    def n_intervals(self) -> int:
        return int(self._jones.shape[0])

    @property
    def n_antennas(self) -> int:
        return int(self._jones.shape[1])

    @property
    def n_channels(self) -> int:
        return int(self._jones.shape[2] if self._group is None else self._group.size)

    @property
    def n_groups(self) -> int:
        """Distinct solutions along frequency (``n_channels`` when each channel has its own)."""
        return int(self._jones.shape[2])

    @property
    def grouped_jones(self) -> NDArray[np.complex128]:
        """``(interval, antenna, group, 2, 2)``: each distinct solution once (not a copy)."""
        return self._jones

    @property
    def channel_group(self) -> NDArray[np.int64]:
        """Index into :attr:`grouped_jones`' third axis of each channel."""
        return np.arange(self._jones.shape[2]) if self._group is None else self._group

    @property
    def jones(self) -> NDArray[np.complex128]:
        """``(interval, antenna, channel, 2, 2)``; expanded (a new array) when channels share solutions."""
        return self._jones if self._group is None else self._jones[:, :, self._group]

    @property
    def diagonal(self) -> bool:
        """Every cross-hand term (xy, yx) is 0: gains only, no leakage."""
        return not (np.any(self._jones[..., 0, 1] != 0) or np.any(self._jones[..., 1, 0] != 0))

    @property
    def flagged(self) -> NDArray[np.bool_]:
        """``(interval, antenna, channel)``: any element of the Jones matrix is NaN."""
        bad = self._flagged_groups()
        return bad if self._group is None else bad[:, :, self._group]

    def _flagged_groups(self) -> NDArray[np.bool_]:
        """``(interval, antenna, group)``: any element of the group's Jones matrix is NaN."""
        return ~np.all(np.isfinite(self._jones), axis=(-1, -2))

    @property
    def n_flagged(self) -> int:
        """Flagged (interval, antenna, channel) cells, counted without expanding the groups."""
        bad = self._flagged_groups()
        if self._group is None:
            return int(bad.sum())
        return int(np.sum(bad * np.bincount(self._group, minlength=self.n_groups)))

    @property
    def gains(self) -> NDArray[np.complex128]:
        """Diagonal gains ``(interval, antenna, channel, 2)`` (X, Y)."""
        g = np.stack([self._jones[..., 0, 0], self._jones[..., 1, 1]], axis=-1)
        return g if self._group is None else g[:, :, self._group]

    @classmethod
    def from_gains(
        cls,
        gains: NDArray[np.complex128],
        start_time: float = 0.0,
        end_time: float = 0.0,
        channel_group: NDArray[np.integer] | None = None,
    ) -> AOSolutions:
        """Diagonal Jones matrices from gains ``(interval, antenna, channel or group, 2)``.

        A NaN gain in either polarisation flags the whole matrix (as ``calibrate`` does).
        """
        g = np.asarray(gains, dtype=np.complex128)
        if g.ndim != 4 or g.shape[-1] != 2:
            raise FlintInputError(f"gains must be shaped (interval, antenna, channel, 2); got {g.shape}")
        j = np.zeros((*g.shape[:-1], 2, 2), dtype=np.complex128)
        j[..., 0, 0] = g[..., 0]
        j[..., 1, 1] = g[..., 1]
        bad = ~np.all(np.isfinite(g), axis=-1)
        j[bad] = np.nan
        return cls(j, start_time=start_time, end_time=end_time, channel_group=channel_group)

    def interval_of(self, times: NDArray[np.float64], all_times: NDArray[np.float64]) -> NDArray[np.int64]:
        """Solution interval of each time (``all_times``: the MS's sorted unique times)."""
        ni = self.n_intervals
        t = np.asarray(times, dtype=float)
        if ni == 1:
            return np.zeros(t.shape, dtype=np.int64)
        if self.end_time > self.start_time > 0:
            frac = (t - self.start_time) / (self.end_time - self.start_time)
        else:
            pos = np.searchsorted(all_times, t)
            frac = pos / max(len(all_times), 1)
        return np.clip(np.floor(frac * ni).astype(np.int64), 0, ni - 1)


def write_solutions(path: str | os.PathLike[str], solutions: AOSolutions) -> Path:
    """Write ``solutions`` to ``path`` in the AO format (atomically).

    Written an interval at a time: grouped solutions are expanded to channels one interval
    at a time, so memory does not grow with the number of intervals.
    """
    path = Path(path)
    ni, na, nc = solutions.n_intervals, solutions.n_antennas, solutions.n_channels
    header = struct.pack(HEADER_FORMAT, MAGIC, 0, 0, ni, na, nc, 4, float(solutions.start_time), float(solutions.end_time))
    grouped, group = solutions.grouped_jones, solutions.channel_group
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(header)
            for i in range(ni):
                fh.write(np.ascontiguousarray(grouped[i][:, group].reshape(na, nc, 4), dtype="<c16").tobytes())
    logger.info("wrote %s (%d intervals, %d antennas, %d channels)", path, ni, na, nc)
    return path


def read_solutions(path: str | os.PathLike[str]) -> AOSolutions:
    """Read an AO-format solution file.

    Raises
    ------
    FlintInputError
        The file is missing, not in the AO format, or truncated.
    """
    path = Path(path)
    if path.is_dir() and (path / "table.dat").exists():
        raise FlintInputError(
            f"{path}: is a casacore table, not an AO solution file; read it with "
            "flint.calibrate.load_solutions (what `flint calibrate apply` and `plot` use)"
        )
    if not path.exists():
        raise FlintInputError(f"{path}: no such solution file; give the .bin written by 'flint calibrate bandpass'")
    if not path.is_file():
        raise FlintInputError(f"{path}: is a folder, not a solution file; give the .bin written by 'flint calibrate bandpass'")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(_HEADER_SIZE)
        if len(raw) < _HEADER_SIZE:
            raise FlintInputError(f"{path}: {size} bytes is too short for an AO solution file (48-byte header)")
        magic, ftype, stype, ni, na, nc, npol, t0, t1 = struct.unpack(HEADER_FORMAT, raw)
        if magic != MAGIC:
            raise FlintInputError(f"{path}: does not start with 'MWAOCAL'; not an AO calibrate solution file")
        if ftype != 0 or stype != 0:
            raise FlintInputError(f"{path}: unsupported fileType {ftype} / structureType {stype} (only 0/0 exists)")
        if min(ni, na, nc) == 0:
            raise FlintInputError(
                f"{path}: holds {ni} intervals x {na} antennas x {nc} channels (no solutions); "
                "re-solve with 'flint calibrate bandpass' or 'flint calibrate selfcal'"
            )
        if npol != 4:
            raise FlintInputError(f"{path}: polarizationCount is {npol}; AO files hold 4 (a 2x2 Jones matrix)")
        expected = _HEADER_SIZE + ni * na * nc * npol * 16
        if size != expected:
            raise FlintInputError(
                f"{path}: is {size} bytes but its header ({ni} intervals x {na} antennas x {nc} channels) "
                f"needs {expected}; the file is truncated or corrupt"
            )
    body = np.memmap(path, dtype="<c16", mode="r", offset=_HEADER_SIZE, shape=(ni, na, nc, 4))
    starts = _group_starts(body)
    jones = np.empty((ni, na, len(starts), 2, 2), dtype=np.complex128)
    for i in range(ni):
        jones[i] = body[i][:, starts].reshape(na, len(starts), 2, 2)
    group = np.cumsum(np.isin(np.arange(nc), starts)) - 1
    del body
    return AOSolutions(jones, start_time=t0, end_time=t1, channel_group=group)


def _group_starts(body: NDArray[np.complexfloating]) -> NDArray[np.int64]:
    """First channel of each run of channels whose solutions are identical (bit for bit) in every interval.

    ``body`` is ``(interval, antenna, channel, 4)``; read an interval at a time (a memory map
    stays bounded), so a self-cal file of one solution across the band is held once per interval.
    """
    nc = body.shape[2]
    new = np.zeros(nc, dtype=bool)
    new[0] = True
    for i in range(body.shape[0]):
        bits = np.ascontiguousarray(body[i]).view(np.uint64)  # NaN == NaN bitwise; -0.0 != 0.0 (kept apart)
        new[1:] |= np.any(bits[:, 1:] != bits[:, :-1], axis=(0, 2))
    return np.flatnonzero(new)
