"""Browse a run's products: FITS images (WCS axes, robust stretch), catalogues, figures.

:func:`list_products` finds the products in a folder, :func:`render_image_png` draws
one image plane read with :func:`flint.images.read_image`, :func:`read_table` and
:func:`sort_table` give a catalogue in a chosen order. The widget only calls these.
"""

from __future__ import annotations

import html
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flint.errors import FlintInputError
from flint.naming import parse_name
from flint_widgets._common import ErrorArea, guarded, message_html

__all__ = ["Product", "list_products", "render_image_png", "read_table", "sort_table", "table_html", "ResultsBrowser"]

logger = logging.getLogger(__name__)

_TABLE_SUFFIXES = (".csv", ".comp.fits", ".vot", ".xml")
_SKIP_PARTS = ("_bkg.fits", "_rms.fits", ".psf.fits", ".dirty.fits", ".model.fits")


@dataclass(frozen=True)
class Product:
    """A product file and what kind it is (``image``, ``table`` or ``figure``)."""

    path: Path
    kind: str
    beam: int | None = None
    round: int | None = None

    @property
    def label(self) -> str:
        return f"[{self.kind}] {self.path.name}"


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".png"):
        return "figure"
    if any(name.endswith(s) for s in _TABLE_SUFFIXES):
        return "table"
    if name.endswith((".fits", ".fit")) and not any(name.endswith(s) for s in _SKIP_PARTS):
        return "image"
    return None


def list_products(directory: str | os.PathLike[str], include_maps: bool = False) -> list[Product]:
    """Images, tables and figures in ``directory`` (not recursive), sorted by name.

    ``include_maps`` also lists PSF, dirty, model and BANE background/noise maps.
    """
    d = Path(directory).expanduser()
    if not d.is_dir():
        raise FlintInputError(f"{d}: not a folder; give the run's output folder (out_dir)")
    out: list[Product] = []
    for p in sorted(d.iterdir()):
        if not p.is_file():
            continue
        kind = _kind(p)
        if kind is None and include_maps and p.name.lower().endswith(".fits"):
            kind = "image"
        if kind is None:
            continue
        try:
            parts = parse_name(p)
            beam, rnd = parts.beam, parts.round
        except Exception:  # not a flint product name: still listed
            beam = rnd = None
        out.append(Product(p, kind, beam, rnd))
    return out


def render_image_png(path: str | os.PathLike[str], percentile: float = 99.5, size_in: float = 6.0) -> bytes:
    """A PNG of a FITS image: WCS axes, asinh stretch between robust percentiles, colour bar."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import numpy as np
    from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval
    from matplotlib.figure import Figure

    from flint.images import read_image

    image = read_image(path)
    data = np.asarray(image.data, dtype=float)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        raise FlintInputError(f"{path}: the image has no finite pixels")
    norm = ImageNormalize(finite, interval=PercentileInterval(percentile), stretch=AsinhStretch(0.05))
    fig = Figure(figsize=(size_in, size_in * 0.85))
    ax = fig.add_subplot(projection=image.wcs)
    im = ax.imshow(data, origin="lower", cmap="inferno", norm=norm)
    ax.set_xlabel("Right ascension")
    ax.set_ylabel("Declination")
    ax.set_title(Path(path).name, fontsize=9)
    fig.colorbar(im, ax=ax, label=image.unit or "value")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def read_table(path: str | os.PathLike[str]) -> Any:
    """An astropy Table from a CSV / FITS / VOTable catalogue."""
    from astropy.table import Table

    p = Path(path)
    if not p.is_file():
        raise FlintInputError(f"{p}: catalogue not found")
    if p.suffix.lower() == ".csv":
        return Table.read(p, format="ascii.csv")
    return Table.read(p)


def sort_table(table: Any, column: str, descending: bool = False) -> Any:
    """A copy of ``table`` sorted by ``column``."""
    if column not in table.colnames:
        raise FlintInputError(f"no column {column!r}; the catalogue has {', '.join(table.colnames)}")
    out = table.copy()
    out.sort(column, reverse=descending)
    return out


def table_html(table: Any, max_rows: int = 200) -> str:
    """An HTML table of the first ``max_rows`` rows."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.colnames)
    rows = []
    for row in table[:max_rows]:
        cells = []
        for c in table.colnames:
            v = row[c]
            text = f"{v:.5g}" if isinstance(v, float) or getattr(v, "dtype", None) is not None and getattr(v.dtype, "kind", "") == "f" else str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p><i>{len(table) - max_rows} more rows</i></p>" if len(table) > max_rows else ""
    return (
        "<div style='max-height:360px;overflow:auto'><table class='flint-table' style='font-size:11px'>"
        f"<tr>{head}</tr>{''.join(rows)}</table></div>{more}"
    )


