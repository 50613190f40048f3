"""``flint subtract`` on the simulated field: WSClean -predict of the clean model, subtraction,
and the polynomial uv-continuum stage.

Truth: the ideal field (unit gains) has thermal noise of ``noise_jy`` per real/imaginary part
in every correlation; the cross-hands XY/YX hold no sky, so their rms measures that noise in
the data themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from flint.askap import mark_frame
from flint.cli import main
from flint.imaging import ImagingResult, WSCleanOptions, run_imaging
from flint.ms import MS, add_column, open_table
from flint.sim import SimOptions, SimResult
from flint.subtract import SubtractOptions, parse_channel_ranges, run_subtract

from conftest import require_tool, writable_copy

WSCLEAN = WSCleanOptions(size=1536, scale_arcsec=4.0, robust=0.0, auto_mask=5.0, auto_threshold=3.0)


@dataclass(frozen=True)
class Imaged:
    ms: MS
    imaging: ImagingResult
    model_after_imaging: np.ndarray
    prefix: Path


def _col(ms: MS, name: str) -> np.ndarray:
    with open_table(ms.path) as t:
        return np.asarray(t.getcol(name))


def _put(ms: MS, name: str, value: np.ndarray) -> None:
    with open_table(ms.path, mode="rw") as t:
        t.putcol(name, value)


@pytest.fixture(scope="module")
def imaged(tmp_path_factory: pytest.TempPathFactory, sim_field_ideal: SimResult) -> Imaged:
    """Beam 0 (CORRECTED_DATA = DATA: unit gains) imaged as self-cal round 2; MODEL_DATA then zeroed."""
    require_tool("wsclean")
    d = tmp_path_factory.mktemp("subtract")
    ms = add_column(writable_copy(sim_field_ideal.ms_paths[0], d), "CORRECTED_DATA", like="DATA", fill="copy")
    res = run_imaging(ms, WSCLEAN, out_dir=d / "images", round=2)
    model = _col(ms, "MODEL_DATA")
    _put(ms, "MODEL_DATA", np.zeros_like(model))
    return Imaged(ms=ms, imaging=res, model_after_imaging=model, prefix=d / "images" / res.image.name.removesuffix(".image.fits"))


def _rms(vis: np.ndarray, flags: np.ndarray, cross: np.ndarray, corrs: list[int]) -> float:
    v = vis[cross][:, :, corrs][~flags[cross][:, :, corrs]]
    return float(np.sqrt(np.mean(np.concatenate([v.real, v.imag]) ** 2)))


def test_subtract_predicts_model_and_leaves_noise(imaged: Imaged, sim_options: SimOptions, capsys: pytest.CaptureFixture[str]) -> None:
    ms = imaged.ms
    data_before, corr_before = _col(ms, "DATA"), _col(ms, "CORRECTED_DATA")
    assert main(["subtract", str(ms.path), "--model-prefix", str(imaged.prefix)]) == 0
    out = capsys.readouterr().out
    assert "predicted one model (flat spectrum)" in out and "CONTSUB_DATA written" in out
    # inputs untouched; MODEL_DATA is WSClean's prediction of the round-2 model (as imaging wrote it)
    assert np.array_equal(_col(ms, "DATA"), data_before) and np.array_equal(_col(ms, "CORRECTED_DATA"), corr_before)
    model = _col(ms, "MODEL_DATA")
    ref = imaged.model_after_imaging
    assert np.max(np.abs(model - ref)) < 1e-3 * np.max(np.abs(ref))
    flags = _col(ms, "FLAG")
    with open_table(ms.path) as t:
        cross = t.getcol("ANTENNA1") != t.getcol("ANTENNA2")
    noise = _rms(corr_before, flags, cross, [1, 2])  # XY/YX: noise only
    assert noise == pytest.approx(sim_options.noise_jy, rel=0.02)
    sub = _col(ms, "CONTSUB_DATA")
    np.testing.assert_allclose(sub, corr_before - model, rtol=0, atol=1e-6)
    before, after = _rms(corr_before, flags, cross, [0, 3]), _rms(sub, flags, cross, [0, 3])
    print(f"XX/YY rms: before {before:.4f} Jy, after {after:.4f} Jy, noise (XY/YX) {noise:.4f} Jy")
    assert before > 1.5 * noise  # the sky (0.46 Jy rms) dominates before subtraction
    assert after < 1.02 * noise  # tolerance: residual rms within 2 % of the noise (measured 1.0007x)
    for chan in range(sub.shape[1]):  # at every channel, not only on average
        assert _rms(sub[:, chan : chan + 1], flags[:, chan : chan + 1], cross, [0, 3]) < 1.05 * noise


def test_uvcontsub_removes_slope_exactly(tmp_path: Path, sim_field_ideal: SimResult) -> None:
    """Noiseless: CORRECTED_DATA = a + b nu (random per row and correlation) + a line in channels 5-7."""
    ms = add_column(writable_copy(sim_field_ideal.ms_paths[1], tmp_path), "CORRECTED_DATA", like="DATA", fill="zero")
    add_column(ms, "MODEL_DATA", like="DATA", fill="zero")
    data = _col(ms, "DATA")
    nrow, nchan, ncorr = data.shape
    rng = np.random.default_rng(3)
    a = rng.normal(size=(nrow, 1, ncorr)) + 1j * rng.normal(size=(nrow, 1, ncorr))
    b = rng.normal(size=(nrow, 1, ncorr)) + 1j * rng.normal(size=(nrow, 1, ncorr))
    nu = np.linspace(-1, 1, nchan)[None, :, None]
    line = np.zeros((1, nchan, 1))
    line[0, 5:8, 0] = [0.5, 1.0, 0.5]
    _put(ms, "CORRECTED_DATA", (a + b * nu + line).astype(np.complex64))
    assert main(["subtract", str(ms.path), "--uvcontsub-order", "1", "--fit-channels", "0~4,8~11", "--output-column", "LINE_DATA"]) == 0
    out = _col(ms, "LINE_DATA")
    scale = float(np.max(np.abs(a + b * nu)))
    assert np.max(np.abs(out - line)) < 1e-5 * scale
    assert np.array_equal(_col(ms, "DATA"), data)
    # without the polynomial stage the continuum stays
    res = run_subtract(ms, SubtractOptions(output_column="NOFIT_DATA"))
    assert res.rms_out_jy == pytest.approx(res.rms_in_jy)


def test_uvcontsub_auto_finds_the_line_channels(tmp_path: Path, sim_field_ideal: SimResult, capsys: pytest.CaptureFixture[str]) -> None:
    """``--fit-channels auto`` (the default with --uvcontsub-order): CORRECTED_DATA = noise + a sloped continuum
    per row (no sky) + a line at the phase centre in channels 5-7. The first-pass cube finds channels 5-7,
    the fit over the rest leaves the line and the noise."""
    require_tool("wsclean")
    ms = add_column(writable_copy(sim_field_ideal.ms_paths[1], tmp_path), "CORRECTED_DATA", like="DATA", fill="zero")
    add_column(ms, "MODEL_DATA", like="DATA", fill="zero")
    nrow, nchan, ncorr = _col(ms, "DATA").shape
    rng = np.random.default_rng(5)
    sigma = 0.3
    noise = sigma * (rng.normal(size=(nrow, nchan, ncorr)) + 1j * rng.normal(size=(nrow, nchan, ncorr)))
    a = sigma * (rng.normal(size=(nrow, 1, ncorr)) + 1j * rng.normal(size=(nrow, 1, ncorr)))
    b = sigma * (rng.normal(size=(nrow, 1, ncorr)) + 1j * rng.normal(size=(nrow, 1, ncorr)))
    nu = np.linspace(-1, 1, nchan)[None, :, None]
    line = np.zeros((1, nchan, ncorr))
    for corr in (0, 3):  # XX and YY: Stokes I 0.1 Jy at the peak
        line[0, 5:8, corr] = 0.1 * np.array([0.5, 1.0, 0.5])
    _put(ms, "CORRECTED_DATA", (noise + a + b * nu + line).astype(np.complex64))
    argv = ["subtract", str(ms.path), "--uvcontsub-order", "1", "--output-column", "LINE_DATA", "--linefree-size", "128", "--linefree-scale-arcsec", "8"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    found = next(x for x in printed.splitlines() if x.startswith("line channels found: "))
    line_chans = parse_channel_ranges(found.split(": ", 1)[1], nchan)
    assert line_chans is not None and line_chans[5:8].all(), found
    assert line_chans.sum() <= 8, found  # 5-7 dilated by 1.5 x their ~2-channel FWHM: not the whole band
    out = _col(ms, "LINE_DATA")
    flags = _col(ms, "FLAG")
    free = ~line_chans
    # the line survives (the mean over rows at its peak, noise of the mean ~0.3/sqrt(rows) = 2.2 mJy) ...
    peak = out[:, 6, 0][~flags[:, 6, 0]].mean()
    assert abs(peak.real - 0.1) < 0.01 and abs(peak.imag) < 0.01
    # ... and the sloped continuum (rms 0.42 Jy per part) is gone: what is left in free channels is the noise
    resid = out[:, free][~flags[:, free]]
    rms = float(np.sqrt(np.mean(np.concatenate([resid.real, resid.imag]) ** 2)))
    assert rms < sigma, rms  # a fit over n free channels removes 2/n of the noise variance: < 0.3


def _one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    return err[0]


def _columns(ms: MS) -> set[str]:
    with open_table(ms.path) as t:
        return set(t.colnames())


def test_subtract_unhappy(tmp_path: Path, imaged: Imaged, sim_field_ideal: SimResult, capsys: pytest.CaptureFixture[str]) -> None:
    ms = add_column(writable_copy(sim_field_ideal.ms_paths[1], tmp_path), "CORRECTED_DATA", like="DATA", fill="copy")
    before = _columns(ms)
    line = _one_error_line(capsys, ["subtract", str(ms.path), "--model-prefix", str(tmp_path / "nothing.round2")])
    assert "--model-prefix" in line and "nothing.round2.model.fits" in line
    line = _one_error_line(capsys, ["subtract", str(ms.path), "--model-prefix", str(imaged.prefix)])
    assert "this beam's images" in line and str(ms.path) in line  # beam 0's model, beam 1's MS
    line = _one_error_line(capsys, ["subtract", str(ms.path)])
    assert "no MODEL_DATA" in line and "--model-prefix" in line
    line = _one_error_line(capsys, ["subtract", str(ms.path), "--uvcontsub-order", "1", "--fit-channels", "0~40"])
    assert "--fit-channels" in line and "0~11" in line
    assert "--output-column" in _one_error_line(capsys, ["subtract", str(ms.path), "--output-column", "CORRECTED_DATA"])
    assert _columns(ms) == before
    mark_frame(ms, "preprocessing")  # an interrupted preprocess: instrument frame
    line = _one_error_line(capsys, ["subtract", str(ms.path), "--model-prefix", str(imaged.prefix)])
    assert "flint ms preprocess" in line
    mark_frame(ms, "sky")
    add_column(ms, "MODEL_DATA", like="DATA", fill="zero")
    assert main(["subtract", str(ms.path)]) == 0
    assert "--overwrite" in _one_error_line(capsys, ["subtract", str(ms.path)])
    assert main(["subtract", str(ms.path), "--overwrite"]) == 0
    assert not any("_FLINT_TMP" in c for c in _columns(ms))


def test_subtract_channel_models(tmp_path: Path, sim_field_ideal: SimResult, sim_options: SimOptions) -> None:
    """WSClean's own -channels-out products (name-000N-model.fits): predicted per channel group."""
    from flint.imaging import wsclean_argv
    from flint.runner import run_command

    require_tool("wsclean")
    ms = add_column(writable_copy(sim_field_ideal.ms_paths[0], tmp_path), "CORRECTED_DATA", like="DATA", fill="copy")
    name = tmp_path / "ws" / "beam00"
    name.parent.mkdir()
    opts = WSCLEAN.with_options(channels_out=3, join_channels=True, fit_spectral_pol=2, temp_dir=name.parent)
    run_command(wsclean_argv([ms.path], opts, name, "CORRECTED_DATA"), cwd=name.parent)
    ref = _col(ms, "MODEL_DATA")
    _put(ms, "MODEL_DATA", np.zeros_like(ref))
    res = run_subtract(ms, SubtractOptions(model_prefix=name))
    assert res.models is not None and res.models.per_channel and len(res.models.paths) == 3
    assert "-channels-out" in res.command
    model = _col(ms, "MODEL_DATA")
    assert np.max(np.abs(model - ref)) < 1e-3 * np.max(np.abs(ref))
    print(f"channel models: rms {res.rms_in_jy:.4f} -> {res.rms_out_jy:.4f} Jy")
    assert res.rms_out_jy < 1.02 * sim_options.noise_jy < res.rms_in_jy


