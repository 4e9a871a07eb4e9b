"""Measured capacity of a real fleet beside the model's S for the same method and granularity.

The measurement is the backend's (qcow2: ``actual-size`` of every file;
reflink: FIEMAP physical extents with shared blocks counted once). The model is
:func:`clonefleet.planner.evaluate` with the backend's storage function (unit =
the qcow2 cluster or the filesystem block) and the fleet preset scaled to the
real GI (:func:`clonefleet.provision.bootwrites.model_fleet`). Until the boot
writes are applied the model is taken with W = 0 (and no pagefile), so like is held against like.

The model knows each clone's age, the days of daily writes the journal records for it
(``clonefleet writes --days``): its C is Eq. G2, the boot's C plus the growth of that many days
(Eq. G1, :func:`clonefleet.planner.grown_new_bytes`) plus the pagefile, capped at G
(:func:`clonefleet.planner.per_clone_bytes`). The mapping tables the daily writes fill are not
modelled (the boot's are): on a small GI one qcow2 L2 table covers the whole disk anyway.

What is compared, as in Eq. 3:
- snapshot, thin: S = D + T * per clone, D the GI and its replicas (g * G_used);
- full: S = T * G (thick copies), the GI not counted, as in the model.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from clonefleet.backends import Backend, Usage, get_backend
from clonefleet.planner import (
    clone_metadata_bytes,
    evaluate,
    golden_image_bytes,
    grown_new_bytes,
    per_clone_bytes,
)
from clonefleet.presets import FunctionPreset, Method, load_array
from clonefleet.provision.bootwrites import ModelFleet, model_fleet
from clonefleet.provision.fleetdir import private_tmp
from clonefleet.provision.journal import Journal
from clonefleet.provision.manifest import Manifest
from clonefleet.provision.plan import FleetPlan, provisioned_plan
from clonefleet.storage.goldimage import gi_used_bytes
from clonefleet.storage.qcow2 import read_header
from clonefleet.units import format_bytes

FloatArray = npt.NDArray[np.float64]

#: The one-line warning when a qcow2 GI is cloned by reflink (measured in docs/howto-reflink.md).
QCOW2_ON_REFLINK_NOTE = (
    "a qcow2 GI on reflink: a write into a clone allocates whole qcow2 clusters ({cluster}) and unshares "
    "the qcow2 tables it updates, while the model counts {block} filesystem blocks, so measured / model per "
    "clone runs well above 1 (1.65 per clone, 1.43 for 200 clones in docs/howto-reflink.md; a raw GI: 0.97, 0.99); "
    "use a raw GI to hold reflink against the model")


@dataclass(frozen=True)
class CapacityReport:
    """Bytes measured and modelled for one fleet; ratios are measured / model."""

    fleet: str
    backend: str
    method: str
    function: str  # the model's storage function
    unit_bytes: float
    clones: int
    golden_images: int
    writes_applied: bool
    measured_total_bytes: int
    measured_gi_bytes: int
    measured_per_clone_bytes: float  # mean
    measured_per_clone_min_bytes: int
    measured_per_clone_max_bytes: int
    measured_fresh_clone_bytes: int | None  # a clone with no writes: the per-clone overhead
    measured_metadata_per_clone_bytes: float  # mean of consumed - own data, after the writes
    model_total_bytes: float  # S
    model_gi_bytes: float  # D
    model_per_clone_bytes: float
    model_new_bytes: float  # C
    model_overhead_bytes: float  # a fresh clone's metadata
    model_metadata_bytes: float  # metadata after the writes: overhead plus the tables the writes allocate
    accounting: str
    note: str
    notes: tuple[str, ...]
    per_clone: tuple[dict[str, object], ...]
    age_days_min: int = 0  # the clones' ages (days of daily writes since the boot or the last refresh)
    age_days_max: int = 0

    @property
    def total_ratio(self) -> float:
        return self.measured_total_bytes / self.model_total_bytes if self.model_total_bytes else float("nan")

    @property
    def per_clone_ratio(self) -> float:
        return self.measured_per_clone_bytes / self.model_per_clone_bytes if self.model_per_clone_bytes \
            else float("nan")

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["total_ratio"] = self.total_ratio
        d["per_clone_ratio"] = self.per_clone_ratio
        return d


def fresh_clone_bytes(plan: FleetPlan, work_dir: Path) -> int | None:
    """What a clone with no writes consumes (its overhead), measured on one made in ``work_dir``
    (the fleet's private folder: a kill leaves it to the next run to empty)."""
    if plan.recipe.method is not Method.SNAPSHOT:
        return None
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="fresh.") as tmp:
        prepared = plan.backend.prepare(plan.recipe, plan.sources[0], Path(tmp))
        path = Path(tmp) / f"fresh{plan.recipe.suffix}"
        plan.backend.apply(plan.recipe, prepared, path)
        usage = plan.backend.measure(plan.recipe, [path], [plan.sources[0]])
        return usage.clones[0].consumed_bytes


def capacity(manifest: Manifest, backend: Backend | None = None) -> CapacityReport:
    """Measure the fleet and evaluate the model for the same method, unit and fleet size."""
    backend = backend or get_backend(manifest.backend)
    with provisioned_plan(manifest, backend, "capacity") as plan:
        with Journal(plan.fleet_dir) as journal:
            work_dir, _ = private_tmp(plan.fleet_dir, plan.journal, journal)
        return _capacity(manifest, backend, plan, work_dir)


