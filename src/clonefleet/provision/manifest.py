"""The fleet manifest: a TOML file describing the desired state of one fleet.

::

    [fleet]
    name = "web"                  # a plain name
    count = 200                   # clones wanted
    clone_name = "vm-{index:04d}" # one {index} (1..count), optionally zero-padded
    dest = "clones"               # the fleet directory (relative to this file's folder)
    preset = "server-linux"       # fleet preset: boot writes, and g = "auto"
    array = "midrange-2012"       # array preset for g = "auto"

    [golden_image]
    path = "gi.qcow2"             # relative to this file's folder, or absolute
    sha256 = "..."                # recorded by 'clonefleet init'; verified before every run
    bytes = 123456                # file size recorded with the checksum
    max_chain_depth = 1           # 1: the GI may not itself have a backing file

    [clones]
    backend = "qcow2"             # qcow2 (default), reflink, fake
    method = "snapshot"           # full, thin or snapshot
    golden_images = 1             # g, or "auto": the planner's g for this fleet and array
    cluster_size = "64 KiB"       # qcow2 cluster size
    workers = 4                   # parallel workers

    [writes]
    source = "preset"             # the boot write footprint of the fleet preset, scaled to the GI
    seed = 1
    # optional overrides: bytes = "2 MiB", extents = 20, span = "100 MiB", span_start = "64 MiB"

Relative paths are taken from the manifest's folder, so a fleet directory moves
with its manifest. :func:`write_manifest` writes one (``clonefleet init``).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clonefleet.backends import DEFAULT_BACKEND, backend_names
from clonefleet.errors import UsageError, field_error
from clonefleet.presets import Method
from clonefleet.storage.paths import NameTemplate, check_fleet_dir, check_name
from clonefleet.units import UnitError, parse_bytes

MAX_CLONES = 1_000_000
MAX_WORKERS = 256
DEFAULT_TEMPLATE = "vm-{index:04d}"

_SECTIONS: dict[str, tuple[str, ...]] = {
    "fleet": ("name", "count", "clone_name", "dest", "preset", "array"),
    "golden_image": ("path", "sha256", "bytes", "max_chain_depth"),
    "clones": ("backend", "method", "golden_images", "cluster_size", "workers"),
    "writes": ("source", "seed", "bytes", "extents", "span", "span_start"),
}


@dataclass(frozen=True)
class WritesSpec:
    """Where a boot's write footprint comes from; None fields come from the scaled fleet preset."""

    source: str = "preset"
    seed: int = 1
    write_bytes: int | None = None
    write_extents: int | None = None
    span_bytes: int | None = None
    span_start_bytes: int | None = None


@dataclass(frozen=True)
class Manifest:
    """One fleet's desired state, validated; paths absolute."""

    path: Path
    name: str
    count: int
    clone_name: NameTemplate
    dest: Path
    gi: Path
    gi_sha256: str | None
    gi_bytes: int | None
    max_chain_depth: int
    backend: str = DEFAULT_BACKEND
    method: Method = Method.SNAPSHOT
    golden_images: int | None = 1  # None: "auto", the planner's g
    cluster_bytes: int = 64 * 1024
    workers: int = 4
    preset: str = "server-linux"
    array: str = "midrange-2012"
    writes: WritesSpec = field(default_factory=WritesSpec)

    def clone_names(self) -> list[str]:
        return [self.clone_name.name(i) for i in range(1, self.count + 1)]

    def to_dict(self) -> dict[str, object]:
        return {
            "manifest": str(self.path), "name": self.name, "count": self.count,
            "clone_name": str(self.clone_name), "dest": str(self.dest), "gi": str(self.gi),
            "gi_sha256": self.gi_sha256, "gi_bytes": self.gi_bytes, "max_chain_depth": self.max_chain_depth,
            "backend": self.backend, "method": self.method.value,
            "golden_images": "auto" if self.golden_images is None else self.golden_images,
            "cluster_bytes": self.cluster_bytes, "workers": self.workers, "preset": self.preset,
            "array": self.array, "writes_source": self.writes.source, "writes_seed": self.writes.seed,
        }


