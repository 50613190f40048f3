"""Source finding in overlapping tiles: memory bounded by the tile, not the mosaic.

BANE and aegean hold several full-size copies of the image: 1.7 GB of peak RSS for a 9-beam
mosaic (21 M pixels) and 3.2 GB for 36 beams (61 M pixels), growing with the mosaic. With
``SourceFindingOptions.tile_size`` an image larger than that is cut into tiles: each tile's
*core* (at most ``tile_size`` pixels a side) is read with a *margin* on every side, written to a
temporary FITS image with its own WCS, and searched whole (BANE + aegean, in its own process
when ``isolate``). So memory holds one tile, whatever the mosaic's size.

* A component is kept by the tile whose core holds its position: every component appears once,
  and an island smaller than the margin is fitted whole in that tile.
* The margin is BANE's box plus two grid steps (``tile_margin`` overrides it), and cores and
  margins are multiples of BANE's grid step. So the background and noise in a core are BANE's
  statistics over the same boxes as in the whole image (not bit-identical: BANE's grid then
  starts at the tile's edge).
* The BANE maps are assembled from the tiles' cores into full-size maps, written row by row.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flint.images import read_header
from flint.io import atomic_path

if TYPE_CHECKING:
    from flint.source_finding import SourceFindingOptions, SourceFindingResult

__all__ = ["Tile", "plan_tiles", "needs_tiles", "find_in_tiles"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tile:
    """One tile: the core it answers for and the (larger) region it reads, in image pixels."""

    core: tuple[slice, slice]
    read: tuple[slice, slice]


def _bane_step(header: Any, opts: SourceFindingOptions) -> int:
    """BANE's grid step (pixels): ``step_size``, else BANE's own default (its ``get_step_size``)."""
    if opts.step_size:
        return int(opts.step_size)
    from flint.source_finding import _import_aegean

    BANE, _ = _import_aegean()
    return max(1, int(min(BANE.get_step_size(header))))


def _margin(header: Any, opts: SourceFindingOptions) -> tuple[int, int]:
    """(step, margin) in pixels; the margin a multiple of the step."""
    step = _bane_step(header, opts)
    if opts.tile_margin is not None:
        return step, int(np.ceil(opts.tile_margin / step)) * step
    box = opts.box_size or 6 * step  # BANE's default box: 6 steps
    return step, int(np.ceil((box + 2 * step) / step)) * step


def plan_tiles(ny: int, nx: int, tile_size: int, margin: int, step: int = 1) -> list[Tile]:
    """Tiles covering an ``ny`` x ``nx`` image: cores of at most ``tile_size`` (a multiple of
    ``step``) that partition the image, each read with ``margin`` pixels around it (clipped).

    Examples
    --------
    >>> [(t.core[0].start, t.core[0].stop, t.read[0].start, t.read[0].stop) for t in plan_tiles(10, 4, 4, 2)][:3]
    [(0, 4, 0, 6), (4, 8, 2, 10), (8, 10, 6, 10)]
    """
    core = max(step, (tile_size // step) * step)
    out = []
    for y0 in range(0, ny, core):
        for x0 in range(0, nx, core):
            y1, x1 = min(ny, y0 + core), min(nx, x0 + core)
            out.append(Tile(
                core=(slice(y0, y1), slice(x0, x1)),
                read=(slice(max(0, y0 - margin), min(ny, y1 + margin)), slice(max(0, x0 - margin), min(nx, x1 + margin))),
            ))
    return out


def needs_tiles(header: Any, opts: SourceFindingOptions) -> bool:
    """Whether the image is larger than ``tile_size`` on a side."""
    if not opts.tile_size:
        return False
    return max(int(header["NAXIS1"]), int(header["NAXIS2"])) > opts.tile_size


def _tile_header(header: Any, wcs: Any, tile: Tile) -> Any:
    """A 2-D header for the tile: the image's celestial WCS ``wcs`` shifted to the tile, beam and unit kept."""
    ys, xs = tile.read
    out = wcs[ys, xs].to_header()
    for key in ("BMAJ", "BMIN", "BPA", "BUNIT", "FREQ", "RESTFRQ", "TELESCOP", "OBJECT"):
        if key in header:
            out[key] = header[key]
    return out