def clone_model_bytes(model: ModelFleet, function: FunctionPreset, manifest: Manifest, ages_days: FloatArray,
                      boot_written: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per clone, as the journal says it is (its boot writes applied or not, its age): the model's C (the
    boot's, Eq. 1, plus the growth of its age, Eq. G1), what it consumes (Eq. G2 with metadata and the
    pagefile) and its metadata [bytes]."""
    new, consumed, metadata = (np.zeros(ages_days.shape) for _ in range(3))
    for state in (True, False):
        mask = boot_written == state
        if mask.any():
            fleet = model.as_written(state)
            boot = evaluate(fleet, load_array(manifest.array), function, manifest.count).per_vm_new_bytes
            new[mask] = grown_new_bytes(fleet, function, ages_days[mask], boot)
            consumed[mask] = per_clone_bytes(fleet, function, new[mask])
            metadata[mask] = clone_metadata_bytes(fleet, function)
    return new, consumed, metadata


def _capacity(manifest: Manifest, backend: Backend, plan: FleetPlan, work_dir: Path) -> CapacityReport:
    written_now = plan.journal.written()
    boot_written = np.array([t.name in written_now for t in plan.tasks])
    written = bool(boot_written.all())
    used = gi_used_bytes(plan.gi)
    model = model_fleet(manifest, plan.gi, used)
    fleet = model.as_written(written)
    function = plan.recipe.model_function
    ages = np.array([plan.journal.age_of(t.name) for t in plan.tasks], dtype=np.float64)
    new_by_clone, model_by_clone, metadata_by_clone = clone_model_bytes(model, function, manifest, ages, boot_written)
    per_clone_model = float(np.mean(model_by_clone))
    g = plan.golden_images
    is_full = plan.recipe.method is Method.FULL
    gi_model = float(golden_image_bytes(fleet, function, g))
    total_model = gi_model + float(np.sum(model_by_clone))  # Eq. 3: S = D + the clones' own, clone by clone
    clones = [manifest.dest / t.name for t in plan.tasks]
    usage: Usage = backend.measure(plan.recipe, clones, plan.sources)
    per = [u.consumed_bytes for u in usage.clones]
    measured_total = usage.total_bytes - (usage.gi_bytes if is_full else 0)
    fresh = fresh_clone_bytes(plan, work_dir)
    notes = list(usage.notes)
    if not boot_written.any():
        notes.append("boot writes not applied yet ('clonefleet writes'): the model is taken with W = 0")
    elif not written:
        notes.append(f"{int(boot_written.sum())} of {len(boot_written)} clones hold their boot writes (the others were "
                     "refreshed or not written yet): the model takes each clone as it is, W = 0 for the others")
    if ages.any():
        span = f"{ages.min():.0f}" if ages.min() == ages.max() else f"{ages.min():.0f} to {ages.max():.0f}"
        notes.append(f"clones aged {span} days ('clonefleet writes --days'): the model "
                     "adds each clone's growth C_day(age) (Eq. G1) to the boot's C (Eq. G2)")
    if is_full:
        notes.append("full copies: S = T x G, the GI not counted (as in the model)")
    elif backend.name == "reflink" and plan.gi.fmt == "qcow2":
        header = read_header(plan.gi.path)
        notes.append(QCOW2_ON_REFLINK_NOTE.format(cluster=format_bytes(header.cluster_bytes) if header else "64 KiB",
                                                  block=format_bytes(function.unit_bytes)))
    first = plan.journal.first_begin
    if first is not None and isinstance(first.get("df_used_bytes"), int):
        st = os.statvfs(manifest.dest)
        delta = (st.f_blocks - st.f_bfree) * st.f_frsize - int(first["df_used_bytes"])
        change = f"grew by {format_bytes(delta)}" if delta >= 0 else f"shrank by {format_bytes(-delta)}"
        notes.append(f"df: the filesystem's used space {change} since the fleet's first run (clones, replicas, "
                     "filesystem metadata, and anything else written to or deleted from that filesystem meanwhile: "
                     "a rough cross-check only)")
    return CapacityReport(
        fleet=manifest.name, backend=backend.name, method=plan.recipe.method.value, function=function.name,
        unit_bytes=function.unit_bytes, clones=manifest.count, golden_images=g, writes_applied=written,
        measured_total_bytes=measured_total, measured_gi_bytes=usage.gi_bytes,
        measured_per_clone_bytes=sum(per) / len(per), measured_per_clone_min_bytes=min(per),
        measured_per_clone_max_bytes=max(per), measured_fresh_clone_bytes=fresh,
        measured_metadata_per_clone_bytes=sum(u.metadata_bytes for u in usage.clones) / len(usage.clones),
        model_total_bytes=total_model, model_gi_bytes=gi_model, model_per_clone_bytes=per_clone_model,
        model_new_bytes=float(np.mean(new_by_clone)), model_overhead_bytes=function.clone_overhead_bytes,
        model_metadata_bytes=float(np.mean(metadata_by_clone)),
        accounting=usage.accounting, note=model.note, notes=tuple(notes),
        per_clone=tuple({"name": u.name, "age_days": int(a), "consumed_bytes": u.consumed_bytes,
                         "own_data_bytes": u.own_data_bytes, "metadata_bytes": u.metadata_bytes,
                         "model_consumed_bytes": float(mc)}
                        for u, a, mc in zip(usage.clones, ages, model_by_clone, strict=True)),
        age_days_min=int(ages.min()), age_days_max=int(ages.max()),
    )
