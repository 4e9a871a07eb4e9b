"""The planner: composes the model into a plan per storage function and recommends one.

:func:`evaluate` is the vectorised core (any preset field or the fleet size may be
a numpy array, broadcast together); :func:`plan` is the scalar view a person
reads: per method the GIs needed, the largest fleet the array carries, the
bottleneck, the capacity, and whether the requirement holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt

from clonefleet.errors import UsageError
from clonefleet.model import (
    allocated_bytes_in_regions,
    allocated_bytes_per_clone,
    array_performance_iops,
    backend_iops_private,
    backend_iops_snapshot,
    clones_per_gi,
    consumed_bytes,
    gi_backend_iops,
    golden_images_needed,
    operable_vms,
    table_bytes_per_clone,
)
from clonefleet.presets import (
    ArrayPreset,
    FigureView,
    FleetPreset,
    FunctionPreset,
    Method,
    Mirror,
    figures_of,
    load_function,
)

FloatArray = npt.NDArray[np.float64]

#: Resources whose load can limit a fleet, in the order of ``Evaluation.utilisation``.
RESOURCES: tuple[str, ...] = ("array processors", "array disks", "GI processor", "GI disks")
DEFAULT_FUNCTIONS: tuple[str, ...] = ("full", "thin", "snapshot")
#: The preset figures a plan uses (TOML names), per preset kind; the others feed the simulator.
PLANNER_FIGURES: dict[str, tuple[str, ...]] = {
    "fleet": ("host_iops", "boot_window", "boot_ios", "read_fraction", "gi_size", "gi_used",
              "boot_write_bytes", "boot_write_extents", "boot_write_span"),
    "array": ("processor_iops", "volume_iops_limit", "disk_iops", "disks", "gi_disks", "raid_write_penalty",
              "cache_hit_shared", "cache_hit_private", "cow_read_fraction"),
    "function": ("unit", "clone_overhead", "max_clones_per_gi", "table_size", "table_coverage"),
}
#: Eq. 2 gives a real number; a ratio like 86400/32.16 that is whole on paper may land a hair below.
_WHOLE_SLACK = 1e-9


def operable_count(max_vms: npt.ArrayLike) -> FloatArray:
    """The whole number of VMs Eq. 2's real-valued T_max allows: its floor, forgiving rounding."""
    return np.floor(np.asarray(max_vms, dtype=np.float64) + _WHOLE_SLACK)


@dataclass(frozen=True)
class Evaluation:
    """Vectorised result of the model for one storage function (arrays broadcast together).

    Units: bytes for capacities, IOPS for loads, VMs for counts.
    """

    backend_iops_per_vm: FloatArray  # B
    max_vms: FloatArray  # Eq. 2, real valued; floor it to count VMs
    clones_per_gi: FloatArray  # k (for full and thin: all clones on one GI)
    golden_images: FloatArray  # g
    per_vm_new_bytes: FloatArray  # C(u), allocation by the boot's new writes
    per_clone_bytes: FloatArray  # what one clone consumes: overhead + tables + mirror + C
    gi_bytes: FloatArray  # D = g * G_used
    consumed_bytes: FloatArray  # S, Eq. 3
    full_copy_bytes: FloatArray  # S of full copies, the baseline
    utilisation: FloatArray  # stacked along axis 0 in RESOURCES order
    meets_requirement: npt.NDArray[np.bool_]

    @property
    def capacity_ratio(self) -> FloatArray:
        return self.consumed_bytes / self.full_copy_bytes


