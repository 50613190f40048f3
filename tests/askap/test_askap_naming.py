"""ASKAP names: raw correlator output (beams not zero-padded) and CASDA (the ASKAP archive).

flint reads the SBID, field and beam from both (:func:`flint.naming.parse_name`), finds
such Measurement Sets in a folder for the flows, and writes its products under its own
names (``SB<sbid>.<field>.beam<NN>...``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flint.errors import FlintInputError
from flint.naming import flint_ms_name, parse_name, product_name

CASDA = "scienceData.EMU_0529-60.SB50538.EMU_0529-60.beam08_averaged_cal.leakage.ms"


@pytest.mark.parametrize(
    ("name", "sbid", "field", "beam", "flint_name"),
    [
        (CASDA, 50538, "EMU_0529-60", 8, "SB50538.EMU_0529-60.beam08.ms"),
        ("scienceData.RACS_1237+00.SB13671.RACS_1237+00.beam35_averaged_cal.ms", 13671, "RACS_1237+00", 35, "SB13671.RACS_1237+00.beam35.ms"),
        ("SB39400.RACS_0635-31.beam0.ms", 39400, "RACS_0635-31", 0, "SB39400.RACS_0635-31.beam00.ms"),
        ("SB39400.RACS_0635-31.beam17.ms", 39400, "RACS_0635-31", 17, "SB39400.RACS_0635-31.beam17.ms"),
        ("SB51234.B1934-638.beam5.ms", 51234, "B1934-638", 5, "SB51234.B1934-638.beam05.ms"),
        ("SB101.SIM_FIELD.beam02.ms", 101, "SIM_FIELD", 2, "SB101.SIM_FIELD.beam02.ms"),
    ],
)
def test_parse_askap_names(name: str, sbid: int, field: str, beam: int, flint_name: str) -> None:
    p = parse_name(Path("/data") / name)
    assert (p.sbid, p.field, p.beam, p.round) == (sbid, field, beam, None)
    assert flint_ms_name(name) == flint_name
    # products of such an MS carry flint's names
    assert product_name(p.sbid, p.field, beam=p.beam, round=1, suffix="image.fits") == flint_name.replace(".ms", ".round1.image.fits")


def test_casda_keeps_its_processing_suffix() -> None:
    assert parse_name(CASDA).rest == "averaged_cal.leakage.ms"
    assert parse_name("SB39400.RACS_0635-31.beam0.round2.image.fits").round == 2


@pytest.mark.parametrize("name", ["beam08.ms", "scienceData.EMU.beam08.ms", "RACS_0635-31.SB39400.beam0.ms", "SBX.F.beam0.ms"])
def test_unreadable_names_are_one_line_errors(name: str) -> None:
    with pytest.raises(FlintInputError) as err:
        parse_name(name)
    msg = str(err.value)
    assert name in msg and "scienceData.<field>.SB<sbid>" in msg and "\n" not in msg


def test_beamless_name_has_no_ms_name() -> None:
    with pytest.raises(FlintInputError, match="no beam number"):
        flint_ms_name("SB39400.RACS_0635-31.ms")


def test_find_by_beam_reads_casda_and_raw_folders(tmp_path: Path) -> None:
    """A CASDA folder and a raw folder with the 36-field calibrator beside a field (names only)."""
    from flint.prefect.flows import find_by_beam, is_calibrator_field

    casda = tmp_path / "casda"
    casda.mkdir()
    for b in (0, 8, 35):
        (casda / f"scienceData.EMU_0529-60.SB50538.EMU_0529-60.beam{b:02d}_averaged_cal.leakage.ms").mkdir()
    (casda / "README.txt").write_text("not a Measurement Set")
    found = find_by_beam(os.fspath(casda), ".ms", calibrator=False)
    assert sorted(found) == [0, 8, 35]
    assert Path(found[8]).name == "scienceData.EMU_0529-60.SB50538.EMU_0529-60.beam08_averaged_cal.leakage.ms"
    assert sorted(find_by_beam(os.fspath(casda), ".ms", [8, 35])) == [8, 35]

    raw = tmp_path / "raw"
    raw.mkdir()
    for b in (0, 1, 10):
        (raw / f"SB39400.RACS_0635-31.beam{b}.ms").mkdir()
        (raw / f"SB39399.B1934-638.beam{b}.ms").mkdir()
    cal = find_by_beam(os.fspath(raw), ".ms", calibrator=True)
    sci = find_by_beam(os.fspath(raw), ".ms", calibrator=False)
    assert {b: Path(p).name for b, p in cal.items()} == {b: f"SB39399.B1934-638.beam{b}.ms" for b in (0, 1, 10)}
    assert {b: Path(p).name for b, p in sci.items()} == {b: f"SB39400.RACS_0635-31.beam{b}.ms" for b in (0, 1, 10)}
    assert is_calibrator_field("PKS_B1934-638") and is_calibrator_field("1934-638")
    assert not is_calibrator_field("RACS_1934-63") and not is_calibrator_field("EMU_1934-6380")
    # two names for one beam are refused, naming both
    (raw / "SB39400.RACS_0635-31.beam01.ms").mkdir()
    with pytest.raises(FlintInputError, match="beam 1 matches both"):
        find_by_beam(os.fspath(raw), ".ms", calibrator=False)


def test_empty_folder_message_names_both_conventions(tmp_path: Path) -> None:
    from flint.prefect.flows import find_by_beam

    with pytest.raises(FlintInputError) as err:
        find_by_beam(os.fspath(tmp_path), ".ms")
    assert "SB<sbid>.<field>.beamNN*.ms" in str(err.value) and "scienceData.<field>.SB<sbid>" in str(err.value)
