"""Raw ASKAP data end to end: ``flint sim --askap-raw`` -> ``flint flow bandpass`` -> ``flint flow continuum``.

The inputs are what the ASKAP correlator writes (boresight in ``FIELD``, beam offsets in
``FEED.BEAM_OFFSET``, instrument-frame correlations with I = XX + YY, a 36-field
PKS B1934-638 MS per beam) under raw ASKAP names (``SB100.B1934-638.beam0.ms``, beams not
zero-padded). The flows find them, detect that they are raw (:func:`flint.askap.ms_frame`),
preprocess their copies first (fixms), solve each beam's bandpass on the field of that
beam, and the continuum catalogue is checked against the simulated sky:

* astrometric offsets (median RA, Dec) < 1 arcsec, median flux ratio 1 +- 0.03,
  completeness >= 0.9 (measured here: offsets 0.39" / -0.24", flux ratio 0.999, 12/12);
* bandpass solutions vs the injected (sky-frame) gains: amplitude within 1 %, phase
  within 1 deg (measured: 0.22 %, 0.20 deg);
* the inputs are untouched (still raw), the flow's copies are in the sky frame, every
  beam is reported preprocessed, products carry flint's names.

CASDA data (bandpass-calibrated by the observatory, still in the instrument frame) are
stood in for by the raw footprint with perfect antennas under CASDA names: ``flint flow
continuum --already-calibrated`` preprocesses them, runs without solutions or an apply
stage, and meets the same tolerances.

Both flows run through the ``flint flow`` CLI on the session's temporary Prefect server
(shared with tests/prefect), 2 beams, 30 integrations, the small test strategy.
"""

from __future__ import annotations

import collections
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1] / "prefect"))
import test_prefect_flows_shared as shared  # noqa: E402  (the session's flow fixtures)

