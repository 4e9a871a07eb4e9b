"""qcow2 files made with qemu-img: the default backend (needs only qemu-utils).

- ``snapshot``: a linked clone, a qcow2 overlay whose backing file is the GI
  (``qemu-img create -f qcow2 -F <fmt> -b <GI>``). A fresh overlay of one GI is
  the same bytes for every clone (the backing path is stored as given, here
  absolute), so it is made once per GI and its bytes written to each clone.
- ``thin``: a sparse full copy (``qemu-img convert -O qcow2``): holds the GI's data.
- ``full``: a thick copy (``qemu-img convert -O qcow2 -o preallocation=falloc``):
  every byte of the virtual size allocated.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clonefleet.backends.base import BackendUnavailable, CloneUsage, Prepared, Recipe, Usage
from clonefleet.errors import ClonefleetError
from clonefleet.presets import FunctionPreset, Method, load_function
from clonefleet.provision import measure
from clonefleet.provision.safety import GoldenImageInfo

QCOW2_MAGIC = b"QFI\xfb"
_HEADER = struct.Struct(">4sIQIIQ")  # magic, version, backing_file_offset, backing_file_size, cluster_bits, size
DEFAULT_CLUSTER_BYTES = 64 * 1024


def run(args: Sequence[str]) -> None:
    """Run qemu-img; a failure becomes one line quoting the tool (ENOSPC keeps its errno)."""
    result = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        line = measure.first_error_line(result.stderr, result.stdout)
        if "No space left on device" in line:
            raise OSError(28, "No space left on device", args[-1])
        raise ClonefleetError(f"{args[0]} {args[1]} failed: {line}")


def read_header(path: Path) -> tuple[int, str | None, int] | None:
    """(cluster bytes, backing file, virtual size) from a qcow2 header, None if not qcow2."""
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return None
        magic, _version, backing_offset, backing_len, cluster_bits, size = _HEADER.unpack(head)
        if magic != QCOW2_MAGIC or not 9 <= cluster_bits <= 21:
            return None
        backing = None
        if backing_offset:
            f.seek(backing_offset)
            backing = f.read(backing_len).decode("utf-8", "replace")
        return 1 << cluster_bits, backing, size


def model_function(method: Method, cluster_bytes: int) -> FunctionPreset:
    """The storage-function preset the model uses for a qcow2 clone made by ``method``."""
    name = {Method.SNAPSHOT: "qcow2-linked", Method.THIN: "qcow2-copy", Method.FULL: "full"}[method]
    function = load_function(name)
    if method is not Method.FULL and cluster_bytes != function.unit_bytes:
        function = dataclasses.replace(function, unit_bytes=float(cluster_bytes),
                                       name=f"{name} ({cluster_bytes // 1024} KiB clusters)")
    return function


class Qcow2Backend:
    """Clones as qcow2 files, made and checked with qemu-img."""

    name = "qcow2"
    description = "qcow2 files with qemu-img: linked clones on a backing file, sparse or thick copies"

    def probe(self, fleet_dir: Path) -> None:
        missing = [tool for tool in ("qemu-img",) if shutil.which(tool) is None]
        if missing:
            raise BackendUnavailable(f"backend qcow2 needs {', '.join(missing)}: install the Debian "
                                     "package qemu-utils (scripts/setup.sh does)")

    def plan(self, gi: GoldenImageInfo, method: Method, cluster_bytes: int) -> Recipe:
        opts = f"cluster_size={cluster_bytes}"
        steps = {
            Method.SNAPSHOT: (f"qemu-img create -f qcow2 -F {gi.fmt} -b <GI> -o {opts} (once per GI)",
                              "write that overlay's bytes to each clone (same backing path: same bytes)"),
            Method.THIN: (f"qemu-img convert -f {gi.fmt} -O qcow2 -o {opts} <GI> <clone> (sparse copy)",),
            Method.FULL: (f"qemu-img convert -f {gi.fmt} -O qcow2 -o {opts},preallocation=falloc "
                          "<GI> <clone> (thick copy)",),
        }[method]
        return Recipe(method=method, suffix=".qcow2", steps=steps,
                      model_function=model_function(method, cluster_bytes), clone_format="qcow2",
                      options={"cluster_bytes": cluster_bytes, "gi_format": gi.fmt})

    def prepare(self, recipe: Recipe, source: Path, work_dir: Path) -> Prepared:
        if recipe.method is not Method.SNAPSHOT:
            return Prepared(source=source)
        with tempfile.TemporaryDirectory(dir=work_dir, prefix=".cf-template.") as tmp:
            template = Path(tmp) / "overlay.qcow2"
            run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", str(recipe.options["gi_format"]),
                 "-b", str(source), "-o", f"cluster_size={recipe.options['cluster_bytes']}",
                 str(template)])
            return Prepared(source=source, payload=template.read_bytes())

    def apply(self, recipe: Recipe, prepared: Prepared, dest: Path) -> None:
        if recipe.method is Method.SNAPSHOT:
            write_new_file(dest, prepared.payload)
            return
        opts = f"cluster_size={recipe.options['cluster_bytes']}"
        if recipe.method is Method.FULL:
            opts += ",preallocation=falloc"
        run(["qemu-img", "convert", "-U", "-f", str(recipe.options["gi_format"]), "-O", "qcow2",
             "-o", opts, str(prepared.source), str(dest)])
        fsync_path(dest)

    def replicate(self, gi: GoldenImageInfo, dest: Path) -> None:
        copy_file_private(gi.path, dest)

    def status(self, recipe: Recipe, path: Path, source: Path, deep: bool = False) -> str | None:
        header = read_header(path)
        if header is None:
            return "not a qcow2 image (bad or short header)"
        cluster, backing, _size = header
        if cluster != recipe.options["cluster_bytes"]:
            return f"cluster size {cluster}, the fleet uses {recipe.options['cluster_bytes']}"
        if recipe.method is Method.SNAPSHOT and backing != str(source):
            return f"backing file {backing!r}, expected {str(source)!r}"
        if recipe.method is not Method.SNAPSHOT and backing is not None:
            return f"has a backing file {backing!r}; a {recipe.method} clone must not"
        if deep:
            result = subprocess.run(["qemu-img", "check", "-U", "-q", "-f", "qcow2", str(path)],
                                    capture_output=True, text=True, check=False)
            if result.returncode not in (0, 3):
                return f"qemu-img check: {measure.first_error_line(result.stderr, result.stdout)}"
        return None

    def measure(self, recipe: Recipe, clones: Sequence[Path], gis: Sequence[Path]) -> Usage:
        def one(path: Path) -> CloneUsage:
            consumed = measure.allocated_bytes(path)
            own = measure.qcow2_allocation(path).own_data_bytes
            return CloneUsage(path.name, consumed, own, consumed - own)

        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            usages = list(pool.map(one, clones))  # one qemu-img map per clone, in parallel
        gi_bytes = sum(measure.allocated_bytes(p) for p in gis)
        total = gi_bytes + sum(u.consumed_bytes for u in usages)
        notes: tuple[str, ...] = ()
        if recipe.method is Method.SNAPSHOT and usages and any(u.own_data_bytes for u in usages):
            meta = sum(u.metadata_bytes for u in usages) / len(usages)
            notes = (f"a linked clone's metadata after its writes: {meta:.0f} bytes on average; a fresh "
                     "overlay's header, L1 and refcount clusters plus, from the first write, one L2 table "
                     f"({recipe.options['cluster_bytes']} bytes) per L2 range of guest space written",)
        return Usage(clones=tuple(usages), gi_bytes=gi_bytes, total_bytes=total,
                     accounting="qcow2 actual-size (st_blocks) per file; own data from qemu-img map depth 0",
                     notes=notes)

    def destroy(self, path: Path) -> None:
        path.unlink(missing_ok=True)


# --- file helpers shared by the file-based backends -----------------------------------------------


def write_new_file(dest: Path, payload: bytes) -> None:
    """Create ``dest`` (it must not exist; links are not followed), write, fsync."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
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


