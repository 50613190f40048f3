"""Image cubes, one plane at a time: axes, the per-channel ``BEAMS`` table, streaming I/O.

ASKAP and CASA image cubes are FITS images with the two celestial axes first (FITS
``NAXIS1``/``NAXIS2``) and any of ``FREQ``, ``STOKES`` (and, for holography primary-beam
cubes, ``BEAM``) after them, in either order, some of length one. Their restoring beam
can change with channel: it is then held in a ``BEAMS`` binary-table extension (one row
per channel and polarisation: ``BMAJ``/``BMIN`` in arcsec, ``BPA`` in deg, ``CHAN``,
``POL``; ``NCHAN``/``NPOL`` keywords) announced by ``CASAMBM = T`` in the primary header.

* :func:`read_cube_info` reads the header and the ``BEAMS`` table (never the pixels) into
  a :class:`CubeInfo`.
* :class:`CubeReader` reads one celestial plane per call (``astropy.io.fits`` section
  reads: only that plane's bytes).
* :class:`CubeWriter` writes a cube plane by plane into a pre-sized file, then the
  ``BEAMS`` table, under a temporary name renamed into place on success; at no time does
  it hold more than one plane.
* :func:`assemble_cube` streams single-plane images (e.g. WSClean's per-channel
  ``-NNNN-image.fits``) into one cube with a ``BEAMS`` table.

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> from astropy.io import fits
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> h = fits.Header({"NAXIS": 3, "NAXIS1": 4, "NAXIS2": 4, "NAXIS3": 2, "CTYPE1": "RA---SIN",
...                  "CTYPE2": "DEC--SIN", "CTYPE3": "FREQ", "CRVAL3": 1e9, "CDELT3": 1e6,
...                  "CRPIX3": 1.0, "BUNIT": "JY/BEAM"})
>>> beams = BeamTable.uniform(2, 1, (20.0, 10.0, 0.0))
>>> with CubeWriter(d / "c.fits", h, beams=beams) as w:
...     for c in range(2):
...         w.write_plane(np.full((4, 4), c), chan=c)
>>> info = read_cube_info(d / "c.fits")
>>> info.nchan, float(info.freqs_hz[1]), info.beams.as_tuple(1)
(2, 1001000000.0, (20.0, 10.0, 0.0))
>>> with CubeReader(d / "c.fits") as r:
...     float(r.plane(chan=1)[0, 0])
1.0
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from flint.errors import FlintImageError
from flint.io import atomic_path

if TYPE_CHECKING:
    from astropy.io.fits import BinTableHDU, Header
    from astropy.wcs import WCS
    from radio_beam import Beam

__all__ = [
    "BeamTable",
    "CubeAxes",
    "CubeInfo",
    "CubeReader",
    "CubeWriter",
    "read_cube_info",
    "parse_axes",
    "cube_header",
    "assemble_cube",
    "is_cube_file",
    "make_beam",
    "beam_tuple",
    "STOKES_NAMES",
    "BEAM_FLAG_HINT",
]

logger = logging.getLogger(__name__)

#: FITS Stokes codes -> names
STOKES_NAMES = {1: "I", 2: "Q", 3: "U", 4: "V", -1: "RR", -2: "LL", -3: "RL", -4: "LR", -5: "XX", -6: "YY", -7: "XY", -8: "YX"}
_SPECTRAL = ("FREQ", "VRAD", "VOPT", "VELO", "FELO", "WAVE")
#: how a user supplies a restoring beam an image lacks
BEAM_FLAG_HINT = "set it with flint convol --input-beam BMAJ BMIN BPA (arcsec, arcsec, deg)"


def _axis_name(ctype: str) -> str:
    name = ctype.strip().upper()
    head = name.split("-")[0]
    if head in _SPECTRAL:
        return "FREQ"
    return head or name


@dataclass(frozen=True)
class CubeAxes:
    """The non-celestial axes of a FITS image, outermost first (numpy order).

    The celestial axes are always the last two numpy axes (``ny``, ``nx``).
    """

    names: tuple[str, ...]
    """Normalised axis names (``FREQ`` for any spectral axis, ``STOKES``, ``BEAM``, ...)."""
    lengths: tuple[int, ...]
    """Length of each of those axes."""
    ny: int
    """Pixels along the second celestial (FITS ``NAXIS2``) axis."""
    nx: int
    """Pixels along the first celestial (FITS ``NAXIS1``) axis."""

    @property
    def shape(self) -> tuple[int, ...]:
        """The numpy shape of the data."""
        return (*self.lengths, self.ny, self.nx)

    def length(self, name: str) -> int:
        """Length of axis ``name`` (1 when the image has no such axis)."""
        return self.lengths[self.names.index(name)] if name in self.names else 1

    def index(self, where: str = "image", **at: int) -> tuple[int | slice, ...]:
        """Numpy index of one celestial plane: ``at`` maps axis names (``FREQ=3``) to positions.

        Axes not named must have length one.
        """
        idx: list[int | slice] = []
        for name, n in zip(self.names, self.lengths, strict=True):
            k = at.get(name, 0)
            if name not in at and n != 1:
                raise FlintImageError(f"{where}: axis {name} has {n} planes; say which one")
            if not 0 <= k < n:
                raise FlintImageError(f"{where}: {name} index {k} outside 0..{n - 1}")
            idx.append(int(k))
        return (*idx, slice(None), slice(None))

    def plane_offset(self, **at: int) -> int:
        """Position (in planes) of one celestial plane in the file's data block."""
        idx = self.index("image", **at)[:-2]
        if not idx:
            return 0
        return int(np.ravel_multi_index(tuple(int(i) for i in idx), self.lengths))  # type: ignore[arg-type]


