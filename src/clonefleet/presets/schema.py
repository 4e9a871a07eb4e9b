"""Typed preset records (fleet, array, storage function) and their validation.

A preset file is TOML. Its ``[preset]`` table names it; every other top-level
table is one figure with a ``value`` and either a ``source`` (with a ``date``)
or an ``assumption``::

    [preset]
    kind = "fleet"
    name = "desktop-win7"
    description = "Windows 7 virtual desktops (the paper's desktop case)"

    [gi_used]
    value = "15 GiB"
    source = "..."
    date = "2012"

Values take human units at this edge (``"100 GiB"``, ``"330 s"``); the records
hold bytes, seconds and IOPS.

The records validate themselves (:mod:`clonefleet.records`): a :class:`FleetPreset`,
:class:`ArrayPreset` or :class:`FunctionPreset` with a bad field cannot be built, by
a loader, by hand or by ``dataclasses.replace``. This module adds what only a
file has: the ``[preset]`` header, the figure tables with their sources, the TOML
names of the fields (:data:`SPECS`) and their help.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Self

import numpy as np
from pydantic import PlainValidator, model_validator
from pydantic.dataclasses import dataclass as record_dataclass

from clonefleet.errors import FieldError, UsageError, field_error
from clonefleet.records import (
    MAX_QUANTITY,
    RECORD_CONFIG,
    Count,
    Fraction,
    NonNegative,
    Positive,
    PositiveSize,
    Rate,
    Size,
    cross_field,
    quantity,
    record,
)
from clonefleet.units import UnitError, parse_seconds


class Method(enum.StrEnum):
    """How a clone is made: the paper's three patterns."""

    FULL = "full"
    THIN = "thin"
    SNAPSHOT = "snapshot"


class SwapDisk(enum.StrEnum):
    """Where a VM's pagefile (swap) and temp files land."""

    CLONE = "clone"  # in the clone: allocated by it, reset by a refresh
    DISPOSABLE = "disposable"  # on a separate disposable disk per VM (Horizon's disposable-file disk)


class Mirror(enum.StrEnum):
    """What a thin (capacity-virtualization) mirror holds."""

    PAPER = "paper"  # only what the clone newly writes
    PHYSICAL = "physical"  # a copy of the GI's used data plus the new writes


def enum_check(kind: type[enum.StrEnum]) -> Callable[[object], Any]:
    """A validator of one of an enum's values (a member or its text), saying which are allowed."""
    allowed = "one of " + ", ".join(m.value for m in kind)

    def check(value: object) -> enum.StrEnum:
        if isinstance(value, kind):
            return value
        if not isinstance(value, str) or value not in {m.value for m in kind}:
            raise ValueError(allowed)
        return kind(value)

    return check


def _text_check(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("a string")
    return value


Text = Annotated[str | None, PlainValidator(_text_check)]

#: Most write regions a fleet may give (a derived boot has a handful).
MAX_WRITE_REGIONS = 10_000
_REGIONS_ALLOWED = ("a list of [start, end, bytes, extents] rows: start and end whole byte offsets, sorted and "
                    "apart (each start after the end before), start < end; bytes in (0, end - start] and "
                    f"extents > 0 (means per VM, so fractions are allowed); at most {MAX_WRITE_REGIONS:,} rows")


def _regions_check(value: object) -> tuple[tuple[int, int, float, float], ...]:
    """Where a boot's writes fall: rows of (start, end, bytes written, extents), from a trace."""
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple) or len(value) > MAX_WRITE_REGIONS:
        raise ValueError(_REGIONS_ALLOWED)
    rows: list[tuple[int, int, float, float]] = []
    for row in value:
        if not isinstance(row, list | tuple) or len(row) != 4 or any(isinstance(x, bool) for x in row) \
                or not all(isinstance(x, int | np.integer) and 0 <= int(x) <= 2**62 for x in row[:2]) \
                or not all(isinstance(x, int | float | np.integer | np.floating) and math.isfinite(x)
                           for x in row[2:]):
            raise ValueError(_REGIONS_ALLOWED)
        start, end, nbytes, extents = int(row[0]), int(row[1]), float(row[2]), float(row[3])
        if not (start < end and 0 < nbytes <= end - start and 0 < extents <= MAX_QUANTITY
                and (not rows or start > rows[-1][1])):
            raise ValueError(_REGIONS_ALLOWED)
        rows.append((start, end, nbytes, extents))
    return tuple(rows)


