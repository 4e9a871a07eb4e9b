"""Fleets on Ceph RBD (backend ``rbd``): provision, status, flatten, boot writes, capacity, destroy.

The manifest is the same as for file backends, with an ``[rbd]`` table (``conf``, ``pool``,
``client``, ``keyring``, ``replica_pools``, ``max_clone_depth``, timeouts). The fleet directory
(``fleet.dest``) holds only the journal and the lock; the images live in the cluster:

- the GI, imported from the manifest's qcow2 or raw file as ``<fleet>.gi`` with a protected
  snapshot ``clonefleet-gi``; GI replicas ``<fleet>.gi-r<i>`` (copies, each with its own protected
  snapshot) in ``rbd.pool`` or spread over ``rbd.replica_pools``;
- one image per clone, ``<fleet>.<clone name>``, in ``rbd.pool``.

What is ours is what the journal names with the image id Ceph gave it. Crash safety: before a
group of images is made, an ``rbd-intent`` record naming them is synced; after it, an
``rbd-created`` record with each image's id. A run killed in between leaves images the next run
finds under intended names: a whole clone of the right snapshot (its parent checked, and listed
among the snapshot's children) is adopted, anything else made under an intended name (a half-made
clone or copy) is removed and made again. A name that exists without our intent or id is never
touched. ``destroy`` removes the clones, then the replicas, then unprotects the GI snapshot and
removes it once no clone of anyone uses it; it never removes the GI image.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clonefleet.backends.base import CloneUsage, Usage
from clonefleet.backends.rbd import GI_SNAPSHOT, Cluster, RbdConfig, RbdError, connect, model_function
from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.presets import Method
from clonefleet.progress import Progress, no_progress
from clonefleet.provision.fleetdir import LOCK_NAME, fleet_dir_of, fleet_lock, rmdir_quietly
from clonefleet.provision.journal import STATE_DIR, Journal, decode
from clonefleet.provision.manifest import Manifest, resolve_golden_images
from clonefleet.provision.pool import completed_or_cancel, worker_pool
from clonefleet.storage.goldimage import GoldenImageInfo, check_golden_image, gi_used_bytes

if TYPE_CHECKING:
    from clonefleet.provision.capacity import CapacityReport
from clonefleet.storage.tools import copy_timeout_s, stop_on_signals

#: Images made per group: one synced intent record before, one sync of their ids after.
GROUP = 64
#: Slack on the comparison of an image's creation time with its intent record (clock resolution).
CLOCK_SLACK_S = 2.0


#: Operation timeouts (rados_osd_op_timeout) in which the cluster answers none of a run's calls, operations
#: pending, before the run counts as stalled: librbd retries a watch on a stopped OSD for ever, which no
#: client timeout bounds.
STALL_OPS = 4


class RbdStalled(RbdError):
    """The cluster answered no call of a run for :data:`STALL_OPS` operation timeouts while operations
    were pending: it stopped answering; the threads stuck in librbd are left behind (the CLI exits without them)."""

    abandons_threads = True


def _stall_s(cluster: Cluster) -> float:
    return STALL_OPS * cluster.config.op_timeout_s


def _stalled(cluster: Cluster, did: Callable[[], str], rerun: str, pending: int) -> RbdStalled:
    """The error of a run none of whose operations finished within :func:`_stall_s`: the connection is
    abandoned (threads are stuck in it) and the line says what was done and how to finish."""
    cluster.abandon()
    return RbdStalled(f"the cluster did not answer within {_stall_s(cluster):g} s: {pending} operations still "
                      f"waiting (an OSD down or unreachable?); {did()}; check 'ceph -c {cluster.config.conf} -s', "
                      f"then rerun '{rerun}' (it finishes the job)")


class RbdProvisionFailed(ClonefleetError):
    exit_code = 1


# --- names --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """The GI (replica 0) or one replica: the image clones are made from, and its pool."""

    replica: int
    pool: str
    image: str


@dataclass(frozen=True)
class Task:
    name: str  # the clone name (vm-0001)
    index: int
    image: str  # <fleet>.<clone name>
    source: Source


def gi_image(manifest: Manifest) -> str:
    return f"{manifest.name}.gi"


def config_of(manifest: Manifest) -> RbdConfig:
    if manifest.rbd is None:
        raise UsageError(f"manifest {manifest.path}: backend {manifest.backend}, not rbd")
    return manifest.rbd


def sources_of(manifest: Manifest) -> list[Source]:
    config = config_of(manifest)
    g = resolve_golden_images(manifest)
    return [Source(0, config.pool, gi_image(manifest))] + [
        Source(i, config.replica_pool(i), f"{manifest.name}.gi-r{i + 1}") for i in range(1, g)]


def tasks_of(manifest: Manifest, sources: Sequence[Source]) -> list[Task]:
    return [Task(manifest.clone_name.name(i), i, f"{manifest.name}.{manifest.clone_name.name(i)}",
                 sources[(i - 1) % len(sources)]) for i in range(1, manifest.count + 1)]


# --- the journal --------------------------------------------------------------------------------

@dataclass
class RbdJournal:
    """The journal replayed: what clonefleet made in the cluster, by image id."""

    sources: dict[int, dict[str, Any]] = field(default_factory=dict)  # replica -> record (id, pool, image)
    clones: dict[str, dict[str, Any]] = field(default_factory=dict)  # clone name -> created record
    intents: dict[str, float] = field(default_factory=dict)  # image key "pool/image" -> time of intent
    written: set[str] = field(default_factory=set)
    flattened: set[str] = field(default_factory=set)
    gi_sha256: str | None = None
    clients: set[str] = field(default_factory=set)  # client addresses of the runs that used the cluster
    records: int = 0


def read_journal(fleet_dir: Path) -> RbdJournal:
    state = RbdJournal()
    try:
        with open(fleet_dir / STATE_DIR / "journal.jsonl", encoding="utf-8", errors="replace", newline="") as f:
            lines = list(f)
    except FileNotFoundError:
        return state
    for line in lines:
        r = decode(line)
        if r is None:
            continue
        state.records += 1
        op = r.get("op")
        if op == "rbd-intent":
            for key in r.get("images", []):
                state.intents[str(key)] = float(r.get("t", 0))
        elif op == "rbd-source":
            state.sources[int(r["replica"])] = r
            state.intents.pop(f"{r['pool']}/{r['image']}", None)
            if int(r["replica"]) == 0:
                state.gi_sha256 = str(r.get("sha256"))
        elif op == "rbd-source-removed":
            state.sources.pop(int(r["replica"]), None)
        elif op in ("rbd-created", "rbd-adopted"):
            state.clones[str(r["name"])] = r
            state.intents.pop(f"{r['pool']}/{r['image']}", None)
            state.flattened.discard(str(r["name"]))
            state.written.discard(str(r["name"]))
        elif op == "rbd-removed":
            state.clones.pop(str(r["name"]), None)
            state.intents.pop(f"{r['pool']}/{r['image']}", None)
            state.written.discard(str(r["name"]))
            state.flattened.discard(str(r["name"]))
        elif op == "rbd-intent-cleared":
            state.intents.pop(str(r["image"]), None)
        elif op == "rbd-written":
            state.written.add(str(r["name"]))
        elif op == "rbd-flattened":
            state.flattened.add(str(r["name"]))
        elif op == "rbd-client" and isinstance(r.get("addr"), str):
            state.clients.add(str(r["addr"]))
    return state


@contextmanager
def _session(manifest: Manifest, what: str, create_dir: bool = False) -> Iterator[tuple[Path, Cluster]]:
    """The fleet directory locked for ``what``, signals handled, and a connection to the cluster."""
    fleet_dir = fleet_dir_of(manifest.dest)
    made_dirs = [d for d in (fleet_dir / STATE_DIR, fleet_dir, *fleet_dir.parents) if not d.exists()]
    if create_dir:
        (fleet_dir / STATE_DIR).mkdir(parents=True, exist_ok=True)
    elif not fleet_dir.is_dir():
        raise UsageError(f"fleet {fleet_dir}: not provisioned yet (no such directory); run 'clonefleet provision "
                         f"{manifest.path}' first")
    with stop_on_signals(), fleet_lock(fleet_dir, what):
        try:
            cluster = connect(config_of(manifest))
        except ClonefleetError:
            if create_dir and made_dirs:  # refused before anything was made: leave no trace (lock held)
                (fleet_dir / STATE_DIR / LOCK_NAME).unlink(missing_ok=True)
                for made in made_dirs:
                    rmdir_quietly(made)
            raise
        try:
            with Journal(fleet_dir) as journal:  # who this run is, for a later run to recognise its watches
                journal.append("rbd-client", pid=os.getpid(), addr=cluster.address(), what=what)
            yield fleet_dir, cluster
        finally:
            cluster.close()


# --- provision ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RbdProvisionResult:
    manifest: Manifest
    method: str
    golden_images: int
    clones: int
    created: int
    adopted: int
    remade: int  # half-made images under intended names, removed and made again
    removed: int
    sources_made: int
    elapsed_s: float

    def to_dict(self) -> dict[str, object]:
        return {"manifest": str(self.manifest.path), "backend": "rbd", "method": self.method,
                "golden_images": self.golden_images, "clones": self.clones, "created": self.created,
                "adopted": self.adopted, "remade": self.remade, "removed": self.removed,
                "sources_made": self.sources_made, "elapsed_s": self.elapsed_s,
                "pool": config_of(self.manifest).pool}


def _fields(record: dict[str, Any], **changes: object) -> dict[str, Any]:
    """A record's fields (without ``op`` and ``t``) with ``changes``, to append it again."""
    return {**{k: v for k, v in record.items() if k not in ("op", "t")}, **changes}


