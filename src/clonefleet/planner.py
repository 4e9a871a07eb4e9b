"""The planner: composes the model into a plan per storage function and recommends one.

:func:`evaluate` is the vectorised core (any preset field or the fleet size may be
a numpy array, broadcast together); :func:`plan` is the scalar view a person
reads: per method the GIs needed, the largest fleet the array carries, the
bottleneck, the capacity, and whether the requirement holds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt

from clonefleet.errors import UsageError
from clonefleet.lifetime import NO_LIFETIME, Lifetime
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
from clonefleet.model.growth import (
    clone_data_bytes,
    days_since_reset,
    first_day_over,
    gi_versions_kept,
    grown_bytes_per_clone,
    reduced_bytes,
    swap_allocated_bytes,
)
from clonefleet.presets import (
    ArrayPreset,
    FigureView,
    FleetPreset,
    FunctionPreset,
    Method,
    Mirror,
    SwapDisk,
    figures_of,
    load_function,
)
from clonefleet.units import format_bytes

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
#: Figures the plan uses beyond the first boot (listed among its assumptions only when it looks past it), and
#: the array's data reduction (listed when the array declares it).
LIFE_FIGURES: dict[str, tuple[str, ...]] = {
    "fleet": ("daily_write_bytes", "daily_write_extents", "daily_write_span", "swap_size"),
    "array": ("dedup_gi", "dedup_clone", "compression_gi", "compression_clone"),
    "function": (),
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
    reduced_consumed_bytes: FloatArray  # S at day 0 as the array stores it, after dedup and compression (Eq. G5)
    peak_consumed_bytes: FloatArray  # the largest raw S over the horizon (S itself when the horizon is day 0)
    peak_reduced_consumed_bytes: FloatArray  # the largest stored S over the horizon

    @property
    def capacity_ratio(self) -> FloatArray:
        return self.consumed_bytes / self.full_copy_bytes


def evaluate(
    fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, vms: npt.ArrayLike,
    life: Lifetime = NO_LIFETIME,
) -> Evaluation:
    """The model for T = ``vms`` clones made by ``function``; every input may be an array. ``life``: the
    horizon and its refresh and recompose policies, for the peak over time (Eq. G1-G5)."""
    t = np.asarray(vms, float)
    a = np.asarray(fleet.host_iops, float)
    full_copy = np.multiply(t, fleet.gi_virtual_bytes, dtype=float)
    gi_load = gi_backend_iops(a, fleet.read_fraction, array.cache_hit_shared, array.cow_read_fraction)
    new_bytes = written_bytes = boot_allocated_bytes(fleet, function.unit_bytes)
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
    peak_raw, peak_stored = _peak(fleet, array, function, g, t, written_bytes, life)
    outputs = {
        "backend_iops_per_vm": b, "max_vms": t_max, "clones_per_gi": k, "golden_images": g,
        "per_vm_new_bytes": new_bytes, "per_clone_bytes": per_clone, "gi_bytes": gi_bytes, "consumed_bytes": s,
        "full_copy_bytes": full_copy, "meets_requirement": meets,
        "reduced_consumed_bytes": stored_consumed_bytes(fleet, array, function, g, t, written_bytes),
        "peak_consumed_bytes": peak_raw, "peak_reduced_consumed_bytes": peak_stored,
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


def swap_bytes_per_clone(fleet: FleetPreset, function: FunctionPreset) -> tuple[FloatArray, FloatArray]:
    """What one VM's pagefile and temp files (``swap_size`` P) allocate: (in the clone, on a disposable
    disk) [bytes], whole units of the function's u. In a full copy the pagefile lands in space the thick
    copy already holds (nothing more); on a disposable disk it costs P for every method."""
    swap = swap_allocated_bytes(fleet.swap_bytes, function.unit_bytes)
    zero = np.zeros_like(swap)
    if fleet.swap_disk is SwapDisk.DISPOSABLE:
        return zero, swap
    return (zero if function.method is Method.FULL else swap), zero


def gi_data_per_clone_bytes(fleet: FleetPreset, function: FunctionPreset) -> FloatArray:
    """The part of one clone that is a copy of GI data [bytes]: a full copy's whole virtual size, a
    physical thin mirror's G_used, nothing for the others. Data reduction treats it as GI data (Eq. G5)."""
    if function.method is Method.FULL:
        return np.asarray(fleet.gi_virtual_bytes, dtype=np.float64)
    if function.method is Method.THIN and function.mirror is Mirror.PHYSICAL:
        return np.asarray(fleet.gi_used_bytes, dtype=np.float64)
    return np.zeros(())


