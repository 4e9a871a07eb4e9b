"""Destroy: remove the fleet's clones, then its GI replicas once no file uses them.

Never the GI, never anything outside the fleet directory, never a file clonefleet did not make:
a name is removed only when the journal records it with the identity (device, inode, generation:
:class:`~clonefleet.storage.paths.FileId`) the file had when clonefleet made it (a record of an
older version, without identity, only after the backend recognises the file as a whole clone of
this fleet). Anything else is kept and listed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clonefleet.backends import Backend, get_backend
from clonefleet.errors import UsageError
from clonefleet.progress import Progress, no_progress
from clonefleet.provision.fleetdir import (
    LOCK_NAME,
    REPLICA_DIR,
    TMP_DIR,
    clear_tmp,
    fleet_dir_of,
    fleet_lock,
    is_regular,
    remove_ours,
    rmdir_quietly,
    tmp_dir_of,
)
from clonefleet.provision.journal import JOURNAL_NAME, STATE_DIR, Journal, JournalState
from clonefleet.provision.manifest import Manifest
from clonefleet.provision.plan import make_plan
from clonefleet.storage.data import sha256_file
from clonefleet.storage.goldimage import GoldenImageError
from clonefleet.storage.paths import path_identity, same_file
from clonefleet.storage.qcow2 import read_header
from clonefleet.storage.tools import stop_on_signals


@dataclass(frozen=True)
class DestroyResult:
    fleet_dir: Path
    removed: int
    replicas_removed: int
    temporaries_removed: int
    kept: tuple[str, ...]  # entries clonefleet did not make, or still in use, left in place

    def to_dict(self) -> dict[str, object]:
        return {"fleet_dir": str(self.fleet_dir), "removed": self.removed,
                "replicas_removed": self.replicas_removed, "temporaries_removed": self.temporaries_removed,
                "kept": list(self.kept)}


def _backing_users(paths: Sequence[Path], replica: Path) -> list[str]:
    """Files among ``paths`` whose qcow2 backing file is ``replica`` (they still need it)."""
    users = []
    for p in paths:
        try:
            header = read_header(p)
        except OSError:
            continue
        if header is not None and header.backing_path(p) == replica:
            users.append(p.name)
    return users


def _legacy_clone_ok(manifest: Manifest, backend: Backend, names: set[str]) -> set[str]:
    """Of clones journaled by an older version (no identity), those the backend recognises as whole
    clones of this fleet. Needs the GI (to know the recipe); without it, none."""
    if not names:
        return set()
    try:
        plan = make_plan(manifest, backend, check_gi=False)
    except (GoldenImageError, UsageError):
        return set()
    sources = {t.name: t.source for t in plan.tasks}
    return {n for n in names if is_regular(manifest.dest, n)
            and backend.status(plan.recipe, manifest.dest / n, sources.get(n, plan.sources[0])) is None}


def destroy(manifest: Manifest, backend: Backend | None = None, progress: Progress = no_progress) -> DestroyResult:
    """Remove what this fleet made (see the module docstring); a rerun after a kill finishes the job."""
    backend = backend or get_backend(manifest.backend)
    fleet_dir = fleet_dir_of(manifest.dest)
    if not fleet_dir.is_dir():
        return DestroyResult(fleet_dir, 0, 0, 0, ())
    with stop_on_signals(), fleet_lock(fleet_dir, "destroy"):
        state = Journal.read(fleet_dir)
        clones = sorted((state.present() | state.made | set(state.clones)) - {n for n in state.made
                                                                                if n.startswith(f"{REPLICA_DIR}/")})
        # Records of an older version carry no identity: only a clone they say exists may be recognised by
        # the backend; a name whose last record is "failed" had its half-made file removed, so whatever
        # is there now was put there by someone else.
        legacy = _legacy_clone_ok(manifest, backend, {n for n in clones if state.identity_of(n) is None
                                                      and n in state.present()})
        replica_names = sorted(set(state.replicas) | {n for n in state.made if n.startswith(f"{REPLICA_DIR}/")})
        removed = replicas = 0
        kept: list[str] = []
        with Journal(fleet_dir) as journal:
            temps = clear_tmp(fleet_dir, state)
            for i, name in enumerate(clones, 1):
                ident = state.identity_of(name)
                if ident is not None:  # or a refresh's new clone, renamed into place before its record
                    gone = remove_ours(fleet_dir, name, ident) or (
                        name in state.remade and remove_ours(fleet_dir, name, state.remade[name]))
                elif name in legacy:
                    backend.destroy(fleet_dir / name)
                    gone = True
                else:
                    gone = False
                removed += gone
                if gone or not os.path.lexists(fleet_dir / name):
                    journal.append("removed", name=name)
                else:
                    kept.append(f"{name} (not the file clonefleet made under that name)")
                progress("destroy", i, len(clones))
            journal.sync()
            remaining = [fleet_dir / n for n in os.listdir(fleet_dir)
                         if n not in (STATE_DIR, REPLICA_DIR) and (fleet_dir / n).is_file()
                         and not (fleet_dir / n).is_symlink()]
            replica_dir = fleet_dir / REPLICA_DIR
            for rname in replica_names:
                path = fleet_dir / rname
                users = _backing_users(remaining, path)
                if users:
                    kept.append(f"{rname} (still the backing file of {', '.join(users[:3])})")
                    continue
                ident = state.identity_of(rname)
                if replica_dir.is_dir() and not replica_dir.is_symlink():
                    if ident is not None:
                        gone = remove_ours(replica_dir, path.name, ident)
                    else:  # a record of an older version: the replica must still be the GI's copy
                        gone = is_regular(replica_dir, path.name) and _is_gi_copy(path, state)
                        if gone:
                            path.unlink()
                    replicas += gone
                    if not gone and os.path.lexists(path):
                        kept.append(f"{rname} (not the file clonefleet made under that name)")
                        continue
                journal.append("replica-removed", name=rname)
            rmdir_quietly(replica_dir)
            ours_left = bool(kept)
            if not ours_left:
                journal.append("destroyed", removed=removed)
        tmp = tmp_dir_of(fleet_dir)
        if os.path.isdir(tmp) and not os.path.islink(tmp) and same_file(state.tmpdir, path_identity(tmp)):
            shutil.rmtree(tmp)
        leftovers = sorted(n for n in os.listdir(fleet_dir) if n != STATE_DIR)
        kept.extend(n for n in leftovers if not any(k.startswith(n) for k in kept))
        if not kept:  # still holding the lock: nobody can start on this fleet while it goes
            state_dir = fleet_dir / STATE_DIR
            (state_dir / JOURNAL_NAME).unlink(missing_ok=True)
            (state_dir / LOCK_NAME).unlink(missing_ok=True)
            rmdir_quietly(state_dir)
            rmdir_quietly(fleet_dir)
            if state_dir.exists():
                kept.extend(f"{STATE_DIR}/{n}" for n in sorted(os.listdir(state_dir)) if n != TMP_DIR)
    return DestroyResult(fleet_dir, removed, replicas, temps, tuple(kept))


def _is_gi_copy(path: Path, state: JournalState) -> bool:
    record = state.replicas.get(f"{REPLICA_DIR}/{path.name}", {})
    return bool(record.get("sha256")) and sha256_file(path) == record.get("sha256")