def evaluate(
    fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, vms: npt.ArrayLike
) -> Evaluation:
    """The model for T = ``vms`` clones made by ``function``; every input may be an array."""
    t = np.asarray(vms, float)
    a = np.asarray(fleet.host_iops, float)
    full_copy = np.multiply(t, fleet.gi_virtual_bytes, dtype=float)
    gi_load = gi_backend_iops(a, fleet.read_fraction, array.cache_hit_shared, array.cow_read_fraction)
    new_bytes = boot_allocated_bytes(fleet, function.unit_bytes)
    if function.method is Method.SNAPSHOT:
        b = backend_iops_snapshot(a, fleet.read_fraction, array.cache_hit_shared,
                                  array.raid_write_penalty, array.cow_read_fraction)
        k = clones_per_gi(array.volume_iops_limit, array.disk_iops, array.gi_disks, a, gi_load,
                          function.max_clones_per_gi)
        g = golden_images_needed(t, k)
        # Load on one GI: its share of the clones, spread evenly (the busiest GI carries ceil(T/g)).
        busiest = np.ceil(t / np.where(np.isfinite(g), g, 1.0))
        gi_proc_util = busiest * a / array.volume_iops_limit
        gi_disk_util = busiest * gi_load / (np.multiply(array.disk_iops, array.gi_disks, dtype=float))
    else:
        b = backend_iops_private(a, fleet.read_fraction, array.cache_hit_private, array.raid_write_penalty)
        g = np.ones_like(t)
        k = np.maximum(t, 1.0)
        gi_proc_util = np.zeros_like(t)
        gi_disk_util = np.zeros_like(t)
        if function.method is Method.FULL:
            new_bytes = np.zeros_like(new_bytes)  # thick copies allocate everything up front
    per_clone = per_clone_bytes(fleet, function, new_bytes)
    gi_bytes = golden_image_bytes(fleet, function, g)
    t_max = operable_vms(array.processor_iops, array.disk_iops, array.disks, a, b)
    s = fleet_consumed_bytes(fleet, function, g, t, new_bytes)
    array_proc_util = t * a / array.processor_iops
    array_disk_util = t * b / np.multiply(array.disk_iops, array.disks, dtype=float)
    meets = (t <= operable_count(t_max)) & np.isfinite(g)
    outputs = {
        "backend_iops_per_vm": b, "max_vms": t_max, "clones_per_gi": k, "golden_images": g,
        "per_vm_new_bytes": new_bytes, "per_clone_bytes": per_clone, "gi_bytes": gi_bytes, "consumed_bytes": s,
        "full_copy_bytes": full_copy, "meets_requirement": meets,
    }
    loads = (array_proc_util, array_disk_util, gi_proc_util, gi_disk_util)
    # Every field has the shape of all inputs broadcast together, whichever of them it depends on.
    shape = np.broadcast_shapes(*(np.shape(x) for x in (*outputs.values(), *loads)))
    return Evaluation(
        **{name: np.broadcast_to(x, shape) for name, x in outputs.items()},
        utilisation=np.stack([np.broadcast_to(x, shape) for x in loads]),
    )


def boot_allocated_bytes(fleet: FleetPreset, unit_bytes: npt.ArrayLike) -> FloatArray:
    """C(u): what one clone's boot writes allocate in units of ``unit_bytes`` [bytes]. The one place
    the planner takes C from: per write region when the fleet gives them (derived from a real trace,
    :func:`~clonefleet.model.allocation.allocated_bytes_in_regions`), else the paper's occupancy of
    W, n and R (:func:`~clonefleet.model.allocation.allocated_bytes_per_clone`)."""
    if fleet.boot_write_regions:
        return allocated_bytes_in_regions(fleet.boot_write_regions, unit_bytes)
    return allocated_bytes_per_clone(fleet.boot_write_bytes, fleet.boot_write_extents, fleet.boot_write_span_bytes,
                                     unit_bytes)


def clone_metadata_bytes(fleet: FleetPreset, function: FunctionPreset) -> FloatArray:
    """What one clone holds besides data: its fixed overhead plus the mapping tables its boot writes
    fill (qcow2 L2 tables) [bytes]. Zero for full copies, which carry no metadata of their own."""
    if function.method is Method.FULL:
        return np.zeros(())
    coverage = np.asarray(function.table_coverage_bytes, dtype=np.float64)
    if fleet.boot_write_regions and bool(np.all(coverage > 0)):
        # Tables touched = the occupancy at u = one table's coverage, counted per region too.
        tables = boot_allocated_bytes(fleet, coverage) / coverage * function.table_bytes
    else:
        tables = table_bytes_per_clone(fleet.boot_write_bytes, fleet.boot_write_extents, fleet.boot_write_span_bytes,
                                       function.table_coverage_bytes, function.table_bytes)
    return np.asarray(function.clone_overhead_bytes + tables, dtype=np.float64)