_COPY_CHUNK = 1 << 20
_BLOCK = 4096
_ZERO_BLOCK = bytes(_BLOCK)


def nonzero_runs(chunk: bytes) -> list[tuple[int, int]]:
    """(start, end) of the runs of 4 KiB blocks of ``chunk`` that are not all zero."""
    if chunk.count(0) == len(chunk):
        return []
    view = memoryview(chunk)
    runs: list[tuple[int, int]] = []
    for off in range(0, len(chunk), _BLOCK):
        block = view[off:off + _BLOCK]
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
    for start, end in measure.data_extents(fd, size):
        off = start
        while off < end:
            chunk = os.pread(fd, min(chunk_bytes, end - off), off)
            if not chunk:
                break
            yield off, chunk
            off += len(chunk)


def copy_file_private(src: Path, dest: Path, thick: bool = False) -> None:
    """Copy ``src`` to a new file ``dest`` sharing no blocks with it (no reflink, no copy_file_range).

    Sparse: holes (SEEK_HOLE) and all-zero 4 KiB blocks are not written, as
    ``qemu-img convert`` skips zeros; ``thick`` allocates the whole size first
    (fallocate), as a thick copy does. The size is set before any write, so no
    filesystem preallocates past a moving end of file. ``src`` is opened read-only.
    """
    sfd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(sfd).st_size
        dfd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(dfd, size)
            if thick and size:
                os.posix_fallocate(dfd, 0, size)
            for off, chunk in data_chunks(sfd, size, _COPY_CHUNK):
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