def per_clone_bytes(fleet: FleetPreset, function: FunctionPreset, new_bytes: npt.ArrayLike) -> FloatArray:
    """What one clone consumes (the C*T term of Eq. 3, per clone) [bytes].

    Full copy: the GI's whole virtual size (thick copies allocate everything up front, so the boot's
    writes allocate nothing more). Thin and snapshot: metadata (:func:`clone_metadata_bytes`) plus the
    newly allocated ``new_bytes`` (C: the boot's, or the boot's and ``a`` days of use, Eq. G1) and the
    pagefile when it lands in the clone, together never more than the GI's virtual size (Eq. G2), plus
    the GI's data for a physical thin mirror. Every method: plus a disposable disk's pagefile.
    """
    in_clone, disposable = swap_bytes_per_clone(fleet, function)
    new = np.asarray(new_bytes, dtype=np.float64)
    if function.method is Method.FULL:
        thick: FloatArray = gi_data_per_clone_bytes(fleet, function) + disposable + np.zeros_like(new)
        return thick
    data = clone_data_bytes(new, 0.0, in_clone, fleet.gi_virtual_bytes)
    return clone_metadata_bytes(fleet, function) + gi_data_per_clone_bytes(fleet, function) + data + disposable


def golden_image_bytes(fleet: FleetPreset, function: FunctionPreset, golden_images: npt.ArrayLike) -> FloatArray:
    """D of Eq. 3: the GIs' data, ``g * G_used`` [bytes]; zero for full copies (S = T*G, GI not counted)."""
    g = np.asarray(golden_images, dtype=np.float64)
    if function.method is Method.FULL:
        return np.zeros_like(g)
    return g * fleet.gi_used_bytes


def fleet_consumed_bytes(fleet: FleetPreset, function: FunctionPreset, golden_images: npt.ArrayLike,
                         vms: npt.ArrayLike, new_bytes: npt.ArrayLike) -> FloatArray:
    """S of Eq. 3 for T = ``vms`` clones on ``golden_images`` GIs, each allocating ``new_bytes`` [bytes].

    The planner (C from the allocation model) and the simulator (C exact from the trace: pass the mean
    over clones, S is linear in it) call it. The capacity check of a real fleet, whose clones may differ
    in age (and a clone's bytes are capped at G, so a mean of C is not enough), adds the same terms
    clone by clone: :func:`golden_image_bytes` plus :func:`per_clone_bytes` of each clone.
    """
    counted_gis = 0.0 if function.method is Method.FULL else golden_images
    return consumed_bytes(counted_gis, fleet.gi_used_bytes, per_clone_bytes(fleet, function, new_bytes), vms)


