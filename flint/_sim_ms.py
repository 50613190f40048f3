"""Measurement Set writing of the simulator: the main table chunk by chunk, fixed-shape subtables."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from flint._sim_stream import Chunk
from flint.io import atomic_path

if TYPE_CHECKING:
    from flint.sim import SimOptions

__all__ = ["write_ms"]


# --------------------------------------------------------------------------- MS writing
#: array columns of the subtables flint writes, with their fixed shapes (-1 = n_chan)
_FIXED_SHAPES: dict[str, dict[str, list[int]]] = {
    "FEED": {"BEAM_OFFSET": [2, 2], "POLARIZATION_TYPE": [2], "POL_RESPONSE": [2, 2], "RECEPTOR_ANGLE": [2], "POSITION": [3]},
    "FIELD": {"PHASE_DIR": [1, 2], "DELAY_DIR": [1, 2], "REFERENCE_DIR": [1, 2]},
    "SPECTRAL_WINDOW": {"CHAN_FREQ": [-1], "CHAN_WIDTH": [-1], "EFFECTIVE_BW": [-1], "RESOLUTION": [-1]},
    "POLARIZATION": {"CORR_TYPE": [4], "CORR_PRODUCT": [4, 2]},
    "OBSERVATION": {"TIME_RANGE": [2], "LOG": [1], "SCHEDULE": [1]},
}
_ZERO = {"double": 0.0, "float": 0.0, "int": 0, "string": "", "complex": 0j, "dcomplex": 0j, "boolean": False}

def _ms_descriptions(n_chan: int) -> tuple[dict, dict]:
    import casacore.tables as ct

    cols = [
        ct.makearrcoldesc("DATA", 0j, ndim=2, shape=[n_chan, 4], valuetype="complex", comment="visibilities"),
        ct.makearrcoldesc("FLAG", False, ndim=2, shape=[n_chan, 4], valuetype="boolean"),
        ct.makearrcoldesc("WEIGHT", 0.0, ndim=1, shape=[4], valuetype="float"),
        ct.makearrcoldesc("SIGMA", 0.0, ndim=1, shape=[4], valuetype="float"),
    ]
    desc = ct.maketabdesc(cols)
    dminfo = {
        "*1": {"TYPE": "TiledColumnStMan", "NAME": "TiledData", "SPEC": {"DEFAULTTILESHAPE": np.array([4, n_chan, 128], dtype=np.int32)}, "COLUMNS": ["DATA"]},
        "*2": {"TYPE": "TiledColumnStMan", "NAME": "TiledFlag", "SPEC": {"DEFAULTTILESHAPE": np.array([4, n_chan, 128], dtype=np.int32)}, "COLUMNS": ["FLAG"]},
    }
    return desc, dminfo


def write_ms(
    path: Path,
    *,
    opts: SimOptions,
    beam: int,
    beam_offset_rad: tuple[float, float],
    field_label: str,
    phase_centre_deg: tuple[float, float],
    itrf: NDArray[np.float64],
    times: NDArray[np.float64],
    freqs: NDArray[np.float64],
    a1: NDArray[np.int32],
    a2: NDArray[np.int32],
    chunks: Iterable[Chunk],
    sky_frame: bool = True,
    finish: Callable[[Path], None] | None = None,
) -> int:
    """Write a Measurement Set of ``len(times)`` integrations, the main table chunk by chunk.

    Returns the number of visibilities (rows x channels x correlations) written.
    """
    import casacore.tables as ct

    n_chan = len(freqs)
    na = itrf.shape[0]
    nbl = len(a1)
    nrow = len(times) * nbl
    desc, dminfo = _ms_descriptions(n_chan)
    sigma = max(opts.noise_jy, 1e-3) * np.sqrt(2.0)
    with atomic_path(path) as tmp:
        tab = ct.default_ms(str(tmp), desc, dminfo)
        try:
            tab.addrows(nrow)
            row = 0
            for ch in chunks:
                n = ch.data.shape[0]
                if n != len(ch.times) * nbl or row + n > nrow:
                    raise RuntimeError(f"{path}: chunk of {n} rows does not fit the {nrow}-row table at row {row}")
                time_col = np.repeat(ch.times, nbl)
                tab.putcol("TIME", time_col, startrow=row, nrow=n)
                tab.putcol("TIME_CENTROID", time_col, startrow=row, nrow=n)
                tab.putcol("INTERVAL", np.full(n, opts.integration_s), startrow=row, nrow=n)
                tab.putcol("EXPOSURE", np.full(n, opts.integration_s), startrow=row, nrow=n)
                tab.putcol("ANTENNA1", np.tile(a1, len(ch.times)), startrow=row, nrow=n)
                tab.putcol("ANTENNA2", np.tile(a2, len(ch.times)), startrow=row, nrow=n)
                tab.putcol("FEED1", np.full(n, beam, dtype=np.int32), startrow=row, nrow=n)
                tab.putcol("FEED2", np.full(n, beam, dtype=np.int32), startrow=row, nrow=n)
                tab.putcol("UVW", ch.uvw, startrow=row, nrow=n)
                tab.putcol("DATA", ch.data, startrow=row, nrow=n)
                tab.putcol("FLAG", np.zeros(ch.data.shape, dtype=bool), startrow=row, nrow=n)
                tab.putcol("FLAG_ROW", np.zeros(n, dtype=bool), startrow=row, nrow=n)
                tab.putcol("SIGMA", np.full((n, 4), sigma, dtype=np.float32), startrow=row, nrow=n)
                tab.putcol("WEIGHT", np.full((n, 4), 1.0 / sigma**2, dtype=np.float32), startrow=row, nrow=n)
                for col in ("FIELD_ID", "DATA_DESC_ID", "ARRAY_ID", "OBSERVATION_ID", "PROCESSOR_ID", "STATE_ID"):
                    tab.putcol(col, np.zeros(n, dtype=np.int32), startrow=row, nrow=n)
                tab.putcol("SCAN_NUMBER", np.ones(n, dtype=np.int32), startrow=row, nrow=n)
                row += n
            if row != nrow:
                raise RuntimeError(f"{path}: wrote {row} of {nrow} rows")
            if sky_frame:
                # the frame rule of flint.askap: these visibilities are in the sky frame
                tab.putkeyword("FLINT_FRAME", "sky")
        finally:
            tab.close()

        def sub(name: str) -> ct.table:
            # Recreate the subtable with fixed-shape, directly stored array columns:
            # casacore's indirect-array files hold a few uninitialised bytes, which
            # would break "same seed, same bytes".
            fixed = _FIXED_SHAPES.get(name, {})
            if fixed:
                cols = []
                required = ct.required_ms_desc(name)
                for col, shape in fixed.items():
                    d = required[col]
                    shp = [n_chan if x == -1 else x for x in shape]
                    cols.append(ct.makearrcoldesc(col, d.get("valueType") and _ZERO[d["valueType"]], ndim=len(shp), shape=shp, options=5, valuetype=d["valueType"], keywords=d.get("keywords", {})))
                import shutil

                shutil.rmtree(tmp / name)
                ct.default_ms_subtable(name, str(tmp / name), ct.maketabdesc(cols)).close()
            return ct.table(str(tmp / name), readonly=False, ack=False)

        with sub("ANTENNA") as t:
            t.addrows(na)
            t.putcol("NAME", [f"ak{i + 1:02d}" for i in range(na)])
            t.putcol("STATION", [f"ASKAP_AK{i + 1:02d}" for i in range(na)])
            t.putcol("TYPE", ["GROUND-BASED"] * na)
            t.putcol("MOUNT", ["ALT-AZ"] * na)
            t.putcol("POSITION", itrf)
            t.putcol("OFFSET", np.zeros((na, 3)))
            t.putcol("DISH_DIAMETER", np.full(na, 12.0))
        with sub("FEED") as t:
            t.addrows(na)
            t.putcol("ANTENNA_ID", np.arange(na, dtype=np.int32))
            t.putcol("FEED_ID", np.full(na, beam, dtype=np.int32))
            t.putcol("BEAM_ID", np.full(na, beam, dtype=np.int32))
            t.putcol("SPECTRAL_WINDOW_ID", np.full(na, -1, dtype=np.int32))
            t.putcol("TIME", np.full(na, times[0]))
            t.putcol("INTERVAL", np.full(na, 1e30))
            t.putcol("NUM_RECEPTORS", np.full(na, 2, dtype=np.int32))
            t.putcol("POLARIZATION_TYPE", np.array([["X", "Y"]] * na))
            t.putcol("POL_RESPONSE", np.tile(np.eye(2, dtype=np.complex64), (na, 1, 1)))
            t.putcol("RECEPTOR_ANGLE", np.tile(np.array([-np.pi / 4, np.pi / 4]), (na, 1)))
            t.putcol("BEAM_OFFSET", np.tile(np.array([[beam_offset_rad, beam_offset_rad]]).reshape(2, 2), (na, 1, 1)))
            t.putcol("POSITION", np.zeros((na, 3)))
        pc = np.radians(np.array(phase_centre_deg)).reshape(1, 1, 2)
        with sub("FIELD") as t:
            t.addrows(1)
            t.putcol("NAME", [field_label])
            t.putcol("CODE", [""])
            t.putcol("TIME", np.array([times[0]]))
            t.putcol("NUM_POLY", np.zeros(1, dtype=np.int32))
            for c in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
                t.putcol(c, pc)
            t.putcol("SOURCE_ID", np.zeros(1, dtype=np.int32))
        with sub("SPECTRAL_WINDOW") as t:
            t.addrows(1)
            w = opts.channel_width_hz
            t.putcol("NUM_CHAN", np.array([n_chan], dtype=np.int32))
            t.putcol("CHAN_FREQ", freqs.reshape(1, -1))
            t.putcol("CHAN_WIDTH", np.full((1, n_chan), w))
            t.putcol("EFFECTIVE_BW", np.full((1, n_chan), w))
            t.putcol("RESOLUTION", np.full((1, n_chan), w))
            t.putcol("REF_FREQUENCY", np.array([freqs[0]]))
            t.putcol("TOTAL_BANDWIDTH", np.array([w * n_chan]))
            t.putcol("MEAS_FREQ_REF", np.array([5], dtype=np.int32))  # TOPO
            t.putcol("NAME", ["ASKAP_SIM"])
            t.putcol("NET_SIDEBAND", np.array([1], dtype=np.int32))
        with sub("POLARIZATION") as t:
            t.addrows(1)
            t.putcol("NUM_CORR", np.array([4], dtype=np.int32))
            t.putcol("CORR_TYPE", np.array([[9, 10, 11, 12]], dtype=np.int32))
            t.putcol("CORR_PRODUCT", np.array([[[0, 0], [0, 1], [1, 0], [1, 1]]], dtype=np.int32))
        with sub("DATA_DESCRIPTION") as t:
            t.addrows(1)
            t.putcol("SPECTRAL_WINDOW_ID", np.zeros(1, dtype=np.int32))
            t.putcol("POLARIZATION_ID", np.zeros(1, dtype=np.int32))
        with sub("OBSERVATION") as t:
            t.addrows(1)
            t.putcol("TELESCOPE_NAME", ["ASKAP"])
            t.putcol("OBSERVER", ["flint.sim"])
            t.putcol("PROJECT", ["flint-simulation"])
            t.putcol("TIME_RANGE", np.array([[times[0], times[-1] + opts.integration_s]]))
            t.putcol("RELEASE_DATE", np.array([times[0]]))
            t.putcol("LOG", np.array([["simulated by flint.sim"]]))
            t.putcol("SCHEDULE", np.array([["flint.sim"]]))
        with sub("STATE") as t:
            t.addrows(1)
            t.putcol("OBS_MODE", ["OBSERVE_TARGET.ON_SOURCE"])
        with sub("PROCESSOR") as t:
            t.addrows(1)
            t.putcol("TYPE", ["CORRELATOR"])
        if finish is not None:
            finish(tmp)  # e.g. the raw ASKAP layout (flint._sim_askap), before the rename
    return nrow * n_chan * 4