def per_clone_bytes(fleet: FleetPreset, function: FunctionPreset, new_bytes: npt.ArrayLike) -> FloatArray:
    """What one clone consumes (the C*T term of Eq. 3, per clone) [bytes].

    Full copy: the GI's whole virtual size (thick copies allocate everything up front, so the boot's
    writes allocate nothing more). Thin and snapshot: metadata (:func:`clone_metadata_bytes`) plus the
    boot's newly allocated ``new_bytes`` (C), plus the GI's data for a physical thin mirror.
    """
    if function.method is Method.FULL:
        thick: FloatArray = np.asarray(fleet.gi_virtual_bytes, float) + np.zeros_like(np.asarray(new_bytes, float))
        return thick
    mirror = fleet.gi_used_bytes if (function.method is Method.THIN and function.mirror is Mirror.PHYSICAL) \
        else 0.0
    return clone_metadata_bytes(fleet, function) + mirror + np.asarray(new_bytes, dtype=np.float64)


def golden_image_bytes(fleet: FleetPreset, function: FunctionPreset, golden_images: npt.ArrayLike) -> FloatArray:
    """D of Eq. 3: the GIs' data, ``g * G_used`` [bytes]; zero for full copies (S = T*G, GI not counted)."""
    g = np.asarray(golden_images, dtype=np.float64)
    if function.method is Method.FULL:
        return np.zeros_like(g)
    return g * fleet.gi_used_bytes


def fleet_consumed_bytes(fleet: FleetPreset, function: FunctionPreset, golden_images: npt.ArrayLike,
                         vms: npt.ArrayLike, new_bytes: npt.ArrayLike) -> FloatArray:
    """S of Eq. 3 for T = ``vms`` clones on ``golden_images`` GIs, each allocating ``new_bytes`` [bytes].

    The one place S is assembled: the planner (C from the allocation model), the simulator (C exact
    from the trace: pass the mean over clones, S is linear in it) and the capacity check of a real
    fleet (g from its manifest) all call it.
    """
    counted_gis = 0.0 if function.method is Method.FULL else golden_images
    return consumed_bytes(counted_gis, fleet.gi_used_bytes, per_clone_bytes(fleet, function, new_bytes), vms)


#: What can bound k, the clones one GI carries, in the words the plan and the manifest use.
GI_BOUND_NAMES = {"processor": "GI volume's processor", "disks": "GI's disks",
                  "function": "storage function's limit of clones per source"}


def gi_bound(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset) -> tuple[str, float, str]:
    """What bounds k (``processor``, ``disks`` or ``function``), the bound (before the floor of
    :func:`~clonefleet.model.clones_per_gi`) and its figures in words (``N_v / A = ... = ``): the one place
    both the plan's why-lines and a manifest's ``g = auto`` name the limit."""
    a = float(fleet.host_iops)
    b_gi = float(gi_backend_iops(a, fleet.read_fraction, array.cache_hit_shared, array.cow_read_fraction))
    bounds = {
        "processor": (float(array.volume_iops_limit) / a,
                      f"N_v / A = {float(array.volume_iops_limit):,.0f} / {a:g} IOPS = "),
        "disks": (float(array.disk_iops) * float(array.gi_disks) / b_gi if b_gi > 0 else math.inf,
                  f"M x X_g / B_gi = {float(array.disk_iops):g} x {float(array.gi_disks):g} / {b_gi:.3g} IOPS = "),
        "function": (float(function.max_clones_per_gi), "k_max = "),
    }
    name = min(bounds, key=lambda key: bounds[key][0])
    value, figures = bounds[name]
    return name, value, f"{figures}{value:.4g}"


def golden_images_for(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, vms: int) -> int | None:
    """g for T = ``vms`` clones: the model's number of GIs (``ceil(T/k)``), 1 for private clones.

    None when no number of GIs carries even one clone (k = 0: one clone alone overloads a GI's
    volume or disks). The one place the planner, the simulator and provisioning take g from.
    """
    g = float(evaluate(fleet, array, function, vms).golden_images)
    if not math.isfinite(g):
        return None
    return max(1, min(int(g), int(vms)))