def _check_gi(manifest: Manifest, journal: RbdJournal) -> GoldenImageInfo:
    return check_golden_image(manifest.gi, manifest.gi_sha256 or journal.gi_sha256, manifest.max_chain_depth,
                              manifest.gi_bytes, not_same_as=manifest.path)


def _foreign(pool: str, image: str, what: str) -> UsageError:
    return UsageError(f"rbd image {pool}/{image}: exists but clonefleet did not make it (no record of it in "
                      f"the fleet's journal); clonefleet never uses, overwrites or removes it: rename or remove it "
                      f"yourself, or change the fleet's name ({what})")


def _ensure_sources(manifest: Manifest, cluster: Cluster, journal: Journal, state: RbdJournal,
                    gi: GoldenImageInfo, sources: Sequence[Source]) -> int:
    """The GI image and the replicas, each with its protected snapshot; returns how many were made."""
    made = 0
    for src in sources:
        key = f"{src.pool}/{src.image}"
        rec = state.sources.get(src.replica)
        current = cluster.images(src.pool).get(src.image)
        if rec is not None and current is not None and rec.get("id") == current and rec.get("pool") == src.pool:
            if rec.get("sha256") != gi.sha256:
                raise UsageError(f"rbd image {key}: holds an older GI (SHA-256 {str(rec.get('sha256'))[:16]}...); "
                                 f"destroy the fleet ('clonefleet destroy {manifest.path} --yes'), remove the image "
                                 f"('rbd rm {key}'), then provision again")
            cluster.clear_watchers(src.pool, src.image, ended(cluster, state), f"checking GI image {key}")
            snap = cluster.snapshot_id(src.pool, src.image)
            if snap is None or snap != rec.get("snap_id"):  # destroyed earlier (the snapshot released): make it again
                snap = cluster.protected_snapshot(src.pool, src.image)
                journal.append("rbd-source", **_fields(rec, snap_id=snap))
                journal.sync()
            continue
        if current is not None:
            if key not in state.intents:
                raise _foreign(src.pool, src.image, "the GI or a replica's name")
            cluster.remove(src.pool, src.image, ended(cluster, state))  # ours, half-made by a killed run
        journal.append("rbd-intent", images=[key])
        journal.sync()
        if src.replica == 0:
            cluster.import_image(manifest.gi, gi.fmt, src.pool, src.image, copy_timeout_s(gi.virtual_bytes))
        else:
            base = sources[0]
            with cluster.op(f"copying the GI to replica {key}"):
                cluster.copy_sparse(base.pool, base.image, src.pool, src.image)
        snap = cluster.protected_snapshot(src.pool, src.image)
        image_id = cluster.images(src.pool)[src.image]
        journal.append("rbd-source", replica=src.replica, pool=src.pool, image=src.image, id=image_id, snap_id=snap,
                       sha256=gi.sha256)
        journal.sync()
        made += 1
    return made


