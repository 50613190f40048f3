"""Solver numerics and the AO solution format, on synthetic arrays (no MS needed)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from flint.calibrate import _solver
from flint.calibrate.aocal import AOSolutions, read_solutions, write_solutions
from flint.errors import FlintInputError


def _normal_equations(
    gains: np.ndarray, model: np.ndarray, noise: float = 0.0, seed: int = 0, per_vis: bool = False, shuffle: bool = False
) -> _solver.NormalEquations:
    """Accumulate V = g_p M conj(g_q) (+ noise) through the real Accumulator. gains (ant, chan, 2).

    ``per_vis``: pass the model per visibility instead of as a spectrum; ``shuffle``:
    rows in random order (not a regular time x baseline grid).
    """
    rng = np.random.default_rng(seed)
    na, nc, _ = gains.shape
    a1, a2 = np.triu_indices(na, k=1)
    nt = 4
    a1, a2 = np.tile(a1, nt), np.tile(a2, nt)
    vis = gains[a1] * model[None, :, None] * np.conj(gains[a2])
    vis = vis + noise * (rng.standard_normal(vis.shape) + 1j * rng.standard_normal(vis.shape))
    w = np.ones(vis.shape, np.float32)
    if shuffle:
        order = rng.permutation(len(a1))
        a1, a2, vis = a1[order], a2[order], vis[order]
    iv = np.zeros(len(a1), np.int64)
    if per_vis:
        acc = _solver.Accumulator(1, na, nc, _solver.channel_groups(nc, 1))
        m = np.broadcast_to(model[None, :, None], vis.shape).astype(np.complex64)
        acc.add(iv, a1, a2, vis.astype(np.complex64), w, m)
    else:
        acc = _solver.Accumulator(1, na, nc, _solver.channel_groups(nc, 1), spectrum=model)
        acc.add(iv, a1, a2, vis.astype(np.complex64), w)
    return acc.finish()


def test_accumulator_paths_agree() -> None:
    """Spectrum vs per-visibility model, regular grid vs shuffled rows: the same sums."""
    g = _random_gains(7, 4)
    model = np.linspace(3, 5, 4)
    ref = _normal_equations(g, model, noise=0.2)
    for kw in ({"per_vis": True}, {"shuffle": True}, {"per_vis": True, "shuffle": True}):
        other = _normal_equations(g, model, noise=0.2, **kw)
        for name in ("A", "B", "C", "W", "N"):
            np.testing.assert_allclose(getattr(other, name), getattr(ref, name), rtol=2e-5, atol=1e-4, err_msg=f"{name} {kw}")
    assert np.all(ref.N[0, 0, 0][~np.eye(7, dtype=bool)] == 4)  # 4 integrations per baseline
    assert np.allclose(ref.A, np.conj(np.swapaxes(ref.A, -1, -2)))  # Hermitian


def _random_gains(na: int, nc: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    amp = 1 + 0.2 * rng.standard_normal((na, nc, 2))
    return np.abs(amp) * np.exp(1j * rng.uniform(-np.pi, np.pi, (na, nc, 2)))


def test_stefcal_recovers_noiseless_gains_exactly() -> None:
    na, nc = 10, 5
    g = _random_gains(na, nc)
    eq = _normal_equations(g, np.linspace(5, 8, nc))
    sol, conv, _ = _solver.stefcal(eq.A, eq.B)
    assert conv.all()
    sol = _solver.reference_phase(sol, 0)[0]  # (chan, pol, ant)
    truth = _solver.reference_phase(g.transpose(1, 2, 0), 0)
    np.testing.assert_allclose(sol, truth, rtol=1e-4, atol=1e-4)  # complex64 accumulation
    assert np.allclose(np.angle(sol[..., 0]), 0)


def test_stefcal_phase_only_keeps_unit_amplitude_and_chi2_drops() -> None:
    na, nc = 8, 3
    g = np.exp(1j * np.random.default_rng(3).uniform(-2, 2, (na, nc, 2)))
    eq = _normal_equations(g, np.full(nc, 4.0), noise=0.1)
    sol, conv, _ = _solver.stefcal(eq.A, eq.B, phase_only=True)
    assert conv.all()
    np.testing.assert_allclose(np.abs(sol), 1.0, rtol=1e-12)
    chi_before, n = _solver.chi2_per_antenna(eq, np.ones_like(sol))
    chi_after, _ = _solver.chi2_per_antenna(eq, sol)
    # after the fit the reduced chi2 is the noise level: E|n|^2 = 2 * 0.1^2 per sample
    assert np.all(chi_after < 0.2 * chi_before)
    np.testing.assert_allclose(np.median(chi_after / n), 0.02, rtol=0.25)


def test_stefcal_flags_antenna_without_data_and_unconverged_batches() -> None:
    na, nc = 6, 2
    g = _random_gains(na, nc)
    eq = _normal_equations(g, np.full(nc, 3.0))
    eq.A[..., 2, :] = 0
    eq.A[..., :, 2] = 0
    eq.B[..., 2, :] = 0
    eq.B[..., :, 2] = 0
    sol, conv, _ = _solver.stefcal(eq.A, eq.B)
    assert conv.all()
    assert np.isnan(sol[..., 2]).all() and np.isfinite(np.delete(sol, 2, axis=-1)).all()
    sol1, conv1, n_iter = _solver.stefcal(eq.A, eq.B, max_iter=1)
    assert n_iter == 1 and not conv1.any() and np.isnan(sol1).all()


def test_gain_snr_matches_noise_theory() -> None:
    na, nc = 12, 4
    g = np.ones((na, nc, 2), complex)
    flux, noise = 2.0, 0.5
    eq = _normal_equations(g, np.full(nc, flux), noise=noise, seed=5)
    sol, _, _ = _solver.stefcal(eq.A, eq.B)
    snr = _solver.gain_snr(eq, sol)
    # var(g) = sigma_c^2 / (flux^2 * n_samples), sigma_c^2 = 2 noise^2, n = (na-1) * 4 times
    expected = flux * np.sqrt((na - 1) * 4) / (np.sqrt(2) * noise)
    np.testing.assert_allclose(np.median(snr), expected, rtol=0.2)


def test_amplitude_outliers_finds_a_spike_only() -> None:
    nc = 40
    g = np.ones((1, nc, 2, 3), complex) * (1 + 0.03 * np.sin(np.arange(nc) / 6))[None, :, None, None]
    g[0, 17, 1, 2] *= 1.5
    out = _solver.amplitude_outliers(g, nsigma=8)
    assert out.sum() == 1 and out[0, 17, 1, 2]


def test_amplitude_outliers_at_the_band_edges() -> None:
    """A curved bandpass is no outlier at the band edge; a spike there is.

    The amplitudes are a real solve's (default simulator, beam 0, antenna 13, within 0.1 % of
    the truth): with a window reflected at the edge, channel 0 sat 5.4 % under the median
    (threshold 5 %) and was flagged.
    """
    amp = np.array([1.0242, 1.0512, 1.0781, 1.098, 1.1056, 1.0995, 1.0786, 1.0531, 1.0265, 1.0068, 1.0012, 1.0083])
    g = np.repeat(amp[None, :, None, None], 3, axis=3).astype(complex)
    assert not _solver.amplitude_outliers(g, nsigma=8).any()
    g[0, 0, 0, 1] *= 1.5
    g[0, 11, 0, 2] *= 0.5
    out = _solver.amplitude_outliers(g, nsigma=8)
    assert out.sum() == 2 and out[0, 0, 0, 1] and out[0, 11, 0, 2]


def test_correct_visibilities_inverts_full_jones() -> None:
    rng = np.random.default_rng(9)
    ni, na, nc = 2, 4, 3
    jones = rng.standard_normal((ni, na, nc, 2, 2)) + 1j * rng.standard_normal((ni, na, nc, 2, 2))
    jones[1, 3, 2] = np.nan
    a1, a2 = np.triu_indices(na, k=1)
    iv = np.array([0, 1, 0, 1, 0, 1])
    truth = rng.standard_normal((len(a1), nc, 2, 2)) + 1j * rng.standard_normal((len(a1), nc, 2, 2))
    j1, j2 = jones[iv, a1], jones[iv, a2]
    vis = (j1 @ truth @ np.conj(np.swapaxes(j2, -1, -2))).reshape(len(a1), nc, 4)
    out, bad = _solver.correct_visibilities(vis, jones, iv, a1, a2, [9, 10, 11, 12])
    expect_bad = ((iv == 1) & ((a1 == 3) | (a2 == 3)))[:, None] & (np.arange(nc) == 2)[None, :]
    np.testing.assert_array_equal(bad, expect_bad)
    np.testing.assert_allclose(out[~bad], truth.reshape(len(a1), nc, 4)[~bad], rtol=1e-4, atol=1e-4)
    assert np.all(out[bad] == 0)


# --------------------------------------------------------------------------- AO format
def test_ao_roundtrip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    jones = rng.standard_normal((3, 5, 7, 2, 2)) + 1j * rng.standard_normal((3, 5, 7, 2, 2))
    jones[1, 2, 3] = np.nan
    sols = AOSolutions(jones, start_time=5.0e9, end_time=5.0e9 + 300)
    path = write_solutions(tmp_path / "x.bin", sols)
    assert path.stat().st_size == 48 + 3 * 5 * 7 * 4 * 16
    back = read_solutions(path)
    np.testing.assert_array_equal(back.jones, jones)  # NaN positions equal too
    assert (back.start_time, back.end_time) == (5.0e9, 5.0e9 + 300)
    # the header, read independently of flint's reader
    raw = path.read_bytes()
    assert raw[:8] == b"MWAOCAL\0"
    assert struct.unpack("<6I", raw[8:32]) == (0, 0, 3, 5, 7, 4)
    assert struct.unpack("<2d", raw[32:48]) == (5.0e9, 5.0e9 + 300)
    # first value: real, imaginary of interval 0, antenna 0, channel 0, pol xx; then pol xy
    assert struct.unpack("<4d", raw[48:80]) == (jones[0, 0, 0, 0, 0].real, jones[0, 0, 0, 0, 0].imag, jones[0, 0, 0, 0, 1].real, jones[0, 0, 0, 0, 1].imag)


def test_ao_file_built_by_hand_parses(tmp_path: Path) -> None:
    """A file as AO calibrate writes it (times 0), assembled byte by byte."""
    ni, na, nc = 1, 2, 3
    values = []
    for a in range(na):
        for c in range(nc):
            values += [1.0 + a, 0.1 * c, 0.0, 0.0, 0.0, 0.0, 2.0, -0.5]  # xx, xy, yx, yy
    blob = struct.pack("<8s6I2d", b"MWAOCAL\0", 0, 0, ni, na, nc, 4, 0.0, 0.0) + struct.pack(f"<{len(values)}d", *values)
    path = tmp_path / "hand.bin"
    path.write_bytes(blob)
    sols = read_solutions(path)
    assert sols.jones.shape == (1, 2, 3, 2, 2)
    assert sols.jones[0, 1, 2, 0, 0] == 2.0 + 0.2j
    assert sols.jones[0, 0, 1, 1, 1] == 2.0 - 0.5j
    np.testing.assert_array_equal(sols.gains[0, :, :, 0], [[1, 1 + 0.1j, 1 + 0.2j], [2, 2 + 0.1j, 2 + 0.2j]])
    assert not sols.flagged.any()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"NOTAOCAL" + bytes(40), "MWAOCAL"),
        (b"MWAOCAL\0" + bytes(10), "too short"),
        (struct.pack("<8s6I2d", b"MWAOCAL\0", 0, 0, 1, 2, 3, 4, 0, 0) + bytes(16), "truncated"),
        (struct.pack("<8s6I2d", b"MWAOCAL\0", 0, 0, 1, 1, 1, 2, 0, 0) + bytes(32), "polarizationCount"),
    ],
)
def test_ao_bad_files_raise_one_clear_error(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(FlintInputError, match=match):
        read_solutions(path)


def test_ao_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FlintInputError, match="no such solution file"):
        read_solutions(tmp_path / "nope.bin")


def test_interval_mapping() -> None:
    sols = AOSolutions(np.ones((3, 1, 1, 2, 2), complex), start_time=100.0, end_time=130.0)
    np.testing.assert_array_equal(sols.interval_of(np.array([100.5, 109.9, 110.1, 129.9]), np.array([])), [0, 0, 1, 2])
    zero = AOSolutions(np.ones((2, 1, 1, 2, 2), complex))
    times = np.arange(6.0)
    np.testing.assert_array_equal(zero.interval_of(times, times), [0, 0, 0, 1, 1, 1])


# --------------------------------------------------------------------------- solutions shared by channel groups
def _grouped(seed: int = 4) -> tuple[AOSolutions, np.ndarray]:
    """3 intervals x 4 antennas x 7 channels in groups [0 0 0 1 1 2 2]; one flagged cell."""
    rng = np.random.default_rng(seed)
    gains = rng.standard_normal((3, 4, 3, 2)) + 1j * rng.standard_normal((3, 4, 3, 2))
    gains[2, 1, 1, 0] = np.nan
    group = np.array([0, 0, 0, 1, 1, 2, 2])
    return AOSolutions.from_gains(gains, 10.0, 40.0, channel_group=group), group


def test_grouped_solutions_expand_to_channels() -> None:
    sols, group = _grouped()
    assert (sols.n_intervals, sols.n_antennas, sols.n_channels, sols.n_groups) == (3, 4, 7, 3)
    assert sols.jones.shape == (3, 4, 7, 2, 2)
    np.testing.assert_array_equal(sols.jones, sols.grouped_jones[:, :, group])
    np.testing.assert_array_equal(sols.gains[..., 0], sols.grouped_jones[:, :, group, 0, 0])
    # the flagged cell of group 1 flags its two channels
    assert sols.n_flagged == int(sols.flagged.sum()) == 2
    np.testing.assert_array_equal(np.flatnonzero(sols.flagged[2, 1]), [3, 4])
    # an identity map is the same as none
    assert AOSolutions(sols.jones, channel_group=np.arange(7)).n_groups == 7


@pytest.mark.parametrize("group", [np.array([0, 3]), np.array([-1, 0]), np.zeros((2, 2), int)])
def test_bad_channel_group_is_one_error(group: np.ndarray) -> None:
    with pytest.raises(FlintInputError, match="channel_group"):
        AOSolutions(np.ones((1, 2, 3, 2, 2), complex), channel_group=group)


def test_grouped_solutions_write_per_channel_and_read_back_grouped(tmp_path: Path) -> None:
    """The file holds every channel (as AO calibrate's readers expect); the reader finds the groups again."""
    sols, group = _grouped()
    path = write_solutions(tmp_path / "g.bin", sols)
    assert path.stat().st_size == 48 + 3 * 4 * 7 * 4 * 16
    per_channel = np.frombuffer(path.read_bytes()[48:], dtype="<c16").reshape(3, 4, 7, 2, 2)
    np.testing.assert_array_equal(per_channel, sols.jones)
    back = read_solutions(path)
    assert back.n_groups == 3
    np.testing.assert_array_equal(back.channel_group, group)
    np.testing.assert_array_equal(back.jones, sols.jones)
    # a per-channel file whose channels all differ stays per channel
    rng = np.random.default_rng(1)
    distinct = AOSolutions(rng.standard_normal((2, 3, 5, 2, 2)) + 0j)
    assert read_solutions(write_solutions(tmp_path / "d.bin", distinct)).n_groups == 5
    # channels equal in one interval but not in another are not grouped
    j = np.ones((2, 1, 2, 2, 2), complex)
    j[1, 0, 1] = 2.0
    assert read_solutions(write_solutions(tmp_path / "e.bin", AOSolutions(j))).n_groups == 2


@pytest.mark.parametrize("corr", [[9, 12], [9, 10, 11, 12]])
def test_grouped_correction_equals_the_per_channel_one(corr: list[int]) -> None:
    """Correcting with the groups and their map gives the bytes of correcting with the expanded solutions."""
    sols, group = _grouped()
    rng = np.random.default_rng(5)
    a1, a2 = np.triu_indices(4, k=1)
    iv = rng.integers(0, 3, len(a1))
    vis = (rng.standard_normal((len(a1), 7, len(corr))) + 1j * rng.standard_normal((len(a1), 7, len(corr)))).astype(np.complex64)
    want, want_bad = _solver.correct_visibilities(vis, sols.jones, iv, a1, a2, corr)
    got, got_bad = _solver.correct_visibilities(vis, sols.grouped_jones, iv, a1, a2, corr, sols.channel_group)
    np.testing.assert_array_equal(got_bad, want_bad)
    np.testing.assert_array_equal(got, want)
    assert want_bad.any()  # the flagged cell is exercised