def parse_axes(header: Header, where: str = "image") -> CubeAxes:
    """The axes of ``header``; the celestial ones must be FITS axes 1 and 2."""
    naxis = int(header.get("NAXIS", 0))
    if naxis < 2:
        raise FlintImageError(f"{where}: has {naxis} axes; an image needs at least 2")
    c1, c2 = (str(header.get(f"CTYPE{i}", "")).upper() for i in (1, 2))
    lon = ("RA", "GLON", "ELON", "X", "L")
    lat = ("DEC", "GLAT", "ELAT", "Y", "M")
    if not (c1.split("-")[0] in lon and c2.split("-")[0] in lat):
        raise FlintImageError(
            f"{where}: FITS axes 1 and 2 are {c1 or '?'!r}/{c2 or '?'!r}; flint needs the celestial "
            "axes first (reorder the cube, e.g. with astropy or CASA imtrans)"
        )
    names = tuple(_axis_name(str(header.get(f"CTYPE{i}", f"AXIS{i}"))) for i in range(naxis, 2, -1))
    lengths = tuple(int(header[f"NAXIS{i}"]) for i in range(naxis, 2, -1))
    big = [n for n, ln in zip(names, lengths, strict=True) if ln > 1]
    if len(set(big)) != len(big):
        raise FlintImageError(f"{where}: two axes of type {big}; cannot tell them apart")
    return CubeAxes(names=names, lengths=lengths, ny=int(header["NAXIS2"]), nx=int(header["NAXIS1"]))


def is_cube_file(path: str | os.PathLike[str]) -> bool:
    """Whether a FITS image has more than one plane on its non-celestial axes.

    Unreadable or missing files answer ``False`` (the single-plane readers report them).
    """
    from flint.images import read_header

    try:
        header = read_header(path)
    except FlintImageError:
        return False
    naxis = int(header.get("NAXIS", 0))
    return int(np.prod([int(header.get(f"NAXIS{i}", 1)) for i in range(3, naxis + 1)])) > 1


