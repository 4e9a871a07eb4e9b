"""The provisioning engine: plan first, then apply; idempotent, resumable, one provisioner at a time.

:func:`make_plan` reads the manifest, the journal and the fleet directory and
decides, without changing anything, what a run must do: GI replicas to make,
clones to create, clones found on disk to adopt, clones the manifest no longer
wants, temporaries a killed run left. :func:`provision` takes the fleet's lock,
then applies that plan with parallel workers.

Crash safety rests on one rule: a clone only ever appears under its final name
complete. Each clone is made under a temporary name (``.cf-tmp.<name>``) in the
fleet directory, fsync'd, renamed into place, and only then journaled (the
journal is synced in groups). A run killed at any moment leaves at most
temporaries (removed by the next run) and complete clones without a journal
record (checked, then adopted by the next run); nothing is lost and nothing
half-made is ever taken for a clone.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clonefleet.backends import Backend, Prepared, Recipe, get_backend
from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.presets import Method
from clonefleet.provision import measure
from clonefleet.provision.journal import STATE_DIR, Journal, JournalState
from clonefleet.provision.manifest import Manifest, resolve_golden_images
from clonefleet.provision.safety import (
    GoldenImageInfo,
    check_golden_image,
    lstat_in,
    require_regular,
)

TMP_PREFIX = ".cf-tmp."


def temporary_name(name: str) -> str:
    """The temporary a clone or replica is made under: unique to this process, so a tool a killed
    run had started (and that may still be writing) never shares a file with a later run."""
    return f"{TMP_PREFIX}{os.getpid()}.{name}"
REPLICA_DIR = "golden"
LOCK_NAME = "lock"

#: progress(phase, done, total)
Progress = Callable[[str, int, int], None]


class FleetBusy(ClonefleetError):
    """Another clonefleet process holds the fleet's lock."""

    exit_code = 3


class ProvisionFailed(ClonefleetError):
    """A run stopped part way; the message says what was made, what failed and what to do."""

    exit_code = 1


def _no_progress(phase: str, done: int, total: int) -> None:
    return None


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
    remove: list[str] = field(default_factory=list)  # journaled clones no longer wanted
    temporaries: list[str] = field(default_factory=list)  # left by a killed run
    missing: list[str] = field(default_factory=list)  # journaled, but not on disk: made again
    failed_before: dict[str, str] = field(default_factory=dict)
    present: int = 0
    estimated_bytes: float = 0.0
    free_bytes: int = 0
    journal: JournalState = field(default_factory=JournalState)

    @property
    def fleet_dir(self) -> Path:
        return self.manifest.dest

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


# --- the fleet directory and its lock ---------------------------------------------------------------


