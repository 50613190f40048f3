"""The streaming simulator (issue 16 point 1): chunked writes, same bytes, bounded memory.

* The bytes written (every file of every MS and the truth) do not depend on ``--chunk-mb``:
  one integration per chunk gives the same files as the whole observation at once, for the
  default and the raw ASKAP (36-scan calibrator) layouts, with RFI.
* The data agree with the truth: noise-free DATA equals gain x (direct DFT of the sky
  catalogue through the primary beam) x gain* to complex64 precision, and the streamed
  ``gains`` equal ``bandpass x exp(i phase_drift)``.
* Peak RSS (measured in a child process, ``ru_maxrss``) of a 288-channel, 36-antenna
  simulation stays within a bound set by the chunk size, and does not grow with the
  number of integrations (6x more integrations: same peak within a few MB).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from casacore.tables import table

from flint.cli import main
from flint.primary_beam import angular_separation_deg, gaussian_pb
from flint.sim import C_LIGHT, SimOptions, _lmn, read_sky

SMALL = ["--n-beams", "2", "--n-antennas", "5", "--n-channels", "7", "--n-times", "9", "--n-sources", "6", "--rfi", "--rfi-fraction", "0.1"]


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


@pytest.mark.parametrize("raw", [False, True], ids=["sky", "askap-raw"])
def test_same_bytes_whatever_the_chunk_size(tmp_path: Path, raw: bool) -> None:
    extra = ["--askap-raw", "--askap-offsource-times", "2"] if raw else []
    whole, chunked = tmp_path / "whole", tmp_path / "chunked"
    assert main(["sim", str(whole), *SMALL, *extra, "--chunk-mb", "1000"]) == 0
    # 5 antennas x 7 channels: one integration is < 2 kB, so 0.001 MB = 1 integration per chunk
    assert main(["sim", str(chunked), *SMALL, *extra, "--chunk-mb", "0.001"]) == 0
    a, b = _digests(whole), _digests(chunked)
    assert len(a) > 50 and a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    truth = np.load(next(whole.glob("SB101.*.truth.npz")))
    assert truth["rfi_mask_beam01"].any()
    # and a different seed does change the data
    other = tmp_path / "other"
    assert main(["sim", str(other), *SMALL, *extra, "--seed", "43", "--what", "field"]) == 0
    c = _digests(other)
    ms_files = [k for k in c if k.startswith("SB101.SIM_FIELD.beam00.ms/")]
    assert [k for k in ms_files if c[k] != a[k]]


def test_noise_free_data_match_the_truth(tmp_path: Path) -> None:
    """DATA (no noise) = g1 * V_sky * conj(g2), V_sky from an independent direct DFT."""
    out = tmp_path / "sim"
    argv = ["--n-beams", "1", "--n-antennas", "6", "--n-channels", "40", "--n-times", "5", "--n-sources", "8", "--noise-jy", "0", "--chunk-mb", "0.05"]
    assert main(["sim", str(out), "--what", "field", *argv]) == 0
    opts = SimOptions()
    truth = np.load(out / "SB101.SIM_FIELD.truth.npz")
    gains = truth["gains"][0]  # (time, ant, chan, pol)
    np.testing.assert_allclose(gains, truth["bandpass"][0][None] * np.exp(1j * truth["phase_drift"][0])[:, :, None, None], rtol=1e-12)
    with table(str(out / "SB101.SIM_FIELD.beam00.ms"), ack=False) as t:
        data, uvw = t.getcol("DATA"), t.getcol("UVW")
        a1, a2, time_col = t.getcol("ANTENNA1"), t.getcol("ANTENNA2"), t.getcol("TIME")
    with table(str(out / "SB101.SIM_FIELD.beam00.ms" / "FIELD"), ack=False) as t:
        ra0, dec0 = np.degrees(t.getcol("PHASE_DIR")[0, 0])
    sky = read_sky(out / "SB101.SIM_FIELD.sky.csv")
    freqs = truth["freqs_hz"]
    flux = sky.flux_at(freqs) * gaussian_pb(
        angular_separation_deg(ra0, dec0, sky.ra_deg, sky.dec_deg)[:, None], freqs[None, :], opts.pb_fwhm_deg, opts.pb_ref_freq_hz
    )
    l, m, n = _lmn(sky.ra_deg, sky.dec_deg, ra0, dec0)
    phase = 2 * np.pi * (uvw @ np.stack([l, m, n - 1]))[:, :, None] * freqs[None, None, :] / C_LIGHT  # (row, src, chan)
    model = np.einsum("rsc,sc->rc", np.exp(1j * phase), flux)
    ti = np.searchsorted(np.unique(time_col), time_col)
    for corr, pol in ((0, 0), (3, 1)):
        expect = gains[ti, a1, :, pol] * model * np.conj(gains[ti, a2, :, pol])
        np.testing.assert_allclose(data[:, :, corr], expect, rtol=0, atol=1e-5 * np.abs(model).max())
    assert np.abs(model).max() > 0.1  # the sky is really there
    assert not data[:, :, 1:3].any()  # unpolarised sky, diagonal gains, no noise


_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from flint.sim import SimOptions, simulate_field
    n_times, n_chan, chunk = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    opts = SimOptions(n_beams=1, n_antennas=36, n_channels=n_chan, n_times=n_times, n_sources=5, n_bright=1, chunk_mb=chunk)
    res = simulate_field(sys.argv[1], opts)
    print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "n_vis": res.n_visibilities}))
    """
)


