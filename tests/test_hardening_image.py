"""Issue 10 (hardening), ``flint image``: --niter 0, all-zero UVW, and no orphan WSClean.

Through the CLI, on a writable copy of the session's simulated field.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flint.cli import main
from flint.ms import open_table
from flint.sim import SimResult

from conftest import require_tool, writable_copy


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["-q", *argv])
    return rc, out.getvalue(), err.getvalue()


def _tree_digest(ms: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(ms)): (p.stat().st_size, p.stat().st_mtime_ns) for p in ms.rglob("*") if p.is_file()}


def test_niter_0_makes_the_dirty_image_and_psf_and_leaves_the_ms_alone(sim_field: SimResult, tmp_path: Path) -> None:
    require_tool("wsclean")
    from astropy.io import fits

    ms = writable_copy(sim_field.ms_paths[0], tmp_path).path
    before = _tree_digest(ms)
    out = tmp_path / "img"
    rc, stdout, err = cli("image", str(ms), "--niter", "0", "--size", "256", "--scale-arcsec", "12", "--out-dir", str(out), "--json")
    assert rc == 0, err
    stem = ms.name.removesuffix(".ms")
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.image.fits", f"{stem}.psf.fits"]
    with open_table(ms) as tab:
        assert "MODEL_DATA" not in tab.colnames()
    assert _tree_digest(ms) == before, "flint image --niter 0 modified the input MS"
    psf = np.squeeze(fits.getdata(out / f"{stem}.psf.fits"))
    assert psf.max() == pytest.approx(1.0, abs=1e-3)  # a PSF peaks at 1 at the centre
    assert np.unravel_index(np.argmax(psf), psf.shape) == (128, 128)
    dirty = np.squeeze(fits.getdata(out / f"{stem}.image.fits"))
    assert np.isfinite(dirty).all() and dirty.std() > 0


def test_all_zero_uvw_is_refused_with_its_cause(sim_field: SimResult, tmp_path: Path) -> None:
    require_tool("wsclean")
    ms = writable_copy(sim_field.ms_paths[0], tmp_path).path
    with open_table(ms, mode="rw") as tab:
        tab.putcol("UVW", np.zeros((tab.nrows(), 3)))
    out = tmp_path / "img"
    rc, _, err = cli("image", str(ms), "--size", "256", "--out-dir", str(out))
    assert rc == 1
    assert err.strip() == (
        f"flint image: error: {ms}: UVW is zero on every cross-correlation row, so the baselines are unknown "
        "and WSClean cannot image it; re-create the MS or recompute its UVW"
    )
    assert not out.exists() or not any(out.iterdir())


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True) if "wsclean" in c.name()]
    except psutil.NoSuchProcess:
        return []


def _gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_killing_flint_image_kills_wsclean(sim_field: SimResult, tmp_path: Path) -> None:
    """SIGKILL to ``flint image`` while WSClean runs: WSClean dies too (it used to run on ~27 s)."""
    require_tool("wsclean")
    ms = writable_copy(sim_field.ms_paths[0], tmp_path).path
    # a large image with many iterations keeps WSClean busy long enough to be seen
    argv = [sys.executable, "-m", "flint.cli", "-q", "image", str(ms), "--size", "4096", "--niter", "100000",
            "--auto-threshold", "0.1", "--extra-args=-quiet", "--out-dir", str(tmp_path / "img")]
    flint = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wsclean: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not wsclean and flint.poll() is None and time.monotonic() < deadline:
            wsclean = _children(flint.pid)
            time.sleep(0.05)
        assert wsclean, f"WSClean never started (flint exited {flint.poll()}: {flint.stderr.read() if flint.stderr else ''})"
        os.kill(flint.pid, signal.SIGKILL)
        flint.wait()
        deadline = time.monotonic() + 30  # generous: the kernel sends SIGKILL at once
        while not all(_gone(p) for p in wsclean) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(p) for p in wsclean), f"WSClean {wsclean} outlived the killed flint"
    finally:
        for p in wsclean:  # only the processes this test saw start
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        if flint.poll() is None:
            flint.kill()
            flint.wait()


def test_interrupted_runner_kills_the_child_group(tmp_path: Path) -> None:
    """SIGINT to a flint process mid-command: the child (in its own process group, so the
    terminal's Ctrl-C does not reach it) is killed by flint before it exits."""
    pid_file = tmp_path / "child.pid"
    code = (
        "import sys; from flint.runner import run_command\n"
        f"run_command(['sh', '-c', 'echo $$ > {pid_file}; exec sleep 300'])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pid_file.read_text())
        assert os.getpgid(child) == child, "the child is not in its own process group"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        assert _gone(child), "the child outlived the interrupted flint process"
        assert proc.stderr is not None and "KeyboardInterrupt" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_raw_askap_ms_is_refused_until_preprocessed(tmp_path: Path) -> None:
    """The frame rule: a raw (instrument-frame) ASKAP MS stops with the preprocessing step to run."""
    from flint.sim import SimOptions, simulate_field

    raw = simulate_field(tmp_path / "raw", SimOptions(n_beams=1, n_times=4, n_channels=4, askap_raw=True)).ms_paths[0]
    rc, _, err = cli("image", str(raw), "--niter", "0", "--size", "128", "--out-dir", str(tmp_path / "img"))
    assert rc == 1 and err.count("\n") == 1
    assert f"run `flint ms preprocess {raw}` first" in err
    assert not (tmp_path / "img").exists()
