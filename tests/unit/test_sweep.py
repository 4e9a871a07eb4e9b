"""Sweeps agree with single plans; the inverse answers are the boundaries they claim to be."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clonefleet import load_array, load_fleet, plan
from clonefleet.errors import UsageError
from clonefleet.presets import load_function
from clonefleet.sweep import fewest_disks, largest_vms, parse_param, parse_range, run_sweep

FLEETS = st.sampled_from(["server-ws2008", "desktop-win7", "desktop-win11", "server-linux"])
ARRAYS = st.sampled_from(["midrange-2012", "allflash-2024"])
FUNCTIONS = st.sampled_from(["full", "thin", "snapshot", "qcow2-linked", "rbd-clone"])


def test_sweep_matches_plan_at_every_sampled_point() -> None:
    fleet, array = load_fleet("desktop-win7"), load_array("midrange-2012")
    result = run_sweep(fleet, array, parse_range("1:5000"), None, parse_param("disks=200:800:4"))
    rng = np.random.default_rng(7)
    for t in rng.integers(1, 5001, 20):
        for j, disks in enumerate(result.param.values):  # type: ignore[union-attr]
            single = plan(fleet, dataclasses.replace(array, disks=float(disks)), int(t))
            for m in single.methods:
                grid = result.grids[m.function]
                assert grid.consumed_bytes[t - 1, j] == pytest.approx(m.consumed_bytes, rel=1e-12)
                assert bool(grid.meets_requirement[t - 1, j]) == m.meets_requirement


@given(FLEETS, ARRAYS, FUNCTIONS)
def test_largest_vms_is_the_boundary(fleet: str, array: str, fn: str) -> None:
    f, a, s = load_fleet(fleet), load_array(array), load_function(fn)
    t = largest_vms(f, a, s)
    if t > 0:
        assert plan(f, a, t, [s]).methods[0].meets_requirement
    assert not plan(f, a, t + 1, [s]).methods[0].meets_requirement


@given(FLEETS, ARRAYS, FUNCTIONS, st.integers(1, 20000))
def test_fewest_disks_is_the_boundary(fleet: str, array: str, fn: str, target: int) -> None:
    f, a, s = load_fleet(fleet), load_array(array), load_function(fn)
    disks, reason = fewest_disks(f, a, s, target)
    if disks is None:
        assert "processors" in reason or "no clone" in reason
        huge = dataclasses.replace(a, disks=1e9)
        assert not plan(f, huge, target, [s]).methods[0].meets_requirement
        return
    assert plan(f, dataclasses.replace(a, disks=float(disks)), target, [s]).methods[0].meets_requirement
    if disks > a.gi_disks:
        fewer = dataclasses.replace(a, disks=float(disks - 1))
        assert not plan(f, fewer, target, [s]).methods[0].meets_requirement


@pytest.mark.parametrize(("text", "message"), [
    ("0:10", "1 <= START"), ("10", None), ("5:1", "START <= STOP"), ("a:b", "whole numbers"),
    ("1:2:3:4", "START:STOP"), ("1:10:0", "STEP >= 1"),
])
def test_parse_range(text: str, message: str | None) -> None:
    if message is None:
        assert parse_range(text).tolist() == [10]
        return
    with pytest.raises(UsageError, match=message):
        parse_range(text)


def test_parse_param_units_and_whole_fields() -> None:
    p = parse_param("gi_used=5GiB:20GiB:4")
    assert p.kind == "fleet" and p.values.tolist() == [5 * 2**30, 10 * 2**30, 15 * 2**30, 20 * 2**30]
    d = parse_param("disks=100:101:50")
    assert d.values.tolist() == [100, 101]
    with pytest.raises(UsageError, match="FIELD=START:STOP"):
        parse_param("disks")


def test_too_many_points_refused() -> None:
    with pytest.raises(UsageError, match="at most"):
        run_sweep(load_fleet("desktop-win7"), load_array("midrange-2012"), parse_range("1:1000000"),
                  None, parse_param("disks=1:1000:100"))
