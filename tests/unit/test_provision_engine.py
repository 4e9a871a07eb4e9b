"""The engine on the fake backend: plan, apply, rerun, crash leftovers, failures, lock, destroy."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import clonefleet.provision as engine
from clonefleet.backends.fake import FakeBackend
from clonefleet.errors import UsageError
from clonefleet.provision.journal import Journal
from clonefleet.provision.manifest import Manifest, load_manifest, write_manifest
from clonefleet.storage.data import sha256_file
from clonefleet.storage.goldimage import GoldenImageError
from fakes import fake_backend

pytestmark = pytest.mark.usefixtures("fake_backend")
__all__ = ["fake_backend"]


def make_fleet(tmp_path: Path, count: int = 12, g: int = 1, **fleet: object) -> Manifest:
    gi = tmp_path / "gi.img"
    if not gi.exists():
        gi.write_bytes(os.urandom(64 * 1024))
        gi.chmod(0o444)
    return write_manifest(tmp_path / "fleet.toml", {
        "fleet": {"name": "t", "count": count, "dest": "clones", **fleet},
        "golden_image": {"path": "gi.img", "sha256": sha256_file(gi), "bytes": gi.stat().st_size},
        "clones": {"backend": "fake", "method": "snapshot", "golden_images": g, "workers": 3},
    }, force=True)


def clone_files(m: Manifest) -> set[str]:
    return {n for n in os.listdir(m.dest) if n.endswith(".fake")}


def test_provision_then_rerun_is_idempotent(tmp_path: Path) -> None:
    m = make_fleet(tmp_path)
    first = engine.provision(m, FakeBackend())
    assert first.created == 12
    assert clone_files(m) == {f"vm-{i:04d}.fake" for i in range(1, 13)}
    again = engine.provision(m, FakeBackend())
    assert (again.created, again.adopted, again.plan.present) == (0, 0, 12)
    assert engine.status(m, FakeBackend()).in_sync


def test_clones_spread_evenly_over_replicas(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=10, g=3)
    engine.provision(m, FakeBackend())
    sources = [(m.dest / f"vm-{i:04d}.fake").read_text().split()[-1] for i in range(1, 11)]
    counts = sorted(sources.count(s) for s in set(sources))
    assert counts == [3, 3, 4]
    assert len(set(sources)) == 3
    assert str(m.gi) in sources


def test_rerun_cleans_temporaries_and_remakes_missing(tmp_path: Path) -> None:
    m = make_fleet(tmp_path)
    engine.provision(m, FakeBackend())
    # what a kill leaves: a temporary in the private folder, a lost clone
    (m.dest / ".clonefleet" / "tmp" / "4242.vm-0013.fake").write_bytes(b"half")
    os.unlink(m.dest / "vm-0003.fake")
    m13 = make_fleet(tmp_path, count=13)
    plan = engine.make_plan(m13, FakeBackend())
    assert plan.temporaries == ["4242.vm-0013.fake"]
    assert plan.missing == ["vm-0003.fake"]
    result = engine.provision(m13, FakeBackend())
    assert result.temporaries_removed == 1 and result.created == 2
    assert clone_files(m13) == {f"vm-{i:04d}.fake" for i in range(1, 14)}
    assert os.listdir(m.dest / ".clonefleet" / "tmp") == []


def test_a_clone_whose_created_record_was_lost_is_adopted(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=4)
    engine.provision(m, FakeBackend())
    journal = m.dest / ".clonefleet" / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    # killed after the link, before the "created" record: the synced "made" record names the file
    journal.write_text("".join(ln for ln in lines if not ('"op":"created"' in ln and "vm-0004" in ln)))
    result = engine.provision(m, FakeBackend())
    assert (result.adopted, result.created) == (1, 0)
    assert engine.status(m, FakeBackend()).in_sync


def test_a_whole_clone_clonefleet_did_not_make_is_refused_not_adopted(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=3)
    engine.provision(m, FakeBackend())
    payload = (m.dest / "vm-0001.fake").read_bytes()
    (m.dest / "vm-0004.fake").write_bytes(payload)  # a user's copy: no journal record names it
    m4 = make_fleet(tmp_path, count=4)
    with pytest.raises(UsageError, match="is not the clone clonefleet made"):
        engine.provision(m4, FakeBackend())
    assert (m.dest / "vm-0004.fake").read_bytes() == payload


def test_a_foreign_file_under_a_clone_name_is_refused_not_overwritten(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=2)
    m.dest.mkdir()
    (m.dest / "vm-0002.fake").write_text("my notes")
    with pytest.raises(UsageError, match="is not the clone clonefleet made"):
        engine.provision(m, FakeBackend())
    assert (m.dest / "vm-0002.fake").read_text() == "my notes"


def test_fewer_clones_wanted_removes_only_journaled_extras(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=5)
    engine.provision(m, FakeBackend())
    (m.dest / "notes.txt").write_text("keep me")
    m3 = make_fleet(tmp_path, count=3)
    result = engine.provision(m3, FakeBackend())
    assert result.removed == 2
    assert clone_files(m3) == {"vm-0001.fake", "vm-0002.fake", "vm-0003.fake"}
    assert (m.dest / "notes.txt").read_text() == "keep me"
    assert engine.status(m3, FakeBackend()).unknown == ("notes.txt",)


def test_full_disk_removes_the_half_made_clone_lists_it_and_a_rerun_completes(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=20)
    full = FakeBackend(fail_on={"vm-0007": OSError(errno.ENOSPC, "No space left on device")})
    with pytest.raises(engine.ProvisionFailed) as info:
        engine.provision(m, full, workers=1)
    message = info.value.message
    assert "no space left" in message and "vm-0007.fake" in message and "\n" not in message
    assert not (m.dest / "vm-0007.fake").exists()
    assert not [n for n in os.listdir(m.dest) if n.startswith(".cf-tmp.")]
    st = engine.status(m, FakeBackend())
    assert [c.name for c in st.clones if c.state == "failed"] == ["vm-0007.fake"]
    assert st.count("ok") == len(clone_files(m)) < 20
    engine.provision(m, FakeBackend())
    assert engine.status(m, FakeBackend()).in_sync


def test_a_second_provisioner_refuses_while_the_lock_is_held(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=2)
    with engine.fleet_lock(m.dest, "provision"), pytest.raises(engine.FleetBusy, match="locked by"):
        engine.provision(m, FakeBackend())
    engine.provision(m, FakeBackend())  # released: works


def test_destroy_removes_clones_and_replicas_but_not_the_gi_or_foreign_files(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=6, g=2)
    engine.provision(m, FakeBackend())
    gi_sha = sha256_file(m.gi)
    (m.dest / "notes.txt").write_text("keep")
    outside = tmp_path / "outside.txt"
    outside.write_text("outside")
    result = engine.destroy(m, FakeBackend())
    assert (result.removed, result.replicas_removed) == (6, 1)
    assert set(os.listdir(m.dest)) == {"notes.txt", ".clonefleet"}
    assert sha256_file(m.gi) == gi_sha and outside.read_text() == "outside"
    engine.destroy(m, FakeBackend())  # a rerun does nothing more


def test_destroy_of_a_clean_fleet_leaves_no_directory(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=3)
    engine.provision(m, FakeBackend())
    engine.destroy(m, FakeBackend())
    assert not m.dest.exists()
    assert m.gi.exists()


def test_a_symlink_where_a_clone_belongs_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=2)
    m.dest.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, m.dest / "vm-0001.fake")
    with pytest.raises(UsageError, match="symlink"):
        engine.provision(m, FakeBackend())
    with pytest.raises(UsageError, match="symlink"):
        engine.status(m, FakeBackend())
    assert victim.read_text() == "precious"


def test_destroy_keeps_a_journaled_name_turned_symlink_and_its_target(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=2)
    engine.provision(m, FakeBackend())
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.unlink(m.dest / "vm-0001.fake")
    os.symlink(victim, m.dest / "vm-0001.fake")
    result = engine.destroy(m, FakeBackend())
    assert result.removed == 1 and any(k.startswith("vm-0001.fake") for k in result.kept)
    assert (m.dest / "vm-0001.fake").is_symlink() and victim.read_text() == "precious"


def test_a_changed_gi_is_refused(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=2)
    m.gi.chmod(0o644)
    with open(m.gi, "r+b") as f:
        f.write(b"X")
    with pytest.raises(GoldenImageError, match="SHA-256"):
        engine.provision(m, FakeBackend())
    assert not m.dest.exists()


def test_a_truncated_gi_is_refused(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=2)
    m.gi.chmod(0o644)
    os.truncate(m.gi, 1000)
    with pytest.raises(GoldenImageError, match="truncated"):
        engine.provision(m, FakeBackend())


def test_a_gi_open_for_writing_is_refused(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=2)
    m.gi.chmod(0o644)
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import sys,time; f=open(sys.argv[1],'r+b'); "
                               "print('open', flush=True); time.sleep(60)", str(m.gi)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(GoldenImageError, match=f"open for writing by pid {holder.pid}"):
            engine.provision(m, FakeBackend())
    finally:
        holder.kill()
        holder.wait()


def test_probe_refusal_leaves_no_directory(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=2)
    from clonefleet.backends import BackendUnavailable

    with pytest.raises(BackendUnavailable):
        engine.provision(m, FakeBackend(unavailable="no such storage here"))
    assert not m.dest.exists()


def test_journal_records_every_clone(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=7)
    engine.provision(m, FakeBackend())
    assert Journal.read(m.dest).present() == clone_files(m)
    assert load_manifest(m.path).count == 7


def test_a_manifest_that_changes_how_existing_clones_were_made_is_refused(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=3, g=2)
    engine.provision(m, FakeBackend())
    m3 = make_fleet(tmp_path, count=3, g=3)
    with pytest.raises(UsageError, match="golden_images"):
        engine.provision(m3, FakeBackend())
    engine.destroy(m3, FakeBackend())
    engine.provision(m3, FakeBackend())  # a fresh fleet may be made any way
    assert engine.status(m3, FakeBackend()).in_sync


def test_a_killed_first_run_does_not_pin_the_method(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=3, g=2)
    (m.dest / ".clonefleet").mkdir(parents=True)
    with Journal(m.dest) as j:
        j.append("begin", options={"golden_images": 2})  # a run killed before its first clone
    m3 = make_fleet(tmp_path, count=3, g=3)
    engine.provision(m3, FakeBackend())
    assert engine.status(m3, FakeBackend()).in_sync


def test_a_refused_gi_leaves_no_fleet_directory(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=2)
    m.gi.chmod(0o644)
    m.gi.write_bytes(b"changed")
    with pytest.raises(GoldenImageError):
        engine.provision(m, FakeBackend())
    assert not m.dest.exists()


def test_destroy_after_a_kill_removes_unjournaled_clones_and_replicas_too(tmp_path: Path) -> None:
    m = make_fleet(tmp_path, count=4, g=2)
    engine.provision(m, FakeBackend())
    journal = m.dest / ".clonefleet" / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    keep = [line for line in lines if '"op":"created"' not in line and '"op":"replica"' not in line]
    journal.write_text("".join(keep))  # as if every record of the run were lost
    (m.dest / ".clonefleet" / "tmp" / "template.x").mkdir()  # a killed run's scratch, in its private folder
    result = engine.destroy(m, FakeBackend())
    assert (result.removed, result.replicas_removed, result.kept) == (4, 1, ())
    assert not m.dest.exists()


def test_state_and_replica_folders_that_are_symlinks_out_of_the_fleet_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    m = make_fleet(tmp_path, count=2, g=2)
    m.dest.mkdir()
    (m.dest / ".clonefleet").symlink_to(outside)
    with pytest.raises(UsageError, match="symlink"):
        engine.provision(m, FakeBackend())
    assert os.listdir(outside) == []
    os.unlink(m.dest / ".clonefleet")
    (m.dest / "golden").symlink_to(outside)
    with pytest.raises(UsageError, match="symlink"):
        engine.provision(m, FakeBackend())
    assert os.listdir(outside) == []
