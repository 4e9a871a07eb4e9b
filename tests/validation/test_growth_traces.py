"""The growth model (Eq. G1, G3) against growth counted exactly from synthetic multi-day traces.

The expected numbers come from :func:`clonefleet.sim.growth.exact_grown_bytes`: every clone writes its
daily extents (the same draw the simulator and the real backends use), the distinct units of u touched
since its last refresh are counted bit by bit. The model must agree within 10 % on every day of the
horizon, with and without refresh, for 64 KiB copy-on-write units and 42 MiB thin-provisioning pages.
The cases keep the occupancy between 15 % and 90 % of the span, where the two could disagree; a span
saturated on day 1 would agree trivially.
"""

from __future__ import annotations

import numpy as np
import pytest

from clonefleet.model.growth import days_since_reset, grown_bytes_per_clone
from clonefleet.presets import load_fleet
from clonefleet.sim.growth import exact_grown_bytes

KIB, MIB, GIB = 2**10, 2**20, 2**30
TOLERANCE = 0.10
#: (unit, W_day, n_day, R_day): about 19 % of the span a day, 88 % after ten days without refresh.
CASES = {"64 KiB units": (64 * KIB, 200 * MIB, 4000, 2 * GIB), "42 MiB pages": (42 * MIB, 40 * MIB, 40, 8 * GIB)}
DAYS = 10


@pytest.mark.parametrize("refresh_days", [np.inf, 3.0, 1.0], ids=["never", "every 3 days", "logoff"])
@pytest.mark.parametrize("case", list(CASES))
def test_growth_model_within_10_percent_of_exact_counts(case: str, refresh_days: float) -> None:
    unit, w_day, n_day, span = CASES[case]
    exact = exact_grown_bytes(DAYS, w_day, n_day, span, unit, clones=20, rng=np.random.default_rng(13),
                              refresh_period_days=refresh_days)
    model = grown_bytes_per_clone(days_since_reset(np.arange(DAYS + 1), refresh_days), w_day, n_day, span, unit)
    assert exact[0] == model[0] == 0.0
    errors = np.abs(model[1:] - exact[1:]) / exact[1:]
    assert errors.max() <= TOLERANCE, (case, refresh_days, errors.round(3).tolist())
    # The cases are not saturated (the test could fail): the span is not yet full on the last day.
    assert exact[1:].min() < 0.9 * span
    if refresh_days == 3.0:  # a refresh resets the clone: day 4 is day 1 again
        assert exact[4] == pytest.approx(exact[1], rel=TOLERANCE) and exact[4] < exact[3]


def test_growth_of_a_shipped_desktop_preset_within_10_percent() -> None:
    """desktop-win10's daily figures (187,000 writes a day over 20 GiB) at 64 KiB, never refreshed."""
    f = load_fleet("desktop-win10")
    days = 4
    exact = exact_grown_bytes(days, f.daily_write_bytes, f.daily_write_extents, f.daily_write_span_bytes,
                              64 * KIB, clones=3, rng=np.random.default_rng(5))
    model = grown_bytes_per_clone(np.arange(days + 1), f.daily_write_bytes, f.daily_write_extents,
                                  f.daily_write_span_bytes, 64 * KIB)
    errors = np.abs(model[1:] - exact[1:]) / exact[1:]
    assert errors.max() <= TOLERANCE, errors.round(3).tolist()