WriteRegions = Annotated[tuple[tuple[int, int, float, float], ...], PlainValidator(_regions_check)]
MethodField = Annotated[Method, PlainValidator(enum_check(Method))]
MirrorField = Annotated[Mirror, PlainValidator(enum_check(Mirror))]
SwapDiskField = Annotated[SwapDisk, PlainValidator(enum_check(SwapDisk))]
#: Most a data-reduction ratio may be (a 1e6:1 ratio stores a TiB in a MiB: far beyond any array).
MAX_REDUCTION_RATIO = 1e6
#: A data-reduction ratio (dedup or compression): raw bytes per stored byte, 1 (none) or more.
Ratio = Annotated[float, PlainValidator(quantity(
    1, MAX_REDUCTION_RATIO, "a ratio of raw to stored bytes from 1 (no reduction) to 1e6, e.g. 5 for 5:1"))]
#: Clones one source may have: whole, 1 or more, or inf (no limit).
MaxClones = Annotated[float, PlainValidator(quantity(
    1, MAX_QUANTITY, "a whole number greater than 0, at most 1e12, or inf for no limit", whole=True, inf_ok=True))]


def _bigger(a: object, b: object) -> bool:
    """Whether any of ``a`` exceeds ``b`` (either may be an array: a sweep)."""
    return bool(np.any(np.asarray(a) > np.asarray(b)))


@record("figure")
@record_dataclass(frozen=True, config=RECORD_CONFIG)
class Figure:
    """Where one preset figure comes from: a source (with a date) or an assumption."""

    source: Text = None
    date: Text = None
    assumption: Text = None

    @model_validator(mode="after")
    def _cited(self) -> Self:
        if not self.source and not self.assumption:
            raise cross_field("source", self.source,
                              "every figure needs a 'source' (with a 'date') or an 'assumption'")
        return self

    def describe(self) -> str:
        if self.source:
            return f"{self.source}" + (f" ({self.date})" if self.date else "")
        return f"assumption: {self.assumption}"


FLEET_NAMES = {"gi_virtual_bytes": "gi_size", "gi_used_bytes": "gi_used", "boot_write_span_bytes": "boot_write_span",
               "boot_read_span_bytes": "boot_read_span", "read_io_bytes": "read_io_size",
               "daily_write_span_bytes": "daily_write_span", "swap_bytes": "swap_size"}
ARRAY_NAMES = {"cache_bytes": "cache_size", "dedup_ratio_gi": "dedup_gi", "dedup_ratio_clone": "dedup_clone",
               "compression_ratio_gi": "compression_gi", "compression_ratio_clone": "compression_clone"}
FUNCTION_NAMES = {"unit_bytes": "unit", "clone_overhead_bytes": "clone_overhead", "table_bytes": "table_size",
                  "table_coverage_bytes": "table_coverage"}


