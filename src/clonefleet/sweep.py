"""Sweeps and the inverse questions a planner asks.

A sweep evaluates the model over a grid: fleet sizes T (rows) times the values of
one preset field (columns), vectorised in one pass per storage function, so a
million points take well under a second. The inverse questions: the largest T a
method carries on an array, and the fewest disks X that carry a target T.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clonefleet.errors import UsageError
from clonefleet.lifetime import NO_LIFETIME, Lifetime
from clonefleet.planner import MAX_VMS, Evaluation, evaluate, operable_count, plan, resolve_functions
from clonefleet.presets import ArrayPreset, FleetPreset, FunctionPreset, Method
from clonefleet.presets.schema import ARRAY_SPECS, FLEET_SPECS, Spec
from clonefleet.progress import Progress, no_progress
from clonefleet.units import UnitError, format_bytes

FloatArray = npt.NDArray[np.float64]
MAX_POINTS = 50_000_000
#: At most this many storms in one ``sweep --simulate`` (T's times IO paths, see
#: :mod:`clonefleet.sim.sweepstorms`): each is a whole boot storm, seconds to minutes of CPU; a
#: sweep of every T from 1 to 10,000 is the model's job, not the simulator's.
MAX_SWEEP_STORMS = 64


def parse_range(text: str, what: str = "--vms") -> npt.NDArray[np.int64]:
    """``START:STOP[:STEP]`` (inclusive) of whole numbers >= 1, or one number."""
    parts = text.split(":")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"{what} = {text!r}: whole numbers as START:STOP[:STEP], e.g. 1:10000") from None
    if len(numbers) == 1:
        numbers = [numbers[0], numbers[0]]
    if len(numbers) not in (2, 3):
        raise UsageError(f"{what} = {text!r}: START:STOP[:STEP], e.g. 1:10000 or 100:5000:100")
    start, stop, step = numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else 1
    if start < 1 or stop < start or step < 1:
        raise UsageError(f"{what} = {text!r}: need 1 <= START <= STOP and STEP >= 1")
    if stop > MAX_VMS:
        raise UsageError(f"{what} = {text!r}: fleets of at most {MAX_VMS:,} VMs")
    points = (stop - start) // step + 1
    if points > MAX_POINTS:
        raise UsageError(f"{what} = {text!r}: {points:,} fleet sizes, at most {MAX_POINTS:,}; give a larger STEP "
                         f"(START:STOP:STEP, e.g. {start}:{stop}:{-(-(stop - start) // 999_999)} for a million)")
    return np.arange(start, stop + 1, step, dtype=np.int64)


@dataclass(frozen=True)
class SweptParam:
    """One preset field swept over values (in the record's units: bytes, IOPS, ...)."""

    kind: str  # "fleet" or "array"
    key: str  # the TOML key
    attr: str  # the record attribute
    values: FloatArray


def _find_spec(name: str) -> tuple[str, Spec]:
    for kind, specs in (("fleet", FLEET_SPECS), ("array", ARRAY_SPECS)):
        for spec in specs:
            if name in (spec.key, spec.attr) and spec.key not in ("host_iops", "boot_window"):
                return kind, spec
    if name in ("host_iops", "A"):
        return "fleet", FLEET_SPECS[0]
    allowed = ", ".join(s.key for s in (*FLEET_SPECS, *ARRAY_SPECS) if s.key != "boot_window")
    raise UsageError(f"--param field {name!r} is not a fleet or array field; allowed: {allowed}")


def parse_param(text: str) -> SweptParam:
    """``FIELD=START:STOP[:COUNT]`` with the field's own units, e.g. ``disks=100:1000:10``."""
    if "=" not in text:
        raise UsageError(f"--param = {text!r}: FIELD=START:STOP[:COUNT], e.g. disks=100:1000:10")
    name, _, rng = text.partition("=")
    kind, spec = _find_spec(name.strip())
    parts = rng.split(":")
    if len(parts) not in (2, 3):
        raise UsageError(f"--param = {text!r}: FIELD=START:STOP[:COUNT], e.g. gi_used=5GiB:20GiB:16")
    try:
        start, stop = (float(spec.parse(p.strip() if not _is_number(p) else float(p))) for p in parts[:2])
    except (UnitError, ValueError) as exc:
        raise UsageError(f"--param {spec.key} = {rng!r}: {exc} ({spec.help})") from None
    try:
        count = int(parts[2]) if len(parts) == 3 else 100
    except ValueError:
        raise UsageError(f"--param {spec.key} = {rng!r}: COUNT must be a whole number, e.g. 100") from None
    if count < 1 or stop < start:
        raise UsageError(f"--param {spec.key} = {rng!r}: need START <= STOP and COUNT >= 1")
    if count > MAX_POINTS:
        raise UsageError(f"--param {spec.key} = {rng!r}: COUNT {count:,} is more than {MAX_POINTS:,} values")
    values = np.linspace(start, stop, count)
    if spec.key in ("disks", "gi_disks", "processors", "queue_depth", "boot_write_extents"):
        values = np.unique(np.round(values))
    return SweptParam(kind, spec.key, spec.attr, values)


def json_numbers(values: npt.NDArray[np.float64]) -> list[float | None]:
    """Values for JSON: null where no number of GIs carries a clone (infinite g and S)."""
    return [v if math.isfinite(v) else None for v in values.tolist()]


def exact_text(value: float) -> str:
    """A swept value for the CSV, exactly: bytes and disks as whole numbers, others as Python prints them."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**63 else repr(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def largest_vms(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset) -> int:
    """The largest T the array carries with ``function`` (Eq. 2), 0 when none."""
    ev = evaluate(fleet, array, function, 1)
    return int(operable_count(ev.max_vms)) if bool(ev.meets_requirement) else 0


def with_disks(array: ArrayPreset, disks: npt.ArrayLike) -> ArrayPreset:
    """The array with a pool of X = ``disks``; the GI's group is part of the pool, so X_g <= X.

    A GI volume cannot stripe over more disks than the pool holds: below the
    preset's ``gi_disks`` the GI's group shrinks with the pool (an all-flash array
    stripes every volume over all its drives). ``disks`` may be a number or an array.
    """
    x = np.asarray(disks, dtype=np.float64)
    changes: dict[str, Any] = {"disks": x if x.ndim else float(x)}
    if np.any(x < array.gi_disks):  # else X_g stays one number: S keeps its one column in a sweep of X
        gi = np.minimum(array.gi_disks, x)
        changes["gi_disks"] = gi if x.ndim else float(gi)
    return dataclasses.replace(array, **changes)


def fewest_disks(
    fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, vms: int
) -> tuple[int | None, str]:
    """The fewest pool disks X that carry ``vms`` VMs, or None with the reason when no X does.

    Every other field stays the preset's, except that the GI's group shrinks with the
    pool (:func:`with_disks`). The answer is the boundary of the planner's own verdict:
    X disks meet the requirement and X - 1 do not (more disks never carry fewer VMs).
    """
    by_processors = array.processor_iops / fleet.host_iops
    if vms > operable_count(by_processors):
        return None, f"the array's processors carry at most {math.floor(by_processors)} VMs whatever X"

    def holds(x: int) -> bool:
        return bool(evaluate(fleet, with_disks(array, float(x)), function, vms).meets_requirement)

    backend_iops = float(evaluate(fleet, array, function, vms).backend_iops_per_vm)
    by_iops = max(1, math.ceil(vms * backend_iops / array.disk_iops - 1e-9))
    # Enough disks for T*B IOPS with the GI's whole preset group: holds unless one GI carries no clone.
    high = max(by_iops, int(array.gi_disks))
    if not holds(high):
        return None, "one GI carries no clone at all on this array (N_v or the GI's disks too small)"
    # T*B/M is the answer up to rounding: check it and its neighbour, bisect only when they disagree.
    if by_iops < high and not holds(by_iops):
        low = by_iops
    else:
        high, low = by_iops, by_iops - 1
        if low >= 1 and holds(low):
            high, low = low, 0
    while high - low > 1:  # holds(high), not holds(low); no disks carry nothing
        middle = (low + high) // 2
        if holds(middle):
            high = middle
        else:
            low = middle
    # A clone's load on the pool (B) is never below its load on its GI (B_gi), so the disks
    # that carry T*B IOPS always carry one clone per GI too: the disks' IOPS decide X.
    reason = "disks carry T*B IOPS"
    if high < array.gi_disks and function.method is Method.SNAPSHOT:
        reason += f"; the GI's group shrinks with the pool to X_g = {high} (preset gi_disks = {array.gi_disks:g})"
    return high, reason


@dataclass
class SweepResult:
    fleet: str
    array: str
    vms: npt.NDArray[np.int64]
    param: SweptParam | None
    functions: list[FunctionPreset]
    grids: dict[str, Evaluation]  # function -> evaluation over (T, param)
    baseline: dict[str, Evaluation]  # function -> evaluation over T at the presets' own values
    largest: dict[str, int]
    bottleneck_at_largest: dict[str, str]
    consumed_at_largest: dict[str, float | None]
    fewest: dict[str, tuple[int | None, str]]
    target: int | None
    array_disks: float | None = None  # X of the array preset: the disks the series over T are drawn at
    life: Lifetime = NO_LIFETIME  # the horizon: S is also given at its peak over it
    # per function, S at its peak over the horizon at the largest T: (raw, stored)
    peak_at_largest: dict[str, tuple[float | None, float | None]] = dataclasses.field(default_factory=dict)
    # with --simulate: the storms along the sweep (clonefleet.sim.sweepstorms.StormPoint.to_dict) and how
    # they were run (seed, IOs per boot, slack, arrivals)
    storms: list[dict[str, object]] = dataclasses.field(default_factory=list)
    storm_settings: dict[str, object] = dataclasses.field(default_factory=dict)

    @property
    def points(self) -> int:
        per = len(self.vms) * (len(self.param.values) if self.param else 1)
        return per * len(self.functions)

    def method_rows(self) -> list[dict[str, Any]]:
        """Per storage function: the largest T, its bottleneck and S, and the inverse answer."""
        methods = []
        for f in self.functions:
            row: dict[str, Any] = {
                "function": f.name,
                "method": f.method.value,
                "max_vms": self.largest[f.name],
                "bottleneck": self.bottleneck_at_largest[f.name],
                "consumed_bytes_at_max": self.consumed_at_largest[f.name],
                "target_vms": self.target,
                "fewest_disks": self.fewest[f.name][0] if self.target else None,
                "fewest_disks_reason": self.fewest[f.name][1] if self.target else None,
            }
            if self.life.days > 0:
                row["peak_consumed_bytes_at_max"], row["peak_reduced_consumed_bytes_at_max"] = \
                    self.peak_at_largest[f.name]
            if self.param is not None:
                grid = self.grids[f.name]
                row["max_vms_by_param"] = operable_count(grid.max_vms[0]).astype(int).tolist()
            methods.append(row)
        return methods

    def summary(self, files: Sequence[Path] = ()) -> dict[str, object]:
        doc: dict[str, object] = {
            "fleet": self.fleet,
            "array": self.array,
            "vms": {"start": int(self.vms[0]), "stop": int(self.vms[-1]), "count": len(self.vms)},
            "param": None if self.param is None else {"field": self.param.key,
                                                      "values": self.param.values.tolist()},
            "points": self.points,
            "methods": self.method_rows(),
            "files": [str(p) for p in files],
        }
        if self.life.days > 0:
            doc["lifetime"] = self.life.to_dict()
        if self.storm_settings:
            doc["simulation"] = {**self.storm_settings, "storms": self.storms}
        return doc


#: Fields that must stay at most another field of the same record: (kind, smaller, larger).
_AT_MOST: tuple[tuple[str, str, str], ...] = (
    ("fleet", "gi_used", "gi_size"),
    ("fleet", "boot_write_span", "gi_size"),
    ("fleet", "boot_read_span", "gi_size"),
    ("fleet", "boot_write_bytes", "boot_write_span"),
    ("fleet", "daily_write_span", "gi_size"),
    ("fleet", "swap_size", "gi_size"),
    ("fleet", "daily_write_bytes", "daily_write_span"),
    ("array", "gi_disks", "disks"),
    ("array", "volume_iops_limit", "processor_iops"),
)


def _spec(kind: str, key: str) -> Spec:
    return next(s for s in (FLEET_SPECS if kind == "fleet" else ARRAY_SPECS) if s.key == key)


def check_param(fleet: FleetPreset, array: ArrayPreset, param: SweptParam) -> None:
    """Refuse swept values that no preset file could hold (e.g. gi_size below gi_used), in one line.

    Sweeping ``disks`` below ``gi_disks`` is allowed: the GI's group shrinks with the pool
    (:func:`with_disks`).
    """
    records: dict[str, Any] = {"fleet": fleet, "array": array}
    for kind, smaller, larger in _AT_MOST:
        if kind != param.kind or param.key not in (smaller, larger) or (param.key, smaller) == ("disks", "gi_disks"):
            continue
        other = larger if param.key == smaller else smaller
        fixed = float(getattr(records[kind], _spec(kind, other).attr))
        bad = param.values[param.values > fixed] if param.key == smaller else param.values[param.values < fixed]
        if bad.size:
            relation = "at most" if param.key == smaller else "at least"
            show = format_bytes if param.attr.endswith("_bytes") else (lambda v: f"{v:.6g}")
            raise UsageError(f"--param {param.key} = {show(float(bad[0]))}: {relation} {other} of the {kind} "
                             f"({show(fixed)}); narrow the range")
    if fleet.boot_write_regions and param.key in ("boot_write_bytes", "boot_write_extents", "boot_write_span"):
        raise UsageError(f"--param {param.key}: fleet '{fleet.name}' gives its writes per region (derived from a "
                         "trace), so W, n and R are its regions' sums; sweep another figure, or a fleet without "
                         "boot_write_regions")
    if param.key in ("boot_write_bytes", "boot_write_extents"):
        w = param.values if param.key == "boot_write_bytes" else np.asarray(fleet.boot_write_bytes)
        n = param.values if param.key == "boot_write_extents" else np.asarray(fleet.boot_write_extents)
        if np.any((w > 0) & (n < 1)):
            raise UsageError(f"--param {param.key}: boot_write_extents must be at least 1 where the boot writes "
                             "(boot_write_bytes > 0)")


def sweep_grids(
    fleet: FleetPreset, array: ArrayPreset, functions: Sequence[FunctionPreset],
    vms: npt.ArrayLike, param: SweptParam | None = None, life: Lifetime = NO_LIFETIME,
) -> dict[str, Evaluation]:
    """Evaluate each function over T (rows) x the swept field's values (columns), in one pass each.

    Every field of every evaluation has the whole grid's shape, (len(vms), len(values)), or
    (len(vms),) without a swept field, whichever fields the swept one moves.
    """
    t = np.asarray(vms, float)
    if param is None:
        return {f.name: evaluate(fleet, array, f, t, life) for f in functions}
    check_param(fleet, array, param)
    shape = (t.size, param.values.size)
    t = t[:, None]
    column = param.values[None, :]
    # The model's functions broadcast, so a record may carry an array in place of a number.
    changes: dict[str, Any] = {param.attr: column}
    if param.key == "disks":
        array = with_disks(array, column)
    elif param.kind == "fleet":
        fleet = dataclasses.replace(fleet, **changes)
    else:
        array = dataclasses.replace(array, **changes)
    return {f.name: _whole(evaluate(fleet, array, f, t, life), shape) for f in functions}


def _whole(ev: Evaluation, shape: tuple[int, ...]) -> Evaluation:
    """Every field of ``ev`` with the grid's ``shape`` (read-only views: nothing is copied)."""
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(ev):
        value = getattr(ev, field.name)
        fields[field.name] = np.broadcast_to(value, (value.shape[0], *shape) if field.name == "utilisation"
                                             else shape)
    return Evaluation(**fields)


def run_sweep(
    fleet: FleetPreset,
    array: ArrayPreset,
    vms: npt.NDArray[np.int64],
    functions: Sequence[FunctionPreset | str] | None = None,
    param: SweptParam | None = None,
    target: int | None = None,
    progress: Progress = no_progress,
    life: Lifetime = NO_LIFETIME,
) -> SweepResult:
    """Sweep S and the requirement; answer the inverse questions at the presets' own values.

    ``progress`` hears "sweep: evaluate the grid" and "sweep: largest T and fewest disks", each
    as steps done of the storage functions (the grid is fast; writing it is what takes time).
    """
    resolved = resolve_functions(functions)
    points = len(vms) * (len(param.values) if param else 1) * len(resolved)
    if points > MAX_POINTS:
        raise UsageError(f"the sweep has {points:,} points; at most {MAX_POINTS:,}: narrow --vms or --param")
    n = len(resolved)
    progress("sweep: evaluate the grid", 0, n)
    grids: dict[str, Evaluation] = {}
    baseline: dict[str, Evaluation] = {}
    for i, f in enumerate(resolved):
        grids.update(sweep_grids(fleet, array, [f], vms, param, life))
        baseline.update(grids if param is None else sweep_grids(fleet, array, [f], vms, life=life))
        progress("sweep: evaluate the grid", i + 1, n)
    largest, bottleneck, consumed, peak = {}, {}, {}, {}
    fewest: dict[str, tuple[int | None, str]] = {}
    for i, f in enumerate(resolved):
        largest[f.name] = largest_vms(fleet, array, f)
        mp = plan(fleet, array, max(1, largest[f.name]), [f], life).methods[0]
        bottleneck[f.name], consumed[f.name] = mp.bottleneck, mp.consumed_bytes
        peak[f.name] = (mp.peak_consumed_bytes, mp.peak_reduced_consumed_bytes)
        fewest[f.name] = fewest_disks(fleet, array, f, target) if target else (None, "")
        progress("sweep: largest T and fewest disks", i + 1, n)
    return SweepResult(fleet.name, array.name, vms, param, resolved, grids, baseline, largest,
                       bottleneck, consumed, fewest, target, float(array.disks), life, peak)


__all__ = [
    "SweepResult",
    "SweptParam",
    "fewest_disks",
    "largest_vms",
    "parse_param",
    "parse_range",
    "run_sweep",
    "sweep_grids",
]
