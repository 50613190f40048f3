"""An interactive FITS image viewer: robust stretch, zoom/pan, pixel readout, catalogue overlay.

Built on ``bqplot`` (an ipywidgets plotting library that JupyterLab serves from its own
bundle: works offline, no WebGL needed, so headless browsers draw it too). The numbers
are plain functions: :func:`stretch` (robust asinh / zscale / percentile / linear),
:func:`pixel_info` (value, unit, sexagesimal RA/Dec), :func:`overlay_sources` (catalogue
components split into matched / spurious, and reference sources not found).

Examples
--------
>>> v = ImageViewer("mosaic.fits")                                   # doctest: +SKIP
>>> v.overlay("mosaic.comp.csv", matches="run.matches.csv")          # doctest: +SKIP
>>> v.readout(512, 512)                                              # doctest: +SKIP
'x 512, y 512: 1.2e-04 Jy/beam · RA 12h30m00.00s, Dec -45d00m00.0s'
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flint.errors import FlintInputError
from flint_widgets._common import ErrorArea, guarded, message_html

__all__ = ["STRETCHES", "stretch", "stretch_limits", "pixel_info", "overlay_sources", "Overlay", "ImageViewer"]

logger = logging.getLogger(__name__)

#: stretch name -> short description (the first is the default)
STRETCHES = {
    "robust asinh": "noise to brightest sources: median-3σ .. max(99.9 %, median+30σ), asinh",
    "zscale": "IRAF zscale limits, linear",
    "percentile 99.5": "0.25 .. 99.75 percentiles, linear",
    "min-max": "full range, linear",
}
_MAX_SIDE = 1024  # pixels sent to the browser per side (readout uses the full image)


def stretch_limits(data: Any, mode: str = "robust asinh") -> tuple[float, float, str]:
    """The data values shown as black and as white by ``mode``, and the curve between them (``asinh``/``linear``)."""
    from astropy.stats import mad_std
    from astropy.visualization import ZScaleInterval

    a = np.asarray(data, dtype=float)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        raise FlintInputError("the image has no finite pixels")
    if mode == "robust asinh":
        med, sigma = float(np.median(finite)), float(mad_std(finite))
        return med - 3 * sigma, max(float(np.percentile(finite, 99.9)), med + 30 * sigma), "asinh"
    if mode == "zscale":
        lo, hi = ZScaleInterval().get_limits(finite)
        return float(lo), float(hi), "linear"
    if mode == "percentile 99.5":
        lo, hi = (float(v) for v in np.percentile(finite, [0.25, 99.75]))
        return lo, hi, "linear"
    if mode == "min-max":
        return float(finite.min()), float(finite.max()), "linear"
    raise FlintInputError(f"unknown stretch {mode!r}; choose one of {', '.join(STRETCHES)}")


def stretch(data: Any, mode: str = "robust asinh") -> np.ndarray:
    """Map an image to 0..1 for display (NaN -> 0). Sources stay visible on a noisy background."""
    from astropy.visualization import AsinhStretch, LinearStretch

    a = np.asarray(data, dtype=float)
    lo, hi, curve = stretch_limits(a, mode)
    fn: Any = AsinhStretch(0.1) if curve == "asinh" else LinearStretch()
    scaled = np.clip((a - lo) / ((hi - lo) or 1.0), 0.0, 1.0)
    out = fn(np.nan_to_num(scaled, nan=0.0), clip=True)
    return np.asarray(out, dtype=float)


def _sexagesimal(ra_deg: float, dec_deg: float) -> str:
    from astropy.coordinates import SkyCoord

    c = SkyCoord(ra_deg, dec_deg, unit="deg")
    return f"RA {c.ra.to_string(unit='hourangle', sep='hms', precision=2, pad=True)}, Dec {c.dec.to_string(sep='dms', precision=1, alwayssign=True, pad=True)}"


def pixel_info(data: Any, wcs: Any, x: float, y: float, unit: str = "") -> str:
    """``x, y: value unit · RA .., Dec ..`` for the pixel nearest (x, y) (0-based, FITS order)."""
    ix, iy = int(round(x)), int(round(y))
    ny, nx = np.shape(data)[-2:]
    if not (0 <= ix < nx and 0 <= iy < ny):
        return f"x {ix}, y {iy}: outside the image ({nx} x {ny})"
    value = float(np.asarray(data)[iy, ix])
    text = f"x {ix}, y {iy}: {value:.4g} {unit}".rstrip()
    if wcs is not None:
        world = wcs.celestial.pixel_to_world_values(ix, iy)
        text += " · " + _sexagesimal(float(world[0]), float(world[1]))
    return text


@dataclass(frozen=True)
class Overlay:
    """Pixel positions of the overlay classes."""

    matched: tuple[np.ndarray, np.ndarray]
    spurious: tuple[np.ndarray, np.ndarray]
    missed: tuple[np.ndarray, np.ndarray]

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)[0]) for k in ("matched", "spurious", "missed")}


def _radec(table: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    for ra, dec in (("ra", "dec"), ("RA", "DEC"), ("ra_deg", "dec_deg"), ("_RAJ2000", "_DEJ2000")):
        if ra in table.colnames and dec in table.colnames:
            return np.asarray(table[ra], dtype=float), np.asarray(table[dec], dtype=float)
    raise FlintInputError(f"{path}: no ra/dec columns (has {', '.join(table.colnames[:12])})")


def overlay_sources(wcs: Any, catalogue: str | os.PathLike[str], matches: str | os.PathLike[str] | None = None) -> Overlay:
    """Catalogue components as pixels, split by the validation's matches table.

    ``matched``: components matched to a reference source; ``spurious``: components with
    no reference match; ``missed``: reference sources expected in the field but not found.
    Without ``matches`` every component counts as matched-unknown (listed under ``matched``).
    """
    from flint_widgets.results import read_table

    cat_path = Path(catalogue)
    cat = read_table(cat_path)
    ra, dec = _radec(cat, cat_path)
    matched_idx: set[int] = set()
    missed_ra: list[float] = []
    missed_dec: list[float] = []
    if matches is not None:
        m = read_table(matches)
        for row in m:
            if bool(row["matched"]) and int(row["cat_index"]) >= 0:
                matched_idx.add(int(row["cat_index"]))
            elif bool(row["expected"]):
                missed_ra.append(float(row["ref_ra_deg"]))
                missed_dec.append(float(row["ref_dec_deg"]))
    cel = wcs.celestial

    def pix(r: Any, d: Any) -> tuple[np.ndarray, np.ndarray]:
        if len(r) == 0:
            return np.zeros(0), np.zeros(0)
        px, py = cel.world_to_pixel_values(np.asarray(r, dtype=float), np.asarray(d, dtype=float))
        return np.asarray(px, dtype=float), np.asarray(py, dtype=float)

    is_matched = np.array([i in matched_idx for i in range(len(ra))], dtype=bool)
    if matches is None:
        is_matched[:] = True
    return Overlay(pix(ra[is_matched], dec[is_matched]), pix(ra[~is_matched], dec[~is_matched]), pix(missed_ra, missed_dec))


def colour_bar_html(lo: float, hi: float, curve: str, unit: str = "") -> str:
    """A horizontal inferno colour bar labelled with the values shown as black and white."""
    import html

    import matplotlib

    stops = ", ".join(matplotlib.colors.to_hex(matplotlib.colormaps["inferno"](f)) for f in np.linspace(0, 1, 9))
    u = html.escape(unit)
    return (
        "<div style='display:flex;align-items:center;gap:6px;font-size:12px'>"
        f"<span>{lo:.3g} {u}</span><span style='display:inline-block;width:260px;height:12px;"
        f"background:linear-gradient(to right, {stops});border:1px solid #888'></span>"
        f"<span>{hi:.3g} {u}</span><span style='color:#666'>({html.escape(curve)})</span></div>"
    )


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


class ImageViewer:
    """Zoom (mouse wheel), pan (drag), click for the pixel value and RA/Dec, choose the stretch, overlay a catalogue.

    Parameters
    ----------
    path
        A FITS image (the first plane of a cube is shown).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        import bqplot as bq
        import ipywidgets as w

        self.errors = ErrorArea()
        self.data: np.ndarray | None = None
        self.wcs: Any = None
        self.unit = ""
        self.path: Path | None = None
        self.overlay_counts: dict[str, int] = {}
        self.sx, self.sy = bq.LinearScale(), bq.LinearScale()
        self.image_png = w.Image(format="png")
        self.mark = bq.Image(image=self.image_png, scales={"x": self.sx, "y": self.sy})
        self.mark.on_element_click(guarded(self.errors, "readout")(lambda _m, ev: self._clicked(ev)))
        self.marks_overlay = {
            "matched": bq.Scatter(x=[], y=[], scales={"x": self.sx, "y": self.sy}, marker="circle", fill=False,
                                  colors=["#00e676"], stroke_width=2, default_size=260),
            "spurious": bq.Scatter(x=[], y=[], scales={"x": self.sx, "y": self.sy}, marker="cross",
                                   colors=["#ff1744"], default_size=140),
            "missed": bq.Scatter(x=[], y=[], scales={"x": self.sx, "y": self.sy}, marker="triangle-up", fill=False,
                                 colors=["#40c4ff"], stroke_width=2, default_size=260),
        }
        self.panzoom = bq.interacts.PanZoom(scales={"x": [self.sx], "y": [self.sy]})
        self.figure = bq.Figure(
            marks=[self.mark, *self.marks_overlay.values()],
            axes=[bq.Axis(scale=self.sx, label="x (pixel)"), bq.Axis(scale=self.sy, orientation="vertical", label="y (pixel)")],
            interaction=self.panzoom, fig_margin={"top": 10, "bottom": 40, "left": 50, "right": 10},
            layout=w.Layout(width="640px", height="600px"), min_aspect_ratio=1, max_aspect_ratio=1,
        )
        self.figure.add_class("flint-viewer-figure")
        self.stretch = w.Dropdown(options=list(STRETCHES), value="robust asinh", description="stretch")
        self.stretch.observe(guarded(self.errors, "stretch")(lambda _c: self._draw()), names="value")
        self.mode = w.ToggleButtons(options=["zoom / pan", "read pixel"], value="zoom / pan",
                                    tooltips=["wheel zooms, drag pans", "click a pixel for its value and RA/Dec"])
        self.mode.add_class("flint-viewer-mode")
        self.mode.observe(lambda c: setattr(self.figure, "interaction", self.panzoom if c["new"] == "zoom / pan" else None),
                          names="value")
        self.reset = w.Button(description="Reset zoom", icon="expand")
        self.reset.on_click(guarded(self.errors, "zoom")(lambda _b: self.zoom()))
        self.readout_text = w.HTML("<i>zoom / pan: wheel zooms, drag pans · read pixel: click for the value and RA/Dec</i>")
        self.readout_text.add_class("flint-pixel-readout")
        self.legend = w.HTML()
        self.legend.add_class("flint-overlay-legend")
        self.colour_bar = w.HTML()
        self.colour_bar.add_class("flint-colour-bar")
        self.widget = w.VBox([w.HBox([self.stretch, self.mode, self.reset]), self.colour_bar, self.figure, self.readout_text, self.legend,
                              self.errors.output])
        self.widget.add_class("flint-viewer")
        if path is not None:
            self.load(path)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Show a FITS image (whole extent, the chosen stretch)."""
        from flint.images import read_image

        image = read_image(path)
        data = np.asarray(image.data, dtype=float)
        while data.ndim > 2:
            data = data[0]
        self.data, self.wcs, self.unit, self.path = data, image.wcs, str(image.unit or ""), Path(path)
        self._draw()
        self.zoom()
        for m in self.marks_overlay.values():
            m.x, m.y = [], []
        self.legend.value = ""
        # new mark views: ones first drawn while the viewer was hidden (zero size) stay blank
        self.figure.marks = []
        self.figure.marks = [self.mark, *self.marks_overlay.values()]

    def _draw(self) -> None:
        import matplotlib

        if self.data is None:
            return
        step = max(1, int(np.ceil(max(self.data.shape) / _MAX_SIDE)))
        shown = stretch(self.data[::step, ::step], self.stretch.value)
        self.colour_bar.value = colour_bar_html(*stretch_limits(self.data[::step, ::step], self.stretch.value), self.unit)
        rgba = matplotlib.colormaps["inferno"](shown[::-1])  # PNG rows go top-down
        self.image_png.value = _png((rgba[..., :3] * 255).astype(np.uint8))
        ny, nx = self.data.shape
        self.mark.x, self.mark.y = [-0.5, nx - 0.5], [-0.5, ny - 0.5]

    def zoom(self, x: tuple[float, float] | None = None, y: tuple[float, float] | None = None) -> None:
        """Show pixels ``x`` = (min, max), ``y`` = (min, max) (default: the whole image)."""
        if self.data is None:
            return
        ny, nx = self.data.shape
        x = x or (-0.5, nx - 0.5)
        y = y or (-0.5, ny - 0.5)
        self.sx.min, self.sx.max = float(x[0]), float(x[1])
        self.sy.min, self.sy.max = float(y[0]), float(y[1])

    def readout(self, x: float, y: float) -> str:
        """Value and sky position of the pixel at (x, y); also shown under the image."""
        if self.data is None:
            raise FlintInputError("no image loaded")
        text = pixel_info(self.data, self.wcs, x, y, self.unit)
        self.readout_text.value = message_html(text, ok=True)
        return text

    def _clicked(self, event: dict[str, Any]) -> None:
        data = event.get("data", {})
        self.readout(float(data.get("click_x", 0.0)), float(data.get("click_y", 0.0)))

    def overlay(self, catalogue: str | os.PathLike[str], matches: str | os.PathLike[str] | None = None) -> dict[str, int]:
        """Draw a catalogue over the image (matched ○ green, spurious × red, missed reference △ blue)."""
        if self.wcs is None:
            raise FlintInputError("no image loaded")
        ov = overlay_sources(self.wcs, catalogue, matches)
        for name, mark in self.marks_overlay.items():
            xs, ys = getattr(ov, name)
            mark.x, mark.y = xs, ys
        self.overlay_counts = ov.counts()
        c = self.overlay_counts
        if matches is None:
            text = f"<span style='color:#00c853'>○</span> {c['matched']} components of {Path(catalogue).name}"
        else:
            text = (f"<span style='color:#00c853'>○ matched {c['matched']}</span> · "
                    f"<span style='color:#ff1744'>× spurious {c['spurious']}</span> · "
                    f"<span style='color:#0091ea'>△ reference not found {c['missed']}</span>")
        self.legend.value = text
        return self.overlay_counts
