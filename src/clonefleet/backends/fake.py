"""A fake backend for fast unit tests of the engine: each clone is a small text file.

Not offered to users: tests register it (``backends.register("fake", FakeBackend)``).

It follows the protocol exactly (probe, plan, prepare, apply, status, measure,
destroy) without any storage tool. Tests can make it fail on chosen clones
(``fail_on``: a clone index and the error to raise, e.g. ``OSError(ENOSPC)``)
after writing half a clone, as a full disk would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from clonefleet.backends.base import BackendUnavailable, CloneUsage, Prepared, Recipe, Usage
from clonefleet.backends.qcow2 import model_function
from clonefleet.presets import Method
from clonefleet.storage.data import write_new_file
from clonefleet.storage.goldimage import GoldenImageInfo

MARKER = b"clonefleet fake clone\n"


class FakeBackend:
    """Clones as marker files naming their source; no storage tool needed."""

    name = "fake"
    description = "marker files instead of images, for fast tests of the engine"

    def __init__(self, fail_on: Mapping[str, BaseException] | None = None,
                 unavailable: str | None = None) -> None:
        self.fail_on = dict(fail_on or {})
        self.unavailable = unavailable
        self.made: list[str] = []

    def probe(self, fleet_dir: Path) -> None:
        if self.unavailable:
            raise BackendUnavailable(self.unavailable)

    def plan(self, gi: GoldenImageInfo, method: Method, cluster_bytes: int) -> Recipe:
        return Recipe(method=method, suffix=".fake", steps=(f"write a marker file naming the source ({method})",),
                      model_function=model_function(method, cluster_bytes), clone_format="fake")

    def prepare(self, recipe: Recipe, source: Path, work_dir: Path) -> Prepared:
        return Prepared(source=source, payload=MARKER + f"{recipe.method} {source}\n".encode())

    def apply(self, recipe: Recipe, prepared: Prepared, dest: Path) -> None:
        clone = dest.name.split(".", 1)[-1]  # <pid>.<name>: a temporary in the run's private folder
        error = self.fail_on.get(clone.removesuffix(recipe.suffix))
        if error is not None:
            dest.write_bytes(prepared.payload[: len(prepared.payload) // 2])  # half a clone, then the error
            raise error
        write_new_file(dest, prepared.payload)
        self.made.append(clone)

    def replicate(self, gi: GoldenImageInfo, dest: Path) -> None:
        write_new_file(dest, gi.path.read_bytes())

    def status(self, recipe: Recipe, path: Path, source: Path, deep: bool = False) -> str | None:
        expected = MARKER + f"{recipe.method} {source}\n".encode()
        return None if path.read_bytes() == expected else "not a whole fake clone of its source"

    def measure(self, recipe: Recipe, clones: Sequence[Path], gis: Sequence[Path]) -> Usage:
        usages = tuple(CloneUsage(p.name, p.stat().st_size, 0, p.stat().st_size) for p in clones)
        gi_bytes = sum(p.stat().st_size for p in gis)
        return Usage(clones=usages, gi_bytes=gi_bytes,
                     total_bytes=gi_bytes + sum(u.consumed_bytes for u in usages),
                     accounting="file sizes (fake backend)")

    def destroy(self, path: Path) -> None:
        path.unlink(missing_ok=True)