from conftest import require_tool  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEAMS = (0, 1)
MAX_OFFSET_ARCSEC = 1.0
FLUX_RATIO_TOL = 0.03
MIN_COMPLETENESS = 0.9


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``flint sim --askap-raw`` (2 beams), and a folder with the raw names ASKAP gives them."""
    from flint.askap import ms_frame

    sim = tmp_path_factory.mktemp("askap_raw_sim")
    rc, text = shared.cli(["sim", os.fspath(sim), "--askap-raw", "--n-beams", str(len(BEAMS))])
    assert rc == 0, text
    data = tmp_path_factory.mktemp("askap_raw_data")
    for b in BEAMS:  # as the correlator names them: beam0, not beam00
        (data / f"SB100.B1934-638.beam{b}.ms").symlink_to(sim / f"SB100.B1934-638.beam{b:02d}.ms")
        (data / f"SB101.SIM_FIELD.beam{b}.ms").symlink_to(sim / f"SB101.SIM_FIELD.beam{b:02d}.ms")
    assert {ms_frame(p) for p in data.iterdir()} == {"instrument"}
    return {"sim": sim, "data": data}


@pytest.fixture(scope="module")
def api_url(request: pytest.FixtureRequest) -> str:
    return shared.api_url(request.config)


@pytest.fixture(scope="module")
def bandpass_run(raw: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, api_url: str) -> dict[str, Any]:
    require_tool("wsclean")
    out = tmp_path_factory.mktemp("askap_flow_bandpass")
    rc, text = shared.cli(["flow", "bandpass", os.fspath(raw["data"]), "--out-dir", os.fspath(out),
                           "--strategy", os.fspath(shared.STRATEGY), "--api-url", api_url])
    assert rc == 0, text
    return {"out": out, "text": text, "products": shared.parse_products(text)}


@pytest.fixture(scope="module")
def continuum_run(raw: dict[str, Path], bandpass_run: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, api_url: str) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("askap_flow_continuum")
    rc, text = shared.cli(["flow", "continuum", os.fspath(raw["data"]), "--solutions", os.fspath(bandpass_run["out"]),
                           "--reference", os.fspath(raw["sim"] / "SB101.SIM_FIELD.sky.csv"), "--out-dir", os.fspath(out),
                           "--strategy", os.fspath(shared.STRATEGY), "--api-url", api_url])
    assert rc == 0, text
    return {"out": out, "text": text, "products": shared.parse_products(text)}


def _stages(out: Path) -> collections.Counter[tuple[str, str]]:
    from flint.prefect.tasks import read_stage_log

    return collections.Counter((stage, label) for stage, label, *_ in read_stage_log(out))


def test_bandpass_flow_preprocesses_and_solves_on_the_beams_field(bandpass_run: dict[str, Any], raw: dict[str, Path]) -> None:
    from flint.askap import ms_frame
    from flint.calibrate import read_solutions
    from flint.prefect.flows import read_input_report

    out, text = bandpass_run["out"], bandpass_run["text"]
    for b in BEAMS:
        assert f"bandpass field beam {b:02d}: B1934-638_beam{b} (#{b}," in text, text
        assert f"preprocessed beam {b:02d}: SB100.B1934-638.beam{b}.ms (instrument frame)" in text
        copy = out / f"SB100.B1934-638.beam{b:02d}.ms"  # flint's name
        assert ms_frame(copy) == "sky"
        assert ms_frame(raw["data"] / f"SB100.B1934-638.beam{b}.ms") == "instrument"  # input untouched
    report = read_input_report(out, "bandpass")
    assert [(r["beam"], r["preprocessed"], r["field"].split()[0]) for r in report] == [(b, True, f"B1934-638_beam{b}") for b in BEAMS]
    assert _stages(out) == {(s, f"beam{b:02d}"): 1 for b in BEAMS for s in ("copy", "preprocess", "bandpass")}
    truth = np.load(raw["sim"] / "SB100.B1934-638.truth.npz")["bandpass_sky_frame"]  # (beam, ant, chan, pol)
    sols = bandpass_run["products"]["solutions"]
    assert sorted(sols) == list(BEAMS)
    for b, path in sols.items():
        assert Path(path).name == f"SB100.B1934-638.beam{b:02d}.aocalibrate.bin"
        ref = truth[b] * np.conj(truth[b][:1]) / np.abs(truth[b][:1])
        ratio = read_solutions(path).gains[0] / ref
        print(f"beam {b}: amplitude {np.nanmax(np.abs(np.abs(ratio) - 1)):.4f}, phase {np.nanmax(np.degrees(np.abs(np.angle(ratio)))):.3f} deg")
        assert np.nanmax(np.abs(np.abs(ratio) - 1)) <= 0.01
        assert np.nanmax(np.degrees(np.abs(np.angle(ratio)))) <= 1.0


def test_continuum_catalogue_matches_the_simulated_sky(continuum_run: dict[str, Any]) -> None:
    val = continuum_run["products"]["validation"]
    print({k: v for k, v in val.items() if k != "figure"})
    assert val["n_reference"] >= 10
    assert val["completeness"] >= MIN_COMPLETENESS
    assert abs(val["flux_ratio_median"] - 1) <= FLUX_RATIO_TOL
    assert abs(val["ra_offset_arcsec"]) < MAX_OFFSET_ARCSEC
    assert abs(val["dec_offset_arcsec"]) < MAX_OFFSET_ARCSEC


def test_continuum_flow_preprocessed_raw_inputs_and_kept_flint_names(continuum_run: dict[str, Any], raw: dict[str, Path]) -> None:
    from flint.askap import ms_frame

    out, products, text = continuum_run["out"], continuum_run["products"], continuum_run["text"]
    assert products["state"] == "Completed"
    for b in BEAMS:
        assert f"preprocessed beam {b:02d}: SB101.SIM_FIELD.beam{b}.ms (instrument frame)" in text
        assert ms_frame(out / f"SB101.SIM_FIELD.beam{b:02d}.ms") == "sky"
        assert ms_frame(raw["data"] / f"SB101.SIM_FIELD.beam{b}.ms") == "instrument"
        for r in (0, 1):
            assert Path(products["images"][r][b]) == out / f"SB101.SIM_FIELD.beam{b:02d}.round{r}.image.fits"
    assert Path(products["mosaics"][1]) == out / "SB101.SIM_FIELD.round1.linmos.fits"
    counts = _stages(out)
    assert all(counts[("preprocess", f"beam{b:02d}")] == 1 and counts[("apply", f"beam{b:02d}")] == 1 for b in BEAMS)


@pytest.fixture(scope="module")
def casda_run(tmp_path_factory: pytest.TempPathFactory, api_url: str) -> dict[str, Any]:
    """CASDA data stood in for: the raw footprint with perfect antennas (bandpass-calibrated, as
    the observatory delivers it, but still in the instrument frame, as CASDA's MSs are) under
    CASDA names, through ``flint flow continuum --already-calibrated`` (no solutions)."""
    from flint.sim import SimOptions, simulate_field

    require_tool("wsclean")
    opts = SimOptions(askap_raw=True, n_beams=len(BEAMS), gain_amp_scatter=0.0, gain_phase_scatter_deg=0.0, bandpass_ripple=0.0, phase_drift_deg=0.0)
    sim = simulate_field(tmp_path_factory.mktemp("casda_sim"), opts)
    data = tmp_path_factory.mktemp("casda_data")
    for b, ms in zip(sim.beams, sim.ms_paths, strict=True):
        (data / f"scienceData.SIM_FIELD.SB101.SIM_FIELD.beam{b:02d}_averaged_cal.leakage.ms").symlink_to(ms)
    out = tmp_path_factory.mktemp("casda_flow_continuum")
    rc, text = shared.cli(["flow", "continuum", os.fspath(data), "--already-calibrated", "--reference", os.fspath(sim.sky_csv or ""),
                           "--out-dir", os.fspath(out), "--strategy", os.fspath(shared.STRATEGY), "--api-url", api_url])
    assert rc == 0, text
    return {"out": out, "text": text, "products": shared.parse_products(text)}


def test_casda_already_calibrated_continuum(casda_run: dict[str, Any]) -> None:
    out, products, text = casda_run["out"], casda_run["products"], casda_run["text"]
    assert "already calibrated: True" in text
    counts = _stages(out)
    assert not [k for k in counts if k[0] == "apply"], counts
    for b in BEAMS:
        assert f"preprocessed beam {b:02d}: scienceData.SIM_FIELD.SB101.SIM_FIELD.beam{b:02d}_averaged_cal.leakage.ms (instrument frame)" in text
        assert all(counts[(stage, f"beam{b:02d}")] == 1 for stage in ("copy", "preprocess", "flag"))
    for b in BEAMS:  # products under flint's names, not CASDA's
        assert Path(products["images"][1][b]) == out / f"SB101.SIM_FIELD.beam{b:02d}.round1.image.fits"
    val = products["validation"]
    print({k: v for k, v in val.items() if k != "figure"})
    assert val["completeness"] >= MIN_COMPLETENESS
    assert abs(val["flux_ratio_median"] - 1) <= FLUX_RATIO_TOL
    assert abs(val["ra_offset_arcsec"]) < MAX_OFFSET_ARCSEC
    assert abs(val["dec_offset_arcsec"]) < MAX_OFFSET_ARCSEC
