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
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flint.errors import FlintInputError
from flint.naming import parse_name
from flint_widgets._common import ErrorArea, guarded, message_html, pre

__all__ = ["Product", "list_products", "render_image_png", "read_table", "sort_table", "table_html", "with_sexagesimal",
           "solution_figure_png", "n_antennas", "overlay_files", "ResultsBrowser"]

logger = logging.getLogger(__name__)

_TABLE_SUFFIXES = (".csv", ".comp.fits", ".vot", ".xml")
_LOG_SUFFIXES = (".log", ".txt")
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

    def label_in(self, root: Path) -> str:
        """The label with the path relative to the listed folder (subfolders shown)."""
        try:
            rel = self.path.relative_to(root)
        except ValueError:
            rel = Path(self.path.name)
        return f"[{self.kind}] {rel}"


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".bin"):
        return "solutions"
    if name.endswith(_LOG_SUFFIXES):
        return "log"
    if name.endswith(".png"):
        return "figure"
    if any(name.endswith(s) for s in _TABLE_SUFFIXES):
        return "table"
    if name.endswith((".fits", ".fit")) and not any(name.endswith(s) for s in _SKIP_PARTS):
        return "image"
    return None


def list_products(directory: str | os.PathLike[str], include_maps: bool = False, recursive: bool = True) -> list[Product]:
    """Images, tables, figures, solution files and logs in ``directory`` (and its subfolders), sorted by path.

    ``include_maps`` also lists PSF, dirty, model and BANE background/noise maps.
    Measurement Sets (folders) are not entered.
    """
    d = Path(directory).expanduser()
    if not d.is_dir():
        raise FlintInputError(f"{d}: not a folder; give the run's output folder (out_dir)")
    out: list[Product] = []
    files = (p for p in d.rglob("*") if not any(part.endswith(".ms") for part in p.relative_to(d).parts[:-1])) if recursive else d.iterdir()
    for p in sorted(files):
        if not p.is_file() or p.name.startswith("."):
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


#: columns in degrees that are shown as sexagesimal too
_RA_DEC = (("ra", "dec"), ("ra_deg", "dec_deg"), ("ref_ra_deg", "ref_dec_deg"), ("cat_ra_deg", "cat_dec_deg"), ("RA", "DEC"))
#: units of flint's own catalogue columns when the file does not carry them (aegean CSV, matches)
_KNOWN_UNITS = {
    "ra": "deg", "dec": "deg", "err_ra": "deg", "err_dec": "deg", "peak_flux": "Jy/beam", "err_peak_flux": "Jy/beam",
    "int_flux": "Jy", "err_int_flux": "Jy", "local_rms": "Jy/beam", "background": "Jy/beam", "a": "arcsec", "b": "arcsec",
    "pa": "deg", "ref_ra_deg": "deg", "ref_dec_deg": "deg", "cat_ra_deg": "deg", "cat_dec_deg": "deg", "ref_flux_jy": "Jy",
    "ref_apparent_flux_jy": "Jy", "local_rms_jy": "Jy/beam", "cat_flux_jy": "Jy", "sep_arcsec": "arcsec",
    "dra_arcsec": "arcsec", "ddec_arcsec": "arcsec",
}


def with_sexagesimal(table: Any) -> Any:
    """A copy with ``<ra>_hms`` / ``<dec>_dms`` text columns beside each pair of degree columns, and units filled in."""
    from astropy.coordinates import SkyCoord

    out = table.copy()
    for name in out.colnames:
        if getattr(out[name], "unit", None) is None and name in _KNOWN_UNITS:
            out[name].unit = _KNOWN_UNITS[name]
    for ra, dec in _RA_DEC:
        if ra in out.colnames and dec in out.colnames and getattr(out[ra].dtype, "kind", "") == "f":
            import numpy as np

            r, d = np.asarray(out[ra], dtype=float), np.asarray(out[dec], dtype=float)
            ok = np.isfinite(r) & np.isfinite(d)
            hms = np.full(len(r), "", dtype=object)
            dms = np.full(len(r), "", dtype=object)
            if ok.any():
                c = SkyCoord(r[ok], d[ok], unit="deg")
                hms[ok] = c.ra.to_string(unit="hourangle", sep=":", precision=2, pad=True)
                dms[ok] = c.dec.to_string(sep=":", precision=1, alwayssign=True, pad=True)
            at = out.colnames.index(dec) + 1
            out.add_column([str(v) for v in hms], name=f"{ra}_hms", index=at)
            out.add_column([str(v) for v in dms], name=f"{dec}_dms", index=at + 1)
    return out


