"""The journal: records survive, torn or damaged lines are ignored, replay gives the last state."""

from __future__ import annotations

from pathlib import Path

from clonefleet.provision.journal import STATE_DIR, Journal, decode, encode


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
