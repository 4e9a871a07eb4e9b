"""The fast engine: one compiled event loop over flat arrays (numba).

Every resource is a FIFO single server, so an IO's departure from it is known
the moment it arrives: ``departure = max(arrival, server free) + service``
(Lindley's recursion). The loop therefore keeps one pending event per IO in
flight, keyed ``(time, IO id)``, in a calendar queue (see :func:`_run`); IO ids
number the IOs VM by VM in issue order, so ties at equal times go to the lower
VM id, then the lower IO index (the tie-break rule, shared with
:mod:`clonefleet.sim.reference`). An IO's stages:

0. arrives at its volume (the per-volume limit N_v);
1. arrives at the volume's processor;
2. leaves the processor: looks up the cache (a read hit completes here); a read
   miss goes to its disk; a write goes to its p disks, after its copy-on-write
   reads on the GI's disks when it has any (one or two, issued together);
3. the copy-on-write reads are done: the p disk writes start;
4. completes. In a closed loop its VM issues its next IO at this moment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from clonefleet.sim.arraymodel import DiskArray, Network, place_io, unit_marks
from clonefleet.sim.lru import Lru, lru_access, lru_prefetch, new_lru
from clonefleet.sim.order import IdArray, id_dtype, less, sort_pairs
from clonefleet.sim.prefetch import prefetch
from clonefleet.sim.quantiles import new_sketch, sketch_add
from clonefleet.sim.trace import keeps_latencies

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]

#: Resource classes of the utilisation time series, in row order.
UTIL_CLASSES: tuple[str, ...] = ("volumes", "processors", "pool disks", "GI disks")


@dataclass(frozen=True, eq=False)
class RawRun:
    """What an engine returns: the storm reduced as it ran (per VM, per server, per bin, the latency
    sketch), and per IO completion and latency when they were asked for (empty otherwise)."""

    completion_s: FloatArray  # per IO, or empty
    latency_s: Float32Array  # per IO: completion - issue, or empty
    vm_last_s: FloatArray  # per VM: its last completion
    latency_sketch: IntArray  # every IO's latency counted (clonefleet.sim.quantiles)
    latency_min_s: float
    latency_max_s: float
    latency_sum_s: float
    new_units: IntArray  # per VM: units its writes allocated
    busy_volume_s: FloatArray
    busy_processor_s: FloatArray
    busy_disk_s: FloatArray
    busy_bins_s: FloatArray  # (4, bins): busy server-seconds of each class in each bin
    reads: int
    read_hits: int
    engine: str
    wall_s: float


@numba.njit(cache=True)
def _reduce(vm_start: IntArray, completion: FloatArray, latency: Float32Array,
            sketch: IntArray) -> tuple[FloatArray, float, float, float]:
    """Per IO records reduced as the event loop reduces them: per VM last completion, the latency
    sketch, the smallest, largest and summed latency."""
    vms = len(vm_start) - 1
    last = np.full(vms, -np.inf)
    lo, hi, total = np.inf, -np.inf, 0.0
    scratch = np.zeros(1, np.float32)
    for v in range(vms):
        for i in range(vm_start[v], vm_start[v + 1]):
            last[v] = max(last[v], completion[i])
            x = np.float64(latency[i])
            lo, hi, total = min(lo, x), max(hi, x), total + x
            sketch_add(sketch, scratch, x)
    return last, lo, hi, total


def reduced_run(net: Network, completion: FloatArray, latency: Float32Array, new_units: IntArray,
                busy: tuple[FloatArray, FloatArray, FloatArray, FloatArray], reads: int, hits: int, engine: str,
                wall_s: float) -> RawRun:
    """A run recorded per IO (the reference engine, the open loop's stage passes), reduced."""
    sketch = new_sketch()
    last, lo, hi, total = _reduce(net.vm_start, completion, latency, sketch)
    return RawRun(completion, latency, last, sketch, lo, hi, total, new_units, *busy, int(reads), int(hits), engine,
                  wall_s)


# --- binary heap of (time, id), the smallest first -------------------------------------------

@numba.njit(cache=True, inline="always")
def _push(ht: FloatArray, hi: IntArray, size: int, t: float, i: int) -> None:
    k = size
    while k > 0:
        parent = (k - 1) >> 1
        if less(t, i, ht[parent], hi[parent]):
            ht[k] = ht[parent]
            hi[k] = hi[parent]
            k = parent
        else:
            break
    ht[k] = t
    hi[k] = i


@numba.njit(cache=True, inline="always")
def _pop_fix(ht: FloatArray, hi: IntArray, size: int) -> None:
    """Remove the root of a heap of ``size`` entries (size counts the root)."""
    last = size - 1
    t = ht[last]
    i = hi[last]
    k = 0
    while True:
        child = 2 * k + 1
        if child >= last:
            break
        if child + 1 < last and less(ht[child + 1], hi[child + 1], ht[child], hi[child]):
            child += 1
        if less(ht[child], hi[child], t, i):
            ht[k] = ht[child]
            hi[k] = hi[child]
            k = child
        else:
            break
    ht[k] = t
    hi[k] = i


# --- the event loop ----------------------------------------------------------------------------

@numba.njit(cache=True, inline="always")
def _serve(free: FloatArray, busy: FloatArray, bins: FloatArray, cls: int, bin_s: float,
           server: int, t: float, service: float) -> float:
    """FIFO single server: start at max(arrival, free), return the departure; book the busy time."""
    start = free[server]
    if t > start:
        start = t
    end: float = start + service
    free[server] = end
    busy[server] += service
    nb = bins.shape[1]
    b = min(int(start / bin_s), nb - 1)
    lo = start
    while lo < end and b < nb:
        hi = (b + 1) * bin_s
        if hi > end or b == nb - 1:
            hi = end
        bins[cls, b] += hi - lo
        lo = hi
        b += 1
    return end


@numba.njit(cache=True, inline="always")
def _writes(first: int, t: float, write_disks: int, pool: int, disk_free: FloatArray,
            busy_disk: FloatArray, bins: FloatArray, bin_s: float, svc: float) -> float:
    """The p disk writes of a write whose first disk is ``first``, issued together at ``t``: the time
    the last is done."""
    done = t
    for k in range(write_disks):  # p consecutive pool disks, wrapping round (p <= pool)
        d = first + k
        if d >= pool:
            d -= pool
        end = _serve(disk_free, busy_disk, bins, 2, bin_s, d, t, svc)
        if end > done:
            done = end
    return done


@numba.njit(cache=True, inline="always")
def _cow_reads(first: int, second: int, t: float, disk_free: FloatArray, busy_disk: FloatArray,
               bins: FloatArray, bin_s: float, svc: float) -> float:
    """A write's copy-on-write reads (on GI disks ``first`` and ``second``, -1 when only one), issued
    together at ``t``: the time the last is done."""
    done = _serve(disk_free, busy_disk, bins, 3, bin_s, first, t, svc)
    if second >= 0:
        done = max(done, _serve(disk_free, busy_disk, bins, 3, bin_s, second, t, svc))
    return done


@numba.njit(cache=True)
def _idle_array(n_vol: int, n_proc: int, n_disks: int,
                n_bins: int) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray,
                                      FloatArray]:
    """The array before the storm: each server's free time and busy time (volumes, processors, disks),
    the busy time per resource class and bin."""
    return (np.zeros(n_vol), np.zeros(n_proc), np.zeros(n_disks), np.zeros(n_vol), np.zeros(n_proc),
            np.zeros(n_disks), np.zeros((4, n_bins)))


