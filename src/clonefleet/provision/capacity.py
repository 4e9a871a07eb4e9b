"""Measured capacity of a real fleet beside the model's S for the same method and granularity.

The measurement is the backend's (qcow2: ``actual-size`` of every file;
reflink: FIEMAP physical extents with shared blocks counted once). The model is
:func:`clonefleet.planner.evaluate` with the backend's storage function (unit =
the qcow2 cluster or the filesystem block) and the fleet preset scaled to the
real GI (:func:`clonefleet.provision.bootwrites.model_fleet`). Until the boot
writes are applied the model is taken with W = 0, so like is held against like.

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

from clonefleet.backends import Backend, Usage, get_backend
from clonefleet.planner import clone_metadata_bytes, evaluate, fleet_consumed_bytes, golden_image_bytes
from clonefleet.presets import Method, load_array
from clonefleet.provision.bootwrites import model_fleet
from clonefleet.provision.fleetdir import private_tmp
from clonefleet.provision.journal import Journal
from clonefleet.provision.manifest import Manifest
from clonefleet.provision.plan import FleetPlan, provisioned_plan
from clonefleet.storage.goldimage import gi_used_bytes
from clonefleet.storage.qcow2 import read_header
from clonefleet.units import format_bytes

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


def _capacity(manifest: Manifest, backend: Backend, plan: FleetPlan, work_dir: Path) -> CapacityReport:
    written = plan.journal.written() >= {t.name for t in plan.tasks}
    used = gi_used_bytes(plan.gi)
    model = model_fleet(manifest, plan.gi, used)
    fleet = model.fleet if written else dataclasses.replace(model.fleet, boot_write_bytes=0.0,
                                                             boot_write_extents=0.0, boot_write_regions=())
    function = plan.recipe.model_function
    ev = evaluate(fleet, load_array(manifest.array), function, manifest.count)
    per_clone_model = float(ev.per_clone_bytes)
    g = plan.golden_images
    is_full = plan.recipe.method is Method.FULL
    gi_model = float(golden_image_bytes(fleet, function, g))
    total_model = float(fleet_consumed_bytes(fleet, function, g, manifest.count, ev.per_vm_new_bytes))
    clones = [manifest.dest / t.name for t in plan.tasks]
    usage: Usage = backend.measure(plan.recipe, clones, plan.sources)
    per = [u.consumed_bytes for u in usage.clones]
    measured_total = usage.total_bytes - (usage.gi_bytes if is_full else 0)
    fresh = fresh_clone_bytes(plan, work_dir)
    notes = list(usage.notes)
    if not written:
        notes.append("boot writes not applied yet ('clonefleet writes'): the model is taken with W = 0")
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
        model_new_bytes=float(ev.per_vm_new_bytes), model_overhead_bytes=function.clone_overhead_bytes,
        model_metadata_bytes=float(clone_metadata_bytes(fleet, function)),
        accounting=usage.accounting, note=model.note, notes=tuple(notes),
        per_clone=tuple({"name": u.name, "consumed_bytes": u.consumed_bytes, "own_data_bytes": u.own_data_bytes,
                         "metadata_bytes": u.metadata_bytes} for u in usage.clones),
    )
