"""FITS image helpers shared by the image-domain stages.

:func:`read_image` normalises a FITS file into one :class:`Image`: a 2-D celestial
plane, its WCS and header, so the numerics of convol, linmos, source finding and
validation never deal with the degenerate FREQ/STOKES axes WSClean writes.
:func:`write_like` writes a plane back with the original axes, atomically.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from flint.errors import FlintImageError
from flint.io import atomic_path

if TYPE_CHECKING:
    from astropy.io.fits import Header
    from astropy.wcs import WCS
    from radio_beam import Beam

__all__ = [
    "Image",
    "read_image",
    "read_header",
    "read_beam",
    "set_beam",
    "image_frequency_hz",
    "robust_rms",
    "write_like",
    "write_image",
    "JY_PER_BEAM",
]

logger = logging.getLogger(__name__)

#: the canonical brightness unit of restored radio images
JY_PER_BEAM = "JY/BEAM"


@dataclass(frozen=True)
class Image:
    """A 2-D image plane with its celestial WCS and the file's full header."""

    path: Path
    data: NDArray[np.float64]
    header: Header
    wcs: WCS

    @property
    def unit(self) -> str:
        """Brightness unit, normalised (``JY/BEAM``, ``JY/PIXEL``, ...)."""
        return _norm_unit(self.header.get("BUNIT", ""))

    @property
    def pixel_scale_deg(self) -> float:
        """Side of a pixel (deg), assuming square pixels."""
        from astropy.wcs.utils import proj_plane_pixel_scales

        return float(np.mean(np.abs(proj_plane_pixel_scales(self.wcs))))


def _norm_unit(unit: str) -> str:
    return str(unit).strip().upper().replace(" ", "")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FlintImageError(f"{path}: no such FITS image; check the path")
    if path.is_dir():
        raise FlintImageError(f"{path}: is a directory, not a FITS image")


def read_header(path: str | os.PathLike[str]) -> Header:
    """The primary header of a FITS image, with a clear error if unreadable."""
    from astropy.io import fits

    path = Path(path)
    _check_file(path)
    try:
        return fits.getheader(path)
    except (OSError, ValueError) as exc:
        raise FlintImageError(f"{path}: not a readable FITS file ({exc})") from None


