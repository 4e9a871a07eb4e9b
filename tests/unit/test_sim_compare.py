"""The trace pool of a comparison gives each fleet size the trace (and arrival order) it would draw alone."""

from __future__ import annotations

import numpy as np
import pytest

from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.sim.compare import TracePool, run_fleet
from clonefleet.sim.order import time_order
from clonefleet.sim.trace import Arrivals, generate_trace

FLEET = load_fleet("server-ws2008")


@pytest.mark.parametrize("arrivals", [Arrivals.OPEN, Arrivals.CLOSED])
def test_the_pool_serves_every_size_as_if_drawn_alone(arrivals: Arrivals) -> None:
    pool = TracePool(FLEET, 5, 60, arrivals)
    for vms in (7, 3, 12, 40, 1):  # grows past its first size, then serves smaller ones from the larger
        alone = generate_trace(FLEET, vms, np.random.default_rng(5), ios_per_vm=60, seed=5, arrivals=arrivals)
        got = pool.first(vms)
        for field in ("vm_start", "op", "offset_bytes", "length_bytes", "issue_s", "start_s"):
            np.testing.assert_array_equal(getattr(got, field), getattr(alone, field))
        order = pool.arrival_order(vms)
        if arrivals is Arrivals.OPEN:
            assert order is not None
            np.testing.assert_array_equal(order, time_order(alone.issue_s))
        else:
            assert order is None


def test_a_run_from_the_pool_equals_a_run_drawn_alone() -> None:
    array, function = load_array("midrange-2012"), load_function("snapshot")
    pool = TracePool(FLEET, 2, 80, Arrivals.OPEN)
    pool.first(30)
    pooled, ratio = run_fleet(FLEET, array, function, 9, 2, 80, Arrivals.OPEN, pool)
    alone, ratio_alone = run_fleet(FLEET, array, function, 9, 2, 80, Arrivals.OPEN)
    np.testing.assert_array_equal(pooled.boot_s, alone.boot_s)
    assert pooled.latency_percentiles_s == alone.latency_percentiles_s
    assert ratio == ratio_alone
