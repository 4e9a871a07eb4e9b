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
    backend = "qcow2"             # qcow2 (default), reflink, or rbd (then an [rbd] table)
    method = "snapshot"           # full, thin or snapshot
    golden_images = 1             # g, or "auto": the planner's g for this fleet and array
    cluster_size = "64 KiB"       # qcow2 cluster size
    workers = 4                   # parallel workers

    [writes]
    source = "preset"             # the boot write footprint of the fleet preset, scaled to the GI
    seed = 1
    # optional overrides: bytes = "2 MiB", extents = 20, span = "100 MiB", span_start = "64 MiB"

    [rbd]                         # backend rbd only (docs/howto-rbd.md)
    conf = "/etc/ceph/ceph.conf"  # the cluster; pool, client, keyring, replica_pools,
    pool = "rbd"                  # max_clone_depth, op_timeout, connect_timeout optional

Relative paths are taken from the manifest's folder, so a fleet directory moves
with its manifest. :func:`write_manifest` writes one (``clonefleet init``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import AfterValidator, PlainValidator, model_validator
from pydantic.dataclasses import dataclass as record_dataclass

from clonefleet.backends import DEFAULT_BACKEND, IMAGE_BACKENDS, backend_names
from clonefleet.backends.rbd import RBD_KEYS, RbdConfig, rbd_config_from
from clonefleet.errors import FieldError, UsageError
from clonefleet.presets import Method
from clonefleet.presets.schema import enum_check
from clonefleet.records import RECORD_CONFIG, cross_field, record, whole_number
from clonefleet.storage.files import read_regular_text
from clonefleet.storage.paths import NameTemplate, check_fleet_dir, check_name
from clonefleet.units import MAX_BYTES, parse_bytes

MAX_CLONES = 1_000_000
MAX_WORKERS = 256
MAX_GOLDEN_IMAGES = 10_000
DEFAULT_TEMPLATE = "vm-{index:04d}"

_SECTIONS: dict[str, tuple[str, ...]] = {
    "fleet": ("name", "count", "clone_name", "dest", "preset", "array"),
    "golden_image": ("path", "sha256", "bytes", "max_chain_depth"),
    "clones": ("backend", "method", "golden_images", "cluster_size", "workers"),
    "writes": ("source", "seed", "bytes", "extents", "span", "span_start"),
    "rbd": RBD_KEYS,
}

# --- field types: each check raises ValueError with what is allowed ----------------------------

Check = Callable[[Any], Any]


def _optional(check: Check) -> Check:
    def optional(value: object) -> object:
        return None if value is None else check(value)

    return optional


def _text(value: object) -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError("a non-empty string without NUL bytes")
    return value


def _size(low: int, high: int = MAX_BYTES) -> Check:
    def check(value: object) -> int:
        size = parse_bytes(value)  # UnitError (a ValueError) says what a size is
        if not low <= size <= high:
            raise ValueError(f"a size from {low} B to {high} B")
        return size

    return check


def _sha256(value: object) -> str:
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ValueError("64 hexadecimal digits (clonefleet init records it)")
    return value.lower()


def _cluster(value: object) -> int:
    size = parse_bytes(value)
    if size & (size - 1) or not 512 <= size <= 2 << 20:
        raise ValueError("a power of two from 512 B to 2 MiB")
    return size


_G_ALLOWED = f"a whole number from 1 to {MAX_GOLDEN_IMAGES:,}, or 'auto' (the planner's g)"


def _golden_images(value: object) -> int | None:
    if value == "auto":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        value = int(value)
    return int(whole_number(1, MAX_GOLDEN_IMAGES, _G_ALLOWED)(value))


def _backend(value: str) -> str:
    names = sorted([*backend_names(), *IMAGE_BACKENDS])
    if value not in names:
        raise ValueError(f"one of {', '.join(names)}")
    return value


Text = Annotated[str, PlainValidator(_text)]
Seed = Annotated[int, PlainValidator(whole_number(0, 2**63 - 1))]


# --- records ------------------------------------------------------------------------------------

WRITES_NAMES = {"source": "writes.source", "seed": "writes.seed", "write_bytes": "writes.bytes",
                "write_extents": "writes.extents", "span_bytes": "writes.span", "span_start_bytes": "writes.span_start"}


@record("manifest", WRITES_NAMES)
@record_dataclass(frozen=True, config=RECORD_CONFIG)
class WritesSpec:
    """Where a boot's write footprint comes from; None fields come from the scaled fleet preset.

    ``write_bytes`` is at most ``span_bytes`` when the manifest gives both; when it gives no
    span, the span is the preset's scaled to the GI, known only when the GI is read
    (:func:`clonefleet.provision.bootwrites.model_fleet`).
    """

    source: Text = "preset"
    seed: Seed = 1
    write_bytes: Annotated[int | None, PlainValidator(_optional(_size(0)))] = None
    write_extents: Annotated[int | None, PlainValidator(_optional(whole_number(0, 10**7)))] = None
    span_bytes: Annotated[int | None, PlainValidator(_optional(_size(4096)))] = None
    span_start_bytes: Annotated[int | None, PlainValidator(_optional(_size(0)))] = None

    @model_validator(mode="after")
    def _within_span(self) -> Self:
        if self.write_bytes is not None and self.span_bytes is not None and self.write_bytes > self.span_bytes:
            raise cross_field("writes.bytes", self.write_bytes,
                              f"at most writes.span ({self.span_bytes} bytes): the writes fall inside the span")
        return self


MANIFEST_NAMES = {
    "name": "fleet.name", "count": "fleet.count", "clone_name": "fleet.clone_name", "dest": "fleet.dest",
    "preset": "fleet.preset", "array": "fleet.array", "gi": "golden_image.path", "gi_sha256": "golden_image.sha256",
    "gi_bytes": "golden_image.bytes", "max_chain_depth": "golden_image.max_chain_depth",
    "backend": "clones.backend", "method": "clones.method", "golden_images": "clones.golden_images",
    "cluster_bytes": "clones.cluster_size", "workers": "clones.workers",
}


@record("manifest", MANIFEST_NAMES)
@record_dataclass(frozen=True, config=RECORD_CONFIG)
class Manifest:
    """One fleet's desired state, validated; paths absolute."""

    path: Path
    name: Text
    count: Annotated[int, PlainValidator(whole_number(1, MAX_CLONES))]
    clone_name: NameTemplate
    dest: Path
    gi: Path
    gi_sha256: Annotated[str | None, PlainValidator(_optional(_sha256))]
    gi_bytes: Annotated[int | None, PlainValidator(_optional(whole_number(1, MAX_BYTES)))]
    max_chain_depth: Annotated[int, PlainValidator(whole_number(1, 64))]
    backend: Annotated[Text, AfterValidator(_backend)] = DEFAULT_BACKEND
    method: Annotated[Method, PlainValidator(enum_check(Method))] = Method.SNAPSHOT
    golden_images: Annotated[int | None, PlainValidator(_golden_images)] = 1  # None: "auto", the planner's g
    cluster_bytes: Annotated[int, PlainValidator(_cluster)] = 64 * 1024
    workers: Annotated[int, PlainValidator(whole_number(1, MAX_WORKERS))] = 4
    preset: Text = "server-linux"
    array: Text = "midrange-2012"
    writes: WritesSpec = field(default_factory=WritesSpec)
    rbd: RbdConfig | None = None  # the cluster and pools of backend rbd ([rbd] table)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.backend == "rbd") != (self.rbd is not None):
            raise cross_field("clones.backend", self.backend,
                              "'rbd' with an [rbd] table (conf, pool, ...), or another backend without one")
        g = self.golden_images
        if self.method is not Method.SNAPSHOT and g not in (1, None):  # auto: the planner's g is 1 for them
            raise cross_field("clones.golden_images", g,
                              f"1 for method {self.method} (its clones never read the GI once made); "
                              "GI replicas serve snapshot clones")
        if g is not None and g > self.count:
            raise cross_field("clones.golden_images", g,
                              f"at most fleet.count ({self.count}): each GI copy serves at least one clone")
        return self

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
            **({"rbd": self.rbd.to_dict()} if self.rbd is not None else {}),
        }


