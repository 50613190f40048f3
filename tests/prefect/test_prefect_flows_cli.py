"""``flint flow`` refuses bad input with one line on stderr before anything is submitted.

Each case must fail fast: no output folder created (nothing started), exit status 1,
a single ``flint flow: error: ...`` line naming the problem. The flows themselves run
through the CLI in test_prefect_flows.py.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from flint.sim import SimResult

STRATEGY = Path(__file__).parent / "data" / "flow_strategy.yaml"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, float]:
    from flint.cli import main

    t0 = time.perf_counter()
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err, time.perf_counter() - t0


@pytest.fixture()
def solutions(tmp_path: Path) -> Path:
    """A folder with solution files named for beams 0 and 1 only (names are all the check reads)."""
    d = tmp_path / "bandpass"
    d.mkdir()
    for b in (0, 1):
        (d / f"SB100.B1934-638.beam{b:02d}.aocalibrate.bin").write_bytes(b"")
    return d


def _continuum(sim_field: SimResult, solutions: Path, out: Path, *extra: str) -> list[str]:
    return ["flow", "continuum", *map(os.fspath, sim_field.ms_paths), "--solutions", os.fspath(solutions), "--out-dir", os.fspath(out), *extra]


def _assert_refused(rc: int, err: str, out: Path, *words: str) -> None:
    assert rc == 1
    assert len(err.splitlines()) == 1, err
    assert err.startswith("flint flow: error: ")
    for w in words:
        assert w in err, err
    assert not out.exists(), "something was started"


def test_missing_input_ms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "SB100.B1934-638.beam00.ms"
    rc, err, _ = _run(["flow", "bandpass", os.fspath(missing), "--out-dir", os.fspath(out)], capsys)
    _assert_refused(rc, err, out, os.fspath(missing), "no such")


def test_beams_without_solutions(sim_field: SimResult, solutions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc, err, _ = _run(_continuum(sim_field, solutions, out), capsys)
    _assert_refused(rc, err, out, "no bandpass solutions for beams [2]", "run the bandpass flow first")
    # asking only for the beams that have solutions passes the input check (then stops at the API check)
    rc, err, _ = _run(_continuum(sim_field, solutions, out, "--beams", "0", "1", "--api-url", "http://127.0.0.1:9/api"), capsys)
    _assert_refused(rc, err, out, "no Prefect API answers")


def test_missing_reference(sim_field: SimResult, solutions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc, err, _ = _run(_continuum(sim_field, solutions, out, "--beams", "0", "--reference", os.fspath(tmp_path / "sky.csv")), capsys)
    _assert_refused(rc, err, out, "sky.csv", "reference catalogue")


@pytest.mark.parametrize(
    ("yaml_text", "words"),
    [
        ("cluster_class: [distributed.LocalCluster\n", ("cluster.yaml",)),
        ("cluster_class: distributed.LocalCluster\ncluster_kwargs: {n_wrkers: 2}\n", ("n_wrkers", "n_workers")),
        ("cluster_class: os.system\n", ("os.system",)),
        ("cluster_class: distributed.LocalCluster\nadapt_kwargs: {minimum: 3, maximum: 1}\n", ("minimum",)),
    ],
    ids=["malformed", "misspelt-kwarg", "unknown-class", "min-gt-max"],
)
def test_bad_cluster_yaml(
    yaml_text: str, words: tuple[str, ...], sim_field: SimResult, solutions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml_text)
    out = tmp_path / "out"
    rc, err, _ = _run(_continuum(sim_field, solutions, out, "--beams", "0", "--cluster-config", os.fspath(cfg)), capsys)
    _assert_refused(rc, err, out, *words)


def test_unreachable_scheduler_address(sim_field: SimResult, solutions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flint.prefect._postgres import free_port

    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(f"address: tcp://127.0.0.1:{free_port()}\n")
    out = tmp_path / "out"
    rc, err, _ = _run(_continuum(sim_field, solutions, out, "--beams", "0", "--cluster-config", os.fspath(cfg)), capsys)
    _assert_refused(rc, err, out, "no Dask scheduler answers")


def test_unreachable_prefect_api_url(
    sim_field: SimResult, solutions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flint.prefect._postgres import free_port

    url = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    out = tmp_path / "out"
    rc, err, seconds = _run(_continuum(sim_field, solutions, out, "--beams", "0", "--background"), capsys)
    _assert_refused(rc, err, out, f"PREFECT_API_URL={url}", "flint server start")
    assert seconds < 30  # refused up front, not after a server or cluster start


def test_bad_strategy(sim_field: SimResult, solutions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    strat = tmp_path / "strategy.yaml"
    shutil.copy(STRATEGY, strat)
    strat.write_text(strat.read_text().replace("scale_arcsec:", "scale_arsec:"))
    out = tmp_path / "out"
    rc, err, _ = _run(_continuum(sim_field, solutions, out, "--beams", "0", "--strategy", os.fspath(strat)), capsys)
    _assert_refused(rc, err, out, "strategy.yaml", "scale_arsec")


def test_folder_with_calibrator_and_field(
    sim_bandpass: SimResult, sim_field: SimResult, solutions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder holding both observations: bandpass takes PKS B1934-638, continuum the field."""
    from flint.prefect.flows import find_by_beam

    data = tmp_path / "data"
    data.mkdir()
    for ms in [*sim_bandpass.ms_paths, *sim_field.ms_paths]:
        (data / ms.name).symlink_to(ms)
    assert {b: Path(p).name for b, p in find_by_beam(os.fspath(data), ".ms", calibrator=True).items()} == {
        b: f"SB100.B1934-638.beam{b:02d}.ms" for b in (0, 1, 2)
    }
    assert {b: Path(p).name for b, p in find_by_beam(os.fspath(data), ".ms", [1], calibrator=False).items()} == {1: "SB101.SIM_FIELD.beam01.ms"}
    out = tmp_path / "out"
    dead_api = ["--api-url", "http://127.0.0.1:9/api"]  # inputs accepted, then refused at the API check
    rc, err, _ = _run(["flow", "bandpass", os.fspath(data), "--out-dir", os.fspath(out), *dead_api], capsys)
    _assert_refused(rc, err, out, "no Prefect API answers")
    rc, err, _ = _run(["flow", "continuum", os.fspath(data), "--solutions", os.fspath(solutions), "--beams", "0", "1", "--out-dir", os.fspath(out), *dead_api], capsys)
    _assert_refused(rc, err, out, "no Prefect API answers")


