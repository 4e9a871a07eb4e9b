"""Plan and reconcile: what a run must do, decided from the manifest, the journal and the directory.

:func:`make_plan` changes nothing. It checks the GI first (checksum included), then holds the
journal against the fleet directory: clones to create, clones a killed run linked into place
before its ``created`` record (recognised by the identity its ``made`` record holds) to adopt,
journaled clones the manifest no longer wants, temporaries in the private folder, and the free
space against what the run will need.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from clonefleet.backends import Backend, Recipe, get_backend
from clonefleet.errors import UsageError
from clonefleet.presets import Method
from clonefleet.provision.fleetdir import REPLICA_DIR, fleet_dir_of, fleet_lock, ours_tmp_entries
from clonefleet.provision.journal import Journal, JournalState
from clonefleet.provision.manifest import Manifest, resolve_golden_images
from clonefleet.storage.goldimage import GoldenImageInfo, check_golden_image
from clonefleet.storage.paths import FileId, identity, open_dir, require_regular, same_file
from clonefleet.storage.tools import stop_on_signals


@dataclass(frozen=True)
class CloneTask:
    """One clone of the fleet: its file name, its index (1..count) and its source (GI or replica)."""

    name: str
    index: int
    replica: int  # 0: the GI itself; 1..g-1: replicas in the fleet directory
    source: Path


@dataclass
class FleetPlan:
    """What a run will do, decided before anything changes."""

    manifest: Manifest
    backend: Backend
    recipe: Recipe
    gi: GoldenImageInfo
    golden_images: int  # g
    sources: list[Path]  # index = replica number; 0 is the GI
    tasks: list[CloneTask]  # every clone the manifest wants
    replicas_to_make: list[int] = field(default_factory=list)
    create: list[CloneTask] = field(default_factory=list)
    adopt: list[CloneTask] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)  # clones of ours no longer wanted
    temporaries: list[str] = field(default_factory=list)  # in the private folder, left by a killed run
    missing: list[str] = field(default_factory=list)  # journaled, but not on disk: made again
    foreign: list[str] = field(default_factory=list)  # a file under a clone's name that clonefleet did not make
    failed_before: dict[str, str] = field(default_factory=dict)
    present: int = 0
    estimated_bytes: float = 0.0
    free_bytes: int = 0
    journal: JournalState = field(default_factory=JournalState)

    @property
    def fleet_dir(self) -> Path:
        return self.manifest.dest

    def require_own_files(self) -> None:
        """Refuse to go on (provision, writes, capacity) while a clone's name holds a file clonefleet
        did not make there: it is never used, written into, measured or overwritten."""
        if self.foreign:
            more = f" (and {len(self.foreign) - 1} more)" if len(self.foreign) > 1 else ""
            raise UsageError(f"{self.fleet_dir / self.foreign[0]}{more}: is not the clone clonefleet made under "
                             "that name (another file, or one put in its place); clonefleet will not use or "
                             "overwrite it: move it away, then rerun")

    def to_dict(self) -> dict[str, object]:
        return {
            "manifest": str(self.manifest.path), "fleet_dir": str(self.fleet_dir),
            "backend": self.backend.name, "method": self.recipe.method.value,
            "golden_images": self.golden_images, "steps": list(self.recipe.steps),
            "model_function": self.recipe.model_function.name,
            "wanted": len(self.tasks), "present": self.present, "create": len(self.create),
            "adopt": len(self.adopt), "remove": len(self.remove), "temporaries": len(self.temporaries),
            "missing": self.missing, "failed_before": self.failed_before,
            "replicas_to_make": [str(self.sources[i]) for i in self.replicas_to_make],
            "estimated_bytes": self.estimated_bytes, "free_bytes": self.free_bytes,
            "gi": {"path": str(self.gi.path), "format": self.gi.fmt, "virtual_bytes": self.gi.virtual_bytes,
                   "sha256": self.gi.sha256},
        }


def replica_name(path: Path) -> str:
    """A replica's name in the journal: ``golden/<file>``."""
    return f"{REPLICA_DIR}/{path.name}"


