"""Primary-beam-weighted mosaicking of beam images (linmos).

The standard linear mosaic of images ``I_i`` with primary beams ``PB_i`` and noise
``sigma_i``::

    mosaic = sum_i(w_i * I_i / PB_i) / sum_i(w_i),   w_i = PB_i**2 / sigma_i**2

cut where ``PB_i < pb_cutoff``. ``PB_i`` is :func:`flint.primary_beam.gaussian_pb`
centred on the image's reference direction (CRVAL: WSClean puts the phase centre, the
beam centre, there), at the image frequency; ``sigma_i`` is a robust (MAD) noise of the
image. The mosaic grid is reproject's ``find_optimal_celestial_wcs``; each input's image
and primary beam are interpolated onto its footprint of that grid with
``reproject_interp`` (bicubic when the beam is sampled by >= 2.5 pixels: a source keeps its
peak, where bilinear interpolation between offset grids reads it low; else bilinear) and the
sums ``sum_i(PB_i * I_i / sigma_i**2)`` and ``sum_i(w_i)`` are formed on the mosaic grid.
The weight image ``sum_i(w_i)`` is the inverse variance of the mosaic: its noise is
``1/sqrt(weight)``. Empty borders are trimmed.

Cubes (see :mod:`flint.cubes`) are mosaicked a block of channels at a time: for each block,
one input's planes of those channels are weighted, reprojected together onto its footprint of
the mosaic grid (one coordinate transform for the block) and added into running sums, so
memory holds one input's block plus the mosaic's block (``block_mb``), never a whole cube.
The mosaic is a cube with the inputs' FREQ/STOKES axes and their ``BEAMS`` table; its weight
cube is written beside it.

With ``pb_cube`` (an ASKAP holography beam cube, :class:`flint.primary_beam.HolographyBeams`)
the measured Stokes-I response of each input's beam replaces the Gaussian, interpolated to
every pixel and channel, and the Stokes-I leakage into Q/U/V is removed first::

    X_corr = X - (PB_X / PB_I) * I        (X = Q, U, V; I the same beam's Stokes-I plane)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from flint.cubes import (
    BEAM_FLAG_HINT,
    STOKES_NAMES,
    CubeInfo,
    CubeReader,
    CubeWriter,
    cube_header,
    is_cube_file,
    read_cube_info,
)
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
    HolographyBeams,
    angular_separation_deg,
    gaussian_pb,
    sky_offsets_deg,
)

__all__ = ["LinmosOptions", "LinmosResult", "run_linmos", "primary_beam_image", "default_output", "output_paths"]

logger = logging.getLogger(__name__)

#: ``interpolation="auto"`` is bicubic from this many pixels per restoring-beam minor axis up
AUTO_BICUBIC_MIN_PIXELS = 2.5


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
    edge_beams: float = Field(default=0.0, ge=0.0)
    """Leave out each input image's pixels within this many restoring-beam major axes of its
    edge (0: use them all; the packaged continuum strategy sets 2). WSClean's restored image wraps around: a clean component on one
    edge (the skirt of a source outside the image) is restored onto the opposite edge too,
    where the primary-beam correction then amplifies it."""
    write_weight: bool = True
    """Also write the weight (inverse-variance) image."""
    pb_cube: Path | None = None
    """ASKAP holography primary-beam cube (5-D x, y, FREQ, STOKES, BEAM, e.g.
    ``akpb.iquv.closepack36.54.943MHz.SB55219.cube.fits``): its measured Stokes-I response
    replaces the Gaussian beam. ``None``: the Gaussian beam."""
    pb_beams: list[int] | None = None
    """With ``pb_cube``: the BEAM-axis index of each input, in input order; ``None``: the
    beam number in each input's name (``.beamNN.``)."""
    remove_leakage: bool = True
    """With ``pb_cube``: subtract the Stokes-I leakage from Q/U/V planes (X - PB_X/PB_I * I)."""
    stokes_i: list[Path] | None = None
    """With ``pb_cube`` and ``remove_leakage``: the Stokes-I images/cubes of the inputs' beams,
    in input order, for inputs that hold Q/U/V but no I plane."""
    block_mb: float = Field(default=256.0, ge=0.0)
    """Cubes: memory (MB) for the block of channels mosaicked together. The pixel mapping between
    an input and the mosaic grid is computed once per block (in the pol demo's 512-pixel
    cubes it was ~40 % of the time when computed per channel); ``0``: one channel at a time."""
    interpolation: Literal["auto", "nearest-neighbor", "bilinear", "biquadratic", "bicubic"] = "auto"
    """How each input's pixels are interpolated onto the mosaic grid (``reproject_interp``'s
    ``order``). Bicubic keeps a source's peak wherever it falls between the two grids' pixels
    (bilinear smooths it: 7 % low in peak at 3 pixels per beam) but needs a well-sampled image:
    at 1.8 pixels per beam minor axis its splines ring and the fitted integrated fluxes read 4 %
    lower than bilinear's. ``auto``: bicubic when every input's restoring beam minor axis spans
    at least ``AUTO_BICUBIC_MIN_PIXELS`` (2.5) pixels, else bilinear."""


