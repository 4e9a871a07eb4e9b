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
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clonefleet.errors import UsageError, field_error
from clonefleet.units import UnitError, parse_bytes, parse_seconds


class Method(enum.StrEnum):
    """How a clone is made: the paper's three patterns."""

    FULL = "full"
    THIN = "thin"
    SNAPSHOT = "snapshot"


class Mirror(enum.StrEnum):
    """What a thin (capacity-virtualization) mirror holds."""

    PAPER = "paper"  # only what the clone newly writes
    PHYSICAL = "physical"  # a copy of the GI's used data plus the new writes


@dataclass(frozen=True)
class Figure:
    """Where one preset figure comes from."""

    source: str | None = None
    date: str | None = None
    assumption: str | None = None

    def describe(self) -> str:
        if self.source:
            return f"{self.source}" + (f" ({self.date})" if self.date else "")
        return f"assumption: {self.assumption}"


@dataclass(frozen=True)
class FleetPreset:
    """One kind of VM fleet and its boot workload (per VM)."""

    name: str
    description: str
    host_iops: float  # A, IO load one VM puts on the array during boot [IOPS]
    boot_ios: float  # IOs one boot issues
    read_fraction: float  # r
    gi_virtual_bytes: float  # G, virtual size of the GI
    gi_used_bytes: float  # G_used, data the GI really holds
    boot_write_bytes: float  # W
    boot_write_extents: float  # n
    boot_write_span_bytes: float  # R
    boot_read_span_bytes: float  # part of the GI a boot reads
    read_io_bytes: float  # mean size of one read IO
    queue_depth: float  # IOs one VM keeps outstanding while booting
    sources: Mapping[str, Figure] = field(default_factory=dict, compare=False, repr=False)

    @property
    def boot_window_s(self) -> float:
        """Time one boot takes at its load A: boot IOs / A [s]."""
        return self.boot_ios / self.host_iops


@dataclass(frozen=True)
class ArrayPreset:
    """A storage array as the model sees it."""

    name: str
    description: str
    processor_iops: float  # N
    processors: float  # processors that share N; each volume is owned by one
    volume_iops_limit: float  # N_v
    disk_iops: float  # M
    disks: float  # X
    gi_disks: float  # X_g, disks under one GI volume
    raid_write_penalty: float  # p
    cache_hit_shared: float  # h_s
    cache_hit_private: float  # h_p
    cow_read_fraction: float  # phi
    cache_bytes: float  # array cache (for the simulator)
    sources: Mapping[str, Figure] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class FunctionPreset:
    """A storage function (how clones are made) and its allocation granularity."""

    name: str
    description: str
    method: Method
    unit_bytes: float  # u, allocation granularity
    mirror: Mirror  # meaningful for thin only
    clone_overhead_bytes: float  # metadata a fresh clone costs
    max_clones_per_gi: float  # the function's own limit (inf when none)
    table_bytes: float  # metadata a clone allocates for each table_coverage of space it writes (qcow2 L2)
    table_coverage_bytes: float  # virtual space one such table maps (0 when the function has none)
    sources: Mapping[str, Figure] = field(default_factory=dict, compare=False, repr=False)


# --- field specifications ------------------------------------------------------------------

Parser = Callable[[object], Any]


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnitError("a number")
    if not math.isfinite(value):
        raise UnitError("a finite number")
    return float(value)


def _positive(parse: Parser) -> Parser:
    def check(value: object) -> float:
        number = float(parse(value))
        if not number > 0:
            raise UnitError("a value greater than 0")
        return number

    return check


def _non_negative(parse: Parser) -> Parser:
    def check(value: object) -> float:
        number = float(parse(value))
        if number < 0:
            raise UnitError("a value of 0 or more")
        return number

    return check


def _fraction(value: object) -> float:
    number = _number(value)
    if not 0.0 <= number <= 1.0:
        raise UnitError("a fraction between 0 and 1")
    return number


def _whole_positive(value: object) -> float:
    number = float(_positive(_number)(value))
    if number != int(number):
        raise UnitError("a whole number greater than 0")
    return number


def _enum(kind: type[enum.StrEnum]) -> Parser:
    def parse(value: object) -> enum.StrEnum:
        allowed = ", ".join(m.value for m in kind)
        if not isinstance(value, str) or value not in {m.value for m in kind}:
            raise UnitError(f"one of {allowed}")
        return kind(value)

    return parse


