"""Divergence detection in WSClean runs, and the one retry at safer settings.

The parser is tested on WSClean 3.1.0's own output (excerpts of real runs on a small simulated
field, trimmed to the deconvolution lines), unchanged and doctored. The retry is tested with real
WSClean runs: a Högbom clean written for WSClean's ``-python-deconvolution`` that misbehaves only
when the loop gain is above a limit -- it puts its components into the model with the wrong sign
(the residual WSClean computes in the next major cycle grows), or an infinite pixel -- so the
first run diverges and the retry (gain halved) converges, or both diverge.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from flint._imaging_divergence import divergence_in_output, major_iterations, safer_options
from flint.errors import FlintCommandError, FlintOptionsError
from flint.imaging import ImagingResult, WSCleanDivergedError, WSCleanOptions, run_imaging
from flint.ms import MS, open_table
from flint.sim import SimOptions, simulate_field

from conftest import require_tool, writable_copy

# --------------------------------------------------------------------------- real output
#: wsclean 3.1.0 -size 256 256 -scale 8asec -niter 1000 -nmiter 5 -mgain 0.8 -gain 0.1 -auto-threshold 1
#: (Högbom/Clark clean), deconvolution lines of its two major iterations
CLEAN_LOG = """\
 == Deconvolving (1) ==
Estimated standard deviation of background noise: 49.23 mJy
Initial peak: 774.23 mJy at 145,97
Next major iteration at: 154.85 mJy
Performed 161 iterations in total, 161 in this major iteration with sub-minor optimization.
Stopped on peak 154.84 mJy, because the minor-loop threshold was reached. Continuing cleaning after inversion/prediction round.
Assigning from 1 to 1 channels...
 == Converting model image to visibilities ==
 == Constructing image ==
 == Deconvolving (2) ==
Estimated standard deviation of background noise: 27.52 mJy
Initial peak: 146.31 mJy at 156,29
Next major iteration at: 29.26 mJy
Performed 1000 iterations in total, 839 in this major iteration with sub-minor optimization.
Stopped on peak 53.17 mJy, because maximum number of iterations was reached.
Maximum number of minor deconvolution iterations was reached: not continuing deconvolution.
Assigning from 1 to 1 channels...
Writing model image...
 == Converting model image to visibilities ==
 == Constructing image ==
2 major iterations were performed.
"""

#: the same with -multiscale (scale table and most minor iterations trimmed)
MULTISCALE_LOG = """\
 == Deconvolving (1) ==
Estimated standard deviation of background noise: 49.23 mJy
RMS per scale: {0: 53.61 mJy, 5: 29.2 mJy, 11: 20.67 mJy, 22: 12.93 mJy, 43: 6.79 mJy, 87: 4.09 mJy}
Starting multi-scale cleaning. Start peak=774.23 mJy, major iteration threshold=154.85 mJy
Iteration 5, scale 0 px : 617.33 mJy at 167,172
Iteration 117, scale 0 px : 176.95 mJy at 80,243
Subminor loop is near minor loop threshold. Initiating countdown.
(7) Iteration 181, scale 11 px : -157.6 mJy at 173,6
Minor loop finished, continuing cleaning after inversion/prediction round.
 == Deconvolving (2) ==
Estimated standard deviation of background noise: 27.11 mJy
RMS per scale: {0: 28.11 mJy, 5: 16.61 mJy, 11: 12.18 mJy, 22: 8.22 mJy, 43: 4.84 mJy, 87: 2.69 mJy}
Starting multi-scale cleaning. Start peak=146.24 mJy, major iteration threshold=29.25 mJy
Iteration 193, scale 0 px : 144.44 mJy at 198,60
Iteration 210, scale 11 px : -131.52 mJy at 18,144
Iteration 1000, scale 0 px : 67.48 mJy at 152,255
Cleaning finished because maximum number of iterations was reached.
2 major iterations were performed.
Multi-scale cleaning summary:
- Scale 0 px, nr of components cleaned: 681 (6.02 Jy)
Total: 1000 components (5.05 Jy)
"""

#: the same with -parallel-deconvolution 128: one "Initial peak" per sub-image, indented
PARALLEL_LOG = """\
 == Deconvolving (1) ==