@dataclass(frozen=True)
class LinmosResult:
    """The mosaic and its weight image."""

    mosaic: Path
    weight: Path | None
    noise_jy: tuple[float, ...]
    """Robust noise of each input image (Jy/beam), in input order; for cubes the median over
    its channels' Stokes-I (else first Stokes) planes."""


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
    from reproject.mosaicking import find_optimal_celestial_wcs

    opts = options or LinmosOptions()
    paths = [Path(p) for p in images]
    if not paths:
        raise FlintInputError("run_linmos: no images given; pass the beam images to mosaic")
    if opts.pb_cube is not None or any(is_cube_file(p) for p in paths):
        return _run_linmos_cube(paths, opts, output)
    # one image in memory at a time: check all and find the grid from their headers and
    # shapes, then weight, reproject and add each into running sums. Holding every image
    # with its corrected and weight planes took ~0.2 GB per 3000^2 beam image.
    loaded: list[Image] = []
    shapes: list[tuple[int, int]] = []
    freqs: list[float] = []
    for path in paths:
        img = read_image(path)
        freq = opts.freq_hz or image_frequency_hz(img.header)
        if freq is None:
            raise FlintImageError(f"{img.path}: no frequency in its header; set LinmosOptions(freq_hz=...)")
        freqs.append(freq)
        ny, nx = img.data.shape
        shapes.append((ny, nx))
        loaded.append(dataclasses.replace(img, data=np.empty((0, 0))))
        del img
    _check_inputs(loaded)
    out, weight_out = output_paths(paths, output)

    wcs_out, shape_out = find_optimal_celestial_wcs(
        list(zip(shapes, [img.wcs for img in loaded], strict=True)),
        projection=opts.projection,
        resolution=min(img.pixel_scale_deg for img in loaded) * _deg(),
    )
    order = _order(opts, min(read_beam(img).minor.to_value("arcsec") for img in loaded), min(img.pixel_scale_deg for img in loaded) * 3600.0)
    # the running sums in float32, as the mosaic and weight are written: float64 sums held
    # two 8-byte planes of the whole mosaic (the part of linmos's memory that grows with it)
    mosaic = np.zeros(shape_out, dtype=np.float32)
    weight = np.zeros(shape_out, dtype=np.float32)
    noises: list[float] = []
    for path, freq in zip(paths, freqs, strict=True):
        img = read_image(path)
        if opts.edge_beams > 0:
            border = float(read_beam(img).major.to_value("deg")) / img.pixel_scale_deg * opts.edge_beams
            img = dataclasses.replace(img, data=blank_edge(img.data, border))
        pb = primary_beam_image(img, opts, freq)
        sigma = robust_rms(img.data) if opts.noise == "mad" else 1.0
        if not np.isfinite(sigma) or sigma <= 0:
            raise FlintImageError(f"{img.path}: noise estimate is {sigma}; is the image empty?")
        noises.append(sigma)
        ys, xs = _footprint(img.wcs, img.data.shape, wcs_out, shape_out)
        if ys.stop > ys.start and xs.stop > xs.start:
            num, den = _coadd_plane(img.data, pb, sigma, img.wcs, wcs_out[ys, xs], (ys.stop - ys.start, xs.stop - xs.start), order, opts.pb_cutoff)
            mosaic[ys, xs] += num
            weight[ys, xs] += den
            del num, den
        logger.info("%s: noise %.3g Jy/beam, %.0f%% of pixels above PB cutoff", img.path.name, sigma, 100 * np.mean(pb >= opts.pb_cutoff))
        del img, pb
    covered = weight > 0
    np.divide(mosaic, weight, out=mosaic, where=covered)  # in place: no third plane
    mosaic[~covered] = np.nan
    del covered
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