@dataclass(frozen=True)
class Spec:
    key: str  # name in the TOML file
    attr: str  # name on the record
    parse: Parser
    help: str
    default: object = None
    required: bool = True
    is_figure: bool = True  # needs a source or an assumption


_bytes_pos = _positive(parse_bytes)
_bytes_nonneg = _non_negative(parse_bytes)

FLEET_SPECS: tuple[Spec, ...] = (
    Spec("host_iops", "host_iops", _positive(_number),
         "A: IO load one VM puts on the array while booting [IOPS]", None, False),
    Spec("boot_window", "boot_window", _positive(parse_seconds),
         "how long one boot lasts (A = boot_ios / boot_window)", None, False),
    Spec("boot_ios", "boot_ios", _positive(_number), "IOs one boot issues"),
    Spec("read_fraction", "read_fraction", _fraction, "r: share of boot IOs that are reads"),
    Spec("gi_size", "gi_virtual_bytes", _bytes_pos, "G: virtual size of the golden image"),
    Spec("gi_used", "gi_used_bytes", _bytes_pos, "G_used: data the golden image really holds"),
    Spec("boot_write_bytes", "boot_write_bytes", _bytes_nonneg, "W: bytes one boot writes"),
    Spec("boot_write_extents", "boot_write_extents", _non_negative(_number), "n: extents the boot writes"),
    Spec("boot_write_span", "boot_write_span_bytes", _bytes_pos, "R: address span the writes fall in"),
    Spec("boot_read_span", "boot_read_span_bytes", _bytes_pos, "part of the GI a boot reads"),
    Spec("read_io_size", "read_io_bytes", _bytes_pos, "mean size of one read IO"),
    Spec("queue_depth", "queue_depth", _whole_positive, "IOs one VM keeps outstanding"),
)

ARRAY_SPECS: tuple[Spec, ...] = (
    Spec("processor_iops", "processor_iops", _positive(_number), "N: IO performance of the array's processors [IOPS]"),
    Spec("processors", "processors", _whole_positive, "processors sharing N; each volume is owned by one"),
    Spec("volume_iops_limit", "volume_iops_limit", _positive(_number), "N_v: IOPS one volume's processor can process"),
    Spec("disk_iops", "disk_iops", _positive(_number), "M: IO performance of one disk [IOPS]"),
    Spec("disks", "disks", _whole_positive, "X: disks in the pool"),
    Spec("gi_disks", "gi_disks", _whole_positive, "X_g: disks under one GI volume (its parity group)"),
    Spec("raid_write_penalty", "raid_write_penalty", _positive(_number), "p: back-end IOs per host write"),
    Spec("cache_hit_shared", "cache_hit_shared", _fraction, "h_s: read hit ratio on data shared by clones"),
    Spec("cache_hit_private", "cache_hit_private", _fraction, "h_p: read hit ratio on private data"),
    Spec("cow_read_fraction", "cow_read_fraction", _fraction,
         "phi: share of snapshot writes that read old GI data first"),
    Spec("cache_size", "cache_bytes", _bytes_nonneg, "array cache size"),
)

FUNCTION_SPECS: tuple[Spec, ...] = (
    Spec("method", "method", _enum(Method), "full, thin or snapshot", is_figure=False),
    Spec("unit", "unit_bytes", _bytes_pos, "u: allocation granularity"),
    Spec("mirror", "mirror", _enum(Mirror), "thin only: paper (new writes only) or physical (GI data too)",
         Mirror.PAPER, False, is_figure=False),
    Spec("clone_overhead", "clone_overhead_bytes", _bytes_nonneg, "metadata a fresh clone costs", 0.0, False),
    Spec("max_clones_per_gi", "max_clones_per_gi", _whole_positive, "clones one source may have", math.inf, False),
    Spec("table_size", "table_bytes", _bytes_nonneg, "metadata table a write allocates (qcow2: one L2 table)",
         0.0, False),
    Spec("table_coverage", "table_coverage_bytes", _bytes_nonneg, "virtual space one metadata table maps",
         0.0, False),
)

