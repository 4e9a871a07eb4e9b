"""Simulation against the model: the largest fleet that boots within its window, and S.

A fleet of T VMs *meets the boot window* when the 95th percentile over its VMs
of (boot time / nominal boot time) is at most ``slack``:

- open loop (the default, the model's own premise: each VM offers A IOPS): the
  nominal boot time is the span of the VM's issue times, so the ratio is 1 plus
  the last IO's delay over that span. Below saturation it stays near 1; past
  it the backlog grows through the storm;
- closed loop (each VM keeps q IOs outstanding, as a guest does): the nominal
  boot time is the window ``boot_ios / A``.

The largest T that meets the window is found by bisection on T; snapshot
fleets get the model's g for each T.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clonefleet.planner import evaluate, fleet_consumed_bytes, golden_images_for, operable_count
from clonefleet.presets import ArrayPreset, FleetPreset, FunctionPreset, Method
from clonefleet.progress import Progress, no_progress
from clonefleet.sim.arraymodel import allocated_bytes_per_clone, consumed_bytes
from clonefleet.sim.order import IdArray, time_order
from clonefleet.sim.results import SimResult
from clonefleet.sim.scenario import build_scenario
from clonefleet.sim.storm import model_golden_images, run_storm
from clonefleet.sim.trace import Arrivals, Trace, generate_trace

#: A fleet meets its window when its p95 boot time is at most this times the nominal one.
DEFAULT_SLACK = 1.02
#: Default boot length for validation runs: short enough for a quick bisection, long enough that
#: the random spread of IOs over the disks (which shrinks as boots lengthen) stays small.
DEFAULT_IOS_PER_VM = 4000


@dataclass(frozen=True)
class MethodCheck:
    """Model and simulation side by side for one storage function. Bytes and VMs."""

    function: str
    method: str
    model_max_vms: int
    sim_max_vms: int
    max_vms_ratio: float | None  # sim / model; None when the model carries no VM
    vms_at_check: int  # T at which S and C are compared (the model's T_max, capped)
    golden_images: int  # g of the capacity check, the same for model and simulation
    model_per_clone_bytes: float  # C, occupancy formula
    sim_per_clone_bytes: float  # C, exact from the trace (mean over clones)
    model_consumed_bytes: float  # S at the same g and T as the simulation's
    sim_consumed_bytes: float
    consumed_ratio: float  # sim / model
    arrivals: str
    slack: float
    bisection: tuple[tuple[int, float], ...]  # (T, p95 boot / nominal) of every run

    def to_dict(self) -> dict[str, object]:
        d = dict(vars(self))
        d["bisection"] = [{"vms": t, "p95_boot_over_nominal": r} for t, r in self.bisection]
        return d


class TracePool:
    """One synthetic trace for every fleet size of a comparison: drawn once, redrawn only larger.

    VM v draws from its own child generator, so the first T VMs of a larger trace boot exactly as a
    fleet of T drawn alone does; the bisection and every storage function share one trace.
    """

    def __init__(self, fleet: FleetPreset, seed: int, ios_per_vm: int | None, arrivals: Arrivals) -> None:
        self.fleet, self.seed, self.ios_per_vm, self.arrivals = fleet, seed, ios_per_vm, arrivals
        self._trace: Trace | None = None
        self._order: IdArray | None = None  # the pool's arrival order, sorted once

    def first(self, vms: int, draw_at_least: int = 2) -> Trace:
        """The trace of a fleet of ``vms``; a larger pool is drawn (at least twice the last) when needed."""
        if self._trace is None or self._trace.vms < vms:
            size = max(vms, draw_at_least, 2 * self._trace.vms if self._trace is not None else 2)
            self._trace = generate_trace(self.fleet, size, np.random.default_rng(self.seed),
                                         ios_per_vm=self.ios_per_vm, seed=self.seed, arrivals=self.arrivals)
            self._order = None
        return self._trace if self._trace.vms == vms else self._trace.first_vms(vms)

    def arrival_order(self, vms: int) -> IdArray | None:
        """The first ``vms`` VMs' IO ids in (issue time, id) order (open loop; None when closed): the
        pool's order, sorted once, without the later VMs' IOs (their ids are the larger ones)."""
        trace = self.first(vms)
        if not len(trace.issue_s):
            return None
        if self._order is None:
            assert self._trace is not None
            self._order = time_order(self._trace.issue_s)
        order = self._order
        return order if len(order) == trace.ios else order[order < trace.ios]


def run_fleet(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, vms: int, seed: int,
              ios_per_vm: int | None, arrivals: Arrivals = Arrivals.OPEN,
              pool: TracePool | None = None) -> tuple[SimResult, float]:
    """Boot ``vms`` clones at once with the model's g; the result and its p95 boot / nominal ratio.

    ``pool``: where to take the trace from (drawn with the same fleet, seed, IOs and arrivals).
    """
    pool = pool or TracePool(fleet, seed, ios_per_vm, arrivals)
    trace = pool.first(vms)
    (result,) = run_storm(fleet, array, function, vms, seed=seed, ios_per_vm=ios_per_vm, trace=trace,
                          arrival_order=pool.arrival_order(vms)).runs
    if arrivals is Arrivals.OPEN:
        nominal = trace.issue_s[trace.vm_start[1:] - 1] - trace.start_s
    else:
        nominal = np.full(vms, result.boot_window_s)
    return result, float(np.percentile(result.boot_s / nominal, 95))


def largest_vms(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, *, seed: int,
                ios_per_vm: int | None, slack: float, start: int,
                arrivals: Arrivals = Arrivals.OPEN, pool: TracePool | None = None,
                progress: Progress = no_progress) -> tuple[int, list[tuple[int, float]]]:
    """Largest T whose p95 boot time is within ``slack`` windows (bisection; ``start`` a first guess).

    ``progress`` hears ("<function> (<method>, when another word): T = <T>, bisection run k of about
    n", k - 1, n) before each run; n is re-estimated as the bracket narrows."""
    runs: list[tuple[int, float]] = []
    pool = pool or TracePool(fleet, seed, ios_per_vm, arrivals)
    pool.first(1, draw_at_least=max(2, int(start * 1.2)))  # the bracket's top, drawn once
    method = function.method.value
    label = function.name if function.name == method else f"{function.name} ({method})"

    def ok(t: int, more: int) -> bool:
        """Run T = t; ``more``: the runs still expected after this one."""
        k, n = len(runs) + 1, len(runs) + 1 + more
        progress(f"{label}: T = {t:,}, bisection run {k} of about {n}", k - 1, n)
        ratio = run_fleet(fleet, array, function, t, seed, ios_per_vm, arrivals, pool)[1]
        runs.append((t, ratio))
        return ratio <= slack

    # Bracket around the first guess, widening until it holds, then bisect to 1 %.
    lo, hi = max(1, int(start * 0.85)), max(2, int(start * 1.2))
    while not ok(lo, 1 + _halvings(lo // 2, lo)):
        hi, lo = lo, lo // 2
        if lo == 0:
            return 0, runs
    while ok(hi, _halvings(lo, hi)):
        lo, hi = hi, hi * 2
        if hi > 1_000_000:
            return lo, runs
    while hi - lo > max(1, lo // 100):
        mid = (lo + hi) // 2
        if ok(mid, _halvings(lo, hi) - 1):
            lo = mid
        else:
            hi = mid
    return lo, runs


def _halvings(lo: int, hi: int) -> int:
    """Bisection runs that narrow [lo, hi] to 1 % of lo (at least 1 VM): an estimate for progress."""
    steps, width = 0, hi - lo
    while width > max(1, lo // 100):
        width, steps = (width + 1) // 2, steps + 1
    return steps


def check_method(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, *, seed: int = 0,
                 ios_per_vm: int | None = DEFAULT_IOS_PER_VM, slack: float = DEFAULT_SLACK,
                 capacity_vms: int | None = None, arrivals: Arrivals = Arrivals.OPEN,
                 pool: TracePool | None = None, progress: Progress = no_progress) -> MethodCheck:
    """Compare the model with the simulation for one storage function (``pool``: a trace pool to
    share with the other functions of the same fleet, seed, IOs per VM and arrivals; ``progress``:
    each run of the bisection, see :func:`largest_vms`)."""
    # The model's largest T: Eq. 2, and none at all when no number of GIs carries a snapshot clone.
    carried = function.method is not Method.SNAPSHOT or golden_images_for(fleet, array, function, 1) is not None
    t_model = int(operable_count(evaluate(fleet, array, function, 1).max_vms)) if carried else 0
    t_sim, runs = largest_vms(fleet, array, function, seed=seed, ios_per_vm=ios_per_vm, slack=slack,
                              start=max(1, t_model), arrivals=arrivals, pool=pool, progress=progress)
    # Capacity: C and S at the model's T (a full boot's writes: C does not depend on timing).
    t_cap = capacity_vms if capacity_vms is not None else max(1, min(t_model, 1000))
    g = model_golden_images(fleet, array, function, t_cap) if function.method is Method.SNAPSHOT else 1
    trace = generate_trace(fleet, t_cap, np.random.default_rng(seed), ios_per_vm=None, seed=seed)
    scenario = build_scenario(trace, fleet, array, function, golden_images=g, seed=seed)
    per_clone = allocated_bytes_per_clone(scenario)
    s_sim = consumed_bytes(scenario, per_clone)
    ev = evaluate(fleet, array, function, t_cap)
    s_model = float(fleet_consumed_bytes(fleet, function, g, t_cap, ev.per_vm_new_bytes))
    return MethodCheck(
        function=function.name, method=function.method.value, model_max_vms=t_model, sim_max_vms=t_sim,
        max_vms_ratio=t_sim / t_model if t_model else None, vms_at_check=t_cap, golden_images=g,
        model_per_clone_bytes=float(ev.per_vm_new_bytes), sim_per_clone_bytes=float(per_clone.mean()),
        model_consumed_bytes=s_model, sim_consumed_bytes=s_sim,
        consumed_ratio=s_sim / s_model, arrivals=arrivals.value, slack=slack,
        bisection=tuple(runs),
    )