@record("fleet", FLEET_NAMES)
@record_dataclass(frozen=True, config=RECORD_CONFIG)
class FleetPreset:
    """One kind of VM fleet and its boot workload (per VM)."""

    name: str
    description: str
    host_iops: Rate  # A, IO load one VM puts on the array during boot [IOPS]
    boot_ios: Positive  # IOs one boot issues
    read_fraction: Fraction  # r
    gi_virtual_bytes: PositiveSize  # G, virtual size of the GI
    gi_used_bytes: PositiveSize  # G_used, data the GI really holds
    boot_write_bytes: Size  # W
    boot_write_extents: NonNegative  # n
    boot_write_span_bytes: PositiveSize  # R
    boot_read_span_bytes: PositiveSize  # part of the GI a boot reads
    read_io_bytes: PositiveSize  # mean size of one read IO
    queue_depth: Count  # IOs one VM keeps outstanding while booting
    boot_write_regions: WriteRegions = ()  # where W falls, from a trace: (start, end, bytes, extents) rows
    daily_write_bytes: Size = 0.0  # W_day, bytes one clone writes a day in use (growth model, Eq. G1)
    daily_write_extents: NonNegative = 0.0  # n_day, extents of those writes
    daily_write_span_bytes: Size = 0.0  # R_day, the span daily use rewrites
    swap_bytes: Size = 0.0  # P, pagefile (swap) and temp files of one VM
    swap_disk: SwapDiskField = SwapDisk.CLONE  # where P lands
    sources: Mapping[str, Figure] = field(default_factory=dict, compare=False, repr=False)

    @property
    def boot_window_s(self) -> float:
        """Time one boot takes at its load A: boot IOs / A [s]."""
        return self.boot_ios / self.host_iops

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for key, value in (("gi_used", self.gi_used_bytes), ("boot_write_span", self.boot_write_span_bytes),
                           ("boot_read_span", self.boot_read_span_bytes)):
            if _bigger(value, self.gi_virtual_bytes):
                raise cross_field(key, value, "at most gi_size")
        if _bigger(self.boot_write_bytes, self.boot_write_span_bytes):
            raise cross_field("boot_write_bytes", self.boot_write_bytes, "at most boot_write_span")
        if bool(np.any((np.asarray(self.boot_write_bytes) > 0) & (np.asarray(self.boot_write_extents) < 1))):
            raise cross_field("boot_write_extents", self.boot_write_extents, "at least 1 when the boot writes")
        if _bigger(self.daily_write_span_bytes, self.gi_virtual_bytes):
            raise cross_field("daily_write_span", self.daily_write_span_bytes, "at most gi_size")
        if _bigger(self.swap_bytes, self.gi_virtual_bytes):
            raise cross_field("swap_size", self.swap_bytes, "at most gi_size")
        if _bigger(self.daily_write_bytes, self.daily_write_span_bytes):
            raise cross_field("daily_write_bytes", self.daily_write_bytes,
                              "at most daily_write_span (give the span daily use rewrites)")
        if bool(np.any((np.asarray(self.daily_write_bytes) > 0) & (np.asarray(self.daily_write_extents) < 1))):
            raise cross_field("daily_write_extents", self.daily_write_extents, "at least 1 when a clone writes daily")
        if self.boot_write_regions:
            rows = np.asarray(self.boot_write_regions, dtype=np.float64)
            if not (np.allclose(self.boot_write_bytes, rows[:, 2].sum(), rtol=1e-9, atol=0)
                    and np.allclose(self.boot_write_extents, rows[:, 3].sum(), rtol=1e-9, atol=0)):
                raise cross_field("boot_write_regions", len(self.boot_write_regions),
                                  "regions whose bytes sum to boot_write_bytes and extents to boot_write_extents")
            if _bigger(rows[-1, 1], self.gi_virtual_bytes):
                raise cross_field("boot_write_regions", int(rows[-1, 1]), "regions that end within gi_size")
        return self


@record("array", ARRAY_NAMES)
@record_dataclass(frozen=True, config=RECORD_CONFIG)
class ArrayPreset:
    """A storage array as the model sees it."""

    name: str
    description: str
    processor_iops: Rate  # N
    processors: Count  # processors that share N; each volume is owned by one
    volume_iops_limit: Rate  # N_v
    disk_iops: Rate  # M
    disks: Count  # X
    gi_disks: Count  # X_g, disks under one GI volume
    raid_write_penalty: Positive  # p
    cache_hit_shared: Fraction  # h_s
    cache_hit_private: Fraction  # h_p
    cow_read_fraction: Fraction  # phi
    cache_bytes: Size  # array cache (for the simulator)
    dedup_ratio_gi: Ratio = 1.0  # deduplication of GI data (the GIs, full copies, physical mirrors), Eq. G5
    dedup_ratio_clone: Ratio = 1.0  # deduplication of the clones' own data (their writes, swap, metadata)
    compression_ratio_gi: Ratio = 1.0  # compression of GI data
    compression_ratio_clone: Ratio = 1.0  # compression of the clones' own data
    sources: Mapping[str, Figure] = field(default_factory=dict, compare=False, repr=False)
    # No checks across fields here: a sweep or a simulation may take the pool below the GI's
    # parity group (X < X_g) or the processors below one volume's limit, and the model answers.
    # A preset file is held to the array's layout (build_array).


