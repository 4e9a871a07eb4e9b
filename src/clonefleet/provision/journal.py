"""An append-only journal of what a fleet's provisioner did, so a rerun finishes the job.

One JSON record per line in ``<fleet dir>/.clonefleet/journal.jsonl``, each with a
CRC-32 of its content. Records are appended, never rewritten; a line torn by a
crash (no newline, bad JSON, bad CRC) is ignored when the journal is read, and
the next append starts on a fresh line. :meth:`Journal.sync` makes the records
(and the renames they describe) durable: it fsyncs the fleet directory, then the
journal. The provisioner syncs in groups (every ``group`` records and at the
end), so the cost of durability is shared.

What the journal holds is a claim the provisioner checks against the directory
on the next run (:mod:`clonefleet.provision.plan`): the directory is the truth
for what exists, the journal for what is ours. A file is ours only when a
record names it with the identity it had when clonefleet made
it: ``made`` (written and synced before a clone or replica is linked under its
final name, so a kill never leaves a file the next run cannot recognise),
``created``, ``adopted``, ``replica``; ``tmpdir`` records the run's private
folder of temporaries. An identity (:class:`~clonefleet.storage.paths.FileId`) is the file's
``dev``, ``ino`` and, where the filesystem keeps one, ``gen``, the inode's generation, so a file
that got a deleted clone's inode number is not taken for it. Records of older versions carry no
identity (or no ``gen``); they are
still read (see :meth:`JournalState.identity_of`).

What was written into the clones: ``written`` (the boot writes) and ``days`` (the clone's age: how many
days of daily writes it holds, with the identity of the file they went into). A refresh makes a fresh
clone under a temporary name and records it as ``remade`` (its identity, synced) before renaming it over
the old clone, then ``created`` (``refreshed``): that record resets the clone's boot writes and age. A
kill between the rename and that record leaves a file whose identity the ``remade`` record holds: the
next run adopts it (:mod:`clonefleet.provision.plan`).
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clonefleet.storage.paths import FileId, same_file

STATE_DIR = ".clonefleet"
JOURNAL_NAME = "journal.jsonl"


def _crc(body: str) -> str:
    return f"{zlib.crc32(body.encode('utf-8')):08x}"


def encode(record: dict[str, Any]) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return json.dumps({"crc": _crc(body), "r": record}, sort_keys=True, separators=(",", ":")) + "\n"


def decode(line: str) -> dict[str, Any] | None:
    """The record of one journal line, None when the line is torn or damaged."""
    if not line.endswith("\n"):
        return None
    try:
        outer = json.loads(line)
    except ValueError:
        return None
    if not isinstance(outer, dict) or not isinstance(outer.get("r"), dict):
        return None
    record: dict[str, Any] = outer["r"]
    body = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return record if outer.get("crc") == _crc(body) else None


@dataclass
class JournalState:
    """What the journal says, replayed: per name its last state."""

    clones: dict[str, dict[str, Any]] = field(default_factory=dict)  # file name -> last record
    replicas: dict[str, dict[str, Any]] = field(default_factory=dict)  # replica file name -> record
    gi_sha256: str | None = None
    made_with: dict[str, Any] | None = None  # the "begin" record of the run that made the first clone
    first_begin: dict[str, Any] | None = None  # the fleet's first run (df before it, for a df delta)
    identities: dict[str, FileId] = field(default_factory=dict)  # name -> the file clonefleet made under it
    made: set[str] = field(default_factory=set)  # names with a "made" record not yet removed
    remade: dict[str, FileId] = field(default_factory=dict)  # name -> a refresh's new clone, not yet created
    ages: dict[str, tuple[int, FileId | None]] = field(default_factory=dict)  # name -> (days, identity)
    tmpdir: FileId | None = None  # identity of the private folder of temporaries
    damaged_lines: int = 0
    records: int = 0

    def identity_of(self, name: str) -> FileId | None:
        """The identity clonefleet recorded for ``name`` (a clone, or ``golden/<replica>``), None if none
        (a record of an older version, or not ours)."""
        return self.identities.get(name)

    def present(self) -> set[str]:
        """Clone files the journal says exist (created or adopted, not removed since)."""
        return {n for n, r in self.clones.items() if r["op"] in ("created", "adopted", "written")}

    def written(self) -> set[str]:
        return {n for n, r in self.clones.items() if r["op"] == "written"}

    def age_of(self, name: str) -> int:
        """Days of daily writes the clone ``name`` holds (0: none since it was made or refreshed); a
        ``days`` record for another file than the one clonefleet made under that name counts 0."""
        days, ident = self.ages.get(name, (0, None))
        made = self.identities.get(name)
        return days if ident is None or made is None or same_file(made, ident) else 0

    def failed(self) -> dict[str, str]:
        return {n: str(r.get("reason", "")) for n, r in self.clones.items() if r["op"] == "failed"}


def replay(lines: Iterator[str]) -> JournalState:
    state = JournalState()
    begin: dict[str, Any] | None = None
    for line in lines:
        record = decode(line)
        if record is None:
            state.damaged_lines += 1
            continue
        state.records += 1
        op, name = record.get("op"), record.get("name")
        ident = FileId.from_record(record)
        if isinstance(name, str) and ident is not None and op in ("made", "created", "adopted", "replica"):
            state.identities[name] = ident
            if op == "made":
                state.made.add(name)
        if op == "remade" and isinstance(name, str) and ident is not None:
            state.remade[name] = ident
        elif op == "remade-void" and isinstance(name, str):  # its temporary is gone: it names no file
            state.remade.pop(name, None)
        elif op == "days" and isinstance(name, str):
            days = record.get("days")
            if isinstance(days, int) and not isinstance(days, bool) and days >= 0:
                state.ages[name] = (days, ident)
            else:
                state.damaged_lines += 1  # a days record validates itself: whole days, 0 or more
        elif op == "tmpdir" and ident is not None:
            state.tmpdir = ident
        elif op == "begin":
            begin = record
            if state.first_begin is None:
                state.first_begin = record
            if record.get("gi_sha256") and state.gi_sha256 is None:
                state.gi_sha256 = str(record["gi_sha256"])
        elif op in ("replica", "replica-removed") and isinstance(name, str):
            if op == "replica":
                state.replicas[name] = record
            else:
                state.replicas.pop(name, None)
                state.identities.pop(name, None)
                state.made.discard(name)
        elif op in ("created", "adopted", "failed", "removed", "written") and isinstance(name, str):
            if op != "written":  # a clone made, adopted, failed or removed: no days of writes (yet)
                state.ages.pop(name, None)
                state.remade.pop(name, None)
            if op == "removed":
                state.clones.pop(name, None)
                state.identities.pop(name, None)
                state.made.discard(name)
            else:
                state.clones[name] = record
                if op in ("created", "adopted") and state.made_with is None:
                    state.made_with = begin
        elif op == "destroyed":
            state = JournalState(damaged_lines=state.damaged_lines, records=state.records)
            begin = None
    return state


class Journal:
    """The journal of one fleet directory, opened for appending."""

    def __init__(self, fleet_dir: Path, group: int = 64) -> None:
        self.fleet_dir = fleet_dir
        self.path = fleet_dir / STATE_DIR / JOURNAL_NAME
        self.group = group
        self._pending = 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                           0o644)
        size = os.fstat(self._fd).st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(self._fd, b"\n")  # close a torn last line; replay ignores it

    @staticmethod
    def read(fleet_dir: Path) -> JournalState:
        path = fleet_dir / STATE_DIR / JOURNAL_NAME
        try:
            with open(path, encoding="utf-8", errors="replace", newline="") as f:
                return replay(iter(f))
        except FileNotFoundError:
            return JournalState()

    def append(self, op: str, **fields: Any) -> None:
        record = {"op": op, "t": round(time.time(), 3), **fields}
        data = encode(record).encode("utf-8")
        os.write(self._fd, data)  # O_APPEND: one write per record
        self._pending += 1
        if self._pending >= self.group:
            self.sync()

    def sync(self) -> None:
        """Make the renames and the records so far durable: the directories first, then the journal."""
        if self._pending == 0:
            return
        for folder in (self.fleet_dir, self.fleet_dir / STATE_DIR):
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        os.fsync(self._fd)
        self._pending = 0

    def close(self) -> None:
        if self._fd >= 0:
            self._pending = max(self._pending, 1)
            self.sync()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
