"""How much capacity clones really consume, with shared data counted once.

``du`` (and ``st_blocks``) charge every file for every block it maps, so a fleet of
reflink copies that share one golden image's blocks looks like N full copies, and
a qcow2 linked clone says nothing about which of its bytes are its own. The
measurements here are the ones that are right for shared data:

- qcow2: ``qemu-img info`` ``actual-size`` (what the clone file takes on the host)
  and ``qemu-img map`` depths: depth 0 is the clone's own data (C of Eq. 3),
  depth >= 1 comes from the backing chain (the GI, D of Eq. 3).
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
import json
import os
import struct
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clonefleet.errors import ClonefleetError, UsageError

# --- running the storage tools ------------------------------------------------------------

_INSTALL_HINT = {
    "qemu-img": "qemu-utils",
    "qemu-io": "qemu-utils",
    "mkfs.ext4": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "dumpe2fs": "e2fsprogs",
    "xfs_spaceman": "xfsprogs",
}


def run_tool(
    args: Sequence[str],
    *,
    stdin_text: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a storage tool and return its stdout.

    A missing tool or a non-zero exit becomes a :class:`ClonefleetError` whose one
    line names the tool and quotes the tool's own first error line.
    """
    return run_tool_result(args, stdin_text=stdin_text, env=env).stdout