def blank_edge(plane: NDArray[Any], border: float) -> NDArray[np.float64]:
    """A copy of ``plane`` (last two axes the image) with NaN within ``border`` pixels of its edge.

    Examples
    --------
    >>> blank_edge(np.ones((6, 6)), 1.5)[:, 2].tolist()
    [nan, nan, 1.0, 1.0, nan, nan]
    """
    out = np.array(plane, dtype=np.float64)
    b = int(np.ceil(border))
    if b > 0:
        out[..., :b, :] = np.nan
        out[..., -b:, :] = np.nan
        out[..., :, :b] = np.nan
        out[..., :, -b:] = np.nan
    return out


def _order(opts: LinmosOptions, bmin_arcsec: float, pixel_arcsec: float) -> str:
    """The interpolation order: ``opts.interpolation``, or for ``auto`` by the beam's sampling."""
    if opts.interpolation != "auto":
        return opts.interpolation
    order = "bicubic" if bmin_arcsec / pixel_arcsec >= AUTO_BICUBIC_MIN_PIXELS else "bilinear"
    logger.info("linmos: %.2f pixels per beam minor axis -> %s interpolation", bmin_arcsec / pixel_arcsec, order)
    return order


def _coadd_plane(
    plane: NDArray[Any], pb: NDArray[np.float64], sigma: Any, wcs_in: Any, wcs_out: Any, shape_out: tuple[int, int], order: str, cutoff: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """One input plane's terms of the linmos sums on (a box of) the mosaic grid:
    ``PB * I / sigma**2`` and ``PB**2 / sigma**2`` where the interpolated PB is >= the cutoff, else 0.

    ``plane`` and ``pb`` may be stacks of planes (leading axis; ``sigma`` one value per plane):
    reproject then maps every plane with one coordinate transform.

    The image and its primary beam are interpolated (both are smooth over the image), not
    ``I / PB`` cut at the PB cutoff: a spline's prefilter would spread the cut's NaNs. Blank
    (NaN) input pixels are zero-filled and the mosaic pixels they reach are left out.
    """
    from reproject import reproject_interp

    plane = np.asarray(plane)
    stacked = plane.ndim == 3
    planes = plane if stacked else plane[None]
    pbs = np.broadcast_to(pb, planes.shape) if np.ndim(pb) == 2 else np.asarray(pb)
    k = planes.shape[0]
    finite = np.isfinite(planes)
    both, _ = reproject_interp(
        (np.concatenate([np.where(finite, planes, 0.0), pbs]), wcs_in), wcs_out, shape_out=shape_out,
        order=order, roundtrip_coords=False,  # same celestial frame in and out: skip the round-trip check
    )
    val, pbo = both[:k], both[k:]
    with np.errstate(invalid="ignore"):
        use = np.isfinite(val) & np.isfinite(pbo) & (pbo >= cutoff)
    if not finite.all():
        reach, _ = reproject_interp((finite.astype(float), wcs_in), wcs_out, shape_out=shape_out, order="bilinear", roundtrip_coords=False)
        with np.errstate(invalid="ignore"):
            use &= reach >= 1.0 - 1e-6
    inv = (1.0 / np.asarray(sigma, dtype=float) ** 2).reshape(-1, 1, 1)
    num, den = np.where(use, val * pbo * inv, 0.0), np.where(use, pbo**2 * inv, 0.0)
    return (num, den) if stacked else (num[0], den[0])


def _footprint(wcs_in: Any, shape_in: tuple[int, ...], wcs_out: Any, shape_out: tuple[int, int]) -> tuple[slice, slice]:
    """The box of the mosaic grid that an input image's border encloses (2 pixels' margin)."""
    ny, nx = shape_in[-2], shape_in[-1]
    ex = np.concatenate([np.arange(nx), np.full(ny, nx - 1), np.arange(nx), np.zeros(ny)]).astype(float)
    ey = np.concatenate([np.zeros(nx), np.arange(ny), np.full(nx, ny - 1), np.arange(ny)]).astype(float)
    ra, dec = wcs_in.pixel_to_world_values(ex, ey)
    ox, oy = (np.asarray(v, dtype=float) for v in wcs_out.world_to_pixel_values(ra, dec))
    ok = np.isfinite(ox) & np.isfinite(oy)
    if not ok.any():
        return slice(0, 0), slice(0, 0)
    y0, y1 = max(0, int(np.floor(oy[ok].min())) - 2), min(shape_out[0], int(np.ceil(oy[ok].max())) + 3)
    x0, x1 = max(0, int(np.floor(ox[ok].min())) - 2), min(shape_out[1], int(np.ceil(ox[ok].max())) + 3)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def output_paths(paths: Sequence[Path], output: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    """The mosaic and weight paths; refuses to overwrite an input."""
    out = Path(output) if output is not None else default_output(list(paths))
    weight_out = out.with_name(out.name.removesuffix(".fits") + ".weight.fits")
    if any(out.resolve() == p.resolve() or weight_out.resolve() == p.resolve() for p in paths):
        raise FlintInputError(f"output {out} would overwrite an input image; choose another name")
    return out, weight_out


def _deg() -> Any:
    import astropy.units as u

    return u.deg


def _trim(mosaic: NDArray[np.float32], weight: NDArray[np.float32], wcs: Any) -> tuple[NDArray[np.float32], NDArray[np.float32], Any]:
    rows = np.flatnonzero(np.any(weight > 0, axis=1))
    cols = np.flatnonzero(np.any(weight > 0, axis=0))
    if rows.size == 0:
        raise FlintImageError("the mosaic is empty: no input pixel is above the primary-beam cutoff")
    ys = slice(int(rows[0]), int(rows[-1]) + 1)
    xs = slice(int(cols[0]), int(cols[-1]) + 1)
    return mosaic[ys, xs], weight[ys, xs], wcs[ys, xs].to_header()


# --------------------------------------------------------------------------- cubes
@dataclass
class _Input:
    """One input cube of a cube mosaic and where it lands on the mosaic grid."""

    info: CubeInfo
    beam_index: int | None
    i_source: CubeInfo | None
    """Where this input's Stokes-I planes come from (leakage removal); ``None``: not needed."""
    box: tuple[slice, slice] = (slice(0, 0), slice(0, 0))


def _pixel_world(info: CubeInfo) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    ny, nx = info.axes.ny, info.axes.nx
    yy, xx = np.mgrid[0:ny, 0:nx]
    ra, dec = info.wcs.pixel_to_world_values(xx.ravel(), yy.ravel())
    return np.asarray(ra).reshape(ny, nx), np.asarray(dec).reshape(ny, nx)


class _Responses:
    """Primary-beam responses (Stokes code -> plane) of one input at one frequency."""

    def __init__(self, opts: LinmosOptions) -> None:
        self.opts = opts
        self.holo = HolographyBeams(opts.pb_cube) if opts.pb_cube is not None else None
        self._geometry: dict[Path, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}

    def _offsets(self, item: _Input) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Each pixel's separation from the beam centre (Gaussian) or east/north offsets (holography), once per input."""
        key = item.info.path
        if key not in self._geometry:
            ra, dec = _pixel_world(item.info)
            ra0, dec0 = (float(v) for v in item.info.wcs.wcs.crval)
            if self.holo is None:
                sep = np.asarray(angular_separation_deg(ra0, dec0, ra, dec), dtype=float)
                self._geometry[key] = (sep, sep)
            else:
                self._geometry[key] = sky_offsets_deg(ra0, dec0, ra, dec)
        return self._geometry[key]

    def __call__(self, item: _Input, freq_hz: float) -> dict[int, NDArray[np.float64]]:
        a, b = self._offsets(item)
        if self.holo is None:
            return {1: np.asarray(gaussian_pb(a, freq_hz, self.opts.pb_fwhm_deg, self.opts.pb_ref_freq_hz))}
        assert item.beam_index is not None
        return self.holo.response(item.beam_index, freq_hz, a, b)


def _inputs(paths: list[Path], opts: LinmosOptions) -> list[_Input]:
    infos = [read_cube_info(p) for p in paths]
    ref = infos[0]
    units = {i.unit for i in infos}
    if len(units) > 1:
        listing = ", ".join(f"{i.path.name}: {i.header.get('BUNIT', '(none)')!r}" for i in infos)
        raise FlintImageError(f"images have different brightness units ({listing}); give images in one unit (Jy/beam)")
    for info in infos:
        if (info.nchan, info.stokes) != (ref.nchan, ref.stokes):
            raise FlintImageError(
                f"{info.path}: {info.nchan} channel(s), Stokes {_names(info.stokes)}; {ref.path.name} has "
                f"{ref.nchan}, {_names(ref.stokes)}; mosaic cubes of the same channels and Stokes"
            )
        if np.all(np.isfinite(ref.freqs_hz)) and not np.allclose(info.freqs_hz, ref.freqs_hz, rtol=1e-7, atol=1.0):
            raise FlintImageError(f"{info.path}: channel frequencies differ from {ref.path.name}'s; mosaic cubes of the same channels")
        if info.beams is None:
            raise FlintImageError(f"{info.path}: no restoring beam (no BEAMS table and no BMAJ/BMIN keywords); {BEAM_FLAG_HINT}")
    if opts.pb_beams is not None and len(opts.pb_beams) != len(paths):
        raise FlintInputError(f"--pb-beams has {len(opts.pb_beams)} numbers for {len(paths)} images; give one per image")
    if opts.stokes_i is not None and len(opts.stokes_i) != len(paths):
        raise FlintInputError(f"--stokes-i has {len(opts.stokes_i)} images for {len(paths)} inputs; give one per input")
    out = []
    for k, info in enumerate(infos):
        beam_index = None
        if opts.pb_cube is not None:
            beam_index = opts.pb_beams[k] if opts.pb_beams is not None else _beam_number(info.path)
        i_source = None
        leaky = set(info.stokes) & {2, 3, 4}
        if opts.pb_cube is not None and opts.remove_leakage and leaky:
            if 1 in info.stokes:
                i_source = info
            elif opts.stokes_i is not None:
                i_source = read_cube_info(opts.stokes_i[k])
                if i_source.nchan != info.nchan or 1 not in i_source.stokes or (i_source.axes.ny, i_source.axes.nx) != (info.axes.ny, info.axes.nx):
                    raise FlintImageError(f"{i_source.path}: not a Stokes-I cube of {info.path.name}'s channels and grid")
            else:
                raise FlintInputError(
                    f"{info.path}: holds Stokes {_names(info.stokes)} but no I to remove the leakage with; "
                    "give the Stokes-I cubes with --stokes-i or use --no-remove-leakage"
                )
        out.append(_Input(info=info, beam_index=beam_index, i_source=i_source))
    return out


def _names(codes: Sequence[int]) -> str:
    return "".join(STOKES_NAMES.get(c, str(c)) for c in codes)


def _beam_number(path: Path) -> int:
    try:
        beam = parse_name(path).beam
    except FlintInputError:
        beam = None
    if beam is None:
        raise FlintInputError(f"{path}: no beam number in its name (.beamNN.); give the beams with --pb-beams N [N ...]")
    return beam


def _grid(items: list[_Input], opts: LinmosOptions, responses: _Responses) -> tuple[Any, tuple[int, int]]:
    """The mosaic grid, trimmed to the inputs' footprints above the PB cutoff (at the band edges)."""
    import astropy.units as u
    from reproject.mosaicking import find_optimal_celestial_wcs

    resolution = min(i.info.wcs.proj_plane_pixel_scales()[0].to_value("deg") for i in items)
    wcs_out, (ny, nx) = find_optimal_celestial_wcs(
        [((i.info.axes.ny, i.info.axes.nx), i.info.wcs) for i in items], projection=opts.projection, resolution=resolution * u.deg
    )
    freqs = _freqs(items[0].info, opts)
    lo, hi = [np.inf, np.inf], [-np.inf, -np.inf]
    boxes: list[tuple[float, float, float, float] | None] = []
    for item in items:
        inside = np.zeros((item.info.axes.ny, item.info.axes.nx), dtype=bool)
        for f in {float(freqs.min()), float(freqs.max())}:
            inside |= responses(item, f)[1] >= opts.pb_cutoff
        yy, xx = np.nonzero(inside)
        if yy.size == 0:
            boxes.append(None)
            continue
        ra, dec = item.info.wcs.pixel_to_world_values(xx, yy)
        ox, oy = wcs_out.world_to_pixel_values(ra, dec)
        box = (float(np.min(oy)), float(np.max(oy)), float(np.min(ox)), float(np.max(ox)))
        boxes.append(box)
        lo = [min(lo[0], box[0]), min(lo[1], box[2])]
        hi = [max(hi[0], box[1]), max(hi[1], box[3])]
    if not np.isfinite(lo[0]):
        raise FlintImageError("the mosaic is empty: no input pixel is above the primary-beam cutoff")
    if not opts.trim:
        lo, hi = [0.0, 0.0], [ny - 1.0, nx - 1.0]
    y0, x0 = max(0, int(np.floor(lo[0]))), max(0, int(np.floor(lo[1])))
    y1, x1 = min(ny, int(np.ceil(hi[0])) + 1), min(nx, int(np.ceil(hi[1])) + 1)
    for item, found in zip(items, boxes, strict=True):
        if found is None:
            item.box = (slice(0, 0), slice(0, 0))
            continue
        by0, bx0 = max(y0, int(np.floor(found[0])) - 1), max(x0, int(np.floor(found[2])) - 1)
        by1, bx1 = min(y1, int(np.ceil(found[1])) + 2), min(x1, int(np.ceil(found[3])) + 2)
        item.box = (slice(by0 - y0, by1 - y0), slice(bx0 - x0, bx1 - x0))
    return wcs_out[y0:y1, x0:x1], (y1 - y0, x1 - x0)


def _freqs(info: CubeInfo, opts: LinmosOptions) -> NDArray[np.float64]:
    if opts.freq_hz is not None:
        return np.full(info.nchan, float(opts.freq_hz))
    if not np.all(np.isfinite(info.freqs_hz)):
        raise FlintImageError(f"{info.path}: no frequency in its header; set it with --freq-hz")
    return info.freqs_hz


def _channel_block(items: list[_Input], npol: int, shape_out: tuple[int, int], nchan: int, block_mb: float) -> int:
    """Channels mosaicked together within ``block_mb``: per channel, the block holds the mosaic's
    sums (2 x npol planes) and, for one input at a time, ~8 float64 copies of an input plane (the
    plane, its primary beam, Stokes I, the stack reproject takes and its spline prefilter) and ~7
    of its box on the mosaic grid (the interpolated values and the weighted terms). Measured in
    the pol demo's 512-pixel cubes: ~47 MB per channel against 42 MB estimated."""
    if block_mb <= 0:
        return 1
    ny, nx = shape_out
    biggest_in = max(i.info.axes.ny * i.info.axes.nx for i in items)
    biggest_box = max((i.box[0].stop - i.box[0].start) * (i.box[1].stop - i.box[1].start) for i in items)
    per_channel = 8 * (2 * npol * ny * nx + 8 * biggest_in + 7 * biggest_box)
    return int(max(1, min(nchan, block_mb * 1e6 // per_channel)))


def _run_linmos_cube(paths: list[Path], opts: LinmosOptions, output: str | os.PathLike[str] | None) -> LinmosResult:
    """Mosaic cubes a block of channels at a time with bounded memory (see the module docstring)."""
    import contextlib

    items = _inputs(paths, opts)
    out, weight_out = output_paths(paths, output)
    ref = items[0].info
    responses = _Responses(opts)
    wcs_out, (ny, nx) = _grid(items, opts, responses)
    freqs = _freqs(ref, opts)
    ref_beams = ref.beams
    assert ref_beams is not None
    for item in items[1:]:
        b = item.info.beams
        assert b is not None
        if not np.allclose(b.bmaj_arcsec, ref_beams.bmaj_arcsec, rtol=0.01, equal_nan=True):
            logger.warning("%s: restoring beams differ from %s's by > 1 %%; convolve to a common beam first (flint convol)", item.info.path, ref.path)
    header = cube_header(wcs_out.to_header(), ny, nx, ref.header)
    header["HISTORY"] = (
        f"flint.linmos: {len(paths)} cubes, PB "
        + (f"holography {opts.pb_cube.name}" if opts.pb_cube else f"Gaussian FWHM {opts.pb_fwhm_deg} deg at {opts.pb_ref_freq_hz:.4g} Hz")
        + f", cutoff {opts.pb_cutoff}"
    )
    for path in paths:
        header["HISTORY"] = f"flint.linmos input: {path.name}"
    wheader = header.copy()
    wheader["BUNIT"] = ("(JY/BEAM)^-2", "inverse variance of the mosaic")
    for key in ("BMAJ", "BMIN", "BPA"):
        wheader.remove(key, ignore_missing=True)
    npol = ref.npol
    bmin = np.concatenate([np.ravel(i.info.beams.bmin_arcsec) for i in items if i.info.beams is not None])
    bmin = bmin[np.isfinite(bmin) & (bmin > 0)]
    pixel = min(i.info.wcs.celestial.proj_plane_pixel_scales()[0].to_value("arcsec") for i in items)
    order = _order(opts, float(bmin.min()) if bmin.size else 0.0, pixel)
    noises: list[list[float]] = [[] for _ in items]
    borders = [
        opts.edge_beams * float(np.nanmax(i.info.beams.bmaj_arcsec)) / i.info.wcs.celestial.proj_plane_pixel_scales()[0].to_value("arcsec")
        if opts.edge_beams > 0 and i.info.beams is not None else 0.0
        for i in items
    ]
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(CubeReader(i.info.path, i.info)) for i in items]
        i_readers = [
            None if i.i_source is None else (r if i.i_source is i.info else stack.enter_context(CubeReader(i.i_source.path, i.i_source)))
            for i, r in zip(items, readers, strict=True)
        ]
        writer = stack.enter_context(CubeWriter(out, header, beams=ref_beams))
        wwriter = stack.enter_context(CubeWriter(weight_out, wheader)) if opts.write_weight else None
        block = _channel_block(items, npol, (ny, nx), ref.nchan, opts.block_mb)
        for c0 in range(0, ref.nchan, block):
            chans = list(range(c0, min(ref.nchan, c0 + block)))
            num = np.zeros((len(chans), npol, ny, nx))
            den = np.zeros((len(chans), npol, ny, nx))
            for k, (item, reader, ireader) in enumerate(zip(items, readers, i_readers, strict=True)):
                ys, xs = item.box
                if ys.stop <= ys.start or xs.stop <= xs.start:
                    continue
                resps = [responses(item, float(freqs[c])) for c in chans]
                i_planes: list[NDArray[Any] | None] = [None] * len(chans)
                if ireader is not None and item.i_source is not None:
                    i_planes = [ireader.plane(c, item.i_source.stokes.index(1)) for c in chans]
                sub_wcs = wcs_out[ys, xs]
                sub_shape = (ys.stop - ys.start, xs.stop - xs.start)
                for p, code in enumerate(ref.stokes):
                    rows, planes, pbs, sigmas = [], [], [], []
                    for j, (c, resp, i_plane) in enumerate(zip(chans, resps, i_planes, strict=True)):
                        plane = reader.plane(c, p)
                        if borders[k] > 0:
                            plane = blank_edge(plane, borders[k])
                        sigma = robust_rms(plane) if opts.noise == "mad" else 1.0
                        if not np.isfinite(sigma) or sigma <= 0:
                            logger.warning("%s: channel %d Stokes %s is blank; left out", item.info.path.name, c, _names([code]))
                            continue
                        if p == 0 or code == 1:
                            noises[k].append(sigma)
                        pb = resp[1]
                        if i_plane is not None and code in (2, 3, 4) and code in resp:
                            with np.errstate(divide="ignore", invalid="ignore"):
                                leak = np.where(pb > 0, resp[code] / pb, 0.0)
                            plane = plane - leak * i_plane
                        rows.append(j)
                        planes.append(plane)
                        pbs.append(pb)
                        sigmas.append(sigma)
                    if not rows:
                        continue
                    n_p, d_p = _coadd_plane(np.stack(planes), np.stack(pbs), np.asarray(sigmas), item.info.wcs, sub_wcs, sub_shape,
                                            order, opts.pb_cutoff)
                    del planes, pbs
                    num[rows, p, ys, xs] += n_p
                    den[rows, p, ys, xs] += d_p
            for j, c in enumerate(chans):
                for p in range(npol):
                    with np.errstate(divide="ignore", invalid="ignore"):
                        writer.write_plane(np.where(den[j, p] > 0, num[j, p] / den[j, p], np.nan), chan=c, pol=p)
                    if wwriter is not None:
                        wwriter.write_plane(den[j, p], chan=c, pol=p)
            logger.info("linmos channels %d-%d of %d done", chans[0] + 1, chans[-1] + 1, ref.nchan)
    noise = tuple(float(np.median(n)) if n else float("nan") for n in noises)
    return LinmosResult(mosaic=out, weight=weight_out if opts.write_weight else None, noise_jy=noise)
