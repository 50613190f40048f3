"""Names of flint's products.

Products of one observation sort and group naturally::

    SB<sbid>.<field>.beam<NN>[.round<N>][.<stage>].<suffix>

e.g. ``SB1234.RACS_0012-25.beam03.round1.image.fits``. :func:`parse_name` reads the
parts back, also from the names ASKAP data arrive with:

* raw correlator output, beams not zero-padded: ``SB39400.RACS_0635-31.beam0.ms``
  (a 36-field PKS B1934-638 observation: ``SB<sbid>.B1934-638.beam0.ms``);
* CASDA (the ASKAP archive):
  ``scienceData.EMU_0529-60.SB50538.EMU_0529-60.beam08_averaged_cal.leakage.ms``.

Products are always written with flint's own names (:func:`product_name`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from flint.errors import FlintInputError

__all__ = ["ProductName", "product_name", "parse_name", "beam_ms_name", "flint_ms_name", "field_name"]

_FIELD_RE = re.compile(r"^[A-Za-z0-9_+\-]+$")
_NAME_RE = re.compile(
    r"^SB(?P<sbid>\d+)\.(?P<field>[A-Za-z0-9_+\-]+)"
    r"(?:\.beam(?P<beam>\d{1,3}))?"
    r"(?:\.round(?P<round>\d+))?"
    r"(?:\.(?P<rest>.+))?$"
)
#: CASDA: ``scienceData.<FIELD>.SB<sbid>.<FIELD>.beam<NN>[_<processing>][.<more>]``
_CASDA_RE = re.compile(
    r"^scienceData[._](?P<field0>[A-Za-z0-9_+\-]+)\.SB(?P<sbid>\d+)\.(?P<field>[A-Za-z0-9_+\-]+)"
    r"\.beam(?P<beam>\d{1,3})"
    r"(?:[._](?P<rest>.+))?$"
)


@dataclass(frozen=True)
class ProductName:
    """The parts of a product name."""

    sbid: int
    field: str
    beam: int | None = None
    round: int | None = None
    rest: str | None = None

    def with_(self, **kw: object) -> ProductName:
        data = {**self.__dict__, **kw}
        return ProductName(**data)  # type: ignore[arg-type,unused-ignore]

    def __str__(self) -> str:
        return product_name(self.sbid, self.field, self.beam, self.round, self.rest)


def field_name(name: str) -> str:
    """Normalise a field name so it is safe in file names (spaces, dots -> ``_``)."""
    out = re.sub(r"[^A-Za-z0-9_+\-]", "_", name.strip())
    if not out:
        raise FlintInputError("field name is empty; give a name such as 'RACS_0012-25'")
    return out


def product_name(
    sbid: int,
    field: str,
    beam: int | None = None,
    round: int | None = None,
    suffix: str | None = None,
) -> str:
    """Build a product name.

    Examples
    --------
    >>> product_name(1234, "FIELD_A", beam=3, round=1, suffix="image.fits")
    'SB1234.FIELD_A.beam03.round1.image.fits'
    >>> product_name(1234, "FIELD_A", suffix="sky.csv")
    'SB1234.FIELD_A.sky.csv'
    """
    if sbid < 0:
        raise FlintInputError(f"sbid must be >= 0, got {sbid}")
    if not _FIELD_RE.match(field):
        raise FlintInputError(
            f"field {field!r} has characters unsafe in file names; use flint.naming.field_name()"
        )
    parts = [f"SB{sbid}", field]
    if beam is not None:
        parts.append(f"beam{beam:02d}")
    if round is not None:
        parts.append(f"round{round}")
    if suffix:
        parts.append(suffix.lstrip("."))
    return ".".join(parts)


def beam_ms_name(sbid: int, field: str, beam: int) -> str:
    """Name of the Measurement Set of one beam: ``SB<sbid>.<field>.beam<NN>.ms``."""
    return product_name(sbid, field, beam=beam, suffix="ms")


def flint_ms_name(path: str | os.PathLike[str]) -> str:
    """flint's name for a beam's Measurement Set given under any name :func:`parse_name` reads.

    Examples
    --------
    >>> flint_ms_name("scienceData.EMU_0529-60.SB50538.EMU_0529-60.beam08_averaged_cal.leakage.ms")
    'SB50538.EMU_0529-60.beam08.ms'
    >>> flint_ms_name("SB39400.B1934-638.beam0.ms")
    'SB39400.B1934-638.beam00.ms'
    """
    p = parse_name(path)
    if p.beam is None:
        raise FlintInputError(f"{Path(path).name!r}: no beam number in the name (expected ...beam<N>...); rename it")
    return beam_ms_name(p.sbid, p.field, p.beam)


def parse_name(path: str | os.PathLike[str]) -> ProductName:
    """Parse a product name (or path) back into its parts.

    Understands flint's names, raw ASKAP names (beam numbers not zero-padded) and CASDA
    names; a CASDA name keeps its processing suffix in ``rest``.

    Examples
    --------
    >>> parse_name("/data/SB1234.FIELD_A.beam03.round1.image.fits").round
    1
    >>> p = parse_name("scienceData.EMU_0529-60.SB50538.EMU_0529-60.beam08_averaged_cal.leakage.ms")
    >>> (p.sbid, p.field, p.beam, p.rest)
    (50538, 'EMU_0529-60', 8, 'averaged_cal.leakage.ms')
    >>> str(parse_name("SB39400.RACS_0635-31.beam0.ms"))
    'SB39400.RACS_0635-31.beam00.ms'
    """
    name = Path(path).name
    m = _NAME_RE.match(name)
    if m is not None:
        return ProductName(
            sbid=int(m["sbid"]),
            field=m["field"],
            beam=int(m["beam"]) if m["beam"] is not None else None,
            round=int(m["round"]) if m["round"] is not None else None,
            rest=m["rest"],
        )
    c = _CASDA_RE.match(name)
    if c is not None:
        return ProductName(sbid=int(c["sbid"]), field=c["field"], beam=int(c["beam"]), rest=c["rest"])
    raise FlintInputError(
        f"{name!r} is not a flint product name, nor a raw ASKAP or CASDA one (expected SB<sbid>.<field>.beam<N>... "
        "or scienceData.<field>.SB<sbid>.<field>.beam<NN>...); rename it"
    )
