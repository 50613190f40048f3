"""Thermal noise from an MS's weights and flags, against a hand computation on a small sim MS.

``flint sim`` writes ``WEIGHT = 1/sigma^2`` with ``sigma = sqrt(2) x noise_jy`` (the rms of the
complex visibility; ``noise_jy`` is per real part). For equal weights the natural-weighting
Stokes-I noise is ``noise_jy / sqrt(2) / sqrt(N)`` with ``N`` the visibilities whose XX and YY are
both unflagged; with unequal weights it is ``1 / sqrt(2 sum w_I)``, ``w_I = 4 / (1/w_XX + 1/w_YY)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flint.errors import FlintMSError
from flint.ms import open_table
from flint.sim import SimOptions, SimResult
from flint.validation import thermal_noise

from conftest import writable_copy


def test_thermal_noise_matches_a_hand_computation(tmp_path: Path, sim_field_ideal: SimResult, sim_options: SimOptions) -> None:
    ms = writable_copy(sim_field_ideal.ms_paths[0], tmp_path)
    sigma_part = sim_options.noise_jy
    with open_table(ms.path) as t:
        nrow = t.nrows()
        nchan = t.getcell("FLAG", 0).shape[0]
        w0 = float(t.getcell("WEIGHT", 0)[0])
        assert np.all(t.getcol("WEIGHT") == np.float32(w0))
    assert w0 == pytest.approx(1 / (2 * sigma_part**2), rel=1e-6)  # the simulator's convention

    # untouched: every visibility counts, equal weights
    full = thermal_noise(ms.path)
    assert full.n_visibilities == nrow * nchan
    assert full.noise_jy == pytest.approx(sigma_part / np.sqrt(2) / np.sqrt(nrow * nchan), rel=1e-6)

    # flag: whole rows (FLAG_ROW), XX only in channel 0 of other rows (drops the Stokes-I
    # visibility), XY/YX only (keeps it); and weight XX 4x higher on a block of rows
    rows_flagged = np.arange(0, 100)
    rows_xx = np.arange(100, 300)
    rows_cross = np.arange(300, 400)
    rows_heavy = np.arange(400, 600)
    with open_table(ms.path, mode="rw") as t:
        flag_row = t.getcol("FLAG_ROW")
        flag_row[rows_flagged] = True
        t.putcol("FLAG_ROW", flag_row)
        flag = t.getcol("FLAG")
        flag[rows_xx, 0, 0] = True
        flag[rows_cross, :, 1:3] = True
        t.putcol("FLAG", flag)
        weight = t.getcol("WEIGHT")
        weight[rows_heavy, 0] *= 4
        t.putcol("WEIGHT", weight)
    w = 1 / (2 * sigma_part**2)
    n_normal = nrow * nchan - len(rows_flagged) * nchan - len(rows_xx) - len(rows_heavy) * nchan
    n_heavy = len(rows_heavy) * nchan
    sum_w = n_normal * (4 / (2 / w)) + n_heavy * (4 / (1 / (4 * w) + 1 / w))
    got = thermal_noise(ms.path)
    assert got.n_visibilities == n_normal + n_heavy
    assert got.sum_weight == pytest.approx(sum_w, rel=1e-5)
    assert got.noise_jy == pytest.approx(1 / np.sqrt(2 * sum_w), rel=1e-5)
    # the real-part convention is sqrt(2) larger; an explicit per-part noise ignores the weights
    assert thermal_noise(ms.path, sigma_convention="real").noise_jy == pytest.approx(np.sqrt(2) * got.noise_jy, rel=1e-6)
    n = n_normal + n_heavy
    assert thermal_noise(ms.path, noise_per_part_jy=sigma_part).noise_jy == pytest.approx(sigma_part / np.sqrt(2 * n), rel=1e-6)

    # everything flagged: one clear error
    with open_table(ms.path, mode="rw") as t:
        t.putcol("FLAG_ROW", np.ones(nrow, dtype=bool))
    with pytest.raises(FlintMSError, match="every Stokes-I visibility is flagged"):
        thermal_noise(ms.path)


def test_thermal_noise_equals_the_scatter_of_stokes_i_noise(tmp_path: Path, sim_field_ideal: SimResult, sim_options: SimOptions) -> None:
    """The formula against the data: pure-noise visibilities averaged with natural weights."""
    ms = writable_copy(sim_field_ideal.ms_paths[0], tmp_path)
    with open_table(ms.path) as t:
        shape = t.getcol("DATA").shape
    predicted = thermal_noise(ms.path).noise_jy
    rng = np.random.default_rng(11)
    # 200 independent noise realisations: the real part of the natural-weighted mean of I
    # at the phase centre is one pixel of the dirty image of a noise-only sky
    means = []
    for _ in range(200):
        vis = sim_options.noise_jy * (rng.standard_normal(shape[:2] + (2,)) + 1j * rng.standard_normal(shape[:2] + (2,)))
        stokes_i = 0.5 * (vis[..., 0] + vis[..., 1])
        means.append(float(np.mean(stokes_i.real)))
    measured = float(np.std(means, ddof=1))
    # 200 samples: the standard deviation is known to ~5 % (1/sqrt(2 x 199)); allow 3 sigma
    assert measured == pytest.approx(predicted, rel=0.15)
