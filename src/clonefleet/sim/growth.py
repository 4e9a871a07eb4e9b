"""Clone growth counted exactly from synthetic multi-day write traces: the truth Eq. G1 is held to.

Every clone writes, each day, ``n_day`` extents of mean size ``W_day/n_day`` drawn at random in the
daily span (:func:`clonefleet.model.footprint.write_extents`, the same draw the simulator and the real
backends use); the units of granularity u those extents touch since the clone's last reset are
counted exactly, one bit per unit. A refresh every k days clears the clone's bits. The model
(:func:`clonefleet.model.growth.grown_bytes_per_clone` at the clone's age) must agree with the mean.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from clonefleet.model.footprint import write_extents
from clonefleet.model.growth import days_since_reset

FloatArray = npt.NDArray[np.float64]


IntArray = npt.NDArray[np.int64]


def _touched_units(offsets: IntArray, lengths: IntArray, unit_bytes: int) -> IntArray:
    """Every unit index the extents touch (with repeats)."""
    first = offsets // unit_bytes
    last = (offsets + lengths - 1) // unit_bytes
    counts = last - first + 1
    starts = np.repeat(first, counts)
    steps = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    touched: IntArray = starts + steps
    return touched


def exact_grown_bytes(days: int, daily_write_bytes: float, daily_write_extents: float, daily_span_bytes: float,
                      unit_bytes: int, clones: int, rng: np.random.Generator,
                      refresh_period_days: float = np.inf) -> FloatArray:
    """Mean bytes the daily writes allocate per clone at the end of each day 0..``days`` [bytes], counted
    exactly (distinct units touched since the last refresh, times u). Day 0 is the first boot: 0."""
    units = int(-(-int(daily_span_bytes) // unit_bytes))
    ages = days_since_reset(np.arange(days + 1), refresh_period_days)
    total = np.zeros(days + 1)
    for _ in range(clones):
        marks = np.zeros(units, dtype=bool)
        for day in range(1, days + 1):
            if ages[day] == 1:  # reset at the start of this day (or the first day of use)
                marks[:] = False
            off, ln = write_extents(daily_write_bytes, daily_write_extents, daily_span_bytes, rng)
            marks[_touched_units(off, ln, unit_bytes)] = True
            total[day] += marks.sum() * unit_bytes
    result: FloatArray = total / clones
    return result