Estimated standard deviation of background noise: 49.23 mJy
Switching to output of subimage 0
 Initial peak: 774.23 mJy at 145,97
 Next major iteration at: 154.85 mJy
Switching to output of subimage 1
 Initial peak: 264.66 mJy at 108,104
 Stopped on peak 264.66 mJy, because maximum number of iterations was reached.
Subimage 1 has maximum peak of 774.23 mJy.
"""

#: -python-deconvolution with the wrong-sign clean below at gain 0.1 (WSClean prints no peak
#: for a Python deconvolver; its noise estimate shows the divergence)
PYTHON_DIVERGING_LOG = """\
 == Deconvolving (1) ==
Estimated standard deviation of background noise: 49.23 mJy
Auto-masking threshold reached; continuing next major iteration with deeper threshold and mask.
 == Deconvolving (2) ==
Estimated standard deviation of background noise: 66.69 mJy
 == Deconvolving (3) ==
Estimated standard deviation of background noise: 109.32 mJy
 == Deconvolving (4) ==
Estimated standard deviation of background noise: 192.86 mJy
 == Deconvolving (5) ==
Estimated standard deviation of background noise: 348.83 mJy
 == Deconvolving (6) ==
Estimated standard deviation of background noise: 641.91 mJy
Maximum number of major iterations was reached: not continuing deconvolution.
"""


def test_parser_reads_real_clean_output_and_finds_no_divergence() -> None:
    its = major_iterations(CLEAN_LOG)
    assert [it.number for it in its] == [1, 2]
    assert [it.peak_jy for it in its] == pytest.approx([0.77423, 0.14631])
    assert [it.noise_jy for it in its] == pytest.approx([0.04923, 0.02752])
    assert divergence_in_output(CLEAN_LOG, 4.0) is None
    ms = major_iterations(MULTISCALE_LOG)
    assert [it.peak_jy for it in ms] == pytest.approx([0.77423, 0.14624])
    assert divergence_in_output(MULTISCALE_LOG, 4.0) is None
    assert [it.peak_jy for it in major_iterations(PARALLEL_LOG)] == pytest.approx([0.77423])  # the largest sub-image peak


def test_parser_detects_a_growing_peak_beyond_the_limit_only() -> None:
    grown = CLEAN_LOG.replace("Initial peak: 146.31 mJy", "Initial peak: 3.5 Jy")
    reason = divergence_in_output(grown, 4.0)
    assert reason == "the peak residual grew from 774 mJy to 3.5 Jy by major iteration 2 of 2, beyond the limit of 4x"
    assert divergence_in_output(grown, 5.0) is None  # 3.5 / 0.774 = 4.5
    kjy = MULTISCALE_LOG.replace("Start peak=146.24 mJy", "Start peak=1.2 KJy")
    assert divergence_in_output(kjy, 4.0) == "the peak residual grew from 774 mJy to 1.2e+03 Jy by major iteration 2 of 2, beyond the limit of 4x"


#: real WSClean 3.1 output with -local-rms -auto-mask 6 -auto-threshold 3 (512 px at 6", the
#: polarisation demo's beam 0): major iteration 1 stopped at 77 mJy, yet iteration 2 starts from
#: a 594 mJy source elsewhere. With a local-RMS map the clean picks the pixel of highest
#: signal-to-noise against that map and prints its flux: the printed peaks are not the largest
#: residual, and are not comparable between major iterations.
LOCAL_RMS_LOG = """\
 == Deconvolving (1) ==
Estimated standard deviation of background noise: 18.68 mJy
Lowest RMS in image: 13.02 mJy
Initial peak: 1.69 Jy at 308,314
Major iteration threshold reached global threshold of 78.14 mJy: final major iteration.
Performed 48 iterations in total, 48 in this major iteration with sub-minor optimization.
Stopped on peak 76.95 mJy, because the threshold was reached.
Auto-masking threshold reached; continuing next major iteration with deeper threshold and mask.
 == Deconvolving (2) ==
