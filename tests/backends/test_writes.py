"""Boot-footprint writes into real clones, measured, and held against the model's C.

qcow2 clones are written with the real ``qemu-io``; reflink clones live on a
loop-mounted xfs made with ``mkfs.xfs -m reflink=1`` (unmounted in teardown).
"""

from __future__ import annotations

import os
import select
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.model import allocated_bytes_per_clone
from clonefleet.provision.goldimage import (
    GoldenImage,
    build_golden_image,
    golden_image_unchanged,
    sha256_file,
)
from clonefleet.provision.writes import (
    backing_files,
    boot_footprint,
    qemu_io_script,
    write_extents_file,
    write_extents_qcow2,
)
from clonefleet.storage.measure import (
    allocated_bytes,
    data_bytes_seek,
    exclusive_bytes,
    fleet_sharing,
)
from clonefleet.storage.qcow2 import qcow2_allocation
from helpers import mounted, require_tool, units_touched

MiB = 1024**2
CLUSTER = 65536


@pytest.fixture(scope="module")
def gi(tmp_path_factory: pytest.TempPathFactory) -> GoldenImage:
    require_tool("qemu-img", "mkfs.ext4", "debugfs", "dumpe2fs")
    return build_golden_image(tmp_path_factory.mktemp("gi"), size_bytes=128 * MiB, seed=11)


@pytest.fixture
def reflink_dir() -> Iterator[Path]:
    """A folder on a freshly made, loop-mounted xfs with reflink; unmounted afterwards."""
    require_tool("cp")
    with mounted("xfs", 320 * MiB) as mnt:  # mkfs.xfs wants at least 300 MiB; the file stays sparse
        yield mnt


def linked_clone(gi: GoldenImage, path: Path) -> Path:
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(gi.path), str(path)],
        check=True,
    )
    return path


# --- qcow2 ---------------------------------------------------------------------------------


@pytest.mark.backend
@pytest.mark.parametrize(
    ("write_bytes", "extents", "span_bytes", "seed"),
    [
        (4 * MiB, 200, 48 * MiB, 1),  # scattered: most extents land in a cluster of their own
        (8 * MiB, 60, 24 * MiB, 2),  # larger extents, denser span: many clusters touched twice
        (2 * MiB, 500, 16 * MiB, 3),  # many small extents (4 KiB): partial clusters, copy-on-write
    ],
)
def test_qcow2_clone_allocates_exactly_the_touched_clusters(
    gi: GoldenImage, tmp_path: Path, write_bytes: int, extents: int, span_bytes: int, seed: int
) -> None:
    require_tool("qemu-img", "qemu-io")
    clone = linked_clone(gi, tmp_path / "vm.qcow2")
    fp = boot_footprint(write_bytes, extents, span_bytes, seed, span_start_bytes=32 * MiB)
    report = write_extents_qcow2(clone, fp.offsets_bytes, fp.lengths_bytes, seed, protected={gi.path})
    assert report.extent_count == extents
    assert report.written_bytes == fp.written_bytes
    own = qcow2_allocation(clone).own_data_bytes
    exact = units_touched(fp.offsets_bytes, fp.lengths_bytes, CLUSTER) * CLUSTER
    model = float(allocated_bytes_per_clone(write_bytes, extents, span_bytes, CLUSTER))
    assert own == exact  # the trace is the truth...
    assert abs(own - model) <= 0.10 * model  # ...and the occupancy model is close to it
    assert golden_image_unchanged(gi)


@pytest.mark.backend
def test_qcow2_writes_are_real_data_and_the_last_write_wins(gi: GoldenImage, tmp_path: Path) -> None:
    require_tool("qemu-img", "qemu-io")
    clone = linked_clone(gi, tmp_path / "vm.qcow2")
    offsets = np.array([40 * MiB, 40 * MiB + 4096, 50 * MiB], dtype=np.int64)
    lengths = np.array([8192, 4096, 3 * MiB], dtype=np.int64)
    write_extents_qcow2(clone, offsets, lengths, seed=9)
    commands = qemu_io_script(offsets, lengths, seed=9)
    patterns = [int(c.split()[2]) for c in commands]
    assert all(1 <= p <= 255 for p in patterns)

    def reads_as(pattern: int, off: int, length: int) -> bool:
        out = subprocess.run(
            ["qemu-io", "-f", "qcow2", "-c", f"read -P {pattern} {off} {length}", str(clone)],
            capture_output=True, text=True, check=True,
        ).stdout
        return "Pattern verification failed" not in out and "read " in out

    assert reads_as(patterns[0], 40 * MiB, 4096)  # first block kept the first pattern
    assert reads_as(patterns[1], 40 * MiB + 4096, 4096)  # second block: overwritten
    assert reads_as(patterns[2], 50 * MiB, 3 * MiB)
    # 40 MiB .. 40 MiB + 8 KiB is one cluster; the 3 MiB extent is 48 whole clusters.
    assert qcow2_allocation(clone).own_data_bytes == CLUSTER + 3 * MiB


