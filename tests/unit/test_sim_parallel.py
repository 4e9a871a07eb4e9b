"""Independent storms side by side: the same results in this process, in a local pool and on Dask.

The storms of `validate` (its searches on T, the chunks C is counted in) and of `simulate
--golden-images 1,2,3` are independent; wherever they run, the same seeds must give the
same results, bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.sim.arraymodel import allocated_bytes_per_clone
from clonefleet.sim.compare import MAX_SEARCH_VMS, _asked_if, _asks, check_method, clone_bytes, search, validate_fleet
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
        # full and thin share one search in validate_fleet; alone, each runs its own: the same storms.
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
        # A lone search on two workers runs its first widening ahead while the model's T runs.
        lone = [load_function("snapshot")]
        there_checks = validate_fleet(FLEET, ARRAY, lone, seed=4, ios_per_vm=40, capacity_vms=20, executor=pool,
                                      slots=2)
        assert [c.to_dict() for c in there_checks] == [
            c.to_dict() for c in validate_fleet(FLEET, ARRAY, lone, seed=4, ios_per_vm=40, capacity_vms=20)]
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


def _drive(start: int, slack: float, ratio: Callable[[int], float]) -> tuple[int, list[tuple[int, float]]]:
    """Run a search on a synthetic ratio function: its answer and its (T, ratio) runs."""
    asks, runs = search(start, slack), []
    step = next(asks)
    try:
        while True:
            assert _asks(start, slack, runs) == step  # replayed from the runs, it asks what it asks live
            runs.append((step[0], ratio(step[0])))
            step = asks.send(runs[-1][1])
    except StopIteration as end:
        assert _asks(start, slack, runs) is None
        return int(end.value), runs


def _holds_the_guarantee(answer: int, runs: list[tuple[int, float]], slack: float) -> None:
    """A T that met, and one within 1 % (at least 1 VM) above it that missed; 0 when 1 VM missed, the cap
    when it met."""
    met = {t for t, r in runs if r <= slack}
    missed = {t for t, r in runs if not r <= slack}
    assert len({t for t, _ in runs}) == len(runs)  # no T asked twice
    if answer == 0:
        assert 1 in missed
    else:
        assert answer in met
        assert answer == MAX_SEARCH_VMS or any(answer < t <= answer + max(1, answer // 100) for t in missed)
    assert all(t <= MAX_SEARCH_VMS for t, _ in runs)


def _knee(knee: float, slope: float, width: float) -> Callable[[int], float]:
    """A ratio that is 1 below the knee and grows as slope * (T / knee - 1) past it, the corner rounded
    over ``width`` (a fraction of the knee): the shape of an open-loop storm's p95 boot ratio."""
    def ratio(t: int) -> float:
        z = (t / knee - 1) / width
        return 1 + slope * width * (max(z, 0) + math.log1p(math.exp(-abs(z))))
    return ratio


@settings(max_examples=300, deadline=None)
@given(start=st.integers(1, 200_000), knee=st.floats(0.5, 300_000), slope=st.floats(0.05, 20),
       width=st.floats(0.001, 0.3), slack=st.floats(1.0, 1.5))
def test_a_search_on_a_monotone_ratio_ends_on_a_bracket_of_one_percent(start: int, knee: float, slope: float,
                                                                       width: float, slack: float) -> None:
    answer, runs = _drive(start, slack, _knee(knee, slope, width))
    _holds_the_guarantee(answer, runs, slack)
    assert len(runs) <= 40


@settings(max_examples=300, deadline=None)
@given(start=st.integers(1, 1_500_000), seed=st.integers(0, 2**32 - 1), slack=st.floats(1.0, 1.2),
       scale=st.sampled_from([0.0, 0.01, 0.3, math.inf]))
def test_a_search_on_any_ratio_still_ends_on_a_bracket(start: int, seed: int, slack: float, scale: float) -> None:
    # Noise, non-monotone, sometimes infinite or NaN: the search still ends met-then-missed within 1 %.
    def ratio(t: int) -> float:
        u = np.random.default_rng([seed, t]).random()
        if scale == math.inf:
            return [0.5, math.inf, math.nan, 1.0][int(u * 4)]
        return 1 + scale * (u - 0.5) + (t / 5000) * (seed % 3)
    answer, runs = _drive(start, slack, ratio)
    _holds_the_guarantee(answer, runs, slack)
    assert len(runs) <= 70


def test_a_search_needs_few_runs_when_the_ratio_is_fluid_past_the_knee() -> None:
    # The model's T within 25 % of the knee; the ratio T / knee past it, rounded as the paper fleets'.
    for knee in (1160, 3230, 7040):
        for off in (0.8, 0.9, 1.0, 1.04, 1.1, 1.25):
            answer, runs = _drive(int(knee * off), 1.02, _knee(knee, 1.0, 0.03))
            _holds_the_guarantee(answer, runs, 1.02)
            assert len(runs) <= 5 and sum(t for t, _ in runs) <= 5 * knee, (knee, off, runs)
    assert _drive(1, 1.02, lambda t: 2.0) == (0, [(1, 2.0)])
    assert _drive(900_000, 1.02, lambda t: 1.0) == (MAX_SEARCH_VMS, [(900_000, 1.0), (MAX_SEARCH_VMS, 1.0)])


def test_only_a_t_that_does_not_depend_on_the_ratio_is_run_ahead() -> None:
    # The first storm meets: the search widens by 1.3x whatever its ratio; it misses: T / ratio.
    assert _asked_if(2686, 1.02, [], 2686, met=True) == math.ceil(2686 * 1.3)
    assert _asked_if(2686, 1.02, [], 2686, met=False) is None
    # The second widening follows the secant of the first two meets' ratios.
    assert _asked_if(2686, 1.02, [(2686, 1.0008)], 3492, met=True) is None
    # A miss at lo + 1 % ends the search: nothing to run ahead.
    assert _asks(100, 1.02, [(100, 1.5), (66, 1.0)]) == (67, 1)
    assert _asked_if(100, 1.02, [(100, 1.5), (66, 1.0)], 67, met=False) is None


def test_a_replay_refuses_runs_the_search_did_not_ask_for() -> None:
    with pytest.raises(ValueError, match="asked for T = 100"):
        _asks(100, 1.02, [(99, 1.0)])