def _clone_ok(cluster: Cluster, task: Task, method: Method, children: dict[tuple[str, str], set[str]]) -> str | None:
    """None when the image under the task's name is a whole clone of the task's source; else why not."""
    try:
        parent = cluster.parent_of(task.source.pool, task.image)
    except (cluster.rbd.Error, cluster.rados.Error) as exc:
        return f"cannot be opened ({exc})"
    if method is not Method.SNAPSHOT:
        return None if parent is None else f"has a parent {parent}"
    if parent != (task.source.pool, task.source.image, GI_SNAPSHOT):
        return f"its parent is {parent}, not {task.source.pool}/{task.source.image}@{GI_SNAPSHOT}"
    if task.image not in children[(task.source.pool, task.source.image)]:
        return "not listed among the GI snapshot's children"
    return None


def _children_of(cluster: Cluster, sources: Iterable[Source]) -> dict[tuple[str, str], set[str]]:
    return {(s.pool, s.image): {name for pool, name, _ in cluster.children(s.pool, s.image) if pool == s.pool}
            for s in sources}


def _made_after(cluster: Cluster, pool: str, image: str, since: float) -> bool:
    """The image was created after ``since`` (its intent record): made by that run, not before it. An
    image listed but without a header to open is one a killed run left half-made (the name was free when
    the intent was recorded): made after it too."""
    with cluster.op(f"reading image {pool}/{image}"):
        try:
            with cluster.image(pool, image, read_only=True) as im:
                created = im.create_timestamp()
        except cluster.rbd.ImageNotFound:
            return True
    return bool(created.timestamp() >= since - CLOCK_SLACK_S)


def _make(cluster: Cluster, task: Task, method: Method) -> None:
    with cluster.op(f"making clone {task.source.pool}/{task.image}"):
        if method is Method.SNAPSHOT:
            cluster.clone(task.source.pool, task.source.image, task.source.pool, task.image)
        elif method is Method.THIN:
            cluster.copy_sparse(task.source.pool, task.source.image, task.source.pool, task.image)
        else:
            cluster.copy_thick(task.source.pool, task.source.image, task.source.pool, task.image)


