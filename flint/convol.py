"""Convolve a set of images to a common restoring beam.

:func:`run_convol` finds the smallest beam that every image's restoring beam can be
convolved to (radio-beam's ``Beams.common_beam``), convolves each image with the
kernel that takes its beam to that one (``Beam.deconvolve``, astropy FFT convolution)
and rescales by the ratio of beam areas, so that Jy/beam stays Jy/beam (a point
source keeps its peak brightness; integrated fluxes are unchanged). BMAJ/BMIN/BPA
are updated. Outputs are ``<image stem>.<suffix>.fits`` (default ``.conv``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from flint.errors import FlintImageError, FlintInputError, FlintOptionsError
from flint.images import JY_PER_BEAM, Image, read_beam, read_image, set_beam, write_like
from flint.options import BaseOptions

if TYPE_CHECKING:
    from radio_beam import Beam

__all__ = [
    "ConvolOptions",
    "ConvolResult",
    "run_convol",
    "common_beam",
    "convolve_to",
    "convolved_name",
]

logger = logging.getLogger(__name__)


class ConvolOptions(BaseOptions):
    """How images are brought to a common resolution."""

    target_beam: tuple[float, float, float] | None = None
    """Beam to convolve to as (BMAJ arcsec, BMIN arcsec, BPA deg); ``None``: the smallest
    common beam of the images. Must be at least as large as every image's beam."""
    pad_arcsec: float = Field(default=0.0, ge=0.0)
    """Grow the common beam's axes by this much (a margin for later images)."""
    suffix: str = "conv"
    """Inserted before ``.fits`` in the output names."""
    out_dir: Path | None = None
    """Folder of the outputs (``None``: beside each input)."""
    tolerance: float = Field(default=1e-4, gt=0.0)
    """Relative tolerance of the common-beam search (radio-beam ``common_beam``)."""


@dataclass(frozen=True)
class ConvolResult:
    """Images convolved to one beam."""

    images: list[Path]
    """The convolved images, in the order of the inputs."""
    beam: tuple[float, float, float]
    """The common beam as (BMAJ arcsec, BMIN arcsec, BPA deg)."""


def convolved_name(image: Path, suffix: str = "conv", out_dir: Path | None = None) -> Path:
    """``X.image.fits`` -> ``X.image.<suffix>.fits`` (in ``out_dir`` if given)."""
    name = image.name
    stem = name[: -len(".fits")] if name.lower().endswith(".fits") else name
    return (out_dir or image.parent) / f"{stem}.{suffix}.fits"


def _beam_tuple(beam: Beam) -> tuple[float, float, float]:
    return (float(beam.major.to_value("arcsec")), float(beam.minor.to_value("arcsec")), float(beam.pa.to_value("deg")))


def common_beam(beams: list[Beam], tolerance: float = 1e-4) -> Beam:
    """The smallest beam every beam in ``beams`` can be convolved to."""
    import astropy.units as u
    from radio_beam import Beams

    if len(beams) == 1:
        return beams[0]
    majors = u.Quantity([b.major for b in beams])
    minors = u.Quantity([b.minor for b in beams])
    pas = u.Quantity([b.pa for b in beams])
    return Beams(major=majors, minor=minors, pa=pas).common_beam(tolerance=tolerance)


def _same_beam(a: Beam, b: Beam, rel: float = 1e-3) -> bool:
    maj_a, min_a, pa_a = _beam_tuple(a)
    maj_b, min_b, pa_b = _beam_tuple(b)
    if abs(maj_a - maj_b) > rel * maj_b or abs(min_a - min_b) > rel * min_b:
        return False
    if abs(maj_b - min_b) < rel * maj_b:  # circular: PA meaningless
        return True
    dpa = (pa_a - pa_b + 90.0) % 180.0 - 90.0
    return abs(dpa) < 0.1