def test_continuum_needs_solutions_or_already_calibrated(sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --solutions the continuum flow runs only in the explicit 'already calibrated' mode."""
    out = tmp_path / "out"
    base = ["flow", "continuum", *map(os.fspath, sim_field.ms_paths), "--out-dir", os.fspath(out)]
    rc, err, _ = _run(base, capsys)
    _assert_refused(rc, err, out, "no bandpass solutions", "--solutions", "--already-calibrated")
    sols = tmp_path / "sols"
    sols.mkdir()
    rc, err, _ = _run([*base, "--solutions", os.fspath(sols), "--already-calibrated"], capsys)
    _assert_refused(rc, err, out, "--solutions and --already-calibrated both given")
    # the mode itself passes the input checks (then stops at the API check)
    rc, err, _ = _run([*base, "--already-calibrated", "--api-url", "http://127.0.0.1:9/api"], capsys)
    _assert_refused(rc, err, out, "no Prefect API answers")


def test_casda_and_raw_named_folders_accepted(sim_bandpass: SimResult, sim_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Folders of CASDA-named and raw-named (beam0) MSs pass the input checks; products keep flint's names."""
    from flint.prefect.flows import find_by_beam

    casda, raw = tmp_path / "casda", tmp_path / "raw"
    casda.mkdir()
    raw.mkdir()
    for b, ms in zip(sim_field.beams, sim_field.ms_paths, strict=True):
        (casda / f"scienceData.SIM_FIELD.SB101.SIM_FIELD.beam{b:02d}_averaged_cal.leakage.ms").symlink_to(ms)
    for b, ms in zip(sim_bandpass.beams, sim_bandpass.ms_paths, strict=True):
        (raw / f"SB100.B1934-638.beam{b}.ms").symlink_to(ms)
    assert sorted(find_by_beam(os.fspath(casda), ".ms", calibrator=False)) == list(sim_field.beams)
    out = tmp_path / "out"
    dead_api = ["--api-url", "http://127.0.0.1:9/api"]
    rc, err, _ = _run(["flow", "continuum", os.fspath(casda), "--already-calibrated", "--out-dir", os.fspath(out), *dead_api], capsys)
    _assert_refused(rc, err, out, "no Prefect API answers")
    rc, err, _ = _run(["flow", "bandpass", os.fspath(raw), "--out-dir", os.fspath(out), *dead_api], capsys)
    _assert_refused(rc, err, out, "no Prefect API answers")
    rc, err, _ = _run(["flow", "continuum", os.fspath(tmp_path), "--already-calibrated", "--out-dir", os.fspath(out)], capsys)
    _assert_refused(rc, err, out, "scienceData.<field>.SB<sbid>.<field>.beamNN*.ms (CASDA)")


def test_bandpass_beam_without_its_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A raw 36-field calibrator MS whose beam's field is missing is refused before anything starts."""
    from flint.ms import copy_ms, open_table
    from flint.sim import SimOptions, simulate_bandpass

    sim = simulate_bandpass(tmp_path / "sim", SimOptions(askap_raw=True, n_beams=2, n_antennas=6, n_channels=2, n_times=2))
    data = tmp_path / "raw"
    data.mkdir()
    ms = copy_ms(sim.ms_paths[1], data / "SB100.B1934-638.beam1.ms").path
    with open_table(ms, subtable="FIELD", mode="rw") as t:
        names = list(t.getcol("NAME"))
        assert names[1] == "B1934-638_beam1"
        t.putcell("NAME", 1, "B1934-638_beam99")  # beam 1's own field gone
    out = tmp_path / "out"
    rc, err, _ = _run(["flow", "bandpass", os.fspath(data), "--out-dir", os.fspath(out)], capsys)
    _assert_refused(rc, err, out, "SB100.B1934-638.beam1.ms", "beam 1 has no field of its own", "--strategy", "--beams")
    assert "--field" not in err  # not a flint flow option


def test_one_measurement_set_is_not_a_folder(sim_bandpass: SimResult, tmp_path: Path) -> None:
    """A single MS (a directory) given alone is that MS, not a folder to search; errors are one stderr line."""
    import subprocess
    import sys

    from flint.prefect.flows import find_by_beam

    ms = sim_bandpass.ms_paths[1]
    assert find_by_beam(os.fspath(ms), ".ms") == {1: os.fspath(ms)}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "flint.cli", "flow", "bandpass", os.fspath(ms), "--out-dir", os.fspath(out),
                           "--api-url", "http://127.0.0.1:9/api"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr  # one line, no INFO before it
    assert "no Prefect API answers" in proc.stderr and not out.exists()