def provision(manifest: Manifest, progress: Progress = no_progress, workers: int | None = None) -> RbdProvisionResult:
    """Bring the cluster to the manifest's desired state; safe to rerun after any interruption."""
    started = time.perf_counter()
    config = config_of(manifest)
    method = manifest.method
    sources = sources_of(manifest)
    if method is Method.SNAPSHOT and config.max_clone_depth < 2:
        raise UsageError(f"rbd.max_clone_depth = {config.max_clone_depth}: a clone of the GI image is 2 deep "
                         "(the GI, then the clone); allow at least 2, or use method thin or full")
    tasks = tasks_of(manifest, sources)
    workers = workers or max(manifest.workers, 16)
    with _session(manifest, "provision", create_dir=True) as (fleet_dir, cluster):
        state = read_journal(fleet_dir)
        gi = _check_gi(manifest, state)
        with Journal(fleet_dir, group=GROUP) as journal:
            journal.append("begin", pid=os.getpid(), gi=str(gi.path), gi_sha256=gi.sha256, method=method.value,
                           backend="rbd", count=manifest.count, pool=config.pool)
            made_sources = _ensure_sources(manifest, cluster, journal, state, gi, sources)
            if method is Method.SNAPSHOT:
                depth = max(cluster.depth(s.pool, s.image) for s in sources) + 1
                if depth > config.max_clone_depth:
                    raise UsageError(f"rbd.max_clone_depth = {config.max_clone_depth}: the clones would be "
                                     f"{depth} deep; flatten the GI image or raise the limit")
            pools = {s.pool for s in sources}
            existing = {p: cluster.images(p) for p in pools}
            children = _children_of(cluster, sources) if method is Method.SNAPSHOT else {}
            create: list[Task] = []
            adopted = remade = removed = 0
            wanted = {t.name for t in tasks}
            for name, rec in sorted(state.clones.items()):  # ours, no longer wanted
                if name not in wanted and existing.get(rec["pool"], {}).get(rec["image"]) == rec["id"]:
                    cluster.remove(rec["pool"], rec["image"], ended(cluster, state))
                    journal.append("rbd-removed", name=name, pool=rec["pool"], image=rec["image"])
                    removed += 1
            for task in tasks:
                key = f"{task.source.pool}/{task.image}"
                current = existing[task.source.pool].get(task.image)
                made = state.clones.get(task.name)
                if made is not None and current is not None and made.get("id") == current:
                    continue  # present, ours
                if current is None:
                    create.append(task)
                    continue
                if key not in state.intents or not _made_after(cluster, task.source.pool, task.image,
                                                               state.intents[key]):
                    raise _foreign(task.source.pool, task.image, "a clone's name")
                if method is Method.SNAPSHOT and _clone_ok(cluster, task, method, children) is None:
                    journal.append("rbd-adopted", name=task.name, index=task.index, pool=task.source.pool,
                                   image=task.image, id=current, replica=task.source.replica)
                    adopted += 1
                    continue
                cluster.remove(task.source.pool, task.image, ended(cluster, state))  # ours, half-made: made again
                remade += 1
                create.append(task)
            journal.sync()
            created = _create(cluster, journal, state, create, method, workers, progress, manifest)
            journal.append("done", clones=len(tasks))
    return RbdProvisionResult(manifest, method.value, len(sources), len(tasks), created, adopted, remade, removed,
                              made_sources, time.perf_counter() - started)


def _create(cluster: Cluster, journal: Journal, state: RbdJournal, tasks: list[Task], method: Method,
            workers: int, progress: Progress, manifest: Manifest) -> int:
    total = len(tasks)
    progress("create", 0, total)
    done = 0
    failure: tuple[Task, BaseException] | None = None
    stalled = partial(_stalled, cluster, lambda: f"{done} of {total} clones made in this run",
                      f"clonefleet provision {manifest.path}")
    with worker_pool(workers, "clonefleet-rbd") as pool:
        for start in range(0, total, GROUP):
            group = tasks[start:start + GROUP]
            journal.append("rbd-intent", images=[f"{t.source.pool}/{t.image}" for t in group])
            journal.sync()
            futures: dict[Future[None], Task] = {pool.submit(_make_retrying, cluster, t, method, state): t
                                                 for t in group}
            made: list[Task] = []
            for future in completed_or_cancel(futures, _stall_s(cluster), cluster.silent_s, stalled):
                exc = future.exception()
                if exc is None:
                    made.append(futures[future])
                elif failure is None:
                    failure = (futures[future], exc)
            if made:
                ids: dict[str, dict[str, str]] = {}
                for t in made:
                    if t.source.pool not in ids:
                        ids[t.source.pool] = cluster.images(t.source.pool)
                    journal.append("rbd-created", name=t.name, index=t.index, pool=t.source.pool, image=t.image,
                                   id=ids[t.source.pool][t.image], replica=t.source.replica)
                journal.sync()
                done += len(made)
                progress("create", done, total)
            if failure is not None:
                break
    if failure is not None:
        _task, exc = failure
        text = exc.message if isinstance(exc, ClonefleetError) else f"{type(exc).__name__}: {exc}"
        raise RbdProvisionFailed(f"{text}; {done} of {total} clones made in this run, the rest not; fix the cause, "
                                 f"then rerun 'clonefleet provision {manifest.path}' (it finishes the job)")
    return done