def _gaussian_transfer(shape: tuple[int, int], kernel: Beam, pixel_arcsec: float, pix_matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    """Fourier transform (rfft2 layout, unit sum) of a Gaussian ``kernel`` on this pixel grid.

    Analytic, so exact for any kernel, including ones much thinner than a pixel.
    """
    pa = np.radians(float(kernel.pa.to_value("deg")))
    # major-axis direction: PA from north through east, in (east, north) world offsets
    world = np.array([np.sin(pa), np.cos(pa)])
    pix = np.linalg.solve(pix_matrix, world)
    pix /= np.hypot(*pix)
    perp = np.array([-pix[1], pix[0]])
    s_maj = float(kernel.major.to_value("arcsec")) / pixel_arcsec / _FWHM
    s_min = float(kernel.minor.to_value("arcsec")) / pixel_arcsec / _FWHM
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    k_maj = fx * pix[0] + fy * pix[1]
    k_min = fx * perp[0] + fy * perp[1]
    return np.exp(-2.0 * np.pi**2 * (s_maj**2 * k_maj**2 + s_min**2 * k_min**2))


_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


def convolve_to(image: Image, target: Beam) -> NDArray[np.float64]:
    """Convolve ``image`` (Jy/beam) from its beam to ``target``; return the new plane.

    The kernel is ``target`` deconvolved by the image's beam (radio-beam); the
    convolution is done in the Fourier domain with the kernel's analytic transform
    (zero-padded, so nothing wraps around), then the result is multiplied by the ratio
    of beam areas to stay in Jy/beam. NaN pixels stay NaN (and count as zero).

    Raises
    ------
    FlintImageError
        If ``target`` is smaller than the image's beam in some direction.
    """
    beam = read_beam(image)
    if _same_beam(beam, target):
        return image.data.copy()
    from radio_beam.utils import BeamError

    try:
        kernel_beam = target.deconvolve(beam, failure_returns_pointlike=False)
    except (BeamError, ValueError):
        kernel_beam = None
    if kernel_beam is None:
        raise FlintImageError(
            f"{image.path}: its beam {_fmt(beam)} cannot be convolved to {_fmt(target)} "
            "(the target must be at least as large in every direction); choose a larger target_beam"
        )
    matrix = np.asarray(image.wcs.pixel_scale_matrix, dtype=np.float64) * 3600.0  # arcsec/pixel
    scales = np.sqrt((matrix**2).sum(axis=0))
    if abs(scales[0] - scales[1]) > 1e-3 * scales.max() or abs(np.dot(matrix[:, 0], matrix[:, 1])) > 1e-3 * scales.max() ** 2:
        raise FlintImageError(f"{image.path}: pixels are not square ({scales[0]:.3f}\" x {scales[1]:.3f}\"); regrid it first")
    pixel = float(scales.mean())
    pad = int(np.ceil(5.0 * float(kernel_beam.major.to_value("arcsec")) / pixel / _FWHM)) + 1
    ny, nx = image.data.shape
    shape = (_fast_len(ny + 2 * pad), _fast_len(nx + 2 * pad))
    nan = ~np.isfinite(image.data)
    padded = np.zeros(shape)
    padded[:ny, :nx] = np.where(nan, 0.0, image.data)
    transfer = _gaussian_transfer(shape, kernel_beam, pixel, matrix)
    out = np.fft.irfft2(np.fft.rfft2(padded) * transfer, s=shape)[:ny, :nx]
    area_ratio = float((target.sr / beam.sr).decompose().value)
    out *= area_ratio
    out[nan] = np.nan
    return out


def _fast_len(n: int) -> int:
    from scipy.fft import next_fast_len

    return int(next_fast_len(n, real=True))


def _fmt(beam: Beam) -> str:
    a, b, pa = _beam_tuple(beam)
    return f"{a:.2f}\" x {b:.2f}\" PA {pa:.1f} deg"


def run_convol(images: list[Path] | list[str], options: ConvolOptions | None = None) -> ConvolResult:
    """Convolve ``images`` to their smallest common restoring beam.

    Parameters
    ----------
    images
        Restored FITS images in Jy/beam with BMAJ/BMIN/BPA keywords.
    options
        Convolution options.

    Returns
    -------
    ConvolResult
        The convolved images and the common beam.
    """
    import astropy.units as u
    from radio_beam import Beam

    opts = options or ConvolOptions()
    paths = [Path(p) for p in images]
    if not paths:
        raise FlintInputError("run_convol: no images given; pass at least one FITS image")
    loaded = [read_image(p) for p in paths]
    for img in loaded:
        if img.unit != JY_PER_BEAM:
            raise FlintImageError(
                f"{img.path}: BUNIT is {img.header.get('BUNIT', '(missing)')!r}; convolution to a "
                "common beam needs restored images in Jy/beam"
            )
    beams = [read_beam(img) for img in loaded]
    if opts.target_beam is not None:
        bmaj, bmin, bpa = opts.target_beam
        if not (bmaj > 0 and bmin > 0 and bmaj >= bmin):
            raise FlintOptionsError(f"target_beam {opts.target_beam}: need BMAJ >= BMIN > 0 (arcsec)")
        target = Beam(major=bmaj * u.arcsec, minor=bmin * u.arcsec, pa=bpa * u.deg)
    else:
        target = common_beam(beams, tolerance=opts.tolerance)
    if opts.pad_arcsec > 0:
        target = Beam(major=target.major + opts.pad_arcsec * u.arcsec, minor=target.minor + opts.pad_arcsec * u.arcsec, pa=target.pa)
    logger.info("common beam: %s", _fmt(target))
    outs: list[Path] = []
    for img in loaded:
        data = convolve_to(img, target)
        header = img.header.copy()
        set_beam(header, target)
        header.add_history(f"flint.convol: convolved from {_fmt(read_beam(img))} to {_fmt(target)}")
        out = convolved_name(img.path, opts.suffix, opts.out_dir)
        if out.resolve() == img.path.resolve():
            raise FlintOptionsError(f"suffix {opts.suffix!r} would overwrite the input {img.path}; choose another")
        outs.append(write_like(img, data, out, header))
    return ConvolResult(images=outs, beam=_beam_tuple(target))
