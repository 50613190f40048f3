"""Measurement Set handling and the simulator, checked against the simulator's inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from flint._askap import b1934_flux_jy
from flint.errors import FlintMSError
from flint.ms import (
    MS,
    add_column,
    copy_ms,
    open_table,
    rename_column,
    require_columns,
    split_by_field,
    summarise,
)
from flint.sim import SimOptions, SimResult, simulate_bandpass, simulate_field

from conftest import writable_copy


def test_summary_matches_what_was_simulated(sim_field: SimResult, sim_options: SimOptions) -> None:
    o = sim_options
    for beam, (ms_path, centre) in enumerate(zip(sim_field.ms_paths, sim_field.beam_centres_deg, strict=True)):
        s = summarise(ms_path)
        assert s.telescope == "ASKAP"
        assert s.n_antennas == o.n_antennas == 36
        assert s.antennas[0] == "ak01"
        assert s.n_baselines == 36 * 35 // 2
        assert s.n_rows == 630 * o.n_times
        assert s.n_channels == o.n_channels
        assert s.freqs_hz[0] == pytest.approx(o.freq_start_hz)
        assert s.channel_width_hz == pytest.approx(1e6)
        assert s.correlations == ["XX", "XY", "YX", "YY"]
        assert s.n_times == o.n_times
        assert s.integration_s == pytest.approx(9.95)
        assert s.beams == [beam]
        assert s.phase_centres_deg[0] == pytest.approx(centre, abs=1e-9)
        assert s.flagged_fraction == 0.0
        assert s.data_columns == ["DATA"]
        assert MS.cast(ms_path).beam == beam
    # beams sit on the footprint: 0.9 deg apart in the tangent plane (0.89993 deg on the sky)
    from flint.primary_beam import angular_separation_deg

    c = sim_field.beam_centres_deg
    assert float(angular_separation_deg(*c[0], *c[1])) == pytest.approx(0.9, abs=1e-4)
    assert float(angular_separation_deg(*c[0], *c[2])) == pytest.approx(0.9, abs=1e-4)


def test_calibrator_data_are_gains_times_model_plus_noise(sim_bandpass: SimResult, sim_options: SimOptions) -> None:
    truth = np.load(sim_bandpass.truth)
    g = truth["bandpass"][0]  # (ant, chan, pol)
    with open_table(sim_bandpass.ms_paths[0]) as t:
        data = t.getcol("DATA")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
    freqs = truth["freqs_hz"]
    model = b1934_flux_jy(freqs)
    expect_xx = g[a1, :, 0] * model[None, :] * np.conj(g[a2, :, 0])
    resid = data[:, :, 0] - expect_xx
    # residual is the thermal noise: its std per real/imag part equals noise_jy
    assert np.std(resid.real) == pytest.approx(sim_options.noise_jy, rel=0.02)
    assert np.std(resid.imag) == pytest.approx(sim_options.noise_jy, rel=0.02)
    # cross-hands carry only noise for an unpolarised calibrator
    assert np.std(data[:, :, 1].real) == pytest.approx(sim_options.noise_jy, rel=0.02)
    # 1934-638 is ~13 Jy around 888 MHz (Reynolds 1994)
    assert 12.0 < float(model.mean()) < 15.0


def test_uvw_lengths_are_physical(sim_field: SimResult) -> None:
    from flint._askap import antenna_itrf

    itrf = antenna_itrf(36)
    with open_table(sim_field.ms_paths[0]) as t:
        uvw = t.getcol("UVW")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
    baseline = np.linalg.norm(itrf[a2] - itrf[a1], axis=1)
    np.testing.assert_allclose(np.linalg.norm(uvw, axis=1), baseline, rtol=1e-9)
    assert baseline.max() == pytest.approx(6.4e3, rel=0.1)  # ASKAP: ~6 km longest baseline


def _tree_hash(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for root in paths:
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            h.update(f.relative_to(root.parent).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    opts = SimOptions(n_beams=1, n_times=4, n_channels=4, n_sources=5)
    runs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        out = tmp_path / name
        f = simulate_field(out, opts.with_options(seed=seed))
        b = simulate_bandpass(out, opts.with_options(seed=seed))
        runs.append(_tree_hash([*f.ms_paths, *b.ms_paths, f.truth, b.truth, f.sky_csv, f.sky_fits]))  # type: ignore[list-item]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_copy_add_rename_split(tmp_path: Path, sim_field: SimResult) -> None:
    ms = writable_copy(sim_field.ms_paths[0], tmp_path)
    with open_table(ms.path) as t:
        data = t.getcol("DATA")
    out = add_column(ms, "CORRECTED_DATA", like="DATA", fill="copy")
    assert out.column == "CORRECTED_DATA"
    with open_table(ms.path) as t:
        np.testing.assert_array_equal(t.getcol("CORRECTED_DATA"), data)
    add_column(ms, "MODEL_DATA")
    with open_table(ms.path) as t:
        assert not np.any(t.getcol("MODEL_DATA"))
    rename_column(ms, "MODEL_DATA", "MODEL_OLD")
    require_columns(ms, "MODEL_OLD", "DATA")
    with pytest.raises(FlintMSError, match="refusing to rename DATA"):
        rename_column(ms, "DATA", "X")
    with pytest.raises(FlintMSError, match="exists already"):
        rename_column(ms, "CORRECTED_DATA", "MODEL_OLD")
    copied = copy_ms(ms, tmp_path / "copy.ms")
    assert summarise(copied).n_rows == summarise(ms).n_rows
    with pytest.raises(FlintMSError, match="exists already"):
        copy_ms(ms, tmp_path / "copy.ms")
    parts = split_by_field(ms, tmp_path / "split")
    assert list(parts) == ["SIM_FIELD_beam00"]
    assert summarise(parts["SIM_FIELD_beam00"]).n_rows == summarise(ms).n_rows


def test_bad_measurement_sets_give_one_clear_error(tmp_path: Path, sim_field: SimResult) -> None:
    with pytest.raises(FlintMSError, match="no such Measurement Set"):
        summarise(tmp_path / "missing.ms")
    (tmp_path / "notatable.ms").mkdir()
    with pytest.raises(FlintMSError, match="not a casacore table"):
        summarise(tmp_path / "notatable.ms")
    corrupt = writable_copy(sim_field.ms_paths[0], tmp_path / "c")
    (corrupt.path / "table.dat").write_bytes(b"garbage")
    with pytest.raises(FlintMSError, match="cannot be opened"):
        summarise(corrupt)
    with pytest.raises(FlintMSError, match="no CORRECTED_DATA column"):
        require_columns(sim_field.ms_paths[0], "CORRECTED_DATA")


def test_full_askap_shape_opens(tmp_path: Path) -> None:
    """The correlator's shape: 36 antennas, 288 x 1 MHz channels, XX XY YX YY, beam ids in FEED."""
    opts = SimOptions(n_beams=1, n_channels=288, freq_start_hz=743.5e6, n_times=2, n_sources=3, n_bright=1)
    res = simulate_field(tmp_path, opts)
    s = summarise(res.ms_paths[0])
    assert (s.n_antennas, s.n_channels, s.correlations) == (36, 288, ["XX", "XY", "YX", "YY"])
    assert s.centre_freq_hz == pytest.approx(887.0e6)
    assert s.freqs_hz[-1] - s.freqs_hz[0] == pytest.approx(287e6)
    with open_table(res.ms_paths[0], subtable="FEED") as t:
        assert set(t.getcol("BEAM_ID")) == {0}
        assert t.nrows() == 36
