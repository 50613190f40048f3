"""Divergence of a WSClean clean, read from WSClean's own output and its model image.

Used by :func:`flint.imaging.wsclean_workdir` (WSClean 3.1 has no ``-divergence-limit``).
WSClean 3.1 prints, for every major iteration (``== Deconvolving (N) ==``)::

    Estimated standard deviation of background noise: 49.23 mJy     (with -auto-threshold/-auto-mask)
    Initial peak: 774.23 mJy at 145,97                               (Högbom/Clark clean; once per
                                                                      sub-image with -parallel-deconvolution)
    Starting multi-scale cleaning. Start peak=774.23 mJy, major iteration threshold=154.85 mJy
    Iteration 5, scale 0 px : 617.33 mJy at 167,172                  (multi-scale minor iterations)
    Stopped on peak 154.84 mJy, because ...

Flux densities are written as ``<number> <prefix>Jy`` (``µJy``, ``mJy``, ``Jy``, ``KJy``). A clean
has diverged when a later major iteration starts from a peak (or a residual noise) more than
``divergence_limit`` times that of the first, when any flux WSClean prints in the deconvolution is
not finite, or when the written model image has non-finite pixels where the PSF is finite.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flint._imaging_cubes import wsclean_files
from flint.errors import FlintCommandError

if TYPE_CHECKING:
    from flint.imaging import WSCleanOptions

__all__ = [
    "MajorIteration",
    "major_iterations",
    "divergence_in_output",
    "divergence_in_model",
    "find_divergence",
    "safer_options",
    "describe_settings",
    "what_to_change",
    "WSCleanDivergedError",
]

_FLUX = r"(?P<value>[-+]?(?:(?i:nan|inf)|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?))\s*(?P<prefix>[^\s\d.=:,]{0,3}?)Jy\b"
_FLUX_RE = re.compile(_FLUX)
_SECTION_RE = re.compile(r"^\s*== Deconvolving \((\d+)\) ==", re.M)
_START_PEAK_RE = re.compile(rf"^\s*(?:Initial peak: |Starting multi-scale cleaning\. Start peak=){_FLUX}", re.M)
_NOISE_RE = re.compile(rf"^\s*Estimated standard deviation of background noise: {_FLUX}", re.M)
_PREFIX = {"": 1.0, "m": 1e-3, "K": 1e3, "k": 1e3, "n": 1e-9}  # anything else WSClean writes is micro (µ)


def _jy(m: re.Match[str]) -> float:
    return float(m["value"]) * _PREFIX.get(m["prefix"], 1e-6)


@dataclass(frozen=True)
class MajorIteration:
    """What WSClean printed while deconvolving in one major iteration."""

    number: int
    peak_jy: float | None
    """Largest absolute peak it started from (``None``: not printed, e.g. ``-python-deconvolution``)."""
    noise_jy: float | None
    """Residual noise it estimated at the start (``None`` without ``-auto-threshold``/``-auto-mask``)."""
    nonfinite: str | None = None
    """The first printed line holding a non-finite flux density."""


def major_iterations(output: str) -> list[MajorIteration]:
    """The major iterations in WSClean's output, in order.

    Examples
    --------
    >>> major_iterations("== Deconvolving (1) ==\\nInitial peak: 1.5 Jy at 3,4\\n== Deconvolving (2) ==\\nInitial peak: 2 KJy at 3,4")
    [MajorIteration(number=1, peak_jy=1.5, noise_jy=None, nonfinite=None), MajorIteration(number=2, peak_jy=2000.0, noise_jy=None, nonfinite=None)]
    """
    heads = list(_SECTION_RE.finditer(output))
    out: list[MajorIteration] = []
    for head, nxt in zip(heads, [*heads[1:], None], strict=True):
        text = output[head.end() : nxt.start() if nxt is not None else len(output)]
        peaks = [abs(_jy(m)) for m in _START_PEAK_RE.finditer(text)]
        noise = _NOISE_RE.search(text)
        bad = next((m for m in _FLUX_RE.finditer(text) if not math.isfinite(_jy(m))), None)
        line = text[text.rfind("\n", 0, bad.start()) + 1 :].split("\n", 1)[0].strip() if bad is not None else None
        out.append(MajorIteration(int(head[1]), max(peaks) if peaks else None, _jy(noise) if noise else None, line))
    return out


def _nice(jy: float) -> str:
    for scale, unit in ((1.0, "Jy"), (1e-3, "mJy")):
        if abs(jy) >= scale:
            return f"{jy / scale:.3g} {unit}"
    return f"{jy / 1e-6:.3g} µJy"


def _groups(its: list[MajorIteration]) -> list[list[MajorIteration]]:
    """The major iterations per deconvolution group: WSClean images and cleans independent groups
    (channels with ``-channels-out`` and no ``-join-channels``) one after another, each numbering
    its major iterations from 1; a line channel's peak is no divergence of the channel before it."""
    groups: list[list[MajorIteration]] = []
    for it in its:
        if not groups or it.number <= groups[-1][-1].number:
            groups.append([])
        groups[-1].append(it)
    return groups