#: Buckets of the calendar queue's ring (a power of two).
RING_BUCKETS = 1 << 14
#: First bucket width of the calendar queue, in processor service times (it adapts as the run goes).
BUCKET_PROCESSOR_IOS = 8.0
#: The bucket width is reconsidered after this many events: doubled when a bucket passed held
#: fewer than BUCKET_MIN_EVENTS on average, halved when more than BUCKET_MAX_EVENTS (measured best
#: on the paper's desktop storms, thin and snapshot: about 140 and 70 ns per IO at 300 desktops).
ADAPT_EVERY_EVENTS = 1 << 15
BUCKET_MIN_EVENTS = 2
BUCKET_MAX_EVENTS = 8
#: Bounds of the bucket width [s] (events tied at one instant would otherwise halve it forever).
BUCKET_S_RANGE = (1e-9, 1e9)
#: The last bucket: later times share it (the heaps order them), and bucket numbers never overflow.
LAST_BUCKET = 1 << 62


@numba.njit(cache=True, inline="always")
def _bucket(t: float, per_s: float) -> int:
    """The calendar bucket of time t (times >= 0): non-decreasing in t, at most LAST_BUCKET."""
    b = t * per_s
    return LAST_BUCKET if b >= LAST_BUCKET else int(b)


# Columns of a slot's row (int64, with a float64 view of the same memory, and an int32 one for the small fields).
#: float: the time of the slot's pending event; int: its event id; float: its IO's issue time; int: its
#: IO's cache key; int: the next slot in its calendar bucket's list (-1: the last).
SLOT_T, SLOT_EVENT, SLOT_ISSUE, SLOT_KEY, SLOT_NEXT = 0, 1, 2, 3, 4
#: int32 columns: the IO's disk, its stage, its copy-on-write disks (-1: none).
SLOT_DISK, SLOT_STAGE, SLOT_COW0, SLOT_COW1 = 10, 11, 12, 13
#: Columns of a VM's row (int64, and a float64 view): its first IO's index, its IOs, the index of its
#: next IO to issue, the units its writes allocated, its last completion (float), its volume.
VM_FIRST, VM_IOS, VM_NEXT, VM_UNITS, VM_LAST, VM_VOLUME = 0, 1, 2, 3, 4, 5


