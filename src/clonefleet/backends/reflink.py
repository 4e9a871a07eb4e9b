"""Reflink copies on a filesystem that shares extents (xfs with reflink=1, btrfs).

- ``snapshot``: a reflink copy (the ``FICLONE`` ioctl, what ``cp --reflink=always``
  does): the clone shares every block with the GI until it writes.
- ``thin``: a sparse private copy (data extents only, holes stay holes).
- ``full``: a thick private copy (the whole size allocated).

The backend refuses a filesystem without reflink (ext4, tmpfs) after a real
``FICLONE`` probe: it never falls back to copying in full, as
``cp --reflink=auto`` silently does.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from collections.abc import Sequence
from pathlib import Path

from clonefleet.backends.base import BackendUnavailable, CloneUsage, Prepared, Recipe, Usage
from clonefleet.backends.qcow2 import Qcow2Backend
from clonefleet.presets import FunctionPreset, Method, load_function
from clonefleet.storage import measure
from clonefleet.storage.data import copy_file_private
from clonefleet.storage.goldimage import GoldenImageInfo
from clonefleet.storage.qcow2 import read_header

FICLONE = 0x40049409  # _IOW(0x94, 9, int)
BLOCK_BYTES = 4096


def filesystem_of(path: Path) -> str:
    """The filesystem type holding ``path`` (longest mount point prefix in /proc/self/mountinfo)."""
    target = os.path.realpath(path)
    best, fstype = "", "unknown"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as info:
            for line in info:
                left, _, right = line.partition(" - ")
                mount_point = left.split()[4].replace("\\040", " ")
                if (target == mount_point or target.startswith(mount_point.rstrip("/") + "/")) \
                        and len(mount_point) >= len(best):
                    best, fstype = mount_point, right.split()[0]
    except OSError:
        pass
    return fstype


def reflink(src_fd: int, dest_fd: int) -> None:
    """Make ``dest_fd`` share all of ``src_fd``'s blocks (FICLONE); raises OSError if unsupported."""
    fcntl.ioctl(dest_fd, FICLONE, src_fd)


def probe_reflink(directory: Path) -> None:
    """Try a real FICLONE between two small unnamed files (O_TMPFILE) in ``directory``; refuse if it
    fails. No name is ever made, so a killed probe leaves nothing behind."""
    sfd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        dfd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            os.write(sfd, b"clonefleet reflink probe".ljust(BLOCK_BYTES, b"."))
            os.fsync(sfd)
            try:
                reflink(sfd, dfd)
            except OSError as exc:
                raise BackendUnavailable(
                    f"backend reflink: {directory} is on {filesystem_of(directory)}, which cannot share "
                    f"extents (FICLONE: {exc.strerror}); use an xfs (mkfs.xfs -m reflink=1) or btrfs "
                    "filesystem, or backend qcow2; clonefleet never falls back to full copies"
                ) from None
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def model_function(method: Method) -> FunctionPreset:
    """The model's storage function for a clone on a reflink filesystem made by ``method``."""
    if method is Method.SNAPSHOT:
        return load_function("reflink")
    if method is Method.THIN:
        # A sparse private copy: holds the GI's used data plus new writes, in 4 KiB blocks.
        return dataclasses.replace(load_function("qcow2-copy"), name="sparse copy (4 KiB blocks)",
                                   unit_bytes=float(BLOCK_BYTES), clone_overhead_bytes=0.0)
    return load_function("full")


class ReflinkBackend:
    """Clones as files on xfs or btrfs: reflink copies, sparse or thick private copies."""

    name = "reflink"
    description = "reflink copies (FICLONE) on xfs or btrfs; refuses filesystems without reflink"

    def probe(self, fleet_dir: Path) -> None:
        probe_reflink(fleet_dir)

    def plan(self, gi: GoldenImageInfo, method: Method, cluster_bytes: int) -> Recipe:
        steps = {
            Method.SNAPSHOT: ("ioctl FICLONE <GI> -> <clone> (cp --reflink=always): shares every block",),
            Method.THIN: ("copy the GI's data extents (SEEK_DATA), holes kept: a sparse private copy",),
            Method.FULL: ("fallocate the whole size, copy the GI's data: a thick private copy",),
        }[method]
        suffix = ".qcow2" if gi.fmt == "qcow2" else ".img"
        return Recipe(method=method, suffix=suffix, steps=steps, model_function=model_function(method),
                      clone_format=gi.fmt, options={"gi_format": gi.fmt, "virtual_bytes": gi.virtual_bytes})

    def prepare(self, recipe: Recipe, source: Path, work_dir: Path) -> Prepared:
        if recipe.method is Method.SNAPSHOT and os.stat(source).st_dev != os.stat(work_dir).st_dev:
            raise BackendUnavailable(
                f"backend reflink: the GI {source} is on another filesystem than the fleet directory; "
                f"reflink shares blocks only within one filesystem: put the GI on "
                f"the fleet's {filesystem_of(work_dir)} filesystem")
        return Prepared(source=source)

    def apply(self, recipe: Recipe, prepared: Prepared, dest: Path) -> None:
        if recipe.method is Method.SNAPSHOT:
            sfd = os.open(prepared.source, os.O_RDONLY | os.O_CLOEXEC)
            try:
                dfd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                              0o644)
                try:
                    reflink(sfd, dfd)
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            finally:
                os.close(sfd)
            return
        copy_file_private(prepared.source, dest, thick=recipe.method is Method.FULL)

    def replicate(self, gi: GoldenImageInfo, dest: Path) -> None:
        copy_file_private(gi.path, dest)

    def status(self, recipe: Recipe, path: Path, source: Path, deep: bool = False) -> str | None:
        size, expected = path.stat().st_size, source.stat().st_size
        if recipe.clone_format == "qcow2":
            header = read_header(path)
            if header is None:
                return "not a qcow2 image (bad or short header)"
            if deep:
                return Qcow2Backend().status(dataclasses.replace(
                    recipe, method=Method.THIN, options={"cluster_bytes": header.cluster_bytes}), path, source, deep)
            return None
        if size != expected:
            return f"{size} bytes, the GI has {expected}"
        return None

    def measure(self, recipe: Recipe, clones: Sequence[Path], gis: Sequence[Path]) -> Usage:
        sharing = measure.fleet_sharing([*gis, *clones])
        by_path = {f.path: f for f in sharing.files}
        usages = []
        for path in clones:
            f = by_path[path]
            usages.append(CloneUsage(path.name, f.exclusive_bytes, f.exclusive_bytes, 0))
        gi_bytes = sum(by_path[p].mapped_bytes for p in gis if p in by_path)
        notes = (f"du would say {sharing.naive_allocated_bytes} bytes "
                 f"({sharing.sharing_ratio:.1f}x the real figure): it counts shared blocks once per file",)
        return Usage(clones=tuple(usages), gi_bytes=gi_bytes, total_bytes=sharing.unique_physical_bytes,
                     accounting="FIEMAP physical extents, shared blocks counted once; per clone: "
                                "extents not shared", notes=notes)

    def destroy(self, path: Path) -> None:
        path.unlink(missing_ok=True)