def _peak_rss_mb(out: Path, n_times: int, n_chan: int, chunk_mb: float) -> tuple[float, int]:
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(out), str(n_times), str(n_chan), str(chunk_mb)], capture_output=True, text=True, check=True)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(got["rss_mb"]), int(got["n_vis"])


def test_peak_memory_is_set_by_the_chunk_not_the_data(tmp_path: Path) -> None:
    chunk_mb = 8.0  # one integration of 630 baselines x 288 channels is 5.8 MB: one per chunk
    base, _ = _peak_rss_mb(tmp_path / "base", 1, 8, chunk_mb)  # interpreter + libraries + a tiny sim
    small, _ = _peak_rss_mb(tmp_path / "small", 4, 288, chunk_mb)
    big, n_vis = _peak_rss_mb(tmp_path / "big", 24, 288, chunk_mb)
    data_mb = n_vis * 8 / 1e6  # the complex64 DATA column the big simulation wrote (139 MB)
    assert n_vis == 24 * 630 * 288 * 4
    # held in memory at once, the DATA alone would exceed this bound; the chunk allows ~5x its size
    bound = 6 * chunk_mb + 30.0
    assert big - base < bound < data_mb, (base, small, big, data_mb)
    assert big - small < 15.0, (small, big)  # 6x the integrations: no growth beyond noise


def test_noise_per_visibility_follows_the_radiometer_equation(tmp_path: Path) -> None:
    """``noise_per_visibility``: 0.3 Jy at 1 MHz x 9.95 s, / sqrt(8) for an 8 MHz channel, / sqrt(2)
    for twice the time; and a field simulated with it has that noise (measured in DATA: an empty
    sky, so DATA is gains x noise; the sample's rms to 3 %, ~5000 values per part)."""
    from flint.cli.demo import _POL_SIM
    from flint.sim import noise_per_visibility, simulate_field

    assert noise_per_visibility(1.0e6, 9.95) == pytest.approx(0.3, rel=1e-12)
    assert noise_per_visibility(8.0e6, 9.95) == pytest.approx(0.3 / np.sqrt(8), rel=1e-12)
    assert noise_per_visibility(1.0e6, 19.9) == pytest.approx(0.3 / np.sqrt(2), rel=1e-12)
    assert _POL_SIM["noise_jy"] == pytest.approx(noise_per_visibility(8.0e6, 9.95), rel=1e-12)  # the pol demo's 8 MHz channels
    with pytest.raises(ValueError, match="must be positive"):
        noise_per_visibility(0.0, 9.95)
    noise = noise_per_visibility(8.0e6, 9.95)
    opts = SimOptions(n_beams=1, n_antennas=8, n_channels=20, channel_width_hz=8.0e6, n_times=9, n_sources=0, n_bright=0,
                      noise_jy=noise, gain_amp_scatter=0.0, bandpass_ripple=0.0, rfi=False)
    res = simulate_field(tmp_path / "sim", opts)
    with table(str(res.ms_paths[0]), ack=False) as t:
        xx = t.getcol("DATA")[:, :, 0]
    gains = np.load(res.truth)["gains"][0]  # unit amplitude here: |g| = 1
    np.testing.assert_allclose(np.abs(gains), 1.0, atol=1e-12)
    for part in (xx.real, xx.imag):
        assert np.std(part) == pytest.approx(noise, rel=0.03)