@numba.njit(cache=True, inline="always")
def _slot_of(e: int, vm: IntArray, j_bits: int, s_bits: int, per_vm_slots: int) -> int:
    """The slot of event id e: a closed loop's VM has per_vm_slots of them; an open loop's IO is its slot."""
    v = e >> (j_bits + s_bits)
    if per_vm_slots > 0:
        return int(v * per_vm_slots + (e & ((1 << s_bits) - 1)))
    return int(vm[v, VM_FIRST] + ((e >> s_bits) & ((1 << j_bits) - 1)))


@numba.njit(cache=True, inline="always")
def _to_ring(ring: IntArray, si: IntArray, sf: FloatArray, b: int, k: int, t: float, e: int) -> None:
    """Put slot k's pending event (t, e) at the head of ring bucket b's list."""
    sf[k, SLOT_T] = t
    si[k, SLOT_EVENT] = e
    si[k, SLOT_NEXT] = ring[b]
    ring[b] = k


@numba.njit(cache=True, inline="always")
def _come_back(now_k: int, per_s: float, ht: FloatArray, hi: IntArray, size: int, ring: IntArray, si: IntArray,
               sf: FloatArray, vm: IntArray, j_bits: int, s_bits: int, per_vm_slots: int, far_t: FloatArray,
               far_i: IntArray, far: int) -> tuple[int, int, int]:
    """Move the far heap's events of buckets before now_k + RING_BUCKETS to the current bucket's heap
    (bucket <= now_k) or to the ring. Returns the new (size, ring entries added, far)."""
    added = 0
    while far > 0 and _bucket(far_t[0], per_s) < now_k + RING_BUCKETS:
        t, i = far_t[0], far_i[0]
        _pop_fix(far_t, far_i, far)
        far -= 1
        k = _bucket(t, per_s)
        if k <= now_k:
            _push(ht, hi, size, t, i)
            size += 1
        else:
            _to_ring(ring, si, sf, k & (RING_BUCKETS - 1), _slot_of(i, vm, j_bits, s_bits, per_vm_slots), t, i)
            added += 1
    return size, added, far


def id_bits(vms: int, ios_per_vm: int, slots_per_vm: int) -> tuple[int, int]:
    """Bits of an event id for the IO index within its VM and for its slot: an event id is
    ``vm << (j_bits + s_bits) | j << s_bits | slot``, which sorts as the IO id (VM, then index)."""
    j_bits, s_bits = max(ios_per_vm - 1, 1).bit_length(), max(slots_per_vm - 1, 0).bit_length()
    if max(vms - 1, 1).bit_length() + j_bits + s_bits > 62:
        raise ValueError(f"{vms:,} VMs x {ios_per_vm:,} IOs x {slots_per_vm:,} slots: event ids need over 62 bits")
    return j_bits, s_bits