Estimated standard deviation of background noise: 7.85 mJy
Initial peak: 593.56 mJy at 278,216
Next major iteration at: 118.71 mJy
Stopped on peak 118.57 mJy, because the minor-loop threshold was reached. Continuing cleaning after inversion/prediction round.
 == Deconvolving (3) ==
Estimated standard deviation of background noise: 4.08 mJy
Initial peak: 119.18 mJy at 279,215
"""


def test_local_rms_runs_are_judged_by_their_noise_not_their_printed_peaks() -> None:
    """In a -local-rms run the first printed peak can be a faint source in a quiet region (the
    bench at 288 channels x 480 integrations printed 24 mJy, then 353 mJy, and WSClean cleaned
    to its threshold): no divergence from the peaks; a growing noise still is one."""
    assert [it.peak_jy for it in major_iterations(LOCAL_RMS_LOG)] == pytest.approx([1.69, 0.59356, 0.11918])
    faint_first = LOCAL_RMS_LOG.replace("Initial peak: 1.69 Jy", "Initial peak: 24 mJy")
    assert divergence_in_output(faint_first, 4.0) is not None  # as a plain clean would be judged
    assert divergence_in_output(faint_first, 4.0, peaks=False) is None
    noisy = faint_first.replace("background noise: 4.08 mJy", "background noise: 95 mJy")
    assert divergence_in_output(noisy, 4.0, peaks=False) == (
        "the residual noise grew from 18.7 mJy to 95 mJy by major iteration 3 of 3, beyond the limit of 4x"
    )
    # find_divergence takes the option from the run: -local-rms compares the noise only
    from flint._imaging_divergence import find_divergence
    from flint.imaging import WSCleanOptions

    assert find_divergence(faint_first, Path("/nonexistent/x"), WSCleanOptions(local_rms=True)) is None
    assert find_divergence(faint_first, Path("/nonexistent/x"), WSCleanOptions(local_rms=False)) is not None


def test_parser_detects_a_growing_noise_when_no_peak_is_printed() -> None:
    assert [it.peak_jy for it in major_iterations(PYTHON_DIVERGING_LOG)] == [None] * 6
    reason = divergence_in_output(PYTHON_DIVERGING_LOG, 4.0)
    assert reason == "the residual noise grew from 49.2 mJy to 642 mJy by major iteration 6 of 6, beyond the limit of 4x"
    assert divergence_in_output(PYTHON_DIVERGING_LOG, 20.0) is None


@pytest.mark.parametrize("bad", ["-nan Jy", "nan Jy", "inf KJy"])
def test_parser_detects_non_finite_printed_values(bad: str) -> None:
    doctored = MULTISCALE_LOG.replace("144.44 mJy at 198,60", f"{bad} at 198,60")
    reason = divergence_in_output(doctored, 4.0)
    assert reason == f"WSClean printed a non-finite value in major iteration 2: 'Iteration 193, scale 0 px : {bad} at 198,60'"


def test_parser_reads_every_unit_wsclean_prints() -> None:
    for text, jy in (("12.5 µJy", 12.5e-6), ("12.5 \ufffd\ufffdJy", 12.5e-6), ("3 nJy", 3e-9), ("2 KJy", 2e3), ("1e+28 KJy", 1e31), ("0 Jy", 0.0)):
        log = f"== Deconvolving (1) ==\nInitial peak: {text} at 1,1\n"
        assert major_iterations(log)[0].peak_jy == pytest.approx(jy), text


def test_safer_settings_and_limit_validation() -> None:
    safe = safer_options(WSCleanOptions(gain=0.1, mgain=0.8, niter=1000, nmiter=5, multiscale=True))
    assert (safe.gain, safe.mgain, safe.niter, safe.nmiter, safe.multiscale_scale_bias) == (0.05, 0.5, 2000, 10, 0.8)
    assert safer_options(WSCleanOptions(mgain=0.3, multiscale=True, multiscale_scale_bias=0.9)).multiscale_scale_bias == 0.9
    assert safer_options(WSCleanOptions(mgain=0.3)).mgain == 0.3
    with pytest.raises(FlintOptionsError, match="divergence_limit must be >= 1"):
        WSCleanOptions.create(divergence_limit=0.5)


# --------------------------------------------------------------------------- real WSClean
#: a Högbom clean for WSClean's -python-deconvolution (interface of WSClean 3.1: deconvolve(residual,
#: model, psf, meta) on (channel, polarisation, y, x) arrays, returning residual, model, level and
#: whether to continue). Above GAIN_LIMIT it misbehaves as MODE says.
PY_CLEAN = '''\
import numpy as np

GAIN_LIMIT = {gain_limit}
MODE = "{mode}"


def _subtract(image, psf, y, x, amp):
    h, w = image.shape
    cy, cx = h // 2, w // 2
    y0, y1 = max(0, y - cy), min(h, y - cy + h)
    x0, x1 = max(0, x - cx), min(w, x - cx + w)
    image[y0:y1, x0:x1] -= amp * psf[y0 - (y - cy):y1 - (y - cy), x0 - (x - cx):x1 - (x - cx)]


def deconvolve(residual, model, psf, meta):
    residual = np.nan_to_num(residual)
    model = np.nan_to_num(model)
    res = residual[0, 0]
    bad = meta.gain > GAIN_LIMIT
    y, x = np.unravel_index(np.argmax(np.abs(res)), res.shape)
    peak = res[y, x]
    threshold = max(meta.major_iter_threshold, meta.final_threshold, abs(peak) * (1.0 - meta.mgain))
    while abs(peak) > threshold and meta.iteration_number < meta.max_iterations:
        amp = meta.gain * peak
        _subtract(res, psf[0], y, x, amp)
        model[0, 0, y, x] += -amp if bad and MODE == "sign" else amp
        meta.iteration_number += 1
        y, x = np.unravel_index(np.argmax(np.abs(res)), res.shape)
        peak = res[y, x]
    if bad and MODE == "inf":
        model[0, 0, 0, 0] = np.inf
    residual[0, 0] = res
    go = abs(peak) > meta.final_threshold and meta.iteration_number < meta.max_iterations
    return {{"residual": residual, "model": model, "level": float(abs(peak)), "continue": bool(go)}}
'''

SMALL = WSCleanOptions(size=256, scale_arcsec=8.0, niter=2000, nmiter=6, threads=1)


@pytest.fixture(scope="module")
def small_ms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One beam, 36 antennas, 6 integrations, 4 channels, 50 mJy noise (~1 s to simulate)."""
    require_tool("wsclean")
    sim = simulate_field(tmp_path_factory.mktemp("div_sim"), SimOptions(n_beams=1, n_times=6, n_channels=4, noise_jy=0.05))
    return sim.ms_paths[0]


