"""Reading reference and component catalogues: FITS, CSV and VOTable, survey layouts.

Real survey tables (VizieR's NVSS, SUMSS, RACS-low, ICRF ...) name their columns
differently and often carry a position twice: numeric degrees (``_RAJ2000``) beside a
sexagesimal string (``RAJ2000``). The rules, applied in this order:

- **Columns**: an explicit name (``--ra-col``/``--dec-col``/``--flux-col``) wins; else the
  first of a list of known names, **numeric columns before sexagesimal ones**. Sexagesimal
  RA is read in hours, Dec in degrees.
- **Units** come from the table's metadata (FITS ``TUNIT``, VOTable ``unit``); a CSV has
  none, so the unit is taken from ``--flux-unit``, else from the column name (``flux_jy``,
  ``..._mjy``, flint/aegean's ``int_flux``/``peak_flux`` are Jy), else it is an error that
  names ``--flux-unit``.
- **Reference frequency**: ``--ref-freq``; else a per-source column (``ref_freq_hz``); else
  the flux column's name or description (``S1.4`` is 1.4 GHz, "Integrated 1.4GHz flux
  density"); else a frequency keyword of the table (``FREQ``, ``REFFREQ``); else a known
  survey named in the table's metadata or file name (NVSS 1.4 GHz, SUMSS 843 MHz,
  RACS-low 887.5 MHz); else unknown (the caller asks for ``--ref-freq`` when it needs it).
- A table with no flux column is a **position-only** reference (ICRF-like): astrometry only.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flint.errors import FlintInputError

__all__ = [
    "ReferenceCatalogue",
    "ReferenceColumns",
    "read_table",
    "read_reference",
    "read_catalogue",
    "KNOWN_SURVEYS_HZ",
]

logger = logging.getLogger(__name__)

#: RA/Dec names, in order of preference (numeric columns are still preferred over strings)
_RA_NAMES = ("ra", "ra_deg", "_raj2000", "raj2000", "ra_j2000", "radeg", "_ra", "ra_icrs", "raicrs", "_ra.icrs", "_ra_icrs")
_DEC_NAMES = ("dec", "dec_deg", "_dej2000", "dej2000", "decj2000", "dec_j2000", "dedeg", "_de", "de_icrs", "dec_icrs", "deicrs", "_de.icrs", "_de_icrs")
#: flux names: integrated before peak; flint/aegean, PyBDSF/RACS, NVSS, SUMSS
_FLUX_NAMES = ("flux_jy", "int_flux", "total_flux", "flux_int", "s1.4", "st", "sint", "fint", "ftot", "flux", "s", "peak_flux", "sp", "fpeak")
_ALPHA_NAMES = ("alpha", "spectral_index", "si", "spind")
_FREQ_NAMES = ("ref_freq_hz", "ref_freq", "freq_hz", "freq")
_NAME_NAMES = ("name", "source_name", "id", "uuid", "nvss", "sumss", "icrf", "gaussian_id", "source_id")
#: columns that flint (and aegean) write in Jy without saying so
_JY_BY_CONVENTION = ("flux_jy", "int_flux", "peak_flux", "flux")

#: known surveys: a lower-case tag found in the table's metadata or file name -> frequency (Hz)
KNOWN_SURVEYS_HZ: dict[str, float] = {
    "nvss": 1.4e9,
    "viii/65": 1.4e9,
    "sumss": 843.0e6,
    "viii/81": 843.0e6,
    "racs-low": 887.5e6,
    "racs_low": 887.5e6,
    "racs": 887.5e6,
    "j/other/pasa/38.58": 887.5e6,
}

_FREQ_IN_TEXT = re.compile(r"(\d+(?:\.\d+)?)\s*(ghz|mhz)", re.IGNORECASE)
_FREQ_IN_NAME = re.compile(r"^s_?(\d+(?:\.\d+)?)(ghz|mhz)?$", re.IGNORECASE)


@dataclass(frozen=True)
class ReferenceColumns:
    """Which columns of a reference table to use and how (``None``: found automatically)."""

    ra: str | None = None
    dec: str | None = None
    flux: str | None = None
    flux_unit: str | None = None
    ref_freq_hz: float | None = None
    spectral_index: float = -0.8


@dataclass(frozen=True)
class ReferenceCatalogue:
    """Reference sources: positions (deg), flux (Jy) at ``ref_freq_hz``, spectral index.

    ``flux_jy`` is all-NaN for a position-only reference (``has_flux`` False);
    ``ref_freq_hz`` is NaN where the reference frequency is unknown.
    """

    name: list[str]
    ra_deg: NDArray[np.float64]
    dec_deg: NDArray[np.float64]
    flux_jy: NDArray[np.float64]
    alpha: NDArray[np.float64]
    ref_freq_hz: NDArray[np.float64]
    has_flux: bool = True
    columns: str = ""
    """How the table was read (for the log and the summary)."""

    def __len__(self) -> int:
        return len(self.name)

    def flux_at(self, freq_hz: float | None) -> NDArray[np.float64]:
        """Flux at ``freq_hz`` with each source's spectral index (unchanged if ``None``)."""
        if freq_hz is None:
            return self.flux_jy.copy()
        ok = np.isfinite(self.ref_freq_hz) & (self.ref_freq_hz > 0)
        scale = np.ones_like(self.flux_jy)
        scale[ok] = (freq_hz / self.ref_freq_hz[ok]) ** self.alpha[ok]
        return self.flux_jy * scale