def _axis_values(header: Header, name: str) -> NDArray[np.float64] | None:
    naxis = int(header.get("NAXIS", 0))
    for i in range(3, naxis + 1):
        if _axis_name(str(header.get(f"CTYPE{i}", ""))) == name:
            n = int(header[f"NAXIS{i}"])
            crval = float(header.get(f"CRVAL{i}", 0.0))
            cdelt = float(header.get(f"CDELT{i}", 1.0))
            crpix = float(header.get(f"CRPIX{i}", 1.0))
            return np.asarray(crval + (np.arange(n) + 1 - crpix) * cdelt, dtype=np.float64)
    return None


@dataclass(frozen=True)
class BeamTable:
    """Restoring beam per channel and polarisation (arrays of shape ``(nchan, npol)``).

    A beam with a non-positive or NaN axis marks a blank (flagged) plane.
    """

    bmaj_arcsec: NDArray[np.float64]
    bmin_arcsec: NDArray[np.float64]
    bpa_deg: NDArray[np.float64]

    @property
    def nchan(self) -> int:
        return int(self.bmaj_arcsec.shape[0])

    @property
    def npol(self) -> int:
        return int(self.bmaj_arcsec.shape[1])

    @classmethod
    def uniform(cls, nchan: int, npol: int, beam: tuple[float, float, float]) -> BeamTable:
        """The same beam (BMAJ arcsec, BMIN arcsec, BPA deg) on every plane."""
        full = [np.full((nchan, npol), float(v)) for v in beam]
        return cls(full[0], full[1], full[2])

    @classmethod
    def from_beams(cls, beams: Sequence[Sequence[Beam | None]]) -> BeamTable:
        """From ``beams[chan][pol]`` (``None``: a blank plane)."""
        nchan, npol = len(beams), len(beams[0])
        arr = np.full((3, nchan, npol), np.nan)
        for c, row in enumerate(beams):
            for p, b in enumerate(row):
                if b is not None:
                    arr[:, c, p] = beam_tuple(b)
        return cls(arr[0], arr[1], arr[2])

    def valid(self, chan: int, pol: int = 0) -> bool:
        """Whether plane (chan, pol) has a usable beam."""
        a, b = self.bmaj_arcsec[chan, pol], self.bmin_arcsec[chan, pol]
        return bool(np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0)

    def as_tuple(self, chan: int, pol: int = 0) -> tuple[float, float, float]:
        """(BMAJ arcsec, BMIN arcsec, BPA deg) of one plane."""
        return (float(self.bmaj_arcsec[chan, pol]), float(self.bmin_arcsec[chan, pol]), float(self.bpa_deg[chan, pol]))

    def beam(self, chan: int, pol: int = 0) -> Beam | None:
        """The ``radio_beam.Beam`` of one plane (``None`` if blank)."""
        if not self.valid(chan, pol):
            return None
        return make_beam(*self.as_tuple(chan, pol))

    def is_uniform(self, rel: float = 1e-6) -> bool:
        """Whether every valid plane has the same beam."""
        ok = np.isfinite(self.bmaj_arcsec) & (self.bmaj_arcsec > 0)
        if not ok.any():
            return True
        return all(float(np.ptp(a[ok])) <= rel * max(1.0, float(np.abs(a[ok]).max())) for a in (self.bmaj_arcsec, self.bmin_arcsec, self.bpa_deg))

    def to_hdu(self) -> BinTableHDU:
        """The CASA/ASKAP ``BEAMS`` binary-table extension."""
        from astropy.io import fits

        chan, pol = np.meshgrid(np.arange(self.nchan), np.arange(self.npol), indexing="ij")
        cols = [
            fits.Column(name="BMAJ", format="1E", unit="arcsec", array=self.bmaj_arcsec.ravel()),
            fits.Column(name="BMIN", format="1E", unit="arcsec", array=self.bmin_arcsec.ravel()),
            fits.Column(name="BPA", format="1E", unit="deg", array=self.bpa_deg.ravel()),
            fits.Column(name="CHAN", format="1J", array=chan.ravel()),
            fits.Column(name="POL", format="1J", array=pol.ravel()),
        ]
        hdu = fits.BinTableHDU.from_columns(cols, name="BEAMS")
        hdu.header["EXTVER"] = 1
        hdu.header["NCHAN"] = (self.nchan, "number of channels")
        hdu.header["NPOL"] = (self.npol, "number of polarisations")
        return hdu

    @classmethod
    def from_hdu(cls, hdu: Any, nchan: int, npol: int, where: str = "image") -> BeamTable:
        """Read a ``BEAMS`` extension (units arcsec/deg, or deg/rad when TUNITs say so)."""
        data = hdu.data
        names = {n.upper() for n in data.columns.names}
        missing = {"BMAJ", "BMIN", "BPA", "CHAN", "POL"} - names
        if missing:
            raise FlintImageError(f"{where}: BEAMS table lacks columns {sorted(missing)}")
        units = {data.columns[n].name.upper(): str(data.columns[n].unit or "").lower() for n in data.columns.names}
        scale = {"arcsec": 1.0, "deg": 3600.0, "rad": np.degrees(1.0) * 3600.0, "": 1.0}
        ang = {"deg": 1.0, "rad": np.degrees(1.0), "": 1.0}
        out = np.full((3, nchan, npol), np.nan)
        chans = np.asarray(data["CHAN"], dtype=int)
        pols = np.asarray(data["POL"], dtype=int)
        if chans.size and (chans.max() >= nchan or pols.max() >= npol or chans.min() < 0 or pols.min() < 0):
            raise FlintImageError(
                f"{where}: BEAMS table has CHAN up to {chans.max()} / POL up to {pols.max()} but the cube has "
                f"{nchan} channel(s) x {npol} polarisation(s)"
            )
        out[0, chans, pols] = np.asarray(data["BMAJ"], dtype=float) * scale.get(units["BMAJ"], 1.0)
        out[1, chans, pols] = np.asarray(data["BMIN"], dtype=float) * scale.get(units["BMIN"], 1.0)
        out[2, chans, pols] = np.asarray(data["BPA"], dtype=float) * ang.get(units["BPA"], 1.0)
        return cls(out[0], out[1], out[2])


