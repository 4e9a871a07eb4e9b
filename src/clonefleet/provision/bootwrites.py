"""A boot's and a day's writes for a real fleet: the model's fleet preset scaled to the real GI, per-clone
footprints, and applying them (``clonefleet writes [--days N]``).

The shipped fleet presets describe real disks (tens of GiB); the GI built here is
small. :func:`model_fleet` scales the preset to the GI: ``G`` becomes the GI's
virtual size, ``G_used`` the GI's data as measured, and the boot's writes W, n
and R shrink by the same factor G_real / G_preset (n at least 1), unless the
manifest's ``[writes]`` table gives them. The daily writes (W_day, n_day, R_day
of the growth model, Eq. G1) and the pagefile P (when it lands in the clone)
shrink by the same factor. Every output that uses this says so
(:attr:`ModelFleet.note`).

Where the writes fall, three disjoint regions, each starting on a 64 KiB boundary (so no qcow2 cluster
or filesystem block is shared between two of them, as the model's C_boot + C_day + P_in assumes):

- the boot span: the last R bytes of the disk by default (free space in a fresh filesystem, where a
  boot's new files go), or where ``writes.span_start`` puts it;
- the daily span: the R_day bytes just below the boot span;
- the pagefile: one contiguous extent of P bytes (whole 4 KiB blocks) just below the daily span,
  written once, with the boot writes (the model counts it from the first boot, Eq. G2).

Each clone's extents are drawn with a seed made from the manifest's seed and the
clone's index (and, for a day's writes, the day), so a rerun writes the same bytes
at the same places: writing twice changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clonefleet.backends import Backend, get_backend
from clonefleet.errors import UsageError, field_error
from clonefleet.lifetime import check_days
from clonefleet.model.footprint import DEFAULT_ALIGN_BYTES
from clonefleet.presets import FleetPreset, SwapDisk, load_fleet
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
    daily_span_start_bytes: int = 0  # where the daily span R_day starts (just below the boot span)
    swap_start_bytes: int = 0  # where the pagefile's extent starts (just below the daily span)

    def footprint_dict(self) -> dict[str, object]:
        f = self.fleet
        return {"write_bytes": f.boot_write_bytes, "write_extents": f.boot_write_extents,
                "span_bytes": f.boot_write_span_bytes, "span_start_bytes": self.span_start_bytes,
                "daily_write_bytes": f.daily_write_bytes, "daily_write_extents": f.daily_write_extents,
                "daily_span_bytes": f.daily_write_span_bytes, "daily_span_start_bytes": self.daily_span_start_bytes,
                "swap_bytes": f.swap_bytes, "swap_start_bytes": self.swap_start_bytes,
                "gi_virtual_bytes": f.gi_virtual_bytes, "gi_used_bytes": f.gi_used_bytes,
                "scale": self.scale, "preset": f.name}

    def as_written(self, boot_writes: bool) -> FleetPreset:
        """The model fleet as the clones are: without the boot writes and the pagefile (written with them)
        until ``clonefleet writes`` has applied them, so like is held against like."""
        if boot_writes:
            return self.fleet
        return dataclasses.replace(self.fleet, boot_write_bytes=0.0, boot_write_extents=0.0, boot_write_regions=(),
                                   swap_bytes=0.0)


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
    day_w, day_n, day_r, day_start = daily_writes_scaled(base, scale, gi.virtual_bytes, start)
    swap, swap_start = swap_scaled(base, scale, gi.virtual_bytes, day_start)
    fleet = dataclasses.replace(
        base, name=f"{base.name} scaled to {gi.path.name}", gi_virtual_bytes=float(gi.virtual_bytes),
        gi_used_bytes=float(max(used, 1)), boot_write_bytes=w, boot_write_extents=float(n),
        boot_write_span_bytes=r, boot_read_span_bytes=min(base.boot_read_span_bytes * scale, gi.virtual_bytes),
        daily_write_bytes=day_w, daily_write_extents=float(day_n), daily_write_span_bytes=day_r,
        swap_bytes=float(swap),
    )
    given = "manifest" if spec.write_bytes is not None else f"{base.name} x {scale:.4g}"
    note = (f"model fleet: preset {base.name} scaled to the GI (G = {format_bytes(gi.virtual_bytes)}, "
            f"x{scale:.4g} of {format_bytes(base.gi_virtual_bytes)}); G_used = {format_bytes(used)} measured on "
            f"the GI; boot writes W = {format_bytes(w)} in n = {n} extents over R = {format_bytes(r)} from offset "
            f"{format_bytes(start)} ({given}; bytes exact in --json)")
    if day_w > 0:
        note += (f"; daily writes W_day = {format_bytes(day_w)} in n_day = {day_n} extents over R_day = "
                 f"{format_bytes(day_r)} from offset {format_bytes(day_start)}, below the boot span "
                 f"({base.name} x {scale:.4g})")
    if swap > 0:
        note += (f"; pagefile P = {format_bytes(swap)} at offset {format_bytes(swap_start)}, written with the boot "
                 f"writes ({base.name} x {scale:.4g})")
    elif base.swap_bytes > 0:
        note += ("; the preset's pagefile is on a disposable disk clonefleet does not make: left out of the writes "
                 "and of the model")
    trace = None
    if spec.source != "preset":
        trace = load_trace_writes(Path(spec.source))
        note += f"; writes from the trace {spec.source} ({len(trace)} VMs, VM i-1 -> clone i, cycled)"
    return ModelFleet(fleet, start, scale, note, trace, day_start, swap_start)


def _below(end_bytes: int, size_bytes: float, what: str, gi_virtual_bytes: int) -> int:
    """The 64 KiB-aligned start of a region of ``size_bytes`` that ends at or before ``end_bytes``."""
    start = int((end_bytes - size_bytes) // ALIGN_BYTES * ALIGN_BYTES)
    if start < 0:
        raise UsageError(f"writes: the {what} ({size_bytes:.0f} bytes) does not fit below offset {end_bytes} of the "
                         f"{gi_virtual_bytes}-byte disk (the regions of the boot writes, the daily writes and the "
                         "pagefile are disjoint): give a later writes.span_start, a smaller writes.span or a larger GI")
    return start


def daily_writes_scaled(base: FleetPreset, scale: float, gi_virtual_bytes: int,
                        boot_start_bytes: int) -> tuple[float, int, float, int]:
    """The preset's daily writes scaled to the GI like the boot's: (W_day, n_day, R_day, where R_day starts,
    just below the boot span). All zero when the preset declares no daily writes."""
    if not base.daily_write_bytes > 0:
        return 0.0, 0, 0.0, boot_start_bytes
    r = float(min(max(base.daily_write_span_bytes * scale, 4096), gi_virtual_bytes))
    w = float(min(base.daily_write_bytes * scale, r))
    n = max(1, round(base.daily_write_extents * scale))
    return w, n, r, _below(boot_start_bytes, r, "daily span R_day", gi_virtual_bytes)


def swap_scaled(base: FleetPreset, scale: float, gi_virtual_bytes: int, below_bytes: int) -> tuple[int, int]:
    """The pagefile scaled to the GI, in whole 4 KiB blocks, and where it starts (just below ``below_bytes``);
    (0, below_bytes) when it lands on a disposable disk or the preset has none."""
    if base.swap_disk is not SwapDisk.CLONE or not base.swap_bytes > 0:
        return 0, below_bytes
    block = DEFAULT_ALIGN_BYTES
    p = int(min(-(-base.swap_bytes * scale // block) * block, gi_virtual_bytes))
    return p, _below(below_bytes, p, "pagefile P", gi_virtual_bytes)


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


def clone_seed(seed: int, index: int, day: int = 0) -> int:
    """A seed for clone ``index``'s boot footprint (``day`` 0) or its writes of day ``day`` (1, 2, ...), from
    the manifest's seed (independent streams)."""
    entropy = [seed, index, day] if day else [seed, index]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