@record("function", FUNCTION_NAMES)
@record_dataclass(frozen=True, config=RECORD_CONFIG)
class FunctionPreset:
    """A storage function (how clones are made) and its allocation granularity."""

    name: str
    description: str
    method: MethodField
    unit_bytes: PositiveSize  # u, allocation granularity
    mirror: MirrorField  # meaningful for thin only
    clone_overhead_bytes: Size  # metadata a fresh clone costs
    max_clones_per_gi: MaxClones  # the function's own limit (inf when none)
    table_bytes: Size  # metadata a clone allocates for each table_coverage of space it writes (qcow2 L2)
    table_coverage_bytes: Size  # virtual space one such table maps (0 when the function has none)
    sources: Mapping[str, Figure] = field(default_factory=dict, compare=False, repr=False)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.table_bytes > 0) != (self.table_coverage_bytes > 0):
            raise cross_field("table_size", self.table_bytes, "give both table_size and table_coverage, or neither")
        return self


# --- the file format: TOML names, help, figures -------------------------------------------

Parser = Callable[[object], Any]


def _check(cls: type, attr: str) -> Parser:
    """The validator of one record field (what its annotated type checks)."""
    for meta in cls.__pydantic_fields__[attr].metadata:  # type: ignore[attr-defined]
        if isinstance(meta, PlainValidator):
            return meta.func  # type: ignore[return-value]
    raise AssertionError(f"{cls.__name__}.{attr} has no validator")


def _window_check(value: object) -> float:
    seconds = parse_seconds(value)
    if seconds <= 0:
        raise UnitError("a duration greater than 0, at least 1 ns")
    return seconds


@dataclass(frozen=True)
class Spec:
    """One field of a preset file: its TOML key, the record attribute, the check of its value."""

    key: str  # name in the TOML file
    attr: str  # name on the record
    parse: Parser  # the record field's own check (human units accepted), for values given elsewhere
    help: str
    default: object = None
    required: bool = True
    is_figure: bool = True  # needs a source or an assumption


def _specs(cls: type, names: Mapping[str, str], *rows: tuple[Any, ...]) -> tuple[Spec, ...]:
    """Specs of a record's fields from rows of (key, help[, default, required, is_figure])."""
    attr_of = {key: attr for attr, key in names.items()}
    return tuple(Spec(row[0], attr_of.get(row[0], row[0]), _check(cls, attr_of.get(row[0], row[0])), *row[1:])
                 for row in rows)