def _source_paths(manifest: Manifest, gi: GoldenImageInfo, g: int) -> list[Path]:
    suffix = gi.path.suffix if gi.path.suffix in (".qcow2", ".img", ".raw") else \
        (".qcow2" if gi.fmt == "qcow2" else ".img")
    return [gi.path] + [manifest.dest / REPLICA_DIR / f"gi-r{i + 1}{suffix}" for i in range(1, g)]


def make_plan(manifest: Manifest, backend: Backend | None = None, check_gi: bool = True) -> FleetPlan:
    """Decide what a run must do; changes nothing. The GI is checked first (checksum included);
    ``check_gi=False`` (status of a fleet whose GI changed) skips the comparisons with the recorded GI."""
    backend = backend or get_backend(manifest.backend)
    fleet_dir = fleet_dir_of(manifest.dest)
    journal = Journal.read(fleet_dir) if fleet_dir.is_dir() else JournalState()
    expected_sha = manifest.gi_sha256 or journal.gi_sha256
    if check_gi:
        gi = check_golden_image(manifest.gi, expected_sha, manifest.max_chain_depth, manifest.gi_bytes,
                                not_same_as=manifest.path)
    else:
        gi = check_golden_image(manifest.gi, None, manifest.max_chain_depth, None, not_same_as=manifest.path)
    recipe = backend.plan(gi, manifest.method, manifest.cluster_bytes)
    g = resolve_golden_images(manifest)
    sources = _source_paths(manifest, gi, g)
    tasks = [CloneTask(f"{manifest.clone_name.name(i)}{recipe.suffix}", i, (i - 1) % g, sources[(i - 1) % g])
             for i in range(1, manifest.count + 1)]
    plan = FleetPlan(manifest=manifest, backend=backend, recipe=recipe, gi=gi, golden_images=g,
                     sources=sources, tasks=tasks, journal=journal)
    wanted = {t.name for t in tasks}
    if manifest.gi.parent == fleet_dir and manifest.gi.name in wanted:
        raise UsageError(f"clone name {manifest.gi.name!r} is the GI's own name in the fleet directory; "
                         "pick another clone_name")
    plan.failed_before = journal.failed()
    if check_gi:
        check_made_with(plan, journal)
    if not fleet_dir.is_dir():
        plan.create = list(tasks)
        plan.replicas_to_make = list(range(1, g))
    else:
        _reconcile(plan, journal)
    plan.estimated_bytes = estimate_clone_bytes(plan) * len(plan.create) + len(plan.replicas_to_make) * gi.file_bytes
    probe_dir = fleet_dir if fleet_dir.is_dir() else next(p for p in fleet_dir.parents if p.is_dir())
    st = os.statvfs(probe_dir)
    plan.free_bytes = st.f_bavail * st.f_frsize
    return plan


def made_with(plan: FleetPlan) -> dict[str, object]:
    """What every clone of a fleet must share: backend, method, GI, clone format and options."""
    linked = plan.recipe.method is Method.SNAPSHOT  # linked clones depend on the GI's path and replicas
    return {"backend": plan.backend.name, "method": plan.recipe.method.value,
            "gi": str(plan.gi.path) if linked else None, "golden_images": plan.golden_images if linked else 1,
            "gi_sha256": plan.gi.sha256, "suffix": plan.recipe.suffix,
            "options": {k: str(v) for k, v in sorted(plan.recipe.options.items())}}


def check_made_with(plan: FleetPlan, journal: JournalState) -> None:
    """Refuse a manifest that changed how the fleet's existing clones were made."""
    before = journal.made_with
    if before is None or not journal.present() or "options" not in before:
        return
    now = made_with(plan)
    made = before["options"]
    changed = [k for k in now if made.get(k) != now[k]]
    if changed:
        key = changed[0]
        raise UsageError(f"fleet {plan.fleet_dir}: its clones were made with {key} = {made.get(key)!r}, the "
                         f"manifest now says {now[key]!r}; destroy the fleet first ('clonefleet destroy "
                         f"{plan.manifest.path} --yes'), or restore the manifest")


def estimate_clone_bytes(plan: FleetPlan) -> float:
    """Bytes one new clone takes, by the backend's model function."""
    f = plan.recipe.model_function
    if plan.recipe.method is Method.FULL:
        return float(plan.gi.virtual_bytes)
    if plan.recipe.method is Method.THIN:
        return f.clone_overhead_bytes + plan.gi.file_bytes
    return f.clone_overhead_bytes


