"""Which field of a bandpass Measurement Set holds PKS B1934-638 for its beam.

An ASKAP bandpass observation is one Measurement Set per beam holding 36 fields
(``B1934-638_beam0`` ... ``B1934-638_beam35``): the calibrator is driven through each
beam in turn, so only the field whose number is the MS's beam is on-source.
:func:`choose_bandpass_field` picks, in this order:

1. the field asked for (``--field``);
2. the only field that has rows;
3. the field whose name ends in the MS's beam number (``..._beam<N>``), the beam taken
   from ``FEED.BEAM_ID``/``FEED1`` and else from the file name;
4. the field whose phase centre is nearest PKS B1934-638 (the data must be preprocessed
   so that each field's phase centre is its beam centre: ``flint ms preprocess``).

A beam whose field is missing (names carry beam numbers, none is this beam's) is an error.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

import numpy as np

from flint import _askap
from flint.errors import FlintMSError
from flint.ms import MS, open_table
from flint.primary_beam import angular_separation_deg

__all__ = ["FieldChoice", "choose_bandpass_field", "field_beam_number"]

logger = logging.getLogger(__name__)

_BEAM_RE = re.compile(r"beam[_\-]?0*(\d{1,3})$", re.IGNORECASE)


def field_beam_number(name: str) -> int | None:
    """Beam number a field name ends with (``B1934-638_beam5`` -> 5), or ``None``.

    Examples
    --------
    >>> field_beam_number("B1934-638_beam05"), field_beam_number("B1934-638")
    (5, None)
    """
    m = _BEAM_RE.search(name.strip())
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class FieldChoice:
    """The field a bandpass is solved on."""

    field_id: int
    name: str
    reason: str
    """Why this field (for logs and the CLI)."""
    n_fields: int
    """Fields with data in the MS."""
    separation_arcmin: float
    """Distance of the field's phase centre from PKS B1934-638."""

    @property
    def whole_ms(self) -> bool:
        """True when the field is the only one with data (no row selection needed)."""
        return self.n_fields == 1


def _shown(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 4 else f"{names[0]}, {names[1]} ... {names[-1]} ({len(names)} fields)"


def choose_bandpass_field(
    ms: MS | str | os.PathLike[str], field: str | int | None = None, beam: int | None = None
) -> FieldChoice:
    """Pick the field of ``ms`` to solve the bandpass on (see the module docstring).

    Parameters
    ----------
    ms
        The calibrator Measurement Set (one beam).
    field
        A field name or FIELD_ID to use instead of the automatic choice.
    beam
        The MS's beam; default from ``FEED`` and the file name.

    Raises
    ------
    FlintMSError
        The asked-for field does not exist or has no rows, or this beam's field is missing.
    """
    from flint.calibrate._checks import data_beam

    ms = MS.cast(ms)
    with open_table(ms.path, subtable="FIELD") as t:
        names = [str(n) for n in t.getcol("NAME")]
        dirs = np.asarray(t.getcol("PHASE_DIR"))[:, 0, :]
    with open_table(ms.path) as tab:
        used = sorted(int(i) for i in np.unique(tab.getcol("FIELD_ID")) if 0 <= int(i) < len(names))
    if not used:
        raise FlintMSError(f"{ms.path}: no rows belong to a field of its FIELD table; is the MS complete?")
    seps = {
        i: 60.0 * float(angular_separation_deg(np.degrees(dirs[i, 0]) % 360.0, np.degrees(dirs[i, 1]), _askap.B1934_RA_DEG, _askap.B1934_DEC_DEG))
        for i in used
    }

    def pick(i: int, reason: str) -> FieldChoice:
        return FieldChoice(field_id=i, name=names[i], reason=reason, n_fields=len(used), separation_arcmin=seps[i])

    if field is not None:
        key = str(field).strip()
        if key.isdigit():
            fid = int(key)
        else:
            low = [n.lower() for n in names]
            if key.lower() not in low:
                raise FlintMSError(f"{ms.path}: has no field {key!r} (fields: {_shown(names)}); give one of them to --field")
            fid = low.index(key.lower())
        if fid not in used:
            raise FlintMSError(f"{ms.path}: field {fid} has no rows (fields with data: {_shown([names[i] for i in used])}); give another --field")
        return pick(fid, "asked for (--field)")
    if len(used) == 1:
        return pick(used[0], "the only field with data")
    if beam is None:
        beam = data_beam(ms)
    numbered = {i: field_beam_number(names[i]) for i in used}
    if beam is not None and any(b is not None for b in numbered.values()):
        matches = [i for i in used if numbered[i] == beam]
        if not matches:
            raise FlintMSError(
                f"{ms.path}: beam {beam} has no field of its own (fields with data: {_shown([names[i] for i in used])}); "
                "this beam was not observed on the calibrator, or give --field NAME"
            )
        best = min(matches, key=lambda i: seps[i])
        return pick(best, f"its name carries beam {beam}")
    best = min(used, key=lambda i: seps[i])
    return pick(best, f"phase centre nearest PKS B1934-638 ({seps[best]:.2f} arcmin)")
