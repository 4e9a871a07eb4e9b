"""Simulation against the model: the largest fleet that boots within its window, and S.

A fleet of T VMs *meets the boot window* when the 95th percentile over its VMs
of (boot time / nominal boot time) is at most ``slack``:

- open loop (the default, the model's own premise: each VM offers A IOPS): the
  nominal boot time is the span of the VM's issue times, so the ratio is 1 plus
  the last IO's delay over that span. Below saturation it stays near 1; past
  it the backlog grows through the storm;
- closed loop (each VM keeps q IOs outstanding, as a guest does): the nominal
  boot time is the window ``boot_ios / A``.

The largest T that meets the window is found by a search on T (:func:`search`: the ratios of
the runs so far pick the next T, a bisection when they do not narrow it fast enough); snapshot
fleets get the model's g for each T.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clonefleet.planner import evaluate, fleet_consumed_bytes
from clonefleet.presets import ArrayPreset, FleetPreset, FunctionPreset, Method
from clonefleet.progress import Progress, no_progress
from clonefleet.sim.arraymodel import _units_per_vm
from clonefleet.sim.order import IdArray, time_order
from clonefleet.sim.parallel import Inline, run_all
from clonefleet.sim.results import SimResult
from clonefleet.sim.storm import model_golden_images, run_storm
from clonefleet.sim.trace import WRITE, Arrivals, Trace, TraceDraw, _write_ios, generate_trace, trace_draw

# The model's largest T (Eq. 2; 0 when the array carries no clone of the function): the sweep's one rule.
from clonefleet.sweep import largest_vms as model_max_vms

FloatArray = npt.NDArray[np.float64]

#: A fleet meets its window when its p95 boot time is at most this times the nominal one.
DEFAULT_SLACK = 1.02
#: Default boot length for validation runs: short enough for a quick search, long enough that
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
    bisection: tuple[tuple[int, float], ...]  # (T, p95 boot / nominal) of every run of the search, in order

    def to_dict(self) -> dict[str, object]:
        d = dict(vars(self))
        d["bisection"] = [{"vms": t, "p95_boot_over_nominal": r} for t, r in self.bisection]
        return d


class TracePool:
    """One synthetic trace for every fleet size of a comparison: drawn once, redrawn only larger.

    VM v draws from its own child generator, so the first T VMs of a larger trace boot exactly as a
    fleet of T drawn alone does; the search and every storage function share one trace.
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


#: What a search asks and is told: it yields (T to run, runs expected after that one), is sent that
#: run's p95 boot / nominal ratio, and returns the largest T that met the window.
Search = Generator[tuple[int, int], float, int]
#: A search never runs a fleet larger than this: the largest T it answers.
MAX_SEARCH_VMS = 1_000_000
#: Widening a bracket from a T that met the window: at most these factors, one a step (then the last
#: again), unless the ratios of two runs that met extrapolate to less.
WIDEN_FACTORS = (1.3, 1.6, 2.0)


