"""``flint rmsynth``: RM synthesis of Stokes Q/U cubes (RM-Tools)."""

from __future__ import annotations

import argparse
from pathlib import Path

from flint.cli._options import add_options_arguments, options_from_args

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    from flint.polarisation import RMSynthOptions

    p = sub.add_parser(
        "rmsynth",
        help="RM synthesis of Q/U cubes: peak polarised intensity and RM maps, component table",
        description=(
            "Transform P = Q + iU over wavelength squared (RM-Tools) in blocks of image rows and "
            "write <Q cube>.pi.fits (peak polarised intensity) and <Q cube>.rm.fits (Faraday depth "
            "of the peak); with --catalogue, <Q cube>.rm.csv with each component's RM, polarised "
            "intensity and (with --i-cube) polarised fraction. Convolve the channels to one beam "
            "first (flint convol --mode total)."
        ),
    )
    p.add_argument("q_cube", type=Path, metavar="Q_CUBE", help="Stokes-Q cube (an IQUV cube works too)")
    p.add_argument("u_cube", type=Path, metavar="U_CUBE", help="Stokes-U cube on the same grid and channels")
    p.add_argument("--i-cube", type=Path, default=None, help="Stokes-I cube: polarised fractions from Q/I, U/I")
    p.add_argument("--catalogue", type=Path, default=None, help="component catalogue (ra/dec deg): write the per-component table")
    add_options_arguments(p, RMSynthOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flint.polarisation import RMSynthOptions, run_rmsynth

    opts = options_from_args(args, RMSynthOptions)
    r = run_rmsynth(args.q_cube, args.u_cube, opts, i_cube=args.i_cube, catalogue=args.catalogue)
    print(
        f"{r.n_channels} channels; RMSF FWHM {r.fwhm_rmsf_radm2:.1f} rad/m^2; "
        f"|phi| <= {r.phi_max_radm2:.0f} rad/m^2 in steps of {r.d_phi_radm2:.2f}"
    )
    print(f"pi      {r.pi_map}")
    print(f"rm      {r.rm_map}")
    if r.table is not None:
        print(f"table   {r.table}")
    return 0
