"""Calibration: bandpass and self-cal gain solutions, AO-format files, apply, plots.

One solver (StEFCal, :mod:`flint.calibrate._solver`) serves both the bandpass against
PKS B1934-638 (:func:`run_bandpass`) and self-calibration against ``MODEL_DATA``
(:func:`run_selfcal`). Solutions are written in AO ``calibrate``'s binary format
(:mod:`flint.calibrate.aocal`) and applied to ``CORRECTED_DATA`` with :func:`run_apply`.
"""

from __future__ import annotations

from flint.calibrate.aocal import AOSolutions, read_solutions, write_solutions
from flint.calibrate.apply import ApplyOptions, ApplyResult, run_apply
from flint.calibrate.bandpass import BandpassOptions, BandpassResult, run_bandpass
from flint.calibrate.caltables import LoadedSolutions, load_solutions
from flint.calibrate.fields import FieldChoice, choose_bandpass_field
from flint.calibrate.plot import plot_solutions
from flint.calibrate.selfcal import SelfcalOptions, SelfcalResult, run_selfcal

__all__ = [
    "AOSolutions",
    "read_solutions",
    "write_solutions",
    "ApplyOptions",
    "ApplyResult",
    "run_apply",
    "BandpassOptions",
    "BandpassResult",
    "run_bandpass",
    "LoadedSolutions",
    "load_solutions",
    "FieldChoice",
    "choose_bandpass_field",
    "SelfcalOptions",
    "SelfcalResult",
    "run_selfcal",
    "plot_solutions",
]