def make_beam(bmaj_arcsec: float, bmin_arcsec: float, bpa_deg: float) -> Beam:
    """A ``radio_beam.Beam`` from (arcsec, arcsec, deg)."""
    import astropy.units as u
    from radio_beam import Beam

    return Beam(major=bmaj_arcsec * u.arcsec, minor=bmin_arcsec * u.arcsec, pa=bpa_deg * u.deg)


def beam_tuple(beam: Beam) -> tuple[float, float, float]:
    """(BMAJ arcsec, BMIN arcsec, BPA deg) of a ``radio_beam.Beam``."""
    return (float(beam.major.to_value("arcsec")), float(beam.minor.to_value("arcsec")), float(beam.pa.to_value("deg")))


@dataclass(frozen=True)
class CubeInfo:
    """Everything about a FITS image cube except its pixels."""

    path: Path
    header: Header
    """The primary header."""
    axes: CubeAxes
    freqs_hz: NDArray[np.float64]
    """Frequency of each channel (Hz; NaN when unknown)."""
    stokes: tuple[int, ...]
    """FITS Stokes code of each polarisation plane (1 = I, 2 = Q, 3 = U, 4 = V)."""
    beams: BeamTable | None
    """Restoring beam per plane (from ``BEAMS`` or the BMAJ/BMIN keywords); ``None``: none."""
    beams_from_table: bool = False
    """Whether :attr:`beams` came from a ``BEAMS`` table."""
    _wcs: list[Any] = field(default_factory=list, repr=False, compare=False)

    @property
    def nchan(self) -> int:
        return self.axes.length("FREQ")

    @property
    def npol(self) -> int:
        return self.axes.length("STOKES")

    @property
    def nplanes(self) -> int:
        return int(np.prod(self.axes.lengths)) if self.axes.lengths else 1

    @property
    def is_cube(self) -> bool:
        """More than one celestial plane."""
        return self.nplanes > 1

    @property
    def wcs(self) -> WCS:
        """The celestial WCS."""
        if not self._wcs:
            from astropy.wcs import WCS as _WCS
            from astropy.wcs import FITSFixedWarning

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                self._wcs.append(_WCS(self.header).celestial)
        return self._wcs[0]

    @property
    def unit(self) -> str:
        return str(self.header.get("BUNIT", "")).strip().upper().replace(" ", "")

    def pol_index(self, code: int) -> int | None:
        """Position of Stokes ``code`` among the planes (``None`` if absent)."""
        return self.stokes.index(code) if code in self.stokes else None

    def require_beams(self) -> BeamTable:
        """The beams, or a one-line error naming the file and the fix."""
        if self.beams is None:
            raise FlintImageError(f"{self.path}: no restoring beam (no BEAMS table and no BMAJ/BMIN keywords); {BEAM_FLAG_HINT}")
        return self.beams


