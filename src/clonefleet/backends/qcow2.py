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
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clonefleet.backends.base import BackendUnavailable, CloneUsage, Prepared, Recipe, Usage
from clonefleet.presets import FunctionPreset, Method, load_function
from clonefleet.storage import measure
from clonefleet.storage.data import copy_file_private, fsync_path, write_new_file
from clonefleet.storage.goldimage import GoldenImageInfo
from clonefleet.storage.qcow2 import check_image, create_overlay, qcow2_allocation, read_header
from clonefleet.storage.tools import copy_timeout_s, run_tool

DEFAULT_CLUSTER_BYTES = 64 * 1024


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
                      options={"cluster_bytes": cluster_bytes, "gi_format": gi.fmt},
                      copy_bytes=gi.virtual_bytes)

    def prepare(self, recipe: Recipe, source: Path, work_dir: Path) -> Prepared:
        if recipe.method is not Method.SNAPSHOT:
            return Prepared(source=source)
        with tempfile.TemporaryDirectory(dir=work_dir, prefix="template.") as tmp:
            template = Path(tmp) / "overlay.qcow2"
            create_overlay(template, source, str(recipe.options["gi_format"]),
                           int(str(recipe.options["cluster_bytes"])))
            return Prepared(source=source, payload=template.read_bytes())

    def apply(self, recipe: Recipe, prepared: Prepared, dest: Path) -> None:
        if recipe.method is Method.SNAPSHOT:
            write_new_file(dest, prepared.payload)
            return
        opts = f"cluster_size={recipe.options['cluster_bytes']}"
        if recipe.method is Method.FULL:
            opts += ",preallocation=falloc"
        run_tool(["qemu-img", "convert", "-U", "-f", str(recipe.options["gi_format"]), "-O", "qcow2",
                  "-o", opts, str(prepared.source), str(dest)],
                 timeout_s=copy_timeout_s(recipe.copy_bytes))
        fsync_path(dest)

    def replicate(self, gi: GoldenImageInfo, dest: Path) -> None:
        copy_file_private(gi.path, dest)

    def status(self, recipe: Recipe, path: Path, source: Path, deep: bool = False) -> str | None:
        header = read_header(path)
        if header is None:
            return "not a qcow2 image (bad or short header)"
        cluster, backing = header.cluster_bytes, header.backing_file
        if cluster != recipe.options["cluster_bytes"]:
            return f"cluster size {cluster}, the fleet uses {recipe.options['cluster_bytes']}"
        if recipe.method is Method.SNAPSHOT and backing != str(source):
            return f"backing file {backing!r}, expected {str(source)!r}"
        if recipe.method is not Method.SNAPSHOT and backing is not None:
            return f"has a backing file {backing!r}; a {recipe.method} clone must not"
        if deep:
            problem = check_image(path)
            if problem is not None:
                return f"qemu-img check: {problem}"
        return None

    def measure(self, recipe: Recipe, clones: Sequence[Path], gis: Sequence[Path]) -> Usage:
        def one(path: Path) -> CloneUsage:
            consumed = measure.allocated_bytes(path)
            own = qcow2_allocation(path).own_data_bytes
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