@numba.njit(cache=True)
def _run(start_s: FloatArray, issue_s: FloatArray, is_write: npt.NDArray[np.int8],
         placement: tuple[Any, ...], marks: npt.NDArray[np.uint64], key: IdArray,
         volume_processor: Int32Array, n_proc: int, n_disks: int, write_disks: int, volume_s: float,
         processor_s: float, disk_s: float, service_s: FloatArray, q: int, closed: bool, bin_s: float,
         n_bins: int, lru: Lru, arrivals: IntArray, j_bits: int, s_bits: int, completion: FloatArray,
         latency: Float32Array, latency_only: Float32Array, sketch: IntArray, work: tuple[Any, ...],
         bucket_s: float, adapt_every: int) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, int, int,
                                                     float, float, float]:
    """The event loop. Each VM's IOs are placed as it issues them (place_io) and their results
    reduced as they complete; nothing is held per IO but what the caller asks for (``completion`` and
    ``latency``, or ``latency_only``: arrays of one entry per IO, or empty) and the IOs' dense cache
    keys when they were numbered ahead (``key``; empty: each IO keyed by owner and block).

    An IO in flight has a *slot*: a closed loop's VM has q of them (an IO completing hands its slot
    to its VM's next IO), an open loop gives each IO its own. A slot is one row of 64 bytes (see
    SLOT_T ...): its IO's stage, issue time, placement, and its one pending event, so that an event
    touches one cache line of its slot; a VM is one row too (VM_FIRST ...; both in ``work``, see
    loop_arrays). Events carry ids that sort as the IO ids (see id_bits), ``arrivals`` are an open
    loop's event ids in arrival order (empty when closed).

    Pending events wait in a calendar queue: time is cut in buckets of ``bucket_s``; the events of
    the current bucket sit in a binary heap (ht, hi: a few dozen of them), those of the next
    RING_BUCKETS - 1 buckets in unsorted lists (a ring) linked through their slots' rows, later ones
    in a second heap. An event whose bucket is ahead costs a list insertion instead of a heap
    operation on every pending event; each bucket is heaped when its turn comes. A bucket's times
    all precede the next bucket's, so the events still come out in (time, IO id) order. Every
    ``adapt_every`` events the width is doubled or halved to keep BUCKET_MIN_EVENTS..BUCKET_MAX_EVENTS
    per bucket. The calendar holds one event per IO in flight: its size follows the slots, not the IOs.
    """
    n = len(is_write)
    pool = placement[8]
    dense = len(key) == n and n > 0
    per_io = service_s.shape[1] == n and n > 0
    vol_free, proc_free, disk_free, busy_vol, busy_proc, busy_disk, bins = _idle_array(
        len(volume_processor), n_proc, n_disks, n_bins)
    # Per slot and per VM: rows (int64, a float64 view, an int32 view); the calendar's heaps.
    si, sf, sh, vm, vmf, ht, hi, far_t, far_i = work
    vms = len(vm)
    per_vm_slots = q if closed else 0
    lat_lo, lat_hi, lat_sum = np.inf, -np.inf, 0.0
    scratch = np.zeros(1, np.float32)
    keep_all, keep_latency = len(completion) > 0, len(latency_only) > 0
    j_mask = (1 << j_bits) - 1
    s_mask = (1 << s_bits) - 1
    # The calendar: the current bucket's heap (ht, hi, size), the ring of lists of slots, the far heap.
    bucket_s = min(max(bucket_s, BUCKET_S_RANGE[0]), BUCKET_S_RANGE[1])
    per_s = 1.0 / bucket_s
    mask = RING_BUCKETS - 1
    ring = np.full(RING_BUCKETS, -1, np.int64)  # the first slot of each bucket's list
    in_ring = 0
    far = 0
    size = 0
    now_k = 0  # the current bucket
    if closed:
        for v in range(vms):
            first = min(vm[v, VM_IOS], q)
            for j in range(first):
                e: int = (v << (j_bits + s_bits)) | (j << s_bits) | j
                _push(far_t, far_i, far, start_s[v], e)  # the first bucket is read from the far heap
                far += 1
            vm[v, VM_NEXT] = first
    if far > 0:
        now_k = _bucket(far_t[0], per_s)
    # Open loop: arrivals come from their presorted order, not the calendar.
    n_arr = len(arrivals)
    ai = 0
    ia: int = arrivals[0] if n_arr > 0 else -1
    ta = issue_s[vm[ia >> j_bits, VM_FIRST] + (ia & j_mask)] if n_arr > 0 else np.inf
    reads = 0
    hits = 0
    events = passed = 0  # since the bucket width was last reconsidered
    t = 0.0
    while True:
        if events >= adapt_every:
            factor = 2.0 if events < BUCKET_MIN_EVENTS * passed else (
                0.5 if events > BUCKET_MAX_EVENTS * passed else 1.0)
            events = passed = 0
            if factor != 1.0:
                # New width: the ring's events go to the far heap; the current bucket becomes the
                # one of the latest event in the heap (every pending event is at t or later); the
                # far heap's events within the new horizon come back.
                bucket_s = min(max(bucket_s * factor, BUCKET_S_RANGE[0]), BUCKET_S_RANGE[1])
                per_s = 1.0 / bucket_s
                for b in range(RING_BUCKETS):
                    sl = ring[b]
                    ring[b] = -1
                    while sl >= 0:
                        _push(far_t, far_i, far, sf[sl, SLOT_T], si[sl, SLOT_EVENT])
                        far += 1
                        sl = si[sl, SLOT_NEXT]
                in_ring = 0
                latest = t
                for j in range(size):
                    latest = max(latest, ht[j])
                now_k = _bucket(latest, per_s)
                size, added, far = _come_back(now_k, per_s, ht, hi, size, ring, si, sf, vm, j_bits, s_bits,
                                              per_vm_slots, far_t, far_i, far)
                in_ring += added
        # The current bucket empty: move to the next bucket that holds events (ring or far heap).
        while size == 0 and (in_ring > 0 or far > 0):
            passed += 1
            if in_ring == 0:
                now_k = max(now_k, _bucket(far_t[0], per_s))
            else:
                now_k += 1
            if far > 0:
                size, added, far = _come_back(now_k, per_s, ht, hi, size, ring, si, sf, vm, j_bits, s_bits,
                                              per_vm_slots, far_t, far_i, far)
                in_ring += added
            sl = ring[now_k & mask]
            ring[now_k & mask] = -1
            while sl >= 0:
                _push(ht, hi, size, sf[sl, SLOT_T], si[sl, SLOT_EVENT])
                size += 1
                in_ring -= 1
                sl = si[sl, SLOT_NEXT]
        if size == 0 and ai >= n_arr:
            break
        if ai < n_arr and (size == 0 or less(ta, ia, ht[0], hi[0])):
            t = ta
            e = ia
            ai += 1
            if ai < n_arr:
                ia = arrivals[ai]
                ta = issue_s[vm[ia >> j_bits, VM_FIRST] + (ia & j_mask)]
            else:
                ta = np.inf
                ia = -1
            if size == 0 and in_ring == 0 and far == 0:
                now_k = _bucket(t, per_s)  # nothing pending: the calendar starts again at this arrival
        else:
            t = ht[0]
            e = hi[0]
            _pop_fix(ht, hi, size)
            size -= 1
        while True:
            # Process the event (t, e) of IO i, VM v, slot k; (nt, ne) is the one it sets off, ne < 0 when none.
            events += 1
            v = e >> (j_bits + s_bits)
            i = vm[v, VM_FIRST] + ((e >> s_bits) & j_mask)
            k = v * per_vm_slots + (e & s_mask) if closed else i
            stg = sh[k, SLOT_STAGE]
            done = False
            nt = t
            ne = e
            dsvc = service_s[2, i] if per_io else disk_s
            if stg == 0:
                sf[k, SLOT_ISSUE] = t
                composite, sh[k, SLOT_DISK], sh[k, SLOT_COW0], sh[k, SLOT_COW1], new = place_io(
                    v, i, is_write[i] != 0, placement, marks)
                si[k, SLOT_KEY] = key[i] if dense else composite
                lru_prefetch(si[k, SLOT_KEY], lru)  # its lookup comes two stages on: the cell loads meanwhile
                vm[v, VM_UNITS] += new
                svc = service_s[0, i] if per_io else volume_s
                nt = _serve(vol_free, busy_vol, bins, 0, bin_s, vm[v, VM_VOLUME], t, svc)
                sh[k, SLOT_STAGE] = 1
            elif stg == 1:
                svc = service_s[1, i] if per_io else processor_s
                nt = _serve(proc_free, busy_proc, bins, 1, bin_s, volume_processor[vm[v, VM_VOLUME]], t, svc)
                sh[k, SLOT_STAGE] = 2
            elif stg == 2:
                hit = lru_access(si[k, SLOT_KEY], lru)
                if is_write[i] == 0:
                    reads += 1
                    if hit:
                        hits += 1
                        done = True
                    else:
                        d = sh[k, SLOT_DISK]
                        nt = _serve(disk_free, busy_disk, bins, 2 if d < pool else 3, bin_s, d, t, dsvc)
                        sh[k, SLOT_STAGE] = 4
                elif sh[k, SLOT_COW0] >= 0:
                    nt = _cow_reads(sh[k, SLOT_COW0], sh[k, SLOT_COW1], t, disk_free, busy_disk, bins, bin_s, dsvc)
                    sh[k, SLOT_STAGE] = 3
                else:
                    nt = _writes(sh[k, SLOT_DISK], t, write_disks, pool, disk_free, busy_disk, bins, bin_s, dsvc)
                    sh[k, SLOT_STAGE] = 4
            elif stg == 3:
                nt = _writes(sh[k, SLOT_DISK], t, write_disks, pool, disk_free, busy_disk, bins, bin_s, dsvc)
                sh[k, SLOT_STAGE] = 4
            else:
                done = True
            if done:
                lat = t - sf[k, SLOT_ISSUE]
                if keep_all:
                    completion[i] = t
                    latency[i] = lat
                if keep_latency:
                    latency_only[i] = lat
                lat32 = np.float64(np.float32(lat))  # latencies are reported as float32
                lat_lo, lat_hi, lat_sum = min(lat_lo, lat32), max(lat_hi, lat32), lat_sum + lat32
                sketch_add(sketch, scratch, lat)
                vmf[v, VM_LAST] = max(vmf[v, VM_LAST], t)
                sh[k, SLOT_STAGE] = 0
                ne = -1
                if closed and vm[v, VM_NEXT] < vm[v, VM_IOS]:
                    ne = (v << (j_bits + s_bits)) | (int(vm[v, VM_NEXT]) << s_bits) | (e & s_mask)
                    vm[v, VM_NEXT] += 1
            if ne < 0:
                break
            kb = _bucket(nt, per_s)
            # The event set off comes next when it sorts before everything pending: run it now.
            # (With the current bucket empty, everything pending lies in later buckets.)
            if (less(nt, ne, ht[0], hi[0]) if size > 0 else kb <= now_k) and (ia < 0 or less(nt, ne, ta, ia)):
                t = nt
                e = ne
                continue
            if kb <= now_k:
                _push(ht, hi, size, nt, ne)
                size += 1
            elif kb < now_k + RING_BUCKETS:
                _to_ring(ring, si, sf, kb & mask, k, nt, ne)  # the event set off is its IO's, in the same slot
                in_ring += 1
            else:
                _push(far_t, far_i, far, nt, ne)
                far += 1
            break
    return busy_vol, busy_proc, busy_disk, bins, reads, hits, lat_lo, lat_hi, lat_sum


