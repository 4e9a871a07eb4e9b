"""The growth model's pure functions (Eq. G1-G5), the lifetime's validation and the planner over time."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from clonefleet.errors import UsageError
from clonefleet.lifetime import Lifetime, parse_period_days
from clonefleet.model import allocated_bytes_per_clone
from clonefleet.model.growth import (
    clone_data_bytes,
    days_since_reset,
    first_day_over,
    gi_versions_kept,
    grown_bytes_per_clone,
    reduced_bytes,
    swap_allocated_bytes,
)
from clonefleet.planner import evaluate, life_curve, plan
from clonefleet.presets import SwapDisk, load_array, load_fleet, load_function

KIB, MIB, GIB = 2**10, 2**20, 2**30


def test_age_never_logoff_and_every_k_days() -> None:
    days = np.arange(11)
    assert days_since_reset(days).tolist() == list(range(11))
    assert days_since_reset(days, 1.0).tolist() == [0] + [1] * 10
    assert days_since_reset(days, 7.0).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 1, 2, 3]
    # a recompose every 4 days (days 5, 9) resets too, and the refresh of day 8; the latest reset counts
    assert days_since_reset(days, 7.0, 4.0).tolist() == [0, 1, 2, 3, 4, 1, 2, 3, 1, 1, 2]
    assert gi_versions_kept(days, 4.0).tolist() == [1, 1, 1, 1, 1, 2, 1, 1, 1, 2, 1]


def test_growth_is_the_occupancy_of_the_cumulated_writes_and_saturates_at_the_span() -> None:
    w, n, r, u = 1 * GIB, 50_000, 8 * GIB, 64 * KIB
    ages = np.arange(0, 200)
    grown = grown_bytes_per_clone(ages, w, n, r, u)
    assert grown[0] == 0.0
    assert np.all(np.diff(grown) >= 0)
    assert grown[-1] == pytest.approx(r, rel=1e-6)  # saturated: the span, in whole units
    assert grown[3] == pytest.approx(float(allocated_bytes_per_clone(3 * w, 3 * n, r, u)))


def test_clone_data_is_capped_at_the_virtual_disk_and_swap_fills_whole_units() -> None:
    assert float(clone_data_bytes(30 * GIB, 30 * GIB, 8 * GIB, 64 * GIB)) == 64 * GIB
    assert float(clone_data_bytes(1 * GIB, 2 * GIB, 1 * GIB, 64 * GIB)) == 4 * GIB
    assert float(swap_allocated_bytes(100 * KIB, 64 * KIB)) == 128 * KIB
    assert float(swap_allocated_bytes(0, 42 * MIB)) == 0.0


def test_reduction_and_first_day_over() -> None:
    assert float(reduced_bytes(10 * GIB, 5, 2)) == 1 * GIB
    assert first_day_over([1, 2, 3, 4], 2.5) == 2
    assert first_day_over([1, 2, 3], 3) is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"days": -1}, "--days = -1"),
    ({"days": 7, "refresh_days": 30.0}, "--refresh = 30d: longer than the horizon"),
    ({"days": 7, "recompose_days": 8.0}, "--recompose = 8d: longer than the horizon"),
    ({"days": 7, "refresh_days": 2.5}, "--refresh = 2.5"),
    ({"headroom": 1.0}, "--headroom"),
    ({"capacity_bytes": 0.0}, "--capacity"),
])
def test_lifetime_refuses_bad_input(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        Lifetime(**kwargs)  # type: ignore[arg-type]


def test_refresh_flags() -> None:
    assert parse_period_days("never", "--refresh") == math.inf
    assert parse_period_days("logoff", "--refresh") == 1.0
    assert parse_period_days("7d", "--refresh") == 7.0
    for bad in ("0d", "-3d", "weekly", "1.5d"):
        with pytest.raises(UsageError, match="--refresh"):
            parse_period_days(bad, "--refresh")


def test_day_zero_is_the_papers_plan_and_the_peak_grows_with_the_horizon() -> None:
    f, a = load_fleet("desktop-win10"), load_array("allflash-2024")
    snap = load_function("snapshot")
    day0 = evaluate(f, a, snap, 1000)
    assert float(day0.peak_consumed_bytes) == float(day0.consumed_bytes) == float(day0.reduced_consumed_bytes)
    week = evaluate(f, a, snap, 1000, Lifetime(days=7))
    month = evaluate(f, a, snap, 1000, Lifetime(days=30))
    assert float(day0.consumed_bytes) < float(week.peak_consumed_bytes) < float(month.peak_consumed_bytes)
    # a refresh every 7 days holds the peak at the week's, whatever the horizon
    refreshed = evaluate(f, a, snap, 1000, Lifetime(days=90, refresh_days=7.0))
    assert float(refreshed.peak_consumed_bytes) == pytest.approx(float(week.peak_consumed_bytes))
    # full copies are thick: their raw S never grows
    full = evaluate(f, a, load_function("full"), 1000, Lifetime(days=30))
    assert float(full.peak_consumed_bytes) == float(full.consumed_bytes) == 1000 * f.gi_virtual_bytes


def test_peak_equals_the_curves_maximum_and_a_recompose_doubles_the_gis_for_a_day() -> None:
    f, a, snap = load_fleet("desktop-linux"), load_array("allflash-dr-2024"), load_function("snapshot")
    life = Lifetime(days=40, refresh_days=14.0, recompose_days=30.0)
    curve = life_curve(f, a, snap, 500, life)
    ev = evaluate(f, a, snap, 500, life)
    assert float(ev.peak_consumed_bytes) == pytest.approx(curve.consumed_bytes.max())
    assert float(ev.peak_reduced_consumed_bytes) == pytest.approx(curve.stored_bytes.max())
    g = float(ev.golden_images)
    # day 31: the recompose day (both GI versions), clones rebuilt to their boot footprint plus one day
    day1 = curve.consumed_bytes[1]
    assert curve.consumed_bytes[31] == pytest.approx(day1 + g * f.gi_used_bytes)


def test_swap_on_a_disposable_disk_costs_full_copies_too() -> None:
    f = load_fleet("desktop-win10")
    a, full, snap = load_array("allflash-2024"), load_function("full"), load_function("snapshot")
    assert f.swap_bytes > 0 and f.swap_disk is SwapDisk.CLONE
    disposable = dataclasses.replace(f, swap_disk=SwapDisk.DISPOSABLE)
    assert float(evaluate(f, a, full, 10).consumed_bytes) == 10 * f.gi_virtual_bytes
    assert float(evaluate(disposable, a, full, 10).consumed_bytes) == 10 * (f.gi_virtual_bytes + f.swap_bytes)
    # for a snapshot clone the pagefile costs the same wherever it lands
    assert float(evaluate(disposable, a, snap, 10).consumed_bytes) == \
        pytest.approx(float(evaluate(f, a, snap, 10).consumed_bytes))


def test_headroom_and_a_datastore_decide_whether_a_plan_holds() -> None:
    f, a = load_fleet("desktop-win10"), load_array("allflash-2024")
    loose = plan(f, a, 1000, ["snapshot"], Lifetime(days=30, capacity_bytes=2**50))
    m = loose.method("snapshot")
    assert m.meets_requirement and m.fits_capacity and m.outgrows_day is None
    tight = plan(f, a, 1000, ["snapshot"], Lifetime(days=30, capacity_bytes=8 * 2**40))
    m = tight.method("snapshot")
    curve = life_curve(f, a, load_function("snapshot"), 1000, Lifetime(days=30))
    expected_day = int(np.flatnonzero(curve.stored_bytes > 8 * 2**40)[0])
    assert not m.meets_requirement and m.fits_capacity is False and m.outgrows_day == expected_day
    assert tight.recommended is None and "datastore" in tight.reason
    # the GI processor is 78 % busy at 1000 VMs (allflash-2024): a 25 % headroom refuses it, 20 % does not
    busy = max(plan(f, a, 1000, ["snapshot"]).method("snapshot").utilisation.values())
    assert 0.75 < busy < 0.8
    assert plan(f, a, 1000, ["snapshot"], Lifetime(headroom=0.2)).method("snapshot").meets_requirement
    assert not plan(f, a, 1000, ["snapshot"], Lifetime(headroom=0.25)).method("snapshot").meets_requirement
