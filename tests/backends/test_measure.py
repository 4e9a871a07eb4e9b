"""Consumption measurement against real images and real filesystems.

The reflink tests loop-mount a small xfs made with ``mkfs.xfs -m reflink=1``
(/tmp here is ext4, which has no reflink) and unmount it in teardown, even when
the test fails. Every test that runs a real tool (qemu-img, mkfs, mount, xfs_spaceman)
carries the ``backend`` marker; the others measure files in the temporary folder.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.provision.goldimage import GoldenImage, build_golden_image
from clonefleet.storage.measure import (
    allocated_bytes,
    data_bytes_seek,
    exclusive_bytes,
    fiemap,
    file_sharing,
    fleet_sharing,
    fs_usage,
    release_xfs_preallocation,
    union_bytes,
    unique_physical_bytes,
)
from clonefleet.storage.qcow2 import qcow2_actual_bytes, qcow2_allocation, qcow2_info
from helpers import mounted, require_tool

MiB = 1024**2
KiB = 1024


@pytest.fixture
def reflink_dir() -> Iterator[Path]:
    """A folder on a freshly made, loop-mounted xfs with reflink; unmounted afterwards."""
    require_tool("cp")
    with mounted("xfs", 320 * MiB) as mnt:  # mkfs.xfs wants at least 300 MiB; the file stays sparse
        yield mnt


@pytest.fixture(scope="module")
def gi(tmp_path_factory: pytest.TempPathFactory) -> GoldenImage:
    require_tool("qemu-img", "mkfs.ext4", "debugfs", "dumpe2fs")
    return build_golden_image(tmp_path_factory.mktemp("gi"), size_bytes=64 * MiB, seed=2)


def linked_clone(gi: GoldenImage, path: Path) -> Path:
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(gi.path), str(path)],
        check=True,
    )
    return path


def _random_file(path: Path, size_bytes: int, seed: int) -> None:
    path.write_bytes(np.random.default_rng(seed).bytes(size_bytes))
    with open(path, "rb") as f:
        os.fsync(f.fileno())


# --- qcow2 ----------------------------------------------------------------------------------


@pytest.mark.backend
def test_fresh_linked_clone_owns_no_data(gi: GoldenImage, tmp_path: Path) -> None:
    require_tool("qemu-img")
    clone = linked_clone(gi, tmp_path / "c.qcow2")
    actual = qcow2_actual_bytes(clone)
    # Only qcow2 metadata (header, L1, refcounts): about 196 KiB with 64 KiB clusters.
    assert 128 * KiB <= actual <= 320 * KiB
    alloc = qcow2_allocation(clone)
    assert alloc.own_data_bytes == 0
    assert alloc.own_zero_bytes == 0
    # Everything the clone shows comes from the GI: exactly the GI's own data.
    assert alloc.backing_data_bytes == gi.used_bytes == qcow2_allocation(gi.path).own_data_bytes
    assert alloc.data_bytes_by_depth == (0, gi.used_bytes)
    assert alloc.virtual_bytes == gi.virtual_bytes
    assert alloc.backing_data_bytes + alloc.unallocated_bytes == gi.virtual_bytes
    info = qcow2_info(clone)
    assert (info.format, info.backing_file, info.backing_format) == ("qcow2", str(gi.path), "qcow2")
    assert info.cluster_bytes == 65536


@pytest.mark.backend
def test_zero_writes_allocate_no_data(gi: GoldenImage, tmp_path: Path) -> None:
    require_tool("qemu-img", "qemu-io")
    clone = linked_clone(gi, tmp_path / "z.qcow2")
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -z 0 131072", str(clone)],
        check=True, capture_output=True,
    )
    alloc = qcow2_allocation(clone)
    assert alloc.own_data_bytes == 0
    assert alloc.own_zero_bytes == 131072


@pytest.mark.backend
def test_broken_backing_chain_is_a_one_line_error(gi: GoldenImage, tmp_path: Path) -> None:
    require_tool("qemu-img")
    orphan = tmp_path / "gone.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-u", "-f", "qcow2", "-F", "qcow2",
         "-b", str(tmp_path / "nope"), str(orphan), "1M"],
        check=True,
    )
    with pytest.raises(ClonefleetError) as err:
        qcow2_allocation(orphan)
    message = str(err.value)
    assert message.startswith("qemu-img map failed (exit 1): qemu-img:")
    assert "\n" not in message
    with pytest.raises(UsageError, match="not an existing regular file"):
        qcow2_info(tmp_path / "missing.qcow2")


@pytest.mark.backend
def test_known_format_is_not_probed(tmp_path: Path) -> None:
    require_tool("qemu-img")
    # A raw disk whose guest wrote a qcow2 image into it: probing reads it as qcow2.
    raw = tmp_path / "guest.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(raw), "1M"], check=True)
    assert qcow2_info(raw).format == "qcow2"
    info = qcow2_info(raw, fmt="raw")
    assert (info.format, info.cluster_bytes, info.backing_file) == ("raw", None, None)
    # qemu shows a raw file's size rounded up to whole 512-byte sectors.
    assert raw.stat().st_size <= info.virtual_bytes < raw.stat().st_size + 512
    assert qcow2_allocation(raw, fmt="raw").data_bytes_by_depth[0] > 0
    with pytest.raises(ClonefleetError, match="qemu-img info failed"):
        qcow2_info(raw, fmt="vmdk")


# --- st_blocks, SEEK_DATA, FIEMAP on the host filesystem --------------------------------------


def test_sparse_file_counts_only_its_data(tmp_path: Path) -> None:
    f = tmp_path / "sparse"
    with open(f, "wb") as out:
        out.truncate(10 * MiB)
        for block in (0, 100, 2000):
            out.seek(block * 4096)
            out.write(b"\x5a" * 4096)
        out.flush()
        os.fsync(out.fileno())
    assert data_bytes_seek(f) == 3 * 4096
    assert allocated_bytes(f) == 3 * 4096
    exts = fiemap(f)
    assert sum(e.length_bytes for e in exts) == 3 * 4096
    assert sorted(e.logical_bytes for e in exts) == [0, 100 * 4096, 2000 * 4096]
    assert not any(e.shared for e in exts)
    assert exclusive_bytes(f) == 3 * 4096


def test_fiemap_sees_many_extents_in_batches(tmp_path: Path) -> None:
    # 600 separate 4 KiB blocks: more extents than one FIEMAP call returns (256).
    f = tmp_path / "holes"
    with open(f, "wb") as out:
        for i in range(600):
            out.seek(i * 3 * 4096)
            out.write(b"\x01" * 4096)
        out.flush()
        os.fsync(out.fileno())
    exts = fiemap(f)
    assert len(exts) == 600
    assert sum(e.length_bytes for e in exts) == 600 * 4096
    # st_blocks also charges the extent-tree blocks that 600 extents need on ext4.
    assert 600 * 4096 <= allocated_bytes(f) <= 600 * 4096 + 4 * 4096


@pytest.mark.backend
def test_fiemap_unsupported_is_a_clonefleet_error() -> None:
    # A tmpfs of our own (tmpfs has no FIEMAP), rather than hoping /dev/shm is one.
    with mounted("tmpfs", 4 * MiB) as mnt:
        f = mnt / "file"
        f.write_bytes(b"x" * 4096)
        with pytest.raises(ClonefleetError, match="FIEMAP on .* failed: .*must support FIEMAP"):
            fiemap(f)


def test_preallocated_extents_are_consumed_and_reported(tmp_path: Path) -> None:
    f = tmp_path / "prealloc.raw"
    fd = os.open(f, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.posix_fallocate(fd, 0, MiB)
        os.pwrite(fd, b"\x11" * 4096, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    sharing = file_sharing(f)
    # Allocated, reads as zeros: du and FIEMAP count it, SEEK_DATA does not.
    assert sharing.mapped_bytes == MiB == allocated_bytes(f)
    assert sharing.unwritten_bytes == MiB - 4096
    assert unique_physical_bytes([f]) == MiB
    assert data_bytes_seek(f) == 4096


@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 40)), max_size=30),
)
def test_union_bytes_matches_a_brute_force_count(intervals: list[tuple[int, int]]) -> None:
    covered: set[int] = set()
    for s, n in intervals:
        covered.update(range(s, s + n))
    starts = [s for s, _ in intervals]
    lengths = [n for _, n in intervals]
    assert union_bytes(starts, lengths) == len(covered)


# --- reflink on xfs ---------------------------------------------------------------------------


@pytest.mark.backend
def test_reflink_fleet_counts_shared_extents_once(reflink_dir: Path) -> None:
    require_tool("cp")
    gi_file = reflink_dir / "gi.raw"
    _random_file(gi_file, 20 * MiB, seed=5)
    before = fs_usage(reflink_dir)
    copies = []
    for i in range(10):
        c = reflink_dir / f"clone-{i}.raw"
        subprocess.run(["cp", "--reflink=always", str(gi_file), str(c)], check=True)
        copies.append(c)
    after = fs_usage(reflink_dir)
    fleet = fleet_sharing([gi_file, *copies])
    # du-style accounting charges every copy in full...
    assert fleet.naive_allocated_bytes == 11 * 20 * MiB
    assert sum(allocated_bytes(p) for p in copies) == 10 * 20 * MiB
    # ...the union of physical extents counts the shared blocks once.
    assert fleet.unique_physical_bytes == 20 * MiB
    assert unique_physical_bytes([gi_file, *copies]) == 20 * MiB
    assert fleet.sharing_ratio == pytest.approx(11.0)
    for f in fleet.files:
        assert (f.mapped_bytes, f.shared_bytes, f.exclusive_bytes) == (20 * MiB, 20 * MiB, 0)
    # df agrees: ten copies cost metadata only, far less than one copy's data.
    assert after.delta_used_bytes(before) < 2 * MiB
    # ...and fs_usage's used bytes are df's Used column (coreutils df, asked in bytes).
    first = fs_usage(reflink_dir).used_bytes
    df = subprocess.run(["df", "-B1", "--output=used", str(reflink_dir)], capture_output=True, text=True,
                        check=True).stdout.split()
    last = fs_usage(reflink_dir).used_bytes
    assert df[0] == "Used" and min(first, last) <= int(df[1]) <= max(first, last)


@pytest.mark.backend
def test_full_copies_count_in_full(reflink_dir: Path) -> None:
    require_tool("cp")
    src = reflink_dir / "gi.raw"
    _random_file(src, 4 * MiB, seed=6)
    before = fs_usage(reflink_dir)
    full = reflink_dir / "full.raw"
    subprocess.run(["cp", "--reflink=never", str(src), str(full)], check=True)
    after = fs_usage(reflink_dir)
    assert unique_physical_bytes([src, full]) == 8 * MiB
    assert exclusive_bytes(full) == exclusive_bytes(src) == 4 * MiB
    assert 4 * MiB <= after.delta_used_bytes(before) <= 5 * MiB
    # A hard link is the same file: counted once.
    link = reflink_dir / "link.raw"
    os.link(full, link)
    assert fleet_sharing([src, full, link]).naive_allocated_bytes == 8 * MiB


@pytest.mark.backend
def test_df_delta_of_cow_writes_needs_xfs_preallocation_released(reflink_dir: Path) -> None:
    require_tool("cp", "xfs_spaceman")
    src = reflink_dir / "gi.raw"
    _random_file(src, 16 * MiB, seed=7)
    clone = reflink_dir / "vm.raw"
    subprocess.run(["cp", "--reflink=always", str(src), str(clone)], check=True)
    before = fs_usage(reflink_dir)
    # 200 scattered 4 KiB blocks, written into the clone: each unshares one block.
    blocks = np.random.default_rng(3).choice(16 * MiB // 4096, size=200, replace=False)
    fd = os.open(clone, os.O_WRONLY)
    try:
        for b in blocks.tolist():
            os.pwrite(fd, b"\xa5" * 4096, b * 4096)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert exclusive_bytes(clone) == 200 * 4096
    # xfs reserved copy-on-write extents beyond the blocks written (cowextsize hint)...
    assert fs_usage(reflink_dir).delta_used_bytes(before) > 2 * 200 * 4096
    release_xfs_preallocation(reflink_dir)
    # ...and once released, df and FIEMAP agree up to a little metadata.
    delta = fs_usage(reflink_dir).delta_used_bytes(before)
    assert 200 * 4096 <= delta <= 200 * 4096 + 256 * KiB


@pytest.mark.backend
def test_release_xfs_preallocation_elsewhere_is_a_one_line_error() -> None:
    require_tool("xfs_spaceman")
    # A tmpfs is certainly not xfs, wherever the temporary folder lives.
    with mounted("tmpfs", 4 * MiB) as mnt, pytest.raises(ClonefleetError, match="xfs_spaceman failed .*XFS"):
        release_xfs_preallocation(mnt)


def test_fs_usage_of_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        fs_usage(tmp_path / "nope")