# --- the open loop, stage by stage -------------------------------------------------------------
# Open loop, the network is feed-forward: volume -> processor -> cache -> GI disks -> pool disks.
# Each server is FIFO, and serves its arrivals in (time, IO id) order, the order in which the event
# loop above meets them; so every stage is one pass over its arrivals in that order (Lindley's
# recursion per server), and its departures, re-sorted, are the next stage's arrivals. The cache is
# one pass in (time, IO id) order of the processor departures, the order of the loop's lookups.

@numba.njit(cache=True)
def _merge_into(t: FloatArray, ids: IdArray, na: int, tb: FloatArray, ib: IdArray) -> None:
    """Merge the sorted list (tb, ib) into the sorted list t[:na], ids[:na]; t has room for both.

    From the back: the next slot written is never before the next entry of the first list read.
    """
    a, b = na - 1, len(tb) - 1
    for k in range(na + len(tb) - 1, -1, -1):
        if b < 0 or (a >= 0 and less(tb[b], ib[b], t[a], ids[a])):
            t[k], ids[k] = t[a], ids[a]
            a -= 1
        else:
            t[k], ids[k] = tb[b], ib[b]
            b -= 1


#: The open loop's cache pass starts loading the cell of the lookup this many IOs ahead,
LOOKUP_AHEAD = 16
#: and what it reads of the IO this many ahead (its key, op and disk: arrays of one entry per IO,
#: met in time order, so at a random place in each). Measured: 8-24 % less CPU per server-ws2008
#: snapshot storm of 24 M IOs; the same read ahead in the other passes was slower (docs/benchmarks.md).
READ_AHEAD = 32


