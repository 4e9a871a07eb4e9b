"""run_storm: the one library call behind `simulate` and the model comparison; its progress reports."""

from __future__ import annotations

import numpy as np

from clonefleet import sim
from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.sim.compare import check_method
from clonefleet.sim.scenario import build_scenario
from clonefleet.sim.storm import run_storm

FLEET, ARRAY = load_fleet("server-ws2008"), load_array("midrange-2012")


def test_a_list_of_golden_images_runs_one_trace_each_as_alone() -> None:
    calls: list[tuple[str, int, int]] = []
    snapshot = load_function("snapshot")
    storm = run_storm(FLEET, ARRAY, snapshot, 9, golden_images=[1, 3], seed=2, ios_per_vm=80,
                      arrivals=sim.Arrivals.OPEN, progress=lambda *a: calls.append(a))
    assert storm.golden_images == [1, 3] and storm.trace.vms == 9
    alone = run_storm(FLEET, ARRAY, snapshot, 9, golden_images=3, seed=2, ios_per_vm=80, arrivals=sim.Arrivals.OPEN)
    np.testing.assert_array_equal(storm.runs[1].boot_s, alone.runs[0].boot_s)
    assert storm.runs[1].latency_percentiles_s == alone.runs[0].latency_percentiles_s
    # The shorter boot's window: 80 IOs at the fleet's rate, not boot_ios.
    assert storm.runs[0].boot_window_s == 80 / FLEET.host_iops
    # Drawing, then each run's placement and engine, in order; the last report is the whole done.
    stages = [c[0] for c in calls]
    assert stages[0] == "draw the trace" and calls[9] == ("draw the trace", 9, 9)
    # Each stage names the storm's size (and, of several runs, which g and which run).
    assert stages[10:] == [
        "place 720 IOs, 9 VMs on the array (g = 1, run 1 of 2)",
        "run the fast engine on 720 IOs, 9 VMs (g = 1, run 1 of 2)",
        "place 720 IOs, 9 VMs on the array (g = 3, run 2 of 2)",
        f"run the fast engine on 720 IOs, 9 VMs (g = 3, run 2 of 2), last run {storm.runs[0].ios_per_s:,.0f} IOs/s",
        "run the fast engine on 720 IOs, 9 VMs: done"]
    assert [c[1:] for c in calls[10:]] == [(0, 2), (0, 2), (1, 2), (1, 2), (2, 2)]


def test_the_model_g_by_default_and_a_given_trace_replayed() -> None:
    thin, snapshot = load_function("thin"), load_function("snapshot")
    drawn = run_storm(FLEET, ARRAY, thin, 4, seed=1, ios_per_vm=50)
    assert drawn.golden_images == [1]
    replay = run_storm(FLEET, ARRAY, thin, 4, seed=1, trace=drawn.trace, ios_per_vm=50)
    assert replay.trace is drawn.trace
    np.testing.assert_array_equal(replay.runs[0].boot_s, drawn.runs[0].boot_s)
    assert replay.runs[0].latency_percentiles_s == drawn.runs[0].latency_percentiles_s
    (run,) = run_storm(FLEET, ARRAY, snapshot, 30, seed=1, ios_per_vm=50).runs
    assert run.scenario.golden_images == sim.model_golden_images(FLEET, ARRAY, snapshot, 30)


def test_the_scenario_record_reports_what_ran() -> None:
    fleet = load_fleet("desktop-win7")
    trace = sim.generate_trace(fleet, 3, np.random.default_rng(0), ios_per_vm=40, seed=0)
    sc = build_scenario(trace, fleet, ARRAY, load_function("qcow2-linked"), golden_images=2, queue_depth=3, seed=0)
    (run,) = run_storm(fleet, ARRAY, sc.function, 3, golden_images=2, queue_depth=3, trace=trace).runs
    assert run.scenario.to_dict() == {
        "fleet": "desktop-win7", "array": "midrange-2012", "function": "qcow2-linked", "method": "snapshot",
        "vms": 3, "ios": 120, "golden_images": 2, "arrivals": "closed", "queue_depth": 3,
        "cache_bytes": ARRAY.cache_bytes, "cache_block_bytes": 4096, "seed": 0, "trace": "synthetic"}
    assert [d["golden_image"] for d in run.slowest_vms()] == [d["vm"] % 2 for d in run.slowest_vms()]


def test_validate_reports_each_search_run_with_its_function_and_t() -> None:
    calls: list[tuple[str, int, int]] = []
    check = check_method(FLEET, ARRAY, load_function("thin"), ios_per_vm=60, capacity_vms=2,
                         progress=lambda *a: calls.append(a))
    k = len(check.bisection)
    assert [c[0].partition(", search")[0] for c in calls] == [f"thin: T = {t:,}" for t, _ in check.bisection]
    assert [c[1] for c in calls] == list(range(k))
    # "run k of about n": n an estimate that never falls below the runs already begun, close at the end.
    assert all(f"search run {c[1] + 1} of about {c[2]}" in c[0] and c[2] >= c[1] + 1 for c in calls)
    assert abs(calls[-1][2] - k) <= 1
