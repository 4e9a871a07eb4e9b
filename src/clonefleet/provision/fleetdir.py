"""The fleet directory: its lock, its private folder of temporaries, and removal of what is ours.

Layout of a fleet directory::

    <fleet>/vm-0001.qcow2 ...       clones
    <fleet>/golden/gi-r2.qcow2 ...  GI replicas (g > 1)
    <fleet>/.clonefleet/journal.jsonl, lock
    <fleet>/.clonefleet/tmp/        the private folder: every temporary and scratch file of a run

A file is removed only when the journal names it with the identity (:class:`FileId`) it had when
clonefleet made it (:func:`remove_ours`); the private folder is ours when its identity is the one
the journal's ``tmpdir`` record holds, and then everything in it is. Nothing else in a fleet
directory is ever removed, whatever its name.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.provision.journal import STATE_DIR, Journal, JournalState
from clonefleet.storage.paths import (
    FileId,
    check_fleet_dir,
    identity,
    lstat_in,
    open_dir,
    require_regular,
    same_file,
)

REPLICA_DIR = "golden"
LOCK_NAME = "lock"
TMP_DIR = "tmp"


class FleetBusy(ClonefleetError):
    """Another clonefleet process holds the fleet's lock."""

    exit_code = 3


def fleet_dir_of(dest: Path) -> Path:
    """The manifest's fleet directory resolved again right before use: a path that now resolves
    elsewhere (a component swapped for a symlink since the manifest was read) is refused."""
    resolved = check_fleet_dir(dest)
    if resolved != dest:
        raise UsageError(f"dest {dest}: now resolves to {resolved} (a symlink changed since the manifest was "
                         "read); clonefleet never follows a fleet directory elsewhere")
    return resolved


def temporary_path(tmp_dir: Path, name: str) -> Path:
    """The temporary a clone or replica is made under: in the private folder, unique to this process,
    so a tool a killed run had started (and that may still be writing) never shares a file with a later run."""
    return tmp_dir / f"{os.getpid()}.{name.replace('/', '.')}"


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


def lock_holder(fleet_dir: Path) -> str | None:
    """Who holds the fleet's lock now, None when nobody does."""
    try:
        fd = os.open(fleet_dir / STATE_DIR / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
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


def rmdir_quietly(path: Path) -> None:
    """Remove an empty directory; a directory with anything in it stays."""
    with suppress(OSError):
        path.rmdir()


def is_regular(dir_path: Path, name: str) -> bool:
    """True when ``name`` in ``dir_path`` is a regular file; refuses a symlink or another kind of entry."""
    dfd = open_dir(dir_path)
    try:
        return require_regular(dfd, name, dir_path) is not None
    finally:
        os.close(dfd)


def entry_identity(dir_path: Path, name: str) -> FileId | None:
    """The identity of an entry (not followed), None when absent."""
    try:
        dfd = open_dir(dir_path)
    except FileNotFoundError:
        return None
    try:
        st = lstat_in(dfd, name)
        return None if st is None else identity(st, name, dfd)
    finally:
        os.close(dfd)


def remove_ours(dir_path: Path, name: str, recorded: FileId) -> bool:
    """Unlink ``name`` in ``dir_path`` only if it is the very file clonefleet recorded (the same identity,
    a regular file, never followed). True when removed; False when absent or another file."""
    dfd = open_dir(dir_path)
    try:
        st = lstat_in(dfd, name)
        if st is None or not stat.S_ISREG(st.st_mode) or not same_file(recorded, identity(st, name, dfd)):
            return False
        os.unlink(name, dir_fd=dfd)
        return True
    finally:
        os.close(dfd)


def replace_ours(tmp: Path, dir_path: Path, name: str, recorded: FileId) -> None:
    """Rename a finished temporary over ``name`` in ``dir_path`` (a refresh), only if ``name`` is the very
    file clonefleet recorded there (the same identity, a regular file, never followed); else refuse and
    leave both in place."""
    dfd = open_dir(dir_path)
    try:
        st = lstat_in(dfd, name)
        if st is None or not stat.S_ISREG(st.st_mode) or not same_file(recorded, identity(st, name, dfd)):
            raise UsageError(f"{dir_path / name}: is not the clone clonefleet made under that name (another file, "
                             "or none); it was not replaced: move it away, then rerun")
        os.rename(tmp, name, dst_dir_fd=dfd)
    finally:
        os.close(dfd)


def tmp_dir_of(fleet_dir: Path) -> Path:
    return fleet_dir / STATE_DIR / TMP_DIR


def ours_tmp_entries(fleet_dir: Path, state: JournalState) -> list[str] | None:
    """The entries of the private folder when it is the one the journal recorded; None when there is
    no such folder (absent, or not recorded as ours)."""
    tmp = tmp_dir_of(fleet_dir)
    try:
        st = os.lstat(tmp)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode) or not same_file(state.tmpdir, identity(st, tmp)):
        return None
    return sorted(os.listdir(tmp))


def clear_tmp(fleet_dir: Path, state: JournalState) -> int:
    """Empty the private folder if it is ours (everything in it is); returns how many entries went."""
    entries = ours_tmp_entries(fleet_dir, state)
    if not entries:
        return 0
    tmp = tmp_dir_of(fleet_dir)
    for name in entries:
        path = tmp / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return len(entries)


def private_tmp(fleet_dir: Path, state: JournalState, journal: Journal) -> tuple[Path, int]:
    """The run's private folder of temporaries, emptied of a killed run's leftovers; (folder, leftovers).

    Made and journaled (``tmpdir`` with its identity, synced) before any tool writes into it, so a
    kill right after the mkdir leaves an empty folder, adopted by the next run; a folder of that
    name that is not recorded as ours and holds anything is refused, never emptied.
    """
    tmp = tmp_dir_of(fleet_dir)
    try:
        st = os.lstat(tmp)
    except FileNotFoundError:
        tmp.mkdir(mode=0o700)
        st = os.lstat(tmp)
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{tmp}: is not a folder clonefleet made; move it away, then rerun")
    ident = identity(st, tmp)
    if same_file(state.tmpdir, ident):
        return tmp, clear_tmp(fleet_dir, state)
    if os.listdir(tmp):
        raise UsageError(f"{tmp}: holds files the journal does not record as clonefleet's; move them away, "
                         "then rerun")
    journal.append("tmpdir", **ident.fields())
    journal.sync()
    state.tmpdir = ident
    return tmp, 0


def link_into_place(tmp: Path, final: Path) -> None:
    """Give a finished temporary its final name without ever replacing a file found there (a hard link
    fails if the name exists), then drop the temporary name; the inode, hence the identity, is kept."""
    try:
        os.link(tmp, final, follow_symlinks=False)
    except FileExistsError:
        raise UsageError(f"{final}: appeared while clonefleet made it; it was not replaced: move it away, "
                         "then rerun") from None
    os.unlink(tmp)