@pytest.fixture
def python_deconvolution(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let WSClean's embedded Python import numpy from this environment (WSClean runs with os.environ)."""
    wsclean = require_tool("wsclean")
    ldd = shutil.which("ldd")
    libs = subprocess.run([ldd, wsclean], capture_output=True, text=True, check=False).stdout if ldd else ""
    want = f"libpython{sys.version_info.major}.{sys.version_info.minor}"
    if want not in libs:
        found = sorted(set(re.findall(r"libpython[\d.]+", libs))) or ["none"]
        pytest.skip(f"WSClean embeds {', '.join(found)}, this environment is {want}: its numpy cannot load for -python-deconvolution")
    monkeypatch.setenv("PYTHONPATH", sysconfig.get_paths()["purelib"])


def _script(tmp_path: Path, gain_limit: float, mode: str = "sign") -> Path:
    path = tmp_path / f"clean_{mode}_{gain_limit:g}.py"
    path.write_text(PY_CLEAN.format(gain_limit=gain_limit, mode=mode))
    return path


def _pixels(path: Path | None) -> np.ndarray:
    assert path is not None and path.is_file()
    return np.asarray(fits.getdata(path), dtype=float)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "flint.imaging"]


def test_native_wsclean_clean_is_not_judged_diverged(tmp_path: Path, small_ms: Path, caplog: pytest.LogCaptureFixture) -> None:
    ms = writable_copy(small_ms, tmp_path)
    with caplog.at_level(logging.WARNING, logger="flint.imaging"):
        res = run_imaging(ms, SMALL, out_dir=tmp_path / "img")
    assert res.diverged_retry is None and _warnings(caplog) == []
    assert np.isfinite(_pixels(res.model)).all()


