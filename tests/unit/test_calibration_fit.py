"""The pure parts of calibration and comparison: the fit of Eq. 2 read as a throughput, the model's storm
(planner.storm_figures), the storm request saved and read back, and the refusals of a bad storm file."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clonefleet.errors import UsageError
from clonefleet.planner import RESOURCES, storm_figures
from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.storm.calibrate import StormPoint, check_sizes, fit_storms
from clonefleet.storm.compare import read_storm
from clonefleet.storm.workload import WorkloadSpec


def point(vms: int, iops: float, ios_per_vm: float = 1000.0) -> StormPoint:
    boot = ios_per_vm * vms / iops
    return StormPoint(vms=vms, ios_per_vm=ios_per_vm, iops=iops, vm_iops=iops / vms, boot_p50_s=boot,
                      boot_p95_s=boot, boot_max_s=boot)


@settings(max_examples=60, deadline=None)
@given(a=st.floats(100, 1e5), n_cap=st.floats(1e3, 1e6), sizes=st.lists(st.integers(1, 512), min_size=2, max_size=5,
                                                                         unique=True))
def test_the_fit_recovers_a_limit_from_storms_that_follow_the_model_exactly(a: float, n_cap: float,
                                                                            sizes: list[int]) -> None:
    sizes.sort()
    points = [point(n, min(n * a, n_cap)) for n in sizes]
    fit = fit_storms(points)
    assert fit.host_iops == pytest.approx(min(sizes[0] * a, n_cap) / sizes[0])
    for p in points:  # the fitted curve goes through every storm (within the grid's step, 0.3 %)
        assert fit.iops(p.vms) == pytest.approx(p.iops, rel=5e-3)
    if sizes[-1] * a > n_cap * 1.01:  # the largest storm was held back: N is found
        assert fit.path_iops == pytest.approx(n_cap, rel=5e-3)
        assert sizes[-1] in fit.at_limit


def test_storms_that_scatter_around_a_limit_get_their_geometric_mean() -> None:
    fit = fit_storms([point(8, 36_000), point(32, 33_000), point(128, 30_000)])
    assert fit.path_iops == pytest.approx((36_000 * 33_000 * 30_000) ** (1 / 3), rel=5e-3)
    assert fit.at_limit == (8, 32, 128) and "lower bound" in fit.note


def test_a_fit_needs_two_sizes_with_a_throughput() -> None:
    with pytest.raises(UsageError, match="two fleet sizes"):
        fit_storms([point(8, 1000), point(8, 1100)])
    with pytest.raises(UsageError, match="finite throughput"):
        fit_storms([point(8, 1000), point(16, math.nan)])
    with pytest.raises(UsageError, match="at least two"):
        check_sizes([8], 128)
    with pytest.raises(UsageError, match="from 1 to the fleet's 16 clones"):
        check_sizes([8, 32], 16)
    assert check_sizes([32, 8, 32, 128], 128) == (8, 32, 128)


def test_the_model_storm_is_a_times_the_vms_up_to_what_the_array_carries() -> None:
    fleet, array = load_fleet("desktop-win7"), load_array("midrange-2012")
    thin = load_function("thin")
    a = float(fleet.host_iops)
    small = storm_figures(fleet, array, thin, 10)
    assert small.bound == "none" and small.iops == pytest.approx(10 * a)
    assert small.boot_s == pytest.approx(float(fleet.boot_ios) / a)  # alone, a boot takes its own window
    big = storm_figures(fleet, array, thin, 5000)
    assert big.bound == RESOURCES[1]  # thin clones of this desktop load the disks first (M*X/B = 1189 VMs)
    assert big.carried_vms == pytest.approx(1189.4, rel=1e-3)
    assert big.boot_s == pytest.approx(float(fleet.boot_ios) * 5000 / big.iops)
    # snapshot clones on one GI: the GI volume carries k; on five GIs, five times as many
    snap = load_function("snapshot")
    one, five = storm_figures(fleet, array, snap, 3000, 1), storm_figures(fleet, array, snap, 3000, 5)
    assert one.bound in RESOURCES[2:] and five.iops > one.iops
    assert five.iops <= 3000 * a


def test_a_processor_bound_storm_says_so_on_a_tie_with_the_disks() -> None:
    fleet, thin = load_fleet("server-ws2008"), load_function("thin")
    array = dataclasses.replace(load_array("midrange-2012"), cache_hit_private=0.0, raid_write_penalty=1.0,
                                processor_iops=30_000.0, volume_iops_limit=30_000.0, disks=1.0, gi_disks=1.0,
                                disk_iops=30_000.0)
    f = storm_figures(fleet, array, thin, 10_000)
    assert f.bound == RESOURCES[0] and f.iops == pytest.approx(30_000)


def test_a_storm_request_reads_back_and_bad_ones_are_one_line() -> None:
    spec = WorkloadSpec(trace="debian-boot", start_spread_s=0.5, seed=7, ios_per_vm=None, queue_depth=4)
    assert WorkloadSpec.from_dict(json.loads(json.dumps(spec.to_dict())), "x") == spec
    for bad in ({"seed": -1, "start_spread_s": 0}, {"seed": 1, "start_spread_s": "soon"},
                {"seed": True, "start_spread_s": 0}, {"seed": 1, "start_spread_s": 0, "trace": 3}):
        with pytest.raises(UsageError) as err:
            WorkloadSpec.from_dict(bad, "storm result s.json")
        assert "storm result s.json: request." in str(err.value) and "\n" not in str(err.value)


def test_compare_refuses_what_is_not_a_fio_storm_it_can_draw_again(tmp_path: Path) -> None:
    cases = {"text.json": "not json {", "other.json": json.dumps({"kind": "clonefleet plan"}),
             "boot.json": json.dumps({"kind": "clonefleet storm", "mode": "boot", "request": {}}),
             "old.json": json.dumps({"kind": "clonefleet storm"})}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UsageError) as err:
            read_storm(tmp_path / name)
        assert str(tmp_path / name) in str(err.value)
    with pytest.raises(UsageError):
        read_storm(tmp_path / "missing.json")