def stored_consumed_bytes(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset,
                          golden_images: npt.ArrayLike, vms: npt.ArrayLike, new_bytes: npt.ArrayLike) -> FloatArray:
    """S as the array stores it (Eq. G5 on Eq. 3) [bytes]: GI data divided by the array's GI ratios, the
    clones' own data by its clone ratios. Equal to :func:`fleet_consumed_bytes` on an array that declares
    no reduction.

    GI data: the GIs (D), a physical mirror's copy of G_used, and the part of a full copy its VM has not
    overwritten. Clone data: what the clones wrote (``new_bytes``, C: boot and growth), their pagefiles and
    metadata. A full copy is thick, so its raw size stays G whatever it writes, but what it wrote is
    its own data, no longer a copy of the GI's: pass its written bytes as ``new_bytes`` too.
    """
    t = np.asarray(vms, dtype=np.float64)
    new = np.asarray(new_bytes, dtype=np.float64)
    raw = fleet_consumed_bytes(fleet, function, golden_images, t, new)
    gi_per_clone = gi_data_per_clone_bytes(fleet, function)
    if function.method is Method.FULL:
        swap = swap_allocated_bytes(fleet.swap_bytes, function.unit_bytes) \
            if fleet.swap_disk is SwapDisk.CLONE else 0.0
        gi_per_clone = gi_per_clone - clone_data_bytes(new, 0.0, swap, fleet.gi_virtual_bytes)
    gi_data = golden_image_bytes(fleet, function, golden_images) + t * gi_per_clone
    with np.errstate(invalid="ignore"):  # no number of GIs carries a clone (g = inf): S is inf, stored too
        clone_data = np.where(np.isinf(raw), 0.0, raw - gi_data)
    return (reduced_bytes(gi_data, array.dedup_ratio_gi, array.compression_ratio_gi)
            + reduced_bytes(clone_data, array.dedup_ratio_clone, array.compression_ratio_clone))


def grown_new_bytes(fleet: FleetPreset, function: FunctionPreset, age_days: npt.ArrayLike,
                    boot_bytes: npt.ArrayLike) -> FloatArray:
    """C after ``age_days`` days of use since the last reset: the boot's ``boot_bytes`` plus the daily
    writes' occupancy (Eq. G1) [bytes]; the cap at G is :func:`per_clone_bytes`'s. For a full copy this
    is what it overwrote in place (its raw size stays G)."""
    grown = grown_bytes_per_clone(age_days, fleet.daily_write_bytes, fleet.daily_write_extents,
                                  np.maximum(fleet.daily_write_span_bytes, 1.0), function.unit_bytes)
    return np.asarray(boot_bytes, dtype=np.float64) + grown


def _day_states(life: Lifetime) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per day 0..days of the horizon: the clones' age (Eq. G3) and the GI versions kept (Eq. G4)."""
    days = np.arange(life.days + 1, dtype=np.float64)
    return days, days_since_reset(days, life.refresh_days, life.recompose_days), \
        gi_versions_kept(days, life.recompose_days)


def _peak(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, g: FloatArray, t: FloatArray,
          boot_bytes: FloatArray, life: Lifetime) -> tuple[FloatArray, FloatArray]:
    """The peak raw S and the peak stored S over the horizon (any broadcast shape).

    S grows with the clones' age for a given number of GI versions (the occupancy only grows), so the
    peak is at the oldest age reached with one version kept, or with two (a recompose day): two
    candidates, whatever the horizon."""
    days, ages, versions = _day_states(life)
    finite_g = np.where(np.isfinite(g), g, 1.0)
    candidates = [(0.0, fleet_consumed_bytes(fleet, function, finite_g, t, boot_bytes),
                   stored_consumed_bytes(fleet, array, function, finite_g, t, boot_bytes))]
    for v in np.unique(versions):
        on = versions == v
        i = int(np.argmax(ages[on]))  # the first day of the oldest age with v versions kept
        new = grown_new_bytes(fleet, function, ages[on][i], boot_bytes)
        candidates.append((float(days[on][i]), fleet_consumed_bytes(fleet, function, finite_g * v, t, new),
                           stored_consumed_bytes(fleet, array, function, finite_g * v, t, new)))
    shape = np.broadcast_shapes(*(np.shape(c[2]) for c in candidates))
    stored = np.stack([np.broadcast_to(c[2], shape) for c in candidates])
    raw = np.stack([np.broadcast_to(c[1], shape) for c in candidates])
    return raw.max(axis=0), stored.max(axis=0)


#: A day within this share of the peak counts as the peak's day: the occupancy nears its saturation only
#: asymptotically, and a peak "on day 57" of a curve flat since day 8 would mislead.
PEAK_TOLERANCE = 1e-3


def peak_day_of(stored_bytes: npt.ArrayLike) -> int:
    """The first day of a curve within :data:`PEAK_TOLERANCE` of its peak."""
    curve = np.asarray(stored_bytes, dtype=np.float64)
    return int(np.flatnonzero(curve >= curve.max() * (1.0 - PEAK_TOLERANCE))[0])