def read_cube_info(path: str | os.PathLike[str]) -> CubeInfo:
    """Header, axes, frequencies, Stokes codes and beams of a FITS image (no pixels read)."""
    from astropy.io import fits

    path = Path(path)
    if not path.exists():
        raise FlintImageError(f"{path}: no such FITS image; check the path")
    if path.is_dir():
        raise FlintImageError(f"{path}: is a directory, not a FITS image")
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            header = hdul[0].header.copy()
            axes = parse_axes(header, str(path))
            nchan, npol = axes.length("FREQ"), axes.length("STOKES")
            table = None
            for hdu in hdul[1:]:
                if str(hdu.header.get("EXTNAME", "")).upper() == "BEAMS":
                    table = BeamTable.from_hdu(hdu, nchan, npol, str(path))
                    break
    except (OSError, ValueError, TypeError) as exc:
        raise FlintImageError(f"{path}: not a readable FITS file ({exc})") from None
    freqs = _axis_values(header, "FREQ")
    if freqs is None:
        from flint.images import image_frequency_hz

        f0 = image_frequency_hz(header)
        freqs = np.array([np.nan if f0 is None else f0])
    stokes_vals = _axis_values(header, "STOKES")
    stokes = tuple(int(round(s)) for s in stokes_vals) if stokes_vals is not None else (1,)
    beams = table
    if beams is None and "BMAJ" in header and "BMIN" in header:
        beams = BeamTable.uniform(nchan, npol, (float(header["BMAJ"]) * 3600, float(header["BMIN"]) * 3600, float(header.get("BPA", 0.0))))
    return CubeInfo(path=path, header=header, axes=axes, freqs_hz=freqs, stokes=stokes, beams=beams, beams_from_table=table is not None)