def table_html(table: Any, max_rows: int = 200) -> str:
    """An HTML table of the first ``max_rows`` rows: units under the column names, RA/Dec also sexagesimal."""
    table = with_sexagesimal(table)

    def head_of(c: str) -> str:
        unit = getattr(table[c], "unit", None)
        return f"<th>{html.escape(c)}" + (f"<br><small>[{html.escape(str(unit))}]</small>" if unit is not None else "") + "</th>"

    head = "".join(head_of(c) for c in table.colnames)
    rows = []
    for row in table[:max_rows]:
        cells = []
        for c in table.colnames:
            v = row[c]
            if getattr(getattr(v, "dtype", None), "kind", "") == "f" or isinstance(v, float):
                # positions in degrees keep 0.1 arcsec; everything else 5 significant digits
                text = f"{float(v):.6f}" if str(getattr(table[c], "unit", "")) == "deg" and c != "pa" else f"{float(v):.5g}"
            else:
                text = str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p><i>{len(table) - max_rows} more rows</i></p>" if len(table) > max_rows else ""
    return (
        "<div style='max-height:360px;overflow:auto'><table class='flint-table' style='font-size:11px'>"
        f"<tr>{head}</tr>{''.join(rows)}</table></div>{more}"
    )


def solution_figure_png(path: str | os.PathLike[str], antenna: int) -> bytes:
    """Amplitude and phase against channel of one antenna's solutions (XX, YY), readable at full width."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import numpy as np
    from matplotlib.figure import Figure

    from flint.calibrate.aocal import read_solutions

    sol = read_solutions(path)
    jones = np.asarray(sol.jones)  # (interval, antenna, channel, 2, 2)
    if not 0 <= antenna < jones.shape[1]:
        raise FlintInputError(f"{path}: antenna {antenna} not in 0..{jones.shape[1] - 1}")
    fig = Figure(figsize=(9, 4.5))
    amp_ax, ph_ax = fig.subplots(2, 1, sharex=True)
    chans = np.arange(jones.shape[2])
    for k, (pol, colour) in enumerate((("XX", "#1565c0"), ("YY", "#c62828"))):
        g = jones[:, antenna, :, k, k]
        for t in range(g.shape[0]):
            amp_ax.plot(chans, np.abs(g[t]), ".-", color=colour, ms=3, lw=0.8, label=pol if t == 0 else None)
            ph_ax.plot(chans, np.degrees(np.angle(g[t])), ".-", color=colour, ms=3, lw=0.8)
    amp_ax.set_ylabel("|gain|")
    ph_ax.set_ylabel("phase (deg)")
    ph_ax.set_xlabel("channel")
    amp_ax.legend(loc="upper right", fontsize=8)
    amp_ax.set_title(f"{Path(path).name}: antenna {antenna} ({jones.shape[0]} interval(s))", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def n_antennas(path: str | os.PathLike[str]) -> int:
    """Number of antennas in an AO solution file."""
    from flint.calibrate.aocal import read_solutions

    return int(read_solutions(path).jones.shape[1])


def overlay_files(image: Path) -> tuple[Path | None, Path | None]:
    """The catalogue beside an image (``<stem>.comp.csv``) and the validation matches table of its folder."""
    stem = image.name.removesuffix(".fits")
    cat = image.parent / f"{stem}.comp.csv"
    matches = sorted(image.parent.glob("*.matches.csv"))
    own = [m for m in matches if m.name.startswith(stem)]
    return (cat if cat.exists() else None), (own[0] if own else (matches[0] if len(matches) == 1 else None))


def _all_files(root: Path) -> tuple[str, ...]:
    """Every file under ``root`` (sorted paths), products or not: what a listing is compared with."""
    if not root.is_dir():
        return ()
    return tuple(sorted(os.fspath(p) for p in root.rglob("*") if p.is_file()))


class ResultsBrowser:
    """List a run's products (subfolders too) and show the chosen one.

    Images open in the interactive :class:`~flint_widgets.viewer.ImageViewer` with their
    catalogue overlaid; tables get units and sexagesimal RA/Dec; solution files a plot per
    antenna; logs their last lines. :meth:`follow` ties it to a launcher's ``out_dir``.

    Parameters
    ----------
    directory
        The run's output folder (may be set later in the widget).
    """

    def __init__(self, directory: str | os.PathLike[str] = "") -> None:
        import ipywidgets as w

        from flint_widgets.thumbnails import ThumbnailGrid
        from flint_widgets.viewer import ImageViewer

        self.errors = ErrorArea()
        self.products: list[Product] = []
        self.table: Any = None
        self._watch: threading.Thread | None = None
        self._stop = threading.Event()
        self._files: tuple[str, ...] = ()  # every file under the folder at the last listing (products or not)
        self._lock = threading.RLock()  # the follow thread and the kernel's thread both list
        self.directory = w.Text(value=os.fspath(directory), description="folder", layout=w.Layout(width="60%"))
        self.refresh_button = w.Button(description="List products", icon="refresh")
        self.choice = w.Select(options=[], rows=10, layout=w.Layout(width="95%"))
        self.choice.add_class("flint-products")
        self.listing = w.HTML()  # what the folder holds; the product shown is described in ``summary``
        self.listing.add_class("flint-results-listing")
        self.summary = w.HTML()
        self.summary.add_class("flint-results-summary")
        self.viewer = ImageViewer()
        self.thumbnails = ThumbnailGrid(on_open=lambda path: self._open_from_grid(path))
        self.image = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.image.add_class("flint-solution-figure")
        self.antenna = w.Dropdown(options=[], description="antenna")
        self.antenna.add_class("flint-antenna")
        self.sort_by = w.Dropdown(options=[], description="sort by")
        self.descending = w.Checkbox(value=True, description="descending", indent=False)
        self.table_view = w.HTML()
        self.text_view = w.HTML()
        self._table_controls = w.HBox([self.sort_by, self.descending])
        self._solution_path: Path | None = None
        self.refresh_button.on_click(guarded(self.errors, "list products")(lambda _b: self.refresh()))
        self.choice.observe(guarded(self.errors, "show product")(lambda c: self.show(c["new"])), names="value")
        self.antenna.observe(guarded(self.errors, "antenna")(lambda _c: self._show_solutions()), names="value")
        for control in (self.sort_by, self.descending):
            control.observe(guarded(self.errors, "sort")(lambda _c: self._show_table()), names="value")
        self.widget = w.VBox(
            [
                w.HTML("<b>Results</b>"),
                w.HBox([self.directory, self.refresh_button]),
                self.choice,
                self.listing,
                self.summary,
                self.thumbnails.widget,
                self.viewer.widget,
                self.antenna,
                self.image,
                self._table_controls,
                self.table_view,
                self.text_view,
                self.errors.output,
            ]
        )
        self.widget.add_class("flint-results")
        self._show_kind(None)
        if self.directory.value and not Path(self.directory.value).expanduser().exists():
            # a run's folder before the run: nothing to list yet, and nothing wrong
            self.listing.value = message_html(f"no products yet ({self.directory.value} is made by the run)", ok=True)
        elif self.directory.value:
            guarded(self.errors, "list products")(self.refresh)()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _show_kind(self, kind: str | None) -> None:
        self.viewer.widget.layout.display = "" if kind == "image" else "none"
        self.image.layout.display = "" if kind in ("figure", "solutions") else "none"
        self.antenna.layout.display = "" if kind == "solutions" else "none"
        self._table_controls.layout.display = "" if kind == "table" else "none"
        self.table_view.layout.display = "" if kind == "table" else "none"
        self.text_view.layout.display = "" if kind == "log" else "none"

    def refresh(self, directory: str | os.PathLike[str] | None = None) -> list[Product]:
        """List the products of ``directory`` (default: the folder typed in the widget) and its subfolders."""
        with self._lock:
            if directory is not None:
                self.directory.value = os.fspath(directory)
            root = Path(self.directory.value).expanduser()
            self._files = _all_files(root)
            self.products = list_products(root)
            current = self.choice.value
            options = [(p.label_in(root), os.fspath(p.path)) for p in self.products]
            if options != list(self.choice.options):
                self.choice.options = options
                if current in [v for _, v in options]:
                    self.choice.value = current
            guarded(self.errors, "thumbnails")(self.thumbnails.update)(p.path for p in self.products if p.kind == "image")
            kinds = {k: sum(p.kind == k for p in self.products) for k in ("image", "table", "figure", "solutions", "log")}
            cancelled = (root / "FLINT_RUN_CANCELLED.txt").exists()
            self.listing.value = message_html(
                ("THIS RUN WAS CANCELLED: its products are incomplete · " if cancelled else "")
                + f"{len(self.products)} products: {kinds['image']} images, {kinds['table']} tables, {kinds['figure']} figures, "
                f"{kinds['solutions']} solution files, {kinds['log']} logs", ok=not cancelled,
            )
            return self.products

    def changed(self, directory: str | os.PathLike[str]) -> bool:
        """Whether ``directory`` is not the folder listed, or its files (products or not) changed since the listing."""
        d = os.fspath(directory)
        return d != self.directory.value or _all_files(Path(d).expanduser()) != self._files

    def follow(self, launcher: Any, interval: float = 3.0) -> None:
        """List the products of ``launcher``'s ``out_dir``, updating while files appear (every ``interval`` s).

        The folder is listed again only when its files change: the product on show and its
        description stay as they are while a run writes nothing.
        """

        def folder() -> str:
            box = launcher.params.get("out_dir")
            return str(box.value).strip() if box is not None else ""

        def loop() -> None:
            while not self._stop.wait(interval):
                d = folder()
                if not d or not Path(d).expanduser().is_dir():
                    continue
                try:
                    if self.changed(d):
                        self.refresh(d)
                except Exception as exc:  # shown once; watching goes on
                    if self.errors.last_error is None or str(exc) != str(self.errors.last_error):
                        self.errors.show(exc, "follow")

        launcher.on_complete(lambda _l: self.refresh(folder()))
        self._stop.clear()
        self._watch = threading.Thread(target=loop, name="flint-results-follow", daemon=True)
        self._watch.start()

    def close(self) -> None:
        """Stop following."""
        self._stop.set()

    def show(self, path: str | os.PathLike[str] | None) -> None:
        """Show one product (image, table, figure, solution file or log)."""
        with self._lock:
            self._show(path)

    def _show(self, path: str | os.PathLike[str] | None) -> None:
        if not path:
            self._show_kind(None)
            return
        p = Path(path)
        kind = _kind(p) or "image"
        note = p.name
        self._show_kind(kind)  # visible before drawing: plots drawn while hidden have no size
        if kind == "image":
            self.viewer.load(p)
            cat, matches = overlay_files(p)
            if cat is not None:
                counts = self.viewer.overlay(cat, matches)
                note += f" · overlay {cat.name}" + (f" and {matches.name}" if matches else "") + f" ({counts['matched'] + counts['spurious']} components)"
        elif kind == "figure":
            self.image.value = p.read_bytes()
        elif kind == "solutions":
            self._solution_path = p
            n = n_antennas(p)
            self.antenna.options = [(f"{a}", a) for a in range(n)]
            self.antenna.value = 0
            self._show_solutions()
            note += f" · antenna 0 of {n} (0..{n - 1}): choose another below"
        elif kind == "log":
            lines = p.read_text(errors="replace").splitlines()
            self.text_view.value = pre("\n".join(lines[-200:]), "400px")
        else:
            self.table = read_table(p)
            numeric = [c for c in self.table.colnames if getattr(self.table[c].dtype, "kind", "") in "fiu"]
            self.sort_by.options = self.table.colnames
            self.sort_by.value = "int_flux" if "int_flux" in self.table.colnames else (numeric[0] if numeric else self.table.colnames[0])
            self._show_table()
        self._show_kind(kind)
        self.summary.value = message_html(note, ok=True)

    def _open_from_grid(self, path: Path) -> None:
        """A thumbnail was clicked: choose its product (the viewer shows it)."""
        value = os.fspath(path)
        if value == self.choice.value:
            self.show(value)
        else:
            self.choice.value = value  # observed: shows it

    def _show_solutions(self) -> None:
        if self._solution_path is not None and self.antenna.value is not None:
            self.image.value = solution_figure_png(self._solution_path, int(self.antenna.value))
            n = len(self.antenna.options)
            self.summary.value = message_html(f"{self._solution_path.name} · antenna {self.antenna.value} of {n} (0..{n - 1})", ok=True)

    def _show_table(self) -> None:
        if self.table is None or not self.sort_by.value:
            return
        self.table_view.value = table_html(sort_table(self.table, self.sort_by.value, self.descending.value))
