"""The journal: records survive, torn or damaged lines are ignored, replay gives the last state (ages and
refreshes included)."""

from __future__ import annotations

from pathlib import Path

from clonefleet.provision.journal import STATE_DIR, Journal, decode, encode
from clonefleet.storage.paths import FileId


def test_round_trip_and_replay(tmp_path: Path) -> None:
    (tmp_path / STATE_DIR).mkdir()
    with Journal(tmp_path, group=2) as j:
        j.append("begin", gi_sha256="ab" * 32)
        for name in ("a", "b", "c"):
            j.append("created", name=name)
        j.append("written", name="b")
        j.append("failed", name="d", reason="no space")
        j.append("removed", name="c")
    state = Journal.read(tmp_path)
    assert state.present() == {"a", "b"}
    assert state.written() == {"b"}
    assert state.failed() == {"d": "no space"}
    assert state.gi_sha256 == "ab" * 32
    assert state.damaged_lines == 0


def test_a_torn_last_line_is_ignored_and_appends_start_fresh(tmp_path: Path) -> None:
    (tmp_path / STATE_DIR).mkdir()
    with Journal(tmp_path) as j:
        j.append("created", name="a")
    path = tmp_path / STATE_DIR / "journal.jsonl"
    whole = encode({"op": "created", "name": "b"})
    with open(path, "a") as f:
        f.write(whole[: len(whole) // 2])  # killed mid-write
    assert Journal.read(tmp_path).present() == {"a"}
    with Journal(tmp_path) as j:
        j.append("created", name="c")
    state = Journal.read(tmp_path)
    assert state.present() == {"a", "c"}
    assert state.damaged_lines == 1


def test_a_flipped_byte_fails_the_crc() -> None:
    line = encode({"op": "created", "name": "vm-1"})
    assert decode(line) == {"op": "created", "name": "vm-1"}
    assert decode(line.replace("vm-1", "vm-2")) is None
    assert decode(line.rstrip("\n")) is None
    assert decode("not json\n") is None


def test_destroyed_resets_the_state(tmp_path: Path) -> None:
    (tmp_path / STATE_DIR).mkdir()
    with Journal(tmp_path) as j:
        j.append("created", name="a")
        j.append("replica", name="golden/gi-r2.img")
        j.append("destroyed")
        j.append("created", name="b")
    state = Journal.read(tmp_path)
    assert state.present() == {"b"} and not state.replicas


def test_the_journal_holds_each_clones_age_until_it_is_made_anew(tmp_path: Path) -> None:
    (tmp_path / STATE_DIR).mkdir()
    with Journal(tmp_path) as j:
        for name, ino in (("a", 1), ("b", 2), ("c", 3)):
            j.append("created", name=name, dev=9, ino=ino)
            j.append("written", name=name)
        j.append("days", name="a", days=2, dev=9, ino=1)
        j.append("days", name="a", days=3, dev=9, ino=1)
        j.append("days", name="b", days=4, dev=9, ino=7)  # another file than the one made under that name
        j.append("days", name="c", days=-1, dev=9, ino=3)  # not whole days: ignored
        j.append("days", name="c", days=True, dev=9, ino=3)
        j.append("remade", name="a", dev=9, ino=11)
    state = Journal.read(tmp_path)
    assert (state.age_of("a"), state.age_of("b"), state.age_of("c")) == (3, 0, 0)
    assert state.damaged_lines == 2
    assert state.remade == {"a": FileId(9, 11)} and state.identity_of("a") == FileId(9, 1)  # the old clone: ours
    assert state.written() == {"a", "b", "c"}
    with Journal(tmp_path) as j:
        j.append("created", name="a", dev=9, ino=11, refreshed=True)
    state = Journal.read(tmp_path)
    assert state.age_of("a") == 0 and state.written() == {"b", "c"} and state.identity_of("a") == FileId(9, 11)
    assert state.remade == {} and state.present() == {"a", "b", "c"}
    with Journal(tmp_path) as j:  # a refresh killed before its rename: the next run voids the record
        j.append("remade", name="b", dev=9, ino=12, gen=5)
        j.append("remade-void", name="b")
    state = Journal.read(tmp_path)
    assert state.remade == {} and state.identity_of("b") == FileId(9, 2)
