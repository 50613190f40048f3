"""Convolve a set of images to a common restoring beam.

:func:`run_convol` finds the smallest beam that every image's restoring beam can be
convolved to (radio-beam's ``Beams.common_beam``), convolves each image with the
kernel that takes its beam to that one (``Beam.deconvolve``, astropy FFT convolution)
and rescales by the ratio of beam areas, so that Jy/beam stays Jy/beam (a point
source keeps its peak brightness; integrated fluxes are unchanged). BMAJ/BMIN/BPA
are updated. Outputs are ``<image stem>.<suffix>.fits`` (default ``.conv``).

Cubes (more than one channel or Stokes plane, see :mod:`flint.cubes`) are convolved
plane by plane, in one of two modes (racs-tools beamcon_3D's names):

* ``natural`` (default): per channel, the smallest beam common to every input cube and
  polarisation at that channel (what RM synthesis needs: each channel as sharp as it
  can be, all beams of the mosaic alike);
* ``total``: one beam for every channel of every cube.

The per-channel beams are read from, and written to, the cubes' ``BEAMS`` table. Only one
plane is held in memory at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from flint.cubes import (
    BEAM_FLAG_HINT,
    BeamTable,
    CubeInfo,
    CubeReader,
    CubeWriter,
    beam_tuple,
    is_cube_file,
    make_beam,
    read_cube_info,
)
from flint.errors import FlintImageError, FlintInputError, FlintOptionsError
from flint.images import (
    JY_PER_BEAM,
    Image,
    read_beam,
    read_image,
    set_beam,
    write_like,
)
from flint.options import BaseOptions

if TYPE_CHECKING:
    from radio_beam import Beam

__all__ = [
    "ConvolOptions",
    "ConvolResult",
    "run_convol",
    "common_beam",
    "convolve_to",
    "convolve_plane",
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
    mode: Literal["natural", "total"] = "natural"
    """Cubes only: ``natural`` = one common beam per channel across all input cubes (for RM
    synthesis); ``total`` = one beam for all channels."""
    input_beam: tuple[float, float, float] | None = None
    """Restoring beam (BMAJ arcsec, BMIN arcsec, BPA deg) of inputs that carry none (no
    BEAMS table and no BMAJ/BMIN keywords)."""


@dataclass(frozen=True)
class ConvolResult:
    """Images convolved to one beam."""

    images: list[Path]
    """The convolved images, in the order of the inputs."""
    beam: tuple[float, float, float]
    """The common beam as (BMAJ arcsec, BMIN arcsec, BPA deg); for cubes in ``natural``
    mode the largest of the per-channel beams."""
    channel_beams: tuple[tuple[float, float, float], ...] | None = None
    """Cubes: the beam of each channel (NaN for a channel blank in every input)."""


def convolved_name(image: Path, suffix: str = "conv", out_dir: Path | None = None) -> Path:
    """``X.image.fits`` -> ``X.image.<suffix>.fits`` (in ``out_dir`` if given)."""
    name = image.name
    stem = name[: -len(".fits")] if name.lower().endswith(".fits") else name
    return (out_dir or image.parent) / f"{stem}.{suffix}.fits"


_beam_tuple = beam_tuple


def common_beam(beams: list[Beam], tolerance: float = 1e-4) -> Beam:
    """The smallest beam every beam in ``beams`` can be convolved to."""
    import astropy.units as u
    from radio_beam import Beams

    if len(beams) == 1:
        return beams[0]
    from radio_beam.utils import BeamError

    majors = u.Quantity([b.major for b in beams])
    minors = u.Quantity([b.minor for b in beams])
    pas = u.Quantity([b.pa for b in beams])
    many = Beams(major=majors, minor=minors, pa=pas)
    try:
        return many.common_beam(tolerance=tolerance)
    except BeamError:
        pass
    # radio-beam's search does not converge on some nearly equal beams (two channel beams of
    # 23"x15" ~0.5 deg apart in PA): retry with coarser steps, then the circle of the largest
    # major axis (every beam fits inside it)
    for eps in (1e-3, 1e-2, 5e-2):
        try:
            return many.common_beam(tolerance=tolerance, epsilon=eps, auto_increase_epsilon=True)
        except BeamError:
            continue
    big = float(majors.to_value("arcsec").max()) * (1 + 1e-6)
    logger.warning("common beam: radio-beam did not converge; using the circle of the largest major axis (%.3f arcsec)", big)
    return make_beam(big, big, 0.0)


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
    return convolve_plane(image.data, image.wcs, read_beam(image), target, str(image.path))


def convolve_plane(data: NDArray[np.float64], wcs: Any, beam: Beam, target: Beam, where: str = "image") -> NDArray[np.float64]:
    """Convolve one plane ``data`` (Jy/beam, celestial ``wcs``) from ``beam`` to ``target``.

    See :func:`convolve_to`; ``where`` names the input in errors.
    """
    if _same_beam(beam, target):
        return np.array(data, dtype=np.float64, copy=True)
    from radio_beam.utils import BeamError

    try:
        kernel_beam = target.deconvolve(beam, failure_returns_pointlike=False)
    except (BeamError, ValueError):
        kernel_beam = None
    if kernel_beam is None:
        raise FlintImageError(
            f"{where}: its beam {_fmt(beam)} cannot be convolved to {_fmt(target)} "
            "(the target must be at least as large in every direction); choose a larger target_beam"
        )
    matrix = np.asarray(wcs.pixel_scale_matrix, dtype=np.float64) * 3600.0  # arcsec/pixel
    scales = np.sqrt((matrix**2).sum(axis=0))
    if abs(scales[0] - scales[1]) > 1e-3 * scales.max() or abs(np.dot(matrix[:, 0], matrix[:, 1])) > 1e-3 * scales.max() ** 2:
        raise FlintImageError(f"{where}: pixels are not square ({scales[0]:.3f}\" x {scales[1]:.3f}\"); regrid it first")
    pixel = float(scales.mean())
    pad = int(np.ceil(5.0 * float(kernel_beam.major.to_value("arcsec")) / pixel / _FWHM)) + 1
    ny, nx = data.shape
    shape = (_fast_len(ny + 2 * pad), _fast_len(nx + 2 * pad))
    nan = ~np.isfinite(data)
    padded = np.zeros(shape)
    padded[:ny, :nx] = np.where(nan, 0.0, data)
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
    opts = options or ConvolOptions()
    paths = [Path(p) for p in images]
    if not paths:
        raise FlintInputError("run_convol: no images given; pass at least one FITS image")
    cubes = [is_cube_file(p) for p in paths]
    if any(cubes):
        if not all(cubes):
            flat = paths[cubes.index(False)]
            raise FlintInputError(f"{flat}: a single-plane image among cubes; convolve cubes and images in separate runs")
        return _run_convol_cubes([read_cube_info(p) for p in paths], opts)
    # two passes, one image in memory at a time (36 beam images of 3000^2 pixels held at
    # once took 1.3 GB more): check every input and find the common beam, then convolve
    beams = []
    for path in paths:
        img = _with_input_beam(read_image(path), opts)
        if img.unit != JY_PER_BEAM:
            raise FlintImageError(
                f"{img.path}: BUNIT is {img.header.get('BUNIT', '(missing)')!r}; convolution to a "
                "common beam needs restored images in Jy/beam"
            )
        beams.append(read_beam(img))
        del img
    fixed = _target_option(opts)
    target = _padded_beam(fixed if fixed is not None else common_beam(beams, tolerance=opts.tolerance), opts)
    logger.info("common beam: %s", _fmt(target))
    outs: list[Path] = []
    for path in paths:
        img = _with_input_beam(read_image(path), opts)
        data = convolve_to(img, target)
        header = img.header.copy()
        set_beam(header, target)
        header.add_history(f"flint.convol: convolved from {_fmt(read_beam(img))} to {_fmt(target)}")
        out = convolved_name(img.path, opts.suffix, opts.out_dir)
        if out.resolve() == img.path.resolve():
            raise FlintOptionsError(f"suffix {opts.suffix!r} would overwrite the input {img.path}; choose another")
        outs.append(write_like(img, data, out, header))
    return ConvolResult(images=outs, beam=_beam_tuple(target))


def _target_option(opts: ConvolOptions) -> Beam | None:
    if opts.target_beam is None:
        return None
    bmaj, bmin, bpa = opts.target_beam
    if not (bmaj > 0 and bmin > 0 and bmaj >= bmin):
        raise FlintOptionsError(f"target_beam {opts.target_beam}: need BMAJ >= BMIN > 0 (arcsec)")
    return make_beam(bmaj, bmin, bpa)


def _padded_beam(target: Beam, opts: ConvolOptions) -> Beam:
    if opts.pad_arcsec <= 0:
        return target
    bmaj, bmin, bpa = _beam_tuple(target)
    return make_beam(bmaj + opts.pad_arcsec, bmin + opts.pad_arcsec, bpa)


def _input_beam_option(opts: ConvolOptions) -> tuple[float, float, float] | None:
    if opts.input_beam is None:
        return None
    bmaj, bmin, _ = opts.input_beam
    if not (bmaj > 0 and bmin > 0 and bmaj >= bmin):
        raise FlintOptionsError(f"input_beam {opts.input_beam}: need BMAJ >= BMIN > 0 (arcsec)")
    return opts.input_beam


def _with_input_beam(img: Image, opts: ConvolOptions) -> Image:
    """``img`` with ``opts.input_beam`` in its header when it carries no beam of its own."""
    beam = _input_beam_option(opts)
    if beam is not None and not ("BMAJ" in img.header and "BMIN" in img.header):
        set_beam(img.header, make_beam(*beam))
    return img


def _cube_beams(info: CubeInfo, opts: ConvolOptions) -> BeamTable:
    if info.beams is not None:
        return info.beams
    beam = _input_beam_option(opts)
    if beam is None:
        raise FlintImageError(
            f"{info.path}: no restoring beam (no BEAMS table and no BMAJ/BMIN keywords); {BEAM_FLAG_HINT}"
        )
    return BeamTable.uniform(info.nchan, info.npol, beam)


def _run_convol_cubes(infos: list[CubeInfo], opts: ConvolOptions) -> ConvolResult:
    """Convolve cubes plane by plane to per-channel (``natural``) or one (``total``) beam."""
    ref = infos[0]
    for info in infos:
        if info.unit != JY_PER_BEAM:
            raise FlintImageError(
                f"{info.path}: BUNIT is {info.header.get('BUNIT', '(missing)')!r}; convolution to a "
                "common beam needs restored images in Jy/beam"
            )
        if (info.nchan, info.npol) != (ref.nchan, ref.npol):
            raise FlintImageError(
                f"{info.path}: {info.nchan} channel(s) x {info.npol} Stokes, {ref.path.name} has "
                f"{ref.nchan} x {ref.npol}; give cubes of the same channels"
            )
    tables = [_cube_beams(info, opts) for info in infos]
    fixed = _target_option(opts)
    targets: list[Beam | None]
    if fixed is not None:
        targets = [_padded_beam(fixed, opts)] * ref.nchan
    elif opts.mode == "total":
        every = [b for t in tables for c in range(t.nchan) for p in range(t.npol) if (b := t.beam(c, p)) is not None]
        if not every:
            raise FlintImageError(f"{ref.path}: every plane's beam is blank; nothing to convolve")
        one = _padded_beam(common_beam(every, tolerance=opts.tolerance), opts)
        targets = [one] * ref.nchan
    else:
        targets = []
        for c in range(ref.nchan):
            at_c = [b for t in tables for p in range(t.npol) if (b := t.beam(c, p)) is not None]
            targets.append(_padded_beam(common_beam(at_c, tolerance=opts.tolerance), opts) if at_c else None)
    valid = [t for t in targets if t is not None]
    if not valid:
        raise FlintImageError(f"{ref.path}: every plane's beam is blank; nothing to convolve")
    largest = max(valid, key=lambda b: float(b.sr.to_value("sr")))
    logger.info("cube %s mode: common beam %s (largest)", opts.mode if fixed is None else "target", _fmt(largest))
    out_table = BeamTable.from_beams([[t] * ref.npol for t in targets])
    outs = []
    for info in infos:
        out = convolved_name(info.path, opts.suffix, opts.out_dir)
        if out.resolve() == info.path.resolve():
            raise FlintOptionsError(f"suffix {opts.suffix!r} would overwrite the input {info.path}; choose another")
        outs.append(out)
    for info, table, out in zip(infos, tables, outs, strict=True):
        header = info.header.copy()
        for key in ("BMAJ", "BMIN", "BPA"):
            header.remove(key, ignore_missing=True)
        if out_table.is_uniform():
            set_beam(header, largest)
        header.add_history(f"flint.convol: cube convolved plane by plane to {'one beam' if out_table.is_uniform() else 'a common beam per channel'}")
        with CubeReader(info.path, info) as reader, CubeWriter(out, header, beams=out_table) as writer:
            for c, target in enumerate(targets):
                for p in range(info.npol):
                    beam = table.beam(c, p)
                    if target is None or beam is None:
                        writer.write_plane(np.full((info.axes.ny, info.axes.nx), np.nan), chan=c, pol=p)
                        continue
                    plane = reader.plane(c, p)
                    writer.write_plane(convolve_plane(plane, info.wcs, beam, target, f"{info.path} channel {c}"), chan=c, pol=p)
    channel_beams = tuple(out_table.as_tuple(c, 0) for c in range(ref.nchan))
    return ConvolResult(images=outs, beam=_beam_tuple(largest), channel_beams=channel_beams)