@numba.njit(cache=True)
def _run_stages(issue_s: FloatArray, is_write: npt.NDArray[np.int8], key: IdArray, disk: DiskArray,
                cow_disk: DiskArray, vm_volume: Int32Array, volume_processor: Int32Array, n_proc: int,
                pool: int, n_disks: int, write_disks: int, volume_s: float, processor_s: float,
                disk_s: float, service_s: FloatArray, bin_s: float, n_bins: int, vm_of: Int32Array,
                completion: FloatArray, latency: Float32Array, lru: Lru,
                order: IdArray, t: FloatArray, ids: IdArray, gi_t: FloatArray,
                gi_ids: IdArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, int, int]:
    """The open loop, one pass per stage; the same completions as the event loop, IO for IO.

    ``order`` is the arrival order; ``t``, ``ids``, ``gi_t`` and ``gi_ids`` are scratch lists of one
    entry per IO (see run_fast), ``t`` and ``gi_ids`` holding at first the issue time and the VM of
    each arrival, in arrival order."""
    n = len(is_write)
    per_io = service_s.shape[1] == n and n > 0
    vol_free, proc_free, disk_free, busy_vol, busy_proc, busy_disk, bins = _idle_array(
        len(volume_processor), n_proc, n_disks, n_bins)
    has_cow = cow_disk.shape[1] > 0  # (2, 0): no IO of the run copies on write
    for k in range(n):  # volumes: t and gi_ids hold the arrivals' times and VMs, in arrival order
        i = order[k]
        ids[k] = i
        svc = service_s[0, i] if per_io else volume_s
        t[k] = _serve(vol_free, busy_vol, bins, 0, bin_s, vm_volume[gi_ids[k]], t[k], svc)
    sort_pairs(t, ids)
    for k in range(n):  # processors
        i = ids[k]
        svc = service_s[1, i] if per_io else processor_s
        t[k] = _serve(proc_free, busy_proc, bins, 1, bin_s, volume_processor[vm_volume[vm_of[i]]], t[k], svc)
    sort_pairs(t, ids)
    # The cache, in that order: a read hit completes; the rest go on to the GI disks (read misses of
    # GI data, copy-on-write reads) or to the pool (private read misses, writes), in the same order;
    # the pool's list is kept in t, ids (it is never longer than what has been read of them).
    # Read hits complete here: listed at the top end of gi_t, gi_ids (hits + GI-bound IOs <= the IOs
    # read), their completions written after the pass in one tight loop: written one at a time, at a
    # random place among every IO's, they cost the pass half its time.
    ng = npool = 0
    reads = hits = 0
    for k in range(n):
        if k + READ_AHEAD < n:
            ahead = ids[k + READ_AHEAD]
            prefetch(key, ahead)
            prefetch(is_write, ahead)
            prefetch(disk, ahead)
        i = ids[k]
        if k + LOOKUP_AHEAD < n:  # the lookup LOOKUP_AHEAD IOs on: its cell loads meanwhile
            lru_prefetch(key[ids[k + LOOKUP_AHEAD]], lru)
        hit = lru_access(key[i], lru)
        if is_write[i] == 0:
            reads += 1
            if hit:
                hits += 1
                gi_t[n - hits], gi_ids[n - hits] = t[k], i
                continue
        if (is_write[i] == 0 and disk[i] >= pool) or (is_write[i] != 0 and has_cow and cow_disk[0, i] >= 0):
            gi_t[ng], gi_ids[ng] = t[k], i
            ng += 1
        else:
            t[npool], ids[npool] = t[k], i
            npool += 1
    for h in range(n - hits, n):
        completion[gi_ids[h]] = gi_t[h]
    ncow = 0  # the copy-on-write reads' departures go back into gi_t, gi_ids: entry ncow <= k is read
    for k in range(ng):  # GI disks
        i = gi_ids[k]
        dsvc = service_s[2, i] if per_io else disk_s
        if is_write[i] == 0:
            completion[i] = _serve(disk_free, busy_disk, bins, 3, bin_s, disk[i], gi_t[k], dsvc)
        else:
            gi_t[ncow] = _cow_reads(cow_disk[0, i], cow_disk[1, i], gi_t[k], disk_free, busy_disk, bins, bin_s, dsvc)
            gi_ids[ncow] = i
            ncow += 1
    cow_t, cow_ids = gi_t[:ncow], gi_ids[:ncow]
    sort_pairs(cow_t, cow_ids)
    _merge_into(t, ids, npool, cow_t, cow_ids)
    for k in range(npool + ncow):  # pool disks
        i = ids[k]
        dsvc = service_s[2, i] if per_io else disk_s
        if is_write[i] == 0:
            completion[i] = _serve(disk_free, busy_disk, bins, 2, bin_s, disk[i], t[k], dsvc)
        else:
            completion[i] = _writes(disk[i], t[k], write_disks, pool, disk_free, busy_disk, bins, bin_s, dsvc)
    for i in range(n):
        latency[i] = completion[i] - issue_s[i]
    return busy_vol, busy_proc, busy_disk, bins, reads, hits