def _relative_to(base: Path, text: str) -> Path:
    path = Path(text)
    return path if path.is_absolute() else base / path


def parse_golden_images(value: object, where: str = "manifest") -> int | None:
    """g: a whole number >= 1, or "auto" (None)."""
    try:
        return _golden_images(value)
    except ValueError as exc:
        raise FieldError(where, "clones.golden_images", value, str(exc)) from None


def _given(sections: Mapping[str, Mapping[str, Any]], names: Mapping[str, str]) -> dict[str, Any]:
    """Record attributes from the values the document gives, by their ``section.key`` names."""
    values = {}
    for attr, dotted in names.items():
        section, _, key = dotted.partition(".")
        if key in sections[section]:
            values[attr] = sections[section][key]
    return values


def _path_text(where: str, key: str, value: object) -> str:
    """A path or template string the builder needs before the record exists (to resolve it)."""
    try:
        return _text(value)
    except ValueError as exc:
        raise FieldError(where, key, value, str(exc)) from None


def build_manifest(path: Path, data: Mapping[str, Any]) -> Manifest:
    """Validate a parsed manifest; every error names the field, its value and what is allowed.

    This checks the document (sections, keys, what is required) and resolves paths; the
    :class:`Manifest` and :class:`WritesSpec` records check the values.
    """
    where = f"manifest {path}"
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise FieldError(where, unknown[0], data[unknown[0]], f"unknown section; allowed: {', '.join(_SECTIONS)}")
    sections: dict[str, Mapping[str, Any]] = {}
    for name, keys in _SECTIONS.items():
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            raise FieldError(where, name, table, "a table")
        extra = sorted(set(table) - set(keys))
        if extra:
            raise FieldError(where, f"{name}.{extra[0]}", table[extra[0]], f"unknown key; allowed: {', '.join(keys)}")
        sections[name] = table
    fleet, gi = sections["fleet"], sections["golden_image"]
    for section, key, what in (("fleet", "count", "the number of clones wanted"),
                               ("fleet", "dest", "the fleet directory"),
                               ("golden_image", "path", "the golden image file")):
        if key not in sections[section]:
            raise FieldError(where, f"{section}.{key}", None, f"missing; {what}")
    base = path.parent
    try:
        spec = WritesSpec(**_given(sections, WRITES_NAMES))
    except FieldError as exc:
        raise exc.at(where) from None
    if spec.source != "preset":
        spec = dataclasses.replace(spec, source=str(_relative_to(base, spec.source)))
    values = _given(sections, MANIFEST_NAMES)
    name = check_name(_path_text(where, "fleet.name", fleet.get("name", path.stem)), "fleet.name")
    template = NameTemplate.parse(_path_text(where, "fleet.clone_name", fleet.get("clone_name", DEFAULT_TEMPLATE)))
    count = values["count"]
    if isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= MAX_CLONES:
        check_name(template.name(count) if template.prefix else "x" + template.name(count), "fleet.clone_name")
    dest = check_fleet_dir(_relative_to(base, _path_text(where, "fleet.dest", fleet["dest"])))
    gi_path = Path(os.path.abspath(_relative_to(base, _path_text(where, "golden_image.path", gi["path"]))))
    values.update(path=Path(os.path.abspath(path)), name=name, clone_name=template, dest=dest, gi=gi_path,
                  writes=spec)
    values.setdefault("gi_sha256", None)
    values.setdefault("gi_bytes", None)
    values.setdefault("max_chain_depth", 1)
    if sections["rbd"]:
        values["rbd"] = rbd_config_from(sections["rbd"], base, where)
    try:
        return Manifest(**values)
    except FieldError as exc:
        raise exc.at(where) from None


def load_manifest(path: Path | str) -> Manifest:
    """Read and validate a manifest file; a missing or malformed file is a one-line usage error."""
    text_path = str(path)
    if "\x00" in text_path:
        raise UsageError("manifest path contains a NUL byte")
    p = Path(text_path)
    if not p.exists() and not p.is_symlink():
        raise UsageError(f"manifest {p}: no such file; write one with 'clonefleet init'")
    # A FIFO, a device or a directory is refused before a byte is read; so is a huge file.
    text = read_regular_text(p, "manifest")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
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
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
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
        if section == "rbd" and not any(v is not None for v in table.values()):
            continue  # only fleets on backend rbd have the table
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
