"""Primary-beam-weighted mosaicking of beam images (linmos).

The standard linear mosaic of images ``I_i`` with primary beams ``PB_i`` and noise
``sigma_i``::

    mosaic = sum_i(w_i * I_i / PB_i) / sum_i(w_i),   w_i = PB_i**2 / sigma_i**2

cut where ``PB_i < pb_cutoff``. ``PB_i`` is :func:`flint.primary_beam.gaussian_pb`
centred on the image's reference direction (CRVAL: WSClean puts the phase centre, the
beam centre, there), at the image frequency; ``sigma_i`` is a robust (MAD) noise of the
image. The co-addition onto one sky grid is reproject's
(``find_optimal_celestial_wcs`` + ``reproject_and_coadd``). The weight image
``sum_i(w_i)`` is the inverse variance of the mosaic: its noise is ``1/sqrt(weight)``.
Empty borders are trimmed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from flint.errors import FlintImageError, FlintInputError
from flint.images import (
    Image,
    image_frequency_hz,
    read_beam,
    read_image,
    robust_rms,
    set_beam,
    write_image,
)
from flint.naming import parse_name, product_name
from flint.options import BaseOptions
from flint.primary_beam import (
    DEFAULT_PB_FWHM_DEG,
    DEFAULT_PB_REF_HZ,
    angular_separation_deg,
    gaussian_pb,
)

__all__ = ["LinmosOptions", "LinmosResult", "run_linmos", "primary_beam_image", "default_output"]

logger = logging.getLogger(__name__)


class LinmosOptions(BaseOptions):
    """How beam images are co-added into a mosaic."""

    pb_fwhm_deg: float = Field(default=DEFAULT_PB_FWHM_DEG, gt=0.0)
    """FWHM (deg) of the Gaussian primary beam at ``pb_ref_freq_hz`` (the simulator's)."""
    pb_ref_freq_hz: float = Field(default=DEFAULT_PB_REF_HZ, gt=0.0)
    """Frequency (Hz) at which ``pb_fwhm_deg`` holds; the FWHM scales as 1/frequency."""
    pb_cutoff: float = Field(default=0.1, gt=0.0, lt=1.0)
    """Pixels of a beam image where its primary beam is below this are not used."""
    freq_hz: float | None = Field(default=None, gt=0.0)
    """Frequency for the primary beam (Hz); ``None``: each image's header."""
    noise: Literal["mad", "none"] = "mad"
    """``mad``: weight each image by 1/sigma^2 from its robust noise; ``none``: sigma = 1."""
    projection: str = "SIN"
    """Projection of the mosaic grid."""
    trim: bool = True
    """Cut rows and columns without data from the mosaic's borders."""
    write_weight: bool = True
    """Also write the weight (inverse-variance) image."""


@dataclass(frozen=True)
class LinmosResult:
    """The mosaic and its weight image."""

    mosaic: Path
    weight: Path | None
    noise_jy: tuple[float, ...]
    """Robust noise of each input image (Jy/beam), in input order."""


def primary_beam_image(image: Image, options: LinmosOptions, freq_hz: float) -> NDArray[np.float64]:
    """Primary-beam response at every pixel of ``image`` (centred on its CRVAL)."""
    ny, nx = image.data.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    ra, dec = image.wcs.pixel_to_world_values(xx.ravel(), yy.ravel())
    ra0, dec0 = (float(v) for v in image.wcs.wcs.crval)
    sep = angular_separation_deg(ra0, dec0, ra, dec).reshape(ny, nx)
    return np.asarray(gaussian_pb(sep, freq_hz, options.pb_fwhm_deg, options.pb_ref_freq_hz))


def default_output(images: list[Path]) -> Path:
    """``SB<sbid>.<field>[.round<N>].linmos.fits`` beside the first image (flint names), else
    ``linmos.fits``."""
    first = images[0]
    try:
        parts = [parse_name(p) for p in images]
    except FlintInputError:
        return first.parent / "linmos.fits"
    p0 = parts[0]
    same_round = all(p.round == p0.round for p in parts)
    name = product_name(p0.sbid, p0.field, round=p0.round if same_round else None, suffix="linmos.fits")
    return first.parent / name


def _check_inputs(images: list[Image]) -> None:
    units = {img.unit for img in images}
    if len(units) > 1:
        listing = ", ".join(f"{img.path.name}: {img.header.get('BUNIT', '(none)')!r}" for img in images)
        raise FlintImageError(f"images have different brightness units ({listing}); give images in one unit (Jy/beam)")
    beams = [read_beam(img) for img in images]
    ref = beams[0]
    for img, b in zip(images, beams, strict=True):
        if abs(b.major / ref.major - 1) > 0.01 or abs(b.minor / ref.minor - 1) > 0.01:
            logger.warning(
                "%s: restoring beam differs from %s's by > 1 %%; convolve to a common beam first (flint convol)",
                img.path, images[0].path,
            )


def run_linmos(
    images: list[Path] | list[str],
    options: LinmosOptions | None = None,
    output: str | os.PathLike[str] | None = None,
) -> LinmosResult:
    """Mosaic beam images with primary-beam and inverse-variance weighting.

    Parameters
    ----------
    images
        Beam images (ideally convolved to a common beam), not primary-beam corrected.
    options
        Mosaicking options.
    output
        Mosaic file (default :func:`default_output`); the weight image is written beside
        it with ``.weight.fits`` replacing ``.fits``.

    Returns
    -------
    LinmosResult
        Paths of the mosaic and weight image.
    """
    from reproject import reproject_interp
    from reproject.mosaicking import find_optimal_celestial_wcs, reproject_and_coadd

    opts = options or LinmosOptions()
    paths = [Path(p) for p in images]
    if not paths:
        raise FlintInputError("run_linmos: no images given; pass the beam images to mosaic")
    loaded = [read_image(p) for p in paths]
    _check_inputs(loaded)
    out = Path(output) if output is not None else default_output(paths)
    weight_out = out.with_name(out.name.removesuffix(".fits") + ".weight.fits")
    if any(out.resolve() == p.resolve() or weight_out.resolve() == p.resolve() for p in paths):
        raise FlintInputError(f"output {out} would overwrite an input image; choose another name")

    corrected: list[tuple[NDArray[np.float64], Any]] = []
    weights: list[NDArray[np.float64]] = []
    noises: list[float] = []
    freqs: list[float] = []
    for img in loaded:
        freq = opts.freq_hz or image_frequency_hz(img.header)
        if freq is None:
            raise FlintImageError(f"{img.path}: no frequency in its header; set LinmosOptions(freq_hz=...)")
        freqs.append(freq)
        pb = primary_beam_image(img, opts, freq)
        sigma = robust_rms(img.data) if opts.noise == "mad" else 1.0
        if not np.isfinite(sigma) or sigma <= 0:
            raise FlintImageError(f"{img.path}: noise estimate is {sigma}; is the image empty?")
        noises.append(sigma)
        use = (pb >= opts.pb_cutoff) & np.isfinite(img.data)
        with np.errstate(divide="ignore", invalid="ignore"):
            corrected.append((np.where(use, img.data / pb, np.nan), img.wcs))
        weights.append(np.where(use, pb**2 / sigma**2, 0.0))
        logger.info("%s: noise %.3g Jy/beam, %.0f%% of pixels above PB cutoff", img.path.name, sigma, 100 * use.mean())

    wcs_out, shape_out = find_optimal_celestial_wcs(
        corrected, projection=opts.projection, resolution=min(img.pixel_scale_deg for img in loaded) * _deg()
    )
    mosaic, weight = reproject_and_coadd(
        corrected,
        wcs_out,
        shape_out=shape_out,
        input_weights=weights,
        reproject_function=reproject_interp,
        combine_function="mean",
        roundtrip_coords=False,  # same celestial frame in and out: skip the round-trip check
    )
    mosaic = np.where(weight > 0, mosaic, np.nan)
    header = wcs_out.to_header()
    if opts.trim:
        mosaic, weight, header = _trim(mosaic, weight, wcs_out)
    src = loaded[0].header
    for key in ("BUNIT", "TELESCOP", "OBJECT", "DATE-OBS", "MJD-OBS", "EQUINOX", "RADESYS"):
        if key in src:
            header[key] = src[key]
    set_beam(header, read_beam(loaded[0]))
    header["FREQ"] = (float(np.mean(freqs)), "frequency (Hz)")
    header["HISTORY"] = f"flint.linmos: {len(paths)} images, PB FWHM {opts.pb_fwhm_deg} deg at {opts.pb_ref_freq_hz:.4g} Hz, cutoff {opts.pb_cutoff}"
    for p in paths:
        header["HISTORY"] = f"flint.linmos input: {p.name}"
    write_image(out, mosaic, header)
    wpath: Path | None = None
    if opts.write_weight:
        wheader = header.copy()
        wheader["BUNIT"] = ("(JY/BEAM)^-2", "inverse variance of the mosaic")
        for key in ("BMAJ", "BMIN", "BPA"):
            wheader.remove(key, ignore_missing=True)
        wpath = write_image(weight_out, weight, wheader)
    return LinmosResult(mosaic=out, weight=wpath, noise_jy=tuple(noises))


def _deg() -> Any:
    import astropy.units as u

    return u.deg


def _trim(mosaic: NDArray[np.float64], weight: NDArray[np.float64], wcs: Any) -> tuple[NDArray[np.float64], NDArray[np.float64], Any]:
    rows = np.flatnonzero(np.any(weight > 0, axis=1))
    cols = np.flatnonzero(np.any(weight > 0, axis=0))
    if rows.size == 0:
        raise FlintImageError("the mosaic is empty: no input pixel is above the primary-beam cutoff")
    ys = slice(int(rows[0]), int(rows[-1]) + 1)
    xs = slice(int(cols[0]), int(cols[-1]) + 1)
    return mosaic[ys, xs], weight[ys, xs], wcs[ys, xs].to_header()