@dataclass(frozen=True)
class StormFigures:
    """What the model gives a storm of VMs that all boot at once (:func:`storm_figures`)."""

    vms: int
    carried_vms: float  # VMs the array serves at their full rate A: min(T, T_max, g*k)
    iops: float  # Y(T) = A * carried
    boot_s: float  # every VM's boot time: boot_ios * T / Y(T) (each gets an equal share)
    bound: str  # what holds the storm back: "none", or the resource of RESOURCES that binds


def storm_figures(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, vms: int,
                  golden_images: int = 1) -> StormFigures:
    """The model's storm: ``vms`` clones boot together on ``golden_images`` GIs; IOPS and seconds.

    Eq. 2 read as a throughput: the array carries ``T_max = min(N/A, M*X/B)`` VMs at their full
    rate A (and one GI ``k`` snapshot clones, so ``g`` GIs ``g*k``); a larger storm shares what they
    carry, every VM equally, so ``Y = A * min(T, T_max, g*k)`` and each boot of ``boot_ios`` IOs takes
    ``boot_ios * T / Y``. No queueing below the limit, no spread of boot times: the simulator has those.
    """
    ev = evaluate(fleet, array, function, vms)
    a = float(fleet.host_iops)
    limits = {"none": float(vms)}
    t_max = float(ev.max_vms)
    by_processors = float(array.processor_iops) / a
    limits[RESOURCES[0] if by_processors <= t_max * (1 + 1e-9) else RESOURCES[1]] = t_max  # a tie: the processors
    if function.method is Method.SNAPSHOT:  # the GI volumes' processor and disks (k before its floor)
        b_gi = float(gi_backend_iops(a, fleet.read_fraction, array.cache_hit_shared, array.cow_read_fraction))
        limits[RESOURCES[2]] = golden_images * float(array.volume_iops_limit) / a
        limits[RESOURCES[3]] = golden_images * (float(array.disk_iops) * float(array.gi_disks) / b_gi
                                                if b_gi > 0 else math.inf)
    bound = min(limits, key=lambda k: limits[k])
    carried = limits[bound]
    iops = a * carried
    return StormFigures(vms=vms, carried_vms=carried, iops=iops, boot_s=float(fleet.boot_ios) * vms / iops,
                        bound=bound)


@dataclass(frozen=True)
class MethodPlan:
    """The plan for one storage function at one fleet size. Bytes, IOPS, VMs."""

    method: str  # full, thin or snapshot
    function: str  # the storage-function preset
    golden_images: int  # g
    clones_per_gi: int  # clones on the busiest GI
    max_vms: int  # largest T the array carries (Eq. 2)
    bottleneck: str  # the most utilised resource at this T
    utilisation: dict[str, float]  # load / capacity of each resource at this T
    host_iops_per_vm: float  # A
    backend_iops_per_vm: float  # B
    per_vm_new_bytes: float  # C
    per_clone_bytes: float  # C plus clone metadata and tables (and the GI data of a physical mirror)
    gi_bytes: float | None  # D; None when no number of GIs carries a clone (k = 0)
    consumed_bytes: float | None  # S; None likewise
    capacity_ratio: float | None  # S / S of full copies; None likewise
    meets_requirement: bool
    gi_clone_limit: int | None = None  # k, the most clones one GI carries (snapshot only; None otherwise)
    gi_limited_by: str | None = None  # what bounds k: processor, disks or function (snapshot only)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """Plans for every storage function considered, and the recommendation."""

    fleet: str
    array: str
    vms: int
    methods: tuple[MethodPlan, ...]
    recommended: str | None  # a function name, None when no method holds
    reason: str
    array_iops: float = math.nan  # Y of Eq. 1, min(N, M*X) [IOPS]
    array_bound: str = ""  # what bounds Y: "processors" (N) or "disks" (M*X)
    notes: tuple[str, ...] = ()  # per method, why its GIs and its bottleneck are what they are
    assumptions: tuple[FigureView, ...] = field(default=(), compare=False)  # figures used without a source

    def method(self, name: str) -> MethodPlan:
        for m in self.methods:
            if name in (m.function, m.method):
                return m
        raise KeyError(name)

    def to_dict(self) -> dict[str, object]:
        return {
            "fleet": self.fleet,
            "array": self.array,
            "vms": self.vms,
            "methods": [m.to_dict() for m in self.methods],
            "recommended": self.recommended,
            "reason": self.reason,
            "array_iops": self.array_iops,
            "array_bound": self.array_bound,
            "notes": list(self.notes),
            "assumptions": [a.to_dict() for a in self.assumptions],
        }


