"""A boot's writes for a real fleet: the model's fleet preset scaled to the real GI, per-clone footprints.

The shipped fleet presets describe real disks (tens of GiB); the GI built here is
small. :func:`model_fleet` scales the preset to the GI: ``G`` becomes the GI's
virtual size, ``G_used`` the GI's data as measured, and the boot's writes W, n
and R shrink by the same factor G_real / G_preset (n at least 1), unless the
manifest's ``[writes]`` table gives them. The writes fall in the last R bytes of
the disk by default (free space in a fresh filesystem, where a boot's new files
go). Every output that uses this says so (:attr:`ModelFleet.note`).

Each clone's extents are drawn with a seed made from the manifest's seed and the
clone's index, so a rerun writes the same bytes at the same places: writing
twice changes nothing.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clonefleet.backends import Backend, get_backend
from clonefleet.errors import UsageError, field_error
from clonefleet.presets import FleetPreset, load_fleet
from clonefleet.progress import Progress, no_progress
from clonefleet.provision import writes
from clonefleet.provision.journal import Journal
from clonefleet.provision.manifest import Manifest
from clonefleet.provision.plan import CloneTask, provisioned_plan
from clonefleet.provision.pool import completed_or_cancel
from clonefleet.storage.files import open_regular
from clonefleet.storage.goldimage import GoldenImageInfo
from clonefleet.storage.goldimage import gi_used_bytes as measure_used_bytes
from clonefleet.units import format_bytes

ALIGN_BYTES = 64 * 1024


@dataclass(frozen=True)
class ModelFleet:
    """The fleet preset the model uses for this real fleet, and where the writes fall."""

    fleet: FleetPreset
    span_start_bytes: int
    scale: float  # G_real / G_preset
    note: str
    trace: tuple[tuple[np.ndarray, np.ndarray], ...] | None = None  # per VM (offsets, lengths) from a trace

    def footprint_dict(self) -> dict[str, object]:
        return {"write_bytes": self.fleet.boot_write_bytes, "write_extents": self.fleet.boot_write_extents,
                "span_bytes": self.fleet.boot_write_span_bytes, "span_start_bytes": self.span_start_bytes,
                "gi_virtual_bytes": self.fleet.gi_virtual_bytes, "gi_used_bytes": self.fleet.gi_used_bytes,
                "scale": self.scale, "preset": self.fleet.name}


def model_fleet(manifest: Manifest, gi: GoldenImageInfo, gi_used_bytes: int | None = None) -> ModelFleet:
    """The manifest's fleet preset scaled to the real GI (see the module docstring)."""
    base = load_fleet(manifest.preset)
    used = measure_used_bytes(gi) if gi_used_bytes is None else gi_used_bytes
    scale = gi.virtual_bytes / base.gi_virtual_bytes
    spec = manifest.writes
    w = spec.write_bytes if spec.write_bytes is not None else base.boot_write_bytes * scale
    n = spec.write_extents if spec.write_extents is not None else max(1, round(base.boot_write_extents * scale))
    r = spec.span_bytes if spec.span_bytes is not None else base.boot_write_span_bytes * scale
    r = float(min(max(r, 4096), gi.virtual_bytes))
    if spec.write_bytes is not None and spec.write_bytes > r:
        raise field_error(f"manifest {manifest.path}", "writes.bytes", spec.write_bytes,
                          f"at most the writes span R = {r:.0f} bytes (the given span, else the preset's "
                          "scaled to the GI, within the GI's virtual size); give a larger writes.span")
    w = float(min(w, r))  # a preset's W, scaled, within a span clipped to the GI: the span holds it all
    start = spec.span_start_bytes if spec.span_start_bytes is not None else \
        int((gi.virtual_bytes - r) // ALIGN_BYTES * ALIGN_BYTES)
    if start + r > gi.virtual_bytes:
        raise UsageError(f"writes: span_start + span = {start + r:.0f} bytes: at most the GI's virtual size "
                         f"{gi.virtual_bytes}")
    fleet = dataclasses.replace(
        base, name=f"{base.name} scaled to {gi.path.name}", gi_virtual_bytes=float(gi.virtual_bytes),
        gi_used_bytes=float(max(used, 1)), boot_write_bytes=w, boot_write_extents=float(n),
        boot_write_span_bytes=r, boot_read_span_bytes=min(base.boot_read_span_bytes * scale, gi.virtual_bytes),
    )
    given = "manifest" if spec.write_bytes is not None else f"{base.name} x {scale:.4g}"
    note = (f"model fleet: preset {base.name} scaled to the GI (G = {format_bytes(gi.virtual_bytes)}, "
            f"x{scale:.4g} of {format_bytes(base.gi_virtual_bytes)}); G_used = {format_bytes(used)} measured on "
            f"the GI; boot writes W = {format_bytes(w)} in n = {n} extents over R = {format_bytes(r)} from offset "
            f"{format_bytes(start)} ({given}; bytes exact in --json)")
    trace = None
    if spec.source != "preset":
        trace = load_trace_writes(Path(spec.source))
        note += f"; writes from the trace {spec.source} ({len(trace)} VMs, VM i-1 -> clone i, cycled)"
    return ModelFleet(fleet, start, scale, note, trace)


def load_trace_writes(path: Path) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per VM write extents from a trace in the simulator's formats: a fio iolog (or a folder of
    them), blkparse text or CSV (:func:`clonefleet.sim.traceio.read_trace`), or a ``.npz`` of a
    :class:`~clonefleet.sim.trace.Trace`'s arrays (``vm_start``, ``op``, ``offset_bytes``,
    ``length_bytes``). Reads are dropped; offsets are guest bytes, as in the GI."""
    from clonefleet.sim.trace import WRITE

    if not path.exists():
        raise UsageError(f"writes.source {path}: no such trace; give 'preset' or a trace (fio iolog, "
                         "blkparse, CSV or .npz)")
    if path.suffix == ".npz":
        try:
            with os.fdopen(open_regular(path, "writes.source"), "rb") as f:
                data = np.load(f, allow_pickle=False)
                vm_start, op = data["vm_start"], data["op"]
                off, ln = data["offset_bytes"], data["length_bytes"]
        except (OSError, KeyError, ValueError) as exc:
            raise UsageError(f"writes.source {path}: not a simulator trace (.npz with vm_start, op, "
                             f"offset_bytes, length_bytes): {exc}") from None
    else:
        from clonefleet.sim.traceio import read_trace

        trace = read_trace(path, closed=True)
        vm_start, op, off, ln = trace.vm_start, trace.op, trace.offset_bytes, trace.length_bytes
    out = []
    for v in range(len(vm_start) - 1):
        sl = slice(int(vm_start[v]), int(vm_start[v + 1]))
        mask = op[sl] == WRITE
        out.append((off[sl][mask].astype(np.int64), ln[sl][mask].astype(np.int64)))
    if not out:
        raise UsageError(f"writes.source {path}: the trace has no VMs")
    return tuple(out)


def clone_seed(seed: int, index: int) -> int:
    """A seed for clone ``index``'s footprint, from the manifest's seed (independent streams)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


