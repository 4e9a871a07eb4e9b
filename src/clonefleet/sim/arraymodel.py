"""The array model: where each IO goes (volume, processor, cache key, disks) and what it allocates.

Everything here depends on the trace and the scenario only, not on timing, so it
is computed once, before either engine runs, as flat arrays:

- **Volumes and processors.** A snapshot clone's IO passes through its GI's
  volume (the GI volume's owning processor carries every clone of that GI, the
  per-volume limit N_v); a full or thin clone is its own volume. Volume j is
  owned by processor ``j mod processors``; each processor serves N/processors.
- **Cache keys.** The cache is keyed by physical location: (owner, block) with
  blocks of ``cache_block_bytes``, an IO looked up by the block of its first
  byte. The owner is the GI for a snapshot clone's read of data it has not
  written (so clones of one GI share it) and the clone itself otherwise. Each
  distinct (owner, block) of the trace gets a number 0, 1, 2, ... (its key), so
  the engines' LRU is indexed by key, without hashing.
- **Disks.** Disk ``0..X-1`` form the pool, striped in :data:`STRIPE_BYTES`
  stripes that start at a per-owner rotation; GI ``j`` sits on its own parity
  group, disks ``X + j*X_g .. X + (j+1)*X_g - 1``. A read miss costs one disk
  read; a write costs ``p`` disk writes on ``p`` consecutive pool disks (the
  RAID write penalty), all at once (the write completes when the last does).
- **Allocation.** A snapshot clone's first write into a unit of ``unit_bytes``
  allocates it, every unit the write touches; each unit it allocates without
  covering it whole (the first or the last it touches) has its old GI data read
  first (a copy-on-write read on the GI disk of the stripe holding the write's
  first byte in that unit); a write with two such reads issues them together
  and writes when both are done. A read goes where the unit of its first byte
  lies (reads are not split). Thin clones allocate pages without a read. C per clone is the number of
  distinct units its writes touch times u (exact; full copies allocate nothing
  new).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from clonefleet.planner import fleet_consumed_bytes
from clonefleet.presets import Method
from clonefleet.sim.order import IdArray, time_order
from clonefleet.sim.scenario import Scenario

IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]
DiskArray = npt.NDArray[Any]  # int16 while the disks fit, else int32
Int8Array = npt.NDArray[np.int8]
FloatArray = npt.NDArray[np.float64]

STRIPE_BYTES = 64 * 1024


@dataclass(frozen=True, eq=False)
class Network:
    """The scenario compiled to flat arrays, the engines' only input. Seconds and counts."""

    vm_start: IntArray  # CSR offsets of each VM's IOs
    start_s: FloatArray  # per VM: power-on time
    issue_s: FloatArray  # per IO (open loop) or empty (closed loop)
    arrival_order: IdArray  # IO ids in (issue time, id) order (open loop) or empty (closed loop)
    is_write: Int8Array  # per IO
    key: Int32Array  # per IO: cache key, the number of its (owner, block), 0 .. cache_keys - 1
    disk: DiskArray  # per IO: disk of a read miss, first disk of a write
    cow_disk: DiskArray  # (2, IOs): GI disks of a write's copy-on-write reads (the first, the second), -1: none;
    #                      (2, 0) when no IO copies (full and thin clones): 4 bytes per IO spared
    vm_volume: Int32Array  # per VM: the volume its IO passes
    volume_processor: Int32Array  # per volume: its owning processor
    processors: int
    pool_disks: int  # X
    disks: int  # X + g*X_g
    write_disks: int  # p
    volume_s: float  # service time of one IO at a volume: 1/N_v
    processor_s: float  # at a processor: processors/N
    disk_s: float  # at a disk: 1/M
    cache_slots: int  # cache bytes / cache block
    cache_keys: int  # distinct (owner, block) of the trace
    service_s: FloatArray  # (3, IOs) per-IO service times, or shape (3, 0): deterministic
    queue_depth: int
    closed: bool
    util_bin_s: float

    @property
    def volumes(self) -> int:
        return len(self.volume_processor)



