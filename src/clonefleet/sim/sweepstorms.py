"""Storms along a sweep: ``clonefleet sweep --simulate`` boots the fleet at each T of the sweep.

The model says, for each T, whether the array carries the fleet (Eq. 2); a storm says whether
the fleet's p95 boot stays within ``slack`` times its nominal window at that T (the test
:mod:`clonefleet.sim.compare` searches T with). Each T of the sweep is one storm per path the IOs
take: full and thin clones send every IO the same way (only what they allocate differs), so
they share their storms; each snapshot function has its own (its g GIs, the model's for that
T). The storms are independent: they run side by side on the executor (local cores or a Dask
cluster), each drawn from the seed, so the same seed gives the same points however they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass

from clonefleet.errors import UsageError
from clonefleet.presets import ArrayPreset, FleetPreset, FunctionPreset, Method
from clonefleet.progress import Progress, no_progress
from clonefleet.sim.compare import fleet_ratio, release_traces, storm_path
from clonefleet.sim.parallel import Inline, run_all
from clonefleet.sim.storm import model_golden_images
from clonefleet.sim.trace import Arrivals
from clonefleet.sweep import MAX_SWEEP_STORMS, largest_vms


@dataclass(frozen=True)
class StormPoint:
    """One storage function at one T of the sweep: the model's verdict and the storm's."""

    function: str
    method: str
    vms: int
    golden_images: int  # g of the storm (the model's for a snapshot at this T), 1 otherwise
    p95_boot_over_nominal: float
    meets_window: bool  # the storm: p95 boot <= slack x nominal
    model_carries: bool  # the model: T <= its largest T (Eq. 2)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def check_sweep_storms(functions: Sequence[FunctionPreset], vms: Sequence[int]) -> int:
    """The number of storms a sweep over ``vms`` asks (T's times IO paths), or a one-line refusal."""
    ts = sorted({int(t) for t in vms})
    storms = len({storm_path(f) for f in functions}) * len(ts)
    if storms > MAX_SWEEP_STORMS:
        raise UsageError(f"--simulate: {len(ts):,} fleet sizes x {storms // len(ts)} IO paths = {storms:,} storms, at "
                         f"most {MAX_SWEEP_STORMS}; give --vms a step, e.g. --vms {ts[0]}:{ts[-1]}:"
                         f"{max(1, -(-(ts[-1] - ts[0]) // 10))}")
    if ts and ts[0] < 1:
        raise UsageError(f"--simulate: a storm needs at least 1 VM (--vms starts at {ts[0]})")
    return storms


def sweep_storms(fleet: FleetPreset, array: ArrayPreset, functions: Sequence[FunctionPreset], vms: Sequence[int], *,
                 seed: int, ios_per_vm: int | None, slack: float, arrivals: Arrivals = Arrivals.OPEN,
                 executor: Executor | None = None, progress: Progress = no_progress) -> list[StormPoint]:
    """The storm of every function at every T of ``vms`` (function by function, T ascending)."""
    ts = sorted({int(t) for t in vms})
    leaders: dict[tuple[str, str], FunctionPreset] = {}
    for f in functions:
        leaders.setdefault(storm_path(f), f)
    storms = check_sweep_storms(functions, ts)
    asked = [(p, t) for p in leaders for t in ts]
    calls = [(fleet_ratio, (fleet, array, leaders[p], t, seed, ios_per_vm, arrivals, ts[-1])) for p, t in asked]
    ex = executor or Inline()
    ratios = run_all(ex, calls, progress, f"{storms} storms along the sweep")
    if isinstance(ex, Inline):
        release_traces()  # this process's trace: not kept once the storms are done
    ratio_of = dict(zip(asked, ratios, strict=True))
    points = []
    for f in functions:
        carried = largest_vms(fleet, array, f)
        for t in ts:
            ratio = ratio_of[storm_path(f), t]
            g = model_golden_images(fleet, array, f, t) if f.method is Method.SNAPSHOT else 1
            points.append(StormPoint(function=f.name, method=f.method.value, vms=t, golden_images=int(g),
                                     p95_boot_over_nominal=ratio, meets_window=ratio <= slack,
                                     model_carries=t <= carried))
    return points