def test_subtract_wsclean_failure_leaves_no_column(tmp_path: Path, imaged: Imaged, capsys: pytest.CaptureFixture[str]) -> None:
    """A WSClean that fails: non-zero exit, its message, and no new column in the MS."""
    fake = tmp_path / "bad-wsclean"
    fake.write_text("#!/bin/sh\necho 'predict went wrong' >&2\nexit 3\n")
    fake.chmod(0o755)
    ms = writable_copy(imaged.ms, tmp_path)
    before = _columns(ms)
    argv = ["subtract", str(ms.path), "--model-prefix", str(imaged.prefix), "--wsclean-binary", str(fake), "--output-column", "NEW_DATA"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "exited with status 3" in err and "predict went wrong" in err and "Traceback" not in err
    assert _columns(ms) == before
    assert not list(tmp_path.glob(".*.predict"))


@pytest.mark.parametrize(
    ("per_channel", "reorder", "flag"),
    [(False, "auto", "-no-reorder"), (True, "auto", "-reorder"), (False, "yes", "-reorder"), (True, "no", "-no-reorder")],
)
def test_predict_argv_reorders_only_channel_models(per_channel: bool, reorder: str, flag: str) -> None:
    """One model image is predicted in one pass: not reordered (WSClean would map its whole temporary model file)."""
    from flint.subtract import ModelImages, SubtractOptions, predict_argv

    paths = tuple(Path(f"m.ch{i:04d}.model.fits") for i in range(3 if per_channel else 1))
    models = ModelImages(paths=paths, per_channel=per_channel)
    argv = predict_argv(Path("x.ms"), models, Path("/w/model"), SubtractOptions(reorder=reorder, abs_mem_gb=0.5), (64, 64), 4.0)  # type: ignore[arg-type]
    assert flag in argv and ({"-reorder", "-no-reorder"} - {flag}).isdisjoint(argv)
    assert argv[argv.index("-abs-mem") + 1] == "0.5"
    assert argv[-1] == "x.ms"
    assert "-abs-mem" not in predict_argv(Path("x.ms"), models, Path("/w/model"), SubtractOptions(), (64, 64), 4.0)