def read_image(path: str | os.PathLike[str]) -> Image:
    """Read the celestial plane of a FITS image.

    Degenerate axes (length 1, e.g. WSClean's FREQ and STOKES) are dropped. An image
    with more than one plane on a non-celestial axis is refused.
    """
    from astropy.io import fits
    from astropy.wcs import WCS as _WCS
    from astropy.wcs import FITSFixedWarning

    path = Path(path)
    _check_file(path)
    try:
        with fits.open(path, memmap=False) as hdul:
            header = hdul[0].header.copy()
            data = hdul[0].data
    except (OSError, ValueError) as exc:
        raise FlintImageError(f"{path}: not a readable FITS file ({exc})") from None
    if data is None or data.ndim < 2:
        raise FlintImageError(f"{path}: has no image data in its primary HDU")
    extra = data.shape[:-2]
    if any(n != 1 for n in extra):
        raise FlintImageError(
            f"{path}: has {data.shape} pixels; flint's image stages take one plane "
            "(make an MFS image or split the cube first)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = _WCS(header).celestial
    if wcs.naxis != 2:
        raise FlintImageError(f"{path}: has no celestial (RA/Dec) axes in its header")
    plane = np.asarray(data.reshape(data.shape[-2:]), dtype=np.float64)
    return Image(path=path, data=plane, header=header, wcs=wcs)


def read_beam(source: str | os.PathLike[str] | Header | Image) -> Beam:
    """The restoring beam (``BMAJ``/``BMIN``/``BPA`` keywords) as a ``radio_beam.Beam``."""
    import astropy.units as u
    from radio_beam import Beam

    if isinstance(source, Image):
        header, where = source.header, str(source.path)
    elif isinstance(source, str | os.PathLike):
        header, where = read_header(source), str(source)
    else:
        header, where = source, "header"
    missing = [k for k in ("BMAJ", "BMIN") if k not in header]
    if missing and header.get("CASAMBM") and isinstance(source, Image | str | os.PathLike):
        # a single-plane CASA/ASKAP image keeps its beam in a one-row BEAMS table
        from flint.cubes import read_cube_info

        table = read_cube_info(where).beams
        beam = table.beam(0, 0) if table is not None and (table.nchan, table.npol) == (1, 1) else None
        if beam is not None:
            return beam
    if missing:
        raise FlintImageError(
            f"{where}: no restoring beam ({', '.join(missing)} keywords missing); "
            "use a restored image (e.g. WSClean's -image.fits), not a model/dirty/PSF image"
        )
    bmaj, bmin = float(header["BMAJ"]), float(header["BMIN"])
    if not (bmaj > 0 and bmin > 0):
        raise FlintImageError(f"{where}: restoring beam BMAJ={bmaj}, BMIN={bmin} is not positive")
    return Beam(major=bmaj * u.deg, minor=bmin * u.deg, pa=float(header.get("BPA", 0.0)) * u.deg)


def set_beam(header: Header, beam: Beam) -> None:
    """Write ``beam`` into the BMAJ/BMIN/BPA keywords (degrees)."""
    header["BMAJ"] = float(beam.major.to_value("deg"))
    header["BMIN"] = float(beam.minor.to_value("deg"))
    header["BPA"] = float(beam.pa.to_value("deg"))


def image_frequency_hz(header: Header) -> float | None:
    """Observing frequency (Hz): the FREQ axis, else a ``FREQ``/``RESTFRQ`` keyword."""
    naxis = int(header.get("NAXIS", 0))
    for i in range(1, naxis + 1):
        if str(header.get(f"CTYPE{i}", "")).upper().startswith("FREQ"):
            return float(header[f"CRVAL{i}"])
    for key in ("FREQ", "RESTFRQ", "RESTFREQ"):
        if key in header:
            return float(header[key])
    return None


def robust_rms(data: NDArray[Any]) -> float:
    """Noise from the median absolute deviation (x 1.4826) of finite, non-zero pixels.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(1).normal(0, 2.0, 100_000)
    >>> round(robust_rms(x), 1)
    2.0
    """
    vals = np.asarray(data, dtype=np.float64).ravel()
    vals = vals[np.isfinite(vals) & (vals != 0)]
    if vals.size == 0:
        return float("nan")
    med = np.median(vals)
    return float(1.4826 * np.median(np.abs(vals - med)))


def write_like(image: Image, data: NDArray[Any], out: str | os.PathLike[str], header: Header | None = None) -> Path:
    """Write ``data`` (2-D) with the axes of ``image``'s file, atomically."""
    hdr = (header if header is not None else image.header).copy()
    shape = tuple(int(hdr[f"NAXIS{i}"]) for i in range(int(hdr["NAXIS"]), 0, -1))
    arr = np.asarray(data, dtype=np.float32)
    if arr.shape != shape[-2:]:
        raise ValueError(f"data of shape {arr.shape} does not fit image {image.path} ({shape})")
    return write_image(out, arr.reshape(shape), hdr)


def write_image(out: str | os.PathLike[str], data: NDArray[Any], header: Header) -> Path:
    """Write a FITS image atomically (temporary name, then rename)."""
    from astropy.io import fits

    out = Path(out)
    hdr = header.copy()
    for key in ("BSCALE", "BZERO", "BLANK"):
        hdr.remove(key, ignore_missing=True)
    with atomic_path(out) as tmp:
        fits.PrimaryHDU(data=np.asarray(data, dtype=np.float32), header=hdr).writeto(tmp)
    logger.info("wrote %s", out)
    return out