class _MapWriter:
    """A full-size float32 FITS map written row by row (never held in memory)."""

    def __init__(self, path: Path, header: Any) -> None:
        from astropy.io import fits

        h = header.copy()
        h["BITPIX"] = -32
        for key in ("BSCALE", "BZERO", "BLANK"):
            h.remove(key, ignore_missing=True)
        self.nx, self.ny = int(h["NAXIS1"]), int(h["NAXIS2"])
        text = fits.Header(h).tostring().encode("ascii")
        self.offset = len(text)
        nbytes = self.nx * self.ny * int(np.prod([int(h.get(f"NAXIS{k}", 1)) for k in range(3, int(h["NAXIS"]) + 1)])) * 4
        with open(path, "wb") as fh:
            fh.write(text)
            fh.truncate(self.offset + -(-nbytes // 2880) * 2880)  # zero-filled data, padded to FITS blocks
        self.fd = os.open(path, os.O_WRONLY)

    def write(self, y0: int, x0: int, block: np.ndarray) -> None:
        for r, row in enumerate(np.asarray(block, dtype=">f4")):
            os.pwrite(self.fd, row.tobytes(), self.offset + ((y0 + r) * self.nx + x0) * 4)

    def close(self) -> None:
        os.close(self.fd)


def find_in_tiles(image: Path, opts: SourceFindingOptions) -> SourceFindingResult:
    """BANE + aegean on overlapping tiles of ``image``; the merged catalogue and maps beside it
    under the names :func:`flint.source_finding.run_source_finding` uses."""
    from astropy.io import fits
    from astropy.table import Table, vstack
    from astropy.wcs import WCS

    from flint.source_finding import (
        SourceFindingResult,
        _components_table,
        _stem,
        run_source_finding,
    )

    header = read_header(image)
    ny, nx = int(header["NAXIS2"]), int(header["NAXIS1"])
    assert opts.tile_size is not None
    step, margin = _margin(header, opts)
    plan = plan_tiles(ny, nx, opts.tile_size, margin, step)
    wcs = WCS(header).celestial
    stem, out_dir = _stem(image), image.parent
    finals = {k: out_dir / f"{stem}.{k}.fits" for k in ("bkg", "rms")}
    finals |= {"csv": out_dir / f"{stem}.comp.csv", "fits": out_dir / f"{stem}.comp.fits"}
    logger.info("%s: %d x %d pixels in %d tiles (cores <= %d px, margin %d px)", image, nx, ny, len(plan), opts.tile_size, margin)
    work = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=".tiles", dir=out_dir))
    tables: list[Any] = []
    try:
        with contextlib.ExitStack() as stack:
            maps = {k: _MapWriter(work / f"{k}.fits", header) for k in ("bkg", "rms")} if opts.keep_maps else {}
            for writer in maps.values():
                stack.callback(writer.close)
            island0 = 0
            tile_opts = opts.with_options(tile_size=None, keep_maps=True)
            hdul = stack.enter_context(fits.open(image, memmap=True))
            for i, tile in enumerate(plan):
                (ys, xs), (cy, cx) = tile.read, tile.core
                data = np.asarray(hdul[0].data[(0,) * (hdul[0].data.ndim - 2) + (ys, xs)], dtype=np.float32)
                path = work / f"tile{i:04d}.fits"
                fits.PrimaryHDU(data, _tile_header(header, wcs, tile)).writeto(path)
                del data
                res = run_source_finding(path, tile_opts)
                for key, writer in maps.items():
                    m = np.squeeze(fits.getdata(res.rms if key == "rms" else res.bkg))
                    writer.write(cy.start, cx.start, m[cy.start - ys.start : cy.stop - ys.start, cx.start - xs.start : cx.stop - xs.start])
                tab = Table.read(res.catalogue, format="ascii.csv")
                if len(tab):
                    px, py = wcs.world_to_pixel_values(np.asarray(tab["ra"], float), np.asarray(tab["dec"], float))
                    iy, ix = np.floor(np.asarray(py) + 0.5), np.floor(np.asarray(px) + 0.5)
                    keep = (iy >= cy.start) & (iy < cy.stop) & (ix >= cx.start) & (ix < cx.stop)
                    tab = tab[keep]
                    if len(tab):
                        tab["island"] = np.asarray(tab["island"], np.int64) + island0
                        island0 = int(np.max(tab["island"])) + 1
                        tables.append(tab)
                for p in work.glob(f"tile{i:04d}*"):
                    p.unlink()
        table = vstack(tables) if tables else _components_table([])
        table.sort(["island", "source"])
        with atomic_path(finals["csv"]) as tmp:
            table.write(tmp, format="ascii.csv")
        with atomic_path(finals["fits"]) as tmp:
            table.write(tmp, format="fits")
        for key in maps:
            os.replace(work / f"{key}.fits", finals[key])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("%s: %d components in %d tiles -> %s", image, len(table), len(plan), finals["csv"])
    return SourceFindingResult(
        image=image, catalogue=finals["csv"], catalogue_fits=finals["fits"],
        rms=finals["rms"] if opts.keep_maps else None, bkg=finals["bkg"] if opts.keep_maps else None,
        n_components=len(table),
    )
