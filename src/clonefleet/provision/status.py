"""Status: the manifest (desired) against the journal and the fleet directory (actual); changes nothing.

A GI that changed since the fleet was made is reported (``gi_ok`` false, not in sync) beside
everything else: the fleet is then held against the GI as it is now, without asking whether the
clones were made from it, and nothing advises destroying the fleet: restoring the GI is the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from clonefleet.backends import Backend, get_backend
from clonefleet.progress import Progress, no_progress
from clonefleet.provision.fleetdir import REPLICA_DIR, lock_holder
from clonefleet.provision.journal import STATE_DIR, Journal, JournalState
from clonefleet.provision.manifest import Manifest
from clonefleet.provision.plan import FleetPlan, make_plan
from clonefleet.storage.data import sha256_file
from clonefleet.storage.goldimage import GoldenImageError
from clonefleet.storage.tools import stop_on_signals


@dataclass(frozen=True)
class CloneStatus:
    name: str
    state: str  # ok, missing, failed, damaged, foreign (another file under its name), unchecked (no GI)
    detail: str = ""


@dataclass(frozen=True)
class StatusReport:
    manifest: Manifest
    backend: str
    method: str
    golden_images: int
    gi_ok: bool
    gi_detail: str
    wanted: int
    clones: tuple[CloneStatus, ...]
    unwanted: tuple[str, ...]  # clones of ours the manifest no longer wants
    temporaries: tuple[str, ...]  # in the private folder
    unknown: tuple[str, ...]  # entries of the fleet directory clonefleet did not make
    written: int
    locked_by: str | None
    verified: int = 0  # clones checked in depth (--verify): the backend's own check of each
    age_days_max: int = 0  # the oldest clone's days of daily writes ('writes --days'; 0 after a refresh)

    def count(self, state: str) -> int:
        return sum(1 for c in self.clones if c.state == state)

    @property
    def in_sync(self) -> bool:
        return self.gi_ok and self.count("ok") == self.wanted and not self.unwanted and not self.temporaries

    @property
    def advice(self) -> str:
        """"in sync", or what to do: the first cause that provisioning cannot fix comes first."""
        if self.in_sync:
            return "in sync"
        if not self.gi_ok:
            return ("NOT in sync: the golden image is not the one the fleet was made from (see above); restore "
                    "it, then rerun status: the clones are kept")
        if self.count("foreign"):
            return ("NOT in sync: some clone names hold files clonefleet did not make (foreign, listed above); "
                    "move them away, then run 'clonefleet provision'")
        return "NOT in sync: run 'clonefleet provision' to finish"

    def to_dict(self) -> dict[str, object]:
        return {
            "manifest": str(self.manifest.path), "fleet_dir": str(self.manifest.dest), "backend": self.backend,
            "method": self.method, "golden_images": self.golden_images, "gi_ok": self.gi_ok,
            "gi_detail": self.gi_detail, "wanted": self.wanted, "ok": self.count("ok"),
            "missing": self.count("missing"), "failed": self.count("failed"), "damaged": self.count("damaged"),
            "foreign": self.count("foreign"), "unchecked": self.count("unchecked"), "advice": self.advice,
            "verified": self.verified,
            "written": self.written, "age_days_max": self.age_days_max,
            "unwanted": list(self.unwanted), "temporaries": list(self.temporaries),
            "unknown": list(self.unknown), "in_sync": self.in_sync, "locked_by": self.locked_by,
            "clones": [{"name": c.name, "state": c.state, "detail": c.detail} for c in self.clones],
        }


def status(manifest: Manifest, backend: Backend | None = None, verify: bool = False,
           progress: Progress = no_progress) -> StatusReport:
    """Desired (the manifest) against actual (the journal and the directory); changes nothing."""
    backend = backend or get_backend(manifest.backend)
    with stop_on_signals():
        try:
            plan = make_plan(manifest, backend)
            gi_ok, gi_detail = True, f"sha256 {plan.gi.sha256}"
        except GoldenImageError as exc:
            gi_ok, gi_detail = False, f"{exc.message} (the clones are kept: restore the GI, then rerun status)"
            try:
                plan = make_plan(manifest, backend, check_gi=False)
            except GoldenImageError:  # no GI to hold the clones against at all (deleted, unreadable)
                if not (manifest.dest / STATE_DIR).is_dir():
                    raise  # nothing made yet: a manifest naming no GI is bad input, not a fleet to report
                return _without_gi(manifest, backend, gi_detail)
        if gi_ok and verify:
            gi_ok, gi_detail = _replicas_intact(plan, gi_ok, gi_detail)
        missing = {t.name for t in plan.create}
        foreign = set(plan.foreign)
        failed = plan.failed_before
        clones: list[CloneStatus] = []
        for i, task in enumerate(plan.tasks, 1):
            if task.name in missing:
                state = "failed" if task.name in failed else "missing"
                clones.append(CloneStatus(task.name, state, failed.get(task.name, "")))
            elif task.name in foreign:
                clones.append(CloneStatus(task.name, "foreign", "not the file clonefleet made under this name"))
            else:
                problem = backend.status(plan.recipe, manifest.dest / task.name, task.source, deep=verify) \
                    if verify else None
                clones.append(CloneStatus(task.name, "damaged" if problem else "ok", problem or ""))
            if verify:
                progress("verify", i, len(plan.tasks))
    known = {t.name for t in plan.tasks} | set(plan.remove) | {STATE_DIR, REPLICA_DIR}
    if manifest.gi.parent == manifest.dest:
        known.add(manifest.gi.name)
    unknown = sorted(os.listdir(manifest.dest)) if manifest.dest.is_dir() else []
    return StatusReport(
        manifest=manifest, backend=backend.name, method=plan.recipe.method.value,
        golden_images=plan.golden_images, gi_ok=gi_ok, gi_detail=gi_detail, wanted=len(plan.tasks),
        clones=tuple(clones), unwanted=tuple(plan.remove), temporaries=tuple(plan.temporaries),
        unknown=tuple(n for n in unknown if n not in known),
        written=len(plan.journal.written() & {t.name for t in plan.tasks}),
        locked_by=lock_holder(manifest.dest) if manifest.dest.is_dir() else None,
        verified=sum(1 for c in clones if c.state in ("ok", "damaged")) if verify else 0,
        age_days_max=max((plan.journal.age_of(t.name) for t in plan.tasks), default=0),
    )


def _replicas_intact(plan: FleetPlan, gi_ok: bool, gi_detail: str) -> tuple[bool, str]:
    """``--verify``: every GI replica clones read from is still a byte-for-byte copy of the GI."""
    for path in plan.sources[1:]:
        if path.exists() and sha256_file(path) != plan.gi.sha256:
            return False, (f"replica {path} is no longer a copy of the GI (its SHA-256 differs); the clones of "
                           "that replica read changed data: restore the replica from the GI")
    return gi_ok, gi_detail


def _without_gi(manifest: Manifest, backend: Backend, gi_detail: str) -> StatusReport:
    """Status when the GI cannot be read at all: what the journal says, nothing checked against a GI."""
    journal = Journal.read(manifest.dest) if manifest.dest.is_dir() else JournalState()
    present, failed = journal.present(), journal.failed()
    names = [(n, next((c for c in present if c.startswith(n + ".") or c == n), None))
             for n in (manifest.clone_name.name(i) for i in range(1, manifest.count + 1))]
    clones = tuple(
        CloneStatus(found, "unchecked", "the GI cannot be read: nothing to check the clone against") if found
        else CloneStatus(name, "failed" if name in failed else "missing", failed.get(name, ""))
        for name, found in names)
    return StatusReport(
        manifest=manifest, backend=backend.name, method=manifest.method.value,
        golden_images=manifest.golden_images or 0, gi_ok=False, gi_detail=gi_detail, wanted=manifest.count,
        clones=clones, unwanted=(), temporaries=(), unknown=(), written=len(journal.written()),
        locked_by=lock_holder(manifest.dest) if manifest.dest.is_dir() else None,
    )
