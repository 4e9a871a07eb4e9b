"""Each preset figure as a person reads it: its value in human units beside its source or assumption.

The records hold bytes, seconds and IOPS; this is the edge that shows them again as GiB, s,
IOPS and %, for ``clonefleet presets show`` and the assumptions a plan lists.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from clonefleet.presets.schema import SPECS, ArrayPreset, FleetPreset, FunctionPreset
from clonefleet.units import format_bytes

Preset = FleetPreset | ArrayPreset | FunctionPreset

#: The unit of every figure key (TOML name); "bytes" are shown as KiB..TiB, fractions as %.
UNITS: dict[str, str] = {
    # fleet
    "host_iops": "IOPS", "boot_window": "s", "boot_ios": "IOs", "read_fraction": "fraction",
    "gi_size": "bytes", "gi_used": "bytes", "boot_write_bytes": "bytes", "boot_write_extents": "extents",
    "boot_write_span": "bytes", "boot_read_span": "bytes", "read_io_size": "bytes", "queue_depth": "IOs",
    "boot_write_regions": "regions", "daily_write_bytes": "bytes", "daily_write_extents": "extents",
    "daily_write_span": "bytes", "swap_size": "bytes",
    # array
    "processor_iops": "IOPS", "processors": "processors", "volume_iops_limit": "IOPS", "disk_iops": "IOPS",
    "disks": "disks", "gi_disks": "disks", "raid_write_penalty": "disk IOs per write",
    "cache_hit_shared": "fraction", "cache_hit_private": "fraction", "cow_read_fraction": "fraction",
    "cache_size": "bytes", "dedup_gi": "ratio", "dedup_clone": "ratio", "compression_gi": "ratio",
    "compression_clone": "ratio",
    # function
    "unit": "bytes", "clone_overhead": "bytes", "max_clones_per_gi": "clones", "table_size": "bytes",
    "table_coverage": "bytes",
}


def kind_of(record: Preset) -> str:
    """``fleet``, ``array`` or ``function``."""
    return {FleetPreset: "fleet", ArrayPreset: "array", FunctionPreset: "function"}[type(record)]


def figure_value(record: Preset, key: str) -> float:
    """The value of figure ``key`` in the record's units (bytes, s, IOPS, a fraction, a count)."""
    if key == "boot_window" and isinstance(record, FleetPreset):
        return record.boot_window_s
    if key == "boot_write_regions" and isinstance(record, FleetPreset):
        return float(len(record.boot_write_regions))
    attr = next(s.attr for s in SPECS[kind_of(record)] if s.key == key)
    return float(getattr(record, attr))


def format_figure(key: str, value: float) -> str:
    """``value`` of figure ``key`` in human units: ``27 GiB``, ``150 s``, ``467 IOPS``, ``84 %``."""
    unit = UNITS.get(key, "")
    if math.isinf(value):
        return "no limit"
    if unit == "bytes":
        return format_bytes(value)
    if unit == "fraction":
        return f"{100 * value:.4g} %"
    if unit == "ratio":
        return f"{value:.4g}:1"
    number = f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:.3g}"
    return f"{number} {unit}"


@dataclass(frozen=True)
class FigureView:
    """One figure of one preset, shown: value in the record's unit and as text, where it comes from."""

    preset: str  # the preset's name
    kind: str  # fleet, array or function
    key: str  # TOML name, e.g. gi_used
    value: float  # bytes, s, IOPS, a fraction (0-1) or a count
    unit: str  # of value: bytes, s, IOPS, fraction, disks, ...
    text: str  # value in human units, e.g. "27 GiB"
    source: str | None
    date: str | None
    assumption: str | None
    rows: tuple[tuple[float, ...], ...] | None = None  # a figure that is a table (boot_write_regions): its rows

    @property
    def assumed(self) -> bool:
        """True when no source backs the figure: the figure to measure first."""
        return not self.source

    @property
    def origin(self) -> str:
        """The source (with its date) or ``assumption: ...``."""
        if self.source:
            return self.source + (f" ({self.date})" if self.date else "")
        return f"assumption: {self.assumption}"

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        if doc["rows"] is None:  # only a table figure has rows
            del doc["rows"]
        return doc


def figures_of(record: Preset) -> list[FigureView]:
    """Every figure the record's file gives, in the file format's order, with value and source."""
    kind = kind_of(record)
    views = []
    for spec in SPECS[kind]:
        figure = record.sources.get(spec.key)
        if figure is None:
            continue
        value = figure_value(record, spec.key)
        rows = record.boot_write_regions if isinstance(record, FleetPreset) and spec.key == "boot_write_regions" \
            else None
        views.append(FigureView(record.name, kind, spec.key, value, UNITS.get(spec.key, ""),
                                format_figure(spec.key, value), figure.source, figure.date, figure.assumption,
                                rows))
    if isinstance(record, FleetPreset) and "host_iops" not in record.sources:
        # The file gives the boot window; the model is built on A, the load it implies: shown beside it.
        a = float(record.host_iops)
        views.append(FigureView(record.name, kind, "host_iops", a, UNITS["host_iops"], format_figure("host_iops", a),
                                "derived: boot_ios / boot_window, the load A one booting VM puts on the array",
                                None, None))
    return views
