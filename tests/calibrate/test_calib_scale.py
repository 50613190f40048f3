"""Memory of the solve and of flagging does not grow with the data (issue 16 points 3 and 4).

Memory is asserted through deterministic quantities: the normal-equation accumulator's
allocated bytes (:attr:`SolveOutcome.accumulator_bytes`) and the AOFlagger time window.
Solutions solved a block of intervals at a time must equal the all-at-once solve (the
blocks are independent problems: same sums, same iterations), to rounding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flint.calibrate._msdata import read_layout
from flint.calibrate._solve_ms import (
    ACCUMULATOR_BYTES,
    SolveOutcome,
    SolveSpec,
    interval_blocks,
    solve_ms,
)
from flint.calibrate._solver import Accumulator
from flint.flagging import FlagOptions, run_flagging
from flint.ms import MS, add_column, open_table
from flint.sim import SimOptions, SimResult, simulate_field

from conftest import writable_copy


def _with_model(ms: MS) -> MS:
    """MODEL_DATA = DATA with the noise-free-ish smooth part: a unit point source is enough here."""
    add_column(ms, "MODEL_DATA", like="DATA", fill="zero")
    with open_table(ms.path, mode="rw") as tab:
        m = np.zeros(tab.getcol("DATA").shape, np.complex64)
        m[..., 0] = m[..., 3] = 1.0
        tab.putcol("MODEL_DATA", m)
    return ms


def _time_unsorted_copy(ms: MS | Path, dest: Path) -> MS:
    """The same MS with rows ordered by baseline, then time (as some writers do)."""
    ms = MS.cast(ms)
    with open_table(ms.path) as tab:
        sel = tab.sort("ANTENNA1, ANTENNA2, TIME")
        try:
            sel.copy(str(dest), deep=True).close()
        finally:
            sel.close()
    return MS.cast(dest)


def _solve(ms: MS, interval_s: float, budget: int, chans: int | None = 1, phase_only: bool = False) -> SolveOutcome:
    layout = read_layout(ms, "DATA")
    spec = SolveSpec(
        column="DATA", model_spectrum=None, interval_s=interval_s, chans_per_solution=chans,
        phase_only=phase_only, ref_antenna=0, min_snr=3.0, outlier_nsigma=8.0, max_accumulator_bytes=budget,
    )
    return solve_ms(layout, spec)


@pytest.fixture(scope="module")
def field_with_model(sim_field: SimResult, tmp_path_factory: pytest.TempPathFactory) -> MS:
    return _with_model(writable_copy(sim_field.ms_paths[0], tmp_path_factory.mktemp("scale_model")))


def test_selfcal_blocks_give_the_same_solutions(field_with_model: MS, tmp_path: Path) -> None:
    ms = field_with_model
    whole = _solve(ms, 20.0, budget=1 << 40)  # every interval at once (the old behaviour)
    assert whole.n_blocks == 1
    per = Accumulator.bytes_per_interval(36, 12)
    blocked = _solve(ms, 20.0, budget=per)  # one interval per block
    n_int = whole.solutions.n_intervals
    assert n_int == 15 and blocked.n_blocks == n_int
    assert whole.accumulator_bytes == n_int * per and blocked.accumulator_bytes == per
    np.testing.assert_array_equal(blocked.solutions.flagged, whole.solutions.flagged)
    np.testing.assert_allclose(blocked.solutions.gains, whole.solutions.gains, rtol=1e-12, atol=0)
    np.testing.assert_allclose(blocked.snr, whole.snr, rtol=1e-12)
    assert (blocked.n_low_snr, blocked.n_outliers, blocked.n_not_converged) == (whole.n_low_snr, whole.n_outliers, whole.n_not_converged)
    assert blocked.n_vis == whole.n_vis
    assert blocked.residual_rms_after == pytest.approx(whole.residual_rms_after, rel=1e-12)
    assert blocked.residual_rms_before == pytest.approx(whole.residual_rms_before, rel=1e-12)
    # an MS whose rows are not in time order is read through row selections: same answer
    unsorted = _time_unsorted_copy(ms, tmp_path / "unsorted.ms")
    assert not read_layout(unsorted, "DATA").time_sorted
    other = _solve(unsorted, 20.0, budget=2 * per)
    assert other.n_blocks == 8
    np.testing.assert_allclose(other.solutions.gains, whole.solutions.gains, rtol=1e-5)


def test_selfcal_accumulator_does_not_grow_with_intervals(field_with_model: MS) -> None:
    """The default budget: the accumulator is bounded whatever the number of intervals."""
    budget = ACCUMULATOR_BYTES
    sizes = {}
    for interval in (150.0, 60.0, 10.0):
        out = _solve(field_with_model, interval, budget=budget, chans=1, phase_only=True)
        sizes[out.solutions.n_intervals] = out.accumulator_bytes
    assert sorted(sizes) == [2, 5, 30]
    # one solution across the band (self-cal's default) is held once per interval, not per channel
    band = _solve(field_with_model, 10.0, budget=budget, chans=None, phase_only=True).solutions
    assert (band.n_groups, band.n_channels) == (1, 12)
    assert band.grouped_jones.nbytes == 30 * 36 * 1 * 4 * 16
    np.testing.assert_array_equal(band.channel_group, np.zeros(12))
    per = Accumulator.bytes_per_interval(36, 12)
    assert all(v == n * per for n, v in sizes.items())  # small grids: all intervals fit in one block
    # at ASKAP size (36 antennas, 288 channels, per-channel solutions) one interval is ~36 MB:
    # the blocks hold one interval each, so 5, 60 or 3600 intervals use the same memory
    per_askap = Accumulator.bytes_per_interval(36, 288)
    assert 30e6 < per_askap <= budget
    for n in (5, 60, 3600):
        blocks = interval_blocks(n, per_askap, budget)
        assert max(hi - lo for lo, hi in blocks) * per_askap <= budget
        assert sum(hi - lo for lo, hi in blocks) == n


# --- flagging: each baseline's whole time range, whatever the read chunk -------------------

#: long enough for a 15-minute window to matter (160 x 9.95 s = 26.5 min)
LONG_RFI = SimOptions(n_beams=1, n_antennas=8, n_channels=32, n_times=160, rfi=True, rfi_fraction=0.03, seed=11)


@pytest.fixture(scope="module")
def long_rfi_field(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    return simulate_field(tmp_path_factory.mktemp("long_rfi"), LONG_RFI)


def _flag_and_record(ms: MS, opts: FlagOptions, monkeypatch: pytest.MonkeyPatch) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Run flagging; return the flags and the (time, chan) image sizes AOFlagger was given."""
    import flint.flagging as fl

    seen: list[tuple[int, int]] = []
    orig = fl._BaselineFlagger.__init__

    def init(self: Any, flagger: Any, strategy: Any, n_t: int, n_c: int, n_corr: int) -> None:
        seen.append((n_t, n_c))
        orig(self, flagger, strategy, n_t, n_c, n_corr)

    monkeypatch.setattr(fl._BaselineFlagger, "__init__", init)
    run_flagging(ms, opts)
    with open_table(ms.path) as tab:
        return tab.getcol("FLAG"), seen


