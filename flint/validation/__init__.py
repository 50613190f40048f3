"""Validate a source catalogue against a reference catalogue, honestly.

The reference is by default the simulator's truth (``SB<sbid>.<field>.sky.csv``), but
survey tables work too: VizieR FITS, CSV and VOTable in NVSS, SUMSS, RACS-low or
ICRF-like (position-only) layouts (see :mod:`flint.validation._catalogues` for the
column, unit and frequency rules). Reference fluxes are scaled to the image frequency
with their spectral index (default -0.8).

:func:`run_validation` reports

- completeness, the flux ratio (median and robust scatter) and astrometric offsets;
- ``noise_jy``: the median of the BANE rms map in the mosaic's inner region (linmos
  weight >= half its peak), ``thermal_jy`` (natural-weighting Stokes-I thermal noise of
  one beam from the MSs' weights and flags, :mod:`flint.validation._thermal`) and their
  ratio ``noise_to_thermal``;
- ``spurious_fraction``: components >= 5 sigma (peak / local rms) with no reference
  source within the match radius, overall, in the inner region and per SNR bin
  (5-7, 7-10, 10-20, >20), and the completeness per bin of the reference sources'
  apparent peak over the local noise;

and writes::

    <prefix>.validation.png   one-page figure (matched: circles, spurious: red crosses,
                              missed reference sources: squares)
    <prefix>.matches.csv      one row per reference source in the field (matched or not)
    <prefix>.validation.csv   the summary numbers (metric, value)
"""

from __future__ import annotations

from flint.validation._catalogues import (
    ReferenceCatalogue,
    ReferenceColumns,
    read_catalogue,
    read_reference,
    read_table,
)
from flint.validation._core import ValidationOptions, ValidationResult, beside_image, run_validation
from flint.validation._report import summary_lines
from flint.validation._stats import SnrBin, match_catalogues
from flint.validation._thermal import (
    ThermalNoise,
    thermal_noise,
    thermal_noise_from_counts,
    thermal_noise_of,
)

__all__ = [
    "ValidationOptions",
    "ValidationResult",
    "ReferenceCatalogue",
    "ReferenceColumns",
    "SnrBin",
    "ThermalNoise",
    "run_validation",
    "read_reference",
    "read_catalogue",
    "read_table",
    "match_catalogues",
    "thermal_noise",
    "thermal_noise_of",
    "thermal_noise_from_counts",
    "summary_lines",
    "beside_image",
]
