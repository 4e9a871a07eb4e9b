"""A closed-loop storm's memory grows with its VMs and its cache, not with its IOs; packed, it is the same storm."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest

from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.sim import trace as trace_module
from clonefleet.sim.arraymodel import compile_network
from clonefleet.sim.fast import run_fast
from clonefleet.sim.scenario import build_scenario
from clonefleet.sim.storm import run_storm
from clonefleet.sim.trace import generate_trace

FLEET = load_fleet("desktop-win7")


def _engine_peak_bytes(ios_per_vm: int, function: str, keys: bool = False) -> tuple[int, int]:
    """Peak memory allocated while the fast engine runs a closed loop of 6 VMs (the network compiled
    before, without placing the IOs ahead; ``keys``: their cache keys numbered ahead), every latency
    left to the sketch; and the number of keys numbered."""
    array = dataclasses.replace(load_array("midrange-2012"), cache_bytes=4096.0 * 500)
    trace = generate_trace(FLEET, 6, np.random.default_rng(1), ios_per_vm=ios_per_vm)
    sc = build_scenario(trace, FLEET, array, load_function(function), golden_images=2 if function == "snapshot" else 1)
    net = compile_network(sc, place=False, keys=keys)
    assert net.disk.size == net.cow_disk.size == 0 and net.key.size == (trace.ios if keys else 0)
    run_fast(net, per_io=False)  # compiled, before measuring
    tracemalloc.start()
    try:
        raw = run_fast(net, per_io=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert raw.latency_s.size == 0 and raw.completion_s.size == 0 and raw.latency_sketch.sum() == trace.ios
    return peak, net.keys


@pytest.mark.parametrize("function", ["thin", "snapshot"])
def test_the_event_loops_memory_does_not_grow_with_the_ios(function: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace_module, "EXACT_LATENCY_BYTES", 0)
    (short, _), (long, _) = _engine_peak_bytes(1_000, function), _engine_peak_bytes(16_000, function)
    # 16 times the IOs: the same memory (the cache is full in both, the slots and the calendar per VM).
    assert long <= short * 1.02 + 16_384


@pytest.mark.parametrize("function", ["thin", "snapshot"])
def test_keys_numbered_ahead_cost_the_engine_8_bytes_each(function: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace_module, "EXACT_LATENCY_BYTES", 0)
    (short, short_keys), (long, long_keys) = _engine_peak_bytes(1_000, function, True), \
        _engine_peak_bytes(16_000, function, True)
    # The cache's table by key (8 bytes per key: trace.DENSE_BYTES_PER_IO counts them with the key per IO,
    # which the network holds): what grows with the keys, nothing else.
    grown = 8 * (long_keys - short_keys)
    assert long_keys > 2 * short_keys and grown * 0.98 - 16_384 <= long - short <= grown * 1.02 + 16_384


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