def _int(where: str, key: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise field_error(where, key, value, f"a whole number from {low} to {high}")
    return value


def _str(where: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise field_error(where, key, value, "a non-empty string without NUL bytes")
    return value


def _size(where: str, key: str, value: object, low: int = 0) -> int:
    try:
        size = parse_bytes(value)
    except UnitError as exc:
        raise field_error(where, key, value, str(exc)) from None
    if size < low:
        raise field_error(where, key, value, f"at least {low} bytes")
    return size


def _relative_to(base: Path, text: str) -> Path:
    path = Path(text)
    return path if path.is_absolute() else base / path


def parse_golden_images(value: object, where: str = "manifest") -> int | None:
    """g: a whole number >= 1, or "auto" (None)."""
    if value == "auto":
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return _int(where, "clones.golden_images", value, 1, 10_000)


def build_manifest(path: Path, data: Mapping[str, Any]) -> Manifest:
    """Validate a parsed manifest; every error names the field, its value and what is allowed."""
    where = f"manifest {path}"
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise field_error(where, unknown[0], data[unknown[0]], f"unknown section; allowed: {', '.join(_SECTIONS)}")
    sections: dict[str, Mapping[str, Any]] = {}
    for name, keys in _SECTIONS.items():
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            raise field_error(where, name, table, "a table")
        extra = sorted(set(table) - set(keys))
        if extra:
            raise field_error(where, f"{name}.{extra[0]}", table[extra[0]], f"unknown key; allowed: {', '.join(keys)}")
        sections[name] = table
    fleet, gi, clones, writes = (sections[s] for s in ("fleet", "golden_image", "clones", "writes"))
    base = path.parent
    name = check_name(_str(where, "fleet.name", fleet.get("name", path.stem)), "fleet.name")
    if "count" not in fleet:
        raise field_error(where, "fleet.count", None, "missing; the number of clones wanted")
    count = _int(where, "fleet.count", fleet["count"], 1, MAX_CLONES)
    template = NameTemplate.parse(_str(where, "fleet.clone_name", fleet.get("clone_name", DEFAULT_TEMPLATE)))
    check_name(template.name(count) if template.prefix else "x" + template.name(count), "fleet.clone_name")
    if "dest" not in fleet:
        raise field_error(where, "fleet.dest", None, "missing; the fleet directory")
    dest = check_fleet_dir(_relative_to(base, _str(where, "fleet.dest", fleet["dest"])))
    if "path" not in gi:
        raise field_error(where, "golden_image.path", None, "missing; the golden image file")
    gi_path = Path(os.path.abspath(_relative_to(base, _str(where, "golden_image.path", gi["path"]))))
    sha = gi.get("sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64
                            or any(c not in "0123456789abcdefABCDEF" for c in sha)):
        raise field_error(where, "golden_image.sha256", sha, "64 hexadecimal digits (clonefleet init records it)")
    gi_bytes = gi.get("bytes")
    if gi_bytes is not None:
        gi_bytes = _int(where, "golden_image.bytes", gi_bytes, 1, 2**62)
    depth = _int(where, "golden_image.max_chain_depth", gi.get("max_chain_depth", 1), 1, 64)
    backend = _str(where, "clones.backend", clones.get("backend", DEFAULT_BACKEND))
    if backend not in backend_names():
        raise field_error(where, "clones.backend", backend, f"one of {', '.join(backend_names())}")
    method_text = clones.get("method", "snapshot")
    if method_text not in {m.value for m in Method}:
        raise field_error(where, "clones.method", method_text, "one of full, thin, snapshot")
    method = Method(method_text)
    g = parse_golden_images(clones.get("golden_images", 1), where)
    if method is not Method.SNAPSHOT and g not in (1, None):  # auto: the planner's g is 1 for them
        raise field_error(where, "clones.golden_images", clones.get("golden_images"),
                          f"1 for method {method} (its clones never read the GI once made); "
                          "GI replicas serve snapshot clones")
    cluster = _size(where, "clones.cluster_size", clones.get("cluster_size", "64 KiB"), 512)
    if cluster & (cluster - 1) or not 512 <= cluster <= 2 << 20:
        raise field_error(where, "clones.cluster_size", clones.get("cluster_size"),
                          "a power of two from 512 B to 2 MiB")
    workers = _int(where, "clones.workers", clones.get("workers", 4), 1, MAX_WORKERS)
    source = _str(where, "writes.source", writes.get("source", "preset"))
    spec = WritesSpec(
        source=source if source == "preset" else str(_relative_to(base, source)),
        seed=_int(where, "writes.seed", writes.get("seed", 1), 0, 2**63 - 1),
        write_bytes=_size(where, "writes.bytes", writes["bytes"]) if "bytes" in writes else None,
        write_extents=_int(where, "writes.extents", writes["extents"], 0, 10**7) if "extents" in writes else None,
        span_bytes=_size(where, "writes.span", writes["span"], 4096) if "span" in writes else None,
        span_start_bytes=_size(where, "writes.span_start", writes["span_start"]) if "span_start" in writes else None,
    )
    return Manifest(
        path=Path(os.path.abspath(path)), name=name, count=count, clone_name=template, dest=dest,
        gi=gi_path, gi_sha256=sha.lower() if isinstance(sha, str) else None, gi_bytes=gi_bytes,
        max_chain_depth=depth, backend=backend, method=method, golden_images=g, cluster_bytes=cluster,
        workers=workers, preset=_str(where, "fleet.preset", fleet.get("preset", "server-linux")),
        array=_str(where, "fleet.array", fleet.get("array", "midrange-2012")), writes=spec,
    )


def load_manifest(path: Path | str) -> Manifest:
    """Read and validate a manifest file; a missing or malformed file is a one-line usage error."""
    text_path = str(path)
    if "\x00" in text_path:
        raise UsageError("manifest path contains a NUL byte")
    p = Path(text_path)
    if not p.is_file():
        raise UsageError(f"manifest {p}: no such file; write one with 'clonefleet init'")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"manifest {p}: not valid TOML ({' '.join(str(exc).split())})") from None
    return build_manifest(p, data)


def resolve_golden_images(manifest: Manifest) -> int:
    """g for this fleet: the manifest's number, or the planner's g for the snapshot method."""
    if manifest.method is not Method.SNAPSHOT:
        return 1
    if manifest.golden_images is not None:
        return manifest.golden_images
    from clonefleet.planner import golden_images_for
    from clonefleet.presets import load_array, load_fleet, load_function

    g = golden_images_for(load_fleet(manifest.preset), load_array(manifest.array), load_function("snapshot"),
                          manifest.count)
    if g is None:
        raise UsageError(f"golden_images = 'auto': the planner finds no g for {manifest.count} clones of "
                         f"{manifest.preset} on {manifest.array} (one GI cannot serve even one clone); "
                         "give a number")
    return g


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def manifest_text(values: Mapping[str, Mapping[str, object]]) -> str:
    """TOML text of a manifest from its sections (None values are left out)."""
    lines = ["# clonefleet fleet manifest: the desired state of one fleet (see docs/provisioning.md)."]
    for section in _SECTIONS:
        table = values.get(section, {})
        lines.append("")
        lines.append(f"[{section}]")
        for key in _SECTIONS[section]:
            if table.get(key) is not None:
                lines.append(f"{key} = {_toml(table[key])}")
    return "\n".join(lines) + "\n"


def write_manifest(path: Path, values: Mapping[str, Mapping[str, object]], force: bool = False) -> Manifest:
    """Validate ``values`` as a manifest, then write it atomically to ``path``."""
    text = manifest_text(values)
    manifest = build_manifest(Path(os.path.abspath(path)), tomllib.loads(text))
    if path.exists() and not force:
        raise UsageError(f"manifest {path}: exists; pass --force to replace it")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return manifest
