"""The fast (numba) and reference (SimPy) engines agree IO for IO, and both do what the model says."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.sim.arraymodel import allocated_bytes_per_clone, compile_network
from clonefleet.sim.fast import RawRun, run_fast
from clonefleet.sim.order import sort_pairs, time_order
from clonefleet.sim.reference import run_reference
from clonefleet.sim.scenario import Scenario, build_scenario
from clonefleet.sim.trace import READ, WRITE, Arrivals, Trace, generate_trace

FUNCTIONS = ("full", "thin", "snapshot", "qcow2-linked", "thin-physical", "rbd-clone", "reflink")


def _across_units(trace: Trace, unit: int, rng: np.random.Generator, image: int) -> Trace:
    """The trace with a third of its IOs moved to straddle a unit boundary: each starts a random
    number of 512-byte sectors before the boundary after it and ends anywhere up to one unit past
    it, so writes cover their first and last units partly (two copy-on-write reads) or whole, and
    reads start in one unit and end in the next."""
    off, length = trace.offset_bytes.copy(), trace.length_bytes.copy()
    span = min(unit, 1 << 17)
    moved = np.flatnonzero(rng.random(trace.ios) < 1 / 3)
    boundary = (off[moved] // unit + 1) * unit
    before = 512 * rng.integers(1, span // 512 + 1, len(moved))
    after = 512 * rng.integers(1, span // 512 + 2, len(moved)) + rng.choice([0, unit], len(moved))
    fits = boundary + after <= image
    moved, boundary, before, after = moved[fits], boundary[fits], before[fits], after[fits]
    off[moved], length[moved] = boundary - before, before + after
    return dataclasses.replace(trace, offset_bytes=off, length_bytes=length.astype(np.int32))


def random_scenario(seed: int) -> Scenario:
    """A small scenario with everything drawn: fleet, array size, cache, method, g, loop, q, and in
    some a third of the IOs across unit boundaries."""
    rng = np.random.default_rng(seed)
    fleet = load_fleet(str(rng.choice(["desktop-win7", "server-ws2008", "server-linux", "desktop-win11"])))
    array = dataclasses.replace(
        load_array(str(rng.choice(["midrange-2012", "allflash-2024"]))),
        disks=float(rng.integers(2, 12)), gi_disks=float(rng.integers(1, 4)),
        processors=float(rng.integers(1, 4)), raid_write_penalty=float(rng.integers(1, 3)),
        cache_bytes=float(rng.choice([0, 4096 * 8, 4096 * 200, 4096 * 5000])),
    )
    function = load_function(str(rng.choice(FUNCTIONS)))
    vms = int(rng.integers(1, 9))
    arrivals = Arrivals.OPEN if rng.random() < 0.5 else Arrivals.CLOSED
    trace = generate_trace(fleet, vms, rng, arrivals=arrivals, ios_per_vm=int(rng.integers(20, 200)),
                           start_spread_s=float(rng.choice([0.0, 0.5])), seed=seed)
    g = int(rng.integers(1, vms + 1)) if function.method.value == "snapshot" else None
    q = int(rng.integers(1, 9))
    if rng.random() < 0.3:
        trace = _across_units(trace, int(function.unit_bytes), rng, int(fleet.gi_virtual_bytes))
    return build_scenario(trace, fleet, array, function, golden_images=g, queue_depth=q, seed=seed)


def _assert_same_run(a: RawRun, b: RawRun) -> None:
    np.testing.assert_array_equal(a.completion_s, b.completion_s)
    np.testing.assert_array_equal(a.latency_s, b.latency_s)
    np.testing.assert_array_equal(a.busy_disk_s, b.busy_disk_s)
    np.testing.assert_allclose(a.busy_bins_s, b.busy_bins_s, rtol=1e-9, atol=1e-9)
    assert (a.reads, a.read_hits) == (b.reads, b.read_hits)


def _assert_same_reduction(a: RawRun, b: RawRun) -> None:
    """The figures a run reduces as it goes: per VM, C per clone, the latency sketch and extremes."""
    np.testing.assert_array_equal(a.vm_last_s, b.vm_last_s)
    np.testing.assert_array_equal(a.new_units, b.new_units)
    np.testing.assert_array_equal(a.latency_sketch, b.latency_sketch)
    assert (a.latency_min_s, a.latency_max_s) == (b.latency_min_s, b.latency_max_s)
    assert a.latency_sum_s == pytest.approx(b.latency_sum_s, rel=1e-9)
    assert (a.reads, a.read_hits) == (b.reads, b.read_hits)


@pytest.mark.parametrize("seed", range(100))
def test_engines_agree_per_io(seed: int) -> None:
    net = compile_network(random_scenario(seed))
    fast, ref = run_fast(net), run_reference(net)
    assert np.all(fast.completion_s > 0)
    if not net.closed:  # open loop: the stage-by-stage path (run_fast's default) == the event loop
        _assert_same_run(fast, run_fast(net, events=True))
    # The event loop on the IOs placed as they are issued, keyed by owner and block or by dense keys
    # numbered ahead: the same run, and the same C per clone.
    sc = random_scenario(seed)
    for keys in (False, True):
        streamed_net = compile_network(sc, place=False, keys=keys)
        streamed = run_fast(streamed_net, events=True)
        _assert_same_run(run_fast(net, events=True), streamed)
        np.testing.assert_array_equal(streamed.new_units, ref.new_units)
        # What a storm keeps (per_io=False: reduced as the IOs complete) is the reference's reduction.
        _assert_same_reduction(run_fast(streamed_net, events=True, per_io=False), ref)
    _assert_same_reduction(fast, ref)
    np.testing.assert_allclose(fast.completion_s, ref.completion_s, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.latency_s, ref.latency_s, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fast.busy_disk_s, ref.busy_disk_s, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fast.busy_bins_s, ref.busy_bins_s, rtol=1e-9, atol=1e-9)
    assert (fast.reads, fast.read_hits) == (ref.reads, ref.read_hits)


def _tied(sc: Scenario, grid_s: float = 0.05) -> Scenario:
    """The scenario with open-loop issue times on a coarse grid, or closed-loop VMs powered on together."""
    trace = sc.trace
    if len(trace.issue_s):
        trace = dataclasses.replace(trace, issue_s=np.floor(trace.issue_s / grid_s) * grid_s)
    else:
        trace = dataclasses.replace(trace, start_s=np.zeros(trace.vms))
    return dataclasses.replace(sc, trace=trace)


def _late(sc: Scenario, offset_s: float = 1e12) -> Scenario:
    """The scenario shifted to start offset_s later: more calendar buckets than an int64 counts."""
    trace = sc.trace
    if len(trace.issue_s):
        trace = dataclasses.replace(trace, issue_s=trace.issue_s + offset_s)
    trace = dataclasses.replace(trace, start_s=trace.start_s + offset_s)
    return dataclasses.replace(sc, trace=trace)


@pytest.mark.parametrize("variant", ["drawn", "tied", "late"])
@pytest.mark.parametrize("seed", range(20))
def test_the_event_calendar_never_changes_the_result(seed: int, variant: str) -> None:
    """Bucket widths from far too narrow (every event in the far heap, or scans of empty buckets) to
    far too wide (one bucket: a plain heap), re-widened every few events: the same run, IO for IO."""
    sc = random_scenario(500 + seed)
    sc = {"drawn": sc, "tied": _tied(sc), "late": _late(sc)}[variant]
    net = compile_network(sc)
    want = run_fast(net, events=True, adapt_every=1 << 40)
    for bucket_s in (1e-12, 1e-6, 1e-3, 1e3):
        for adapt_every in (7, 1 << 40):
            _assert_same_run(want, run_fast(net, events=True, bucket_s=bucket_s, adapt_every=adapt_every))
    if variant != "late":  # (at 1e12 s the times' resolution is coarser than the reference's tolerance)
        np.testing.assert_allclose(want.completion_s, run_reference(net).completion_s, rtol=0, atol=1e-9)


def test_random_scenarios_cover_open_and_closed_with_cache_hits_and_two_copy_on_write_reads() -> None:
    """The scenarios above exercise both loops, a cache that hits, and writes with two copy-on-write
    reads in both loops (else agreement proves little)."""
    kinds = set()
    two_reads = set()
    hits = 0
    for seed in range(40):
        sc = random_scenario(seed)
        kinds.add(sc.arrivals)
        net = compile_network(sc)
        hits += run_fast(net).read_hits
        if np.any(net.cow_disk[1] >= 0):
            two_reads.add(sc.arrivals)
    assert kinds == two_reads == {Arrivals.OPEN, Arrivals.CLOSED}
    assert hits > 0


def _tiny(ops: list[int], offsets: list[int], vm_of: list[int], times: list[float] | None,
          function: str = "thin", lengths: list[int] | None = None, **array_changes: float) -> Scenario:
    fleet = load_fleet("server-ws2008")
    array = dataclasses.replace(load_array("midrange-2012"), **array_changes)
    vms = max(vm_of) + 1
    counts = np.bincount(vm_of, minlength=vms)
    vm_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    trace = Trace(vm_start, np.array(ops, np.int8), np.array(offsets, np.int64),
                  np.array(lengths or [4096] * len(ops), np.int32),
                  np.array(times if times is not None else [], np.float64), np.zeros(vms))
    return build_scenario(trace, fleet, array, load_function(function), queue_depth=1, seed=0)


KIB = 1024


@pytest.mark.parametrize("gi_disks", [8.0, 1.0])
def test_a_write_across_units_allocates_each_and_copies_its_partial_ends(gi_disks: float) -> None:
    """VM 0 writes [60 KiB, 132 KiB) (64 KiB units 0, 1, 2; 0 and 2 partly), reads at 64 and 96 KiB,
    writes into unit 2 again; VM 1, a clone of the same GI that wrote nothing, reads at 64 KiB."""
    sc = _tiny([WRITE, READ, READ, WRITE, READ], [60 * KIB, 64 * KIB, 96 * KIB, 136 * KIB, 64 * KIB],
               [0, 0, 0, 0, 1], None, function="snapshot", lengths=[72 * KIB, 4 * KIB, 4 * KIB, 4 * KIB, 4 * KIB],
               cache_bytes=0.0, disks=6.0, gi_disks=gi_disks)
    assert sc.golden_images == 1 and sc.function.unit_bytes == 64 * KIB
    net = compile_network(sc)
    pool, x_g = net.pool_disks, int(gi_disks)
    # Copy-on-write reads of units 0 and 2 on the GI disks of their stripes (64 KiB: stripe = unit).
    assert net.cow_disk[:, 0].tolist() == [pool + 0 % x_g, pool + 2 % x_g]
    # The clone's reads of what it wrote go to its own disks and keys; the later write copies nothing.
    assert net.disk[1] < pool and net.disk[2] < pool
    assert net.cow_disk[:, 3].tolist() == [-1, -1]
    # VM 1 reads the same address from the GI: its disk and its key, not VM 0's.
    assert net.disk[4] == pool + 1 % x_g and net.key[4] != net.key[1]
    assert allocated_bytes_per_clone(sc).tolist() == [3 * 64 * KIB, 0]
    assert (net.new_units * net.unit_bytes).tolist() == [3 * 64 * KIB, 0]
    a = sc.array
    front, disk_s = 1 / a.volume_iops_limit + a.processors / a.processor_iops, 1 / a.disk_iops
    copies = 1 if x_g > 1 else 2  # in parallel on two disks; one after the other on one
    for run in (run_fast, run_reference):
        out = run(net)
        assert out.completion_s[0] == pytest.approx(front + (copies + 1) * disk_s, rel=1e-12)
        assert out.busy_disk_s[pool:].sum() == pytest.approx(3 * disk_s)  # two copies, VM 1's read
        assert out.completion_s[3] - out.completion_s[2] == pytest.approx(front + disk_s, rel=1e-9)


def test_one_read_miss_takes_volume_processor_and_disk_time() -> None:
    sc = _tiny([READ], [0], [0], None, cache_bytes=0.0)
    a = sc.array
    expected = 1 / a.volume_iops_limit + a.processors / a.processor_iops + 1 / a.disk_iops
    for run in (run_fast, run_reference):
        assert run(compile_network(sc)).completion_s[0] == pytest.approx(expected, rel=1e-12)


def test_a_write_waits_for_all_its_raid_writes_and_a_read_hit_skips_the_disks() -> None:
    # VM 0 writes block 0 then reads it back: the read hits the cache the write filled.
    sc = _tiny([WRITE, READ], [0, 0], [0, 0], None, raid_write_penalty=2.0, disks=4.0)
    a = sc.array
    front = 1 / a.volume_iops_limit + a.processors / a.processor_iops
    for run in (run_fast, run_reference):
        out = run(compile_network(sc))
        assert out.completion_s[0] == pytest.approx(front + 1 / a.disk_iops, rel=1e-12)
        assert out.completion_s[1] == pytest.approx(out.completion_s[0] + front, rel=1e-12)
        assert out.read_hits == 1
        assert out.busy_disk_s.sum() == pytest.approx(2 / a.disk_iops)


def test_ties_go_to_the_lower_vm_id() -> None:
    # Two VMs issue a read to the same disk at the same instant: VM 0 is served first, in both engines.
    sc = _tiny([READ, READ], [0, 0], [0, 1], [1.0, 1.0], cache_bytes=0.0, disks=1.0, processors=1.0,
               raid_write_penalty=1.0)
    for run in (run_fast, run_reference):
        out = run(compile_network(sc))
        assert out.completion_s[0] < out.completion_s[1]
        # VM 1 waited at its processor behind VM 0, then behind it at the disk.
        assert out.completion_s[1] - out.completion_s[0] == pytest.approx(1 / sc.array.disk_iops, rel=1e-9)


def test_closed_loop_keeps_q_outstanding_and_boot_ends_with_the_last_io() -> None:
    fleet = load_fleet("server-ws2008")
    trace = generate_trace(fleet, 3, np.random.default_rng(5), ios_per_vm=60)
    array = dataclasses.replace(load_array("midrange-2012"), disks=3.0, cache_bytes=0.0)
    for q in (1, 4):
        sc = build_scenario(trace, fleet, array, load_function("thin"), queue_depth=q, seed=5)
        out = run_fast(compile_network(sc))
        issue = out.completion_s - out.latency_s.astype(np.float64)
        for v in range(trace.vms):
            sl = trace.vm_slice(v)
            done, start = np.sort(out.completion_s[sl]), issue[sl]
            # IO k (k >= q) is issued exactly when the (k-q+1)-th of its VM's IOs completes.
            np.testing.assert_allclose(start[q:], done[: len(done) - q], rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(10))
def test_engines_agree_when_most_events_tie(seed: int) -> None:
    """Open-loop issue times on a coarse grid and closed loops powered on together: ties everywhere."""
    net = compile_network(_tied(random_scenario(1000 + seed)))
    fast, ref = run_fast(net), run_reference(net)
    np.testing.assert_allclose(fast.completion_s, ref.completion_s, rtol=0, atol=1e-9)
    assert (fast.reads, fast.read_hits) == (ref.reads, ref.read_hits)
    if not net.closed:
        _assert_same_run(fast, run_fast(net, events=True))


@pytest.mark.parametrize("seed", range(5))
def test_open_loop_stages_equal_the_event_loop_in_overload(seed: int) -> None:
    """All IOs issued at a few instants: queues grow long and reorder IOs between stages."""
    sc = next(s for s in map(random_scenario, range(3000 + 100 * seed, 3100 + 100 * seed)) if len(s.trace.issue_s))
    trace = dataclasses.replace(sc.trace, issue_s=np.floor(sc.trace.issue_s / 5.0) * 5.0)
    net = compile_network(dataclasses.replace(sc, trace=trace))
    _assert_same_run(run_fast(net), run_fast(net, events=True))


def test_sort_pairs_orders_by_time_then_id_even_far_from_sorted() -> None:
    rng = np.random.default_rng(3)
    for n, spread in ((50, 0.001), (5000, 10.0), (20000, 1e-9)):  # nearly sorted, shuffled, all ties
        t = np.round(np.sort(rng.random(n)) + spread * rng.random(n), 3)
        ids = rng.permutation(n).astype(np.int64)
        expected = np.lexsort((ids, t))
        want_t, want_ids = t[expected], ids[expected]
        sort_pairs(t, ids)
        np.testing.assert_array_equal(t, want_t)
        np.testing.assert_array_equal(ids, want_ids)


def test_time_order_is_the_stable_sort_of_issue_times() -> None:
    """Spread times, tied times, and times crowded into one bucket (the merge-sort fallback)."""
    rng = np.random.default_rng(5)
    cases = (
        np.sort(rng.random((40, 500)), axis=1).ravel(),  # 40 VMs, each in issue order
        np.round(rng.random(20_000) * 10.0),  # many ties
        np.concatenate([rng.random(30_000) * 1e-6, [1e6]]),  # all but one in the first bucket
        np.zeros(0),
        np.array([3.0]),
    )
    for issue_s in cases:
        np.testing.assert_array_equal(time_order(issue_s), np.argsort(issue_s, kind="stable"))
