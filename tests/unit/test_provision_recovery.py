"""Property: whatever a crash leaves (temporaries in the private folder, clones linked into place
whose "created" record was lost, a journal whose unsynced tail was lost, a torn last record), the
next run ends with the directory, the journal and the manifest in agreement. Fake backend, so many
cases run quickly.

What a crash can lose is the unsynced tail of the journal: the records after the last sync. The
"tmpdir" and "made" records are synced before anything is written into the private folder or
linked into place, so the tail starts after the last of them."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import clonefleet.provision as engine
from clonefleet.backends.fake import FakeBackend
from clonefleet.provision.journal import Journal
from clonefleet.provision.manifest import Manifest, write_manifest
from clonefleet.storage.data import sha256_file
from fakes import fake_backend

step = st.tuples(
    st.integers(1, 12),  # clones wanted in this run
    st.integers(1, 14),  # the clone whose creation "crashes" (beyond count: none)
    st.floats(0, 1),  # share of the journal's unsynced tail that survives the crash
    st.booleans(),  # a finished clone left in the private folder, not yet linked
    st.booleans(),  # a half-made temporary left behind
)


pytestmark = pytest.mark.usefixtures("fake_backend")
__all__ = ["fake_backend"]


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
                text = journal.read_bytes()
                synced = max(text.rfind(b'"op":"made"'), text.rfind(b'"op":"tmpdir"'))
                synced = text.index(b"\n", synced) + 1 if synced >= 0 else 0
                os.truncate(journal, synced + int((len(text) - synced) * keep))
            tmp = m.dest / ".clonefleet" / "tmp"
            if unjournaled:  # killed before the link: a whole clone in the private folder
                payload = (b"clonefleet fake clone\nsnapshot " + str(m.gi).encode() + b"\n")
                (tmp / f"4242.vm-{count:04d}.fake").write_bytes(payload)
            if temporary:
                (tmp / f"4243.vm-{count:04d}.fake").write_bytes(b"half")
        final = manifest(base, steps[-1][0])
        engine.provision(final, FakeBackend())
        wanted = {f"vm-{i:04d}.fake" for i in range(1, final.count + 1)}
        on_disk = {n for n in os.listdir(final.dest) if n not in (".clonefleet",)}
        assert on_disk == wanted  # no orphan, nothing missing, no temporary
        assert Journal.read(final.dest).present() == wanted
        assert engine.status(final, FakeBackend()).count("ok") == final.count