@dataclass(frozen=True)
class LifeCurve:
    """S of one method for each day of the horizon: raw and as stored, with the clones' age. Bytes, days."""

    function: str
    days: FloatArray
    age_days: FloatArray
    consumed_bytes: FloatArray  # raw S per day
    stored_bytes: FloatArray  # S after data reduction per day


def life_curve(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, vms: int,
               life: Lifetime) -> LifeCurve:
    """S(t) of ``vms`` clones for every day 0..``life.days`` (Eq. G1-G5 on Eq. 3)."""
    ev = evaluate(fleet, array, function, vms)
    g = float(ev.golden_images) if np.isfinite(ev.golden_images) else 1.0
    days, ages, versions = _day_states(life)
    new = grown_new_bytes(fleet, function, ages, boot_allocated_bytes(fleet, function.unit_bytes))
    return LifeCurve(function.name, days, ages, fleet_consumed_bytes(fleet, function, g * versions, vms, new),
                     stored_consumed_bytes(fleet, array, function, g * versions, vms, new))


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
    reduced_consumed_bytes: float | None = None  # S at day 0 as stored, after dedup and compression (Eq. G5)
    peak_consumed_bytes: float | None = None  # largest raw S over the horizon (Eq. G1-G4)
    peak_reduced_consumed_bytes: float | None = None  # largest stored S over the horizon
    peak_day: int | None = None  # first day the stored S is within 0.1 % of its peak (PEAK_TOLERANCE)
    outgrows_day: int | None = None  # first day the stored S passes the datastore's target; None: never (or none given)
    fits_capacity: bool | None = None  # the stored peak within the datastore's target; None: no datastore given
    boot_holds: bool = True  # T <= T_max and, with a headroom, every resource within its target at boot

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
    life: Lifetime = NO_LIFETIME  # the horizon, refresh and recompose policies, datastore and headroom

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
            "lifetime": self.life.to_dict(),
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
                 vms: int, life: Lifetime = NO_LIFETIME) -> MethodPlan:
    util = {name: float(ev.utilisation[i]) for i, name in enumerate(RESOURCES)}
    g = float(ev.golden_images)
    feasible = math.isfinite(g)
    boot_holds = bool(ev.meets_requirement) and (life.headroom == 0 or max(util.values()) <= life.target_utilisation)
    limit = life.capacity_limit_bytes
    outgrows = fits = peak_day = None
    if feasible:
        curve = life_curve(fleet, array, function, vms, life)
        peak_day = peak_day_of(curve.stored_bytes)
        if limit is not None:
            outgrows = first_day_over(curve.stored_bytes, limit)
            fits = outgrows is None
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
        meets_requirement=boot_holds and fits is not False,
        gi_clone_limit=int(ev.clones_per_gi) if function.method is Method.SNAPSHOT and
        math.isfinite(float(ev.clones_per_gi)) else None,
        gi_limited_by=gi_bound(fleet, array, function)[0] if function.method is Method.SNAPSHOT else None,
        reduced_consumed_bytes=float(ev.reduced_consumed_bytes) if feasible else None,
        peak_consumed_bytes=float(ev.peak_consumed_bytes) if feasible else None,
        peak_reduced_consumed_bytes=float(ev.peak_reduced_consumed_bytes) if feasible else None,
        peak_day=peak_day,
        outgrows_day=outgrows,
        fits_capacity=fits,
        boot_holds=boot_holds,
    )


def _bytes(value: float | None) -> float:
    """A figure of a method that holds (never None: those are the methods no GI count can carry)."""
    assert value is not None
    return value


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _stored_peak(m: MethodPlan) -> float:
    """What a method is recommended by: its stored S at its peak over the horizon (S itself at day 0 on an
    array without data reduction)."""
    return _bytes(m.peak_reduced_consumed_bytes if m.peak_reduced_consumed_bytes is not None else m.consumed_bytes)


