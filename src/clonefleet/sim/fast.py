"""The fast engine: one compiled event loop over flat arrays (numba).

Every resource is a FIFO single server, so an IO's departure from it is known
the moment it arrives: ``departure = max(arrival, server free) + service``
(Lindley's recursion). The loop therefore keeps one pending event per IO in
flight, keyed ``(time, IO id)``; IO ids number the IOs VM by VM in issue order,
so ties at equal times go to the lower VM id, then the lower IO index (the
tie-break rule, shared with :mod:`clonefleet.sim.reference`). An IO's stages:

0. arrives at its volume (the per-volume limit N_v);
1. arrives at the volume's processor;
2. leaves the processor: looks up the cache (a read hit completes here); a read
   miss goes to its disk; a write goes to its p disks, after the copy-on-write
   read on the GI's disks when it has one;
3. the copy-on-write read is done: the p disk writes start;
4. completes. In a closed loop its VM issues its next IO at this moment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from clonefleet.sim.arraymodel import Network

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]

#: Resource classes of the utilisation time series, in row order.
UTIL_CLASSES: tuple[str, ...] = ("volumes", "processors", "pool disks", "GI disks")


@dataclass(frozen=True, eq=False)
class RawRun:
    """What an engine returns: per IO completion and latency, per server busy time, per bin busy time."""

    completion_s: FloatArray  # per IO
    latency_s: Float32Array  # per IO: completion - issue
    busy_volume_s: FloatArray
    busy_processor_s: FloatArray
    busy_disk_s: FloatArray
    busy_bins_s: FloatArray  # (4, bins): busy server-seconds of each class in each bin
    reads: int
    read_hits: int
    engine: str
    wall_s: float


# --- binary heap of (time, id), the smallest first -------------------------------------------

@numba.njit(cache=True, inline="always")
def _less(ta: float, ia: int, tb: float, ib: int) -> bool:
    return ta < tb or (ta == tb and ia < ib)


@numba.njit(cache=True, inline="always")
def _push(ht: FloatArray, hi: IntArray, size: int, t: float, i: int) -> None:
    k = size
    while k > 0:
        parent = (k - 1) >> 1
        if _less(t, i, ht[parent], hi[parent]):
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
        if child + 1 < last and _less(ht[child + 1], hi[child + 1], ht[child], hi[child]):
            child += 1
        if _less(ht[child], hi[child], t, i):
            ht[k] = ht[child]
            hi[k] = hi[child]
            k = child
        else:
            break
    ht[k] = t
    hi[k] = i


# --- LRU cache: chained hash table over slots, doubly linked list for recency -------------------

@numba.njit(cache=True, inline="always")
def _cache_access(key: int, ckey: IntArray, prev: Int32Array, nxt: Int32Array, chain: Int32Array,
                  bucket: Int32Array, state: IntArray) -> bool:
    """Look ``key`` up; make it the most recent; insert it (evicting the least recent) on a miss.

    ``state`` = [head (most recent), tail (least recent), used slots, hash shift].
    """
    slots = len(ckey)
    if slots == 0:
        return False
    h = np.int64((np.uint64(key) * np.uint64(11400714819323198485)) >> np.uint64(state[3]))
    s = bucket[h]
    while s >= 0:
        if ckey[s] == key:
            break
        s = chain[s]
    head = state[0]
    if s >= 0:  # hit: move to the front
        if s != head:
            p, n = prev[s], nxt[s]
            nxt[p] = n
            if n >= 0:
                prev[n] = p
            else:
                state[1] = p
            prev[s] = -1
            nxt[s] = head
            prev[head] = s
            state[0] = s
        return True
    if state[2] < slots:
        s = state[2]
        state[2] += 1
    else:  # evict the tail
        s = state[1]
        old = np.int64((np.uint64(ckey[s]) * np.uint64(11400714819323198485)) >> np.uint64(state[3]))
        c = bucket[old]
        if c == s:
            bucket[old] = chain[s]
        else:
            while chain[c] != s:
                c = chain[c]
            chain[c] = chain[s]
        p = prev[s]
        state[1] = p
        if p >= 0:
            nxt[p] = -1
        else:
            state[0] = -1
        head = state[0]
    ckey[s] = key
    chain[s] = bucket[h]
    bucket[h] = s
    prev[s] = -1
    nxt[s] = head
    if head >= 0:
        prev[head] = s
    else:
        state[1] = s
    state[0] = s
    return False


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
def _vm_of(vm_start: IntArray, i: int) -> int:
    lo, hi = 0, len(vm_start) - 2
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if vm_start[mid] <= i:
            lo = mid
        else:
            hi = mid - 1
    return lo


@numba.njit(cache=True, inline="always")
def _writes(i: int, t: float, disk: Int32Array, write_disks: int, pool: int, disk_free: FloatArray,
            busy_disk: FloatArray, bins: FloatArray, bin_s: float, svc: float) -> float:
    done = t
    for k in range(write_disks):
        d = (disk[i] + k) % pool
        end = _serve(disk_free, busy_disk, bins, 2, bin_s, d, t, svc)
        if end > done:
            done = end
    return done


@numba.njit(cache=True)
def _run(vm_start: IntArray, start_s: FloatArray, issue_s: FloatArray, is_write: npt.NDArray[np.int8],
         key: IntArray, disk: Int32Array, cow_disk: Int32Array, vm_volume: Int32Array,
         volume_processor: Int32Array, n_proc: int, pool: int, n_disks: int, write_disks: int, volume_s: float,
         processor_s: float, disk_s: float, cache_slots: int, service_s: FloatArray, q: int,
         closed: bool, bin_s: float, n_bins: int) -> tuple[FloatArray, Float32Array, FloatArray, FloatArray,
                                                          FloatArray, FloatArray, int, int]:
    n = len(is_write)
    vms = len(vm_start) - 1
    vm_of = np.empty(n, np.int32)
    for v in range(vms):
        vm_of[vm_start[v]:vm_start[v + 1]] = v
    per_io = service_s.shape[1] == n and n > 0
    completion = np.zeros(n)  # holds the issue time until the IO completes
    latency = np.zeros(n, np.float32)
    stage = np.zeros(n, np.int8)
    n_vol = len(volume_processor)
    vol_free = np.zeros(n_vol)
    proc_free = np.zeros(n_proc)
    disk_free = np.zeros(n_disks)
    busy_vol = np.zeros(n_vol)
    busy_proc = np.zeros(n_proc)
    busy_disk = np.zeros(n_disks)
    bins = np.zeros((4, n_bins))
    # cache
    ckey = np.zeros(cache_slots, np.int64)
    prev = np.full(cache_slots, -1, np.int32)
    nxt = np.full(cache_slots, -1, np.int32)
    chain = np.full(cache_slots, -1, np.int32)
    bits = 1
    while (1 << bits) < 2 * max(cache_slots, 1):
        bits += 1
    bucket = np.full(1 << bits, -1, np.int32)
    state = np.array([-1, -1, 0, 64 - bits], np.int64)
    # heap
    cap = vms * (q if closed else 1) + 16
    ht = np.empty(cap)
    hi = np.empty(cap, np.int64)
    size = 0
    next_io = vm_start[:-1].copy()
    for v in range(vms):
        first, end = vm_start[v], vm_start[v + 1]
        if closed:
            last = min(end, first + q)
            for i in range(first, last):
                _push(ht, hi, size, start_s[v], i)
                size += 1
            next_io[v] = last
        elif first < end:
            _push(ht, hi, size, issue_s[first], first)
            size += 1
            next_io[v] = first + 1
    reads = 0
    hits = 0
    while size > 0:
        t = ht[0]
        i = hi[0]
        _pop_fix(ht, hi, size)
        size -= 1
        while True:
            if size + 2 > len(ht):  # room for the (at most two) pushes below
                ht2 = np.empty(2 * len(ht))
                hi2 = np.empty(2 * len(ht), np.int64)
                ht2[:size] = ht[:size]
                hi2[:size] = hi[:size]
                ht, hi = ht2, hi2
            # Process the event (t, i); (nt, ni) is the one it sets off, ni < 0 when none.
            st = stage[i]
            done = False
            nt = t
            ni = i
            dsvc = service_s[2, i] if per_io else disk_s
            if st == 0:
                v = vm_of[i]
                if not closed and i + 1 < vm_start[v + 1]:
                    _push(ht, hi, size, issue_s[i + 1], i + 1)
                    size += 1
                completion[i] = t
                svc = service_s[0, i] if per_io else volume_s
                nt = _serve(vol_free, busy_vol, bins, 0, bin_s, vm_volume[v], t, svc)
                stage[i] = 1
            elif st == 1:
                v = vm_of[i]
                svc = service_s[1, i] if per_io else processor_s
                nt = _serve(proc_free, busy_proc, bins, 1, bin_s, volume_processor[vm_volume[v]], t, svc)
                stage[i] = 2
            elif st == 2:
                hit = _cache_access(key[i], ckey, prev, nxt, chain, bucket, state)
                if is_write[i] == 0:
                    reads += 1
                    if hit:
                        hits += 1
                        done = True
                    else:
                        d = disk[i]
                        nt = _serve(disk_free, busy_disk, bins, 2 if d < pool else 3, bin_s, d, t, dsvc)
                        stage[i] = 4
                elif cow_disk[i] >= 0:
                    nt = _serve(disk_free, busy_disk, bins, 3, bin_s, cow_disk[i], t, dsvc)
                    stage[i] = 3
                else:
                    nt = _writes(i, t, disk, write_disks, pool, disk_free, busy_disk, bins, bin_s, dsvc)
                    stage[i] = 4
            elif st == 3:
                nt = _writes(i, t, disk, write_disks, pool, disk_free, busy_disk, bins, bin_s, dsvc)
                stage[i] = 4
            else:
                done = True
            if done:
                latency[i] = t - completion[i]
                completion[i] = t
                stage[i] = 5
                ni = -1
                if closed:
                    v = vm_of[i]
                    if next_io[v] < vm_start[v + 1]:
                        ni = next_io[v]
                        next_io[v] += 1
            if ni < 0:
                break
            # The event set off comes next when it sorts before everything pending: run it now.
            if size == 0 or _less(nt, ni, ht[0], hi[0]):
                t = nt
                i = ni
                continue
            _push(ht, hi, size, nt, ni)
            size += 1
            break
    return completion, latency, busy_vol, busy_proc, busy_disk, bins, reads, hits


def n_bins_for(net: Network) -> int:
    """Bins of the utilisation series: enough for a long overload (the last bin takes the rest)."""
    return 4096


def run_fast(net: Network) -> RawRun:
    """Run the compiled event loop on a network."""
    t0 = time.perf_counter()
    out = _run(net.vm_start, net.start_s, net.issue_s, net.is_write, net.key, net.disk, net.cow_disk,
               net.vm_volume, net.volume_processor, net.processors, net.pool_disks, net.disks, net.write_disks,
               net.volume_s, net.processor_s, net.disk_s, net.cache_slots, net.service_s,
               net.queue_depth, net.closed, net.util_bin_s, n_bins_for(net))
    completion, latency, bv, bp, bd, bins, reads, hits = out
    return RawRun(completion, latency, bv, bp, bd, bins, int(reads), int(hits), "fast",
                  time.perf_counter() - t0)