def footprint_for(manifest: Manifest, model: ModelFleet, index: int) -> writes.Footprint:
    """Clone ``index``'s boot writes (1-based), its pagefile's extent last: the same every time for the
    same manifest."""
    seed = clone_seed(manifest.writes.seed, index)
    f = model.fleet
    if model.trace is not None:
        off, ln = model.trace[(index - 1) % len(model.trace)]
        fp = writes.Footprint(off, ln, seed)
    else:
        fp = writes.boot_footprint(f.boot_write_bytes, f.boot_write_extents, f.boot_write_span_bytes, seed,
                                   span_start_bytes=model.span_start_bytes)
    if f.swap_bytes > 0:
        fp = writes.Footprint(np.append(fp.offsets_bytes, model.swap_start_bytes).astype(np.int64),
                              np.append(fp.lengths_bytes, int(f.swap_bytes)).astype(np.int64), seed)
    return fp


def day_footprint(manifest: Manifest, model: ModelFleet, index: int, day: int) -> writes.Footprint:
    """Clone ``index``'s writes of day ``day`` (1 = the first day after its boot): the boot's draw with the
    daily figures, in the daily span; the same every time for the same manifest, clone and day."""
    f = model.fleet
    return writes.boot_footprint(f.daily_write_bytes, f.daily_write_extents, f.daily_write_span_bytes,
                                 clone_seed(manifest.writes.seed, index, day),
                                 span_start_bytes=model.daily_span_start_bytes)


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
    days: int | None = None  # --days N: the age every clone was brought to
    clone_days_written: int = 0  # days of writes applied now, over all clones
    daily_bytes_written: int = 0
    ages_days: tuple[int, ...] = ()  # each clone's age after the run

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"clones": self.clones, "written_now": self.written_now, "already_written": self.already,
                                "bytes_written": self.bytes_written, "footprint": self.footprint, "note": self.note}
        if self.days is not None:
            d["days"] = {"target": self.days, "clone_days_written": self.clone_days_written,
                         "bytes_written": self.daily_bytes_written, "age_min": min(self.ages_days, default=0),
                         "age_max": max(self.ages_days, default=0)}
        return d


