"""How much capacity clones really consume, with shared data counted once.

``du`` (and ``st_blocks``) charge every file for every block it maps, so a fleet of
reflink copies that share one golden image's blocks looks like N full copies, and
a qcow2 linked clone says nothing about which of its bytes are its own. The
measurements here are the ones that are right for shared data:

- qcow2: ``qemu-img info`` ``actual-size`` (what the clone file takes on the host)
  and ``qemu-img map`` depths: depth 0 is the clone's own data (C of Eq. 3),
  depth >= 1 comes from the backing chain (the GI, D of Eq. 3); both in
  :mod:`clonefleet.storage.qcow2`.
- any file: ``st_blocks`` (allocated bytes) and ``SEEK_DATA``/``SEEK_HOLE`` (data
  bytes, holes excluded). Both count shared blocks once per file.
- reflink (xfs, btrfs): FIEMAP physical extents. The union of physical extents
  over a set of files counts a shared block once (the fleet's real consumption);
  extents without ``FIEMAP_EXTENT_SHARED`` are a file's exclusive bytes.
- any filesystem: ``statvfs`` used bytes, whose delta around an operation is what
  the operation consumed (``df`` accounting).

Every function only reads: images are opened read-only (``-U`` lets ``qemu-img``
read an image another process holds open). All sizes are in bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.storage.data import data_extents
from clonefleet.storage.files import existing_file
from clonefleet.storage.tools import run_tool

# --- any file: st_blocks and SEEK_DATA ------------------------------------------------------


def _flush(fd: int) -> None:
    """Write the file's dirty pages so its allocation is final (no data changes)."""
    with contextlib.suppress(OSError):  # a filesystem that cannot fsync still answers
        os.fsync(fd)


def allocated_bytes(path: Path, sync: bool = True) -> int:
    """``st_blocks * 512``: bytes the filesystem allocated to this file.

    What ``du`` counts: a block shared by reflink is charged to every file that maps
    it; preallocated (unwritten) extents and extent-tree blocks count too. ``sync``
    flushes the file first: before writeback xfs and ext4 report delayed-allocation
    reservations, which can differ from the final allocation.
    """
    fd = os.open(existing_file(path, "file"), os.O_RDONLY)
    try:
        if sync:
            _flush(fd)
        return int(os.fstat(fd).st_blocks) * 512
    finally:
        os.close(fd)


def data_bytes_seek(path: Path, sync: bool = True) -> int:
    """Bytes of the file that are data, not holes, found with ``SEEK_DATA``/``SEEK_HOLE``.

    Filesystems report at their block granularity (or the whole file if they do
    not support holes); xfs and ext4 report preallocated (unwritten) extents as
    holes once written back. Shared blocks count once per file, as with ``du``.
    ``sync`` flushes the file first, so the answer does not depend on writeback.
    """
    fd = os.open(existing_file(path, "file"), os.O_RDONLY)
    try:
        if sync:
            _flush(fd)
        return sum(end - start for start, end in data_extents(fd, os.fstat(fd).st_size))
    finally:
        os.close(fd)


# --- FIEMAP: physical extents and sharing ---------------------------------------------------

FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap)
FIEMAP_FLAG_SYNC = 0x1  # flush the file before mapping it
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_UNKNOWN = 0x2  # physical location not known yet
FIEMAP_EXTENT_DELALLOC = 0x4
FIEMAP_EXTENT_ENCODED = 0x8
FIEMAP_EXTENT_DATA_INLINE = 0x200
FIEMAP_EXTENT_UNWRITTEN = 0x800
FIEMAP_EXTENT_SHARED = 0x2000

# struct fiemap: fm_start, fm_length, fm_flags, fm_mapped_extents, fm_extent_count, fm_reserved
_FIEMAP_HEADER = struct.Struct("=QQLLLL")
# struct fiemap_extent: fe_logical, fe_physical, fe_length, 2 reserved, fe_flags, 3 reserved
_FIEMAP_EXTENT = struct.Struct("=QQQQQLLLL")
_FIEMAP_MAX_OFFSET = 2**64 - 1
_FIEMAP_BATCH = 256