def recommend(methods: Sequence[MethodPlan], vms: int, life: Lifetime = NO_LIFETIME,
              reduces: bool = False) -> tuple[str | None, str]:
    """The least capacity among the methods that meet the requirement, with the reason: S at the first
    boot, or, over a horizon or on an array that reduces data, the stored S at its peak."""
    holding = [m for m in methods if m.meets_requirement]
    if not holding:
        best = max(methods, key=lambda m: m.max_vms)
        if any(m.boot_holds for m in methods):
            target = life.capacity_limit_bytes
            least = min((m for m in methods if m.boot_holds), key=_stored_peak)
            return None, (f"no storage function fits {vms} VMs in the datastore's target of "
                          f"{format_bytes(_bytes(target))} over {life.days} days (the least at its peak: "
                          f"{least.function}, {format_bytes(_stored_peak(least))}); it needs a larger "
                          "datastore, a shorter refresh period or fewer VMs")
        if life.headroom > 0 and any(m.max_vms >= vms for m in methods):
            return None, (f"no storage function carries {vms} VMs with {100 * life.headroom:.0f} % headroom on "
                          "this array: every one has a resource busier than its target at boot; add disks or "
                          "split the fleet")
        return None, (f"no storage function carries {vms} VMs on this array: the most is {best.max_vms} "
                      f"with {best.function}, limited by {best.bottleneck}; add disks or split the fleet")
    over_time = life.days > 0 or reduces
    key = _stored_peak if over_time else (lambda m: _bytes(m.consumed_bytes))
    best = min(holding, key=key)
    others = [m for m in holding if m is not best]
    if over_time:
        stored = " stored" if reduces else ""
        when = f" at its peak (day {best.peak_day} of {life.days})" if life.days > 0 else ""
        parts = [f"{best.function} uses the least capacity, {format_bytes(key(best))}{stored}{when}"]
    else:
        parts = [f"{best.function} uses the least capacity, {_pct(_bytes(best.capacity_ratio))} of full copies"]
    for m in others:
        if m.method != Method.FULL or over_time:
            parts.append(f"{key(best) / key(m):.2f}x of {m.function}")
    gis = f" with {best.golden_images} GI{'s' if best.golden_images != 1 else ''}"
    parts.append(f"and carries up to {best.max_vms} VMs (>= {vms}){gis}")
    failing = [m.function for m in methods if not m.boot_holds]
    outgrowing = [m for m in methods if m.boot_holds and m.fits_capacity is False]
    infeasible = [m.function for m in methods if m.consumed_bytes is None]
    text = ", ".join(parts)
    if failing:
        headroom = f" with {100 * life.headroom:.0f} % headroom" if life.headroom else ""
        text += f"; {', '.join(failing)} cannot carry {vms} VMs{headroom}"
    if outgrowing:
        text += "; " + ", ".join(f"{m.function} outgrows the datastore's target on day {m.outgrows_day}"
                                 for m in outgrowing)
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


def reduces_data(array: ArrayPreset) -> bool:
    """Whether the array declares any data reduction (a dedup or compression ratio above 1)."""
    return any(float(np.max(r)) > 1.0 for r in (array.dedup_ratio_gi, array.dedup_ratio_clone,
                                               array.compression_ratio_gi, array.compression_ratio_clone))


