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
  written (so clones of one GI share it) and the clone itself otherwise. The key
  is the number ``owner * blocks + block`` (owner: VM v is v, GI g is VMs + g),
  which the engines' LRU (:mod:`clonefleet.sim.lru`) hashes.
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
from dataclasses import dataclass, replace
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from clonefleet.planner import fleet_consumed_bytes
from clonefleet.presets import Method
from clonefleet.sim.order import IdArray, id_dtype, time_order
from clonefleet.sim.scenario import Scenario, cache_slots
from clonefleet.sim.trace import IoTable

IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]
DiskArray = npt.NDArray[Any]  # int16 while the disks fit, else int32
Int8Array = npt.NDArray[np.int8]
FloatArray = npt.NDArray[np.float64]

STRIPE_BYTES = 64 * 1024


@dataclass(frozen=True, eq=False)
class Network:
    """The scenario compiled to flat arrays, the engines' only input. Seconds and counts.

    ``ios`` and the placement fields are what an engine needs to place each IO as its VM issues it
    (:func:`place_io`); ``key``, ``disk`` and ``cow_disk`` are every IO placed ahead (the open loop's
    stage passes and the reference engine read them), empty when the network was compiled with
    ``place=False`` (a closed loop on the fast engine places as it goes: no per-IO arrays)."""

    vm_start: IntArray  # CSR offsets of each VM's IOs
    start_s: FloatArray  # per VM: power-on time
    issue_s: FloatArray  # per IO (open loop) or empty (closed loop)
    arrival_order: IdArray  # IO ids in (issue time, id) order (open loop) or empty (closed loop)
    is_write: Int8Array  # per IO
    ios: IoTable  # per IO: op, offset, length
    gi_of_vm: Int32Array  # per VM: the GI its clone reads (snapshot), VM v on GI v mod g
    snapshot: bool  # reads of data the clone has not written go to its GI; first writes copy on write
    allocates: bool  # writes allocate units (thin and snapshot clones; full copies have them all)
    unit_bytes: int  # u, the allocation unit
    block_bytes: int  # the cache's block
    gi_disks: int  # X_g, disks per GI
    blocks: int  # cache blocks of the image: key = owner * blocks + block
    unit_lo: int  # the first unit any write touches: per VM bit (u - unit_lo) marks unit u allocated
    unit_words: int  # 64-bit words per VM of those marks
    key: IdArray  # per IO numbered ahead: its dense cache key (see _place), or empty: keyed as issued, by
    #                  owner * blocks + block (owner: VM v, or GI g as VMs + g)
    keys: int  # the dense keys' count
    disk: DiskArray  # per IO placed ahead: disk of a read miss, first disk of a write
    cow_disk: DiskArray  # (2, IOs): GI disks of a write's copy-on-write reads (the first, the second), -1: none;
    #                      (2, 0) when no IO copies (full and thin clones) or nothing was placed ahead
    new_units: IntArray | None  # per VM: units its writes allocate, when placed ahead
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
    service_s: FloatArray  # (3, IOs) per-IO service times, or shape (3, 0): deterministic
    queue_depth: int
    closed: bool
    util_bin_s: float

    @property
    def volumes(self) -> int:
        return len(self.volume_processor)

    @property
    def placement(self) -> tuple[Any, ...]:
        """What :func:`place_io` reads of the network, as one tuple (the compiled code passes it on)."""
        return (self.ios.offset, self.ios.length, self.ios.scale_bytes, self.gi_of_vm, self.snapshot,
                self.allocates, self.unit_bytes, self.block_bytes, self.pool_disks, self.gi_disks, self.blocks,
                self.unit_lo, len(self.gi_of_vm))


@numba.njit(cache=True, inline="always")
def _marked(marks: npt.NDArray[np.uint64], v: int, r: int) -> bool:
    return bool(0 <= r < marks.shape[1] * 64 and (marks[v, r >> 6] >> np.uint64(r & 63)) & np.uint64(1) != 0)