def test_aoflagger_sees_whole_baselines_whatever_the_chunk(long_rfi_field: SimResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows_per_time = 8 * 9 // 2 + 8  # cross + auto rows per integration
    mask = np.load(long_rfi_field.truth)["rfi_mask_beam00"]
    ms = writable_copy(long_rfi_field.ms_paths[0], tmp_path / "a")
    small = FlagOptions(max_rows_per_chunk=5 * rows_per_time)  # reads of 5 integrations
    flags, seen = _flag_and_record(ms, small, monkeypatch)
    assert set(seen) == {(160, 32)}  # one image per baseline: all 160 integrations
    big, _ = _flag_and_record(writable_copy(long_rfi_field.ms_paths[0], tmp_path / "b"), FlagOptions(), monkeypatch)
    np.testing.assert_array_equal(flags, big)  # the read chunk does not change the answer
    one, _ = _flag_and_record(writable_copy(long_rfi_field.ms_paths[0], tmp_path / "t1"), small.with_options(threads=1), monkeypatch)
    np.testing.assert_array_equal(one, big)  # nor the number of threads
    f = flags[..., 0]
    assert f[mask].mean() >= 0.9 and f[~mask].mean() <= 0.03
    assert not list(tmp_path.glob("a/.flint_flag_*"))  # scratch removed
    # a 15-minute window: AOFlagger sees 91 + 69 integrations, quality holds
    win, seen = _flag_and_record(writable_copy(long_rfi_field.ms_paths[0], tmp_path / "c"), small.with_options(time_window_s=900.0), monkeypatch)
    assert set(seen) == {(91, 32), (69, 32)}
    assert win[..., 0][mask].mean() >= 0.9 and win[..., 0][~mask].mean() <= 0.03
    # rows not in time order: the same flags row for row
    unsorted = _time_unsorted_copy(long_rfi_field.ms_paths[0], tmp_path / "unsorted.ms")
    uflags, _ = _flag_and_record(unsorted, small, monkeypatch)
    with open_table(unsorted.path) as tab:
        key_u = np.stack([tab.getcol("TIME"), tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")], axis=1)
    with open_table(ms.path) as tab:
        key_s = np.stack([tab.getcol("TIME"), tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")], axis=1)
    order_u, order_s = np.lexsort(key_u.T[::-1]), np.lexsort(key_s.T[::-1])
    np.testing.assert_array_equal(uflags[order_u], flags[order_s])


def test_missing_scratch_dir_is_one_error(long_rfi_field: SimResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flint.cli import main

    ms = writable_copy(long_rfi_field.ms_paths[0], tmp_path)
    with open_table(ms.path) as tab:
        before = tab.getcol("FLAG")
    assert main(["-q", "flag", str(ms.path), "--scratch-dir", str(tmp_path / "nope")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--scratch-dir" in err and "no such folder" in err
    with open_table(ms.path) as tab:
        np.testing.assert_array_equal(tab.getcol("FLAG"), before)
