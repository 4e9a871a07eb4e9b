"""File data: the SHA-256 of a file, its data extents (SEEK_DATA/SEEK_HOLE), and private copies.

A copy made here shares no block with its source (no reflink, no ``copy_file_range``), skips
holes and all-zero 4 KiB blocks as ``qemu-img convert`` does, and is created with ``O_EXCL`` and
``O_NOFOLLOW``: it never replaces or follows anything already at its name.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

HASH_CHUNK_BYTES = 4 << 20
COPY_CHUNK_BYTES = 1 << 20
BLOCK_BYTES = 4096
_ZERO_BLOCK = bytes(BLOCK_BYTES)
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def sha256_fd(fd: int, observe: Callable[[bytes], None] | None = None, chunk_bytes: int = HASH_CHUNK_BYTES) -> str:
    """SHA-256 of the whole of an open file (read with pread from offset 0); ``observe`` sees every chunk."""
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, chunk_bytes, offset):
        digest.update(chunk)
        offset += len(chunk)
        if observe is not None:
            observe(chunk)
    return digest.hexdigest()


def sha256_file(path: Path, observe: Callable[[bytes], None] | None = None,
                chunk_bytes: int = HASH_CHUNK_BYTES) -> str:
    """SHA-256 of a file read through a read-only descriptor; ``observe`` sees every chunk read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        return sha256_fd(fd, observe, chunk_bytes)
    finally:
        os.close(fd)


def write_new_file(dest: Path, payload: bytes) -> None:
    """Create ``dest`` (it must not exist; links are not followed), write, fsync."""
    fd = os.open(dest, _NEW_FILE, 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
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


def nonzero_runs(chunk: bytes) -> list[tuple[int, int]]:
    """(start, end) of the runs of 4 KiB blocks of ``chunk`` that are not all zero."""
    if chunk.count(0) == len(chunk):
        return []
    view = memoryview(chunk)
    runs: list[tuple[int, int]] = []
    for off in range(0, len(chunk), BLOCK_BYTES):
        block = view[off:off + BLOCK_BYTES]
        if block == _ZERO_BLOCK[:len(block)]:
            continue
        end = off + len(block)
        if runs and runs[-1][1] == off:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((off, end))
    return runs


def data_chunks(fd: int, size: int, chunk_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of the data extents of an open file (SEEK_DATA/SEEK_HOLE), holes skipped."""
    for start, end in data_extents(fd, size):
        off = start
        while off < end:
            chunk = os.pread(fd, min(chunk_bytes, end - off), off)
            if not chunk:
                break
            yield off, chunk
            off += len(chunk)


def nonzero_data_bytes(path: Path) -> int:
    """Bytes in the 4 KiB blocks of ``path``'s data extents (SEEK_DATA) that are not all zero:
    what a sparse copy of it holds."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return sum(b - a for _, chunk in data_chunks(fd, os.fstat(fd).st_size, COPY_CHUNK_BYTES)
                   for a, b in nonzero_runs(chunk))
    finally:
        os.close(fd)


def copy_file_private(src: Path, dest: Path, thick: bool = False) -> None:
    """Copy ``src`` to a new file ``dest`` sharing no blocks with it (see the module docstring).

    ``thick`` allocates the whole size first (fallocate), as a thick copy does. The size is set
    before any write, so no filesystem preallocates past a moving end of file.
    """
    sfd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(sfd).st_size
        dfd = os.open(dest, _NEW_FILE, 0o644)
        try:
            os.ftruncate(dfd, size)
            if thick and size:
                os.posix_fallocate(dfd, 0, size)
            for off, chunk in data_chunks(sfd, size, COPY_CHUNK_BYTES):
                for a, b in nonzero_runs(chunk):
                    view = memoryview(chunk)[a:b]
                    at = off + a
                    while view:
                        n = os.pwrite(dfd, view, at)
                        view, at = view[n:], at + n
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