def divergence_in_output(output: str, limit: float, peaks: bool = True) -> str | None:
    """Why WSClean's printed peaks or noise show a diverging clean, or ``None``.

    ``peaks=False`` (for ``-local-rms`` runs) compares the noise only: with a local-RMS map
    WSClean starts each major iteration from the pixel of highest signal-to-noise against that
    map and prints *its* flux, so the printed peaks of two major iterations can be different
    sources: a 24 mJy source in a quiet region first, then a 353 mJy one once the artefacts
    around it were cleaned and its local RMS fell (288 channels x 480 integrations of the
    simulated field, round 0, which WSClean cleaned to its threshold in 5 major iterations).

    Examples
    --------
    >>> log = "== Deconvolving (1) ==\\nInitial peak: 1.2 Jy at 1,1\\n== Deconvolving (2) ==\\nInitial peak: 35 Jy at 1,1"
    >>> divergence_in_output(log, 4.0)
    'the peak residual grew from 1.2 Jy to 35 Jy by major iteration 2 of 2, beyond the limit of 4x'
    """
    its = major_iterations(output)
    bad = next((it for it in its if it.nonfinite), None)
    if bad is not None:
        return f"WSClean printed a non-finite value in major iteration {bad.number}: '{bad.nonfinite}'"
    for group in _groups(its):
        checks = (("peak residual", [it.peak_jy for it in group]),) if peaks else ()
        for what, values in (*checks, ("residual noise", [it.noise_jy for it in group])):
            first = values[0] if values else None
            later = [(v, it.number) for v, it in zip(values[1:], group[1:], strict=True) if v is not None]
            if first is None or first <= 0 or not later:
                continue
            worst, number = max(later)
            if worst > limit * first:
                return f"the {what} grew from {_nice(first)} to {_nice(worst)} by major iteration {number} of {len(group)}, beyond the limit of {limit:g}x"
    return None


def divergence_in_model(model: Path, psf: Path, what: str = "model image") -> str | None:
    """Why the model image shows a diverged clean (non-finite pixels where the PSF is finite), or ``None``."""
    from astropy.io import fits

    with fits.open(model, memmap=True) as hdul:
        bad = ~np.isfinite(hdul[0].data)
    if not bad.any():
        return None
    with fits.open(psf, memmap=True) as hdul:
        valid = np.isfinite(hdul[0].data)
    n = int((bad & valid).sum()) if valid.shape == bad.shape else int(bad.sum()) * bool(valid.any())
    return f"the {what} has {n} non-finite pixel(s)" if n else None


def find_divergence(output: str, name: Path, options: WSCleanOptions) -> str | None:
    """Why a finished WSClean run (its output, its files under ``-name`` ``name``) diverged, or ``None``.

    ``None`` too when the check is off (``divergence_limit`` ``None`` or 0) or nothing was cleaned.
    Only the MFS (or single) model images are read, and a PSF only when a model has non-finite pixels.
    """
    if not options.divergence_limit or options.niter == 0:
        return None
    reason = divergence_in_output(output, options.divergence_limit, peaks=not options.local_rms)
    files = [f for f in wsclean_files(name, options) if f.chan is None and f.path.exists()]
    psf = next((f.path for f in files if f.kind == "psf"), None)
    for f in files:
        if reason is None and f.kind == "model" and psf is not None:
            reason = divergence_in_model(f.path, psf, "model image" if options.pols == ("I",) else f"{f.pol} model image")
    return reason


def safer_options(options: WSCleanOptions) -> WSCleanOptions:
    """The settings of the retry after a divergence (see ``WSCleanOptions.divergence_limit``)."""
    o = options
    # lower gains need more iterations to clean as deep
    safer: dict[str, float] = {"gain": o.gain / 2, "mgain": min(o.mgain, 0.5), "niter": 2 * o.niter, "nmiter": 2 * o.nmiter}
    if o.multiscale:
        safer["multiscale_scale_bias"] = max(o.multiscale_scale_bias or 0.6, 0.8)
    return o.with_options(**safer)


def what_to_change(o: WSCleanOptions) -> str:
    """The flags to try when a clean diverges even at the retry's settings."""
    keep = "; is the data column calibrated? (--divergence-limit 0 keeps such an image)"
    if o.auto_mask is None and o.fits_mask is None:
        return "clean within a mask (--auto-mask 5 or --fits-mask), lower --gain and --mgain, or raise --auto-threshold" + keep
    return "lower --gain and --mgain, raise --auto-threshold, or clean within a tighter mask (--fits-mask)" + keep


def describe_settings(o: WSCleanOptions) -> str:
    """``gain 0.05, mgain 0.5, niter 40000, nmiter 20[, multiscale scale bias 0.8]``."""
    text = f"gain {o.gain:g}, mgain {o.mgain:g}, niter {o.niter}, nmiter {o.nmiter}"
    return text + (f", multiscale scale bias {o.multiscale_scale_bias:g}" if o.multiscale else "")


class WSCleanDivergedError(FlintCommandError):
    """WSClean exited 0, but its clean diverged also when re-run at safer settings."""

    def __init__(self, argv: Sequence[str], message: str) -> None:
        super().__init__(list(argv), 0, message)
        self.message = message
        self.args = (message,)  # one line: WSClean itself did not fail

    def __reduce__(self) -> tuple[type[WSCleanDivergedError], tuple[list[str], str]]:
        return (type(self), (self.argv, self.message))  # rebuilt where a Dask worker's error arrives
