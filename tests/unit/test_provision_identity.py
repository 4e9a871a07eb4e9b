"""Only the files clonefleet made are ever used, written into or removed: a stranger's review found
three ways around the journal's identities (a clone replaced in place, a name whose last record is
"failed", a GI replica swapped), and a status that broke when the GI was gone. Each failed before."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import clonefleet.provision as engine
from clonefleet.backends.fake import FakeBackend
from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.provision.journal import Journal, decode, encode
from clonefleet.storage.data import sha256_file
from clonefleet.storage.paths import FileId, path_identity, same_file
from fakes import fake_backend, make_fleet
from helpers import unavailable

pytestmark = pytest.mark.usefixtures("fake_backend")
__all__ = ["fake_backend"]

STRANGER = b"a user's own file, put where a clone was"


def _replace(path: Path) -> None:
    """Put another file (another inode) under ``path``, as a user's mv would."""
    beside = path.with_name(path.name + ".new")
    beside.write_bytes(STRANGER)
    os.rename(beside, path)


def test_a_clone_replaced_in_place_is_reported_and_never_written_into(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=2)
    engine.provision(m, FakeBackend())
    _replace(m.dest / "vm-0001.fake")
    st = engine.status(m, FakeBackend())
    assert [c.state for c in st.clones] == ["foreign", "ok"] and not st.in_sync
    with pytest.raises(UsageError, match="vm-0001.fake: is not the clone clonefleet made"):
        engine.provision(m, FakeBackend())
    with pytest.raises(UsageError, match="vm-0001.fake: is not the clone clonefleet made"):
        engine.apply_writes(m, FakeBackend())
    assert (m.dest / "vm-0001.fake").read_bytes() == STRANGER


def test_a_users_file_that_got_a_deleted_clones_inode_number_is_not_taken_for_the_clone(tmp_path: Path) -> None:
    """ext4 gives a freed inode number to the next file made, often at once: (dev, ino) alone would take a
    user's file, written under a deleted clone's name, for the clone; the inode's generation tells them
    apart."""
    m = make_fleet(tmp_path, count=2)
    engine.provision(m, FakeBackend())
    clone = m.dest / "vm-0001.fake"
    made = Journal.read(m.dest).identity_of(clone.name)
    assert made is not None
    if made.gen is None:
        unavailable(f"the filesystem of {tmp_path} keeps no inode generations (tmpfs?)")
    clone.unlink()  # the user deletes the clone, then writes a file of their own under its name
    clone.write_bytes(STRANGER)
    theirs = path_identity(clone)
    if theirs.ino != made.ino:  # the inode number was not reused this time: the journal says it was
        with Journal(m.dest) as journal:
            journal.append("created", name=clone.name, index=1, replica=0, dev=theirs.dev, ino=theirs.ino,
                           gen=theirs.gen + 1)
    assert not same_file(Journal.read(m.dest).identity_of(clone.name), theirs)
    st = engine.status(m, FakeBackend())
    assert [c.state for c in st.clones] == ["foreign", "ok"]
    with pytest.raises(UsageError, match="vm-0001.fake: is not the clone clonefleet made"):
        engine.apply_writes(m, FakeBackend())
    result = engine.destroy(m, FakeBackend())
    assert result.removed == 1 and clone.read_bytes() == STRANGER


def _as_an_older_version_wrote_it(fleet_dir: Path) -> None:
    """The fleet's journal as clonefleet wrote it before identities: the same records, no dev, ino or gen."""
    journal = fleet_dir / ".clonefleet" / "journal.jsonl"
    records = [r for r in map(decode, journal.read_text().splitlines(keepends=True)) if r is not None]
    journal.write_text("".join(encode({k: v for k, v in r.items() if k not in ("dev", "ino", "gen")})
                               for r in records))


def test_refresh_of_an_older_versions_fleet_replaces_only_what_the_backend_recognises(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=2)
    engine.provision(m, FakeBackend())
    _as_an_older_version_wrote_it(m.dest)
    _replace(m.dest / "vm-0001.fake")  # a user's file under a clone's name: no identity tells it apart
    with pytest.raises(UsageError, match="vm-0001.fake: is not a clone of this fleet"):
        engine.refresh(m, FakeBackend(), clones=["vm-0001"])
    assert (m.dest / "vm-0001.fake").read_bytes() == STRANGER
    result = engine.refresh(m, FakeBackend(), clones=["vm-0002"])  # a whole clone: recorded, then refreshed
    assert result.refreshed == ("vm-0002.fake",)
    assert Journal.read(m.dest).identity_of("vm-0002.fake") == path_identity(m.dest / "vm-0002.fake")
    assert (m.dest / "vm-0001.fake").read_bytes() == STRANGER


def test_an_identity_is_device_inode_and_generation_where_the_filesystem_keeps_one(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"x")
    ident = path_identity(f)
    assert (ident.dev, ident.ino) == (f.stat().st_dev, f.stat().st_ino)
    assert FileId.from_record(ident.fields()) == ident
    assert FileId.from_record({"dev": 1, "ino": 2}) == FileId(1, 2, None)  # a record of an older version
    assert FileId.from_record({"dev": 1, "ino": True}) is None and FileId.from_record({}) is None
    assert same_file(FileId(1, 2, 7), FileId(1, 2, 7)) and not same_file(FileId(1, 2, 7), FileId(1, 2, 8))
    assert same_file(FileId(1, 2, None), FileId(1, 2, 8))  # a record of an older version: dev and ino
    assert not same_file(FileId(1, 2, 7), FileId(1, 2, None))  # a generation not readable now: not a match
    assert not same_file(FileId(1, 2), FileId(1, 3)) and not same_file(None, ident)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert path_identity(fifo).gen is None  # never opened: a FIFO would block
    link = tmp_path / "link"
    link.symlink_to(f)
    assert path_identity(link).ino == link.lstat().st_ino  # the link itself, not followed


