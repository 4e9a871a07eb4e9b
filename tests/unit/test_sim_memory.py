"""A closed-loop storm's memory grows with its VMs and its cache, not with its IOs; packed, it is the same storm."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest

from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.sim import fast
from clonefleet.sim.arraymodel import compile_network
from clonefleet.sim.fast import run_fast
from clonefleet.sim.scenario import build_scenario
from clonefleet.sim.storm import run_storm
from clonefleet.sim.trace import generate_trace

FLEET = load_fleet("desktop-win7")


def _engine_peak_bytes(ios_per_vm: int, function: str) -> int:
    """Peak memory allocated while the fast engine runs a closed loop of 6 VMs (the network compiled
    before, without placing the IOs ahead), every latency left to the sketch."""
    array = dataclasses.replace(load_array("midrange-2012"), cache_bytes=4096.0 * 500)
    trace = generate_trace(FLEET, 6, np.random.default_rng(1), ios_per_vm=ios_per_vm)
    sc = build_scenario(trace, FLEET, array, load_function(function), golden_images=2 if function == "snapshot" else 1)
    net = compile_network(sc, place=False, keys=False)
    assert net.key.size == net.disk.size == net.cow_disk.size == 0
    run_fast(net, per_io=False)  # compiled, before measuring
    tracemalloc.start()
    try:
        raw = run_fast(net, per_io=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert raw.latency_s.size == 0 and raw.completion_s.size == 0 and raw.latency_sketch.sum() == trace.ios
    return peak


@pytest.mark.parametrize("function", ["thin", "snapshot"])
def test_the_event_loops_memory_does_not_grow_with_the_ios(function: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast, "EXACT_LATENCY_BYTES", 0)
    short, long = _engine_peak_bytes(1_000, function), _engine_peak_bytes(16_000, function)
    # 16 times the IOs: the same memory (the cache is full in both, the slots and the calendar per VM).
    assert long <= short * 1.02 + 16_384


@pytest.mark.parametrize("function", ["thin", "snapshot", "full"])
def test_a_storm_drawn_packed_is_the_storm_drawn_whole(function: str) -> None:
    array, fn = load_array("midrange-2012"), load_function(function)
    whole = run_storm(FLEET, array, fn, 12, seed=4, ios_per_vm=3_000)
    packed = run_storm(FLEET, array, fn, 12, seed=4, ios_per_vm=3_000, keep_trace=False)
    assert packed.trace is None and whole.trace is not None
    a, b = whole.runs[0], packed.runs[0]
    np.testing.assert_array_equal(a.boot_s, b.boot_s)
    assert a.latency_percentiles_s == b.latency_percentiles_s and a.latency == b.latency
    assert a.per_clone_new_bytes == b.per_clone_new_bytes and a.read_hit_ratio == b.read_hit_ratio
    assert a.latency_percentiles_error == b.latency_percentiles_error == 0.0  # exact: the latencies fit
    if function != "full":
        assert a.per_clone_new_mean_bytes > 0