#: Bins of the utilisation series: enough for a long overload (the last bin takes the rest).
UTIL_BINS = 4096


def loop_arrays(slots: int, vm_start: IntArray, vm_volume: Int32Array) -> tuple[Any, ...]:
    """The event loop's working arrays: a row of 64 bytes per slot (SLOT_T ...: its IO's stage, issue
    time, placement and pending event) and per VM (VM_FIRST ...), each with its float64 view (and
    the slots' int32 view); the calendar's two heaps (the current bucket's, the far one: room for
    an event per slot). Nothing per IO."""
    vms = len(vm_start) - 1
    slot_rows = np.zeros((slots, 8), np.int64)
    vm_rows = np.zeros((vms, 8), np.int64)
    vm_rows[:, VM_FIRST] = vm_start[:-1]
    vm_rows[:, VM_IOS] = np.diff(vm_start)
    vm_rows[:, VM_VOLUME] = vm_volume
    vm_floats = vm_rows.view(np.float64)
    vm_floats[:, VM_LAST] = -np.inf
    cap = slots + 16
    return (slot_rows, slot_rows.view(np.float64), slot_rows.view(np.int32), vm_rows, vm_floats, np.empty(cap),
            np.empty(cap, np.int64), np.empty(cap), np.empty(cap, np.int64))