def run_tool_result(
    args: Sequence[str],
    *,
    stdin_text: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """As :func:`run_tool`, returning stdout and stderr (for tools that report errors
    on stderr yet exit 0, as ``debugfs -f`` does)."""
    tool = args[0]
    try:
        proc = subprocess.run(
            list(args),
            input=stdin_text,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    except FileNotFoundError:
        package = _INSTALL_HINT.get(tool, "its package")
        raise ClonefleetError(
            f"{tool} not found on PATH: install {package} (scripts/setup.sh does)"
        ) from None
    if proc.returncode != 0:
        raise ClonefleetError(
            f"{tool} {_subcommand(args)}failed (exit {proc.returncode}): "
            f"{first_error_line(proc.stderr, proc.stdout)}"
        )
    return proc


def first_error_line(*outputs: str) -> str:
    """The first non-empty line of the first output that has one, or a placeholder."""
    for out in outputs:
        for line in out.splitlines():
            if line.strip():
                return line.strip()
    return "no error message"


def _subcommand(args: Sequence[str]) -> str:
    if len(args) > 1 and not args[1].startswith("-"):
        return f"{args[1]} "
    return ""


def _existing_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} '{path}' is not an existing regular file")
    return path


# --- qcow2 ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInfo:
    """What ``qemu-img info`` says about one image file."""

    path: Path
    format: str
    virtual_bytes: int
    actual_bytes: int  # bytes the image file takes on the host (st_blocks), shared blocks included
    cluster_bytes: int | None  # None for formats without clusters (raw)
    backing_file: str | None  # as stored in the image: absolute or relative on purpose
    backing_format: str | None


def _format_args(fmt: str | None) -> list[str]:
    return [] if fmt is None else ["-f", fmt]


def qcow2_info(path: Path, fmt: str | None = None) -> ImageInfo:
    """``qemu-img info -U --output=json`` of one image, read-only.

    Give ``fmt`` when the format is known: qemu-img then does not probe it (a raw
    image whose guest wrote a qcow2 header would otherwise be read as qcow2).
    """
    path = _existing_file(path, "image")
    out = run_tool(["qemu-img", "info", "-U", *_format_args(fmt), "--output=json", str(path)])
    data = json.loads(out)
    return ImageInfo(
        path=path,
        format=str(data["format"]),
        virtual_bytes=int(data["virtual-size"]),
        actual_bytes=int(data.get("actual-size", 0)),
        cluster_bytes=int(data["cluster-size"]) if "cluster-size" in data else None,
        backing_file=data.get("backing-filename"),
        backing_format=data.get("backing-filename-format"),
    )


def qcow2_actual_bytes(path: Path, fmt: str | None = None) -> int:
    """Bytes the image file takes on the host (``actual-size``): for a fresh linked clone
    only its metadata (about 196 KiB with 64 KiB clusters)."""
    return qcow2_info(path, fmt).actual_bytes


@dataclass(frozen=True)
class Qcow2Allocation:
    """Where an image's guest-visible bytes come from, by backing-chain depth.

    ``own_data_bytes`` is the clone's own data (depth 0): what its writes allocated,
    the C of Eq. 3. ``backing_data_bytes`` is data read through from the backing
    chain (depth >= 1): shared with every other clone of that GI.
    """

    path: Path
    virtual_bytes: int
    own_data_bytes: int  # depth 0, data
    own_zero_bytes: int  # depth 0, allocated as zero (no data stored)
    backing_data_bytes: int  # depth >= 1, data
    unallocated_bytes: int  # nowhere in the chain: reads as zeros
    data_bytes_by_depth: tuple[int, ...]  # index = depth

    @property
    def depth0_bytes(self) -> int:
        """The clone's own data bytes (alias of ``own_data_bytes``)."""
        return self.own_data_bytes


def qcow2_allocation(path: Path, fmt: str | None = None) -> Qcow2Allocation:
    """Sum ``qemu-img map -U --output=json`` by depth (``fmt``: as for :func:`qcow2_info`).

    Ranges with ``data`` true are data; at depth 0 a range that is ``present`` without
    data is zero clusters; anything else is unallocated (a qemu-img older than 6.0,
    without ``present``, shows zero clusters as unallocated).
    """
    path = _existing_file(path, "image")
    out = run_tool(["qemu-img", "map", "-U", *_format_args(fmt), "--output=json", str(path)])
    entries = json.loads(out)
    by_depth: dict[int, int] = {}
    own_zero = unallocated = virtual = 0
    for entry in entries:
        length = int(entry["length"])
        depth = int(entry["depth"])
        virtual = max(virtual, int(entry["start"]) + length)
        if entry.get("data"):
            by_depth[depth] = by_depth.get(depth, 0) + length
        elif depth == 0 and entry.get("present", False):
            own_zero += length
        else:
            unallocated += length
    depths = tuple(by_depth.get(d, 0) for d in range(max(by_depth, default=-1) + 1))
    own = by_depth.get(0, 0)
    return Qcow2Allocation(
        path=path,
        virtual_bytes=virtual,
        own_data_bytes=own,
        own_zero_bytes=own_zero,
        backing_data_bytes=sum(depths) - own,
        unallocated_bytes=unallocated,
        data_bytes_by_depth=depths,
    )


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
    fd = os.open(_existing_file(path, "file"), os.O_RDONLY)
    try:
        if sync:
            _flush(fd)
        return int(os.fstat(fd).st_blocks) * 512
    finally:
        os.close(fd)


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) in bytes of the data extents of an open file (SEEK_DATA/SEEK_HOLE); holes skipped."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        pos = end


def data_bytes_seek(path: Path, sync: bool = True) -> int:
    """Bytes of the file that are data, not holes, found with ``SEEK_DATA``/``SEEK_HOLE``.

    Filesystems report at their block granularity (or the whole file if they do
    not support holes); xfs and ext4 report preallocated (unwritten) extents as
    holes once written back. Shared blocks count once per file, as with ``du``.
    ``sync`` flushes the file first, so the answer does not depend on writeback.
    """
    fd = os.open(_existing_file(path, "file"), os.O_RDONLY)
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
    path = _existing_file(path, "file")
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
        path = _existing_file(Path(p), "file")
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


def df_bytes_used(path: Path, sync: bool = True) -> int:
    """Used bytes of the filesystem holding ``path`` (``df``'s Used column, in bytes)."""
    return fs_usage(path, sync).used_bytes


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