@numba.njit(cache=True, nogil=True)
def _place(vm_start: IntArray, is_write: Int8Array, offset: IntArray, length: Int32Array,
           gi_of_vm: Int32Array, snapshot: bool, unit_bytes: int, block_bytes: int, pool: int,
           gi_disks: int, key: Int32Array, disk: DiskArray, cow: DiskArray, owner_of_unit: Int32Array,
           block_rows: Int32Array) -> int:
    """Fill ``key``, ``disk`` and ``cow`` (rows 0 and 1: the GI disks of a write's copy-on-write
    reads, -1 when none) per IO; return the number of keys.

    A write allocates every unit it touches; each unit it allocates and covers only partly (only
    the first and the last can be) is read from the GI first, on the GI disk of the stripe that
    holds the write's first byte in that unit. A read goes where the unit of its first byte lies.
    ``owner_of_unit[u] == v + 1`` marks unit u allocated by VM v (no reset between VMs). A key
    numbers an (owner, block): ``block_rows[0, b] = [v + 1, key]`` for VM v's own block b,
    ``block_rows[1, b] = [gi + 1, key]`` for GI gi's; VMs are placed GI by GI, so a row's mark
    changes only when its owner's IOs are all placed.
    """
    keys = 0
    for v in np.argsort(gi_of_vm, kind="mergesort"):
        mark = v + 1
        gi = gi_of_vm[v]
        rot = (v * 2654435761) % pool
        gi_first = pool + gi * gi_disks
        for i in range(vm_start[v], vm_start[v + 1]):
            off = offset[i]
            unit = off // unit_bytes
            stripe = off // STRIPE_BYTES
            kind, owner = 0, mark
            if is_write[i]:
                if snapshot:
                    end = off + length[i]
                    reads = 0
                    for u in range(unit, (end - 1) // unit_bytes + 1):
                        if owner_of_unit[u] != mark:
                            owner_of_unit[u] = mark
                            lo = u * unit_bytes
                            if off > lo or end < lo + unit_bytes:  # partly covered: copy on write
                                cow[reads, i] = gi_first + (max(off, lo) // STRIPE_BYTES) % gi_disks
                                reads += 1
                disk[i] = (rot + stripe) % pool
            elif snapshot and owner_of_unit[unit] != mark:
                kind, owner = 1, gi + 1
                disk[i] = gi_first + stripe % gi_disks
            else:
                disk[i] = (rot + stripe) % pool
            b = off // block_bytes
            if block_rows[kind, b, 0] != owner:
                block_rows[kind, b, 0] = owner
                block_rows[kind, b, 1] = keys
                keys += 1
            key[i] = block_rows[kind, b, 1]
    return keys


def compile_network(scenario: Scenario, arrival_order: IdArray | None = None) -> Network:
    """Place every IO of the scenario on the array (see the module docstring).

    ``arrival_order``: the IO ids of an open-loop trace in (issue time, id) order, when the caller
    has them already (e.g. from a larger trace this one is the first VMs of); sorted here otherwise.
    """
    trace, array, fn = scenario.trace, scenario.array, scenario.function
    vms, g = trace.vms, scenario.golden_images
    snapshot = fn.method is Method.SNAPSHOT
    gi_of_vm = (np.arange(vms) % g).astype(np.int32)
    vm_volume = gi_of_vm.copy() if snapshot else np.arange(vms, dtype=np.int32)
    volumes = g if snapshot else vms
    processors = int(array.processors)
    n, disks = trace.ios, int(array.disks + g * array.gi_disks)
    small = np.int16 if disks < np.iinfo(np.int16).max else np.int32  # compact: 2 bytes per IO
    key, disk, cow = np.empty(n, np.int32), np.empty(n, small), np.full((2, n if snapshot else 0), -1, small)
    image = scenario.fleet.gi_virtual_bytes
    blocks = int(-(-image // scenario.cache_block_bytes))  # np.zeros: untouched pages cost no memory
    # An open loop's arrival order depends on the trace alone: it is sorted on the other core
    # while the IOs are placed (both release the GIL).
    if arrival_order is not None and len(arrival_order) != len(trace.issue_s):
        raise ValueError(f"arrival_order has {len(arrival_order)} entries for {len(trace.issue_s)} timed IOs")
    with ThreadPoolExecutor(1) as other_core:
        arrivals = other_core.submit(lambda: time_order(trace.issue_s) if arrival_order is None else arrival_order)
        keys = _place(trace.vm_start, trace.op, trace.offset_bytes, trace.length_bytes, gi_of_vm, snapshot,
                      int(fn.unit_bytes), scenario.cache_block_bytes, int(array.disks), int(array.gi_disks),
                      key, disk, cow, np.zeros(int(-(-image // fn.unit_bytes)) if snapshot else 1, np.int32),
                      np.zeros((2, blocks, 2), np.int32))
        arrival_order = arrivals.result()
    service = scenario.service_s if scenario.service_s is not None else np.zeros((3, 0))
    return Network(
        vm_start=trace.vm_start, start_s=trace.start_s, issue_s=trace.issue_s, arrival_order=arrival_order,
        is_write=trace.op,
        key=key, disk=disk, cow_disk=cow, vm_volume=vm_volume,
        volume_processor=(np.arange(volumes) % processors).astype(np.int32), processors=processors,
        pool_disks=int(array.disks), disks=disks,
        write_disks=int(array.raid_write_penalty),
        volume_s=1.0 / array.volume_iops_limit, processor_s=processors / array.processor_iops,
        disk_s=1.0 / array.disk_iops, cache_slots=int(array.cache_bytes // scenario.cache_block_bytes),
        cache_keys=int(keys),
        service_s=np.ascontiguousarray(service, np.float64), queue_depth=scenario.queue_depth,
        closed=not len(trace.issue_s), util_bin_s=scenario.util_bin_s,
    )


@numba.njit(cache=True)
def _units_per_vm(vm_start: IntArray, op: Int8Array, offset: IntArray, length: Int32Array,
                  unit_bytes: int, marks: Int32Array) -> IntArray:
    """Distinct units of ``unit_bytes`` that each VM's writes touch.

    ``marks[u] == v + 1`` once VM v touched unit u (no reset between VMs).
    """
    vms = len(vm_start) - 1
    out = np.zeros(vms, np.int64)
    for v in range(vms):
        for i in range(vm_start[v], vm_start[v + 1]):
            if op[i] == 1:
                for unit in range(offset[i] // unit_bytes, (offset[i] + length[i] - 1) // unit_bytes + 1):
                    if marks[unit] != v + 1:
                        marks[unit] = v + 1
                        out[v] += 1
    return out


def allocated_bytes_per_clone(scenario: Scenario) -> FloatArray:
    """C of every clone, exact from its write IOs: distinct units touched times u [bytes]."""
    trace, fn = scenario.trace, scenario.function
    if fn.method is Method.FULL:
        return np.zeros(trace.vms)  # thick copies allocate everything up front
    u = int(fn.unit_bytes)
    marks = np.zeros(int(-(-scenario.fleet.gi_virtual_bytes // u)), np.int32)  # untouched pages cost nothing
    units = _units_per_vm(trace.vm_start, trace.op, trace.offset_bytes, trace.length_bytes, u, marks)
    return (units * u).astype(np.float64)


def consumed_bytes(scenario: Scenario, per_clone_new_bytes: FloatArray) -> float:
    """S (Eq. 3) of the scenario's fleet, each clone's C exact from the trace [bytes] (the planner's
    :func:`~clonefleet.planner.fleet_consumed_bytes`, with the mean C: S is linear in it)."""
    mean_new = float(per_clone_new_bytes.mean()) if per_clone_new_bytes.size else 0.0
    return float(fleet_consumed_bytes(scenario.fleet, scenario.function, scenario.golden_images, scenario.vms,
                                      mean_new))