def ended(cluster: Cluster, state: RbdJournal) -> set[str]:
    """Clients of the runs before this one: ended, since this run holds the fleet's lock they held."""
    return state.clients - {cluster.address()}


def _make_retrying(cluster: Cluster, task: Task, method: Method, state: RbdJournal) -> None:
    """Make one image; a name blocked by a half-made image of ours (an id object a killed run left,
    invisible to 'rbd ls') is cleared once and the image made again."""
    try:
        _make(cluster, task, method)
    except RbdError as exc:
        if "exists" not in exc.message.lower() or f"{task.source.pool}/{task.image}" not in state.intents:
            raise
        cluster.remove(task.source.pool, task.image, ended(cluster, state))
        _make(cluster, task, method)


# --- status -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RbdStatus:
    manifest: Manifest
    wanted: int
    ok: int
    missing: tuple[str, ...]
    damaged: tuple[tuple[str, str], ...]
    foreign: tuple[str, ...]
    unwanted: tuple[str, ...]
    gi_ok: bool
    gi_detail: str
    written: int
    flattened: int

    @property
    def in_sync(self) -> bool:
        return self.gi_ok and self.ok == self.wanted and not (self.unwanted or self.foreign or self.damaged)

    def to_dict(self) -> dict[str, object]:
        return {"manifest": str(self.manifest.path), "backend": "rbd", "wanted": self.wanted, "ok": self.ok,
                "missing": list(self.missing), "damaged": [list(d) for d in self.damaged],
                "foreign": list(self.foreign), "unwanted": list(self.unwanted), "gi_ok": self.gi_ok,
                "gi_detail": self.gi_detail, "written": self.written, "flattened": self.flattened,
                "in_sync": self.in_sync}


def status(manifest: Manifest, verify: bool = False) -> RbdStatus:
    """Desired (the manifest) against actual (the journal and the cluster's images)."""
    sources = sources_of(manifest)
    tasks = tasks_of(manifest, sources)
    fleet_dir = fleet_dir_of(manifest.dest)
    state = read_journal(fleet_dir) if fleet_dir.is_dir() else RbdJournal()
    with stop_on_signals():
        cluster = connect(config_of(manifest))
        try:
            existing = {p: cluster.images(p) for p in {s.pool for s in sources}}
            gi_problems = []
            for s in sources:
                rec = state.sources.get(s.replica)
                if rec is None or existing[s.pool].get(s.image) != rec.get("id"):
                    gi_problems.append(f"{s.pool}/{s.image} not made yet")
                elif rec.get("snap_id") is None or cluster.snapshot_id(s.pool, s.image) != rec.get("snap_id"):
                    gi_problems.append(f"{s.pool}/{s.image}@{GI_SNAPSHOT} missing")
                else:
                    with cluster.op("reading the GI snapshot"), cluster.image(s.pool, s.image) as im:
                        if not im.is_protected_snap(GI_SNAPSHOT):
                            gi_problems.append(f"{s.pool}/{s.image}@{GI_SNAPSHOT} not protected")
            children = _children_of(cluster, [s for s in sources if not any(s.image in p for p in gi_problems)]) \
                if manifest.method is Method.SNAPSHOT else {}
            ok = 0
            missing, foreign, damaged = [], [], []
            for t in tasks:
                current = existing[t.source.pool].get(t.image)
                rec = state.clones.get(t.name)
                if current is None:
                    missing.append(t.name)
                elif rec is None or rec.get("id") != current:
                    foreign.append(t.name)
                elif verify and t.name not in state.flattened and (t.source.pool, t.source.image) in children \
                        and (why := _clone_ok(cluster, t, manifest.method, children)) is not None:
                    damaged.append((t.name, why))
                else:
                    ok += 1
        finally:
            cluster.close()
    wanted = {t.name for t in tasks}
    unwanted = tuple(sorted(n for n in state.clones if n not in wanted))
    return RbdStatus(manifest, len(tasks), ok, tuple(missing), tuple(damaged), tuple(foreign), unwanted,
                     not gi_problems, "; ".join(gi_problems) or
                     f"{len(sources)} GI image(s) with protected snapshot {GI_SNAPSHOT}",
                     len(state.written & wanted), len(state.flattened & wanted))


# --- flatten ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlattenResult:
    flattened: tuple[str, ...]
    already: int

    def to_dict(self) -> dict[str, object]:
        return {"flattened": list(self.flattened), "already": self.already}