@contextmanager
def fleet_lock(fleet_dir: Path, what: str) -> Iterator[None]:
    """Hold the fleet's lock (flock, released by the kernel even on SIGKILL); refuse if held."""
    state = fleet_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    if state.is_symlink():
        raise UsageError(f"{state}: is a symlink; clonefleet never follows links in a fleet directory")
    fd = os.open(state / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise FleetBusy(f"fleet {fleet_dir} is locked by {holder}: two clonefleet processes never work "
                            "on one fleet at once; wait for it to finish, then rerun") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"clonefleet {what} (pid {os.getpid()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _source_paths(manifest: Manifest, gi: GoldenImageInfo, g: int) -> list[Path]:
    suffix = gi.path.suffix if gi.path.suffix in (".qcow2", ".img", ".raw") else \
        (".qcow2" if gi.fmt == "qcow2" else ".img")
    return [gi.path] + [manifest.dest / REPLICA_DIR / f"gi-r{i + 1}{suffix}" for i in range(1, g)]


def _replica_name(path: Path) -> str:
    return f"{REPLICA_DIR}/{path.name}"


def _dir_fd(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def make_plan(manifest: Manifest, backend: Backend | None = None, check_gi: bool = True) -> FleetPlan:
    """Decide what a run must do; changes nothing. The GI is checked first (checksum included)."""
    backend = backend or get_backend(manifest.backend)
    fleet_dir = manifest.dest
    journal = Journal.read(fleet_dir) if fleet_dir.is_dir() else JournalState()
    expected_sha = manifest.gi_sha256 or journal.gi_sha256
    if check_gi:
        gi = check_golden_image(manifest.gi, expected_sha, manifest.max_chain_depth, manifest.gi_bytes)
    else:
        gi = check_golden_image(manifest.gi, None, manifest.max_chain_depth, None)
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
    _check_made_with(plan, journal)
    if not fleet_dir.is_dir():
        plan.create = list(tasks)
        plan.replicas_to_make = list(range(1, g))
    else:
        _reconcile(plan, journal)
    per_clone = _estimate_clone_bytes(plan)
    plan.estimated_bytes = per_clone * len(plan.create) + len(plan.replicas_to_make) * gi.file_bytes
    probe_dir = fleet_dir if fleet_dir.is_dir() else next(p for p in fleet_dir.parents if p.is_dir())
    st = os.statvfs(probe_dir)
    plan.free_bytes = st.f_bavail * st.f_frsize
    return plan


def _made_with(plan: FleetPlan) -> dict[str, object]:
    """What every clone of a fleet must share: backend, method, GI, clone format and options."""
    linked = plan.recipe.method is Method.SNAPSHOT  # linked clones depend on the GI's path and replicas
    return {"backend": plan.backend.name, "method": plan.recipe.method.value,
            "gi": str(plan.gi.path) if linked else None, "golden_images": plan.golden_images if linked else 1,
            "gi_sha256": plan.gi.sha256, "suffix": plan.recipe.suffix,
            "options": {k: str(v) for k, v in sorted(plan.recipe.options.items())}}


def _check_made_with(plan: FleetPlan, journal: JournalState) -> None:
    """Refuse a manifest that changed how the fleet's existing clones were made."""
    before = journal.made_with
    if before is None or not journal.present() or "options" not in before:
        return
    now = _made_with(plan)
    made = before["options"]
    changed = [k for k in now if made.get(k) != now[k]]
    if changed:
        key = changed[0]
        raise UsageError(f"fleet {plan.fleet_dir}: its clones were made with {key} = {made.get(key)!r}, the "
                         f"manifest now says {now[key]!r}; destroy the fleet first ('clonefleet destroy "
                         f"{plan.manifest.path} --yes'), or restore the manifest")


def _estimate_clone_bytes(plan: FleetPlan) -> float:
    f = plan.recipe.model_function
    if plan.recipe.method is Method.FULL:
        return float(plan.gi.virtual_bytes)
    if plan.recipe.method is Method.THIN:
        return f.clone_overhead_bytes + plan.gi.file_bytes
    return f.clone_overhead_bytes


def _forgotten_clones(plan: FleetPlan, dfd: int, names: set[str]) -> list[str]:
    """Clones of this fleet the manifest no longer wants whose journal record was lost (a crash
    after the rename, before a synced record): named by the template, made from this fleet's GI."""
    found = []
    suffix = plan.recipe.suffix
    for name in sorted(names):
        index = plan.manifest.clone_name.index_of(name.removesuffix(suffix)) if name.endswith(suffix) else None
        if index is None or index <= plan.manifest.count:
            continue
        st = lstat_in(dfd, name)
        if st is None or not stat.S_ISREG(st.st_mode):
            continue
        source = plan.sources[(index - 1) % plan.golden_images]
        if plan.backend.status(plan.recipe, plan.fleet_dir / name, source) is None:
            found.append(name)
    return found


def _reconcile(plan: FleetPlan, journal: JournalState) -> None:
    """Hold the journal against the directory: what exists, what is ours, what is left to do."""
    fleet_dir = plan.fleet_dir
    present = journal.present()
    dfd = _dir_fd(fleet_dir)
    try:
        entries = set(os.listdir(dfd))
        plan.temporaries = sorted(n for n in entries if n.startswith(TMP_PREFIX))
        for task in plan.tasks:
            st = require_regular(dfd, task.name, fleet_dir) if task.name in entries else None
            if st is None:
                plan.create.append(task)
                if task.name in present:
                    plan.missing.append(task.name)
            elif task.name in present:
                plan.present += 1
            else:
                plan.adopt.append(task)
        wanted = {t.name for t in plan.tasks}
        plan.remove = sorted(n for n in present if n not in wanted)  # absent ones: journaled as removed
        plan.remove += _forgotten_clones(plan, dfd, entries - wanted - present)
    finally:
        os.close(dfd)
    replica_dir = fleet_dir / REPLICA_DIR
    for i in range(1, plan.golden_images):
        path = plan.sources[i]
        if replica_dir.is_symlink():
            raise UsageError(f"{replica_dir}: is a symlink; clonefleet never follows links in a fleet directory")
        if not replica_dir.is_dir():
            plan.replicas_to_make.append(i)
            continue
        rfd = _dir_fd(replica_dir)
        try:
            st = require_regular(rfd, path.name, replica_dir)
        finally:
            os.close(rfd)
        if st is None:
            plan.replicas_to_make.append(i)
        elif _replica_name(path) not in journal.replicas:
            # A complete replica whose journal record a kill lost: adopt it only if it is the GI's copy.
            from clonefleet.provision.safety import sha256_file

            if sha256_file(path) != plan.gi.sha256:
                raise UsageError(f"{path}: exists, is not a copy of the GI and not in the journal; move it away")


# --- apply ---------------------------------------------------------------------------------------------


def _remove_entry(dir_path: Path, name: str) -> bool:
    """Remove one regular file or symlink (never followed) named ``name`` in ``dir_path``."""
    dfd = _dir_fd(dir_path)
    try:
        st = lstat_in(dfd, name)
        if st is None:
            return False
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{dir_path / name}: is a directory where clonefleet expects a file; remove it")
        os.unlink(name, dir_fd=dfd)
        return True
    finally:
        os.close(dfd)


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


def provision(manifest: Manifest, backend: Backend | None = None, progress: Progress = _no_progress,
              workers: int | None = None) -> ProvisionResult:
    """Bring the fleet directory to the manifest's desired state; safe to rerun after any interruption."""
    started = time.perf_counter()
    backend = backend or get_backend(manifest.backend)
    fleet_dir = manifest.dest
    made_dir = not fleet_dir.exists()
    fleet_dir.mkdir(parents=True, exist_ok=True)
    begun = False
    with fleet_lock(fleet_dir, "provision"):
        try:
            # the cheap steps most likely to fail first, before anything is made: the backend's probe
            # (tools, filesystem features; its scratch files live in the state folder), then the plan,
            # which checks the GI
            backend.probe(fleet_dir / STATE_DIR)
            plan = make_plan(manifest, backend)
            warnings: list[str] = []
            if plan.estimated_bytes > plan.free_bytes:
                warnings.append(f"the plan needs about {plan.estimated_bytes:.0f} bytes and {plan.free_bytes} "
                                "are free: the run may stop on a full disk (a rerun after freeing space finishes)")
            with Journal(fleet_dir) as journal:
                begun = True
                st = os.statvfs(fleet_dir)
                journal.append("begin", pid=os.getpid(), gi=str(plan.gi.path), gi_sha256=plan.gi.sha256,
                               method=plan.recipe.method.value, backend=backend.name, count=manifest.count,
                               options=_made_with(plan), df_used_bytes=(st.f_blocks - st.f_bfree) * st.f_frsize)
                temps = _clean_temporaries(plan)
                removed = _remove_unwanted(plan, journal, progress)
                replicas = _make_replicas(plan, journal)
                adopted = _adopt(plan, journal)
                created = _create_clones(plan, journal, progress, workers or manifest.workers)
                journal.append("done", clones=len(plan.tasks))
            gi_now = plan.gi.path.stat()
            if gi_now.st_size != plan.gi.file_bytes:
                raise ProvisionFailed(f"golden image {plan.gi.path} changed size during the run; "
                                      "check who writes it")
        except ClonefleetError:
            if made_dir and not begun:  # refused before anything was made: leave no trace (lock held)
                _remove_entry(fleet_dir / STATE_DIR, LOCK_NAME)
                _rmdir_quietly(fleet_dir / STATE_DIR)
                _rmdir_quietly(fleet_dir)
            raise
    return ProvisionResult(plan, created, adopted, removed, temps, replicas, time.perf_counter() - started,
                           tuple(warnings))


def _rmdir_quietly(path: Path) -> None:
    with suppress(OSError):
        path.rmdir()


def _clean_temporaries(plan: FleetPlan) -> int:
    count = 0
    state = plan.fleet_dir / STATE_DIR
    for entry in os.scandir(state):  # scratch of a killed run (templates, probes, measurements)
        if entry.name.startswith(".cf-"):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    for name in plan.temporaries:
        count += _remove_entry(plan.fleet_dir, name)
    replica_dir = plan.fleet_dir / REPLICA_DIR
    if replica_dir.is_dir() and not replica_dir.is_symlink():
        for name in os.listdir(replica_dir):
            if name.startswith(TMP_PREFIX):
                count += _remove_entry(replica_dir, name)
    return count


def _remove_unwanted(plan: FleetPlan, journal: Journal, progress: Progress) -> int:
    for i, name in enumerate(plan.remove, 1):
        if _is_regular(plan.fleet_dir, name):
            plan.backend.destroy(plan.fleet_dir / name)
        journal.append("removed", name=name)
        progress("remove", i, len(plan.remove))
    return len(plan.remove)


def _is_regular(dir_path: Path, name: str) -> bool:
    dfd = _dir_fd(dir_path)
    try:
        return require_regular(dfd, name, dir_path) is not None
    finally:
        os.close(dfd)


def _make_replicas(plan: FleetPlan, journal: Journal) -> int:
    made = 0
    for i in range(1, plan.golden_images):
        path = plan.sources[i]
        if i in plan.replicas_to_make:
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(temporary_name(path.name))
            try:
                plan.backend.replicate(plan.gi, tmp)
                os.chmod(tmp, 0o444)  # a GI replica is read-only, as the GI is
                os.rename(tmp, path)
            except BaseException as exc:
                tmp.unlink(missing_ok=True)
                if _is_no_space(exc):
                    raise ProvisionFailed(_space_message(plan, 0, f"GI replica {path.name}")) from None
                raise
            made += 1
        if _replica_name(path) not in plan.journal.replicas:
            journal.append("replica", name=_replica_name(path), sha256=plan.gi.sha256)
    journal.sync()
    return made


def _adopt(plan: FleetPlan, journal: Journal) -> int:
    """Complete clones a kill left without a journal record: checked, then journaled."""
    for task in plan.adopt:
        problem = plan.backend.status(plan.recipe, plan.fleet_dir / task.name, task.source)
        if problem is not None:
            raise UsageError(f"{plan.fleet_dir / task.name}: exists but is not a clone of this fleet "
                             f"({problem}); clonefleet will not overwrite it: move it away, then rerun")
        journal.append("adopted", name=task.name, index=task.index, replica=task.replica)
    return len(plan.adopt)


def _create_clones(plan: FleetPlan, journal: Journal, progress: Progress, workers: int) -> int:
    tasks = plan.create
    total = len(tasks)
    if not tasks:
        progress("create", 0, 0)
        return 0
    prepared: dict[int, Prepared] = {}
    for replica in sorted({t.replica for t in tasks}):
        prepared[replica] = plan.backend.prepare(plan.recipe, plan.sources[replica],
                                                 plan.fleet_dir / STATE_DIR)
    fleet_dir = plan.fleet_dir

    def make(task: CloneTask) -> CloneTask:
        tmp = fleet_dir / temporary_name(task.name)
        try:
            plan.backend.apply(plan.recipe, prepared[task.replica], tmp)
            os.rename(tmp, fleet_dir / task.name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return task

    done = 0
    failure: tuple[CloneTask, BaseException] | None = None
    window = max(4 * workers, 16)  # bounded in-flight work: memory does not grow with the fleet
    pending: dict[Future[CloneTask], CloneTask] = {}
    queue = iter(tasks)
    progress("create", 0, total)
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
                        journal.append("created", name=task.name, index=task.index, replica=task.replica)
                        done += 1
                        progress("create", done, total)
                    else:
                        journal.append("failed", name=task.name, index=task.index, reason=_describe(exc))
                        if failure is None:
                            failure = (task, exc)
                            for queued in [f for f in pending if f.cancel()]:  # not started: not tried
                                pending.pop(queued)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    journal.sync()
    if failure is not None:
        task, exc = failure
        made = plan.present + len(plan.adopt) + done
        if _is_no_space(exc):
            raise ProvisionFailed(_space_message(plan, made, task.name))
        raise ProvisionFailed(f"{task.name}: {_describe(exc)}; {made} of {len(plan.tasks)} clones made, "
                              f"the half-made file was removed; fix the cause, then rerun 'clonefleet "
                              f"provision {plan.manifest.path}'")
    return done


# --- status and destroy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CloneStatus:
    name: str
    state: str  # ok, missing, failed, damaged
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
    unwanted: tuple[str, ...]  # journaled clones the manifest no longer wants
    temporaries: tuple[str, ...]
    unknown: tuple[str, ...]  # entries of the fleet directory clonefleet did not make
    written: int
    locked_by: str | None

    def count(self, state: str) -> int:
        return sum(1 for c in self.clones if c.state == state)

    @property
    def in_sync(self) -> bool:
        return self.gi_ok and self.count("ok") == self.wanted and not self.unwanted and not self.temporaries

    def to_dict(self) -> dict[str, object]:
        return {
            "manifest": str(self.manifest.path), "fleet_dir": str(self.manifest.dest), "backend": self.backend,
            "method": self.method, "golden_images": self.golden_images, "gi_ok": self.gi_ok,
            "gi_detail": self.gi_detail, "wanted": self.wanted, "ok": self.count("ok"),
            "missing": self.count("missing"), "failed": self.count("failed"), "damaged": self.count("damaged"),
            "written": self.written, "unwanted": list(self.unwanted), "temporaries": list(self.temporaries),
            "unknown": list(self.unknown), "in_sync": self.in_sync, "locked_by": self.locked_by,
            "clones": [{"name": c.name, "state": c.state, "detail": c.detail} for c in self.clones],
        }


def _lock_holder(fleet_dir: Path) -> str | None:
    path = fleet_dir / STATE_DIR / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        return None
    finally:
        os.close(fd)


def status(manifest: Manifest, backend: Backend | None = None, verify: bool = False,
           progress: Progress = _no_progress) -> StatusReport:
    """Desired (the manifest) against actual (the journal and the directory); changes nothing."""
    from clonefleet.provision.safety import GoldenImageError

    backend = backend or get_backend(manifest.backend)
    try:
        plan = make_plan(manifest, backend)
        gi_ok, gi_detail = True, f"sha256 {plan.gi.sha256}"
    except GoldenImageError as exc:
        plan = make_plan(manifest, backend, check_gi=False)
        gi_ok, gi_detail = False, exc.message
    missing = {t.name for t in plan.create}
    failed = plan.failed_before
    clones: list[CloneStatus] = []
    for i, task in enumerate(plan.tasks, 1):
        if task.name in missing:
            state = "failed" if task.name in failed else "missing"
            clones.append(CloneStatus(task.name, state, failed.get(task.name, "")))
        else:
            problem = backend.status(plan.recipe, manifest.dest / task.name, task.source, deep=verify) \
                if verify else None
            clones.append(CloneStatus(task.name, "damaged" if problem else "ok", problem or ""))
        if verify:
            progress("verify", i, len(plan.tasks))
    known = {t.name for t in plan.tasks} | set(plan.remove) | set(plan.temporaries) | {STATE_DIR, REPLICA_DIR}
    if manifest.gi.parent == manifest.dest:
        known.add(manifest.gi.name)
    unknown = sorted(os.listdir(manifest.dest)) if manifest.dest.is_dir() else []
    return StatusReport(
        manifest=manifest, backend=backend.name, method=plan.recipe.method.value,
        golden_images=plan.golden_images, gi_ok=gi_ok, gi_detail=gi_detail, wanted=len(plan.tasks),
        clones=tuple(clones), unwanted=tuple(plan.remove), temporaries=tuple(plan.temporaries),
        unknown=tuple(n for n in unknown if n not in known),
        written=len(plan.journal.written() & {t.name for t in plan.tasks}),
        locked_by=_lock_holder(manifest.dest) if manifest.dest.is_dir() else None,
    )


@dataclass(frozen=True)
class DestroyResult:
    fleet_dir: Path
    removed: int
    replicas_removed: int
    temporaries_removed: int
    kept: tuple[str, ...]  # entries clonefleet did not make, left in place

    def to_dict(self) -> dict[str, object]:
        return {"fleet_dir": str(self.fleet_dir), "removed": self.removed,
                "replicas_removed": self.replicas_removed, "temporaries_removed": self.temporaries_removed,
                "kept": list(self.kept)}


def _backing_users(paths: Sequence[Path], replica: Path) -> list[str]:
    """Files among ``paths`` whose qcow2 backing file is ``replica`` (they still need it)."""
    from clonefleet.backends.qcow2 import read_header

    users = []
    for p in paths:
        try:
            header = read_header(p)
        except OSError:
            continue
        if header is not None and header[1] is not None and \
                os.path.abspath(os.path.join(p.parent, header[1])) == str(replica):
            users.append(p.name)
    return users


def destroy(manifest: Manifest, backend: Backend | None = None, progress: Progress = _no_progress) -> DestroyResult:
    """Remove the fleet's clones, then its GI replicas once no file uses them; never the GI, never
    anything outside the fleet directory, never a file clonefleet did not make."""
    backend = backend or get_backend(manifest.backend)
    fleet_dir = manifest.dest
    if not fleet_dir.is_dir():
        return DestroyResult(fleet_dir, 0, 0, 0, ())
    gi_id = os.stat(manifest.gi) if manifest.gi.exists() else None
    with fleet_lock(fleet_dir, "destroy"):
        state = Journal.read(fleet_dir)
        ours = sorted(state.present() | set(state.clones) | set(_unjournaled_clones(manifest, backend)))
        replica_names = set(state.replicas) | _replica_files(fleet_dir)
        removed = temps = replicas = 0
        with Journal(fleet_dir) as journal:
            entries = set(os.listdir(fleet_dir))
            for name in sorted(n for n in entries if n.startswith(TMP_PREFIX)):
                temps += _remove_entry(fleet_dir, name)
            for i, name in enumerate(ours, 1):
                if name in entries:
                    _check_not_gi(fleet_dir / name, gi_id)
                    if _is_regular(fleet_dir, name):
                        backend.destroy(fleet_dir / name)
                        removed += 1
                journal.append("removed", name=name)
                progress("destroy", i, len(ours))
            journal.sync()
            remaining = [fleet_dir / n for n in os.listdir(fleet_dir)
                         if n not in (STATE_DIR, REPLICA_DIR) and (fleet_dir / n).is_file()
                         and not (fleet_dir / n).is_symlink()]
            kept: list[str] = []
            replica_dir = fleet_dir / REPLICA_DIR
            for rname in sorted(replica_names):
                path = fleet_dir / rname
                users = _backing_users(remaining, path)
                if users:
                    kept.append(f"{rname} (still the backing file of {', '.join(users[:3])})")
                    continue
                if path.parent == replica_dir and path.exists() and _is_regular(replica_dir, path.name):
                    _check_not_gi(path, gi_id)
                    backend.destroy(path)
                    replicas += 1
                journal.append("replica-removed", name=rname)
            if replica_dir.is_dir() and not replica_dir.is_symlink():
                for name in os.listdir(replica_dir):
                    if name.startswith(TMP_PREFIX):
                        temps += _remove_entry(replica_dir, name)
                _rmdir_quietly(replica_dir)
            journal.append("destroyed", removed=removed)
        leftovers = sorted(n for n in os.listdir(fleet_dir) if n != STATE_DIR)
        kept.extend(leftovers)
        if not leftovers and not any("backing" in k for k in kept):
            for entry in os.scandir(fleet_dir / STATE_DIR):
                if entry.name == LOCK_NAME:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
        if not kept:  # still holding the lock: nobody can start on this fleet while it goes
            _remove_entry(fleet_dir / STATE_DIR, LOCK_NAME)
            _rmdir_quietly(fleet_dir / STATE_DIR)
            _rmdir_quietly(fleet_dir)
    return DestroyResult(fleet_dir, removed, replicas, temps, tuple(kept))


def _unjournaled_clones(manifest: Manifest, backend: Backend) -> list[str]:
    """Clones a killed run renamed into place but never journaled, recognised by name and source.
    Needs the GI (to know the recipe); without it, such files are left and listed as kept."""
    from clonefleet.provision.safety import GoldenImageError

    try:
        plan = make_plan(manifest, backend, check_gi=False)
    except (GoldenImageError, UsageError):
        return []
    found = [t.name for t in plan.adopt
             if backend.status(plan.recipe, manifest.dest / t.name, t.source) is None]
    return found + [n for n in plan.remove if n not in plan.journal.present()]


def _replica_files(fleet_dir: Path) -> set[str]:
    """GI replicas in the fleet's own ``golden/`` folder (named gi-r<N>.<ext> by clonefleet)."""
    folder = fleet_dir / REPLICA_DIR
    if not folder.is_dir() or folder.is_symlink():
        return set()
    return {f"{REPLICA_DIR}/{n}" for n in os.listdir(folder)
            if re.fullmatch(r"gi-r\d+\.(qcow2|img|raw)", n) and (folder / n).is_file()
            and not (folder / n).is_symlink()}


def _check_not_gi(path: Path, gi_id: os.stat_result | None) -> None:
    if gi_id is None:
        return
    st = os.stat(path, follow_symlinks=False)
    if (st.st_dev, st.st_ino) == (gi_id.st_dev, gi_id.st_ino):
        raise UsageError(f"{path}: is the golden image itself (same inode); clonefleet never removes a GI")


# --- a boot's writes -----------------------------------------------------------------------------------


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


def apply_writes(manifest: Manifest, backend: Backend | None = None, progress: Progress = _no_progress,
                 workers: int | None = None) -> WritesResult:
    """Write each clone's boot footprint into it (once: the journal records it; reruns skip it)."""
    from clonefleet.provision.bootwrites import footprint_for, model_fleet, write_footprint

    backend = backend or get_backend(manifest.backend)
    if not manifest.dest.is_dir():
        raise UsageError(f"fleet {manifest.dest} does not exist yet: run 'clonefleet provision "
                         f"{manifest.path}' first")
    with fleet_lock(manifest.dest, "writes"):
        plan = make_plan(manifest, backend)
        if plan.create or plan.adopt:
            raise UsageError(f"fleet {manifest.dest}: {len(plan.create) + len(plan.adopt)} of "
                             f"{len(plan.tasks)} clones are not provisioned yet: run 'clonefleet provision "
                             f"{manifest.path}' first")
        model = model_fleet(manifest, plan.gi)
        done_before = plan.journal.written()
        todo = [t for t in plan.tasks if t.name not in done_before]
        protected = [plan.gi.path, *plan.sources[1:]]
        total_bytes = 0
        with Journal(manifest.dest) as journal, \
                ThreadPoolExecutor(max_workers=workers or manifest.workers) as pool:
            def one(task: CloneTask) -> int:
                fp = footprint_for(manifest, model, task.index)
                return write_footprint(plan.recipe.clone_format, manifest.dest / task.name, fp, protected)

            futures = {pool.submit(one, t): t for t in todo}
            progress("writes", 0, len(todo))
            for n, future in enumerate(_as_completed(futures), 1):
                task = futures[future]
                written = future.result()
                total_bytes += written
                journal.append("written", name=task.name, index=task.index, bytes=written)
                progress("writes", n, len(todo))
    return WritesResult(clones=len(plan.tasks), written_now=len(todo), already=len(plan.tasks) - len(todo),
                        bytes_written=total_bytes, footprint=model.footprint_dict(), note=model.note)


def _as_completed(futures: dict[Future[int], CloneTask]) -> Iterator[Future[int]]:
    from concurrent.futures import as_completed

    try:
        yield from as_completed(futures)
    except BaseException:
        for f in futures:
            f.cancel()
        raise


def gi_used_bytes(gi: GoldenImageInfo) -> int:
    """G_used of the model, measured: the GI's data (qcow2 data clusters; for raw, the 4 KiB blocks
    inside data extents that are not all zero: what a sparse copy holds)."""
    if gi.fmt == "qcow2":
        return measure.qcow2_allocation(gi.path).own_data_bytes
    return nonzero_data_bytes(gi.path)


def nonzero_data_bytes(path: Path) -> int:
    """Bytes in the 4 KiB blocks of ``path``'s data extents (SEEK_DATA) that are not all zero."""
    from clonefleet.backends.qcow2 import data_chunks, nonzero_runs

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return sum(b - a for _, chunk in data_chunks(fd, os.fstat(fd).st_size, 1 << 20)
                   for a, b in nonzero_runs(chunk))
    finally:
        os.close(fd)