def test_qemu_io_script_splits_long_extents_and_is_seeded() -> None:
    off = np.array([0, 10 * MiB], dtype=np.int64)
    ln = np.array([4096, 5 * MiB + 1], dtype=np.int64)
    a = qemu_io_script(off, ln, seed=4, max_command_bytes=2 * MiB)
    assert a == qemu_io_script(off, ln, seed=4, max_command_bytes=2 * MiB)
    assert len(a) == 1 + 3
    pieces = [(int(c.split()[3]), int(c.split()[4])) for c in a[1:]]
    assert pieces == [(10 * MiB, 2 * MiB), (12 * MiB, 2 * MiB), (14 * MiB, MiB + 1)]
    assert len({c.split()[2] for c in a[1:]}) == 1  # one extent, one pattern


@pytest.mark.backend
def test_writes_never_touch_a_golden_image(gi: GoldenImage, tmp_path: Path) -> None:
    require_tool("qemu-img", "qemu-io")
    before = sha256_file(gi.path)
    # The GI itself: read-only (0444) even without a protected set.
    with pytest.raises(UsageError, match="read-only"):
        write_extents_qcow2(gi.path, [0], [4096], seed=1)
    with pytest.raises(UsageError, match="protected golden image"):
        write_extents_file(gi.path, [0], [4096], seed=1, protected=[gi.path])
    # A writable file that is protected, reached through a hard link and a symlink.
    target = tmp_path / "gi-copy.raw"
    target.write_bytes(b"\x07" * 65536)
    hard = tmp_path / "hard.raw"
    os.link(target, hard)
    soft = tmp_path / "soft.raw"
    soft.symlink_to(target)
    for alias in (target, hard, soft):
        with pytest.raises(UsageError, match="same inode"):
            write_extents_file(alias, [0], [4096], seed=1, protected={target})
    assert target.read_bytes() == b"\x07" * 65536
    assert sha256_file(gi.path) == before == gi.sha256


@pytest.mark.backend
def test_backing_files_of_clones_are_protected(gi: GoldenImage, tmp_path: Path) -> None:
    require_tool("qemu-img", "qemu-io")
    # A writable copy of the GI (0644), cloned with absolute and relative backing names.
    base = tmp_path / "base.qcow2"
    base.write_bytes(gi.path.read_bytes())
    base.chmod(0o644)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base),
                    str(tmp_path / "a.qcow2")], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "base.qcow2",
                    str(tmp_path / "b.qcow2")], check=True)
    clones = [tmp_path / "a.qcow2", tmp_path / "b.qcow2", base]
    found = backing_files(clones)
    assert {p.resolve() for p in found} == {base.resolve()}
    before = sha256_file(base)
    with pytest.raises(UsageError, match="protected golden image"):
        write_extents_qcow2(base, [0], [4096], seed=1, protected=found)
    assert sha256_file(base) == before
    # The clones themselves stay writable.
    write_extents_qcow2(tmp_path / "b.qcow2", [0], [4096], seed=1, protected=found)
    assert qcow2_allocation(tmp_path / "b.qcow2").own_data_bytes == CLUSTER


@pytest.mark.backend
def test_bad_extents_are_refused_before_anything_is_written(gi: GoldenImage, tmp_path: Path) -> None:
    require_tool("qemu-img", "qemu-io")
    clone = linked_clone(gi, tmp_path / "vm.qcow2")
    cases = [
        (([gi.virtual_bytes - 4096], [8192]), "end <= the target's"),
        (([-4096], [4096]), "offset >= 0"),
        (([0], [0]), "length > 0"),
        (([0, 4096], [4096]), "2 offsets but 1 lengths"),
        (([4096.5], [4096]), "offsets must be whole numbers of bytes"),
        (([0], ["4k"]), "lengths must be whole numbers of bytes"),
    ]
    for (offsets, lengths), fragment in cases:
        with pytest.raises(UsageError, match=fragment):
            write_extents_qcow2(clone, offsets, lengths, seed=1)
    assert qcow2_allocation(clone).own_data_bytes == 0
    with pytest.raises(UsageError, match="does not exist"):
        write_extents_qcow2(tmp_path / "missing.qcow2", [0], [4096], seed=1)
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\x00" * 8192)
    with pytest.raises(UsageError, match="end <= the target's 8192 bytes"):
        write_extents_file(raw, [4096], [8192], seed=1)
    assert raw.stat().st_size == 8192
    with pytest.raises(UsageError, match="is a raw image: expected qcow2"):
        write_extents_qcow2(raw, [0], [4096], seed=1)