@numba.njit(cache=True, inline="always")
def place_io(v: int, i: int, write: bool, placement: tuple[Any, ...],
             marks: npt.NDArray[np.uint64]) -> tuple[int, int, int, int, int]:
    """Place IO ``i`` of VM ``v``, its VM's IOs before it placed already: (cache key, disk, the GI
    disks of its copy-on-write reads or -1, units it allocates). ``placement``: see
    :attr:`Network.placement`; ``marks[v]``: VM v's allocated units.

    A write allocates every unit it touches; each unit it allocates and covers only partly (only
    the first and the last can be) is read from the GI first (snapshot clones), on the GI disk of the
    stripe that holds the write's first byte in that unit. A read goes where the unit of its first
    byte lies: a snapshot clone's read of a unit it has not written goes to its GI (key and disk).
    """
    offset, length, scale, gi_of_vm, snapshot, allocates, unit_bytes, block_bytes, pool, gi_disks, blocks, \
        unit_lo, vms = placement
    off = np.int64(offset[i]) * scale
    gi = gi_of_vm[v]
    stripe = off // STRIPE_BYTES
    owner = np.int64(v)
    disk = (np.int64(v) * 2654435761 % pool + stripe) % pool  # the clone's rotation, then the stripe
    cow0 = cow1 = -1
    new = 0
    gi_first = pool + gi * gi_disks
    if write:
        if allocates:
            end = off + np.int64(length[i]) * scale
            for u in range(off // unit_bytes, (end - 1) // unit_bytes + 1):
                r = u - unit_lo
                if not _marked(marks, v, r):
                    marks[v, r >> 6] |= np.uint64(1) << np.uint64(r & 63)
                    new += 1
                    lo = u * unit_bytes
                    if snapshot and (off > lo or end < lo + unit_bytes):  # partly covered: copy on write
                        d = gi_first + (max(off, lo) // STRIPE_BYTES) % gi_disks
                        if cow0 < 0:
                            cow0 = d
                        else:
                            cow1 = d
    elif snapshot and not _marked(marks, v, off // unit_bytes - unit_lo):
        owner = vms + gi
        disk = gi_first + stripe % gi_disks
    return owner * blocks + off // block_bytes, disk, cow0, cow1, new


@numba.njit(cache=True, nogil=True)
def _place(vm_start: IntArray, is_write: Int8Array, placement: tuple[Any, ...], marks: npt.NDArray[np.uint64],
           order: IntArray, block_rows: IdArray, key: IdArray, disk: DiskArray, cow: DiskArray,
           new_units: IntArray) -> int:
    """Place every IO ahead, VM by VM in issue order (:func:`place_io`), the VMs in ``order`` (GI by GI);
    fill ``key`` with each IO's key numbered densely, and ``disk``, ``cow`` and ``new_units`` unless
    they are empty; return the number of keys.

    A dense key numbers an (owner, block) in the order of its first access, VM by VM: a VM's keys are
    near each other, which keeps the cache's table cells a VM touches together (see
    :mod:`clonefleet.sim.lru`). ``block_rows[kind, b] = [owner + 1, key]`` for VM-owned (kind 0) and
    GI-owned (kind 1) block b; with the VMs GI by GI, a row's owner changes only when its owner's
    IOs are all placed.
    """
    vms, blocks = placement[-1], placement[-3]
    keys = 0
    for v in order:
        for i in range(vm_start[v], vm_start[v + 1]):
            composite, d, c0, c1, new = place_io(v, i, is_write[i] != 0, placement, marks)
            owner = composite // blocks
            b = composite - owner * blocks
            kind = 1 if owner >= vms else 0
            if block_rows[kind, b, 0] != owner + 1:
                block_rows[kind, b, 0] = owner + 1
                block_rows[kind, b, 1] = keys
                keys += 1
            key[i] = block_rows[kind, b, 1]
            if len(disk):
                disk[i] = d
                new_units[v] += new
            if cow.shape[1]:
                cow[0, i], cow[1, i] = c0, c1
    return keys


@numba.njit(cache=True, nogil=True)
def _written_units(op: Int8Array, offset: npt.NDArray[Any], length: npt.NDArray[Any], scale: int,
                   unit_bytes: int) -> tuple[int, int]:
    """The first and one past the last unit any write touches ((0, 0) when nothing is written)."""
    lo, hi = 1 << 62, 0
    for i in range(len(op)):
        if op[i] != 0:
            off = int(offset[i]) * scale
            lo = min(lo, off // unit_bytes)
            hi = max(hi, (off + int(length[i]) * scale - 1) // unit_bytes + 1)
    return (lo, hi) if hi > 0 else (0, 0)


def unit_marks(net: Network) -> npt.NDArray[np.uint64]:
    """Every VM's allocated units, none yet: one bit per unit of the span the trace writes (np.zeros:
    the pages of VMs that write little are never touched)."""
    return np.zeros((len(net.gi_of_vm), net.unit_words), np.uint64)


def compile_network(scenario: Scenario, arrival_order: IdArray | None = None, *, ios: IoTable | None = None,
                    place: bool = True, keys: bool = True) -> Network:
    """The scenario's array as flat arrays; with ``place``, every IO placed ahead (see the module docstring).

    ``arrival_order``: the IO ids of an open-loop trace in (issue time, id) order, when the caller
    has them already (e.g. from a larger trace this one is the first VMs of); sorted here otherwise.
    ``ios``: the IOs in another form than the scenario's trace holds them (a packed table, see
    :meth:`~clonefleet.sim.trace.TraceDraw.packed`; the trace then holds their ops and times only).
    ``keys`` without ``place``: only the IOs' dense keys are numbered ahead (4 bytes per IO; a cache
    that holds every key is then a set indexed by them, see :mod:`clonefleet.sim.lru`); neither: the
    event loop keys each IO as it is issued, by owner and block, and holds nothing per IO.
    """
    trace, array, fn = scenario.trace, scenario.array, scenario.function
    table = IoTable.of(trace) if ios is None else ios
    vms, g = trace.vms, scenario.golden_images
    snapshot = fn.method is Method.SNAPSHOT
    gi_of_vm = (np.arange(vms) % g).astype(np.int32)
    vm_volume = gi_of_vm.copy() if snapshot else np.arange(vms, dtype=np.int32)
    volumes = g if snapshot else vms
    processors = int(array.processors)
    n, disks = table.ios, int(array.disks + g * array.gi_disks)
    small = np.int16 if disks < np.iinfo(np.int16).max else np.int32  # compact: 2 bytes per IO
    unit = int(fn.unit_bytes)
    allocates = fn.method is not Method.FULL
    lo, hi = _written_units(table.op, table.offset, table.length, table.scale_bytes, unit) if allocates else (0, 0)
    placed = n if place else 0
    # A key per IO numbers at most as many keys as IOs: int32 while they fit (the ids' rule).
    key, disk = np.empty(n if place or keys else 0, id_dtype(n)), np.empty(placed, small)
    cow = np.full((2, placed if snapshot else 0), -1, small)
    # An open loop's arrival order depends on the trace alone: it is sorted on the other core
    # while the IOs are placed (both release the GIL).
    if arrival_order is not None and len(arrival_order) != len(trace.issue_s):
        raise ValueError(f"arrival_order has {len(arrival_order)} entries for {len(trace.issue_s)} timed IOs")
    service = scenario.service_s if scenario.service_s is not None else np.zeros((3, 0))
    net = Network(
        vm_start=trace.vm_start, start_s=trace.start_s, issue_s=trace.issue_s, arrival_order=np.zeros(0, np.int32),
        is_write=table.op, ios=table, gi_of_vm=gi_of_vm, snapshot=snapshot, allocates=allocates, unit_bytes=unit,
        block_bytes=scenario.cache_block_bytes, gi_disks=int(array.gi_disks),
        blocks=int(-(-scenario.fleet.gi_virtual_bytes // scenario.cache_block_bytes)),
        unit_lo=int(lo), unit_words=int(-(-(hi - lo) // 64)),
        key=key, keys=0, disk=disk, cow_disk=cow, new_units=np.zeros(vms, np.int64) if place else None,
        vm_volume=vm_volume,
        volume_processor=(np.arange(volumes) % processors).astype(np.int32), processors=processors,
        pool_disks=int(array.disks), disks=disks,
        write_disks=int(array.raid_write_penalty),
        volume_s=1.0 / array.volume_iops_limit, processor_s=processors / array.processor_iops,
        disk_s=1.0 / array.disk_iops, cache_slots=cache_slots(array, scenario.cache_block_bytes),
        service_s=np.ascontiguousarray(service, np.float64), queue_depth=scenario.queue_depth,
        closed=not len(trace.issue_s), util_bin_s=scenario.util_bin_s,
    )
    count = 0
    with ThreadPoolExecutor(1) as other_core:
        arrivals = other_core.submit(lambda: time_order(trace.issue_s) if arrival_order is None else arrival_order)
        if len(key):  # np.zeros: only the rows of blocks the trace touches cost memory
            count = _place(trace.vm_start, table.op, net.placement, unit_marks(net),
                           np.argsort(gi_of_vm, kind="stable"), np.zeros((2, net.blocks, 2), id_dtype(n)), key, disk,
                           cow, np.zeros(vms, np.int64) if net.new_units is None else net.new_units)
        order = arrivals.result()
    return replace(net, arrival_order=order, keys=count)


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
