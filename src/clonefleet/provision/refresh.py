"""Refresh: reset clones to their GI by making each one anew (a recreate), crash-safe like provision.

A refreshed clone is a fresh clone of its GI (or GI replica), as provision makes it: its boot writes
and its days of daily writes are gone, and the journal says so (its ``created`` record, marked
``refreshed``, resets both). Non-persistent pools do this at every logoff, others every k days; the
growth model's Eq. G3 counts a clone's age from it.

Each new clone is made under a temporary name in the fleet's private folder, fsync'd, recorded
(``remade``, with its identity, synced), then renamed over the old clone, which must still be the file
clonefleet made under that name (:func:`clonefleet.provision.fleetdir.replace_ours`); the ``created``
record follows. A kill at any moment leaves every clone old or fresh, never missing: before the
rename the old clone is in place (the temporary is emptied by the next run); after it the new clone is,
and the next run adopts it by its ``remade`` identity. A rerun starts over: every selected clone is made
anew again (``--older-than`` skips those a killed run refreshed). One exception to "never missing": a
GI that changes during the refresh of thin or full clones has the copies made from it removed
(:func:`~clonefleet.provision.apply.undo_copies`), and 'clonefleet provision' makes them again. A clone
an older version journaled without its identity is refreshed only once the backend recognises it.
Backend rbd: not supported yet.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from clonefleet.backends import Backend, get_backend
from clonefleet.errors import UsageError
from clonefleet.lifetime import check_days
from clonefleet.progress import Progress, no_progress
from clonefleet.provision.apply import ProvisionFailed, adopt_clones, create_clones, gi_changed_error, undo_copies
from clonefleet.provision.fleetdir import fleet_dir_of, fleet_lock, private_tmp
from clonefleet.provision.journal import STATE_DIR, Journal
from clonefleet.provision.manifest import Manifest
from clonefleet.provision.plan import CloneTask, FleetPlan, make_plan
from clonefleet.storage.goldimage import GoldenImageError, gi_unchanged
from clonefleet.storage.paths import FileId, path_identity
from clonefleet.storage.tools import stop_on_signals


@dataclass(frozen=True)
class RefreshResult:
    fleet_dir: str
    clones: int  # in the fleet
    refreshed: tuple[str, ...]  # made anew by this run
    adopted: int  # fresh clones a killed refresh had renamed into place, recorded now
    temporaries_removed: int
    elapsed_s: float

    def to_dict(self) -> dict[str, object]:
        return {"fleet_dir": self.fleet_dir, "clones": self.clones, "refreshed": len(self.refreshed),
                "refreshed_clones": list(self.refreshed), "adopted": self.adopted,
                "temporaries_removed": self.temporaries_removed, "elapsed_s": self.elapsed_s}


def select_clones(plan: FleetPlan, names: Sequence[str] = (), older_than_days: int | None = None) -> list[CloneTask]:
    """The clones to refresh: every clone, or those named (with or without the file suffix), and of those,
    with ``older_than_days``, the ones holding more days of daily writes than that."""
    tasks = plan.tasks
    if names:
        by_name = {t.name: t for t in tasks} | {t.name.removesuffix(plan.recipe.suffix): t for t in tasks}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise UsageError(f"--clones {unknown[0]!r}: not a clone of fleet {plan.manifest.name}; give clone names "
                             f"such as {tasks[0].name.removesuffix(plan.recipe.suffix)} ({len(tasks)} clones)")
        wanted = {by_name[n].name for n in names}
        tasks = [t for t in tasks if t.name in wanted]
    if older_than_days is not None:
        check_days(older_than_days, "--older-than")
        tasks = [t for t in tasks if plan.journal.age_of(t.name) > older_than_days]
    return tasks


def _record_older_clones(plan: FleetPlan, journal: Journal, selected: Sequence[CloneTask]) -> None:
    """A clone an older version journaled without its identity is replaced only once the backend
    recognises it as a whole clone of this fleet; it is then journaled with the identity it has now."""
    for task in selected:
        if plan.journal.identity_of(task.name) is not None:
            continue
        path = plan.fleet_dir / task.name
        problem = plan.backend.status(plan.recipe, path, task.source)
        if problem is not None:
            raise UsageError(f"{path}: is not a clone of this fleet ({problem}); an older clonefleet recorded the "
                             "name without the file's identity, and clonefleet will not replace a file it cannot "
                             "tell is its own: move it away, then rerun")
        ident = path_identity(path)
        journal.append("adopted", name=task.name, index=task.index, replica=task.replica, **ident.fields())
        plan.journal.identities[task.name] = ident
    journal.sync()


def refresh(manifest: Manifest, backend: Backend | None = None, progress: Progress = no_progress,
            workers: int | None = None, clones: Sequence[str] = (), older_than_days: int | None = None
            ) -> RefreshResult:
    """Make the selected clones (:func:`select_clones`) anew from their GI; safe to rerun after a kill."""
    started = time.perf_counter()
    if manifest.rbd is not None:
        raise UsageError("refresh: not supported on backend rbd yet; 'clonefleet destroy' then 'clonefleet "
                         "provision' makes every clone anew")
    backend = backend or get_backend(manifest.backend)
    fleet_dir = fleet_dir_of(manifest.dest)
    if not fleet_dir.is_dir():
        raise UsageError(f"fleet {fleet_dir}: not provisioned yet (no such directory); run 'clonefleet provision "
                         f"{manifest.path}' first")
    with stop_on_signals(), fleet_lock(fleet_dir, "refresh"):
        backend.probe(fleet_dir / STATE_DIR)
        plan = make_plan(manifest, backend)
        plan.require_own_files()
        if plan.create:
            raise UsageError(f"fleet {fleet_dir}: {len(plan.create)} of {len(plan.tasks)} clones are missing; run "
                             f"'clonefleet provision {manifest.path}' first")
        adopted_names = {t.name for t in plan.adopt}
        selected = [t for t in select_clones(plan, clones, older_than_days) if t.name not in adopted_names]
        with Journal(fleet_dir) as journal:
            journal.append("refresh", pid=os.getpid(), clones=len(selected))
            _record_older_clones(plan, journal, selected)
            tmp_dir, temps = private_tmp(fleet_dir, plan.journal, journal)
            adopted = adopt_clones(plan, journal)  # renamed into place by a killed refresh: fresh already
            made_now: list[tuple[str, FileId]] = []
            try:
                create_clones(plan, journal, tmp_dir, progress, workers or manifest.workers, made_now,
                               replace=selected)
                if not gi_unchanged(plan.gi):
                    raise gi_changed_error(plan)
            except GoldenImageError as exc:
                raise ProvisionFailed(undo_copies(plan, journal, made_now, exc)) from None
    return RefreshResult(str(fleet_dir), len(plan.tasks), tuple(t.name for t in selected), adopted, temps,
                         time.perf_counter() - started)