@dataclass(frozen=True)
class PhysicalExtent:
    """One FIEMAP extent: ``length_bytes`` of the file at ``logical_bytes`` stored at
    ``physical_bytes`` on the filesystem's device."""

    logical_bytes: int
    physical_bytes: int
    length_bytes: int
    flags: int

    @property
    def shared(self) -> bool:
        """The filesystem says these blocks are also mapped by another file (reflink)."""
        return bool(self.flags & FIEMAP_EXTENT_SHARED)

    @property
    def located(self) -> bool:
        """The physical address is real (not unknown, delayed or inline in metadata)."""
        return not self.flags & (
            FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_DATA_INLINE
        )


def fiemap(path: Path, sync: bool = True) -> list[PhysicalExtent]:
    """All physical extents of a file, via the FIEMAP ioctl (read-only open).

    ``sync`` passes ``FIEMAP_FLAG_SYNC`` so data still in the page cache gets its
    final location first. Raises :class:`ClonefleetError` on a filesystem without
    FIEMAP.
    """
    path = existing_file(path, "file")
    flags = FIEMAP_FLAG_SYNC if sync else 0
    extents: list[PhysicalExtent] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        start = 0
        while True:
            buf = bytearray(_FIEMAP_HEADER.size + _FIEMAP_BATCH * _FIEMAP_EXTENT.size)
            _FIEMAP_HEADER.pack_into(
                buf, 0, start, _FIEMAP_MAX_OFFSET - start, flags, 0, _FIEMAP_BATCH, 0
            )
            try:
                fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
            except OSError as exc:
                raise ClonefleetError(
                    f"FIEMAP on '{path}' failed: {exc.strerror}: the filesystem must support "
                    "FIEMAP (ext4, xfs, btrfs do)"
                ) from None
            mapped = _FIEMAP_HEADER.unpack_from(buf, 0)[3]
            if mapped == 0:
                break
            last_flags = 0
            for i in range(mapped):
                where = _FIEMAP_HEADER.size + i * _FIEMAP_EXTENT.size
                fields = _FIEMAP_EXTENT.unpack_from(buf, where)
                ext = PhysicalExtent(
                    logical_bytes=fields[0],
                    physical_bytes=fields[1],
                    length_bytes=fields[2],
                    flags=fields[5],
                )
                extents.append(ext)
                last_flags = ext.flags
            if last_flags & FIEMAP_EXTENT_LAST:
                break
            tail = extents[-1]
            start = tail.logical_bytes + tail.length_bytes
    finally:
        os.close(fd)
    return extents


@dataclass(frozen=True)
class FileSharing:
    """One file's physical extents summed: shared with other files or its own."""

    path: Path
    mapped_bytes: int  # all extents (what du/st_blocks charge, roughly)
    shared_bytes: int  # extents flagged FIEMAP_EXTENT_SHARED
    exclusive_bytes: int  # extents not shared: freed if this file is deleted
    unwritten_bytes: int = 0  # preallocated extents (read as zeros, yet allocated), in mapped


def _file_sharing(path: Path, exts: Sequence[PhysicalExtent]) -> FileSharing:
    shared = sum(e.length_bytes for e in exts if e.shared)
    mapped = sum(e.length_bytes for e in exts)
    unwritten = sum(e.length_bytes for e in exts if e.flags & FIEMAP_EXTENT_UNWRITTEN)
    return FileSharing(path, mapped, shared, mapped - shared, unwritten)


@dataclass(frozen=True)
class FleetSharing:
    """Consumption of a set of files, shared extents counted once."""

    files: tuple[FileSharing, ...]
    unique_physical_bytes: int  # union of physical extents: what the set really takes
    naive_allocated_bytes: int  # sum of st_blocks*512 over the files: what du says

    @property
    def sharing_ratio(self) -> float:
        """naive / unique: 10 for ten full reflink copies of one file, 1 for private data."""
        if self.unique_physical_bytes == 0:
            return 1.0
        return self.naive_allocated_bytes / self.unique_physical_bytes


def file_sharing(path: Path) -> FileSharing:
    """Shared vs exclusive bytes of one file (FIEMAP flags)."""
    return _file_sharing(Path(path), fiemap(path))


def exclusive_bytes(path: Path) -> int:
    """Bytes of the file in extents not shared with any other file (FIEMAP, no SHARED flag)."""
    return file_sharing(path).exclusive_bytes