def footprint_for(manifest: Manifest, model: ModelFleet, index: int) -> writes.Footprint:
    """Clone ``index``'s writes (1-based): the same every time for the same manifest."""
    seed = clone_seed(manifest.writes.seed, index)
    if model.trace is not None:
        off, ln = model.trace[(index - 1) % len(model.trace)]
        return writes.Footprint(off, ln, seed)
    f = model.fleet
    return writes.boot_footprint(f.boot_write_bytes, f.boot_write_extents, f.boot_write_span_bytes, seed,
                                 span_start_bytes=model.span_start_bytes)


def write_footprint(clone_format: str, path: Path, fp: writes.Footprint, protected: Collection[Path]) -> int:
    """Write one footprint into one clone; returns the bytes written."""
    if fp.offsets_bytes.size == 0:
        return 0
    if clone_format == "fake":  # the fake backend's marker files hold no guest data
        return fp.written_bytes
    if clone_format == "qcow2":
        report = writes.write_extents_qcow2(path, fp.offsets_bytes, fp.lengths_bytes, fp.seed, protected)
    else:
        report = writes.write_extents_file(path, fp.offsets_bytes, fp.lengths_bytes, fp.seed, protected)
    return report.written_bytes


@dataclass(frozen=True)
class WritesResult:
    clones: int
    written_now: int
    already: int
    bytes_written: int
    footprint: dict[str, Any]
    note: str

    def to_dict(self) -> dict[str, object]:
        return {"clones": self.clones, "written_now": self.written_now, "already_written": self.already,
                "bytes_written": self.bytes_written, "footprint": self.footprint, "note": self.note}


def apply_writes(manifest: Manifest, backend: Backend | None = None, progress: Progress = no_progress,
                 workers: int | None = None) -> WritesResult:
    """Write each clone's boot footprint into it (once: the journal records it; reruns skip it)."""
    backend = backend or get_backend(manifest.backend)
    with provisioned_plan(manifest, backend, "writes") as plan:
        fleet_dir = plan.fleet_dir
        model = model_fleet(manifest, plan.gi)
        done_before = plan.journal.written()
        todo = [t for t in plan.tasks if t.name not in done_before]
        protected = [plan.gi.path, *plan.sources[1:]]
        total_bytes = 0
        with Journal(fleet_dir) as journal, ThreadPoolExecutor(max_workers=workers or manifest.workers) as pool:
            def one(task: CloneTask) -> int:
                fp = footprint_for(manifest, model, task.index)
                return write_footprint(plan.recipe.clone_format, fleet_dir / task.name, fp, protected)

            futures = {pool.submit(one, t): t for t in todo}
            progress("writes", 0, len(todo))
            for n, future in enumerate(completed_or_cancel(futures), 1):
                task = futures[future]
                written = future.result()
                total_bytes += written
                journal.append("written", name=task.name, index=task.index, bytes=written)
                progress("writes", n, len(todo))
    return WritesResult(clones=len(plan.tasks), written_now=len(todo), already=len(plan.tasks) - len(todo),
                        bytes_written=total_bytes, footprint=model.footprint_dict(), note=model.note)