#: The largest fleet the planner takes: far beyond any real fleet, and S stays a finite float.
MAX_VMS = 10**12


def check_vms(vms: object) -> int:
    """Validate a fleet size: a whole number from 1 to MAX_VMS."""
    shown = repr(vms) if len(repr(vms)) <= 40 else repr(vms)[:37] + "..."
    if isinstance(vms, bool) or not isinstance(vms, int | float | np.integer | np.floating) \
            or (not isinstance(vms, int | np.integer) and (not math.isfinite(vms) or vms != int(vms))) or vms < 1:
        raise UsageError(f"vms = {shown}: the number of VMs must be a whole number of at least 1")
    if vms > MAX_VMS:  # compared as given: an int of 400 digits never goes through float
        raise UsageError(f"vms = {shown}: the number of VMs must be at most {MAX_VMS:,}")
    return int(vms)


def resolve_functions(functions: Sequence[FunctionPreset | str] | None) -> list[FunctionPreset]:
    names = DEFAULT_FUNCTIONS if functions is None else functions
    resolved = [f if isinstance(f, FunctionPreset) else load_function(f) for f in names]
    if not resolved:
        raise UsageError("functions: give at least one storage function (e.g. full, thin, snapshot)")
    return resolved


def _method_plan(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, ev: Evaluation,
                 vms: int) -> MethodPlan:
    util = {name: float(ev.utilisation[i]) for i, name in enumerate(RESOURCES)}
    g = float(ev.golden_images)
    feasible = math.isfinite(g)
    return MethodPlan(
        method=function.method.value,
        function=function.name,
        golden_images=int(g) if math.isfinite(g) else 0,
        clones_per_gi=int(math.ceil(vms / g)) if math.isfinite(g) else 0,
        max_vms=int(operable_count(ev.max_vms)),
        bottleneck=max(util, key=lambda k: util[k]),
        utilisation=util,
        host_iops_per_vm=float(fleet.host_iops),
        backend_iops_per_vm=float(ev.backend_iops_per_vm),
        per_vm_new_bytes=float(ev.per_vm_new_bytes),
        per_clone_bytes=float(ev.per_clone_bytes),
        gi_bytes=float(ev.gi_bytes) if feasible else None,
        consumed_bytes=float(ev.consumed_bytes) if feasible else None,
        capacity_ratio=float(ev.capacity_ratio) if feasible else None,
        meets_requirement=bool(ev.meets_requirement),
        gi_clone_limit=int(ev.clones_per_gi) if function.method is Method.SNAPSHOT and
        math.isfinite(float(ev.clones_per_gi)) else None,
        gi_limited_by=gi_bound(fleet, array, function)[0] if function.method is Method.SNAPSHOT else None,
    )


def _bytes(value: float | None) -> float:
    """A figure of a method that holds (never None: those are the methods no GI count can carry)."""
    assert value is not None
    return value


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def recommend(methods: Sequence[MethodPlan], vms: int) -> tuple[str | None, str]:
    """The least consumed capacity among the methods that meet the requirement, with the reason."""
    holding = [m for m in methods if m.meets_requirement]
    if not holding:
        best = max(methods, key=lambda m: m.max_vms)
        return None, (f"no storage function carries {vms} VMs on this array: the most is {best.max_vms} "
                      f"with {best.function}, limited by {best.bottleneck}; add disks or split the fleet")
    best = min(holding, key=lambda m: _bytes(m.consumed_bytes))
    others = [m for m in holding if m is not best]
    parts = [f"{best.function} uses the least capacity, {_pct(_bytes(best.capacity_ratio))} of full copies"]
    for m in others:
        if m.method != Method.FULL:
            parts.append(f"{_bytes(best.consumed_bytes) / _bytes(m.consumed_bytes):.2f}x of {m.function}")
    gis = f" with {best.golden_images} GI{'s' if best.golden_images != 1 else ''}"
    parts.append(f"and carries up to {best.max_vms} VMs (>= {vms}){gis}")
    failing = [m.function for m in methods if not m.meets_requirement]
    infeasible = [m.function for m in methods if m.consumed_bytes is None]
    text = ", ".join(parts)
    if failing:
        text += f"; {', '.join(failing)} cannot carry {vms} VMs"
    if infeasible:
        text += f" ({', '.join(infeasible)}: one GI cannot serve even one clone)"
    return best.function, text


