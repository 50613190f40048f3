"""Names of flint's products.

Products of one observation sort and group naturally::

    SB<sbid>.<field>.beam<NN>[.round<N>][.<stage>].<suffix>

e.g. ``SB1234.RACS_0012-25.beam03.round1.image.fits``. :func:`parse_name` reads the
parts back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flint.errors import FlintInputError

__all__ = ["ProductName", "product_name", "parse_name", "beam_ms_name", "field_name"]

_FIELD_RE = re.compile(r"^[A-Za-z0-9_+\-]+$")
_NAME_RE = re.compile(
    r"^SB(?P<sbid>\d+)\.(?P<field>[A-Za-z0-9_+\-]+)"
    r"(?:\.beam(?P<beam>\d{2,3}))?"
    r"(?:\.round(?P<round>\d+))?"
    r"(?:\.(?P<rest>.+))?$"
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


def parse_name(path: str | Path) -> ProductName:
    """Parse a product name (or path) back into its parts.

    Examples
    --------
    >>> parse_name("/data/SB1234.FIELD_A.beam03.round1.image.fits").round
    1
    """
    name = Path(path).name
    m = _NAME_RE.match(name)
    if m is None:
        raise FlintInputError(
            f"{name!r} is not a flint product name (expected SB<sbid>.<field>.beam<NN>...)"
        )
    return ProductName(
        sbid=int(m["sbid"]),
        field=m["field"],
        beam=int(m["beam"]) if m["beam"] is not None else None,
        round=int(m["round"]) if m["round"] is not None else None,
        rest=m["rest"],
    )
