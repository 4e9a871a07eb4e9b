"""Property: whatever a crash leaves (temporaries, clones renamed but not journaled, a journal
whose unsynced tail was lost, a torn last record), the next run ends with the directory, the
journal and the manifest in agreement. Fake backend, so many cases run quickly."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from clonefleet.backends.fake import FakeBackend
from clonefleet.provision import engine
from clonefleet.provision.journal import Journal
from clonefleet.provision.manifest import Manifest, write_manifest
from clonefleet.provision.safety import sha256_file

step = st.tuples(
    st.integers(1, 12),  # clones wanted in this run
    st.integers(1, 14),  # the clone whose creation "crashes" (beyond count: none)
    st.floats(0, 1),  # share of the journal that survives the crash
    st.booleans(),  # a finished clone renamed into place but never journaled
    st.booleans(),  # a temporary left behind
)


def manifest(base: Path, count: int) -> Manifest:
    gi = base / "gi.img"
    if not gi.exists():
        gi.write_bytes(b"golden!!" * 1024)  # 8 KiB: whole 512-byte sectors, as a raw disk is
    return write_manifest(base / "f.toml", {
        "fleet": {"count": count, "dest": "fleet"},
        "golden_image": {"path": "gi.img", "sha256": sha256_file(gi)},
        "clones": {"backend": "fake", "workers": 2},
    }, force=True)


@settings(max_examples=100)
@given(st.lists(step, min_size=1, max_size=5))
def test_any_crash_then_a_rerun_ends_in_agreement(steps: list[tuple[int, int, float, bool, bool]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for count, crash_at, keep, unjournaled, temporary in steps:
            m = manifest(base, count)
            crash = FakeBackend(fail_on={f"vm-{crash_at:04d}": OSError(errno.EIO, "crash")})
            with contextlib.suppress(engine.ProvisionFailed):
                engine.provision(m, crash, workers=1)
            journal = m.dest / ".clonefleet" / "journal.jsonl"
            if journal.exists():  # the unsynced tail is lost, maybe mid-record
                os.truncate(journal, int(journal.stat().st_size * keep))
            if unjournaled:  # killed between rename and journal: a whole clone, no record
                payload = (b"clonefleet fake clone\nsnapshot " + str(m.gi).encode() + b"\n")
                (m.dest / f"vm-{count:04d}.fake").write_bytes(payload)
            if temporary:
                (m.dest / f".cf-tmp.4242.vm-{count:04d}.fake").write_bytes(b"half")
        final = manifest(base, steps[-1][0])
        engine.provision(final, FakeBackend())
        wanted = {f"vm-{i:04d}.fake" for i in range(1, final.count + 1)}
        on_disk = {n for n in os.listdir(final.dest) if n not in (".clonefleet",)}
        assert on_disk == wanted  # no orphan, nothing missing, no temporary
        assert Journal.read(final.dest).present() == wanted
        assert engine.status(final, FakeBackend()).count("ok") == final.count
