"""PNG plot of AO-format solutions: amplitude and phase against channel, per antenna."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from flint.calibrate.caltables import load_solutions
from flint.io import atomic_path

__all__ = ["plot_solutions"]

logger = logging.getLogger(__name__)


def plot_solutions(
    solutions: str | os.PathLike[str], output: str | os.PathLike[str] | None = None, beam: int | None = None
) -> Path:
    """Plot gain amplitude and phase against channel for every antenna (X and Y).

    Each antenna gets an amplitude panel above a phase panel; several solution
    intervals are overlaid, coloured from dark (first) to light (last).

    Parameters
    ----------
    solutions
        AO-format solution file, ASKAP calparameters table or CASA caltable.
    output
        PNG to write; default the solution file with ``.png`` in place of ``.bin``.
    beam
        The beam to plot from a calparameters table holding several.

    Returns
    -------
    Path
        The PNG written.
    """
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # never switch a notebook's inline backend away
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(solutions)
    sols = load_solutions(path, beam=beam).solutions
    if output is not None:
        out = Path(output)
    else:
        out = path.with_suffix(f".beam{beam:02d}.png" if beam is not None and path.is_dir() else ".png")
    g = sols.gains  # (interval, ant, chan, 2)
    ni, na, nc, _ = g.shape
    ncols = min(6, na)
    nrows = math.ceil(na / ncols)
    fig, axes = plt.subplots(
        2 * nrows, ncols, figsize=(2.4 * ncols, 2.6 * nrows), sharex=True, squeeze=False,
        gridspec_kw={"hspace": 0.0, "wspace": 0.3, "height_ratios": [1.0, 1.0] * nrows},
    )
    chans = np.arange(nc)
    cmap_x, cmap_y = plt.get_cmap("Blues_r"), plt.get_cmap("Reds_r")
    amax = np.nanmax(np.abs(g)) if np.isfinite(g).any() else 1.0
    for a in range(na):
        ax_a = axes[2 * (a // ncols), a % ncols]
        ax_p = axes[2 * (a // ncols) + 1, a % ncols]
        for i in range(ni):
            shade = 0.15 + 0.6 * (i / max(ni - 1, 1))
            for pol, cmap, label in ((0, cmap_x, "X"), (1, cmap_y, "Y")):
                gi = g[i, a, :, pol]
                kw = {"color": cmap(shade), "lw": 0.8, "marker": "." if nc < 64 else None, "ms": 2}
                ax_a.plot(chans, np.abs(gi), label=label if i == 0 else None, **kw)
                ax_p.plot(chans, np.degrees(np.angle(gi)), **kw)
        flagged = sols.flagged[:, a].all(axis=0)
        for c in np.flatnonzero(flagged):
            ax_a.axvspan(c - 0.5, c + 0.5, color="0.85", lw=0)
        ax_a.set_ylim(0, 1.1 * amax)
        ax_p.set_ylim(-180, 180)
        ax_a.set_title(f"ant {a}", fontsize=8, pad=2)
        ax_a.tick_params(labelbottom=False, labelsize=6)
        ax_p.tick_params(labelsize=6)
        if a % ncols == 0:
            ax_a.set_ylabel("amp", fontsize=7)
            ax_p.set_ylabel("phase (deg)", fontsize=7)
        if a == 0:
            ax_a.legend(fontsize=6, loc="lower right")
    for a in range(na, nrows * ncols):
        axes[2 * (a // ncols), a % ncols].set_visible(False)
        axes[2 * (a // ncols) + 1, a % ncols].set_visible(False)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.04, top=0.94)
    fig.suptitle(f"{path.name}: {ni} interval(s), {na} antennas, {nc} channels", fontsize=10)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    logger.info("wrote %s", out)
    return out