# --------------------------------------------------------------------------- tables
def _formats(path: Path) -> list[str]:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return ["ascii.csv"]
    if name.endswith((".tsv", ".tsv.gz")):
        return ["ascii.tab"]
    if name.endswith((".vot", ".votable", ".xml", ".vot.gz", ".xml.gz")):
        return ["votable"]
    if name.endswith((".fits", ".fit", ".fits.gz", ".fts")):
        return ["fits"]
    return ["fits", "votable", "ascii.csv"]


def read_table(path: str | Path, what: str = "catalogue") -> Any:
    """Read a FITS (first table HDU), CSV or VOTable table into an astropy ``Table``.

    Any failure is one line naming the file (never astropy's list of formats).
    """
    from astropy.table import Table

    path = Path(path)
    if not path.exists():
        raise FlintInputError(f"{path}: no such {what}; check the path")
    if path.is_dir():
        raise FlintInputError(f"{path}: is a directory, not a {what} table (FITS, CSV or VOTable)")
    reason = "empty file"
    if path.stat().st_size:
        for fmt in _formats(path):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tab = Table.read(path, format=fmt)
            except Exception as exc:  # noqa: BLE001 - any reader failure becomes one line
                text = str(exc).strip()
                reason = text.splitlines()[0][:120] if text else type(exc).__name__
                continue
            if len(tab.colnames) == 0:
                reason = "no columns"
                continue
            return tab
    raise FlintInputError(f"{path}: not a readable {what} table (FITS, CSV or VOTable: {reason}); check the file")


def _find(tab: Any, names: tuple[str, ...], explicit: str | None, path: Path, flag: str) -> list[str]:
    """Columns matching ``names`` (or exactly ``explicit``), in order of preference."""
    if explicit is not None:
        lower = {c.lower(): c for c in tab.colnames}
        col = explicit if explicit in tab.colnames else lower.get(explicit.lower())
        if col is None:
            raise FlintInputError(f"{path}: has no column {explicit!r} (has {', '.join(tab.colnames)}); fix {flag}")
        return [col]
    lower = {c.lower(): c for c in tab.colnames}
    return [lower[n] for n in names if n in lower]


def _is_numeric(col: Any) -> bool:
    return np.asarray(col).dtype.kind in "fiu"


def _pick(tab: Any, names: tuple[str, ...], explicit: str | None, path: Path, what: str, flag: str, required: bool = True) -> str | None:
    """The preferred column: the first numeric candidate, else the first (sexagesimal) one."""
    found = _find(tab, names, explicit, path, flag)
    numeric = [c for c in found if _is_numeric(tab[c])]
    if numeric:
        return str(numeric[0])
    if found:
        return str(found[0])
    if required:
        raise FlintInputError(
            f"{path}: no {what} column (looked for {', '.join(names)}; has {', '.join(tab.colnames)}); give {flag}"
        )
    return None


def _filled(col: Any) -> NDArray[Any]:
    """The column's values: masked numbers as NaN, masked strings empty, bytes decoded."""
    data = col
    if hasattr(col, "filled") and getattr(col, "mask", None) is not None and np.any(col.mask):
        data = col.filled(np.nan) if _is_numeric(col) else col.filled("")
    arr = np.asarray(data)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "ascii", errors="replace")
    return arr


def _unit_of(col: Any) -> Any:
    """The column's astropy unit, or ``None`` (missing or unrecognised, e.g. ``h:m:s``)."""
    import astropy.units as u

    unit = getattr(col, "unit", None)
    if unit is None or isinstance(unit, u.UnrecognizedUnit):
        return None
    return unit


