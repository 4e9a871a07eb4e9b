"""Golden images (GIs): what the checks learn about one, the checks, and the GI's data G_used.

A GI is only ever opened read-only. Before clones are made from it, it is checked: that it is a
regular file (a directory, a FIFO, a device or the fleet's own manifest is bad input, refused at
once), no process holding it open for writing, its size, its format's own consistency check, the
depth of its own backing chain, and last its SHA-256 against the one the manifest recorded. The
file's stamp (identity, size, mtime, ctime) is taken around the checksum; :func:`gi_unchanged`
compares it later, so a GI written while a run copied it is caught.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.storage.data import nonzero_data_bytes, sha256_fd, sha256_file
from clonefleet.storage.files import open_regular
from clonefleet.storage.qcow2 import check_image, has_qcow2_magic, image_chain, qcow2_allocation
from clonefleet.storage.tools import ToolError

#: (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns): any write through the filesystem moves ctime.
Stamp = tuple[int, int, int, int, int]


class GoldenImageError(ClonefleetError):
    """A GI that must not be cloned: changed, truncated, corrupt, open for writing, too deep."""

    exit_code = 1


class GoldenImageMissing(GoldenImageError):
    """No GI at the path given: bad input where a GI is asked for (exit 2); ``status`` reports it."""

    exit_code = 2


@dataclass(frozen=True)
class GoldenImageInfo:
    """What the checks learned about a GI."""

    path: Path
    fmt: str  # qcow2 or raw
    virtual_bytes: int
    file_bytes: int
    sha256: str
    chain_depth: int  # 1 when the GI has no backing file
    stamp: Stamp | None = None  # the file as it was hashed


def stamp_of(st: os.stat_result) -> Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def writers_of(path: Path) -> list[int]:
    """Pids of processes that hold ``path`` open for writing (read from /proc)."""
    try:
        target = os.stat(path)
    except OSError:
        return []
    found: list[int] = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        fd_dir = f"/proc/{entry.name}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino):
                continue
            try:
                with open(f"/proc/{entry.name}/fdinfo/{fd}", encoding="ascii") as info:
                    flags = next((int(line.split()[1], 8) for line in info if line.startswith("flags:")), 0)
            except (OSError, ValueError):
                continue
            if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                found.append(int(entry.name))
                break
    return found


def _open_gi(path: Path, not_same_as: Path | None) -> int:
    if not os.path.lexists(path):
        raise GoldenImageMissing(f"golden image {path}: does not exist; give the path of a qcow2 or raw image")
    fd = open_regular(path, "golden image")  # a directory, FIFO, device or socket: bad input, exit 2
    if not_same_as is not None:
        try:
            other = os.stat(not_same_as)
        except OSError:
            other = None
        st = os.fstat(fd)
        if other is not None and (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            os.close(fd)
            raise UsageError(f"golden image {path}: is the fleet manifest itself; give the path of the GI "
                             "(a qcow2 or raw disk image)")
    return fd


def check_golden_image(path: Path, expected_sha256: str | None, max_chain_depth: int = 1,
                       expected_bytes: int | None = None, not_same_as: Path | None = None) -> GoldenImageInfo:
    """Refuse a GI that is missing, not a regular file, open for writing, truncated, corrupt, changed or
    too deep (``not_same_as``: the manifest, which is never a GI). The cheap checks come first; the
    checksum (a full read) last."""
    fd = _open_gi(path, not_same_as)
    try:
        writers = writers_of(path)
        if writers:
            raise GoldenImageError(f"golden image {path}: open for writing by pid {', '.join(map(str, writers))}; "
                                   "a GI must not change while clones are made from it: stop that process first")
        before = os.fstat(fd)
        size = before.st_size
        if expected_bytes is not None and size != expected_bytes:
            state = "truncated" if size < expected_bytes else "grown"
            raise GoldenImageError(f"golden image {path}: {state}: {size} bytes, the manifest recorded "
                                   f"{expected_bytes}; restore the original GI")
        if not has_qcow2_magic(fd):
            # raw: nothing inside to check but its size and checksum; no backing chain. A disk is
            # whole 512-byte sectors: anything else is a truncated image or not an image at all.
            if size == 0 or size % 512:
                raise GoldenImageError(f"golden image {path}: {size} bytes, not a qcow2 image nor a raw disk "
                                 "(a raw disk is a whole number of 512-byte sectors, at least one)")
            fmt, virtual, depth = "raw", size, 1
        else:
            try:
                chain = image_chain(path)
            except ToolError as exc:
                raise GoldenImageError(f"golden image {path}: qemu-img cannot read it ({exc.message}); it is "
                                       "corrupt or truncated: rebuild it or restore it from a copy") from None
            top = chain[0]
            fmt, virtual, depth = top.format, top.virtual_bytes or size, len(chain)
            if fmt != "qcow2":
                raise GoldenImageError(f"golden image {path}: format {fmt!r}; clonefleet clones qcow2 or raw images")
            if depth > max_chain_depth:
                raise GoldenImageError(f"golden image {path}: a backing chain {depth} deep, more than "
                                       f"max_chain_depth = {max_chain_depth}; flatten it (qemu-img convert) "
                                       "or raise the limit in the manifest")
            problem = check_image(path)
            if problem is not None:
                raise GoldenImageError(f"golden image {path}: qemu-img check finds it corrupt ({problem}); "
                                       "restore the GI from a good copy")
        digest = sha256_fd(fd)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if stamp_of(before) != stamp_of(after):
        raise GoldenImageError(f"golden image {path}: changed while its checksum was read; a GI must not change "
                               "while clones are made from it: find the process that writes it")
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise GoldenImageError(f"golden image {path}: SHA-256 {digest[:16]}... differs from the manifest's "
                               f"{expected_sha256[:16]}...; the GI changed since the fleet was planned: "
                               "restore it, or record the new checksum with 'clonefleet init --force'")
    return GoldenImageInfo(path=path, fmt=fmt, virtual_bytes=virtual, file_bytes=size, sha256=digest,
                           chain_depth=depth, stamp=stamp_of(before))


def gi_unchanged(gi: GoldenImageInfo) -> bool:
    """True when the GI still has the bytes it was checked with: the same stamp (no write can keep
    ctime still), or, if only the stamp moved, the same SHA-256."""
    try:
        st = os.stat(gi.path)
    except OSError:
        return False
    if gi.stamp is not None and stamp_of(st) == gi.stamp:
        return True
    return _same_bytes(str(gi.path), stamp_of(st), gi.sha256)


@functools.lru_cache(maxsize=64)
def _same_bytes(path: str, stamp: object, sha256: str) -> bool:
    """Whether the file, as it is at ``stamp``, hashes to ``sha256``: read once per stamp, not once per
    clone (a touch or chmod moves the GI's ctime and nothing else; every clone after it asks again)."""
    try:
        return sha256_file(Path(path)) == sha256
    except OSError:
        return False


def gi_used_bytes(gi: GoldenImageInfo) -> int:
    """G_used of the model, measured: the GI's data (qcow2 data clusters; for raw, the 4 KiB blocks
    inside data extents that are not all zero: what a sparse copy holds)."""
    if gi.fmt == "qcow2":
        return qcow2_allocation(gi.path).own_data_bytes
    return nonzero_data_bytes(gi.path)
