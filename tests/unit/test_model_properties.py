"""Invariants of the model a reader would expect, checked with hypothesis."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from clonefleet.model import (
    allocated_bytes_per_clone,
    clones_per_gi,
    golden_images_needed,
    operable_vms,
)
from clonefleet.planner import evaluate
from clonefleet.presets import load_array, load_fleet, load_function

MIB = 2**20
FLEETS = st.sampled_from(["server-ws2008", "desktop-win7", "desktop-win11", "server-linux"])
ARRAYS = st.sampled_from(["midrange-2012", "allflash-2024"])
FUNCTIONS = st.sampled_from(["full", "thin", "thin-physical", "snapshot", "qcow2-linked", "qcow2-copy",
                             "rbd-clone", "rbd-copy", "reflink"])
units = st.sampled_from([4096, 65536, 4 * MIB, 42 * MIB])


@st.composite
def footprints(draw: st.DrawFn) -> tuple[float, float, float]:
    span = draw(st.integers(1, 4096)) * MIB
    written = draw(st.floats(0.0, 1.0)) * span
    extents = draw(st.integers(1, 5000))
    return written, float(extents), float(span)


@given(FLEETS, ARRAYS, FUNCTIONS, st.integers(1, 20000), st.integers(1, 20000))
def test_consumption_grows_with_the_fleet(fleet: str, array: str, fn: str, t1: int, t2: int) -> None:
    lo, hi = sorted((t1, t2))
    f, a, s = load_fleet(fleet), load_array(array), load_function(fn)
    ev = evaluate(f, a, s, np.array([lo, hi]))
    assert ev.consumed_bytes[0] <= ev.consumed_bytes[1]
    assert ev.golden_images[0] <= ev.golden_images[1]  # g never falls as T grows


@given(FLEETS, ARRAYS, FUNCTIONS, st.integers(1, 20000))
def test_ratio_in_unit_interval_while_writes_are_smaller_than_the_image(
    fleet: str, array: str, fn: str, t: int
) -> None:
    f, a, s = load_fleet(fleet), load_array(array), load_function(fn)
    ev = evaluate(f, a, s, t)
    assume(float(ev.golden_images) * f.gi_used_bytes < t * f.gi_virtual_bytes)
    assert 0 < float(ev.capacity_ratio) <= 1.0


@given(FLEETS, ARRAYS, FUNCTIONS, st.integers(1, 20000))
def test_requirement_holds_exactly_up_to_the_largest_fleet(fleet: str, array: str, fn: str, t: int) -> None:
    ev = evaluate(load_fleet(fleet), load_array(array), load_function(fn), t)
    assert bool(ev.meets_requirement) == (t <= np.floor(float(ev.max_vms) + 1e-9))


@given(FLEETS, ARRAYS, st.integers(1, 20000))
def test_snapshot_gis_carry_every_clone(fleet: str, array: str, t: int) -> None:
    ev = evaluate(load_fleet(fleet), load_array(array), load_function("snapshot"), t)
    g, k = float(ev.golden_images), float(ev.clones_per_gi)
    assert g * k >= t  # enough GIs
    assert g == 1 or (g - 1) * k < t  # and not one more than needed


@given(footprints(), units)
def test_allocation_between_written_and_span(fp: tuple[float, float, float], unit: int) -> None:
    written, extents, span = fp
    c = float(allocated_bytes_per_clone(written, extents, span, unit))
    units_in_span = np.ceil(span / unit)
    assert c <= units_in_span * unit * (1 + 1e-12)
    if written > 0:
        assert c >= min(unit, units_in_span * unit) * (1 - 1e-12)
    else:
        assert c == 0


@given(footprints(), units, units)
def test_allocation_never_falls_with_a_coarser_unit_of_the_same_family(
    fp: tuple[float, float, float], u1: int, u2: int
) -> None:
    written, extents, span = fp
    small, large = sorted((u1, u2))
    assume(large % small == 0)
    assert float(allocated_bytes_per_clone(written, extents, span, large)) >= \
        float(allocated_bytes_per_clone(written, extents, span, small)) * (1 - 1e-9)


@given(FLEETS, ARRAYS, FUNCTIONS)
def test_the_largest_fleet_loads_its_bottleneck_exactly_fully(fleet: str, array: str, fn: str) -> None:
    # Eq. 2 gives T_max; the planner's utilisations come from the loads T*A on the processors and
    # T*B on the disks. At T = T_max the busier of the two is at 100 %, the other at most there.
    f, a, s = load_fleet(fleet), load_array(array), load_function(fn)
    t_max = float(evaluate(f, a, s, 1).max_vms)
    processors, disks = (float(u) for u in evaluate(f, a, s, t_max).utilisation[:2])
    assert max(processors, disks) == pytest.approx(1.0, rel=1e-12)
    assert min(processors, disks) <= 1.0 + 1e-12


@given(st.floats(1, 1e3), st.floats(0.1, 1e3), st.floats(1e3, 1e7), st.floats(1, 1e4), st.integers(1, 2000))
def test_more_disks_never_carry_fewer_vms(a: float, b: float, n: float, m: float, x: int) -> None:
    assert float(operable_vms(n, m, x + 1, a, b)) >= float(operable_vms(n, m, x, a, b))


def test_golden_images_infinite_when_one_gi_carries_no_clone() -> None:
    k = clones_per_gi(volume_iops_limit=10.0, disk_iops=180, gi_disks=8, host_iops=80.0,
                      gi_backend_iops_per_clone=6.56)
    assert float(k) == 0
    assert np.isinf(golden_images_needed(1000, k))


def test_evaluate_broadcasts_a_swept_field() -> None:
    fleet, array, fn = load_fleet("desktop-win7"), load_array("midrange-2012"), load_function("snapshot")
    disks = np.array([[100.0, 480.0, 1000.0]])
    grid = evaluate(fleet, dataclasses.replace(array, disks=disks), fn, np.arange(1, 11)[:, None])
    assert grid.consumed_bytes.shape == (10, 3)
    single = evaluate(fleet, dataclasses.replace(array, disks=480.0), fn, 7)
    assert grid.consumed_bytes[6, 1] == float(single.consumed_bytes)
    assert grid.max_vms[0, 1] == float(single.max_vms)


def test_qcow2_linked_clone_pays_one_l2_table_per_512_mib_region_written() -> None:
    from clonefleet.model import table_bytes_per_clone

    # One extent inside one 512 MiB region: exactly one 64 KiB table.
    assert float(table_bytes_per_clone(4096, 1, 100 * 2**20, 512 * 2**20, 65536)) == 65536
    # Writes spread over 4 GiB with many extents touch all 8 regions.
    assert float(table_bytes_per_clone(2**30, 10_000, 4 * 2**30, 512 * 2**20, 65536)) == \
        pytest.approx(8 * 65536, rel=1e-6)
    # No tables, no bytes; no writes, no tables.
    assert float(table_bytes_per_clone(2**20, 10, 2**30, 0, 0)) == 0
    assert float(table_bytes_per_clone(0, 0, 2**30, 512 * 2**20, 65536)) == 0


def test_one_tiny_write_in_a_large_span_allocates_one_whole_unit() -> None:
    # Hypothesis found it: exp(log1p(-1/U)) rounds the single touch of a 1 TB span to 0.99999999999 units.
    assert float(allocated_bytes_per_clone(1.4e-315, 1, 1e12, 4096)) == 4096.0


def test_eq1_array_performance_of_the_papers_array() -> None:
    # midrange-2012: N = 900,000 IOPS (AMS2500 vendor figure), M = 180 IOPS, X = 480 disks:
    # Y = min(900,000, 180 * 480) = 86,400 IOPS, the disks bound it.
    from clonefleet.model import array_performance_iops
    from clonefleet.presets import load_array

    a = load_array("midrange-2012")
    assert float(array_performance_iops(a.processor_iops, a.disk_iops, a.disks)) == 86_400.0
    # and the processors bind once the disks outrun them: 1e6 vs 60,000 * 24 = 1.44e6
    assert float(array_performance_iops(1e6, 60_000, 24)) == 1e6
