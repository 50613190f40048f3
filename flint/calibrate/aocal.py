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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class AOSolutions:
    """Jones solutions ``(interval, antenna, channel, 2, 2)`` plus the time range.

    Attributes
    ----------
    jones
        Complex 2x2 Jones matrices; NaN where flagged.
    start_time, end_time
        Time range covered (MS ``TIME`` units, MJD seconds; 0 if unknown).
    """

    jones: NDArray[np.complex128]
    start_time: float = 0.0
    end_time: float = 0.0

    def __post_init__(self) -> None:
        j = np.asarray(self.jones, dtype=np.complex128)
        if j.ndim != 5 or j.shape[-2:] != (2, 2):
            raise FlintInputError(
                f"AO solutions must be shaped (interval, antenna, channel, 2, 2); got {j.shape}"
            )
        if j.size == 0:
            raise FlintInputError(f"AO solutions hold no antennas/channels/intervals (shape {j.shape[:3]})")
        object.__setattr__(self, "jones", j)

    @property
    def n_intervals(self) -> int:
        return int(self.jones.shape[0])

    @property
    def n_antennas(self) -> int:
        return int(self.jones.shape[1])

    @property
    def n_channels(self) -> int:
        return int(self.jones.shape[2])

    @property
    def flagged(self) -> NDArray[np.bool_]:
        """``(interval, antenna, channel)``: any element of the Jones matrix is NaN."""
        return ~np.all(np.isfinite(self.jones), axis=(-1, -2))

    @property
    def gains(self) -> NDArray[np.complex128]:
        """Diagonal gains ``(interval, antenna, channel, 2)`` (X, Y)."""
        return np.stack([self.jones[..., 0, 0], self.jones[..., 1, 1]], axis=-1)

    @classmethod
    def from_gains(cls, gains: NDArray[np.complex128], start_time: float = 0.0, end_time: float = 0.0) -> AOSolutions:
        """Diagonal Jones matrices from gains ``(interval, antenna, channel, 2)``.

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
        return cls(jones=j, start_time=start_time, end_time=end_time)

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
    """Write ``solutions`` to ``path`` in the AO format (atomically)."""
    path = Path(path)
    ni, na, nc = solutions.jones.shape[:3]
    header = struct.pack(HEADER_FORMAT, MAGIC, 0, 0, ni, na, nc, 4, float(solutions.start_time), float(solutions.end_time))
    body = np.ascontiguousarray(solutions.jones.reshape(ni, na, nc, 4), dtype="<c16")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(header)
            fh.write(body.tobytes())
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
        body = np.frombuffer(fh.read(), dtype="<c16")
    jones = body.astype(np.complex128).reshape(ni, na, nc, 2, 2)
    return AOSolutions(jones=jones, start_time=t0, end_time=t1)
