"""A boot storm in one call: the trace (drawn or given), the scenarios, the runs.

:func:`run_storm` is what ``clonefleet simulate`` and the model comparison
(:mod:`clonefleet.sim.compare`) both call: it draws the trace unless one is
given, builds one scenario per number of GIs, checks them all before the first
run, then runs each on the same trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace

import numpy as np

from clonefleet.planner import golden_images_for
from clonefleet.presets import ArrayPreset, FleetPreset, FunctionPreset, Method
from clonefleet.progress import Progress, no_progress
from clonefleet.sim.arraymodel import compile_network
from clonefleet.sim.order import IdArray, time_order
from clonefleet.sim.parallel import run_all
from clonefleet.sim.results import Engine, SimResult, run_engine, summarise
from clonefleet.sim.scenario import build_scenario, cache_slots
from clonefleet.sim.trace import Arrivals, Trace, check_fits_in_memory, generate_trace, numbers_keys_ahead, trace_draw


def model_golden_images(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, vms: int) -> int:
    """The GIs a simulated storm of ``vms`` clones runs on: the model's g
    (:func:`~clonefleet.planner.golden_images_for`); when no number of GIs carries a clone, one GI
    per clone, the most that can help."""
    return golden_images_for(fleet, array, function, vms) or vms


@dataclass(frozen=True, eq=False)
class Storm:
    """One storm's trace and its runs, one per number of GIs asked for, in that order; ``trace`` is
    None when the storm was asked not to keep it (``run_storm(keep_trace=False)``)."""

    trace: Trace | None
    runs: tuple[SimResult, ...]

    @property
    def golden_images(self) -> list[int]:
        return [r.scenario.golden_images for r in self.runs]


def run_storm(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, vms: int, *,
              golden_images: int | Sequence[int] | None = None, seed: int = 0,
              arrivals: Arrivals = Arrivals.CLOSED, ios_per_vm: int | None = None,
              queue_depth: int | None = None, start_spread_s: float = 0.0, trace: Trace | None = None,
              engine: Engine = Engine.FAST, progress: Progress = no_progress,
              arrival_order: IdArray | None = None, executor: Executor | None = None,
              keep_trace: bool = True) -> Storm:
    """Boot ``vms`` clones of ``fleet`` at once on ``array`` with ``function``; seconds, bytes.

    ``golden_images``: one g, several (the same storm on each), or None: the model's g for snapshot
    clones (:func:`model_golden_images`), 1 for the others. ``trace``: the trace to run (read from
    a file, or drawn before with the same arguments; ``arrivals`` and ``start_spread_s`` then come
    from it); otherwise one is drawn from ``seed`` and the rest. ``ios_per_vm``: a shorter boot
    than the fleet's ``boot_ios`` (W and n scale along), whose nominal window is shorter too.
    ``arrival_order``: the trace's IO ids in (issue time, id) order when the caller has them (see
    :func:`~clonefleet.sim.arraymodel.compile_network`). Every scenario is checked before the first
    run (:class:`~clonefleet.errors.UsageError`, one line). ``progress`` hears ("draw the trace",
    VMs drawn, VMs), then per run k of n ("place <IOs>, <VMs> on the array...", k, n) and ("run the
    <engine> engine on <IOs>, <VMs>...", k, n), and last ("... done", n, n).

    ``executor``: with several GIs, the runs go there side by side (see
    :mod:`clonefleet.sim.parallel`), each drawing the trace again from the seed (a trace given is
    sent along), and ``progress`` hears ("... side by side", runs done, n) as each ends; the runs
    are the same, bit for bit, as one after the other here.

    ``keep_trace=False``: a trace drawn here is not returned; a closed loop's is then drawn packed
    (:meth:`~clonefleet.sim.trace.TraceDraw.packed`, 7 bytes per IO) and the fast engine places its
    IOs as they are issued and reduces them as they complete: the storm's memory is the packed trace,
    the VMs and the cache.
    """
    given = trace
    if golden_images is None:
        gs: list[int | None] = [model_golden_images(fleet, array, function, vms)
                                if function.method is Method.SNAPSHOT else None]
    else:
        gs = [golden_images] if isinstance(golden_images, int) else list(golden_images)
    ios = None
    side_by_side = executor is not None and len(gs) > 1
    if trace is None and not keep_trace and Arrivals(arrivals) is Arrivals.CLOSED and not side_by_side:
        per_vm = int(round(fleet.boot_ios if ios_per_vm is None else ios_per_vm))
        check_fits_in_memory(vms, per_vm, Arrivals.CLOSED, packed_cache_slots=cache_slots(array))
        trace, ios = trace_draw(fleet, vms, np.random.default_rng(seed), arrivals=arrivals, ios_per_vm=ios_per_vm,
                                seed=seed, start_spread_s=start_spread_s).packed(progress)
        progress("draw the trace", vms, vms)
    elif trace is None:
        trace = generate_trace(fleet, vms, np.random.default_rng(seed), arrivals=arrivals, ios_per_vm=ios_per_vm,
                               seed=seed, start_spread_s=start_spread_s, progress=progress)
    fleet_drawn = fleet
    if ios_per_vm is not None:
        fleet = replace(fleet, boot_ios=float(ios_per_vm))  # its boot window: the shorter boot's
    scenarios = [build_scenario(trace, fleet, array, function, vms=vms, golden_images=g, queue_depth=queue_depth,
                                seed=seed, ios=ios) for g in gs]
    n = len(scenarios)
    if side_by_side and executor is not None:
        recipe = (fleet_drawn, array, function, vms, seed, trace.arrivals, ios_per_vm, queue_depth, start_spread_s,
                  given, engine)
        done = run_all(executor, [(run_one, (*recipe, sc.golden_images)) for sc in scenarios], progress,
                       f"run the {engine.value} engine on {trace.ios:,} IOs, {vms:,} VMs: {n} runs side by side")
        return Storm(trace, tuple(done))
    if arrival_order is None and len(scenarios) > 1 and len(trace.issue_s):
        arrival_order = time_order(trace.issue_s)  # once for every run
    runs: list[SimResult] = []
    size = f"{trace.ios:,} IOs, {vms:,} VMs"
    net_closed = trace.arrivals is Arrivals.CLOSED
    for k in range(n):  # by index: enumerate's reused (k, item) tuple would keep a let-go scenario alive
        scenario = scenarios[k]
        which = f" (g = {scenario.golden_images}, run {k + 1} of {n})" if n > 1 else ""
        pace = f", last run {runs[-1].ios_per_s:,.0f} IOs/s" if runs else ""
        progress(f"place {size} on the array{which}", k, n)
        # The fast engine's closed loop places the IOs itself, as they are issued; their cache keys are
        # numbered ahead when they fit (trace.numbers_keys_ahead), hashed as issued otherwise.
        streamed = net_closed and engine is Engine.FAST
        net = compile_network(scenario, arrival_order, ios=ios, place=not streamed,
                              keys=not streamed or numbers_keys_ahead(trace.ios, cache_slots(scenario.array,
                                                                                             scenario.cache_block_bytes)))
        progress(f"run the {engine.value} engine on {size}{which}{pace}", k, n)
        runs.append(summarise(scenario, net, run_engine(net, engine)))
    progress(f"run the {engine.value} engine on {size}: done", n, n)
    return Storm(trace if keep_trace else None, tuple(runs))


_DRAWN: dict[tuple[object, ...], Trace] = {}


def run_one(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, vms: int, seed: int,
            arrivals: Arrivals, ios_per_vm: int | None, queue_depth: int | None, start_spread_s: float,
            trace: Trace | None, engine: Engine, golden_images: int) -> SimResult:
    """One run of :func:`run_storm` on its own, from the storm's recipe (for a worker): the trace drawn
    from the seed unless given (kept for the next run of the same storm in this process)."""
    if trace is None:
        key = (fleet.name, vms, seed, arrivals, ios_per_vm, start_spread_s)
        trace = _DRAWN.get(key)
        if trace is None:
            _DRAWN.clear()  # one storm's trace per process
            trace = _DRAWN[key] = generate_trace(fleet, vms, np.random.default_rng(seed), arrivals=arrivals,
                                                 ios_per_vm=ios_per_vm, seed=seed, start_spread_s=start_spread_s)
    (run,) = run_storm(fleet, array, function, vms, golden_images=[golden_images],
                       seed=seed, ios_per_vm=ios_per_vm, queue_depth=queue_depth, trace=trace, engine=engine).runs
    return run