def _gi_limit(m: MethodPlan) -> str:
    """What limits one GI, in words (:func:`gi_bound`): its volume's processor, the disks under it or
    the storage function's own limit of clones per source."""
    return {"processor": "its volume's processor is the limit", "disks": "the disks under it are the limit",
            "function": f"{m.function}'s own limit of clones per source is the limit"}[m.gi_limited_by or "disks"]


#: A bottleneck this busy (or busier) leaves no room for a boot slower than the preset's: said so.
NO_HEADROOM = 0.95


def explain(m: MethodPlan, vms: int) -> str:
    """One line on why ``m`` has its GIs and its bottleneck, whether more GIs would help, and, for a
    method that holds with its bottleneck at :data:`NO_HEADROOM` or more, that nothing is to spare."""
    line = _why(m, vms)
    busiest = m.utilisation[m.bottleneck]
    if m.meets_requirement and busiest >= NO_HEADROOM:
        line += "; no headroom: a slower boot or a few more VMs would not fit"
    return line


def _why(m: MethodPlan, vms: int) -> str:
    load = f"{100 * m.utilisation[m.bottleneck]:.0f} %"
    if m.method != Method.SNAPSHOT:
        return (f"{m.function}: 1 GI (a clone never reads its GI once made); "
                f"the limit is the {m.bottleneck}, {load} busy at {vms} VMs")
    if m.gi_clone_limit is None or m.gi_clone_limit == 0:
        return (f"{m.function}: one clone alone overloads a GI ({_gi_limit(m)}): no number of GIs helps; "
                "a faster GI volume (N_v) or more disks under it (X_g) would")
    if m.bottleneck.startswith("array"):
        return (f"{m.function}: more GIs would not help: the {m.bottleneck} are the limit, {load} busy at "
                f"{vms} VMs, not the GIs (one GI carries up to {m.gi_clone_limit} clones)")
    if m.golden_images == 1:
        return (f"{m.function}: 1 GI is enough: one GI carries up to {m.gi_clone_limit} clones "
                f"({_gi_limit(m)}); at {vms} VMs it is {load} busy")
    return (f"{m.function}: {m.golden_images} GIs because one GI carries at most {m.gi_clone_limit} clones "
            f"({_gi_limit(m)}); the busiest GI is {load} busy")


def plan(
    fleet: FleetPreset,
    array: ArrayPreset,
    vms: int,
    functions: Sequence[FunctionPreset | str] | None = None,
) -> Plan:
    """Plan T = ``vms`` clones of ``fleet`` on ``array`` with each storage function."""
    vms = check_vms(vms)
    resolved = resolve_functions(functions)
    methods = tuple(_method_plan(fleet, array, f, evaluate(fleet, array, f, vms), vms) for f in resolved)
    recommended, reason = recommend(methods, vms)
    by_disks = float(array.disk_iops) * float(array.disks)
    # A full copy's figures change nothing it is planned by (it allocates everything up front).
    used: list[tuple[FleetPreset | ArrayPreset | FunctionPreset, str]] = [
        (fleet, "fleet"), (array, "array"), *((f, "function") for f in resolved if f.method is not Method.FULL)]
    assumptions = tuple(view for record, kind in used for view in figures_of(record)
                        if view.assumed and view.key in PLANNER_FIGURES[kind])
    return Plan(fleet.name, array.name, vms, methods, recommended, reason,
                array_iops=float(array_performance_iops(array.processor_iops, array.disk_iops, array.disks)),
                array_bound="processors" if float(array.processor_iops) <= by_disks else "disks",
                notes=tuple(explain(m, vms) for m in methods),
                assumptions=tuple(dict.fromkeys(assumptions)))