FLEET_SPECS: tuple[Spec, ...] = (
    *_specs(FleetPreset, FLEET_NAMES,
            ("host_iops", "A: IO load one VM puts on the array while booting [IOPS]; or give boot_window",
             None, False)),
    Spec("boot_window", "boot_window", _window_check, "how long one boot lasts (A = boot_ios / boot_window)",
         None, False),
    *_specs(FleetPreset, FLEET_NAMES,
            ("boot_ios", "IOs one boot issues"),
            ("read_fraction", "r: share of boot IOs that are reads"),
            ("gi_size", "G: virtual size of the golden image"),
            ("gi_used", "G_used: data the golden image really holds"),
            ("boot_write_bytes", "W: bytes one boot writes"),
            ("boot_write_extents", "n: extents the boot writes"),
            ("boot_write_span", "R: address span the writes fall in"),
            ("boot_read_span", "part of the GI a boot reads"),
            ("read_io_size", "mean size of one read IO"),
            ("queue_depth", "IOs one VM keeps outstanding"),
            ("boot_write_regions", "where the writes fall, from a trace: [start, end, bytes, extents] per "
                                   "region; C is then counted per region", (), False),
            ("daily_write_bytes", "W_day: bytes one clone writes a day in use (growth after boot)", 0.0, False),
            ("daily_write_extents", "n_day: extents one clone writes a day", 0.0, False),
            ("daily_write_span", "R_day: the span daily use rewrites (growth saturates at it)", 0.0, False),
            ("swap_size", "P: pagefile (swap) and temp files of one VM", 0.0, False),
            ("swap_disk", "where the pagefile lands: clone or disposable (a separate disk per VM)",
             SwapDisk.CLONE, False, False)),
)

ARRAY_SPECS: tuple[Spec, ...] = _specs(
    ArrayPreset, ARRAY_NAMES,
    ("processor_iops", "N: IO performance of the array's processors [IOPS]"),
    ("processors", "processors sharing N; each volume is owned by one"),
    ("volume_iops_limit", "N_v: IOPS one volume's processor can process"),
    ("disk_iops", "M: IO performance of one disk [IOPS]"),
    ("disks", "X: disks in the pool"),
    ("gi_disks", "X_g: disks under one GI volume (its parity group)"),
    ("raid_write_penalty", "p: back-end IOs per host write"),
    ("cache_hit_shared", "h_s: read hit ratio on data shared by clones"),
    ("cache_hit_private", "h_p: read hit ratio on private data"),
    ("cow_read_fraction", "phi: share of snapshot writes that read old GI data first"),
    ("cache_size", "array cache size"),
    ("dedup_gi", "deduplication ratio on GI data (GIs, full copies, mirrors), raw:stored", 1.0, False),
    ("dedup_clone", "deduplication ratio on the clones' own data, raw:stored", 1.0, False),
    ("compression_gi", "compression ratio on GI data, raw:stored", 1.0, False),
    ("compression_clone", "compression ratio on the clones' own data, raw:stored", 1.0, False),
)

FUNCTION_SPECS: tuple[Spec, ...] = _specs(
    FunctionPreset, FUNCTION_NAMES,
    ("method", "full, thin or snapshot", None, True, False),
    ("unit", "u: allocation granularity"),
    ("mirror", "thin only: paper (new writes only) or physical (GI data too)", Mirror.PAPER, False, False),
    ("clone_overhead", "metadata a fresh clone costs", 0.0, False),
    ("max_clones_per_gi", "clones one source may have", math.inf, False),
    ("table_size", "metadata table a write allocates (qcow2: one L2 table)", 0.0, False),
    ("table_coverage", "virtual space one metadata table maps", 0.0, False),
)

SPECS: dict[str, tuple[Spec, ...]] = {"fleet": FLEET_SPECS, "array": ARRAY_SPECS, "function": FUNCTION_SPECS}
KINDS = tuple(SPECS)
_FIGURE_KEYS = ("value", "source", "date", "assumption", "unit", "note")


def _figure_of(where: str, key: str, table: Mapping[str, Any]) -> Figure:
    unknown = sorted(set(table) - set(_FIGURE_KEYS))
    if unknown:
        raise field_error(where, f"{key}.{unknown[0]}", table[unknown[0]],
                          "allowed keys in a figure: value, source, date, assumption, note")
    try:
        return Figure(**{k: table[k] for k in ("source", "date", "assumption") if k in table})
    except FieldError as exc:
        value = dict(table) if exc.field == "source" and exc.value is None else exc.value
        raise FieldError(where, key if value is not exc.value else f"{key}.{exc.field}", value,
                         exc.allowed) from None