@pytest.mark.backend
def test_locked_image_is_a_one_line_error(gi: GoldenImage, tmp_path: Path) -> None:
    require_tool("qemu-img", "qemu-io")
    clone = linked_clone(gi, tmp_path / "vm.qcow2")
    # Another qemu process holds the clone open for writing (as a running VM would).
    holder = subprocess.Popen(
        ["qemu-io", "-f", "qcow2", str(clone)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None
        # Its first prompt means the image is open and locked (guarded: never hang here).
        ready, _, _ = select.select([holder.stdout], [], [], 30)
        assert ready, "qemu-io holding the image printed no prompt"
        assert holder.stdout.read(len("qemu-io> ")) == "qemu-io> "
        with pytest.raises(ClonefleetError) as err:
            write_extents_qcow2(clone, [0], [4096], seed=1)
        assert "qemu-io failed (exit 1)" in str(err.value)
        assert "lock" in str(err.value)
        assert "\n" not in str(err.value)
    finally:
        try:
            holder.communicate("quit\n", timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.communicate()
    assert qcow2_allocation(clone).own_data_bytes == 0


# --- raw files ------------------------------------------------------------------------------


@settings(max_examples=25)
@given(
    write_kib=st.integers(4, 2048),
    extents=st.integers(1, 64),
    span_mib=st.integers(1, 8),
    seed=st.integers(0, 2**31),
)
def test_sparse_raw_allocates_exactly_the_written_blocks(
    write_kib: int, extents: int, span_mib: int, seed: int
) -> None:
    """A thin (sparse) raw clone on the host's ext4 allocates the 4 KiB blocks written."""
    fp = boot_footprint(write_kib * 1024, extents, span_mib * MiB, seed)
    with tempfile.TemporaryDirectory() as tmp:
        disk = Path(tmp) / "vm.raw"
        with open(disk, "wb") as f:
            f.truncate(span_mib * MiB)
        report = write_extents_file(disk, fp.offsets_bytes, fp.lengths_bytes, seed)
        blocks = units_touched(fp.offsets_bytes, fp.lengths_bytes, 4096) * 4096
        assert report.distinct_bytes == blocks
        assert data_bytes_seek(disk) == blocks
        assert blocks <= allocated_bytes(disk) <= blocks + 8 * 4096  # + extent-tree blocks
        assert disk.stat().st_size == span_mib * MiB


def test_boot_footprint_is_seeded() -> None:
    a = boot_footprint(4 * MiB, 100, 64 * MiB, seed=5, span_start_bytes=MiB)
    b = boot_footprint(4 * MiB, 100, 64 * MiB, seed=5, span_start_bytes=MiB)
    c = boot_footprint(4 * MiB, 100, 64 * MiB, seed=6, span_start_bytes=MiB)
    assert np.array_equal(a.offsets_bytes, b.offsets_bytes)
    assert not np.array_equal(a.offsets_bytes, c.offsets_bytes)
    assert a.offsets_bytes.min() >= MiB
    assert (a.offsets_bytes + a.lengths_bytes).max() <= 65 * MiB


# --- reflink -------------------------------------------------------------------------------


@pytest.mark.backend
def test_writes_into_a_reflink_copy_unshare_exactly_the_written_blocks(reflink_dir: Path) -> None:
    gi_file = reflink_dir / "gi.raw"
    gi_file.write_bytes(np.random.default_rng(8).bytes(20 * MiB))
    subprocess.run(["sync"], check=True)
    gi_sum = sha256_file(gi_file)
    clone = reflink_dir / "vm.raw"
    subprocess.run(["cp", "--reflink=always", str(gi_file), str(clone)], check=True)
    assert exclusive_bytes(clone) == 0

    fp = boot_footprint(2 * MiB, 300, 16 * MiB, seed=21, span_start_bytes=2 * MiB)
    report = write_extents_file(
        clone, fp.offsets_bytes, fp.lengths_bytes, seed=21, protected={gi_file}
    )
    written_blocks_bytes = units_touched(fp.offsets_bytes, fp.lengths_bytes, 4096) * 4096
    assert report.distinct_bytes == written_blocks_bytes
    fleet = fleet_sharing([gi_file, clone])
    by_name = {f.path.name: f for f in fleet.files}
    # The clone now owns exactly the blocks it wrote; the GI got them back as its own too.
    assert by_name["vm.raw"].exclusive_bytes == written_blocks_bytes
    assert by_name["gi.raw"].exclusive_bytes == written_blocks_bytes
    assert by_name["vm.raw"].shared_bytes == 20 * MiB - written_blocks_bytes
    assert fleet.unique_physical_bytes == 20 * MiB + written_blocks_bytes
    # The data really changed in the clone and not in the GI.
    with open(clone, "rb") as c, open(gi_file, "rb") as g:
        off, ln = int(fp.offsets_bytes[0]), int(fp.lengths_bytes[0])
        assert os.pread(c.fileno(), ln, off) != os.pread(g.fileno(), ln, off)
    assert sha256_file(gi_file) == gi_sum