def union_bytes(starts: Sequence[int] | np.ndarray, lengths: Sequence[int] | np.ndarray) -> int:
    """Bytes covered by the union of intervals ``[start, start + length)``. Pure."""
    s = np.asarray(starts, dtype=np.int64)
    e = s + np.asarray(lengths, dtype=np.int64)
    keep = e > s
    s, e = s[keep], e[keep]
    if s.size == 0:
        return 0
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    reach = np.maximum.accumulate(e)
    # A new run starts where an interval begins past everything before it.
    new_run = np.empty(s.size, dtype=bool)
    new_run[0] = True
    new_run[1:] = s[1:] > reach[:-1]
    run_ids = np.cumsum(new_run) - 1
    run_start = s[new_run]
    run_end = np.zeros(run_start.size, dtype=np.int64)
    np.maximum.at(run_end, run_ids, e)
    return int((run_end - run_start).sum())


def fleet_sharing(paths: Iterable[Path]) -> FleetSharing:
    """FIEMAP every file; count each physical block once over the whole set.

    Physical addresses are per device, so the union is taken per ``st_dev`` and
    summed. Extents without a real location (inline, delayed) count at their
    length, once per file.
    """
    files: list[FileSharing] = []
    per_dev: dict[int, tuple[list[int], list[int]]] = {}
    unlocated = 0
    naive = 0
    seen: set[tuple[int, int]] = set()
    for p in paths:
        path = existing_file(Path(p), "file")
        st = os.stat(path)
        if (st.st_dev, st.st_ino) in seen:  # the same file twice (hard link): count once
            continue
        seen.add((st.st_dev, st.st_ino))
        exts = fiemap(path)  # syncs the file first, so st_blocks below is final too
        naive += int(os.stat(path).st_blocks) * 512
        starts, lengths = per_dev.setdefault(st.st_dev, ([], []))
        for e in exts:
            if e.located:
                starts.append(e.physical_bytes)
                lengths.append(e.length_bytes)
            else:
                unlocated += e.length_bytes
        files.append(_file_sharing(path, exts))
    unique = unlocated + sum(union_bytes(s, ln) for s, ln in per_dev.values())
    return FleetSharing(tuple(files), unique, naive)


def unique_physical_bytes(paths: Iterable[Path]) -> int:
    """Bytes of the union of physical extents of the files: shared blocks counted once.

    The right consumption of a reflink fleet (GI plus clones); ``du`` would count
    the GI's blocks once per clone.
    """
    return fleet_sharing(paths).unique_physical_bytes


# --- df: filesystem usage -------------------------------------------------------------------


@dataclass(frozen=True)
class FsUsage:
    """``statvfs`` of the filesystem holding a path, in bytes (what ``df`` shows)."""

    total_bytes: int
    free_bytes: int  # including blocks reserved for root
    available_bytes: int  # for unprivileged users
    used_bytes: int  # total - free

    def delta_used_bytes(self, before: FsUsage) -> int:
        """Bytes consumed between ``before`` and this measurement (negative if freed)."""
        return self.used_bytes - before.used_bytes


def fs_usage(path: Path, sync: bool = True) -> FsUsage:
    """Usage of the filesystem that holds ``path``.

    ``sync`` flushes dirty data first (``os.sync``) so delayed allocation is counted;
    the figure still moves with anything else writing to that filesystem.
    """
    if not Path(path).exists():
        raise UsageError(
            f"path '{path}' does not exist: give a file or folder on the filesystem to measure"
        )
    if sync:
        os.sync()
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bfree * st.f_frsize
    return FsUsage(
        total_bytes=total,
        free_bytes=free,
        available_bytes=st.f_bavail * st.f_frsize,
        used_bytes=total - free,
    )


def release_xfs_preallocation(path: Path) -> None:
    """Free xfs's speculative and copy-on-write preallocations (``xfs_spaceman -c 'prealloc -s'``).

    After writes into reflink copies, xfs reserves copy-on-write extents larger than
    the writes (the ``cowextsize`` hint, 32 blocks by default) and frees the unused
    part only later, in the background. A ``df`` delta taken before that counts them:
    300 writes of 2 MiB in all, spread over 16 MiB of a reflink copy, showed a 15 MiB
    delta, and 2 MiB after this call. Needs root (CAP_SYS_ADMIN); ``path`` is any file or folder on the xfs.
    FIEMAP-based measures (:func:`fleet_sharing`) never see these reservations.
    """
    if not Path(path).exists():
        raise UsageError(f"path '{path}' does not exist: give a file or folder on the xfs")
    run_tool(["xfs_spaceman", "-c", "prealloc -s", str(path)])
