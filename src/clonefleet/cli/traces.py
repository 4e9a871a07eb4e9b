"""A fleet derived from a trace, for the commands that take one (presets derive, plan, simulate)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from clonefleet.errors import UsageError
from clonefleet.presets import resolve_trace
from clonefleet.presets.derive import DerivedFleet, derive_fleet, trace_sha256
from clonefleet.units import parse_bytes, parse_seconds


def derive_from_trace(trace: Path, trace_format: str, name: str | None, gi_size: str | None, gi_used: str | None,
            boot_window: str | None = None) -> DerivedFleet:
    """Read the trace (a shipped name or a path; one line for a bad one) and derive its fleet, as
    ``presets derive`` writes it and ``plan --trace`` and ``simulate --trace`` use it."""
    from clonefleet.sim.traceio import read_trace

    sizes: dict[str, float | None] = {}
    for flag, text in (("--gi-size", gi_size), ("--gi-used", gi_used)):
        try:
            sizes[flag] = None if text is None else float(parse_bytes(text))
        except ValueError as exc:
            raise UsageError(f"{flag} = {text!r}: {exc}") from None
        if sizes[flag] is not None and not sizes[flag] > 0:  # type: ignore[operator]
            raise UsageError(f"{flag} = {text!r}: a size greater than 0, e.g. 20GiB")
    window = None
    if boot_window is not None:
        try:
            window = parse_seconds(boot_window)
        except ValueError as exc:
            raise UsageError(f"--boot-window = {boot_window!r}: {exc}") from None
        if not window > 0:
            raise UsageError(f"--boot-window = {boot_window!r}: a duration greater than 0, e.g. 30s")
    from clonefleet.guest.capture import capture_note

    trace = resolve_trace(trace)
    parsed = read_trace(trace, trace_format)
    label = str(trace)
    sha256 = trace_sha256(trace)
    stem = trace.name.removesuffix(".gz").rsplit(".", 1)[0] if "." in trace.name.removesuffix(".gz") else trace.name
    return derive_fleet(parsed, name=name or (stem or "derived"), source_label=label,
                        sha256=sha256, gi_virtual_bytes=sizes["--gi-size"],
                        gi_used_bytes=sizes["--gi-used"], boot_window_s=window, date=date.today().isoformat(),
                        rate_note=capture_note(trace, sha256) if trace.is_file() else "")