def flatten(manifest: Manifest, names: Sequence[str] = (), workers: int | None = None,
            progress: Progress = no_progress) -> FlattenResult:
    """Make clones independent of their GI snapshot (all, or the ones named)."""
    sources = sources_of(manifest)
    tasks = {t.name: t for t in tasks_of(manifest, sources)}
    unknown = [n for n in names if n not in tasks]
    if unknown:
        raise UsageError(f"flatten: {unknown[0]!r} is not a VM of fleet {manifest.name} (its VMs are "
                         f"{manifest.clone_name.name(1)} to {manifest.clone_name.name(manifest.count)})")
    chosen = [tasks[n] for n in (names or list(tasks))]
    with _session(manifest, "flatten") as (fleet_dir, cluster), Journal(fleet_dir) as journal:
        state = read_journal(fleet_dir)
        existing = {p: cluster.images(p) for p in {s.pool for s in sources}}
        todo = []
        for t in chosen:
            rec = state.clones.get(t.name)
            if rec is None or existing[t.source.pool].get(t.image) != rec.get("id"):
                raise UsageError(f"flatten: {t.name} is not provisioned (or not clonefleet's); run 'clonefleet "
                                 f"provision {manifest.path}' first")
            if t.name not in state.flattened and cluster.parent_of(t.source.pool, t.image) is not None:
                todo.append(t)
        progress("flatten", 0, len(todo))
        flattened = 0
        stalled = partial(_stalled, cluster, lambda: f"{flattened} of {len(todo)} clones flattened in this run",
                          f"clonefleet flatten {manifest.path}")
        with worker_pool(workers or manifest.workers, "clonefleet-flatten") as pool:
            futures = {pool.submit(cluster.flatten, t.source.pool, t.image): t for t in todo}
            for n, future in enumerate(completed_or_cancel(futures, _stall_s(cluster), cluster.silent_s, stalled), 1):
                future.result()
                flattened = n
                journal.append("rbd-flattened", name=futures[future].name)
                progress("flatten", n, len(todo))
    return FlattenResult(tuple(t.name for t in todo), len(chosen) - len(todo))


# --- boot writes --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RbdWritesResult:
    clones: int
    written_now: int
    already: int
    bytes_written: int
    note: str

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def apply_writes(manifest: Manifest, workers: int | None = None, progress: Progress = no_progress) -> RbdWritesResult:
    """Write each clone's boot footprint into its image (seeded random bytes, as for file clones)."""
    from clonefleet.provision.bootwrites import footprint_for, model_fleet  # the model: imported when used
    from clonefleet.provision.writes import seeded_chunks

    sources = sources_of(manifest)
    tasks = tasks_of(manifest, sources)
    with _session(manifest, "writes") as (fleet_dir, cluster), Journal(fleet_dir) as journal:
        state = read_journal(fleet_dir)
        gi = _check_gi(manifest, state)
        _require_provisioned(manifest, cluster, state, tasks)
        model = model_fleet(manifest, gi)
        todo = [t for t in tasks if t.name not in state.written]

        def one(task: Task) -> int:
            fp = footprint_for(manifest, model, task.index)
            return cluster.write_extents(task.source.pool, task.image,
                                         seeded_chunks(fp.offsets_bytes, fp.lengths_bytes, fp.seed))

        total = 0
        written = 0
        progress("writes", 0, len(todo))
        stalled = partial(_stalled, cluster, lambda: f"boot writes applied to {written} of {len(todo)} clones in "
                          "this run", f"clonefleet writes {manifest.path}")
        with worker_pool(workers or manifest.workers, "clonefleet-writes") as pool:
            futures = {pool.submit(one, t): t for t in todo}
            for n, future in enumerate(completed_or_cancel(futures, _stall_s(cluster), cluster.silent_s, stalled), 1):
                total += future.result()
                written = n
                journal.append("rbd-written", name=futures[future].name, bytes=future.result())
                progress("writes", n, len(todo))
    return RbdWritesResult(len(tasks), len(todo), len(tasks) - len(todo), total, model.note)


def _require_provisioned(manifest: Manifest, cluster: Cluster, state: RbdJournal, tasks: Sequence[Task]) -> None:
    existing = {p: cluster.images(p) for p in {t.source.pool for t in tasks}}
    missing = [t.name for t in tasks if t.name not in state.clones
               or state.clones[t.name].get("id") != existing[t.source.pool].get(t.image)]
    if missing:
        raise UsageError(f"fleet {manifest.name}: {len(missing)} of {len(tasks)} clones are not provisioned (or not "
                         f"clonefleet's), e.g. {missing[0]}; run 'clonefleet provision {manifest.path}' first")


@dataclass(frozen=True)
class ProvisionedFleet:
    """A fleet whose every clone is made, with a connection to its cluster (:func:`provisioned`)."""

    fleet_dir: Path
    cluster: Cluster
    gi: GoldenImageInfo
    sources: tuple[Source, ...]
    tasks: tuple[Task, ...]


@contextmanager
def provisioned(manifest: Manifest, what: str) -> Iterator[ProvisionedFleet]:
    """The fleet, under its lock, signals handled and connected, for a step that works on its clones
    (``what``: storm); refused in one line when the GI is not the manifest's or a clone is missing or not
    clonefleet's (the cluster's configuration is checked first, by :func:`connect`)."""
    sources = sources_of(manifest)
    tasks = tasks_of(manifest, sources)
    with _session(manifest, what) as (fleet_dir, cluster):
        state = read_journal(fleet_dir)
        gi = _check_gi(manifest, state)
        _require_provisioned(manifest, cluster, state, tasks)
        yield ProvisionedFleet(fleet_dir, cluster, gi, tuple(sources), tuple(tasks))


