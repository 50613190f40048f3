"""Streaming pieces of the simulator: time chunks, per-integration noise, RFI, a streamed truth file.

The simulator predicts, corrupts and writes one chunk of whole integrations at a time,
so its memory does not grow with the number of integrations or channels. Every random
number that lands in the data is drawn from a generator seeded by
``(seed, stream..., integration)``: the bytes written do not depend on the chunk size.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from flint.io import atomic_path

__all__ = ["Chunk", "TruthWriter", "chunk_times", "time_rngs", "corrupt", "rfi_cells", "add_rfi"]

#: bytes of one visibility (complex64) in the DATA column
_VIS_BYTES = 8


@dataclass(frozen=True)
class Chunk:
    """Whole integrations of one Measurement Set, ready to write."""

    times: NDArray[np.float64]
    """Integration centres (MJD s), ``(n_time,)``."""
    uvw: NDArray[np.float64]
    """``(n_time * n_baseline, 3)`` metres."""
    data: NDArray[np.complex64]
    """``(n_time * n_baseline, n_chan, 4)`` visibilities."""


def chunk_times(chunk_mb: float, n_baselines: int, n_channels: int) -> int:
    """Integrations per chunk so that a chunk's DATA is about ``chunk_mb`` MB (at least one)."""
    per_time = n_baselines * n_channels * 4 * _VIS_BYTES
    return max(1, int(chunk_mb * 1e6 // per_time))


def time_rngs(seed: int, stream: Sequence[int], start: int, stop: int) -> list[np.random.Generator]:
    """One generator per integration ``start..stop-1`` of a stream (independent of chunking)."""
    return [np.random.default_rng([seed, *stream, t]) for t in range(start, stop)]


def corrupt(
    model: NDArray[np.complex128],
    gains_t: NDArray[np.complex128],
    a1: NDArray[np.int32],
    a2: NDArray[np.int32],
    noise_jy: float,
    rngs: Sequence[np.random.Generator],
) -> NDArray[np.complex64]:
    """Stokes-I model (row, chan) -> observed (row, chan, 4), gains (time, ant, chan, 2).

    XX and YY get the antenna gains; all four correlations get noise of ``noise_jy`` per
    real/imaginary part, drawn from ``rngs[i]`` for integration ``i`` of the chunk.
    """
    nt = gains_t.shape[0]
    nbl = len(a1)
    nc = model.shape[1]
    buf = np.zeros((nt, nbl, nc, 4, 2), dtype=np.float32)
    if noise_jy > 0:
        for i, rng in enumerate(rngs):
            rng.standard_normal(out=buf[i], dtype=np.float32)
        buf *= np.float32(noise_jy)
    vis = buf.view(np.complex64)[..., 0]  # (time, baseline, chan, 4)
    m = model.reshape(nt, nbl, nc)
    for corr, pol in ((0, 0), (3, 1)):
        g = gains_t[..., pol]  # (time, ant, chan)
        vis[..., corr] += (g[:, a1] * m * np.conj(g[:, a2])).astype(np.complex64)
    return vis.reshape(nt * nbl, nc, 4)


def rfi_cells(nt: int, nc: int, fraction: float, rng: np.random.Generator) -> NDArray[np.bool_]:
    """The (time, chan) cells hit by RFI: one persistent narrow-band channel and bursts."""
    cells = np.zeros((nt, nc), dtype=bool)
    target = int(round(fraction * nt * nc))
    if nc >= 4 and target > 0:
        ch = int(rng.integers(1, nc - 1))
        t0 = int(rng.integers(0, max(1, nt // 2)))
        cells[t0 : t0 + max(1, min(nt // 3, target // 2)), ch] = True
    n_hit = int(cells.sum())
    while n_hit < target:
        t = int(rng.integers(0, nt))
        c0 = int(rng.integers(0, nc))
        width = int(rng.integers(1, max(2, nc // 3)))
        n_hit += int(np.count_nonzero(~cells[t, c0 : c0 + width]))
        cells[t, c0 : c0 + width] = True
    return cells


def add_rfi(
    data: NDArray[np.complex64], cells: NDArray[np.bool_], amplitude_jy: float, rngs: Sequence[np.random.Generator]
) -> None:
    """Add RFI in place to the cells (time, chan) of a chunk, every baseline of each integration."""
    nt = cells.shape[0]
    nbl = data.shape[0] // max(nt, 1)
    pol = np.array([1.0, 0.3, 0.3, 1.0])
    for i, rng in enumerate(rngs):
        hit = np.flatnonzero(cells[i])
        if not len(hit):
            continue
        rows = data[i * nbl : (i + 1) * nbl]
        amp = amplitude_jy * rng.uniform(0.5, 2.0, size=(nbl, len(hit), 1))
        ph = rng.uniform(0, 2 * np.pi, size=(nbl, len(hit), 1))
        rows[:, hit] += (amp * np.exp(1j * ph) * pol).astype(np.complex64)


class TruthWriter:
    """An ``.npz`` truth file whose large arrays are appended chunk by chunk.

    Small arrays are kept in memory (:meth:`add`); streamed ones (:meth:`stream` then
    :meth:`append`) go to temporary ``.npy`` files in ``work_dir`` and are deflated into
    the archive by :meth:`close`, which writes the file atomically. ``np.load`` reads it
    like any ``np.savez_compressed`` file. Entries carry a fixed timestamp, so the same
    arrays give the same bytes.
    """

    def __init__(self, path: Path, work_dir: Path) -> None:
        self.path = path
        self._dir = Path(tempfile.mkdtemp(prefix=".truth.", dir=work_dir))
        self._entries: dict[str, Any] = {}
        self._open: dict[str, tuple[BinaryIO, int]] = {}

    def add(self, **arrays: Any) -> None:
        """Entries held in memory (small arrays and scalars)."""
        for name, value in arrays.items():
            self._entries[name] = np.asanyarray(value)

    def stream(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        """Start an entry of ``shape`` whose C-order contents arrive by :meth:`append`."""
        dt = np.dtype(dtype)
        fn = self._dir / f"{name}.npy"
        fh = open(fn, "wb")  # noqa: SIM115 - closed in close()
        header = {"descr": np.lib.format.dtype_to_descr(dt), "fortran_order": False, "shape": tuple(int(s) for s in shape)}
        np.lib.format.write_array_header_2_0(fh, header)
        self._entries[name] = fn
        self._open[name] = (fh, int(np.prod(shape)) * dt.itemsize)

    def append(self, name: str, chunk: NDArray[Any]) -> None:
        """Append the next C-order piece of a streamed entry."""
        fh, _ = self._open[name]
        fh.write(np.ascontiguousarray(chunk).tobytes())

    def close(self) -> Path:
        """Write the archive (atomically) and remove the temporaries."""
        try:
            for name, (fh, size) in self._open.items():
                fh.close()
                got = Path(self._entries[name]).stat().st_size - _header_len(self._entries[name])
                if got != size:
                    raise RuntimeError(f"{self.path}: truth entry {name} got {got} bytes, expected {size}")
            with atomic_path(self.path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
                for name, value in self._entries.items():
                    info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with zf.open(info, "w", force_zip64=True) as out:
                        if isinstance(value, Path):
                            with open(value, "rb") as src:
                                shutil.copyfileobj(src, out, 1 << 20)
                        else:
                            np.lib.format.write_array(out, value, allow_pickle=False)
        finally:
            self.discard()
        return self.path

    def discard(self) -> None:
        """Remove the temporaries (idempotent); the archive is not written."""
        for fh, _ in self._open.values():
            fh.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def _header_len(path: Path) -> int:
    with open(path, "rb") as fh:
        np.lib.format.read_magic(fh)
        np.lib.format.read_array_header_2_0(fh)
        return fh.tell()
