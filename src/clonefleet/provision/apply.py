"""Apply a plan: bring the fleet directory to the manifest's desired state; safe to rerun after any kill.

Crash safety rests on two rules. A clone only ever appears under its final name complete: it is
made in the run's private folder (:func:`clonefleet.provision.fleetdir.private_tmp`), fsync'd,
and hard-linked into place. And nothing appears under a final name that the journal cannot
recognise: a ``made`` record with the temporary's identity is synced before the link, the
``created`` record follows (synced in groups). A run killed at any moment leaves at most
temporaries in the private folder (emptied by the next run) and complete clones whose ``made``
record names them (adopted by the next run); nothing is lost, nothing half-made is taken for a
clone, and nothing foreign is ever removed.

The GI is watched during the run: each clone and replica made from it is checked against the
GI's stamp (a replica against its SHA-256), and the whole run again at the end; a GI that
changed fails the run, and the copies made from it in this run are removed.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from clonefleet.backends import Backend, Prepared, get_backend
from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.presets import Method
from clonefleet.progress import Progress, no_progress
from clonefleet.provision.fleetdir import (
    LOCK_NAME,
    REPLICA_DIR,
    fleet_dir_of,
    fleet_lock,
    is_regular,
    link_into_place,
    private_tmp,
    remove_ours,
    replace_ours,
    rmdir_quietly,
    temporary_path,
)
from clonefleet.provision.journal import STATE_DIR, Journal
from clonefleet.provision.manifest import Manifest
from clonefleet.provision.plan import CloneTask, FleetPlan, made_with, make_plan, replica_name
from clonefleet.storage.data import fsync_path, sha256_file
from clonefleet.storage.goldimage import GoldenImageError, gi_unchanged
from clonefleet.storage.paths import FileId, path_identity
from clonefleet.storage.tools import stop_on_signals

#: Longest a finished clone waits in the private folder for its group to be linked into place.
LINK_DELAY_S = 0.2


class ProvisionFailed(ClonefleetError):
    """A run stopped part way; the message says what was made, what failed and what to do."""

    exit_code = 1


@dataclass(frozen=True)
class ProvisionResult:
    plan: FleetPlan
    created: int
    adopted: int
    removed: int
    temporaries_removed: int
    replicas_made: int
    elapsed_s: float
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"plan": self.plan.to_dict(), "created": self.created, "adopted": self.adopted,
                "removed": self.removed, "temporaries_removed": self.temporaries_removed,
                "replicas_made": self.replicas_made, "elapsed_s": self.elapsed_s,
                "clones": len(self.plan.tasks), "warnings": list(self.warnings)}


def gi_changed_error(plan: FleetPlan) -> GoldenImageError:
    return GoldenImageError(f"golden image {plan.gi.path} changed while clones were made from it")


def _space_message(plan: FleetPlan, made: int, failed: str) -> str:
    st = os.statvfs(plan.fleet_dir)
    return (f"no space left in {plan.fleet_dir} ({st.f_bavail * st.f_frsize} bytes free): "
            f"{made} of {len(plan.tasks)} clones made; {failed} failed and its half-made file was removed "
            f"(the journal lists it as failed); free space, then rerun 'clonefleet provision "
            f"{plan.manifest.path}'")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClonefleetError):
        return exc.message
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def _is_no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def space_check(plan: FleetPlan, force: bool) -> list[str]:
    """Refuse a plan that needs more than the free space (exit 2, both numbers); with ``force``, a warning."""
    if plan.estimated_bytes <= plan.free_bytes:
        return []
    message = (f"the plan needs about {plan.estimated_bytes:.0f} bytes in {plan.fleet_dir} and "
               f"{plan.free_bytes} are free")
    if not force:
        raise UsageError(f"{message}: free space, or pass --force to start anyway (a run stopped by a full "
                         "disk is finished by a rerun)")
    return [f"{message}: the run may stop on a full disk (a rerun after freeing space finishes)"]


def provision(manifest: Manifest, backend: Backend | None = None, progress: Progress = no_progress,
              workers: int | None = None, force: bool = False) -> ProvisionResult:
    """Bring the fleet directory to the manifest's desired state; safe to rerun after any interruption.
    ``force``: start even when the plan needs more space than is free (a warning instead of a refusal)."""
    started = time.perf_counter()
    backend = backend or get_backend(manifest.backend)
    fleet_dir = fleet_dir_of(manifest.dest)
    made_dirs = [d for d in (fleet_dir, *fleet_dir.parents) if not d.exists()]  # the leaf first
    fleet_dir.mkdir(parents=True, exist_ok=True)
    begun = False
    with stop_on_signals(), fleet_lock(fleet_dir, "provision"):
        try:
            # the cheap steps most likely to fail first, before anything is made: the backend's probe
            # (tools, filesystem features), then the plan, which checks the GI, then the space
            backend.probe(fleet_dir / STATE_DIR)
            plan = make_plan(manifest, backend)
            plan.require_own_files()
            warnings = space_check(plan, force)
            with Journal(fleet_dir) as journal:
                begun = True
                st = os.statvfs(fleet_dir)
                journal.append("begin", pid=os.getpid(), gi=str(plan.gi.path), gi_sha256=plan.gi.sha256,
                               method=plan.recipe.method.value, backend=backend.name, count=manifest.count,
                               options=made_with(plan), df_used_bytes=(st.f_blocks - st.f_bfree) * st.f_frsize)
                tmp_dir, temps = private_tmp(fleet_dir, plan.journal, journal)
                removed = _remove_unwanted(plan, journal, progress)
                made_now: list[tuple[str, FileId]] = []
                try:
                    replicas = _make_replicas(plan, journal, tmp_dir, made_now)
                    adopted = adopt_clones(plan, journal)
                    created = create_clones(plan, journal, tmp_dir, progress, workers or manifest.workers,
                                             made_now)
                    if not gi_unchanged(plan.gi):
                        raise gi_changed_error(plan)
                except GoldenImageError as exc:
                    raise ProvisionFailed(undo_copies(plan, journal, made_now, exc)) from None
                journal.append("done", clones=len(plan.tasks))
        except ClonefleetError:
            if made_dirs and not begun:  # refused before anything was made: leave no trace (lock held)
                (fleet_dir / STATE_DIR / LOCK_NAME).unlink(missing_ok=True)
                rmdir_quietly(fleet_dir / STATE_DIR)
                for made in made_dirs:  # the fleet directory, then the parents this run created for it
                    rmdir_quietly(made)
            raise
    return ProvisionResult(plan, created, adopted, removed, temps, replicas, time.perf_counter() - started,
                           tuple(warnings))


def undo_copies(plan: FleetPlan, journal: Journal, made_now: list[tuple[str, FileId]],
                 exc: GoldenImageError) -> str:
    """The GI changed during the run: remove what this run copied from it (replicas; thin and full
    clones hold a copy of its data), journal that, and say so in one line."""
    copies = plan.recipe.method is not Method.SNAPSHOT
    undone = 0
    for name, ident in made_now:
        is_replica = name.startswith(f"{REPLICA_DIR}/")
        if not (is_replica or copies):
            continue
        folder, base = (plan.fleet_dir / REPLICA_DIR, name.split("/", 1)[1]) if is_replica else (plan.fleet_dir, name)
        undone += remove_ours(folder, base, ident)
        journal.append("replica-removed" if is_replica else "removed", name=name)
    journal.sync()
    return (f"{exc.message}: the run stopped and the {undone} copies it made from it were removed; a GI must not "
            f"change while clones are made from it: restore it (or record its new checksum with 'clonefleet "
            f"init --force'), then rerun 'clonefleet provision {plan.manifest.path}'")


def _remove_unwanted(plan: FleetPlan, journal: Journal, progress: Progress) -> int:
    removed = 0
    for i, name in enumerate(plan.remove, 1):
        ident = plan.journal.identity_of(name)
        if ident is not None:
            removed += remove_ours(plan.fleet_dir, name, ident)
        elif is_regular(plan.fleet_dir, name) and plan.backend.status(
                plan.recipe, plan.fleet_dir / name, plan.sources[0]) is None:
            plan.backend.destroy(plan.fleet_dir / name)  # a record of an older version: the clone checked first
            removed += 1
        journal.append("removed", name=name)
        progress("remove", i, len(plan.remove))
    return removed


def _make_replicas(plan: FleetPlan, journal: Journal, tmp_dir: Path,
                   made_now: list[tuple[str, FileId]]) -> int:
    made = 0
    for i in range(1, plan.golden_images):
        path = plan.sources[i]
        name = replica_name(path)
        if i in plan.replicas_to_make:
            path.parent.mkdir(exist_ok=True)
            tmp = temporary_path(tmp_dir, name)
            try:
                plan.backend.replicate(plan.gi, tmp)
                if sha256_file(tmp) != plan.gi.sha256:  # the copy verified: a GI written meanwhile is caught
                    raise gi_changed_error(plan)
                os.chmod(tmp, 0o444)  # a GI replica is read-only, as the GI is
                ident = path_identity(tmp)
                journal.append("made", name=name, **ident.fields())
                journal.sync()
                link_into_place(tmp, path)
            except BaseException as exc:
                tmp.unlink(missing_ok=True)
                if _is_no_space(exc):
                    raise ProvisionFailed(_space_message(plan, 0, f"GI replica {path.name}")) from None
                raise
            made_now.append((name, ident))
            journal.append("replica", name=name, sha256=plan.gi.sha256, **ident.fields())
            made += 1
        elif name not in plan.journal.replicas:
            journal.append("replica", name=name, sha256=plan.gi.sha256, **path_identity(path).fields())
    journal.sync()
    return made


def adopt_clones(plan: FleetPlan, journal: Journal) -> int:
    """Complete clones a kill linked into place before their ``created`` record: checked, then journaled.

    Called once the run's private folder is emptied (:func:`~clonefleet.provision.fleetdir.private_tmp`):
    a ``remade`` record whose clone was not renamed into place (so not adopted now) names a temporary
    that is gone, and is voided, so its identity can never match a file made later."""
    for task in plan.adopt:
        problem = plan.backend.status(plan.recipe, plan.fleet_dir / task.name, task.source)
        if problem is not None:
            raise UsageError(f"{plan.fleet_dir / task.name}: exists but is not a clone of this fleet "
                             f"({problem}); clonefleet will not overwrite it: move it away, then rerun")
        journal.append("adopted", name=task.name, index=task.index, replica=task.replica,
                       **path_identity(plan.fleet_dir / task.name).fields())
    adopted = {t.name for t in plan.adopt}
    for name in sorted(set(plan.journal.remade) - adopted):
        journal.append("remade-void", name=name)
    return len(plan.adopt)


def create_clones(plan: FleetPlan, journal: Journal, tmp_dir: Path, progress: Progress, workers: int,
                   made_now: list[tuple[str, FileId]], replace: Sequence[CloneTask] | None = None) -> int:
    """Make the plan's missing clones; or, given ``replace`` (a refresh), fresh clones of those tasks,
    each renamed over the old clone (:func:`clonefleet.provision.fleetdir.replace_ours`) once its
    ``remade`` record is durable."""
    refreshing = replace is not None
    tasks = list(replace) if replace is not None else plan.create
    what = "refresh" if refreshing else "create"
    total = len(tasks)
    if not tasks:
        progress(what, 0, 0)
        return 0
    prepared: dict[int, Prepared] = {}
    for replica in sorted({t.replica for t in tasks}):
        prepared[replica] = plan.backend.prepare(plan.recipe, plan.sources[replica], tmp_dir)
    fleet_dir = plan.fleet_dir

    def make(task: CloneTask) -> tuple[Path, FileId]:
        tmp = temporary_path(tmp_dir, task.name)
        try:
            plan.backend.apply(plan.recipe, prepared[task.replica], tmp)
            if not gi_unchanged(plan.gi):
                raise gi_changed_error(plan)
            return tmp, path_identity(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    done = 0
    failure: tuple[CloneTask, BaseException] | None = None
    window = max(4 * workers, 16)  # bounded in-flight work: memory does not grow with the fleet
    pending: dict[Future[tuple[Path, FileId]], CloneTask] = {}
    to_link: list[tuple[CloneTask, Path, FileId]] = []
    queue = iter(tasks)
    to_link_since = time.monotonic()

    def link_made() -> None:
        """The ``made`` records durable first, then the links: a kill between them leaves a clone the
        next run recognises."""
        nonlocal done
        if not to_link:
            return
        journal.sync()
        for task, tmp, ident in to_link:
            if refreshing:
                old = plan.journal.identity_of(task.name)
                assert old is not None, "refresh records an older version's clone by its identity first"
                replace_ours(tmp, fleet_dir, task.name, old)
            else:
                link_into_place(tmp, fleet_dir / task.name)
            made_now.append((task.name, ident))
            journal.append("created", name=task.name, index=task.index, replica=task.replica,
                           **ident.fields(), **({"refreshed": True} if refreshing else {}))
            done += 1
            progress(what, done, total)
        to_link.clear()

    progress(what, 0, total)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clonefleet") as pool:
        try:
            while True:
                while failure is None and len(pending) < window:
                    task = next(queue, None)
                    if task is None:
                        break
                    pending[pool.submit(make, task)] = task
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = pending.pop(future)
                    exc = future.exception()
                    if exc is None:
                        tmp, ident = future.result()
                        if refreshing:
                            fsync_path(tmp)  # the old clone is replaced: its successor's data durable first
                        journal.append("remade" if refreshing else "made", name=task.name, **ident.fields())
                        if not to_link:
                            to_link_since = time.monotonic()
                        to_link.append((task, tmp, ident))
                    else:
                        if not refreshing:  # a refresh that fails leaves the old clone, still present
                            journal.append("failed", name=task.name, index=task.index, reason=_describe(exc))
                        if failure is None:
                            failure = (task, exc)
                            for queued in [f for f in pending if f.cancel()]:  # not started: not tried
                                pending.pop(queued)
                # link in groups (one journal sync each), yet soon after a slow copy: a kill loses little
                if to_link and (len(to_link) >= journal.group or not pending
                                or time.monotonic() - to_link_since >= LINK_DELAY_S):
                    link_made()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    link_made()
    journal.sync()
    if failure is not None:
        task, exc = failure
        if isinstance(exc, GoldenImageError):
            raise exc
        if refreshing:
            raise ProvisionFailed(f"{task.name}: {_describe(exc)}; {done} of {total} clones refreshed, the others "
                                  f"kept as they were and the half-made file removed; fix the cause, then rerun "
                                  f"'clonefleet refresh {plan.manifest.path}'")
        made = plan.present + len(plan.adopt) + done
        if _is_no_space(exc):
            raise ProvisionFailed(_space_message(plan, made, task.name))
        raise ProvisionFailed(f"{task.name}: {_describe(exc)}; {made} of {len(plan.tasks)} clones made, "
                              f"the half-made file was removed; fix the cause, then rerun 'clonefleet "
                              f"provision {plan.manifest.path}'")
    return done
