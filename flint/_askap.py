"""ASKAP facts used by the simulator: site, antenna layout, beam footprints, 1934-638."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ASKAP_LAT_DEG",
    "ASKAP_LON_DEG",
    "ASKAP_HEIGHT_M",
    "ASKAP_ENU_M",
    "antenna_itrf",
    "footprint_offsets_deg",
    "B1934_RA_DEG",
    "B1934_DEC_DEG",
    "b1934_flux_jy",
]

#: Murchison Radio-astronomy Observatory, ASKAP array reference (approximate)
ASKAP_LAT_DEG = -26.696
ASKAP_LON_DEG = 116.637
ASKAP_HEIGHT_M = 360.0

#: ASKAP antenna pads AK01..AK36 as (east, north) metres relative to AK01 (approximate
#: published layout; ~6 km maximum baseline)
ASKAP_ENU_M = np.array(
    [
        [0.000, 0.000], [26.978, -13.011], [35.950, 7.490], [-8.979, 35.008],
        [-73.992, 31.503], [135.660, 112.000], [242.860, -109.980], [-37.810, -238.510],
        [-244.210, 110.550], [-96.316, 279.496], [267.951, 340.539], [395.925, 269.476],
        [438.720, -364.005], [-24.860, -460.009], [-739.700, -157.993], [-636.115, 365.440],
        [-496.818, 522.519], [-106.785, 375.509], [217.814, 481.520], [506.320, 315.027],
        [686.168, 322.006], [845.840, 335.982], [-0.708, -657.007], [78.472, -978.523],
        [-613.617, 653.507], [-393.336, 667.503], [-1070.503, 940.975], [249.765, 1198.511],
        [565.930, 753.210], [1229.056, 798.468], [2220.949, 992.985], [3024.925, -2507.046],
        [25.026, -2810.965], [-2975.009, -2006.978], [-2170.998, 992.991], [23.232, 3190.068],
    ]
)

#: PKS B1934-638 (J2000)
B1934_RA_DEG = 294.8542750  # 19h39m25.026s
B1934_DEC_DEG = -63.7126750  # -63d42m45.63s


def b1934_flux_jy(freq_hz: NDArray[np.float64] | float) -> NDArray[np.float64]:
    """Flux density of PKS B1934-638 (Reynolds 1994 polynomial in log10 frequency/MHz).

    Examples
    --------
    >>> round(float(b1934_flux_jy(1.4e9)), 2)
    14.94
    """
    lf = np.log10(np.asarray(freq_hz, dtype=float) / 1e6)
    return 10.0 ** (-30.7667 + 26.4908 * lf - 7.0977 * lf**2 + 0.605334 * lf**3)


def _geodetic_to_ecef(lat_deg: float, lon_deg: float, h_m: float) -> NDArray[np.float64]:
    a = 6378137.0
    f = 1 / 298.257223563
    e2 = f * (2 - f)
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    n = a / np.sqrt(1 - e2 * np.sin(lat) ** 2)
    return np.array(
        [
            (n + h_m) * np.cos(lat) * np.cos(lon),
            (n + h_m) * np.cos(lat) * np.sin(lon),
            (n * (1 - e2) + h_m) * np.sin(lat),
        ]
    )


def antenna_itrf(n_antennas: int = 36) -> NDArray[np.float64]:
    """ITRF (X, Y, Z) metres of the first ``n_antennas`` ASKAP pads."""
    if not 2 <= n_antennas <= 36:
        raise ValueError("n_antennas must be between 2 and 36")
    lat, lon = np.radians(ASKAP_LAT_DEG), np.radians(ASKAP_LON_DEG)
    centre = _geodetic_to_ecef(ASKAP_LAT_DEG, ASKAP_LON_DEG, ASKAP_HEIGHT_M)
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    enu = ASKAP_ENU_M[:n_antennas]
    return centre[None, :] + enu[:, 0:1] * east[None, :] + enu[:, 1:2] * north[None, :]


def footprint_offsets_deg(
    n_beams: int, pitch_deg: float, shape: str = "square", origin: str = "beam0"
) -> NDArray[np.float64]:
    """Beam offsets (d_ra_on_sky, d_dec) in degrees for a footprint.

    ``square``: a 6x6 grid filled row by row from the centre outwards (``square_6x6``);
    ``closepack``: rows offset by half a pitch (``closepack36``). Beam 0 is nearest the
    footprint centre. ``origin="beam0"`` gives offsets from beam 0, ``"boresight"`` from the
    footprint centre (what the correlator's ``FEED.BEAM_OFFSET`` holds).
    """
    if not 1 <= n_beams <= 36:
        raise ValueError("n_beams must be between 1 and 36")
    pts = []
    for row in range(6):
        for col in range(6):
            x = (col - 2.5) * pitch_deg
            y = (row - 2.5) * pitch_deg * (np.sqrt(3) / 2 if shape == "closepack" else 1.0)
            if shape == "closepack" and row % 2:
                x += pitch_deg / 2
            pts.append((x, y))
    arr = np.array(pts)
    # centre the first beams on the footprint centre: order by distance from (0, 0),
    # then shift so beam 0 sits on the field centre
    order = np.lexsort((arr[:, 0], arr[:, 1], np.round(np.hypot(arr[:, 0], arr[:, 1]), 6)))
    arr = arr[order]
    if origin == "boresight":
        return arr[:n_beams]
    return arr[:n_beams] - arr[0]
