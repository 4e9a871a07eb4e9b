"""A scenario: a trace on an array with a storage function, validated whole before it runs.

A :class:`Scenario` is a record that validates itself (:mod:`clonefleet.records`):
its numbers and the checks across its parts (g against the method and the VMs, the
RAID penalty against the disks) run whenever one is built, also by
``dataclasses.replace``. :func:`build_scenario` adds the trace's own checks (one
pass over its arrays) and the defaults from the presets. Every refusal is a
:class:`clonefleet.errors.UsageError` with one line naming the field, the value
and what is allowed; a :class:`Scenario` that exists is runnable by both engines.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Self

import numba
import numpy as np
import numpy.typing as npt
from pydantic import PlainValidator, model_validator
from pydantic.dataclasses import dataclass as record_dataclass

from clonefleet.errors import FieldError, UsageError, field_error
from clonefleet.presets import ArrayPreset, FleetPreset, FunctionPreset, Method
from clonefleet.records import MAX_COUNT, RECORD_CONFIG, cross_field, quantity, record, whole_number
from clonefleet.sim.trace import READ, WRITE, Arrivals, IoTable, Trace
from clonefleet.units import MAX_SECONDS, MIN_SECONDS

FloatArray = npt.NDArray[np.float64]

DEFAULT_CACHE_BLOCK_BYTES = 4096
#: Utilisation is reported in this many bins per nominal boot window (boot_ios / A).
BINS_PER_WINDOW = 200
MAX_CACHE_BLOCK_BYTES = 1 << 30

def cache_slots(array: ArrayPreset, block_bytes: int = DEFAULT_CACHE_BLOCK_BYTES) -> int:
    """Blocks of ``block_bytes`` the array's cache holds: the LRU's slots."""
    return int(array.cache_bytes // block_bytes)



def _cache_block(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or \
            not 512 <= int(value) <= MAX_CACHE_BLOCK_BYTES or int(value) & (int(value) - 1):
        raise ValueError("a power of two of at least 512 (and at most 1 GiB)")
    return int(value)


def _seed(value: object) -> int | None:
    return None if value is None else int(whole_number(0, 2**63 - 1)(value))


def _service(value: object) -> FloatArray | None:
    if value is not None and not isinstance(value, np.ndarray):
        raise ValueError("an array of service times (3, IOs) or None")
    return value


def _whole_if_float(value: object) -> object:
    """A float that holds a whole number (a preset's q = 4.0) as that int; anything else as it is."""
    if isinstance(value, float | np.floating) and math.isfinite(value) and value == int(value):
        return int(value)
    return value


_bin_check = quantity(MIN_SECONDS, MAX_SECONDS, "a time from 1 ns to 1e9 s")
_vms_check = whole_number(1, MAX_COUNT, f"a whole number from 1 to {MAX_COUNT:,}")


@record("scenario")
@record_dataclass(frozen=True, eq=False, config=RECORD_CONFIG)
class Scenario:
    """Everything one simulation run needs. Seconds, bytes, IOPS.

    ``golden_images`` g: snapshot clones are spread over g GIs round robin (VM v
    on GI v mod g); full and thin clones are private copies (g = 1, the GI is
    never read during the storm). ``queue_depth`` q applies to closed-loop
    traces. ``service_s`` optionally gives each IO its own service time at the
    volume, the processor and the disk (shape (3, IOs); queueing-theory checks
    use it for exponential service), otherwise service is deterministic: 1/N_v,
    processors/N and 1/M.
    """

    trace: Trace
    fleet: FleetPreset
    array: ArrayPreset
    function: FunctionPreset
    golden_images: Annotated[int, PlainValidator(whole_number(1, MAX_COUNT))]
    queue_depth: Annotated[int, PlainValidator(whole_number(1, MAX_COUNT))]
    cache_block_bytes: Annotated[int, PlainValidator(_cache_block)]
    util_bin_s: Annotated[float, PlainValidator(_bin_check)]
    seed: Annotated[int | None, PlainValidator(_seed)]
    service_s: Annotated[FloatArray | None, PlainValidator(_service)] = None

    @property
    def vms(self) -> int:
        return self.trace.vms

    @property
    def arrivals(self) -> Arrivals:
        return self.trace.arrivals

    @property
    def method(self) -> Method:
        return self.function.method

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        t, g, function, array = self.trace.vms, self.golden_images, self.function, self.array
        if function.method is not Method.SNAPSHOT and g != 1:
            raise cross_field("golden_images", g, f"1 for a {function.method.value} clone (it never reads the GI); "
                              "more GIs help snapshots")
        if g > t:
            raise cross_field("golden_images", g, f"at most the {t} VMs")
        if function.method is Method.SNAPSHOT and math.ceil(t / g) > function.max_clones_per_gi:
            raise cross_field("golden_images", g,
                              f"enough GIs that each has at most {function.max_clones_per_gi:g} clones "
                              f"({function.name}'s limit); {t} VMs need at least "
                              f"{math.ceil(t / function.max_clones_per_gi)}")
        p = array.raid_write_penalty
        if p != int(p) or p > array.disks:
            raise cross_field("raid_write_penalty", p, f"a whole number, at most the {array.disks:g} disks of array "
                              f"'{array.name}' (each back-end write of one host write goes to a different disk)")
        if function.unit_bytes != int(function.unit_bytes):
            raise cross_field("unit", function.unit_bytes, f"a whole number of bytes (function '{function.name}')")
        shape = None if self.service_s is None else self.service_s.shape
        if self.service_s is not None and (shape != (3, self.trace.ios) or not np.all(np.isfinite(self.service_s))
                                           or np.any(self.service_s < 0)):
            raise cross_field("service_s", shape,
                              f"finite times >= 0 s of shape (3, {self.trace.ios}): volume, processor, disk per IO")
        return self


@numba.njit(cache=True, nogil=True)
def _first_bad_ios(op: npt.NDArray[np.int8], offset: npt.NDArray[Any], length: npt.NDArray[Any], scale: int,
                   image_bytes: int) -> tuple[int, int, int]:
    """The first IO with an op other than read or write, with a length of 0 or less, outside the
    image (-1 when none): one pass, no temporaries (a 62-million-IO trace is 1 GiB). Offsets and
    lengths in units of ``scale`` bytes."""
    bad_op = bad_length = bad_offset = -1
    for i in range(len(op)):
        off, ln = np.int64(offset[i]) * scale, np.int64(length[i]) * scale
        if bad_op < 0 and op[i] != READ and op[i] != WRITE:
            bad_op = i
        if bad_length < 0 and ln <= 0:
            bad_length = i
        if bad_offset < 0 and (off < 0 or off > image_bytes - ln):
            bad_offset = i
    return bad_op, bad_length, bad_offset


@numba.njit(cache=True, nogil=True)
def _first_bad_times(issue_s: npt.NDArray[np.float64], vm_start: npt.NDArray[np.int64]) -> tuple[int, int]:
    """The first issue time that is not finite or below 0, and the first that is earlier than the one
    before it in the same VM (-1 when none)."""
    bad_value = bad_step = -1
    for v in range(len(vm_start) - 1):
        for i in range(vm_start[v], vm_start[v + 1]):
            t = issue_s[i]
            if bad_value < 0 and not (np.isfinite(t) and t >= 0.0):
                bad_value = i
            if bad_step < 0 and i > vm_start[v] and t < issue_s[i - 1]:
                bad_step = i
    return bad_value, bad_step


def check_trace(trace: Trace, fleet: FleetPreset, vms: int, ios: IoTable | None = None) -> None:
    """Refuse a trace a scenario cannot run, in one line. ``ios``: its IOs when the trace holds its ops and
    times only (a packed synthetic trace)."""
    where = f"trace '{trace.source}'"
    table = IoTable.of(trace) if ios is None else ios
    n = trace.ios
    if n == 0:
        raise UsageError(f"{where}: the trace is empty; give at least one IO")
    if trace.vms != vms:
        if trace.vms > vms:
            counts = np.diff(trace.vm_start)
            first = vms + int(np.flatnonzero(counts[vms:] > 0)[0])
            raise UsageError(f"{where}: IOs of VM {first} but the scenario has {vms} VMs "
                             f"(ids 0..{vms - 1}); raise --vms or drop the unknown VMs")
        raise UsageError(f"{where}: VMs {trace.vms}..{vms - 1} have no IOs; the trace holds {trace.vms} "
                         f"VMs, give --vms {trace.vms} or a trace with every VM")
    empty = np.flatnonzero(np.diff(trace.vm_start) == 0)
    if len(empty):
        raise UsageError(f"{where}: VM {int(empty[0])} has no IOs; every VM of the scenario needs its boot IOs")
    if len(table.length) != n or len(table.offset) != n or len(table.op) != n:
        raise UsageError(f"{where}: op, offset and length columns differ in length; one row per IO")
    bad_op, bad_length, i = _first_bad_ios(table.op, table.offset, table.length, table.scale_bytes,
                                           math.floor(fleet.gi_virtual_bytes))
    scale = table.scale_bytes
    if bad_op >= 0:
        raise field_error(where, f"op of IO {bad_op}", int(table.op[bad_op]), "read or write")
    if bad_length >= 0:
        raise field_error(where, f"length of IO {bad_length}", int(table.length[bad_length]) * scale,
                          "a length above 0 bytes")
    if i >= 0:
        end = (int(table.offset[i]) + int(table.length[i])) * scale
        raise field_error(where, f"offset of IO {i}", int(table.offset[i]) * scale,
                          f"an IO inside the image: offset + length ({end}) at most the GI's "
                          f"{int(fleet.gi_virtual_bytes)} bytes")
    if len(trace.start_s) != vms or not np.all(np.isfinite(trace.start_s)) or np.any(trace.start_s < 0):
        raise UsageError(f"{where}: start times must be one finite time >= 0 s per VM")
    if len(trace.issue_s):
        t = trace.issue_s
        bad_value, bad_step = _first_bad_times(t, trace.vm_start) if len(t) == n else (0, -1)
        if bad_value >= 0:
            raise UsageError(f"{where}: issue times must be finite and >= 0 s, one per IO")
        if bad_step >= 0:  # a new VM may start earlier than the last IO of the one before
            raise field_error(where, f"time of IO {bad_step}", float(t[bad_step]),
                              "times that never decrease within one VM (its IOs in issue order)")


def build_scenario(
    trace: Trace,
    fleet: FleetPreset,
    array: ArrayPreset,
    function: FunctionPreset,
    *,
    vms: int | None = None,
    golden_images: int | None = None,
    queue_depth: int | None = None,
    cache_block_bytes: int = DEFAULT_CACHE_BLOCK_BYTES,
    util_bin_s: float | None = None,
    seed: int | None = None,
    service_s: FloatArray | None = None,
    ios: IoTable | None = None,
) -> Scenario:
    """Check the trace for ``vms`` VMs and return a runnable scenario (defaults from the presets).
    ``ios``: the trace's IOs when it holds its ops and times only (see :func:`check_trace`)."""
    if vms is not None:
        try:
            vms = _vms_check(_whole_if_float(vms))
        except ValueError as exc:
            raise field_error("scenario", "vms", vms, str(exc)) from None
    check_trace(trace, fleet, trace.vms if vms is None else vms, ios)
    values: dict[str, Any] = {
        "golden_images": 1 if golden_images is None else _whole_if_float(golden_images),
        "queue_depth": _whole_if_float(fleet.queue_depth if queue_depth is None else queue_depth),
        "util_bin_s": fleet.boot_window_s / BINS_PER_WINDOW if util_bin_s is None else util_bin_s,
    }
    try:
        return Scenario(trace=trace, fleet=fleet, array=array, function=function, cache_block_bytes=cache_block_bytes,
                        seed=seed, service_s=service_s, **values)
    except FieldError as exc:
        raise exc.at("scenario") from None