def ours(journal: JournalState, name: str, found: FileId) -> bool:
    """The entry is the file clonefleet recorded under ``name`` (same identity)."""
    return same_file(journal.identity_of(name), found)


def still_ours(journal: JournalState, name: str, found: FileId) -> bool:
    """A file the journal says is there is still the one clonefleet made: the same identity, or (a
    record of an older version, without one) accepted as it was."""
    return journal.identity_of(name) is None or ours(journal, name, found)


def _reconcile(plan: FleetPlan, journal: JournalState) -> None:
    """Hold the journal against the directory: what exists, what is ours, what is left to do."""
    fleet_dir = plan.fleet_dir
    present = journal.present()
    dfd = open_dir(fleet_dir)
    try:
        entries = set(os.listdir(dfd))
        plan.temporaries = ours_tmp_entries(fleet_dir, journal) or []
        for task in plan.tasks:
            st = require_regular(dfd, task.name, fleet_dir) if task.name in entries else None
            if st is None:
                plan.create.append(task)
                if task.name in present:
                    plan.missing.append(task.name)
                continue
            found = identity(st, task.name, dfd)
            if task.name in present and still_ours(journal, task.name, found):
                plan.present += 1
            elif (task.name in journal.made and ours(journal, task.name, found)) \
                    or same_file(journal.remade.get(task.name), found):
                plan.adopt.append(task)  # linked (or, by a refresh, renamed) into place before its "created" record
            else:
                plan.foreign.append(task.name)  # not recorded, or replaced since: never used nor overwritten
        wanted = {t.name for t in plan.tasks}
        unwanted = sorted((present | journal.made) - wanted)
        plan.remove = [n for n in unwanted if n in present or (
            n in entries and ours(journal, n, identity(os.stat(n, dir_fd=dfd, follow_symlinks=False), n, dfd)))]
    finally:
        os.close(dfd)
    replica_dir = fleet_dir / REPLICA_DIR
    if replica_dir.is_symlink():
        raise UsageError(f"{replica_dir}: is a symlink; clonefleet never follows links in a fleet directory")
    for i in range(1, plan.golden_images):
        path = plan.sources[i]
        if not replica_dir.is_dir():
            plan.replicas_to_make.append(i)
            continue
        rfd = open_dir(replica_dir)
        try:
            st = require_regular(rfd, path.name, replica_dir)
            replica = None if st is None else identity(st, path.name, rfd)
        finally:
            os.close(rfd)
        if replica is None:
            plan.replicas_to_make.append(i)
        elif not (ours(journal, replica_name(path), replica) if journal.identity_of(replica_name(path)) is not None
                  else replica_name(path) in journal.replicas):  # an older version's record: the name only
            raise UsageError(f"{path}: is not the GI replica clonefleet made under that name (another file, or one "
                             "put in its place); move it away, then rerun")


@contextmanager
def provisioned_plan(manifest: Manifest, backend: Backend, what: str) -> Iterator[FleetPlan]:
    """The plan of a fleet whose clones are all made, under the fleet's lock, for a step that works on
    them (``what``: writes, capacity); refused in one line when a clone is missing or not clonefleet's."""
    fleet_dir = fleet_dir_of(manifest.dest)
    if not fleet_dir.is_dir():
        raise UsageError(f"fleet {fleet_dir}: not provisioned yet (no such directory); run 'clonefleet provision "
                         f"{manifest.path}' first")
    with stop_on_signals(), fleet_lock(fleet_dir, what):
        plan = make_plan(manifest, backend)
        plan.require_own_files()
        if plan.create:
            raise UsageError(f"fleet {fleet_dir}: {len(plan.create) + len(plan.adopt)} of {len(plan.tasks)} "
                             f"clones are not provisioned yet; run 'clonefleet provision {manifest.path}' first")
        if plan.adopt:
            raise UsageError(f"fleet {fleet_dir}: {len(plan.adopt)} of {len(plan.tasks)} clones were put in place by "
                             f"a run that stopped before recording them; rerun it ('clonefleet provision "
                             f"{manifest.path}' or 'clonefleet refresh ...') to finish, then this")
        yield plan