class ResultsBrowser:
    """List a run's products and show the chosen one.

    Parameters
    ----------
    directory
        The run's output folder (may be set later in the widget).
    """

    def __init__(self, directory: str | os.PathLike[str] = "") -> None:
        import ipywidgets as w

        self.errors = ErrorArea()
        self.products: list[Product] = []
        self.table: Any = None
        self.directory = w.Text(value=os.fspath(directory), description="folder", layout=w.Layout(width="60%"))
        self.refresh_button = w.Button(description="List products", icon="refresh")
        self.choice = w.Select(options=[], rows=8, layout=w.Layout(width="95%"))
        self.choice.add_class("flint-products")
        self.summary = w.HTML()
        self.image = w.Image(format="png", layout=w.Layout(max_width="720px"))
        self.sort_by = w.Dropdown(options=[], description="sort by")
        self.descending = w.Checkbox(value=True, description="descending", indent=False)
        self.table_view = w.HTML()
        self._table_controls = w.HBox([self.sort_by, self.descending])
        self.refresh_button.on_click(guarded(self.errors, "list products")(lambda _b: self.refresh()))
        self.choice.observe(guarded(self.errors, "show product")(lambda c: self.show(c["new"])), names="value")
        for control in (self.sort_by, self.descending):
            control.observe(guarded(self.errors, "sort")(lambda _c: self._show_table()), names="value")
        self.widget = w.VBox(
            [
                w.HTML("<b>Results</b>"),
                w.HBox([self.directory, self.refresh_button]),
                self.choice,
                self.summary,
                self.image,
                self._table_controls,
                self.table_view,
                self.errors.output,
            ]
        )
        self.widget.add_class("flint-results")
        self._show_kind(None)
        if self.directory.value and not Path(self.directory.value).expanduser().exists():
            # a run's folder before the run: nothing to list yet, and nothing wrong
            self.summary.value = message_html(f"no products yet ({self.directory.value} is made by the run)", ok=True)
        elif self.directory.value:
            guarded(self.errors, "list products")(self.refresh)()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _show_kind(self, kind: str | None) -> None:
        self.image.layout.display = "" if kind in ("image", "figure") else "none"
        self._table_controls.layout.display = "" if kind == "table" else "none"
        self.table_view.layout.display = "" if kind == "table" else "none"

    def refresh(self, directory: str | os.PathLike[str] | None = None) -> list[Product]:
        """List the products of ``directory`` (default: the folder typed in the widget)."""
        if directory is not None:
            self.directory.value = os.fspath(directory)
        self.products = list_products(self.directory.value)
        self.choice.options = [(p.label, os.fspath(p.path)) for p in self.products]
        kinds = {k: sum(p.kind == k for p in self.products) for k in ("image", "table", "figure")}
        self.summary.value = message_html(
            f"{len(self.products)} products: {kinds['image']} images, {kinds['table']} tables, {kinds['figure']} figures", ok=True
        )
        return self.products

    def show(self, path: str | os.PathLike[str] | None) -> None:
        """Show one product (an image, a table or a figure)."""
        if not path:
            self._show_kind(None)
            return
        p = Path(path)
        kind = _kind(p) or "image"
        if kind == "image":
            self.image.value = render_image_png(p)
        elif kind == "figure":
            self.image.value = p.read_bytes()
        else:
            self.table = read_table(p)
            numeric = [c for c in self.table.colnames if getattr(self.table[c].dtype, "kind", "") in "fiu"]
            self.sort_by.options = self.table.colnames
            self.sort_by.value = "int_flux" if "int_flux" in self.table.colnames else (numeric[0] if numeric else self.table.colnames[0])
            self._show_table()
        self._show_kind(kind)
        self.summary.value = message_html(f"{p.name}", ok=True)

    def _show_table(self) -> None:
        if self.table is None or not self.sort_by.value:
            return
        self.table_view.value = table_html(sort_table(self.table, self.sort_by.value, self.descending.value))