def parse_record(where: str, kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """One preset document (already parsed TOML) as record attributes, values as written.

    Checks what only the file has (the header, unknown and missing keys, each figure's source);
    the record checks the values when it is built.
    """
    header = data.get("preset")
    if not isinstance(header, Mapping):
        raise field_error(where, "preset", header, "a [preset] table with kind, name and description")
    if header.get("kind") != kind:
        raise field_error(where, "preset.kind", header.get("kind"), f"'{kind}' here (one of {', '.join(KINDS)})")
    name = header.get("name")
    if not isinstance(name, str) or not name:
        raise field_error(where, "preset.name", name, "a non-empty string")
    specs = SPECS[kind]
    known = {s.key for s in specs} | {"preset"}
    unknown = sorted(set(data) - known)
    if unknown:
        allowed = ", ".join(s.key for s in specs)
        raise field_error(where, unknown[0], data[unknown[0]], f"unknown field; allowed: {allowed}")
    attrs: dict[str, Any] = {"name": name, "description": str(header.get("description", ""))}
    sources: dict[str, Figure] = {}
    for spec in specs:
        if spec.key not in data:
            attrs[spec.attr] = spec.default
            continue
        raw = data[spec.key]
        if spec.is_figure:
            if not isinstance(raw, Mapping) or "value" not in raw:
                raise field_error(where, spec.key, raw, "a table with 'value' and 'source' or 'assumption'")
            sources[spec.key] = _figure_of(where, spec.key, raw)
            raw = raw["value"]
        attrs[spec.attr] = raw
    attrs["sources"] = sources
    return attrs


_R = Any


def _build(cls: Callable[..., _R], kind: str, where: str, attrs: dict[str, Any]) -> _R:
    """The record from ``attrs`` (fields left out are not passed); a bad or missing field is one line
    naming the file, the field, what is allowed and what the field means."""
    helps = {s.key: s.help for s in SPECS[kind]}
    try:
        return cls(**{k: v for k, v in attrs.items() if v is not None})
    except FieldError as exc:
        help_text = f" ({helps[exc.field]})" if exc.field in helps else ""
        raise FieldError(where, exc.field, exc.value, exc.allowed + help_text) from None


def build_fleet(where: str, data: Mapping[str, Any]) -> FleetPreset:
    attrs = parse_record(where, "fleet", data)
    host_iops, window = attrs.pop("host_iops"), attrs.pop("boot_window")
    if host_iops is not None and window is not None:
        raise UsageError(f"{where}: give exactly one of 'host_iops' (A) or 'boot_window' "
                         "(A = boot_ios / boot_window), not both")
    if window is not None:
        specs = {s.key: s for s in FLEET_SPECS}
        if attrs["boot_ios"] is None:
            raise field_error(where, "boot_ios", None, f"missing; required ({specs['boot_ios'].help})")
        checked = {}
        for key, value in (("boot_window", window), ("boot_ios", attrs["boot_ios"])):
            try:
                checked[key] = float(specs[key].parse(value))
            except ValueError as exc:
                raise field_error(where, key, value, f"{exc} ({specs[key].help})") from None
        host_iops = checked["boot_ios"] / checked["boot_window"]
    attrs["host_iops"] = host_iops
    fleet: FleetPreset = _build(FleetPreset, "fleet", where, attrs)
    return fleet


def build_array(where: str, data: Mapping[str, Any]) -> ArrayPreset:
    array: ArrayPreset = _build(ArrayPreset, "array", where, parse_record(where, "array", data))
    # A shipped or user array describes real hardware: the GI's parity group is part of the pool,
    # and one volume's processor is one of the array's.
    if array.gi_disks > array.disks:
        raise field_error(where, "gi_disks", array.gi_disks, f"at most disks ({array.disks:g})")
    if array.volume_iops_limit > array.processor_iops:
        raise field_error(where, "volume_iops_limit", array.volume_iops_limit, "at most processor_iops")
    return array


def build_function(where: str, data: Mapping[str, Any]) -> FunctionPreset:
    function: FunctionPreset = _build(FunctionPreset, "function", where, parse_record(where, "function", data))
    return function
