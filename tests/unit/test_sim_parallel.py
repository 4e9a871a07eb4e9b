"""Independent storms side by side: the same results in this process, in a local pool and on Dask.

The storms of `validate` (its bisections, the chunks C is counted in) and of `simulate
--golden-images 1,2,3` are independent; wherever they run, the same seeds must give the
same results, bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pytest

from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.sim.arraymodel import allocated_bytes_per_clone
from clonefleet.sim.compare import check_method, clone_bytes, validate_fleet
from clonefleet.sim.parallel import Inline, executor_slots, run_all, storm_executor
from clonefleet.sim.scenario import build_scenario
from clonefleet.sim.storm import run_storm
from clonefleet.sim.trace import Arrivals, generate_trace, trace_draw

FLEET, ARRAY = load_fleet("server-ws2008"), load_array("midrange-2012")
FUNCTIONS = [load_function(name) for name in ("full", "thin", "snapshot")]


def _small_validate(executor: Executor | None) -> list[dict[str, object]]:
    """A small validate; on an executor of several workers, idle ones run storms ahead."""
    slots = 1 if executor is None else executor_slots(executor)
    checks = validate_fleet(FLEET, ARRAY, FUNCTIONS, seed=4, ios_per_vm=40, capacity_vms=150,
                            executor=executor, slots=slots)
    return [c.to_dict() for c in checks]


def test_any_range_of_vms_is_drawn_as_in_the_whole_trace() -> None:
    fleet = load_fleet("desktop-win7")
    for arrivals in (Arrivals.OPEN, Arrivals.CLOSED):
        whole = generate_trace(fleet, 9, np.random.default_rng(8), ios_per_vm=300, arrivals=arrivals,
                               start_spread_s=1.5)
        draw = trace_draw(fleet, 9, np.random.default_rng(8), ios_per_vm=300, arrivals=arrivals, start_spread_s=1.5)
        for first, end in ((4, 7), (0, 9), (8, 9), (4, 7)):  # drawn twice: the same again
            part = draw.vms(first, end)
            a, b = whole.vm_start[first], whole.vm_start[end]
            np.testing.assert_array_equal(part.vm_start, whole.vm_start[first:end + 1] - a)
            for field in ("op", "offset_bytes", "length_bytes", "issue_s"):
                np.testing.assert_array_equal(getattr(part, field), getattr(whole, field)[a:b])
            np.testing.assert_array_equal(part.start_s, whole.start_s[first:end])


def test_c_counted_chunk_by_chunk_equals_c_of_the_whole_trace() -> None:
    vms = 230  # three chunks, the last one short
    trace = generate_trace(FLEET, vms, np.random.default_rng(6), seed=6)
    for function, got in zip(FUNCTIONS, clone_bytes(FLEET, FUNCTIONS, vms, 6), strict=True):
        g = 3 if function.name == "snapshot" else 1
        want = allocated_bytes_per_clone(build_scenario(trace, FLEET, ARRAY, function, golden_images=g))
        np.testing.assert_array_equal(got, want)
        assert function.name == "full" or got.mean() > 0


def test_validate_of_several_functions_equals_each_checked_alone() -> None:
    together = validate_fleet(FLEET, ARRAY, FUNCTIONS, seed=4, ios_per_vm=40, capacity_vms=150)
    for function, check in zip(FUNCTIONS, together, strict=True):
        # full and thin share one bisection in validate_fleet; alone, each runs its own: the same storms.
        alone = check_method(FLEET, ARRAY, function, seed=4, ios_per_vm=40, capacity_vms=150)
        assert check.to_dict() == alone.to_dict()
    assert together[0].bisection == together[1].bisection and together[0].bisection != together[2].bisection


def test_validate_progress_counts_storms_as_they_end() -> None:
    calls: list[tuple[str, int, int]] = []
    checks = validate_fleet(FLEET, ARRAY, FUNCTIONS[1:], seed=4, ios_per_vm=40, capacity_vms=20,
                            progress=lambda *a: calls.append(a))
    storms = sum(len(c.bisection) for c in checks)
    assert [c[1] for c in calls] == list(range(storms + 1))
    assert calls[-1][1] == calls[-1][2] == storms
    assert any(c[0].startswith("thin: T = ") for c in calls) and any(c[0].startswith("snapshot: T = ") for c in calls)
    assert sum("largest T = " in c[0] for c in calls) == 2


def test_a_local_pool_gives_the_results_of_this_process() -> None:
    with storm_executor(workers=2) as pool:
        assert not isinstance(pool, Inline) and executor_slots(pool) == 2
        assert _small_validate(pool) == _small_validate(None)
        snapshot = load_function("snapshot")
        kw = {"golden_images": [1, 2, 3], "seed": 3, "ios_per_vm": 60, "arrivals": Arrivals.OPEN}
        here = run_storm(FLEET, ARRAY, snapshot, 12, **kw)  # type: ignore[arg-type]
        there = run_storm(FLEET, ARRAY, snapshot, 12, executor=pool, **kw)  # type: ignore[arg-type]
    assert there.golden_images == [1, 2, 3]
    for a, b in zip(here.runs, there.runs, strict=True):
        np.testing.assert_array_equal(a.boot_s, b.boot_s)
        da, db = a.to_dict(), b.to_dict()
        for d in (da, db):
            d.pop("engine_wall_s"), d.pop("engine_ios_per_s")
        assert da == db


def test_run_all_keeps_the_order_given_and_raises_the_first_failure() -> None:
    calls = [(pow, (2, k)) for k in range(5)]
    assert run_all(Inline(), calls) == [1, 2, 4, 8, 16]
    with pytest.raises(ZeroDivisionError):
        run_all(Inline(), [(divmod, (1, 0))])


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.slow
def test_a_local_dask_cluster_gives_the_results_of_this_process() -> None:
    distributed = pytest.importorskip("distributed")
    want = _small_validate(None)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    try:
        with distributed.Client(cluster) as client:
            pids = list(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids
        with storm_executor(dask=cluster.scheduler_address) as executor:
            assert executor_slots(executor) == 2
            got = _small_validate(executor)
    finally:
        cluster.close()
    assert got == want
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), "a Dask worker outlived its cluster"


def test_vms_with_more_write_ios_than_the_boot_grow_the_trace_in_place() -> None:
    # 50 times the extents in a 10-IO boot: each VM cuts its writes into more IOs than the boot has.
    fleet = dataclasses.replace(FLEET, boot_write_extents=FLEET.boot_write_extents * 50)
    draw = trace_draw(fleet, 4, np.random.default_rng(1), ios_per_vm=10, arrivals=Arrivals.OPEN)
    whole = draw.vms(0, 4)
    assert whole.ios > 4 * 10 and len(whole.offset_bytes) == len(whole.issue_s) == whole.ios
    positions = np.arange(len(draw.fresh_off))
    for v in range(4):
        op, off, ln, start, times = draw._one(draw.child(v), positions)
        cut = whole.vm_slice(v)
        np.testing.assert_array_equal(whole.op[cut], op)
        np.testing.assert_array_equal(whole.offset_bytes[cut], off)
        np.testing.assert_array_equal(whole.length_bytes[cut], ln)
        np.testing.assert_array_equal(whole.issue_s[cut], times)
        assert whole.start_s[v] == start


def test_a_bisection_replayed_from_outcomes_asks_what_it_asks_live() -> None:
    from clonefleet.sim.compare import _asks, bisection

    for start, largest in ((100, 87), (100, 260), (40, 3), (5000, 5101)):
        search, outcomes = bisection(start, 1.02), []
        step = next(search)
        try:
            while True:
                assert _asks(start, 1.02, outcomes) == step
                ok = step[0] <= largest
                outcomes.append(ok)
                step = search.send(1.0 if ok else 1.5)
        except StopIteration as end:
            assert _asks(start, 1.02, outcomes) is None
            assert end.value <= largest < end.value * 1.01 + 1