def run_fast(net: Network, events: bool = False, *, per_io: bool = True, bucket_s: float | None = None,
             adapt_every: int = ADAPT_EVERY_EVENTS) -> RawRun:
    """Run the compiled engine on a network: an open loop stage by stage, a closed loop (or any loop
    with ``events=True``) in the event loop.

    ``per_io``: return every IO's completion and latency (12 bytes per IO); otherwise the run is
    only reduced (per VM, per server, the latency sketch), plus every IO's latency while they fit in
    trace.EXACT_LATENCY_BYTES (exact percentiles). The stage passes always hold the IOs: an open loop's
    memory grows with its IOs; a closed loop's event loop holds its VMs' slots, the cache and the
    calendar, so its memory grows with the VMs and the cache, not with the IOs.

    ``bucket_s`` (the event calendar's first bucket width; default BUCKET_PROCESSOR_IOS processor
    service times) and ``adapt_every`` change how fast the event loop runs, never what it computes:
    the tests vary them to prove it.
    """
    t0 = time.perf_counter()
    n = len(net.is_write)
    vms = len(net.vm_start) - 1
    # Keys numbered ahead index a table of their own (8 bytes each); no cache needs none of it.
    dense = len(net.key) > 0 and net.cache_slots > 0
    lru = new_lru(net.cache_slots, net.keys, dense=True) if dense else new_lru(net.cache_slots, n)
    if not net.closed and not events:
        if net.new_units is None:
            raise ValueError("the open loop's stage passes need a network placed ahead (compile_network(place=True))")
        vm_of = np.repeat(np.arange(vms, dtype=np.int32), np.diff(net.vm_start))
        completion, latency = np.zeros(n), np.zeros(n, np.float32)
        bv, bp, bd, bins, reads, hits = _run_stages(
            net.issue_s, net.is_write, net.key, net.disk, net.cow_disk, net.vm_volume, net.volume_processor,
            net.processors, net.pool_disks, net.disks, net.write_disks, net.volume_s, net.processor_s,
            net.disk_s, net.service_s, net.util_bin_s, UTIL_BINS, vm_of, completion, latency, lru,
            # The volume pass reads the arrivals' times and VMs in arrival order, gathered here (numpy's
            # gather overlaps its reads; the pass's own, one IO at a time, did not): in t and gi_ids.
            net.arrival_order, net.issue_s[net.arrival_order], np.empty(n, id_dtype(n)), np.empty(n),
            vm_of[net.arrival_order].astype(id_dtype(n), copy=False))
        return reduced_run(net, completion, latency, net.new_units, (bv, bp, bd, bins), reads, hits, "fast",
                           time.perf_counter() - t0)
    counts = np.diff(net.vm_start)
    j_bits, s_bits = id_bits(vms, int(counts.max()) if vms else 1, net.queue_depth if net.closed else 1)
    arrivals = np.zeros(0, np.int64)
    if not net.closed:  # the arrival order as event ids (the open loop's slot is its IO: no slot bits)
        vm_of_arrival = np.repeat(np.arange(vms, dtype=np.int64), counts)[net.arrival_order]
        arrivals = (vm_of_arrival << j_bits) | (net.arrival_order - net.vm_start[vm_of_arrival])
    sized = n if per_io else 0
    completion, latency = np.zeros(sized), np.zeros(sized, np.float32)
    latency_only = np.zeros(n if not per_io and keeps_latencies(n) else 0, np.float32)
    sketch = new_sketch()
    slots = vms * net.queue_depth if net.closed else n
    work = loop_arrays(slots, net.vm_start, net.vm_volume)
    bv, bp, bd, bins, reads, hits, lo, hi, total = _run(
        net.start_s, net.issue_s, net.is_write, net.placement, unit_marks(net), net.key,
        net.volume_processor, net.processors, net.disks, net.write_disks, net.volume_s, net.processor_s, net.disk_s,
        net.service_s, net.queue_depth, net.closed, net.util_bin_s, UTIL_BINS, lru, arrivals, j_bits,
        s_bits if net.closed else 0, completion, latency, latency_only, sketch, work,
        BUCKET_PROCESSOR_IOS * net.processor_s / net.processors if bucket_s is None else bucket_s, adapt_every)
    last, new_units = work[4][:, VM_LAST].copy(), work[3][:, VM_UNITS].copy()
    return RawRun(completion, latency if per_io else latency_only, last, sketch, lo, hi, total, new_units,
                  bv, bp, bd, bins, int(reads), int(hits), "fast", time.perf_counter() - t0)
