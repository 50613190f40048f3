"""The real bandpass and continuum flows end to end on simulated data, on a LocalCluster.

One temporary Prefect server serves the module; the flows run once each (module
fixtures) and the tests read their products:

* bandpass: a solution file per beam, matching the simulator's true bandpass
  (amplitude within 1 %, phase within 1 deg, as the calibration tests require);
* continuum (3 beams, 1 self-cal round, small images from ``data/flow_strategy.yaml``):
  images per beam per round, a mosaic per round, a catalogue, and validation against the
  simulated sky within stated tolerances;
* the stage log shows every stage exactly once per beam (per round for the mosaics).

Both flows are run through ``flint flow`` (``flint.cli.main``): the bandpass flow with
``--background`` (a detached command followed by its PID and flow-run id), the continuum
flow in the foreground; the tests read the products the command printed.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_prefect_flows_shared as shared

from flint.sim import SimResult

from conftest import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEAMS = shared.BEAMS

# validation of the round-1 mosaic against the simulated sky (tolerances; measured values
# on this data, 640 x 6" images: completeness 1.0, flux ratio ~1.00, offsets < 0.5")
MIN_COMPLETENESS = 0.9
FLUX_RATIO_TOL = 0.05  # |median(S_found / S_true) - 1|
MAX_OFFSET_ARCSEC = 1.0  # |median RA/Dec offset|, pixels are 6"


@pytest.fixture(scope="module")
def api_url(request: pytest.FixtureRequest) -> str:
    """The temporary Prefect server shared by the flow tests (stopped at session end)."""
    return shared.api_url(request.config)


@pytest.fixture(scope="module")
def bandpass_run(sim_bandpass: SimResult, tmp_path_factory: pytest.TempPathFactory, api_url: str) -> dict[str, Any]:
    """``flint flow bandpass --background`` on all beams, followed to its end."""
    require_tool("wsclean")
    return shared.bandpass_run(sim_bandpass, tmp_path_factory, api_url)


@pytest.fixture(scope="module")
def continuum_run(sim_field: SimResult, bandpass_run: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, api_url: str) -> dict[str, Any]:
    """``flint flow continuum`` in the foreground on the bandpass flow's solutions."""
    return shared.continuum_run(sim_field, bandpass_run, tmp_path_factory, api_url)


def _stage_counts(out_dir: Path) -> collections.Counter[tuple[str, str]]:
    from flint.prefect.tasks import read_stage_log

    return collections.Counter((stage, label) for stage, label, *_ in read_stage_log(out_dir))


def test_bandpass_flow_solutions_match_truth(bandpass_run: dict[str, Any], sim_bandpass: SimResult) -> None:
    from flint.calibrate import read_solutions

    sols = bandpass_run["products"]["solutions"]
    assert sorted(int(b) for b in sols) == list(BEAMS)
    truth = np.load(sim_bandpass.truth)["bandpass"]  # (beam, ant, chan, pol)
    for beam, path in sols.items():
        path = Path(path)
        assert path.parent == bandpass_run["out"]
        assert path.name == f"SB100.B1934-638.beam{int(beam):02d}.aocalibrate.bin"
        g = read_solutions(path).gains[0]
        ref = truth[int(beam)] * np.conj(truth[int(beam)][:1]) / np.abs(truth[int(beam)][:1])
        ratio = g / ref
        assert np.abs(np.abs(ratio) - 1).max() <= 0.01, f"beam {beam}"
        assert np.degrees(np.abs(np.angle(ratio))).max() <= 1.0, f"beam {beam}"
    # inputs untouched: the flow worked on copies in out_dir
    for ms in sim_bandpass.ms_paths:
        assert not (ms.parent / f"{ms.stem}.aocalibrate.bin").exists()


def test_bandpass_flow_stage_log_and_progress(bandpass_run: dict[str, Any], api_url: str) -> None:
    import uuid

    from flint.prefect.running import FlowHandle

    counts = _stage_counts(bandpass_run["out"])
    expected = {(stage, f"beam{b:02d}"): 1 for b in BEAMS for stage in ("copy", "bandpass")}
    assert dict(counts) == expected
    # the run the detached command started, read back through the API by its id
    handle = FlowHandle(flow_run_id=uuid.UUID(bandpass_run["run_id"]), api_url=api_url, flow_name="flint-bandpass")
    assert handle.state() == "Completed"
    assert bandpass_run["products"]["state"] == "Completed"
    progress = handle.progress()
    assert {b: progress[b] for b in BEAMS} == {b: {"copy": "Completed", "bandpass": "Completed"} for b in BEAMS}


def test_continuum_flow_products(continuum_run: dict[str, Any]) -> None:
    from astropy.io import fits

    out, products = continuum_run["out"], continuum_run["products"]
    assert products["state"] == "Completed"
    assert sorted(products["images"]) == [0, 1]
    for r, per_beam in products["images"].items():
        assert sorted(per_beam) == list(BEAMS)
        for b, image in per_beam.items():
            assert Path(image) == out / f"SB101.SIM_FIELD.beam{b:02d}.round{r}.image.fits"
            assert fits.getdata(image).shape[-2:] == (640, 640)
    assert sorted(products["mosaics"]) == [0, 1]
    for r, mosaic in products["mosaics"].items():
        assert Path(mosaic) == out / f"SB101.SIM_FIELD.round{r}.linmos.fits"
        data = fits.getdata(mosaic)
        assert np.isfinite(data).sum() > 0.3 * data.size
    assert Path(products["catalogue"]).is_file()
    assert Path(products["validation"]["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("*.tmp*")), "half-written files left behind"


def test_continuum_flow_validation_within_tolerances(continuum_run: dict[str, Any]) -> None:
    val = continuum_run["products"]["validation"]
    print({k: v for k, v in val.items() if k != "figure"})
    assert val["n_reference"] >= 10
    assert val["completeness"] >= MIN_COMPLETENESS
    assert abs(val["flux_ratio_median"] - 1) <= FLUX_RATIO_TOL
    assert abs(val["ra_offset_arcsec"]) <= MAX_OFFSET_ARCSEC
    assert abs(val["dec_offset_arcsec"]) <= MAX_OFFSET_ARCSEC


def test_continuum_flow_each_stage_once_per_beam(continuum_run: dict[str, Any]) -> None:
    counts = _stage_counts(continuum_run["out"])
    expected: dict[tuple[str, str], int] = {}
    for b in BEAMS:
        beam = f"beam{b:02d}"
        for stage in ("copy", "apply", "flag"):
            expected[(stage, beam)] = 1
        expected[("image", f"{beam}.round0")] = 1
        expected[("selfcal", f"{beam}.round1")] = 1
        expected[("image", f"{beam}.round1")] = 1
    for r in (0, 1):
        expected[("convol", f"round{r}")] = 1
        expected[("linmos", f"round{r}")] = 1
    expected[("source_finding", "round1")] = 1
    expected[("validation", "round1")] = 1
    assert dict(counts) == expected