class CubeReader:
    """Read celestial planes of a FITS cube, one at a time (only that plane's bytes).

    Use as a context manager; :meth:`plane` returns float64 with NaN for blank pixels.
    """

    def __init__(self, path: str | os.PathLike[str], info: CubeInfo | None = None) -> None:
        self.info = info or read_cube_info(path)
        self.path = self.info.path
        self._hdul: Any = None

    def __enter__(self) -> CubeReader:
        from astropy.io import fits

        self._hdul = fits.open(self.path, memmap=False, lazy_load_hdus=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hdul is not None:
            self._hdul.close()
            self._hdul = None

    def _located(self, chan: int, pol: int, **other: int) -> tuple[Any, tuple[int | slice, ...]]:
        """The open HDU's section and the index of the plane at ``chan``, ``pol`` (and e.g. ``BEAM=k``)."""
        if self._hdul is None:
            raise RuntimeError("CubeReader used outside its 'with' block")
        at = {k: v for k, v in {"FREQ": chan, "STOKES": pol, **other}.items() if k in self.info.axes.names}
        return self._hdul[0].section, self.info.axes.index(str(self.path), **at)

    def plane(self, chan: int = 0, pol: int = 0, **other: int) -> NDArray[np.float64]:
        """The (ny, nx) plane at channel ``chan``, polarisation ``pol`` (and e.g. ``BEAM=k``)."""
        section, idx = self._located(chan, pol, **other)
        return np.asarray(section[idx], dtype=np.float64)

    def rows(self, y0: int, y1: int, chan: int = 0, pol: int = 0) -> NDArray[np.float64]:
        """Rows ``[y0, y1)`` (numpy axis 0 of a plane) at channel ``chan``, polarisation ``pol``: a strip of a plane."""
        section, idx = self._located(chan, pol)
        return np.asarray(section[(*idx[:-2], slice(y0, y1), slice(None))], dtype=np.float64)

    def planes(self) -> Iterator[tuple[int, int, NDArray[np.float64]]]:
        """Every (chan, pol, plane), channel-major."""
        for c in range(self.info.nchan):
            for p in range(self.info.npol):
                yield c, p, self.plane(c, p)


def cube_header(celestial: Header, ny: int, nx: int, template: Header) -> Header:
    """A cube header: the (ny, nx) celestial grid of ``celestial``, the other axes and keywords of ``template``."""
    from astropy.io import fits

    out = fits.Header()
    naxis = int(template["NAXIS"])
    out["NAXIS"] = naxis
    for key, val in celestial.items():
        if key in ("COMMENT", "HISTORY", ""):
            continue
        if key.startswith(("NAXIS", "WCSAXES")):
            continue
        out[key] = val
    for i in range(1, naxis + 1):
        out[f"NAXIS{i}"] = {1: nx, 2: ny}.get(i, int(template[f"NAXIS{i}"]))
        if i > 2:
            for base in ("CTYPE", "CRVAL", "CDELT", "CRPIX", "CUNIT"):
                if f"{base}{i}" in template:
                    out[f"{base}{i}"] = template[f"{base}{i}"]
    for key in ("BUNIT", "TELESCOP", "OBJECT", "DATE-OBS", "MJD-OBS", "EQUINOX", "RADESYS", "SPECSYS", "RESTFRQ", "BMAJ", "BMIN", "BPA"):
        if key in template and key not in out:
            out[key] = template[key]
    return out


def _data_header(header: Header, shape: tuple[int, ...]) -> Header:
    """``header`` made into a float32 primary header for ``shape`` (numpy order)."""
    from astropy.io import fits

    hdr = fits.Header()
    hdr["SIMPLE"] = True
    hdr["BITPIX"] = -32
    hdr["NAXIS"] = len(shape)
    for i, n in enumerate(reversed(shape), start=1):
        hdr[f"NAXIS{i}"] = int(n)
    hdr["EXTEND"] = True
    skip = ("SIMPLE", "BITPIX", "NAXIS", "EXTEND", "BSCALE", "BZERO", "BLANK", "END", "WCSAXES")
    for card in header.cards:
        if card.keyword in skip or card.keyword.startswith("NAXIS"):
            continue
        if card.keyword == "COMMENT":
            hdr.add_comment(card.value)
        elif card.keyword == "HISTORY":
            hdr.add_history(card.value)
        else:
            hdr[card.keyword] = (card.value, card.comment)
    return hdr


class CubeWriter:
    """Write a FITS cube plane by plane, atomically, with an optional ``BEAMS`` table.

    The file is created at full size under a temporary name; :meth:`write_plane` writes one
    plane's bytes at its place; leaving the ``with`` block without an error appends the
    ``BEAMS`` table (when given) and renames the file into place. Planes never written stay
    zero. On an error nothing is left behind.

    Parameters
    ----------
    out
        The cube to write.
    header
        Its header; ``NAXISn`` give the shape (celestial axes first, as FITS orders them).
    beams
        Per-plane restoring beams (may also be set later with :attr:`beams`).
    """

    def __init__(self, out: str | os.PathLike[str], header: Header, beams: BeamTable | None = None) -> None:
        self.out = Path(out)
        self.axes = parse_axes(header, str(out))
        self.header = _data_header(header, self.axes.shape)
        self.beams = beams
        self._stack = contextlib.ExitStack()
        self._fh: Any = None
        self._offset = 0
        self._tmp: Path | None = None

    @property
    def plane_bytes(self) -> int:
        return 4 * self.axes.ny * self.axes.nx

    def __enter__(self) -> CubeWriter:
        self.header = _with_beams_keyword(self.header, self.beams)
        self._tmp = self._stack.enter_context(atomic_path(self.out))
        head = self.header.tostring().encode("ascii")
        nbytes = int(np.prod(self.axes.shape)) * 4
        self._fh = self._stack.enter_context(open(self._tmp, "w+b"))
        self._fh.write(head)
        self._offset = len(head)
        self._fh.truncate(self._offset + _padded(nbytes))  # sparse zeros: nothing held in memory
        return self

    def write_plane(self, data: NDArray[Any], chan: int = 0, pol: int = 0, **other: int) -> None:
        """Write the (ny, nx) plane at channel ``chan`` / polarisation ``pol``."""
        arr = np.asarray(data)
        if arr.shape != (self.axes.ny, self.axes.nx):
            raise ValueError(f"{self.out}: plane of shape {arr.shape}, expected {(self.axes.ny, self.axes.nx)}")
        at = {"FREQ": chan, "STOKES": pol, **other}
        at = {k: v for k, v in at.items() if k in self.axes.names}
        k = self.axes.plane_offset(**at)
        self._fh.seek(self._offset + k * self.plane_bytes)
        self._fh.write(np.ascontiguousarray(arr, dtype=">f4").tobytes())

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                if self.beams is not None:
                    self._append_beams(self.beams)
                self._fh.flush()
                self._fh.close()
                logger.info("wrote %s", self.out)
        finally:
            self._stack.__exit__(exc_type, exc, tb)

    def _append_beams(self, beams: BeamTable) -> None:
        import io

        from astropy.io import fits

        if (beams.nchan, beams.npol) != (self.axes.length("FREQ"), self.axes.length("STOKES")):
            raise ValueError(f"{self.out}: BEAMS table is {beams.nchan}x{beams.npol}, the cube {self.axes.length('FREQ')}x{self.axes.length('STOKES')}")
        if "CASAMBM" not in self.header:
            raise ValueError(f"{self.out}: give the beams before writing starts (CASAMBM is in the primary header)")
        # the extension's bytes: an HDU list written to memory, minus its empty primary HDU
        buf = io.BytesIO()
        empty = fits.PrimaryHDU()
        fits.HDUList([empty, beams.to_hdu()]).writeto(buf)
        self._fh.seek(0, os.SEEK_END)
        self._fh.write(buf.getvalue()[len(empty.header.tostring()) :])


def _padded(n: int) -> int:
    return -(-n // 2880) * 2880


def _with_beams_keyword(header: Header, beams: BeamTable | None) -> Header:
    hdr = header.copy()
    if beams is not None:
        hdr["CASAMBM"] = (True, "multiple restoring beams in the BEAMS table")
    else:
        hdr.remove("CASAMBM", ignore_missing=True)
    return hdr


def assemble_cube(
    planes: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    rel_tol: float = 1e-6,
) -> Path:
    """Stream single-plane images (one per channel and/or Stokes) into one cube.

    Each input's FREQ and STOKES values place it; channels must be evenly spaced and
    every (channel, Stokes) present once. Each plane's restoring beam goes into the
    cube's ``BEAMS`` table. Only one plane is held at a time.

    Raises
    ------
    FlintImageError
        Missing/duplicate planes, uneven channels, different grids.
    """
    paths = [Path(p) for p in planes]
    if not paths:
        raise FlintImageError("assemble_cube: no plane images given")
    infos = [read_cube_info(p) for p in paths]
    ref = infos[0]
    for inf in infos:
        if inf.is_cube:
            raise FlintImageError(f"{inf.path}: is already a cube ({inf.axes.shape}); give single-plane images")
        if (inf.axes.ny, inf.axes.nx) != (ref.axes.ny, ref.axes.nx):
            raise FlintImageError(f"{inf.path}: {inf.axes.ny}x{inf.axes.nx} pixels, {ref.path.name} has {ref.axes.ny}x{ref.axes.nx}")
    freqs = sorted({float(i.freqs_hz[0]) for i in infos})
    stokes = sorted({i.stokes[0] for i in infos}, key=lambda s: (s < 0, abs(s)))
    if any(not np.isfinite(f) for f in freqs):
        raise FlintImageError(f"{ref.path}: no frequency in the header; cannot place it in a cube")
    if len(freqs) > 2 and np.ptp(np.diff(freqs)) > rel_tol * max(freqs):
        raise FlintImageError(f"{ref.path.parent}: the channels of the plane images are not evenly spaced; assemble contiguous channels")
    if len(infos) != len(freqs) * len(stokes):
        raise FlintImageError(f"{len(infos)} images for {len(freqs)} channels x {len(stokes)} Stokes; a plane is missing or repeated")
    template = ref.header.copy()
    naxis = 4
    template["NAXIS"] = naxis
    template["NAXIS3"], template["CTYPE3"], template["CRPIX3"], template["CRVAL3"] = len(freqs), "FREQ", 1.0, freqs[0]
    template["CDELT3"], template["CUNIT3"] = (freqs[1] - freqs[0]) if len(freqs) > 1 else float(ref.header.get("CDELT3", 1.0)), "Hz"
    template["NAXIS4"], template["CTYPE4"], template["CRPIX4"], template["CRVAL4"] = len(stokes), "STOKES", 1.0, float(stokes[0])
    template["CDELT4"] = float(stokes[1] - stokes[0]) if len(stokes) > 1 else 1.0
    if len(stokes) > 2 and len(set(np.diff(stokes))) > 1:
        raise FlintImageError(f"Stokes {stokes} are not evenly spaced codes; assemble them in separate cubes")
    for key in ("CUNIT4",):
        template.remove(key, ignore_missing=True)
    arr = np.full((3, len(freqs), len(stokes)), np.nan)
    placed: set[tuple[int, int]] = set()
    hdr = cube_header(template, ref.axes.ny, ref.axes.nx, template)
    beams_known = all(i.beams is not None for i in infos)
    for key in ("BMAJ", "BMIN", "BPA"):
        hdr.remove(key, ignore_missing=True)
    for inf in infos:
        c, p = _nearest(freqs, float(inf.freqs_hz[0])), stokes.index(inf.stokes[0])
        if (c, p) in placed:
            raise FlintImageError(f"{inf.path}: channel {c} Stokes {STOKES_NAMES.get(inf.stokes[0], inf.stokes[0])} given twice")
        placed.add((c, p))
        if inf.beams is not None:
            arr[:, c, p] = inf.beams.as_tuple(0, 0)
    table = BeamTable(arr[0], arr[1], arr[2]) if beams_known else None
    with CubeWriter(out, hdr, beams=table) as writer:
        for inf in infos:
            c, p = _nearest(freqs, float(inf.freqs_hz[0])), stokes.index(inf.stokes[0])
            with CubeReader(inf.path, inf) as reader:
                writer.write_plane(reader.plane(), chan=c, pol=p)
    return Path(out)


def _nearest(values: Sequence[float], x: float) -> int:
    return int(np.argmin(np.abs(np.asarray(values) - x)))
