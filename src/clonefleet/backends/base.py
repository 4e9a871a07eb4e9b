"""The protocol every storage backend follows, and the records it exchanges with the engine.

A backend knows how to make one clone of a golden image (GI) by one method on
one kind of storage; :mod:`clonefleet.provision` does the rest the same way for
every backend: the plan, temporaries and renames, the journal, the lock,
parallel workers. Backends stand on :mod:`clonefleet.storage` only. The life cycle of a fleet is

    probe -> plan -> prepare -> apply (per clone) -> status -> measure -> destroy

``probe`` is the cheap step most likely to fail (a missing tool, a filesystem
without reflink) and runs before anything is created.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from clonefleet.errors import ClonefleetError
from clonefleet.presets import FunctionPreset, Method
from clonefleet.storage.goldimage import GoldenImageInfo


class BackendUnavailable(ClonefleetError):
    """The backend cannot work here (a tool is missing, the filesystem lacks a feature)."""

    exit_code = 2


@dataclass(frozen=True)
class Recipe:
    """How a backend will make each clone of one fleet: shown by dry runs, used by ``apply``."""

    method: Method
    suffix: str  # file name suffix of a clone, e.g. ".qcow2"
    steps: tuple[str, ...]  # human description of the commands, in order
    model_function: FunctionPreset  # the storage function the model uses for this backend and method
    clone_format: str  # format of a clone file: qcow2 or raw
    options: Mapping[str, object] = field(default_factory=dict)  # backend specifics (cluster size...)
    copy_bytes: int = 0  # bytes a tool reads to make one clone (its timeout grows with them)


@dataclass
class Prepared:
    """What ``prepare`` made once per source (GI or replica) and ``apply`` reuses for every clone."""

    source: Path
    payload: bytes = b""  # e.g. a fresh linked-clone image, copied to each clone
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class CloneUsage:
    """Bytes one clone really consumes on storage."""

    name: str
    consumed_bytes: int  # capacity this clone alone holds (shared data counted once, with the GI)
    own_data_bytes: int  # data the clone holds itself (new writes, or a copy of the GI's data)
    metadata_bytes: int  # consumed - own data: the clone's overhead


@dataclass(frozen=True)
class Usage:
    """Capacity of a fleet as measured: per clone, the GIs, the total and how it was counted."""

    clones: tuple[CloneUsage, ...]
    gi_bytes: int  # the GI and its replicas
    total_bytes: int  # GIs + clones, shared data once
    accounting: str  # how the bytes were counted (e.g. "qcow2 actual-size", "fiemap shared extents")
    notes: tuple[str, ...] = ()


@runtime_checkable
class Backend(Protocol):
    """One kind of storage that makes clones: plan -> apply -> status -> measure -> destroy."""

    name: str
    description: str

    def probe(self, fleet_dir: Path) -> None:
        """Refuse early and clearly (:class:`BackendUnavailable`) when this backend cannot work here."""
        ...

    def plan(self, gi: GoldenImageInfo, method: Method, cluster_bytes: int) -> Recipe:
        """Decide how clones of ``gi`` are made by ``method``; nothing is created."""
        ...

    def prepare(self, recipe: Recipe, source: Path, work_dir: Path) -> Prepared:
        """Once per source (GI or replica): anything every clone can reuse (scratch files in ``work_dir``,
        the run's private folder)."""
        ...

    def apply(self, recipe: Recipe, prepared: Prepared, dest: Path) -> None:
        """Make one clone at ``dest`` (a new temporary in the run's private folder, on the fleet's
        filesystem; the engine journals it, then renames it into place)."""
        ...

    def replicate(self, gi: GoldenImageInfo, dest: Path) -> None:
        """Make a full replica of the GI at ``dest`` (a temporary name), sharing nothing with it."""
        ...

    def status(self, recipe: Recipe, path: Path, source: Path, deep: bool = False) -> str | None:
        """None when the clone at ``path`` is whole and made from ``source``; else what is wrong."""
        ...

    def measure(self, recipe: Recipe, clones: Sequence[Path], gis: Sequence[Path]) -> Usage:
        """The capacity the clones and GIs really consume, shared data counted once."""
        ...

    def destroy(self, path: Path) -> None:
        """Remove one clone (a plain file name inside the fleet directory)."""
        ...