def release_watchers(fleet: ProvisionedFleet, tasks: Sequence[Task], what: str) -> None:
    """Before a program opens the clones (a storm's fio): no client may have them open but ended runs of
    this fleet, whose watches are dropped (:meth:`Cluster.clear_watchers`); a live client is refused."""
    state = read_journal(fleet.fleet_dir)
    dead = ended(fleet.cluster, state)
    for t in tasks:
        fleet.cluster.clear_watchers(t.source.pool, t.image, dead, what)


def record_ended_clients(fleet: ProvisionedFleet, tasks: Sequence[Task], pid: int, what: str) -> list[str]:
    """After a program that had the clones open has ended (reaped; this run holds the fleet's lock): the
    clients it left watching them (it was killed before it closed them) are recorded as ended, so the next
    run drops their watches at once instead of waiting for them to time out (about 30 s) or refusing them."""
    found: set[str] = set()
    with fleet.cluster.op(f"listing the clients of fleet {fleet.fleet_dir.name}'s clones"):
        for t in tasks:
            found.update(fleet.cluster.watchers(t.source.pool, t.image))
    if found:
        with Journal(fleet.fleet_dir) as journal:
            for addr in sorted(found):
                journal.append("rbd-client", pid=pid, addr=addr, what=what)
    return sorted(found)


# --- capacity -----------------------------------------------------------------------------------

#: How :func:`measure` counts an image's bytes.
ACCOUNTING = ("'rbd diff' data extents of each image without its parent (diff_iterate, exact to the byte, "
              "not 'rbd du''s whole objects)")


