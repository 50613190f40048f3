"""``flint demo``: simulate a small ASKAP observation and process it end to end.

1. ``flint sim``: PKS B1934-638 and a science field (3 beams by default), with the truth.
2. the ``bandpass`` flow: flag + solve a bandpass per beam of the calibrator.
3. the ``continuum`` flow: apply the bandpass, flag, image, self-calibrate, image again,
   convolve to a common beam, mosaic, find sources, and validate the catalogue against
   the simulator's sky.

Both flows run through Prefect on one Dask cluster (the packaged ``local`` cluster YAML
unless ``--cluster-config`` names another) and one temporary Prefect server, kept warm
between the two flows (:class:`flint.prefect.warm.WarmSession`).

Every input (simulation options, strategy file, cluster YAML, output folder) is checked
before anything is simulated or started.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from flint.cli._options import build_options

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "demo",
        help="simulate a small field and process it end to end",
        description=(
            "Simulate PKS B1934-638 and a science field, then run the bandpass and continuum "
            "flows on them (on a local Dask cluster by default) and compare the catalogue "
            "with the simulated sky."
        ),
    )
    p.add_argument("out_dir", type=Path, help="folder for the demo's data and products")
    p.add_argument("--seed", type=int, default=42, help="simulation seed (default 42)")
    p.add_argument("--n-beams", type=int, default=None, help="beams of the science field (default 3; 2 with --line)")
    p.add_argument(
        "--line",
        action="store_true",
        help="spectral line: simulate HI lines (sim --lines 3 --zoom), then run the line flow after the continuum "
        "flow and print line_flux_ratio_median, line_velocity_error_kms and continuum_residual_over_noise",
    )
    p.add_argument(
        "--pol",
        action="store_true",
        help="polarisation: simulate a polarised sky with leakage on a wide band (sim --polarised, 36 x 8 MHz at ~888 MHz), "
        "full-Jones bandpass, then the polarisation flow; prints rm_error_median, polfrac_ratio_median and leakage_after",
    )
    p.add_argument(
        "--cluster-config",
        default="local",
        help="cluster YAML file or packaged example name (default: local)",
    )
    p.add_argument("--strategy", type=Path, default=None, help="self-cal strategy YAML (default: packaged)")
    p.add_argument(
        "--simulate-only", action="store_true", help="only simulate the data and print its summary"
    )
    p.set_defaults(func=run)


def _stage(text: str) -> float:
    print(f"\n== {text}", flush=True)
    return time.perf_counter()


def _done(t0: float) -> None:
    print(f"   done in {time.perf_counter() - t0:.0f} s", flush=True)


def _check_inputs(args: argparse.Namespace) -> Any:
    """Check the strategy, the cluster YAML and the output folder; return the cluster spec."""
    from flint.errors import FlintInputError

    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise FlintInputError(f"{args.out_dir}: exists and is not a folder; give another OUT_DIR")
    if args.simulate_only:
        return None
    from flint.prefect.clusters import load_cluster_spec  # no Prefect import
    from flint.strategy import load_strategy

    load_strategy(args.strategy)
    return load_cluster_spec(args.cluster_config)


def run(args: argparse.Namespace) -> int:
    from flint.ms import summarise
    from flint.sim import SimOptions, simulate_bandpass, simulate_field

    out: Path = args.out_dir.absolute()
    n_beams = args.n_beams if args.n_beams is not None else (2 if args.line else 3)
    opts = build_options(SimOptions, {"seed": args.seed, "n_beams": n_beams, **(_LINE_SIM if args.line else {})})
    if args.pol:  # 2 beams unless --n-beams says otherwise
        opts = opts.with_options(**_POL_SIM, **({"n_beams": 2} if args.n_beams is None else {}))
    cluster = _check_inputs(args)  # before anything is simulated or started
    data = out / "data"

    t0 = _stage(f"simulating PKS B1934-638 and a {opts.n_beams}-beam field in {data}")
    bp = simulate_bandpass(data, opts, progress=True)
    field = simulate_field(data, opts, progress=True)
    _done(t0)
    print(summarise(field.ms_paths[0]))
    if args.simulate_only:
        return 0

    # flint.prefect is imported here only: the rest of the CLI does not need Prefect
    from flint.cli.flow import print_products
    from flint.prefect.warm import WarmSession

    strategy = None if args.strategy is None else str(args.strategy)
    if args.pol and strategy is None:
        from flint._sim_pol import pol_truth_paths
        from flint.prefect.polarisation import pol_strategy

        odc = pol_truth_paths(data, opts, calibrator=True)["xy_phase"]  # the XY-phase an on-dish calibration reports
        strategy = str(pol_strategy(out / "pol-strategy.yaml", size=_POL_SIZE, scale_arcsec=6.0, xy_phase=str(odc)))
    if args.line and strategy is None:
        strategy = str(line_strategy(out / "line-strategy.yaml"))

    with WarmSession(cluster) as session:
        t0 = _stage(f"bandpass flow on {cluster.cluster_class}")
        solutions = session.run(
            "bandpass",
            bandpass=[str(p) for p in bp.ms_paths],
            out_dir=str(out / "bandpass"),
            strategy=strategy,
        )
        _done(t0)
        print_products("bandpass", solutions)

        t0 = _stage(f"continuum flow on {cluster.cluster_class}")
        products = session.run(
            "continuum",
            science=[str(p) for p in field.ms_paths],
            solutions=str(out / "bandpass"),
            out_dir=str(out / "continuum"),
            reference=str(field.sky_csv),
            strategy=strategy,
        )
        _done(t0)
        if args.pol:
            _run_pol(session, opts, data, out, strategy)
        print_products("continuum", products)
        if args.line:
            _run_line(session, opts, field, out, strategy)
    return 0


#: the line demo's simulation: 3 HI lines + an absorption in ASKAP's zoom band near 1.4 GHz
_LINE_SIM = {"lines": 3, "zoom": True, "n_sources": 15, "n_times": 20}


def line_strategy(path: Path, size: int = 768, scale_arcsec: float = 2.5, rounds: int = 1) -> Path:
    """The packaged strategy with 2.5-arcsec pixels over 0.53 deg, for ~1.4 GHz (the simulated beam there is
    ~22 x 14 arcsec in 20 integrations; the primary beam's FWHM 0.63 deg), cut to ``rounds`` self-cal rounds
    (one phase-only round: the continuum model the line flow subtracts is as good as after two here,
    0.955 vs 0.961 of the truth at the bright sources)."""
    import yaml

    from flint.io import atomic_write_text
    from flint.strategy import default_strategy_path

    text = yaml.safe_load(default_strategy_path().read_text())
    text["defaults"]["wsclean"].update(size=size, scale_arcsec=scale_arcsec)
    text["rounds"] = {r: v for r, v in text.get("rounds", {}).items() if int(r) <= rounds}
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, yaml.safe_dump(text, sort_keys=False))


def _run_line(session: Any, opts: Any, field: Any, out: Path, strategy: str | None) -> None:
    """The line flow on the continuum flow's folder, then the line numbers against the truth."""
    from flint.cli.flow import print_products
    from flint.line_validation import validate_lines

    # the line-free channels of the uv-continuum fit are found per beam in the data (--fit-channels auto)
    t0 = _stage("line flow: subtract (line-free channels found per beam) -> channel-block cubes -> common beam per channel -> cube linmos")
    products = session.run(
        "line", continuum=str(out / "continuum"), out_dir=str(out / "line"), strategy=strategy, size=400, channel_block=16,
    )
    _done(t0)
    print_products("line", products)
    val = validate_lines(products["mosaic"], field.extra["lines"], field.sky_csv)
    for m in val.lines:
        print(f"line {m.name} ({m.kind}): {m.int_jy_kms:.4g} of {m.true_int_jy_kms:.4g} Jy km/s, v0 {m.v0_kms:.2f} (true {m.true_v0_kms:.2f}) km/s")
    print(f"line_flux_ratio_median: {val.line_flux_ratio_median:.4f}")
    print(f"line_velocity_error_kms: {val.line_velocity_error_kms:.3f} (channel width {val.channel_width_kms:.2f} km/s)")
    print(f"continuum_residual_over_noise: {val.continuum_residual_over_noise:.3f}")


#: the polarisation demo's simulation: a polarised sky with leakage on ASKAP's 288 MHz band at ~888 MHz;
#: the noise of an 8 MHz channel: ``flint.sim.noise_per_visibility(8e6, 9.95)`` (the default ``noise_jy``
#: is a 1 MHz visibility's; flint.sim is not imported here, to keep the CLI quick to start)
_POL_SIM = {"polarised": True, "n_channels": 36, "channel_width_hz": 8.0e6, "freq_start_hz": 748.0e6, "n_times": 20,
            "n_sources": 15, "n_bright": 4, "bright_flux_jy": (1.0, 2.0), "noise_jy": 0.3 * (1.0e6 / 8.0e6) ** 0.5}
_POL_SIZE = 512


def _run_pol(session: Any, opts: Any, data: Path, out: Path, strategy: str | None) -> None:
    """The polarisation flow on the continuum flow's folder, then its numbers against the truth."""
    from flint._sim_pol import pol_truth_paths, score_polarisation
    from flint.cli.flow import print_products

    truth = pol_truth_paths(data, opts)
    t0 = _stage("polarisation flow: IQUV cubes -> common beam per channel -> cube linmos (holography-format beams) -> leakage -> RM synthesis")
    products = session.run(
        "polarisation", continuum=str(out / "continuum"), out_dir=str(out / "polarisation"), strategy=strategy,
        pb_cube=str(truth["pb_cube"]), size=_POL_SIZE,
    )
    _done(t0)
    print_products("polarisation", products)
    score = score_polarisation(products["mosaics"], products["rmsynth"]["table"], truth["pol"], opts.n_bright)
    for name, ratios in score.flux_ratios.items():
        print(f"{name}: flux over truth " + ", ".join(f"{k.upper()} {v:.4f}" for k, v in ratios.items())
              + "; fraction over truth " + ", ".join(f"{k.upper()}/I {v:.4f}" for k, v in score.fraction_ratios[name].items()))
    print(f"rm_error_median: {score.rm_error_median:.3f} rad/m^2 ({score.n_rm} sources; RMSF FWHM {products['rmsynth']['fwhm_rmsf_radm2']:.1f})")
    print(f"polfrac_ratio_median: {score.polfrac_ratio_median:.4f}")
    print(f"leakage_after: {score.leakage_after:.5f} (median |V/I|, {score.n_unpolarised} unpolarised sources)")
