"""Private copies (no reflink, no copy_file_range): same bytes, holes and zero blocks skipped,
thick copies allocated in full; the zero-block scan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clonefleet.storage.data import copy_file_private, nonzero_runs, write_new_file

KiB = 1024


@given(st.lists(st.sampled_from([b"\0" * 4096, b"x" * 4096, b"\0" * 4095 + b"y"]), max_size=20),
       st.integers(0, 4095))
def test_nonzero_runs_cover_exactly_the_nonzero_blocks(blocks: list[bytes], tail: int) -> None:
    data = b"".join(blocks) + b"z" * tail
    runs = nonzero_runs(data)
    covered = bytearray(len(data))
    for a, b in runs:
        assert a % 4096 == 0 and (b % 4096 == 0 or b == len(data)) and a < b
        covered[a:b] = b"\1" * (b - a)
    for off in range(0, len(data), 4096):
        block = data[off:off + 4096]
        assert bool(covered[off]) == (block.count(0) != len(block))
    assert all(runs[i][1] < runs[i + 1][0] for i in range(len(runs) - 1))  # merged, in order


def make_sparse(path: Path) -> bytes:
    with open(path, "wb") as f:
        f.truncate(4 * 1024 * KiB)
        f.seek(0)
        f.write(b"a" * 64 * KiB)
        f.seek(1024 * KiB)
        f.write(b"\0" * 256 * KiB + b"b" * 8 * KiB)  # written zeros, then data
    return path.read_bytes()


def test_sparse_copy_same_bytes_fewer_blocks(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    content = make_sparse(src)
    copy_file_private(src, dest)
    assert dest.read_bytes() == content
    assert os.stat(dest).st_blocks * 512 <= (64 + 8 + 8) * KiB  # the written zeros are not copied
    assert os.stat(dest).st_mode & 0o777 == 0o644


def test_thick_copy_allocates_the_whole_size(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    content = make_sparse(src)
    copy_file_private(src, dest, thick=True)
    assert dest.read_bytes() == content
    assert os.stat(dest).st_blocks * 512 >= len(content)


def test_never_replaces_or_follows(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_sparse(src)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "link").symlink_to(victim)
    for dest in (victim, tmp_path / "link"):
        with pytest.raises(FileExistsError):
            copy_file_private(src, dest)
        with pytest.raises(FileExistsError):
            write_new_file(dest, b"x")
    assert victim.read_text() == "keep"