def measure(cluster: Cluster, method: Method, tasks: Sequence[Task], sources: Sequence[Source],
            workers: int = 8) -> Usage:
    """Bytes the clones' images and the GI images store themselves (:data:`ACCOUNTING`); the total
    counts the GIs too, except for full copies (as the model: S = T x G)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        per = list(pool.map(lambda t: cluster.stored_bytes(t.source.pool, t.image), tasks))
        gis = list(pool.map(lambda s: cluster.stored_bytes(s.pool, s.image), sources))
    gi_bytes = sum(gis)
    return Usage(clones=tuple(CloneUsage(t.name, b, b, 0) for t, b in zip(tasks, per, strict=True)),
                 gi_bytes=gi_bytes, total_bytes=sum(per) + (0 if method is Method.FULL else gi_bytes),
                 accounting=ACCOUNTING)



def capacity(manifest: Manifest, workers: int | None = None) -> CapacityReport:
    """Bytes the images really store ('rbd diff' extents of each image, its parent's not counted) beside
    the model's S with the backend's storage function (rbd-clone: 4 MiB objects)."""
    from clonefleet.planner import evaluate, fleet_consumed_bytes, golden_image_bytes
    from clonefleet.presets import load_array
    from clonefleet.provision.bootwrites import model_fleet
    from clonefleet.provision.capacity import CapacityReport

    sources = sources_of(manifest)
    tasks = tasks_of(manifest, sources)
    method = manifest.method
    with _session(manifest, "capacity") as (fleet_dir, cluster):
        state = read_journal(fleet_dir)
        gi = _check_gi(manifest, state)
        _require_provisioned(manifest, cluster, state, tasks)
        usage = measure(cluster, method, tasks, sources, workers or max(manifest.workers, 8))
        pool_bytes = {p: cluster.pool_stored_bytes(p) for p in {s.pool for s in sources}}
    per = [c.consumed_bytes for c in usage.clones]
    written = state.written >= {t.name for t in tasks}
    used = gi_used_bytes(gi)
    model = model_fleet(manifest, gi, used)
    fleet = model.as_written(written)
    function = model_function(method)
    ev = evaluate(fleet, load_array(manifest.array), function, manifest.count)
    g = len(sources)
    is_full = method is Method.FULL
    gi_model = float(golden_image_bytes(fleet, function, g))
    total_model = float(fleet_consumed_bytes(fleet, function, g, manifest.count, ev.per_vm_new_bytes))
    gi_bytes = usage.gi_bytes
    measured_total = usage.total_bytes
    notes = ["pool statistics (num_bytes, every image and object in the pool, this fleet's and others'): "
             + ", ".join(f"{p} {n} bytes" for p, n in sorted(pool_bytes.items())),
             "a clone's header and id objects hold no data (omap in the OSD's database): not counted here; the "
             f"model counts {function.clone_overhead_bytes:.0f} bytes each"]
    if method is Method.SNAPSHOT:
        notes.append("a clone's first write to an object copies the parent's data in that 4 MiB object up into "
                     "the clone (copy-up): over GI data, a touched object costs up to a whole object, as the "
                     "model's 4 MiB unit says; over GI holes only the bytes written")
    if not written:
        notes.append("boot writes not applied yet ('clonefleet writes'): the model is taken with W = 0")
    if is_full:
        notes.append("full copies: S = T x G, the GI not counted (as in the model)")
    return CapacityReport(
        fleet=manifest.name, backend="rbd", method=method.value, function=function.name,
        unit_bytes=function.unit_bytes, clones=manifest.count, golden_images=g, writes_applied=written,
        measured_total_bytes=measured_total, measured_gi_bytes=gi_bytes,
        measured_per_clone_bytes=sum(per) / len(per), measured_per_clone_min_bytes=min(per),
        measured_per_clone_max_bytes=max(per), measured_fresh_clone_bytes=None,
        measured_metadata_per_clone_bytes=0.0, model_total_bytes=total_model, model_gi_bytes=gi_model,
        model_per_clone_bytes=float(ev.per_clone_bytes), model_new_bytes=float(ev.per_vm_new_bytes),
        model_overhead_bytes=function.clone_overhead_bytes, model_metadata_bytes=function.clone_overhead_bytes,
        accounting=usage.accounting,
        note=model.note, notes=tuple(notes),
        per_clone=tuple({"name": t.name, "consumed_bytes": b, "own_data_bytes": b, "metadata_bytes": 0}
                        for t, b in zip(tasks, per, strict=True)))


# --- destroy ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RbdDestroyResult:
    removed: int
    replicas_removed: int
    kept: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"removed": self.removed, "replicas_removed": self.replicas_removed, "kept": list(self.kept)}


def destroy(manifest: Manifest, workers: int | None = None, progress: Progress = no_progress) -> RbdDestroyResult:
    """Remove the fleet's clones, then its replicas, then unprotect (and, unused, remove) the GI
    snapshot. Never the GI image, never an image the journal does not name with its id."""
    sources = sources_of(manifest)
    fleet_dir = fleet_dir_of(manifest.dest)
    if not (fleet_dir / STATE_DIR).is_dir():  # nothing made; the configuration is still checked
        connect(config_of(manifest)).close()
        return RbdDestroyResult(0, 0, ())
    with _session(manifest, "destroy") as (fleet_dir, cluster), Journal(fleet_dir) as journal:
        state = read_journal(fleet_dir)
        dead = ended(cluster, state)
        pools = {s.pool for s in sources} | {str(r["pool"]) for r in state.clones.values()} | \
            {str(r["pool"]) for r in state.sources.values()}
        existing = {p: cluster.images(p) for p in pools}
        kept: list[str] = []
        ours = [(n, r) for n, r in sorted(state.clones.items()) if existing[r["pool"]].get(r["image"]) == r["id"]]
        gone = [(n, r) for n, r in state.clones.items() if existing[r["pool"]].get(r["image"]) != r["id"]]
        for n, r in gone:  # no longer there (or replaced by someone else's image: kept)
            if r["image"] in existing[r["pool"]]:
                kept.append(f"{r['pool']}/{r['image']}")
            journal.append("rbd-removed", name=n, pool=r["pool"], image=r["image"])
        # half-made images of a killed run, under names this fleet intended
        for key, t in sorted(state.intents.items()):
            pool, _, image = key.partition("/")
            if image in existing.get(pool, {}) and not any(r["image"] == image for _, r in ours) \
                    and image not in {str(r["image"]) for r in state.sources.values()} \
                    and _made_after(cluster, pool, image, t):
                cluster.remove(pool, image, dead)
            journal.append("rbd-intent-cleared", image=key)
        progress("remove", 0, len(ours))
        removed = 0
        stalled = partial(_stalled, cluster, lambda: f"{removed} of {len(ours)} clones removed in this run",
                          f"clonefleet destroy {manifest.path}")
        with worker_pool(workers or max(manifest.workers, 16), "clonefleet-destroy") as pool_:
            futures = {pool_.submit(cluster.remove, r["pool"], r["image"], dead): (n, r) for n, r in ours}
            for i, future in enumerate(completed_or_cancel(futures, _stall_s(cluster), cluster.silent_s, stalled), 1):  # type: ignore[arg-type]
                future.result()
                removed = i
                n, r = futures[future]
                journal.append("rbd-removed", name=n, pool=r["pool"], image=r["image"])
                progress("remove", i, len(ours))
        journal.sync()
        replicas_removed = 0
        for replica, rec in sorted(state.sources.items(), reverse=True):
            pool, image = str(rec["pool"]), str(rec["image"])
            if existing.get(pool, {}).get(image) != rec.get("id"):
                if replica:
                    journal.append("rbd-source-removed", replica=replica)
                continue
            users = cluster.children(pool, image) if cluster.snapshot_id(pool, image) is not None else []
            if users:  # clones clonefleet did not make: the snapshot stays protected
                kept.append(f"{pool}/{image}@{GI_SNAPSHOT} (still the parent of {len(users)} image(s), e.g. "
                            f"{users[0][0]}/{users[0][1]})")
                continue
            cluster.release_snapshot(pool, image, remove=True)
            if replica:
                cluster.remove(pool, image, dead)
                journal.append("rbd-source-removed", replica=replica)
                replicas_removed += 1
            else:
                journal.append("rbd-source", **_fields(rec, snap_id=None))  # the GI image stays, ours, unprotected
        journal.sync()
    return RbdDestroyResult(len(ours), replicas_removed, tuple(kept))