def test_with_the_check_off_the_diverged_clean_is_kept(tmp_path: Path, small_ms: Path, python_deconvolution: None, caplog: pytest.LogCaptureFixture) -> None:
    """The wrong-sign clean really diverges in WSClean: unchecked, its residual ends far above the dirty peak."""
    ms = writable_copy(small_ms, tmp_path)
    opts = SMALL.with_options(divergence_limit=None, extra_args=("-python-deconvolution", str(_script(tmp_path, 0.06))))
    with caplog.at_level(logging.WARNING, logger="flint.imaging"):
        res = run_imaging(ms, opts, out_dir=tmp_path / "img")
    assert res.diverged_retry is None and _warnings(caplog) == []
    assert np.abs(_pixels(res.residual)).max() > 3.0  # the dirty image's peak is about 0.8 Jy


def test_converging_python_clean_is_not_retried(tmp_path: Path, small_ms: Path, python_deconvolution: None, caplog: pytest.LogCaptureFixture) -> None:
    ms = writable_copy(small_ms, tmp_path)
    opts = SMALL.with_options(gain=0.05, extra_args=("-python-deconvolution", str(_script(tmp_path, 0.06))))
    with caplog.at_level(logging.WARNING, logger="flint.imaging"):
        res = run_imaging(ms, opts, out_dir=tmp_path / "img")
    assert res.diverged_retry is None and _warnings(caplog) == []
    assert np.abs(_pixels(res.model)).max() > 0.1  # it did clean (the brightest source is ~0.8 Jy)


def _check_retried(res: ImagingResult, ms: MS, caplog: pytest.LogCaptureFixture) -> None:
    (warning,) = _warnings(caplog)
    assert str(ms.path) in warning and res.diverged_retry is not None and res.diverged_retry in warning
    assert "imaging again from scratch at gain 0.05, mgain 0.5, niter 4000, nmiter 12" in warning
    argv = list(res.command)
    assert argv[argv.index("-gain") + 1] == "0.05" and argv[argv.index("-mgain") + 1] == "0.5"
    for path in (res.image, res.residual, res.model, res.psf):
        assert np.isfinite(_pixels(path)).all(), path
    assert np.abs(_pixels(res.residual)).max() < 0.3  # well below the ~0.8 Jy dirty peak: the retry converged
    with open_table(ms.path) as t:
        model_data = t.getcol("MODEL_DATA")
    assert np.isfinite(model_data).all() and np.abs(model_data).max() > 0.1  # the retry's model, written by WSClean


def test_diverging_clean_is_retried_at_safer_settings(tmp_path: Path, small_ms: Path, python_deconvolution: None, caplog: pytest.LogCaptureFixture) -> None:
    ms = writable_copy(small_ms, tmp_path)
    opts = SMALL.with_options(extra_args=("-python-deconvolution", str(_script(tmp_path, 0.06))))  # gain 0.1: wrong signs
    with caplog.at_level(logging.WARNING, logger="flint.imaging"):
        res = run_imaging(ms, opts, out_dir=tmp_path / "img")
    assert res.diverged_retry is not None and res.diverged_retry.startswith("the residual noise grew from ")
    _check_retried(res, ms, caplog)


