"""A scenario is validated whole before it runs; bad ones are refused with one line naming the field."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from clonefleet.errors import UsageError
from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.sim.scenario import build_scenario
from clonefleet.sim.trace import Arrivals, Trace, generate_trace

FLEET = load_fleet("server-ws2008")
ARRAY = load_array("midrange-2012")
THIN = load_function("thin")


def small_trace(vms: int = 3) -> Trace:
    return generate_trace(FLEET, vms, np.random.default_rng(0), ios_per_vm=50)


def refused(match: str, **kwargs: object) -> None:
    args = {"trace": small_trace(), "fleet": FLEET, "array": ARRAY, "function": THIN}
    args.update(kwargs)
    with pytest.raises(UsageError, match=match) as info:
        build_scenario(**args)  # type: ignore[arg-type]
    assert "\n" not in info.value.message


def test_a_good_scenario_passes() -> None:
    sc = build_scenario(small_trace(), FLEET, ARRAY, THIN, seed=3)
    assert sc.vms == 3 and sc.seed == 3 and sc.queue_depth == FLEET.queue_depth


def test_empty_trace() -> None:
    empty = Trace(np.zeros(1, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int64), np.zeros(0, np.int32),
                  np.zeros(0), np.zeros(0))
    refused("empty", trace=empty)


def test_io_beyond_the_image() -> None:
    tr = small_trace()
    off = tr.offset_bytes.copy()
    off[7] = int(FLEET.gi_virtual_bytes) - 100
    refused("IO 7.*inside the image", trace=dataclasses.replace(tr, offset_bytes=off))


def test_zero_disks_cannot_even_make_an_array() -> None:
    with pytest.raises(UsageError, match="array 'midrange-2012': field 'disks' = 0.0: a whole number greater than 0"):
        dataclasses.replace(ARRAY, disks=0.0)


def test_trace_with_unknown_vms() -> None:
    refused("IOs of VM 3 but the scenario has 3 VMs", trace=small_trace(5), vms=3)


def test_vms_without_ios() -> None:
    refused("no IOs", trace=small_trace(2), vms=4)


def test_golden_images_only_for_snapshots_and_within_limits() -> None:
    refused("golden_images", golden_images=2)
    snap = load_function("snapshot")
    refused("golden_images' = 9: at most the 3 VMs", function=snap, golden_images=9)
    limited = dataclasses.replace(snap, max_clones_per_gi=1.0)
    refused("at least 3", function=limited, golden_images=1)


def test_times_that_run_backwards_within_a_vm() -> None:
    tr = generate_trace(FLEET, 2, np.random.default_rng(0), ios_per_vm=20, arrivals=Arrivals.OPEN)
    t = tr.issue_s.copy()
    t[5] = t[4] / 2
    refused("never decrease", trace=dataclasses.replace(tr, issue_s=t))


def test_bad_ops_lengths_offsets_and_times_name_the_first_bad_io() -> None:
    tr = small_trace()
    op = tr.op.copy()
    op[4] = 7
    refused("op of IO 4' = 7: .*read or write", trace=dataclasses.replace(tr, op=op))
    length = tr.length_bytes.copy()
    length[[6, 9]] = 0
    refused("length of IO 6' = 0", trace=dataclasses.replace(tr, length_bytes=length))
    off = tr.offset_bytes.copy()
    off[[2, 8]] = -4096
    refused("offset of IO 2' = -4096", trace=dataclasses.replace(tr, offset_bytes=off))
    timed = generate_trace(FLEET, 2, np.random.default_rng(0), ios_per_vm=20, arrivals=Arrivals.OPEN)
    for bad in (np.nan, -1.0, np.inf):
        t = timed.issue_s.copy()
        t[13] = bad
        refused("issue times must be finite and >= 0 s", trace=dataclasses.replace(timed, issue_s=t))


def test_a_vm_may_start_before_the_one_listed_before_it() -> None:
    tr = generate_trace(FLEET, 2, np.random.default_rng(0), ios_per_vm=20, arrivals=Arrivals.OPEN)
    t = tr.issue_s.copy()
    t[20:] = t[20:] - t[20] + t[0] / 2  # VM 1's first IO before VM 0's first
    build_scenario(dataclasses.replace(tr, issue_s=t), FLEET, ARRAY, THIN)


def test_bad_queue_depth_and_cache_block() -> None:
    refused("queue_depth", queue_depth=0)
    refused("cache_block_bytes", cache_block_bytes=3000)


def test_raid_penalty_needs_as_many_disks() -> None:
    refused("raid_write_penalty' = 2.0: a whole number, at most the 1 disks",
            array=dataclasses.replace(ARRAY, disks=1.0, gi_disks=1.0))
    refused("raid_write_penalty' = 1.5: a whole number", array=dataclasses.replace(ARRAY, raid_write_penalty=1.5))