def _angle_deg(tab: Any, name: str, path: Path, is_ra: bool, flag: str) -> NDArray[np.float64]:
    """A position column in degrees: numeric with its unit (deg default), or sexagesimal."""
    import astropy.units as u
    from astropy.coordinates import Angle

    col = tab[name]
    if _is_numeric(col):
        values = np.asarray(_filled(col), dtype=np.float64)
        unit = _unit_of(col)
        if unit is None:
            return values
        try:
            return np.asarray((values * unit).to_value(u.deg), dtype=np.float64)
        except u.UnitConversionError:
            raise FlintInputError(f"{path}: column {name!r} has unit {unit}, not an angle; give {flag}") from None
    text = [str(v).strip() for v in _filled(col)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ang = Angle(text, unit=u.hourangle if is_ra else u.deg)
    except Exception:  # noqa: BLE001 - astropy raises several types for bad strings
        raise FlintInputError(f"{path}: column {name!r} is neither numeric nor sexagesimal (e.g. {text[0]!r}); give {flag}") from None
    return np.asarray(ang.to_value(u.deg), dtype=np.float64)


def _flux_jy(tab: Any, name: str, path: Path, unit_override: str | None) -> tuple[NDArray[np.float64], str]:
    """A flux column in Jy, and where its unit came from."""
    import astropy.units as u

    col = tab[name]
    if not _is_numeric(col):
        raise FlintInputError(f"{path}: flux column {name!r} is not numeric; give --flux-col")
    values = np.asarray(_filled(col), dtype=np.float64)
    lname = name.lower()
    if unit_override is not None:
        unit, source = u.Unit(unit_override), "--flux-unit"
    elif _unit_of(col) is not None:
        unit, source = _unit_of(col), "table metadata"
    elif lname.endswith("_mjy"):
        unit, source = u.mJy, "column name"
    elif lname.endswith("_jy") or lname in _JY_BY_CONVENTION:
        unit, source = u.Jy, "column name"
    else:
        raise FlintInputError(f"{path}: flux column {name!r} has no unit; give --flux-unit (e.g. mJy)")
    try:
        return np.asarray((values * unit).to_value(u.Jy), dtype=np.float64), f"{unit} ({source})"
    except u.UnitConversionError:
        raise FlintInputError(f"{path}: flux column {name!r} has unit {unit}, not a flux density; give --flux-unit") from None


def _freq_from_text(text: str, bare_name: bool = False) -> float | None:
    m = _FREQ_IN_NAME.match(text) if bare_name else _FREQ_IN_TEXT.search(text)
    if not m:
        return None
    value = float(m.group(1))
    unit = (m.group(2) or "").lower()
    if unit == "ghz" or (not unit and value < 100):
        return value * 1e9
    return value * 1e6


def _meta_text(tab: Any, path: Path) -> str:
    parts = [path.name]
    for key, value in tab.meta.items():
        if isinstance(value, str | int | float):
            parts.append(f"{key}={value}")
    return " ".join(parts).lower()


def _table_freq_hz(tab: Any, path: Path, flux: str | None) -> tuple[float | None, str]:
    """The reference frequency a table states about itself (see the module rules)."""
    if flux is not None:
        f = _freq_from_text(flux, bare_name=True)
        if f is not None:
            return f, f"flux column name {flux!r}"
        desc = str(getattr(tab[flux], "description", "") or "")
        f = _freq_from_text(desc)
        if f is not None:
            return f, f"description of {flux!r}"
    meta = {str(k).upper(): v for k, v in tab.meta.items()}
    for key in ("REF_FREQ_HZ", "REFFREQ", "FREQ", "FREQUENCY", "RESTFRQ"):
        v = meta.get(key)
        if isinstance(v, int | float) and v > 0:
            return float(v), f"table keyword {key}"
    text = _meta_text(tab, path)
    for tag, f in KNOWN_SURVEYS_HZ.items():
        if tag in text:
            return f, f"known survey {tag!r}"
    return None, "unknown"


def read_reference(path: str | Path, columns: ReferenceColumns | None = None) -> ReferenceCatalogue:
    """Read a reference catalogue (FITS, CSV or VOTable; flint, VizieR survey layouts).

    Parameters
    ----------
    path
        The table.
    columns
        Explicit columns, flux unit, reference frequency and default spectral index.
    """
    cols = columns or ReferenceColumns()
    path = Path(path)
    tab = read_table(path, "reference catalogue")
    ra = _pick(tab, _RA_NAMES, cols.ra, path, "RA", "--ra-col")
    dec = _pick(tab, _DEC_NAMES, cols.dec, path, "Dec", "--dec-col")
    assert ra is not None and dec is not None
    flux = _pick(tab, _FLUX_NAMES, cols.flux, path, "flux", "--flux-col", required=False)
    if flux is not None and not _is_numeric(tab[flux]):
        if cols.flux is not None:
            raise FlintInputError(f"{path}: flux column {flux!r} is not numeric; give --flux-col")
        flux = None
    n = len(tab)
    alpha_col = _pick(tab, _ALPHA_NAMES, None, path, "spectral index", "", required=False)
    alpha = np.full(n, cols.spectral_index)
    if alpha_col is not None and _is_numeric(tab[alpha_col]):
        given = np.asarray(_filled(tab[alpha_col]), dtype=np.float64)
        alpha = np.where(np.isfinite(given), given, cols.spectral_index)
    if flux is None:
        flux_jy, unit_note = np.full(n, np.nan), "none (position-only)"
    else:
        flux_jy, unit_note = _flux_jy(tab, flux, path, cols.flux_unit)
    freq_note = "--ref-freq"
    if cols.ref_freq_hz is not None:
        ref_freq = np.full(n, float(cols.ref_freq_hz))
    else:
        freq_col = _pick(tab, _FREQ_NAMES, None, path, "frequency", "", required=False)
        if freq_col is not None and _is_numeric(tab[freq_col]):
            import astropy.units as u

            unit = _unit_of(tab[freq_col]) or u.Hz
            ref_freq = np.asarray((np.asarray(_filled(tab[freq_col]), dtype=np.float64) * unit).to_value(u.Hz))
            freq_note = f"column {freq_col!r}"
        else:
            f, freq_note = _table_freq_hz(tab, path, flux)
            ref_freq = np.full(n, np.nan if f is None else f)
    name_col = _pick(tab, _NAME_NAMES, None, path, "name", "", required=False)
    names = [str(x).strip() for x in _filled(tab[name_col])] if name_col else [f"REF{i:04d}" for i in range(n)]
    note = (
        f"RA {ra!r}, Dec {dec!r}, flux {flux!r} in {unit_note}, reference frequency from {freq_note}, "
        f"spectral index {'column ' + repr(alpha_col) if alpha_col else cols.spectral_index}"
    )
    logger.info("%s: %d sources; %s", path, n, note)
    return ReferenceCatalogue(
        name=names,
        ra_deg=_angle_deg(tab, ra, path, True, "--ra-col"),
        dec_deg=_angle_deg(tab, dec, path, False, "--dec-col"),
        flux_jy=flux_jy,
        alpha=alpha,
        ref_freq_hz=ref_freq,
        has_flux=flux is not None,
        columns=note,
    )


def read_catalogue(path: str | Path, flux_column: str = "int_flux") -> dict[str, NDArray[np.float64]]:
    """Read a component catalogue: ``ra``, ``dec``, ``flux``, ``peak``, ``snr`` and ``local_rms`` arrays.

    ``snr`` is the catalogue's ``snr`` column, else ``peak_flux / local_rms``.
    """
    import astropy.units as u

    path = Path(path)
    tab = read_table(path, "catalogue")
    ra = _pick(tab, _RA_NAMES, None, path, "RA", "a column named ra")
    dec = _pick(tab, _DEC_NAMES, None, path, "Dec", "a column named dec")
    assert ra is not None and dec is not None
    flux = _pick(tab, (flux_column.lower(),) + _FLUX_NAMES, None, path, "flux", "--flux-column")
    assert flux is not None

    def jy(name: str) -> NDArray[np.float64]:
        unit = _unit_of(tab[name])
        values = np.asarray(_filled(tab[name]), dtype=np.float64)
        return values if unit is None else np.asarray((values * unit).to_value(u.Jy))

    out = {"ra": _angle_deg(tab, ra, path, True, "an RA column"), "dec": _angle_deg(tab, dec, path, False, "a Dec column"), "flux": jy(flux)}
    rms_col = _pick(tab, ("local_rms", "rms", "noise"), None, path, "local rms", "", required=False)
    out["local_rms"] = jy(rms_col) if rms_col else np.full(len(tab), np.nan)
    peak = _pick(tab, ("peak_flux",), None, path, "peak flux", "", required=False)
    out["peak"] = jy(peak) if peak else out["flux"].copy()
    snr_col = _pick(tab, ("snr",), None, path, "snr", "", required=False)
    if snr_col:
        out["snr"] = np.asarray(_filled(tab[snr_col]), dtype=np.float64)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            out["snr"] = out["peak"] / out["local_rms"] if peak else np.full(len(tab), np.inf)
    return out