def reduction_notes(fleet: FleetPreset, array: ArrayPreset, functions: Sequence[FunctionPreset],
                    methods: Sequence[MethodPlan], vms: int, recommended: str | None, life: Lifetime) -> list[str]:
    """What data reduction does to the answer, said plainly: full copies' stored size beside the best's,
    the GI-data ratio at which they would match it, and whether reduction changed the recommendation."""
    notes: list[str] = []
    gi_ratio = float(array.dedup_ratio_gi) * float(array.compression_ratio_gi)
    if not reduces_data(array):
        return notes
    clone_ratio = float(array.dedup_ratio_clone) * float(array.compression_ratio_clone)
    notes.append(f"data reduction on {array.name}: GI data {float(array.dedup_ratio_gi):g}:1 dedup x "
                 f"{float(array.compression_ratio_gi):g}:1 compression = {gi_ratio:.3g}:1, clone data "
                 f"{float(array.dedup_ratio_clone):g}:1 x {float(array.compression_ratio_clone):g}:1 = "
                 f"{clone_ratio:.3g}:1 (Eq. G5; declared by the array preset: measure them on your own data)")
    holding = [m for m in methods if m.meets_requirement and m.peak_reduced_consumed_bytes is not None]
    full = next((m for m in methods if m.method == Method.FULL and m.peak_reduced_consumed_bytes is not None), None)
    best = next((m for m in methods if m.function == recommended), None)
    if full is not None and best is not None and best is not full:
        # Stored S is linear in 1/r, r the GI-data ratio: S_r = A/r + B. A and B from the array as it is
        # and without GI-data reduction; full copies match the best at r* = A / (best - B).
        plain = dataclasses.replace(array, dedup_ratio_gi=1.0, compression_ratio_gi=1.0)
        full_fn = next(f for f in functions if f.name == full.function)
        s_plain = float(evaluate(fleet, plain, full_fn, vms, life).peak_reduced_consumed_bytes)
        s_here = _stored_peak(full)
        a = (s_plain - s_here) / (1.0 - 1.0 / gi_ratio) if gi_ratio > 1 else 0.0
        room = _stored_peak(best) - (s_here - a / gi_ratio)
        match = f"they would match it at a GI-data reduction of {a / room:,.1f}:1" if room > 0 and a > 0 else \
            "no GI-data ratio makes them match it: their own writes alone, reduced at the clone ratio, store more"
        notes.append(f"full copies store {format_bytes(s_here)} of {format_bytes(_bytes(full.peak_consumed_bytes))} "
                     f"raw: {s_here / _stored_peak(best):.3g}x the stored peak of {best.function}; {match} "
                     "(identical copies of one GI can deduplicate better than a fleet-wide ratio says)")
    if holding:
        raw_best = min(holding, key=lambda m: _bytes(m.peak_consumed_bytes))
        if recommended is not None and raw_best.function != recommended:
            notes.append(f"data reduction changes the recommendation: by raw capacity it would be "
                         f"{raw_best.function}, by what {array.name} stores it is {recommended}")
    return notes


def plan(
    fleet: FleetPreset,
    array: ArrayPreset,
    vms: int,
    functions: Sequence[FunctionPreset | str] | None = None,
    life: Lifetime = NO_LIFETIME,
) -> Plan:
    """Plan T = ``vms`` clones of ``fleet`` on ``array`` with each storage function; ``life``: over a
    horizon of days with refresh and recompose policies, against a datastore and a headroom."""
    vms = check_vms(vms)
    resolved = resolve_functions(functions)
    methods = tuple(_method_plan(fleet, array, f, evaluate(fleet, array, f, vms, life), vms, life)
                    for f in resolved)
    reduces = reduces_data(array)
    recommended, reason = recommend(methods, vms, life, reduces)
    by_disks = float(array.disk_iops) * float(array.disks)
    # A full copy's figures change nothing it is planned by (it allocates everything up front).
    used: list[tuple[FleetPreset | ArrayPreset | FunctionPreset, str]] = [
        (fleet, "fleet"), (array, "array"), *((f, "function") for f in resolved if f.method is not Method.FULL)]
    figures = {kind: PLANNER_FIGURES[kind] + (LIFE_FIGURES[kind] if life.days > 0 or reduces else ())
               for kind in PLANNER_FIGURES}
    assumptions = tuple(view for record, kind in used for view in figures_of(record)
                        if view.assumed and view.key in figures[kind])
    notes = [explain(m, vms) for m in methods]
    if reduces:
        notes += reduction_notes(fleet, array, resolved, methods, vms, recommended, life)
    return Plan(fleet.name, array.name, vms, methods, recommended, reason,
                array_iops=float(array_performance_iops(array.processor_iops, array.disk_iops, array.disks)),
                array_bound="processors" if float(array.processor_iops) <= by_disks else "disks",
                notes=tuple(notes), assumptions=tuple(dict.fromkeys(assumptions)), life=life)