def _tolerance(t: int) -> int:
    """How close a T that met and one that missed must be for the search to end: 1 % (at least 1 VM)."""
    return max(1, t // 100)


def _closes_below(hi: int) -> int:
    """The smallest T that, if it meets the window, ends a search whose smallest miss is ``hi``."""
    t = max(1, hi - _tolerance(hi))
    while hi - t > _tolerance(t):
        t += 1
    return t


def search(start: int, slack: float) -> Search:
    """The search for the largest T whose p95 boot is within ``slack`` windows, ``start`` a first
    guess. It ends with a T that met the window and one within 1 % above it (at least 1 VM) that
    missed (or 0 when even 1 VM misses, or :data:`MAX_SEARCH_VMS` when that meets), and asks for
    few and small storms on the way, using each run's ratio, not only whether it met:

    - past saturation an open-loop array works at its capacity, so a run at T that misses has a
      ratio of about T / T*, T* the knee (the fluid approximation): T / ratio estimates the answer
      from above the knee; below it the ratio is near 1 and says little;
    - it first runs ``start``; from a miss it steps down to T / ratio (at least 2 %, then 4, 8 ... %
      down, down to half); from a meet it widens by the secant of the last two runs' ratios
      extrapolated to ``slack`` (the ratio is convex in T, so the secant overshoots the answer,
      which makes a miss likely), at least 2 % (then 4, 8 ... %) and at most 1.3x, 1.6x, then 2x;
    - with a bracket (a meet lo, a miss hi) it tries the larger of the regula-falsi point between
      them (the chord of a convex ratio crosses ``slack`` below the answer) and hi / ratio,
      clamped so that it lies at least the tolerance inside the bracket: a try at lo + tolerance
      that misses, or at the smallest T that closes the bracket from above and meets, ends the
      search. When two tries in a row have not together halved the bracket, it bisects, as Brent's
      method does, so it never needs many more runs than a bisection.

    It runs nothing itself: whoever drives it runs each T it yields (here, or on a worker) and sends
    the ratio back; replayed from the same (T, ratio) runs it asks the same T's in the same order,
    wherever its storms ran."""

    def ask(t: int, more: int) -> Generator[tuple[int, int], float, float]:
        ratio = yield t, more
        return ratio

    lo: tuple[int, float] | None = None  # the largest T that met, with its ratio
    hi: tuple[int, float] | None = None  # the smallest T (above lo) that missed, with its ratio
    met: list[tuple[int, float]] = []  # runs that met, in the order run
    t, steps = min(max(1, start), MAX_SEARCH_VMS), 0  # steps: consecutive widenings or steps down
    widths: list[int] = []  # bracket width before each try inside it
    side: list[bool] = []  # whether each try inside a bracket met the window
    while True:
        if lo is None or hi is None:
            more = 3  # a bracket to make, then about two tries inside it
        else:
            # 0 when t ends the search either way, 1 when one way (a try at a clamp), else about 2
            ends_if_met, ends_if_missed = t >= _closes_below(hi[0]), t <= lo[0] + _tolerance(lo[0])
            more = 2 - ends_if_met - ends_if_missed
        ratio = yield from ask(t, more)
        if lo is not None and hi is not None:
            side.append(ratio <= slack)
        if ratio <= slack:
            lo = (t, ratio)
            met.append(lo)
        else:
            hi = (t, ratio)
        if hi is not None and hi[0] == 1 and lo is None:
            return 0
        if lo is not None and hi is None:  # widen
            if lo[0] >= MAX_SEARCH_VMS:
                return lo[0]
            most = lo[0] * WIDEN_FACTORS[min(steps, len(WIDEN_FACTORS) - 1)]
            least = lo[0] * (1 + 0.02 * 2 ** steps)
            guess = most
            if len(met) >= 2:
                (t0, r0), (t1, r1) = met[-2], met[-1]
                slope = (r1 - r0) / (t1 - t0)
                if slope > 0:
                    guess = t1 + (slack - r1) / slope
            t = min(MAX_SEARCH_VMS, max(lo[0] + _tolerance(lo[0]), math.ceil(min(most, max(least, guess)))))
            steps += 1
            continue
        if lo is None and hi is not None:  # step down
            most = hi[0] * max(0.5, 1 - 0.02 * 2 ** steps)
            guess = hi[0] / hi[1] if math.isfinite(hi[1]) else most
            t = max(1, min(hi[0] - 1, math.floor(min(most, guess))))
            steps += 1
            continue
        assert lo is not None and hi is not None
        if hi[0] - lo[0] <= _tolerance(lo[0]):
            return lo[0]
        widths.append(hi[0] - lo[0])
        a, b = lo[0] + _tolerance(lo[0]), _closes_below(hi[0])
        if a > b:  # any T in [b, a] ends the search, whichever way it goes
            a, b = b, a
        if len(widths) >= 3 and 2 * widths[-1] > widths[-3]:
            guess = (lo[0] + hi[0]) / 2  # the last two tries did not halve the bracket: bisect
        elif math.isfinite(hi[1]):
            # Illinois: an end kept by the last k >= 2 tries weighs 2^-(k-1), so the chord moves off it.
            kept = len(side) - next((i + 1 for i in range(len(side) - 1, -1, -1) if side[i] != side[-1]), 0)
            f_lo, f_hi = slack - lo[1], hi[1] - slack
            if side and kept >= 2:
                if side[-1]:
                    f_hi /= 2 ** (kept - 1)
                else:
                    f_lo /= 2 ** (kept - 1)
            chord = lo[0] + f_lo / (f_lo + f_hi) * (hi[0] - lo[0])
            guess = max(chord, hi[0] / hi[1])
        else:
            guess = (lo[0] + hi[0]) / 2
        t = min(b, max(a, round(guess)))


def _label(function: FunctionPreset) -> str:
    method = function.method.value
    return function.name if function.name == method else f"{function.name} ({method})"


def largest_vms(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, *, seed: int,
                ios_per_vm: int | None, slack: float, start: int,
                arrivals: Arrivals = Arrivals.OPEN, pool: TracePool | None = None,
                progress: Progress = no_progress) -> tuple[int, list[tuple[int, float]]]:
    """Largest T whose p95 boot time is within ``slack`` windows (:func:`search`, run here).

    ``progress`` hears ("<function> (<method>, when another word): T = <T>, search run k of about
    n", k - 1, n) before each run; n is re-estimated as the bracket narrows."""
    runs: list[tuple[int, float]] = []
    pool = pool or TracePool(fleet, seed, ios_per_vm, arrivals)
    pool.first(1, draw_at_least=_first_draw(start))  # the first widening's top, drawn once
    label = _label(function)
    asks = search(start, slack)
    try:
        t, more = next(asks)
        while True:
            k, n = len(runs) + 1, len(runs) + 1 + more
            progress(f"{label}: T = {t:,}, search run {k} of about {n}", k - 1, n)
            ratio = run_fleet(fleet, array, function, t, seed, ios_per_vm, arrivals, pool)[1]
            runs.append((t, ratio))
            t, more = asks.send(ratio)
    except StopIteration as end:
        return int(end.value), runs


def _first_draw(start: int) -> int:
    """VMs to draw a search's trace pool with at first: the top of its first widening."""
    return max(2, math.ceil(min(max(1, start), MAX_SEARCH_VMS) * WIDEN_FACTORS[0]))


def _asks(start: int, slack: float, runs: Sequence[tuple[int, float]]) -> tuple[int, int] | None:
    """The (T, runs after it) a search from ``start`` asks after these (T, ratio) runs, replayed;
    None when it is done by then. The runs must be the ones it asked for, in order."""
    asks = search(start, slack)
    step = next(asks)
    for t, ratio in runs:
        if t != step[0]:
            raise ValueError(f"replayed run T = {t} where the search asked for T = {step[0]}")
        try:
            step = asks.send(ratio)
        except StopIteration:
            return None
    return step


def _asked_if(start: int, slack: float, runs: Sequence[tuple[int, float]], t: int, met: bool) -> int | None:
    """The T a search from ``start`` asks after ``runs`` when its run at ``t`` meets the window (or
    misses it, ``met`` False), if that T does not depend on the run's ratio (tried with ratios from
    either end of that outcome); else None, as when it would be done."""
    ratios = (slack, 1.0, slack / 2) if met else (slack * 1.0001 + 1e-9, 2 * slack, 10 * slack, math.inf)
    asked = {step[0] if step is not None else None for step in (_asks(start, slack, [*runs, (t, r)]) for r in ratios)}
    return asked.pop() if len(asked) == 1 else None


def check_method(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, *, seed: int = 0,
                 ios_per_vm: int | None = DEFAULT_IOS_PER_VM, slack: float = DEFAULT_SLACK,
                 capacity_vms: int | None = None, arrivals: Arrivals = Arrivals.OPEN,
                 pool: TracePool | None = None, progress: Progress = no_progress) -> MethodCheck:
    """Compare the model with the simulation for one storage function, in this process (``pool``: a
    trace pool to share with the other functions of the same fleet, seed, IOs per VM and arrivals;
    ``progress``: each run of the search, see :func:`largest_vms`). :func:`validate_fleet` checks
    several functions, their storms side by side."""
    t_model = model_max_vms(fleet, array, function)
    t_sim, runs = largest_vms(fleet, array, function, seed=seed, ios_per_vm=ios_per_vm, slack=slack,
                              start=max(1, t_model), arrivals=arrivals, pool=pool, progress=progress)
    t_cap = capacity_vms if capacity_vms is not None else max(1, min(t_model, 1000))
    per_clone = clone_bytes(fleet, [function], t_cap, seed)[0]
    return _method_check(fleet, array, function, t_model, t_sim, runs, t_cap, per_clone, arrivals, slack)


def _method_check(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, t_model: int, t_sim: int,
                  runs: Sequence[tuple[int, float]], t_cap: int, per_clone: FloatArray, arrivals: Arrivals,
                  slack: float) -> MethodCheck:
    """The record of one function's check: the largest T both ways, C and S at T = ``t_cap`` (a full
    boot's writes: C does not depend on timing) with the model's g at that T."""
    g = model_golden_images(fleet, array, function, t_cap) if function.method is Method.SNAPSHOT else 1
    s_sim = float(fleet_consumed_bytes(fleet, function, g, t_cap,
                                       float(per_clone.mean()) if per_clone.size else 0.0))
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


#: VMs per chunk when C is counted from full boots: a chunk's trace is drawn, counted and dropped,
#: so memory stays that of one chunk (100 desktops x 62,000 IOs: about 80 MB) whatever the fleet.
CLONE_BYTES_CHUNK_VMS = 100


def clone_bytes_chunk(fleet: FleetPreset, units_bytes: Sequence[int], vms: int, first: int, end: int,
                      seed: int) -> FloatArray:
    """C [bytes] of clones ``first`` .. ``end - 1`` of a fleet of ``vms`` full boots drawn from
    ``seed``, for each allocation unit of ``units_bytes`` (0: a full copy, which allocates nothing
    new): shape (units, end - first). The same VMs :func:`generate_trace` draws, a chunk alone.

    C counts writes only, and a VM's writes are the first thing its generator draws (after its
    power-on time, when the boots are spread), so only they are drawn: the reads, nine in ten of a
    desktop boot's IOs, would cost 15 times as much and change nothing (the tests compare C with C
    of the whole trace, so a change to how a VM draws its boot shows there)."""
    if not any(units_bytes):
        return np.zeros((len(units_bytes), end - first))
    draw = trace_draw(fleet, vms, np.random.default_rng(seed), seed=seed)
    writes = [_writes_of(draw, v) for v in range(first, end)]
    vm_start = np.zeros(end - first + 1, np.int64)
    vm_start[1:] = np.cumsum([len(off) for off, _ in writes])
    offset = np.concatenate([off for off, _ in writes]).astype(np.int64, copy=False)
    length = np.concatenate([ln for _, ln in writes]).astype(np.int32, copy=False)
    op = np.full(len(offset), WRITE, np.int8)
    out = np.zeros((len(units_bytes), end - first))
    for row, unit in enumerate(units_bytes):
        if unit:
            marks = np.zeros(int(-(-fleet.gi_virtual_bytes // unit)), np.int32)  # untouched pages cost nothing
            out[row] = _units_per_vm(vm_start, op, offset, length, unit, marks) * float(unit)
    return out


def _writes_of(draw: TraceDraw, vm: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """VM ``vm``'s write IOs (offsets, lengths), drawn as :meth:`TraceDraw.vms` draws them, without
    its reads: its generator draws the power-on time (when spread), then the writes."""
    rng = draw.child(vm)
    if draw.start_spread_s > 0:
        rng.uniform(0.0, draw.start_spread_s)
    return _write_ios(draw.fleet, draw.write_n, draw.scale, rng, draw.write_span_start, draw.align_bytes)


def _unit_of(function: FunctionPreset) -> int:
    return 0 if function.method is Method.FULL else int(function.unit_bytes)


def clone_bytes(fleet: FleetPreset, functions: Sequence[FunctionPreset], vms: int, seed: int,
                executor: Executor | None = None) -> list[FloatArray]:
    """C of every clone of a fleet of ``vms`` full boots, per function (exact from the trace, as
    :func:`~clonefleet.sim.arraymodel.allocated_bytes_per_clone` counts it), drawn and counted
    :data:`CLONE_BYTES_CHUNK_VMS` VMs at a time, the chunks on ``executor``."""
    units = [_unit_of(f) for f in functions]
    chunks = [(a, min(a + CLONE_BYTES_CHUNK_VMS, vms)) for a in range(0, vms, CLONE_BYTES_CHUNK_VMS)]
    parts = run_all(executor or Inline(), [(clone_bytes_chunk, (fleet, units, vms, a, b, seed)) for a, b in chunks])
    whole = np.concatenate(parts, axis=1) if parts else np.zeros((len(units), 0))
    return [np.ascontiguousarray(row) for row in whole]


_POOLS: dict[tuple[object, ...], TracePool] = {}


def fleet_ratio(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, vms: int, seed: int,
                ios_per_vm: int | None, arrivals: Arrivals, draw_at_least: int = 2) -> float:
    """p95 boot / nominal of ``vms`` clones (:func:`run_fleet`), the trace taken from this process's
    pool for the fleet, seed, IOs and arrivals (kept between calls: a worker that runs several T's
    of one search draws its trace once; ``draw_at_least``: VMs to draw when the pool is drawn)."""
    key = (fleet.name, seed, ios_per_vm, arrivals)
    pool = _POOLS.get(key)
    if pool is None or pool.fleet != fleet:
        _POOLS.clear()  # one pool per process: a worker holds one trace at a time
        pool = _POOLS[key] = TracePool(fleet, seed, ios_per_vm, arrivals)
    pool.first(1, draw_at_least=draw_at_least)
    return run_fleet(fleet, array, function, vms, seed, ios_per_vm, arrivals, pool)[1]


def storm_path(function: FunctionPreset) -> tuple[str, str]:
    """The path a function's IOs take through the array: full and thin clones send every IO the same way
    (only what they allocate differs), so functions with the same path share their storms."""
    return ("own", function.name) if function.method is Method.SNAPSHOT else ("private", "")


def release_traces() -> None:
    """Let go of this process's trace pool (:func:`fleet_ratio` keeps one between calls)."""
    _POOLS.clear()


def validate_fleet(fleet: FleetPreset, array: ArrayPreset, functions: Sequence[FunctionPreset], *,
                   seed: int = 0, ios_per_vm: int | None = DEFAULT_IOS_PER_VM, slack: float = DEFAULT_SLACK,
                   capacity_vms: int | None = None, arrivals: Arrivals = Arrivals.OPEN,
                   executor: Executor | None = None, slots: int = 1,
                   progress: Progress = no_progress) -> list[MethodCheck]:
    """:func:`check_method` for each function, the storms on ``executor`` (default: this process),
    side by side: every search keeps one storm in flight, and C is counted in chunks of VMs beside
    them. The same seeds give the same checks, bit for bit, however the storms run.

    Full and thin clones (any function that is not a snapshot) send every IO the same way (only what
    they allocate differs), so those with the same model T run one search between them: the same
    storms, the same answer. ``slots``: calls the executor runs at once (its workers); when the
    searches and the count of C leave some idle while a search's first storm runs, it runs ahead
    the T it asks if that storm meets the window (its first widening, which does not depend on the
    ratio: :func:`_asked_if`). Later T's depend on the ratios: guessed from a predicted ratio, 2 of 2
    storms run ahead were wasted on each paper fleet; the ratio-independent ones left (a bisection
    step) follow a try's less likely outcome, and 1 of 1 was wasted on each. A storm run ahead is
    used only when it is asked for, and its ratio is what a storm asked then would give, so the
    answers do not depend on the workers. ``progress`` hears ("<function>: T = <T> ..., search run k
    of about n", storms done, storms expected) as each asked storm ends.
    """
    ex = executor or Inline()
    t_model = [model_max_vms(fleet, array, f) for f in functions]
    # One search per distinct path of the IOs (storm_path) and start.
    shared: dict[tuple[object, ...], int] = {}
    group_of = [shared.setdefault((*storm_path(f), t), k)
                for k, (f, t) in enumerate(zip(functions, t_model, strict=True))]
    leaders = sorted(set(group_of))
    names = {k: " = ".join(_label(functions[j]) for j in range(len(functions)) if group_of[j] == k) for k in leaders}
    # C at the capacity check's T, every function from one trace, chunk by chunk.
    caps = [capacity_vms if capacity_vms is not None else max(1, min(t, 1000)) for t in t_model]
    cap_futures = {}
    for t_cap in sorted(set(caps)):
        which = [f for f, c in zip(functions, caps, strict=True) if c == t_cap]
        units = [_unit_of(f) for f in which]
        chunks = [(a, min(a + CLONE_BYTES_CHUNK_VMS, t_cap)) for a in range(0, t_cap, CLONE_BYTES_CHUNK_VMS)]
        cap_futures[t_cap] = (which, [ex.submit(clone_bytes_chunk, fleet, units, t_cap, a, b, seed)
                                      for a, b in chunks])
    starts = {k: max(1, t_model[k]) for k in leaders}
    searches = {k: search(starts[k], slack) for k in leaders}
    runs: dict[int, list[tuple[int, float]]] = {k: [] for k in leaders}
    asked: dict[int, int] = {}  # per search: the T it waits for
    expected = dict.fromkeys(leaders, 0)
    found: dict[int, int] = {}
    storms: dict[tuple[int, int], Future[float]] = {}  # (search, T): asked or run ahead
    chunks_pending = [f for _, futures in cap_futures.values() for f in futures]

    def start(k: int, t: int) -> None:
        if (k, t) not in storms:
            top = _first_draw(starts[k])  # the first widening's top: a worker draws its trace once
            storms[k, t] = ex.submit(fleet_ratio, fleet, array, functions[k], t, seed, ios_per_vm, arrivals, top)

    def ask(k: int, step: tuple[int, int]) -> None:
        t, more = step
        expected[k] = len(runs[k]) + 1 + more
        asked[k] = t
        start(k, t)

    def run_ahead() -> None:
        """Keep idle workers busy with the first widening of a search whose first storm runs: the T it
        asks if that storm meets the window, whatever its ratio."""
        for k in sorted(asked):
            busy = sum(not f.done() for f in storms.values()) + sum(not f.done() for f in chunks_pending)
            if busy >= slots:
                return
            t = _asked_if(starts[k], slack, runs[k], asked[k], met=True) if not runs[k] else None
            if t is not None:
                start(k, t)

    for k in leaders:
        ask(k, next(searches[k]))
    progress("validate: the first storms", 0, sum(expected.values()))
    while asked:
        if slots > 1:
            run_ahead()
        # Woken too when a chunk of C ends: a worker it frees may run a storm ahead.
        waiting: list[Future[Any]] = [storms[k, t] for k, t in asked.items()]
        waiting += [f for f in chunks_pending if not f.done()]
        wait(waiting, return_when=FIRST_COMPLETED)
        for k in sorted(asked):  # in search order: the same reports every time
            t = asked[k]
            if not storms[k, t].done():
                continue
            ratio = storms[k, t].result()
            runs[k].append((t, ratio))
            del asked[k]
            try:
                ask(k, searches[k].send(ratio))
                state = f"search run {len(runs[k]) + 1} of about {expected[k]}"
            except StopIteration as end:
                found[k] = int(end.value)
                expected[k] = len(runs[k])
                state = f"largest T = {found[k]:,}"
            progress(f"{names[k]}: T = {t:,} gave p95 boot {ratio:.3f} x nominal; {state}",
                     sum(len(r) for r in runs.values()), sum(expected.values()))
    for future in storms.values():
        future.cancel()  # storms run ahead that no search asked for, not started yet
    per_clone: dict[str, FloatArray] = {}
    for t_cap, (which, futures) in cap_futures.items():
        whole = np.concatenate([f.result() for f in futures], axis=1)
        for row, f in enumerate(which):
            per_clone[f"{t_cap}/{f.name}"] = np.ascontiguousarray(whole[row])
    if isinstance(ex, Inline):
        release_traces()  # this process's trace: not kept once the check is done
    return [_method_check(fleet, array, f, t_model[k], found[group_of[k]], runs[group_of[k]], caps[k],
                          per_clone[f"{caps[k]}/{f.name}"], arrivals, slack) for k, f in enumerate(functions)]