SPECS: dict[str, tuple[Spec, ...]] = {"fleet": FLEET_SPECS, "array": ARRAY_SPECS, "function": FUNCTION_SPECS}
KINDS = tuple(SPECS)


def _figure_of(where: str, key: str, table: Mapping[str, Any]) -> Figure:
    source, assumption = table.get("source"), table.get("assumption")
    if not source and not assumption:
        raise field_error(where, key, dict(table), "every figure needs a 'source' (with a 'date') or an 'assumption'")
    for name in ("source", "date", "assumption"):
        if name in table and not isinstance(table[name], str):
            raise field_error(where, f"{key}.{name}", table[name], "a string")
    unknown = set(table) - {"value", "source", "date", "assumption", "unit", "note"}
    if unknown:
        raise field_error(where, f"{key}.{sorted(unknown)[0]}", table[sorted(unknown)[0]],
                          "allowed keys in a figure: value, source, date, assumption, note")
    return Figure(source=table.get("source"), date=table.get("date"), assumption=table.get("assumption"))


def parse_record(where: str, kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one preset document (already parsed TOML) into record attributes."""
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
    # Present fields first, so a typo in a value is reported before a field left out.
    for spec in sorted(specs, key=lambda sp: sp.key not in data):
        raw = data.get(spec.key, dataclasses.MISSING)
        if raw is dataclasses.MISSING:
            if spec.required:
                raise field_error(where, spec.key, None, f"missing; required ({spec.help})")
            attrs[spec.attr] = spec.default
            continue
        if spec.is_figure:
            if not isinstance(raw, Mapping) or "value" not in raw:
                raise field_error(where, spec.key, raw, "a table with 'value' and 'source' or 'assumption'")
            sources[spec.key] = _figure_of(where, spec.key, raw)
            raw = raw["value"]
        try:
            attrs[spec.attr] = spec.parse(raw)
        except UnitError as exc:
            raise field_error(where, spec.key, raw, f"{exc} ({spec.help})") from None
    attrs["sources"] = sources
    return attrs


def build_fleet(where: str, data: Mapping[str, Any]) -> FleetPreset:
    attrs = parse_record(where, "fleet", data)
    host_iops, window = attrs.pop("host_iops"), attrs.pop("boot_window")
    if (host_iops is None) == (window is None):
        raise UsageError(f"{where}: give exactly one of 'host_iops' (A) or 'boot_window' "
                         "(A = boot_ios / boot_window)")
    attrs["host_iops"] = host_iops if host_iops is not None else attrs["boot_ios"] / window
    fleet = FleetPreset(**attrs)
    if fleet.gi_used_bytes > fleet.gi_virtual_bytes:
        raise field_error(where, "gi_used", fleet.gi_used_bytes, "at most gi_size")
    if fleet.boot_write_span_bytes > fleet.gi_virtual_bytes:
        raise field_error(where, "boot_write_span", fleet.boot_write_span_bytes, "at most gi_size")
    if fleet.boot_read_span_bytes > fleet.gi_virtual_bytes:
        raise field_error(where, "boot_read_span", fleet.boot_read_span_bytes, "at most gi_size")
    if fleet.boot_write_bytes > fleet.boot_write_span_bytes:
        raise field_error(where, "boot_write_bytes", fleet.boot_write_bytes, "at most boot_write_span")
    if fleet.boot_write_bytes > 0 and fleet.boot_write_extents < 1:
        raise field_error(where, "boot_write_extents", fleet.boot_write_extents, "at least 1 when the boot writes")
    return fleet


def build_array(where: str, data: Mapping[str, Any]) -> ArrayPreset:
    array = ArrayPreset(**parse_record(where, "array", data))
    if array.gi_disks > array.disks:
        raise field_error(where, "gi_disks", array.gi_disks, f"at most disks ({array.disks:g})")
    if array.volume_iops_limit > array.processor_iops:
        raise field_error(where, "volume_iops_limit", array.volume_iops_limit, "at most processor_iops")
    return array


def build_function(where: str, data: Mapping[str, Any]) -> FunctionPreset:
    function = FunctionPreset(**parse_record(where, "function", data))
    if (function.table_bytes > 0) != (function.table_coverage_bytes > 0):
        raise field_error(where, "table_size", function.table_bytes,
                          "give both table_size and table_coverage, or neither")
    return function
