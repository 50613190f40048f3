"""Issue 13's fidelity targets, on the packaged default strategy, checked against the truth.

The continuum chain of the flow (bandpass solve -> apply -> image round 0 -> [self-cal ->
clean mask from the previous image -> image]* -> convol -> linmos -> source finding) runs
here through the library on the session's simulated 3-beam field, with the packaged
default strategy (the demo's). The figures are computed independently of
:mod:`flint.validation` from the products and the simulator's truth files:

* noise: median of BANE's rms map where the linmos weight is >= half its peak;
* thermal: natural-weighting Stokes-I noise of one beam, ``noise_jy / sqrt(2 N)`` per real
  part, N the unflagged XX/YY visibility pairs (``noise_jy`` the simulator's, per real part);
* spurious: positive components >= 5 sigma (peak / local rms) in the inner region with no
  true source within 10";
* completeness: true sources (flux at the mosaic frequency from the sky CSV) with peak
  >= 10 x the local noise, found within 10";
* flux ratio: median int_flux / true flux of the matched components >= 10 sigma.

Targets (issue 13): noise <= 1.75 x thermal; <= 5 % spurious; >= 95 % complete; flux ratio
1 +- 0.02. What the run reaches is printed.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from flint.calibrate import BandpassOptions, SelfcalOptions, run_apply, run_bandpass, run_selfcal
from flint.convol import ConvolOptions, run_convol
from flint.imaging import WSCleanOptions, run_imaging
from flint.linmos import LinmosOptions, run_linmos
from flint.masking import MaskingOptions, make_clean_mask
from flint.ms import MS, open_table
from flint.primary_beam import angular_separation_deg
from flint.sim import SimOptions, SimResult
from flint.source_finding import SourceFindingOptions, run_source_finding
from flint.strategy import load_strategy

from conftest import require_tool, writable_copy

pytestmark = pytest.mark.slow


def _chain(bandpass: list[Path], field: list[Path], out: Path, flag: bool = False) -> dict[str, Any]:
    """The flow's continuum chain through the library with the packaged default strategy.

    ``flag``: AOFlagger on the calibrated data after apply, as the continuum flow does (its
    strategy's ``flagging`` options on CORRECTED_DATA).
    """
    from flint.flagging import FlagOptions, run_flagging

    require_tool("wsclean")
    strat = load_strategy(None)
    mss = []
    for b, path in enumerate(field):
        cal = writable_copy(bandpass[b], out / "cal")
        sol = run_bandpass(cal, BandpassOptions(plot=False)).solutions
        ms = run_apply(writable_copy(path, out), sol).ms
        if flag:
            fopts = strat.options_for("flagging", 0)
            assert isinstance(fopts, FlagOptions)
            run_flagging(ms, fopts.with_options(column="CORRECTED_DATA"))
        mss.append(ms)
    prev: list[Path] = []
    for r in strat.rounds:
        images, outers = [], []
        for b, ms in enumerate(mss):
            if r > 0:
                sc = strat.options_for("selfcal", r)
                assert isinstance(sc, SelfcalOptions)
                mss[b] = ms = run_selfcal(ms, sc).ms
            wopts = strat.options_for("wsclean", r)
            assert isinstance(wopts, WSCleanOptions)
            if r > 0 and "masking" in strat.tools:
                mopts = strat.options_for("masking", r)
                assert isinstance(mopts, MaskingOptions)
                wopts = wopts.with_options(fits_mask=make_clean_mask(prev[b], mopts, output=out / f"b{b}.r{r}.mask.fits").mask)
            res = run_imaging(ms, wopts, out_dir=out, round=r)
            images.append(res.image)
            outers.append(res.outer_image or res.image)  # masks from the whole field (outer_size)
        prev = outers
    conv = run_convol(images, ConvolOptions(out_dir=out))
    lopts = strat.options_for("linmos", strat.n_rounds)
    assert isinstance(lopts, LinmosOptions)
    mosaic = run_linmos(conv.images, lopts, output=out / "mosaic.linmos.fits")
    sopts = strat.options_for("source_finding", strat.n_rounds)
    assert isinstance(sopts, SourceFindingOptions)
    sf = run_source_finding(mosaic.mosaic, sopts)
    return {"mosaic": mosaic, "sf": sf, "mss": mss}


@pytest.fixture(scope="module")
def default_chain(sim_bandpass: SimResult, sim_field: SimResult, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The continuum chain with the packaged default strategy on the session's field."""
    return _chain(list(sim_bandpass.ms_paths), list(sim_field.ms_paths), tmp_path_factory.mktemp("fidelity_default"))


def _thermal_jy(mss: list[MS], noise_per_part: float) -> float:
    """Stokes-I natural-weighting thermal noise of one beam (median over beams)."""
    out = []
    for ms in mss:
        with open_table(ms.path) as tab:
            flags = tab.getcol("FLAG")
            cross = tab.getcol("ANTENNA1") != tab.getcol("ANTENNA2")
        good = ~(flags[..., 0] | flags[..., 3]) & cross[:, None]
        out.append(noise_per_part / np.sqrt(2.0) / np.sqrt(good.sum()))
    return float(np.median(out))


def _figures(chain: dict[str, Any], sim_field: SimResult, opts: SimOptions) -> dict[str, float]:
    mosaic, sf = chain["mosaic"], chain["sf"]
    weight = np.squeeze(fits.getdata(mosaic.weight))
    rms = np.squeeze(fits.getdata(sf.rms))
    inner = weight >= 0.5 * np.nanmax(weight)
    noise = float(np.nanmedian(rms[inner]))
    thermal = _thermal_jy(chain["mss"], opts.noise_jy)
    hdr = fits.getheader(mosaic.mosaic)
    wcs = WCS(hdr).celestial
    freq = float(hdr["CRVAL3"]) if str(hdr.get("CTYPE3", "")).startswith("FREQ") else opts.pb_ref_freq_hz
    with open(sim_field.sky_csv or "") as fh:
        sky = list(csv.DictReader(fh))
    s_ra = np.array([float(s["ra_deg"]) for s in sky])
    s_dec = np.array([float(s["dec_deg"]) for s in sky])
    s_flux = np.array([float(s["flux_jy"]) * (freq / float(s["ref_freq_hz"])) ** float(s["alpha"]) for s in sky])
    with open(sf.catalogue) as fh:
        cat = list(csv.DictReader(fh))
    c_ra = np.array([float(c["ra"]) for c in cat])
    c_dec = np.array([float(c["dec"]) for c in cat])
    c_peak = np.array([float(c["peak_flux"]) for c in cat])
    c_int = np.array([float(c["int_flux"]) for c in cat])
    c_snr = c_peak / np.array([float(c["local_rms"]) for c in cat])
    sep = 3600 * angular_separation_deg(c_ra[:, None], c_dec[:, None], s_ra[None, :], s_dec[None, :])  # (comp, src)
    cx, cy = wcs.world_to_pixel_values(c_ra, c_dec)
    ix, iy = np.clip(np.round(cx).astype(int), 0, weight.shape[1] - 1), np.clip(np.round(cy).astype(int), 0, weight.shape[0] - 1)
    c_inner = inner[iy, ix]
    matched = sep.min(axis=1) <= 10.0 if len(sky) else np.zeros(len(cat), bool)
    sel = (c_snr >= 5.0) & (c_peak > 0) & c_inner
    spurious = float(np.mean(~matched[sel])) if sel.any() else 0.0
    sx, sy = wcs.world_to_pixel_values(s_ra, s_dec)
    on = (sx >= 0) & (sy >= 0) & (sx < weight.shape[1]) & (sy < weight.shape[0])
    jx, jy = np.clip(np.round(sx).astype(int), 0, weight.shape[1] - 1), np.clip(np.round(sy).astype(int), 0, weight.shape[0] - 1)
    local = np.where(on, rms[jy, jx], np.nan)
    expected = on & np.isfinite(local) & (s_flux >= 10.0 * local)
    found = sep.min(axis=0) <= 10.0
    completeness = float(np.mean(found[expected]))
    best = sep.argmin(axis=1)
    use = matched & (c_snr >= 10.0)
    ratio = float(np.median(c_int[use] / s_flux[best[use]]))
    return {
        "noise_jy": noise, "thermal_jy": thermal, "noise_to_thermal": noise / thermal,
        "n_inner_5sigma": int(sel.sum()), "spurious_inner": spurious,
        "n_expected": int(expected.sum()), "completeness": completeness, "flux_ratio": ratio,
    }


def test_default_strategy_fidelity_against_truth(default_chain: dict[str, Any], sim_field: SimResult, sim_options: SimOptions) -> None:
    """Targets of issue 13 on the default strategy.

    Measured here (2026-12-03, bicubic linmos, the clean mask keeping faint sources that the
    erosion used to drop; linmos leaving out each image's outer 2 beams): noise/thermal 1.701,
    inner spurious 0/12, completeness 22/22, flux
    ratio 0.999; no unmatched inner component in the catalogue at all. Before that mask change
    (2026-12-01): 1.721, 0/11, 21/21, 0.991, and with 2048-pixel images 1/13: a 14 mJy source
    eroded out of every clean mask stayed uncleaned, and its dirty-beam sidelobe 36" away was
    a 6.3 sigma component. Before issue 13: 2.54, 0.82, 1.00, 1.013
    (benchmarks/bench_fidelity.py has the floors).
    Self-cal's remaining per-antenna phase offsets from the truth (2 deg rms, up to 8 deg on the
    outer antennas) are a plane across the array, 0.13-0.26 deg rms after removing it: a
    0.4" shift of each beam's image that self-cal cannot see (its model comes from the
    image), not an error that adds noise.
    """
    f = _figures(default_chain, sim_field, sim_options)
    print("fidelity (default strategy):", ", ".join(f"{k}={v:.4g}" for k, v in f.items()))
    assert f["thermal_jy"] == pytest.approx(0.445e-3, rel=0.02)  # 226 695 unflagged visibilities at 0.3 Jy
    assert f["completeness"] >= 0.95 and f["n_expected"] >= 8
    assert abs(f["flux_ratio"] - 1.0) <= 0.02
    # target <= 5 %: none of the ~12 inner components
    assert f["spurious_inner"] <= 0.05 and f["n_inner_5sigma"] >= 5
    assert f["noise_to_thermal"] <= 1.75


#: the variants issue 13 names: RFI in the data (flagged by the chain), a 6-beam closepack footprint
VARIANTS = {
    "rfi": {"rfi": True},
    "closepack6": {"n_beams": 6, "footprint": "closepack"},
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, SimOptions, SimResult, dict[str, Any]]:
    from flint.sim import simulate_bandpass, simulate_field

    name = str(request.param)
    opts = SimOptions(**VARIANTS[name])
    where = tmp_path_factory.mktemp(f"fidelity_{name}")
    bp = simulate_bandpass(where / "sim", opts)
    field = simulate_field(where / "sim", opts)
    chain = _chain(list(bp.ms_paths), list(field.ms_paths), where / "chain", flag=opts.rfi)
    return name, opts, field, chain


def test_fidelity_holds_on_rfi_and_closepack_data(variant: tuple[str, SimOptions, SimResult, dict[str, Any]]) -> None:
    """The figures on ``--rfi`` data (3 % of the (time, channel) cells hit at 30 Jy, flagged by
    AOFlagger in the bandpass and after apply) and on a 6-beam closepack field.

    Measured (2026-12-03, bicubic linmos, faint sources kept in the clean masks): rfi
    noise/thermal 1.713, inner spurious 0/12, completeness 22/22, flux ratio 1.001;
    closepack6 1.649, 0/12, 22/22, 0.994 (linmos leaving out each image's outer 2 beams);
    neither has an unmatched inner component in the catalogue at all (outside the inner
    region closepack6 has 16 of 47 at 5-7.7 sigma, README). Before the mask change closepack6 read 1/10: a 5.1 sigma blob in
    beam 3's image, where a 0.59 Jy source 1.02 deg from the beam centre lies outside the
    image and its sidelobes add 0.7 mJy; with the faint sources cleaned the residual there
    no longer reaches 5 sigma (README, "Image fidelity").
    """
    name, opts, field, chain = variant
    f = _figures(chain, field, opts)
    print(f"fidelity ({name}):", ", ".join(f"{k}={v:.4g}" for k, v in f.items()))
    assert f["noise_to_thermal"] <= 1.75
    assert f["completeness"] >= 0.95 and f["n_expected"] >= 8
    assert abs(f["flux_ratio"] - 1.0) <= 0.02
    assert f["spurious_inner"] <= 0.05 and f["n_inner_5sigma"] >= 5  # target: none of ~12
