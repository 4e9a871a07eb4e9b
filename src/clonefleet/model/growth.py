"""Capacity over a fleet's life: how a clone grows after its boot, refreshes, swap and data reduction.

The paper sizes S (Eq. 3) at the first boot. A clone in use keeps writing: user profiles, browser
caches, logs, updates. The growth model reads those writes as a steady-state daily footprint: every
day a clone writes ``W_day`` bytes in ``n_day`` extents of mean size ``e = W_day/n_day``, placed at
random in a span of ``R_day`` bytes (the part of the disk daily use rewrites). After ``a`` days
without a refresh the clone has made ``a*n_day`` such writes, so the occupancy law of
:func:`~clonefleet.model.allocation.allocated_bytes_per_clone` applied to the cumulated writes gives
what they allocate (Eq. G1):

    C_day(a) = C(a*W_day, a*n_day, R_day, u) = u*U*(1 - (1 - 1/U)**(a*n_day*(1 + e/u))),  U = ceil(R_day/u)

It saturates at the span (``u*U``): daily use rewrites the same files. The clone's data is its boot
footprint plus that growth plus its swap (pagefile and temp files) when they land in the clone,
never more than the GI's virtual size (Eq. G2):

    C(a) = min(C_boot + C_day(a) + P_in, G)

A refresh (non-persistent pools at every logoff, or every k days) and a recompose (a new GI
version; every clone rebuilt) reset the clone to its boot footprint, so ``a`` is the days since
the last reset (Eq. G3). During the day of a recompose both GI versions are kept (Eq. G4).

Data reduction (Eq. G5): an array that deduplicates and compresses stores ``raw / (dedup*compression)``
of each kind of data, with its own ratios for the GIs' data and for the clones' own data.

All functions are pure and vectorised, like :mod:`clonefleet.model.equations`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from clonefleet.model.allocation import allocated_bytes_per_clone

FloatArray = npt.NDArray[np.float64]


def _f(value: npt.ArrayLike) -> FloatArray:
    return np.asarray(value, dtype=np.float64)


def days_since_reset(days: npt.ArrayLike, refresh_period_days: npt.ArrayLike = np.inf,
                     recompose_period_days: npt.ArrayLike = np.inf) -> FloatArray:
    """Eq. G3: a clone's age ``a`` [days] at the end of day ``d`` (0 = just after the first boot).

    Resets happen at the start of days ``k+1, 2k+1, ...`` for a refresh every ``k`` days (``k = 1``:
    at every logoff, one a day) and likewise for a recompose every ``r`` days; ``inf`` means never.
    So at the end of day ``d >= 1`` the clone holds ``d - k*floor((d-1)/k)`` days of writes (1 to k),
    the latest reset of either kind counting.
    """
    d = _f(days)
    before = np.maximum(d - 1.0, 0.0)

    def since(period: FloatArray) -> FloatArray:
        finite = np.isfinite(period)
        safe = np.where(finite, period, 1.0)
        last = np.where(finite, safe * np.floor(before / safe), 0.0)
        return d - last

    age: FloatArray = np.where(d > 0, np.minimum(since(_f(refresh_period_days)), since(_f(recompose_period_days))),
                               0.0)
    return age


def grown_bytes_per_clone(age_days: npt.ArrayLike, daily_write_bytes: npt.ArrayLike,
                          daily_write_extents: npt.ArrayLike, daily_write_span_bytes: npt.ArrayLike,
                          unit_bytes: npt.ArrayLike) -> FloatArray:
    """Eq. G1: ``C_day(a)``, what ``a`` days of use allocate in one clone beyond its boot [bytes].

    The occupancy law of C(u) over the cumulated writes ``a*W_day`` in ``a*n_day`` extents within
    the daily span ``R_day``: it saturates at the span rounded up to whole units.
    """
    a = _f(age_days)
    return allocated_bytes_per_clone(a * _f(daily_write_bytes), a * _f(daily_write_extents),
                                     daily_write_span_bytes, unit_bytes)


def swap_allocated_bytes(swap_bytes: npt.ArrayLike, unit_bytes: npt.ArrayLike) -> FloatArray:
    """What a pagefile (swap and temp files) of ``swap_bytes`` allocates: whole units of u [bytes].

    A pagefile is written as one contiguous file, so it fills ``ceil(P/u)`` units.
    """
    u = _f(unit_bytes)
    result: FloatArray = np.ceil(_f(swap_bytes) / u) * u
    return result


def clone_data_bytes(boot_bytes: npt.ArrayLike, grown_bytes: npt.ArrayLike, swap_in_clone_bytes: npt.ArrayLike,
                     gi_virtual_bytes: npt.ArrayLike) -> FloatArray:
    """Eq. G2: one clone's own data after its boot and ``a`` days of use, ``min(C_boot + C_day + P_in, G)``
    [bytes]: a clone never allocates more than the virtual disk it presents."""
    total = _f(boot_bytes) + _f(grown_bytes) + _f(swap_in_clone_bytes)
    return np.minimum(total, _f(gi_virtual_bytes))


def gi_versions_kept(days: npt.ArrayLike, recompose_period_days: npt.ArrayLike = np.inf) -> FloatArray:
    """Eq. G4: GI versions on the array at the end of day ``d``: 2 on the day of a recompose (the new
    version beside the old until every clone is rebuilt from it), else 1."""
    d = _f(days)
    r = _f(recompose_period_days)
    finite = np.isfinite(r)
    safe = np.where(finite, r, 1.0)
    recomposing = finite & (d > 1) & (np.mod(d - 1.0, safe) == 0)
    return np.where(recomposing, 2.0, 1.0)


def reduced_bytes(raw_bytes: npt.ArrayLike, dedup_ratio: npt.ArrayLike, compression_ratio: npt.ArrayLike) -> FloatArray:
    """Eq. G5: bytes an array stores for ``raw_bytes`` of one kind of data, ``raw / (dedup*compression)``."""
    result: FloatArray = _f(raw_bytes) / (_f(dedup_ratio) * _f(compression_ratio))
    return result


def first_day_over(consumed_bytes_by_day: npt.ArrayLike, limit_bytes: float) -> int | None:
    """The first day (index into the curve) whose consumption exceeds ``limit_bytes``; None if none does."""
    over = np.flatnonzero(_f(consumed_bytes_by_day) > limit_bytes)
    return int(over[0]) if over.size else None
