"""Source finding: BANE background/noise maps and aegean components (AegeanTools).

:func:`run_source_finding` writes, beside the image (``<stem>`` = image name without
``.fits``)::

    <stem>.bkg.fits, <stem>.rms.fits     BANE background and noise maps
    <stem>.comp.csv, <stem>.comp.fits    aegean components (one row each)

Catalogue columns follow aegean's: ``ra, dec`` (deg), ``err_ra, err_dec`` (deg),
``peak_flux`` (Jy/beam), ``int_flux`` (Jy), their errors, ``local_rms``, ``background``,
``a, b`` (arcsec, FWHM), ``pa`` (deg), ``flags``, plus ``island``, ``source`` and ``snr``.

Reproducibility: the same image gives the same catalogue, byte for byte. aegean's
least-squares fits go through numpy's BLAS, whose sums depend on the number of BLAS
threads (and, in a long-lived process, on where the heap happens to place each island's
arrays); a faint, ill-conditioned fit can amplify those last-bit differences to percent
level. So by default BANE + aegean run in a fresh Python process (``isolate``) with a
fixed hash seed and ``blas_threads`` (1) BLAS threads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from flint.errors import FlintCommandError, FlintImageError
from flint.images import JY_PER_BEAM, read_beam, read_header
from flint.io import atomic_path
from flint.options import BaseOptions
from flint.runner import run_command

__all__ = ["SourceFindingOptions", "SourceFindingResult", "run_source_finding", "CATALOGUE_COLUMNS"]

logger = logging.getLogger(__name__)

#: columns of the component catalogue, in order
CATALOGUE_COLUMNS = (
    "island", "source", "ra", "err_ra", "dec", "err_dec", "peak_flux", "err_peak_flux",
    "int_flux", "err_int_flux", "local_rms", "background", "snr", "a", "err_a", "b", "err_b",
    "pa", "err_pa", "flags",
)


class SourceFindingOptions(BaseOptions):
    """How BANE and aegean look for sources."""

    innerclip: float = Field(default=5.0, gt=0.0)
    """Seed threshold: islands must have a pixel this many sigma above the background."""
    outerclip: float = Field(default=4.0, gt=0.0)
    """Flood threshold: islands grow down to this many sigma."""
    box_size: int | None = Field(default=None, ge=3)
    """BANE box size in pixels (``None``: about 5 x 5 synthesised beams, BANE's default)."""
    step_size: int | None = Field(default=None, ge=1)
    """BANE grid step in pixels (``None``: BANE's default)."""
    max_summits: int | None = Field(default=None, ge=1)
    """Fit at most this many components per island."""
    cores: int = Field(default=1, ge=1)
    """Processes BANE and aegean may use."""
    blas_threads: int = Field(default=1, ge=1)
    """Threads numpy's BLAS may use in the fits. The catalogue depends on it (BLAS splits its
    sums by thread); keep it fixed (1) for run-to-run identical catalogues."""
    isolate: bool = True
    """Run BANE and aegean in a fresh Python process, so the catalogue does not depend on
    what ran before in this one (identical images give identical catalogues)."""
    keep_maps: bool = True
    """Keep the BANE background and noise maps."""
    tile_size: int | None = Field(default=3072, ge=64)
    """Search images larger than this (pixels, on a side) in overlapping tiles, so memory holds
    one tile, not the whole mosaic (BANE + aegean on a 36-beam mosaic of 61 M pixels peaked at
    3.2 GB); every component is kept once, by the tile whose core holds it. ``None``: the whole
    image at once."""
    tile_margin: int | None = Field(default=None, ge=0)
    """Pixels each tile reads beyond its core (``None``: BANE's box plus two grid steps); an
    island larger than this is cut at the core's edge."""


@dataclass(frozen=True)
class SourceFindingResult:
    """What source finding wrote."""

    image: Path
    catalogue: Path
    """The component catalogue as CSV."""
    catalogue_fits: Path
    """The same catalogue as a FITS table."""
    rms: Path | None
    bkg: Path | None
    n_components: int


def _patch_numpy_for_aegean() -> None:
    """AegeanTools 2.3.5 catches ``np.linalg.linalg.LinAlgError``, gone in numpy >= 2.4.

    Restore just that name (the same exception class numpy exports), so a singular fit
    covariance is handled as AegeanTools intends instead of crashing.
    """
    if not hasattr(np.linalg, "linalg"):
        np.linalg.linalg = types.SimpleNamespace(LinAlgError=np.linalg.LinAlgError)  # type: ignore[attr-defined]


def _import_aegean() -> tuple[Any, Any]:
    """Import BANE and SourceFinder, undoing AegeanTools' global logging set-up.

    AegeanTools adds its own console handler at import and switches on
    ``logging.captureWarnings``; flint leaves handlers to its entry points.
    """
    _patch_numpy_for_aegean()
    before = warnings.showwarning
    from AegeanTools import BANE
    from AegeanTools.source_finder import SourceFinder

    if warnings.showwarning is not before:
        logging.captureWarnings(False)
    aegean_logger = logging.getLogger("AegeanTools")
    aegean_logger.setLevel(logging.NOTSET)  # follow the application's level
    for handler in list(aegean_logger.handlers):
        if type(handler) is logging.StreamHandler:
            aegean_logger.removeHandler(handler)
    return BANE, SourceFinder


def _stem(image: Path) -> str:
    name = image.name
    for suffix in (".fits", ".FITS", ".fit"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_image(image: Path) -> int:
    header = read_header(image)
    read_beam(image)  # clear error if there is no restoring beam
    unit = str(header.get("BUNIT", "")).strip().upper().replace(" ", "")
    if unit and unit != JY_PER_BEAM:
        raise FlintImageError(f"{image}: BUNIT is {header['BUNIT']!r}; source finding needs a Jy/beam image")
    naxis = int(header.get("NAXIS", 0))
    shape = [int(header.get(f"NAXIS{i}", 1)) for i in range(3, naxis + 1)]
    if any(n != 1 for n in shape):
        raise FlintImageError(f"{image}: has more than one plane; give a single-plane (e.g. MFS) image")
    return naxis


def _components_table(components: list[Any]) -> Any:
    from astropy.table import Table

    rows: dict[str, list[Any]] = {c: [] for c in CATALOGUE_COLUMNS}
    for comp in components:
        for col in CATALOGUE_COLUMNS:
            if col == "snr":
                rms = float(comp.local_rms)
                rows[col].append(float(comp.peak_flux) / rms if rms > 0 else np.nan)
            else:
                rows[col].append(getattr(comp, col))
    tab = Table(rows)
    for col in CATALOGUE_COLUMNS:
        if col in ("island", "source", "flags"):
            tab[col] = np.asarray(tab[col], dtype=np.int64) if len(tab) else np.zeros(0, dtype=np.int64)
        else:
            tab[col] = np.asarray(tab[col], dtype=np.float64) if len(tab) else np.zeros(0)
    tab.sort(["island", "source"])
    return tab


def run_source_finding(
    image: str | os.PathLike[str], options: SourceFindingOptions | None = None
) -> SourceFindingResult:
    """Find sources in a restored image with BANE + aegean.

    Parameters
    ----------
    image
        A restored single-plane FITS image in Jy/beam with BMAJ/BMIN/BPA.
    options
        Source-finding options.

    Returns
    -------
    SourceFindingResult
        Catalogue (CSV and FITS) and BANE maps, written beside the image.
    """
    opts = options or SourceFindingOptions()
    image = Path(image)
    naxis = _check_image(image)
    from flint._source_finding_tiles import find_in_tiles, needs_tiles

    if needs_tiles(read_header(image), opts):
        return find_in_tiles(image, opts)
    if opts.isolate:
        return _run_isolated(image, opts)
    from threadpoolctl import threadpool_limits  # with AegeanTools (via scikit-learn)

    with threadpool_limits(limits=opts.blas_threads, user_api="blas"):
        return _find(image, opts, naxis)


def _run_isolated(image: Path, opts: SourceFindingOptions) -> SourceFindingResult:
    """:func:`run_source_finding` in a fresh interpreter (``python -m flint.source_finding``)."""
    threads = str(opts.blas_threads)
    env = {"PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    child = opts.with_options(isolate=False).model_dump_json()
    try:
        out = run_command([sys.executable, "-m", "flint.source_finding", os.fspath(image.absolute()), child], env=env)
    except FlintCommandError as exc:
        last = [line for line in exc.stderr_tail.splitlines() if line.strip()][-1:] or ["no output"]
        raise FlintImageError(f"{image}: source finding failed ({last[0].strip()})") from None
    result = json.loads(out.strip().splitlines()[-1])
    return SourceFindingResult(
        image=image,
        catalogue=Path(result["catalogue"]),
        catalogue_fits=Path(result["catalogue_fits"]),
        rms=Path(result["rms"]) if result["rms"] else None,
        bkg=Path(result["bkg"]) if result["bkg"] else None,
        n_components=int(result["n_components"]),
    )


def _find(image: Path, opts: SourceFindingOptions, naxis: int) -> SourceFindingResult:
    BANE, SourceFinder = _import_aegean()
    stem = _stem(image)
    out_dir = image.parent
    finals = {
        "bkg": out_dir / f"{stem}.bkg.fits",
        "rms": out_dir / f"{stem}.rms.fits",
        "csv": out_dir / f"{stem}.comp.csv",
        "fits": out_dir / f"{stem}.comp.fits",
    }
    work = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=".aegean", dir=out_dir))
    try:
        base = work / stem
        step = (opts.step_size, opts.step_size) if opts.step_size else None
        box = (opts.box_size, opts.box_size) if opts.box_size else None
        BANE.filter_image(str(image), out_base=str(base), step_size=step, box_size=box, cores=opts.cores)
        bkg, rms = Path(f"{base}_bkg.fits"), Path(f"{base}_rms.fits")
        if not (bkg.exists() and rms.exists()):
            raise FlintImageError(f"{image}: BANE wrote no background/noise maps")
        finder = SourceFinder()
        with warnings.catch_warnings():
            # aegean handles ill-conditioned fit covariances itself; scipy still warns
            warnings.filterwarnings("ignore", message=".*ill-conditioned matrix.*")
            comps = finder.find_sources_in_image(
                str(image),
                bkgin=str(bkg),
                rmsin=str(rms),
                innerclip=opts.innerclip,
                outerclip=opts.outerclip,
                max_summits=opts.max_summits,
                cores=opts.cores,
                cube_index=0 if naxis > 2 else None,
                progress=False,
            )
        table = _components_table(list(comps or []))
        with atomic_path(finals["csv"]) as tmp:
            table.write(tmp, format="ascii.csv")
        with atomic_path(finals["fits"]) as tmp:
            table.write(tmp, format="fits")
        if opts.keep_maps:
            os.replace(bkg, finals["bkg"])
            os.replace(rms, finals["rms"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("%s: %d components -> %s", image, len(table), finals["csv"])
    return SourceFindingResult(
        image=image,
        catalogue=finals["csv"],
        catalogue_fits=finals["fits"],
        rms=finals["rms"] if opts.keep_maps else None,
        bkg=finals["bkg"] if opts.keep_maps else None,
        n_components=len(table),
    )


def _main(argv: list[str]) -> int:
    """``python -m flint.source_finding IMAGE OPTIONS_JSON``: one run, its result as JSON."""
    image, options = argv
    logging.basicConfig(level=logging.WARNING)
    r = run_source_finding(image, SourceFindingOptions.model_validate_json(options))
    fields = {"catalogue": r.catalogue, "catalogue_fits": r.catalogue_fits, "rms": r.rms, "bkg": r.bkg}
    print(json.dumps({k: os.fspath(v) if v else None for k, v in fields.items()} | {"n_components": r.n_components}))
    return 0


if __name__ == "__main__":  # pragma: no cover - run by _run_isolated in a child process
    sys.exit(_main(sys.argv[1:]))