def test_destroy_leaves_a_file_under_a_name_whose_last_record_is_failed(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=2)
    engine.provision(m, FakeBackend())
    with Journal(m.dest) as journal:  # a run whose third clone failed (its half-made file was removed)
        journal.append("failed", name="vm-0003.fake", reason="no space")
    # Then the user made a clone of the GI of their own under that name (as 'qemu-img create -b' would):
    # a file the backend recognises as a clone, which clonefleet did not make.
    theirs = (m.dest / "vm-0001.fake").read_bytes()
    (m.dest / "vm-0003.fake").write_bytes(theirs)
    result = engine.destroy(m, FakeBackend())
    assert result.removed == 2
    assert (m.dest / "vm-0003.fake").read_bytes() == theirs


def test_a_gi_replica_swapped_for_another_file_is_refused_and_verify_rehashes_replicas(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=4, g=2)
    engine.provision(m, FakeBackend())
    replica = m.dest / "golden" / "gi-r2.img"
    assert sha256_file(replica) == sha256_file(m.gi)
    _replace(replica)
    with pytest.raises(UsageError, match="is not the GI replica clonefleet made"):
        engine.provision(m, FakeBackend())
    assert replica.read_bytes() == STRANGER


def test_verify_finds_a_replica_changed_in_place(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=4, g=2)
    engine.provision(m, FakeBackend())
    with open(m.dest / "golden" / "gi-r2.img", "r+b") as f:  # same inode, other bytes
        f.write(b"changed")
    assert engine.status(m, FakeBackend()).gi_ok  # cheap status: the GI itself is intact
    st = engine.status(m, FakeBackend(), verify=True)
    assert not st.gi_ok and "replica" in st.gi_detail and "restore" in st.advice


def test_status_of_a_fleet_whose_gi_was_deleted_reports_it(tmp_path: Path, cli: Callable[..., object]) -> None:
    m = make_fleet(tmp_path, count=2)
    engine.provision(m, FakeBackend())
    m.gi.unlink()
    r = cli("status", str(m.path), "--json")
    assert r.code == 1, r.err  # type: ignore[attr-defined]
    data = json.loads(r.out)  # type: ignore[attr-defined]
    assert data["gi_ok"] is False and "does not exist" in data["gi_detail"]
    assert data["unchecked"] == 2 and "restore" in data["advice"] and "provision" not in data["advice"]
    r = cli("status", str(m.path))
    assert r.code == 1 and "restore it" in r.out and "run 'clonefleet provision'" not in r.out  # type: ignore[attr-defined]


def test_the_simulators_public_names_all_import() -> None:
    from clonefleet import sim

    for name in sim.__all__:
        assert getattr(sim, name) is not None, name
    from clonefleet.progress import no_progress

    assert sim.no_progress is no_progress


def test_a_refused_run_leaves_none_of_the_folders_it_made_for_the_fleet(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, dest="a/b/fleet")
    with open(m.gi, "r+b") as f:  # the GI no longer has the recorded checksum: refused before anything
        f.write(b"changed")
    with pytest.raises(ClonefleetError, match="SHA-256"):
        engine.provision(m, FakeBackend())
    assert not (tmp_path / "a").exists()


def test_a_gi_whose_stamp_moved_is_hashed_once_not_once_per_clone(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from clonefleet.storage import goldimage

    m = make_fleet(tmp_path, count=8)
    reads: list[Path] = []
    real = goldimage.sha256_file

    def counting(path: Path) -> str:
        reads.append(path)
        return real(path)

    class TouchesTheGi(FakeBackend):
        def apply(self, recipe, prepared, dest):  # type: ignore[no-untyped-def]
            super().apply(recipe, prepared, dest)
            if len(self.made) == 1:
                os.chmod(m.gi, 0o640)  # moves ctime, not a byte

    monkeypatch.setattr(goldimage, "sha256_file", counting)
    engine.provision(m, TouchesTheGi(), workers=1)
    assert len(engine.status(m, FakeBackend()).clones) == 8
    assert len([p for p in reads if p == m.gi]) <= 3  # the plan's hash, then one for the moved stamp


def test_status_of_a_fleet_in_sync_advises_nothing_and_verify_says_what_it_checked(
        tmp_path: Path, cli: Callable[..., object]) -> None:
    m = make_fleet(tmp_path, count=3)
    engine.provision(m, FakeBackend())
    data = json.loads(cli("status", str(m.path), "--json").out)  # type: ignore[attr-defined]
    assert data["in_sync"] is True and data["advice"] == "in sync" and data["verified"] == 0
    r = cli("status", str(m.path), "--verify")
    assert r.code == 0 and "verified 3 of 3 clones in depth" in r.out  # type: ignore[attr-defined]
    assert json.loads(cli("status", str(m.path), "--verify", "--json").out)["verified"] == 3  # type: ignore[attr-defined]
