"""A beams x self-cal rounds grid of small images; a click opens one in the main viewer.

:func:`grid_cells` picks, from a run's products, the restored image of each beam and round
(``SB<sbid>.<field>.beam<NN>.round<R>.image.fits``, :mod:`flint.naming`) and each round's
mosaic (``SB<sbid>.<field>.round<R>.linmos.fits``, the top row). :func:`thumbnail` draws
one image small with the viewer's robust stretch, keeping point sources visible (each
thumbnail pixel is the brightest of the pixels it covers). :class:`ThumbnailGrid` shows
them all as one picture (one bqplot image: a click anywhere on a tile opens it), redrawn
when products appear.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flint_widgets._common import ErrorArea, guarded, message_html

__all__ = ["MOSAIC", "GridCells", "grid_cells", "thumbnail", "compose_grid", "ThumbnailGrid"]

logger = logging.getLogger(__name__)

#: row key of the mosaics (``linmos``) of each round
MOSAIC = "mosaic"
_PAD = 4
_LABEL_W = 70
_LABEL_H = 20


@dataclass(frozen=True)
class GridCells:
    """The images of a run by row (beam number, or :data:`MOSAIC`) and self-cal round."""

    cells: dict[tuple[int | str, int], Path]

    @property
    def rows(self) -> list[int | str]:
        keys = {r for r, _ in self.cells}
        return ([MOSAIC] if MOSAIC in keys else []) + sorted(k for k in keys if isinstance(k, int))

    @property
    def rounds(self) -> list[int]:
        return sorted({c for _, c in self.cells})


def _cell_of(path: Path) -> tuple[int | str, int] | None:
    """``(beam, round)`` of a beam's restored image, ``(MOSAIC, round)`` of a round's mosaic, else ``None``."""
    from flint.naming import parse_name

    try:
        name = parse_name(path)
    except Exception:  # not a flint product name
        return None
    if name.round is None or name.rest is None:
        return None
    if name.beam is not None and name.rest == "image.fits":
        return name.beam, name.round
    if name.beam is None and name.rest == "linmos.fits":
        return MOSAIC, name.round
    return None


def grid_cells(paths: Iterable[str | os.PathLike[str]]) -> GridCells:
    """The beams x rounds images among ``paths`` (other files are ignored)."""
    cells: dict[tuple[int | str, int], Path] = {}
    for p in paths:
        key = _cell_of(Path(p))
        if key is not None:
            cells[key] = Path(p)
    return GridCells(cells)


def thumbnail(
    path: str | os.PathLike[str], size: int = 96, mode: str = "robust asinh"
) -> np.ndarray:
    """A ``size`` x ``size`` RGB thumbnail (uint8) of a FITS image's first plane.

    The image is stretched first (:func:`flint_widgets.viewer.stretch`), then each
    thumbnail pixel takes the brightest value of its block, so a point source stays a
    visible dot instead of falling between sampled pixels.
    """
    import matplotlib

    from flint.images import read_image
    from flint_widgets.viewer import stretch

    data = np.asarray(read_image(path).data, dtype=float)
    while data.ndim > 2:
        data = data[0]
    shown = stretch(data, mode)[::-1]  # rows top-down, north up
    ny, nx = shown.shape
    step = max(1, int(np.ceil(max(ny, nx) / size)))
    py, px = (-ny) % step, (-nx) % step
    padded = np.pad(shown, ((0, py), (0, px)), constant_values=0.0)
    pooled = padded.reshape(padded.shape[0] // step, step, padded.shape[1] // step, step).max(
        axis=(1, 3)
    )
    rgb = (matplotlib.colormaps["inferno"](pooled)[..., :3] * 255).astype(np.uint8)
    scale = size / max(rgb.shape[:2])
    if scale > 1:  # a small image fills the tile (pixels repeated, not smoothed)
        from PIL import Image

        shape = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(shape, Image.Resampling.NEAREST))
    tile = np.full((size, size, 3), 40, dtype=np.uint8)
    h, w = min(size, rgb.shape[0]), min(size, rgb.shape[1])
    y0, x0 = (size - h) // 2, (size - w) // 2
    tile[y0 : y0 + h, x0 : x0 + w] = rgb[:h, :w]
    return tile


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def compose_grid(
    cells: GridCells, tiles: dict[tuple[int | str, int], np.ndarray | None], size: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """One RGB picture of the grid: row labels left, round labels on top, a tile per cell.

    Returns the picture and its layout (``x0``, ``y0`` of the first tile, ``step`` between
    tiles, ``rows``, ``rounds``) for turning a click into a cell.
    """
    from PIL import Image, ImageDraw

    rows, rounds = cells.rows, cells.rounds
    step = size + _PAD
    width = _LABEL_W + len(rounds) * step + _PAD
    height = _LABEL_H + len(rows) * step + _PAD
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(13)
    for j, r in enumerate(rounds):
        draw.text(
            (_LABEL_W + j * step + size // 2, _LABEL_H // 2),
            f"round {r}",
            fill=(0, 0, 0),
            font=font,
            anchor="mm",
        )
    for i, row in enumerate(rows):
        y = _LABEL_H + i * step
        label = "mosaic" if row == MOSAIC else f"beam {int(row):02d}"
        draw.text((_LABEL_W - 6, y + size // 2), label, fill=(0, 0, 0), font=font, anchor="rm")
        for j, r in enumerate(rounds):
            x = _LABEL_W + j * step
            tile = tiles.get((row, r))
            if tile is None:  # not there (yet): a grey square
                draw.rectangle(
                    (x, y, x + size - 1, y + size - 1),
                    fill=(225, 225, 225),
                    outline=(190, 190, 190),
                )
                if (row, r) in cells.cells:
                    draw.text(
                        (x + size // 2, y + size // 2),
                        "…",
                        fill=(120, 120, 120),
                        font=font,
                        anchor="mm",
                    )
            else:
                canvas.paste(Image.fromarray(tile), (x, y))
    layout = {
        "x0": _LABEL_W,
        "y0": _LABEL_H,
        "step": step,
        "size": size,
        "rows": rows,
        "rounds": rounds,
        "width": width,
        "height": height,
    }
    return np.asarray(canvas), layout


def _stamp(path: Path) -> tuple[float, int]:
    try:
        st = path.stat()
    except OSError:
        return (0.0, -1)
    return (st.st_mtime, st.st_size)


class ThumbnailGrid:
    """Beams (rows, the mosaic on top) x self-cal rounds (columns); a click on a tile calls ``on_open(path)``.

    Parameters
    ----------
    on_open
        Called with the image's path when its tile is clicked (the results browser opens it
        in its viewer).
    size
        Thumbnail side in screen pixels (smaller automatically for many beams).
    """

    def __init__(self, on_open: Callable[[Path], Any] | None = None, size: int = 96) -> None:
        import bqplot as bq
        import ipywidgets as w

        self.errors = ErrorArea()
        self.on_open = on_open
        self.size = size
        self.cells = GridCells({})
        self.layout: dict[str, Any] = {}
        self._cache: dict[Path, tuple[tuple[float, int, int], np.ndarray]] = {}
        self._drawn: tuple[Any, ...] = ()
        self.sx, self.sy = bq.LinearScale(), bq.LinearScale()
        self.png = w.Image(format="png")
        self.mark = bq.Image(image=self.png, scales={"x": self.sx, "y": self.sy})
        self.mark.on_element_click(
            guarded(self.errors, "open thumbnail")(lambda _m, ev: self._clicked(ev))
        )
        self.figure = bq.Figure(
            marks=[self.mark],
            fig_margin={"top": 0, "bottom": 0, "left": 0, "right": 0},
            padding_x=0,
            padding_y=0,
            display_toolbar=False,  # nothing to pan or zoom; it covered the round labels
            layout=w.Layout(width="300px", height="150px"),
        )
        self.figure.add_class("flint-thumbnail-figure")
        self.caption = w.HTML()
        self.caption.add_class("flint-thumbnail-caption")
        box = w.Box([self.figure], layout=w.Layout(max_height="460px", overflow="auto"))
        self.widget = w.VBox([self.caption, box, self.errors.output])
        self.widget.add_class("flint-thumbnails")
        self.widget.layout.display = "none"

    def update(self, paths: Iterable[str | os.PathLike[str]]) -> GridCells:
        """Show the beams x rounds images among ``paths`` (new or changed files are drawn, others reused)."""
        cells = grid_cells(paths)
        self.cells = cells
        if not cells.cells:
            self.widget.layout.display = "none"
            return cells
        rows = len(cells.rows)
        size = int(
            max(40, min(self.size, 480 // max(1, rows)))
        )  # 36 beams: a column still fits a screen or two
        signature = tuple(
            sorted((str(k), os.fspath(p), _stamp(p)) for k, p in cells.cells.items())
        ) + (size,)
        if signature == self._drawn:
            return cells  # nothing new: no redraw (the browser keeps its picture)
        tiles: dict[tuple[int | str, int], np.ndarray | None] = {}
        for key, path in cells.cells.items():
            tiles[key] = self._tile(path, size)
        # a tile that could not be drawn yet is tried again at the next update
        self._drawn = signature if all(t is not None for t in tiles.values()) else ()
        picture, self.layout = compose_grid(cells, tiles, size)
        from flint_widgets.viewer import _png

        self.png.value = _png(picture)
        height, width = picture.shape[:2]
        self.mark.x, self.mark.y = [0, width], [0, height]  # the picture's top row at y = height
        self.sx.min, self.sx.max = 0.0, float(width)
        self.sy.min, self.sy.max = 0.0, float(height)
        self.figure.layout.width, self.figure.layout.height = f"{width}px", f"{height}px"
        done = sum(t is not None for t in tiles.values())
        n_beams = sum(isinstance(r, int) for r in cells.rows)
        self.caption.value = (
            f"<b>beams × rounds</b> · {n_beams} beams, {len(cells.rounds)} rounds, {done} images"
            + (" (… being made)" if done < len(tiles) else "")
            + " · click one to open it below"
        )
        if self.widget.layout.display == "none":
            self.widget.layout.display = ""
            # new mark views: the ones first drawn while the grid was hidden (zero size) stay blank
            self.figure.marks = []
            self.figure.marks = [self.mark]
        return cells

    def _tile(self, path: Path, size: int) -> np.ndarray | None:
        try:
            st = path.stat()
        except OSError:
            return None
        key = (st.st_mtime, st.st_size, size)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            tile = thumbnail(path, size)
        except (
            Exception
        ) as exc:  # a file still being written, or not an image: drawn grey, tried again later
            logger.info("thumbnail of %s: %s", path.name, exc)
            return None
        self._cache[path] = (key, tile)
        return tile

    def cell_at(self, x: float, y: float) -> tuple[int | str, int] | None:
        """The ``(row, round)`` of the tile at picture pixel (x, y) (``None``: labels or gaps)."""
        lay = self.layout
        if not lay:
            return None
        j, dx = divmod(x - lay["x0"], lay["step"])
        i, dy = divmod(y - lay["y0"], lay["step"])
        if (
            not (0 <= i < len(lay["rows"]) and 0 <= j < len(lay["rounds"]))
            or dx >= lay["size"]
            or dy >= lay["size"]
        ):
            return None
        return lay["rows"][int(i)], lay["rounds"][int(j)]

    def open(self, row: int | str, round: int) -> Path:
        """Open the image of ``row`` (a beam number or ``"mosaic"``) and ``round``."""
        from flint.errors import FlintInputError

        path = self.cells.cells.get((row, round))
        if path is None:
            raise FlintInputError(f"no image for {row} round {round} (yet)")
        if self.on_open is not None:
            self.on_open(path)
        return path

    def _clicked(self, event: dict[str, Any]) -> None:
        data = event.get("data", {})
        height = float(self.layout.get("height", 0))
        cell = self.cell_at(
            float(data.get("click_x", -1.0)), height - float(data.get("click_y", height + 1.0))
        )
        if cell is not None:
            self.open(*cell)
        else:
            self.caption.value = message_html("click on a thumbnail to open it", ok=True)
