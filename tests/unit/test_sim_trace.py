"""Synthetic boot traces follow the fleet preset, and C from a trace is exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clonefleet.errors import UsageError
from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.sim.arraymodel import allocated_bytes_per_clone
from clonefleet.sim.scenario import build_scenario
from clonefleet.sim.trace import READ, WRITE, Arrivals, generate_trace

FLEETS = ("desktop-win7", "server-ws2008", "server-linux", "desktop-win11")


@pytest.mark.parametrize("name", FLEETS)
def test_trace_follows_the_preset(name: str) -> None:
    fleet = load_fleet(name)
    tr = generate_trace(fleet, 2, np.random.default_rng(1))
    assert tr.vms == 2
    per_vm = np.diff(tr.vm_start)
    assert np.all(np.abs(per_vm - fleet.boot_ios) <= max(1, 0.02 * fleet.boot_ios))
    reads = tr.op == READ
    assert reads.mean() == pytest.approx(fleet.read_fraction, abs=0.02)
    assert tr.length_bytes[reads].mean() == pytest.approx(fleet.read_io_bytes, rel=0.05)
    assert np.all(tr.offset_bytes % 4096 == 0) and np.all(tr.length_bytes % 4096 == 0)
    assert np.all(tr.offset_bytes + tr.length_bytes <= fleet.boot_read_span_bytes + fleet.gi_used_bytes)
    for v in range(2):
        sl = tr.vm_slice(v)
        w = tr.op[sl] == WRITE
        written = tr.length_bytes[sl][w].sum()
        assert written == pytest.approx(fleet.boot_write_bytes, rel=0.05)
        lo, hi = tr.offset_bytes[sl][w].min(), (tr.offset_bytes[sl][w] + tr.length_bytes[sl][w]).max()
        assert hi - lo <= fleet.boot_write_span_bytes
    assert len(tr.issue_s) == 0 and tr.arrivals is Arrivals.CLOSED


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    fleet = load_fleet("server-ws2008")
    a = generate_trace(fleet, 3, np.random.default_rng(7), ios_per_vm=300)
    b = generate_trace(fleet, 3, np.random.default_rng(7), ios_per_vm=300)
    c = generate_trace(fleet, 3, np.random.default_rng(8), ios_per_vm=300)
    assert np.array_equal(a.offset_bytes, b.offset_bytes) and np.array_equal(a.op, b.op)
    assert not np.array_equal(a.offset_bytes, c.offset_bytes)


def test_open_loop_issues_at_rate_a() -> None:
    fleet = load_fleet("desktop-win7")
    tr = generate_trace(fleet, 4, np.random.default_rng(2), arrivals=Arrivals.OPEN, ios_per_vm=4000)
    for v in range(4):
        t = tr.issue_s[tr.vm_slice(v)]
        assert np.all(np.diff(t) >= 0)
        assert len(t) / t[-1] == pytest.approx(fleet.host_iops, rel=0.05)


def test_rereads_make_the_private_hit_share() -> None:
    fleet = load_fleet("desktop-win7")
    tr = generate_trace(fleet, 1, np.random.default_rng(3), reread_fraction=0.3)
    reads = tr.offset_bytes[tr.op == READ]
    assert 1 - len(np.unique(reads)) / len(reads) == pytest.approx(0.3, abs=0.02)


@given(seed=st.integers(0, 2**32 - 1), unit_kib=st.sampled_from([4, 64, 1024, 4096, 43008]))
def test_per_clone_bytes_are_the_exact_unit_count(seed: int, unit_kib: int) -> None:
    fleet = load_fleet("server-ws2008")
    tr = generate_trace(fleet, 2, np.random.default_rng(seed), ios_per_vm=400)
    import dataclasses

    fn = dataclasses.replace(load_function("thin"), unit_bytes=float(unit_kib * 1024))
    c = allocated_bytes_per_clone(build_scenario(tr, fleet, load_array("midrange-2012"), fn))
    for v in range(2):
        sl = tr.vm_slice(v)
        w = tr.op[sl] == WRITE
        off, ln = tr.offset_bytes[sl][w], tr.length_bytes[sl][w].astype(np.int64)
        # Brute force: mark every 4 KiB block written, count the units holding one.
        blocks = np.concatenate([np.arange(o, o + n, 4096) for o, n in zip(off, ln, strict=True)])
        assert c[v] == len(np.unique(blocks // (unit_kib * 1024))) * unit_kib * 1024


def test_a_trace_too_big_for_memory_is_refused_before_drawing(monkeypatch: pytest.MonkeyPatch) -> None:
    import clonefleet.sim.trace as trace_module

    monkeypatch.setattr(trace_module, "available_memory_bytes", lambda: 512 * 2**20)
    fleet = load_fleet("desktop-win7")
    need = trace_module.peak_memory_bytes(100 * 62_000, Arrivals.OPEN)
    assert need > 512 * 2**20  # 6.2 M IOs, open loop: about 680 MiB
    with pytest.raises(UsageError, match="need about .* of memory to simulate; 512 MiB is available"):
        generate_trace(fleet, 100, np.random.default_rng(0), arrivals=Arrivals.OPEN)
    generate_trace(fleet, 2, np.random.default_rng(0), ios_per_vm=50)  # small ones still go


def test_available_memory_is_read_from_the_kernel() -> None:
    from clonefleet.sim.trace import available_memory_bytes

    assert 2**20 < available_memory_bytes() < 2**50