def apply_writes(manifest: Manifest, backend: Backend | None = None, progress: Progress = no_progress,
                 workers: int | None = None, days: int | None = None) -> WritesResult:
    """Write each clone's boot footprint into it (once: the journal records it; reruns skip it); with
    ``days``, then bring every clone to that age: the missing days' writes, day by day (a clone already
    that old or older is left alone). Each day is recorded (``days``) only once its writes are flushed,
    and a day's writes are the same on a rerun: a run killed at any moment is finished by a rerun."""
    backend = backend or get_backend(manifest.backend)
    if days is not None:
        check_days(days)
    with provisioned_plan(manifest, backend, "writes") as plan:
        fleet_dir = plan.fleet_dir
        model = model_fleet(manifest, plan.gi)
        if days and not model.fleet.daily_write_bytes > 0:
            raise UsageError(f"--days {days}: fleet preset {manifest.preset} declares no daily writes "
                             "(daily_write_bytes): give fleet.preset one that does (desktop-linux, desktop-win10, "
                             "desktop-win11) or your own preset file")
        done_before = plan.journal.written()
        todo = [t for t in plan.tasks if t.name not in done_before]
        protected = [plan.gi.path, *plan.sources[1:]]
        fmt = plan.recipe.clone_format
        ages = {t.name: plan.journal.age_of(t.name) for t in plan.tasks}
        total_bytes = daily_bytes = clone_days = 0
        with Journal(fleet_dir) as journal, ThreadPoolExecutor(max_workers=workers or manifest.workers) as pool:
            for task, written in _each(pool, todo, "writes", progress, lambda t: write_footprint(
                    fmt, fleet_dir / t.name, footprint_for(manifest, model, t.index), protected)):
                total_bytes += written
                journal.append("written", name=task.name, index=task.index, bytes=written)
            for day in range(1, (days or 0) + 1):
                younger = [t for t in plan.tasks if ages[t.name] < day]
                one_day = functools.partial(_write_day, manifest, model, fmt, fleet_dir, protected, day)
                for task, written in _each(pool, younger, f"day {day}", progress, one_day):
                    daily_bytes += written
                    clone_days += 1
                    ages[task.name] = day
                    ident = plan.journal.identity_of(task.name)
                    journal.append("days", name=task.name, index=task.index, days=day, bytes=written,
                                   **(ident.fields() if ident else {}))
    return WritesResult(clones=len(plan.tasks), written_now=len(todo), already=len(plan.tasks) - len(todo),
                        bytes_written=total_bytes, footprint=model.footprint_dict(), note=model.note, days=days,
                        clone_days_written=clone_days, daily_bytes_written=daily_bytes,
                        ages_days=tuple(ages[t.name] for t in plan.tasks))


def _write_day(manifest: Manifest, model: ModelFleet, clone_format: str, fleet_dir: Path,
               protected: Collection[Path], day: int, task: CloneTask) -> int:
    return write_footprint(clone_format, fleet_dir / task.name, day_footprint(manifest, model, task.index, day),
                           protected)


def _each(pool: ThreadPoolExecutor, tasks: list[CloneTask], stage: str, progress: Progress,
          work: Callable[[CloneTask], int]) -> Iterator[tuple[CloneTask, int]]:
    """Run ``work`` on every task in the pool; yield (task, its result) as they complete, the rest
    cancelled if one fails."""
    futures = {pool.submit(work, t): t for t in tasks}
    progress(stage, 0, len(tasks))
    for n, future in enumerate(completed_or_cancel(futures), 1):
        yield futures[future], future.result()
        progress(stage, n, len(tasks))