def test_non_finite_model_is_retried(tmp_path: Path, small_ms: Path, python_deconvolution: None, caplog: pytest.LogCaptureFixture) -> None:
    ms = writable_copy(small_ms, tmp_path)
    opts = SMALL.with_options(extra_args=("-python-deconvolution", str(_script(tmp_path, 0.06, mode="inf"))))
    with caplog.at_level(logging.WARNING, logger="flint.imaging"):
        res = run_imaging(ms, opts, out_dir=tmp_path / "img")
    assert res.diverged_retry == "the model image has 1 non-finite pixel(s)"
    _check_retried(res, ms, caplog)


def test_divergence_on_retry_fails_in_one_line_and_leaves_nothing(tmp_path: Path, small_ms: Path, python_deconvolution: None, caplog: pytest.LogCaptureFixture) -> None:
    ms = writable_copy(small_ms, tmp_path)
    out = tmp_path / "img"
    opts = SMALL.with_options(extra_args=("-python-deconvolution", str(_script(tmp_path, 0.01))))  # 0.1 and 0.05 both wrong
    with caplog.at_level(logging.WARNING, logger="flint.imaging"), pytest.raises(WSCleanDivergedError) as err:
        run_imaging(ms, opts, out_dir=out)
    msg = str(err.value)
    assert isinstance(err.value, FlintCommandError) and err.value.returncode == 0
    assert "\n" not in msg and msg.startswith(f"{ms.path}: WSClean's clean diverged: the residual noise grew from ")
    assert "; re-run at gain 0.05, mgain 0.5, niter 4000, nmiter 12 it diverged again: the residual noise grew from " in msg
    assert msg.endswith("lower --gain and --mgain, raise --auto-threshold, or clean within a tighter mask (--fits-mask); is the data column calibrated? (--divergence-limit 0 keeps such an image)")  # auto_mask is on
    assert len(_warnings(caplog)) == 1
    assert sorted(p.name for p in out.iterdir()) == []  # no product, no work folder


#: wsclean 3.1.0 -size 256 256 -scale 8asec -niter 500 -nmiter 4 -channels-out 3 (channels not
#: joined: each channel is cleaned on its own, its major iterations numbered from 1)
CHANNELS_LOG = """\
 == Deconvolving (1) ==
Estimated standard deviation of background noise: 12.83 mJy
Initial peak: 281.98 mJy at 75,112
 == Deconvolving (2) ==
Estimated standard deviation of background noise: 9.66 mJy
Initial peak: -58.24 mJy at 76,113
2 major iterations were performed.
 == Deconvolving (1) ==
Estimated standard deviation of background noise: 12.35 mJy
Initial peak: 310.98 mJy at 75,112
 == Deconvolving (2) ==
Estimated standard deviation of background noise: 9.12 mJy
Initial peak: 59.83 mJy at 151,83
2 major iterations were performed.
"""


def test_independent_channels_are_judged_each_on_its_own() -> None:
    """A line channel cleaned after a line-free one starts from a far higher peak: no divergence."""
    assert divergence_in_output(CHANNELS_LOG, 4.0) is None
    line = CHANNELS_LOG.replace("Initial peak: 310.98 mJy", "Initial peak: 3.1 Jy").replace("12.35 mJy", "123.5 mJy")
    assert divergence_in_output(line, 4.0) is None
    grown = line.replace("Initial peak: 59.83 mJy", "Initial peak: 13 Jy")  # within the line channel: 3.1 -> 13 Jy
    assert divergence_in_output(grown, 4.0) == "the peak residual grew from 3.1 Jy to 13 Jy by major iteration 2 of 2, beyond the limit of 4x"


def test_command_errors_survive_pickling() -> None:
    """A Dask worker pickles the error of a failed task back to the flow: it must rebuild."""
    import pickle

    err = FlintCommandError(["wsclean", "-name", "x"], -11, "Gridding 18900 rows...")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is FlintCommandError and str(back) == str(err) and back.returncode == -11 and back.argv == err.argv
    div = WSCleanDivergedError(["wsclean"], "x.ms: WSClean's clean diverged: ...")
    back2 = pickle.loads(pickle.dumps(div))
    assert type(back2) is WSCleanDivergedError and str(back2) == str(div) and back2.returncode == 0
