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

import numba
import numpy as np
import numpy.typing as npt

from clonefleet.sim.arraymodel import DiskArray, Network
from clonefleet.sim.order import IdArray, id_dtype, less, sort_pairs

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


# --- LRU cache over the keys 0 .. keys-1 (arraymodel numbers them) -------------------------------
# lru[k] = [prev + 2, next]: key k's neighbours in the recency list (most recent first), -1 at an
# end; the first column is 0 while k is not cached, so the rows start as free zero pages.
# state = [head (most recent), tail (least recent), cached keys, slots]. When the slots hold every
# key of the run, nothing is ever evicted and the LRU is a set (_cache_set_access): a flag per key,
# the first column only, no recency list.

@numba.njit(cache=True, inline="always")
def _cache_set_access(k: int, lru: Int32Array) -> bool:
    """The LRU of a cache with a slot for every key: look ``k`` up, insert it on a miss."""
    if lru[k, 0] != 0:
        return True
    lru[k, 0] = 1
    return False


@numba.njit(cache=True, inline="always")
def _cache_access(k: int, lru: Int32Array, state: IntArray) -> bool:
    """Look key ``k`` up; make it the most recent; insert it (evicting the least recent) on a miss."""
    slots = state[3]
    if slots == 0:
        return False
    head = state[0]
    if lru[k, 0] != 0:  # hit: move to the front
        if k != head:
            p, n = lru[k, 0] - 2, lru[k, 1]
            lru[p, 1] = n
            if n >= 0:
                lru[n, 0] = p + 2
            else:
                state[1] = p
            lru[k, 0] = 1
            lru[k, 1] = head
            lru[head, 0] = k + 2
            state[0] = k
        return True
    if state[2] < slots:
        state[2] += 1
    else:  # evict the tail
        s = state[1]
        p = lru[s, 0] - 2
        lru[s, 0] = 0
        state[1] = p
        if p >= 0:
            lru[p, 1] = -1
        else:
            state[0] = -1
        head = state[0]
    lru[k, 0] = 1
    lru[k, 1] = head
    if head >= 0:
        lru[head, 0] = k + 2
    else:
        state[1] = k
    state[0] = k
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
def _writes(i: int, t: float, disk: DiskArray, write_disks: int, pool: int, disk_free: FloatArray,
            busy_disk: FloatArray, bins: FloatArray, bin_s: float, svc: float) -> float:
    done = t
    for k in range(write_disks):  # p consecutive pool disks, wrapping round (p <= pool)
        d = disk[i] + k
        if d >= pool:
            d -= pool
        end = _serve(disk_free, busy_disk, bins, 2, bin_s, d, t, svc)
        if end > done:
            done = end
    return done


@numba.njit(cache=True, inline="always")
def _cow_reads(i: int, t: float, cow_disk: DiskArray, disk_free: FloatArray, busy_disk: FloatArray,
               bins: FloatArray, bin_s: float, svc: float) -> float:
    """The copy-on-write reads of write ``i`` (one or two, on GI disks), issued together at ``t``:
    the time the last is done."""
    done = _serve(disk_free, busy_disk, bins, 3, bin_s, cow_disk[0, i], t, svc)
    if cow_disk[1, i] >= 0:
        done = max(done, _serve(disk_free, busy_disk, bins, 3, bin_s, cow_disk[1, i], t, svc))
    return done


@numba.njit(cache=True)
def _idle_array(n_vol: int, n_proc: int, n_disks: int, n_bins: int,
                cache_slots: int) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray,
                                           FloatArray, IntArray]:
    """The array before the storm: each server's free time and busy time (volumes, processors, disks),
    the busy time per resource class and bin, the LRU's state (head, tail, cached keys, slots)."""
    return (np.zeros(n_vol), np.zeros(n_proc), np.zeros(n_disks), np.zeros(n_vol), np.zeros(n_proc),
            np.zeros(n_disks), np.zeros((4, n_bins)), np.array([-1, -1, 0, cache_slots], np.int64))


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


@numba.njit(cache=True, inline="always")
def _come_back(now_k: int, per_s: float, ht: FloatArray, hi: IntArray, size: int, ring: IntArray,
               slot_t: FloatArray, slot_id: IntArray, slot_next: IntArray, free: IntArray, n_free: int,
               far_t: FloatArray, far_i: IntArray, far: int) -> tuple[int, int, int, int]:
    """Move the far heap's events of buckets before now_k + RING_BUCKETS to the current bucket's heap
    (bucket <= now_k) or to the ring. Returns the new (size, ring entries added, free slots, far)."""
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
            n_free -= 1
            sl = free[n_free]
            slot_t[sl], slot_id[sl], slot_next[sl] = t, i, ring[k & (RING_BUCKETS - 1)]
            ring[k & (RING_BUCKETS - 1)] = sl
            added += 1
    return size, added, n_free, far


@numba.njit(cache=True)
def _run(vm_start: IntArray, start_s: FloatArray, issue_s: FloatArray, is_write: npt.NDArray[np.int8],
         key: Int32Array, disk: DiskArray, cow_disk: DiskArray, vm_volume: Int32Array,
         volume_processor: Int32Array, n_proc: int, pool: int, n_disks: int, write_disks: int, volume_s: float,
         processor_s: float, disk_s: float, service_s: FloatArray, q: int, closed: bool, bin_s: float,
         n_bins: int, vm_of: Int32Array, completion: FloatArray, latency: Float32Array,
         stage: npt.NDArray[np.int8], lru: Int32Array, cache_slots: int, ht: FloatArray,
         hi: IntArray, order: IdArray, bucket_s: float,
         adapt_every: int) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, int, int]:
    """The event loop; the per-IO arrays, the cache and the heap come in allocated (see run_fast),
    and an open loop's arrivals in their order (``order``, empty in a closed loop).

    Pending events wait in a calendar queue: time is cut in buckets of ``bucket_s``; the events of
    the current bucket sit in a binary heap (ht, hi: a few dozen of them), those of the next
    RING_BUCKETS - 1 buckets in unsorted lists (a ring), later ones in a second heap. An event
    whose bucket is ahead costs a list insertion instead of a heap operation on every pending
    event; each bucket is heaped when its turn comes. A bucket's times all precede the next
    bucket's, so the events still come out in (time, IO id) order. Every ``adapt_every`` events
    the width is doubled or halved to keep BUCKET_MIN_EVENTS..BUCKET_MAX_EVENTS per bucket.
    """
    n = len(is_write)
    vms = len(vm_start) - 1
    per_io = service_s.shape[1] == n and n > 0
    vol_free, proc_free, disk_free, busy_vol, busy_proc, busy_disk, bins, state = _idle_array(
        len(volume_processor), n_proc, n_disks, n_bins, cache_slots)
    as_set = 0 < len(lru) <= cache_slots
    has_cow = cow_disk.shape[1] > 0  # (2, 0): no IO of the run copies on write
    # The calendar: the current bucket's heap (ht, hi, size), the ring of lists of slots, the far heap.
    cap = len(ht)
    bucket_s = min(max(bucket_s, BUCKET_S_RANGE[0]), BUCKET_S_RANGE[1])
    per_s = 1.0 / bucket_s
    mask = RING_BUCKETS - 1
    ring = np.full(RING_BUCKETS, -1, np.int64)  # the first slot of each bucket's list
    in_ring = 0
    slot_t = np.empty(cap)
    slot_id = np.empty(cap, np.int64)
    slot_next = np.empty(cap, np.int64)
    free = np.arange(cap)
    n_free = cap
    far_t = np.empty(cap)
    far_i = np.empty(cap, np.int64)
    far = 0
    size = 0
    now_k = 0  # the current bucket
    next_io = vm_start[:-1].copy()
    for v in range(vms):
        first, end = vm_start[v], vm_start[v + 1]
        if closed:
            last = min(end, first + q)
            for i in range(first, last):
                _push(far_t, far_i, far, start_s[v], i)  # the first bucket is read from the far heap
                far += 1
            next_io[v] = last
    if far > 0:
        now_k = _bucket(far_t[0], per_s)
    # Open loop: arrivals come from their presorted order, not the calendar.
    n_arr = len(order)
    ai = 0
    ta = issue_s[order[0]] if n_arr > 0 else np.inf
    ia = order[0] if n_arr > 0 else -1
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
                        _push(far_t, far_i, far, slot_t[sl], slot_id[sl])
                        far += 1
                        free[n_free] = sl
                        n_free += 1
                        sl = slot_next[sl]
                in_ring = 0
                latest = t
                for j in range(size):
                    latest = max(latest, ht[j])
                now_k = _bucket(latest, per_s)
                size, added, n_free, far = _come_back(now_k, per_s, ht, hi, size, ring, slot_t, slot_id, slot_next,
                                                      free, n_free, far_t, far_i, far)
                in_ring += added
        # The current bucket empty: move to the next bucket that holds events (ring or far heap).
        while size == 0 and (in_ring > 0 or far > 0):
            passed += 1
            if in_ring == 0:
                now_k = max(now_k, _bucket(far_t[0], per_s))
            else:
                now_k += 1
            if far > 0:
                size, added, n_free, far = _come_back(now_k, per_s, ht, hi, size, ring, slot_t, slot_id, slot_next,
                                                      free, n_free, far_t, far_i, far)
                in_ring += added
            sl = ring[now_k & mask]
            ring[now_k & mask] = -1
            while sl >= 0:
                _push(ht, hi, size, slot_t[sl], slot_id[sl])
                size += 1
                in_ring -= 1
                free[n_free] = sl
                n_free += 1
                sl = slot_next[sl]
        if size == 0 and ai >= n_arr:
            break
        if ai < n_arr and (size == 0 or less(ta, ia, ht[0], hi[0])):
            t = ta
            i = ia
            ai += 1
            if ai < n_arr:
                ia = order[ai]
                ta = issue_s[ia]
            else:
                ta = np.inf
                ia = -1
            if size == 0 and in_ring == 0 and far == 0:
                now_k = _bucket(t, per_s)  # nothing pending: the calendar starts again at this arrival
        else:
            t = ht[0]
            i = hi[0]
            _pop_fix(ht, hi, size)
            size -= 1
        while True:
            # Process the event (t, i); (nt, ni) is the one it sets off, ni < 0 when none.
            events += 1
            st = stage[i]
            done = False
            nt = t
            ni = i
            dsvc = service_s[2, i] if per_io else disk_s
            if st == 0:
                v = vm_of[i]
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
                hit = _cache_set_access(key[i], lru) if as_set else _cache_access(key[i], lru, state)
                if is_write[i] == 0:
                    reads += 1
                    if hit:
                        hits += 1
                        done = True
                    else:
                        d = disk[i]
                        nt = _serve(disk_free, busy_disk, bins, 2 if d < pool else 3, bin_s, d, t, dsvc)
                        stage[i] = 4
                elif has_cow and cow_disk[0, i] >= 0:
                    nt = _cow_reads(i, t, cow_disk, disk_free, busy_disk, bins, bin_s, dsvc)
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
            k = _bucket(nt, per_s)
            # The event set off comes next when it sorts before everything pending: run it now.
            # (With the current bucket empty, everything pending lies in later buckets.)
            if (less(nt, ni, ht[0], hi[0]) if size > 0 else k <= now_k) and (ia < 0 or less(nt, ni, ta, ia)):
                t = nt
                i = ni
                continue
            if k <= now_k:
                _push(ht, hi, size, nt, ni)
                size += 1
            elif k < now_k + RING_BUCKETS:
                n_free -= 1
                sl = free[n_free]
                slot_t[sl], slot_id[sl], slot_next[sl] = nt, ni, ring[k & mask]
                ring[k & mask] = sl
                in_ring += 1
            else:
                _push(far_t, far_i, far, nt, ni)
                far += 1
            break
    return busy_vol, busy_proc, busy_disk, bins, reads, hits


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


@numba.njit(cache=True)
def _run_stages(issue_s: FloatArray, is_write: npt.NDArray[np.int8], key: Int32Array, disk: DiskArray,
                cow_disk: DiskArray, vm_volume: Int32Array, volume_processor: Int32Array, n_proc: int,
                pool: int, n_disks: int, write_disks: int, volume_s: float, processor_s: float,
                disk_s: float, service_s: FloatArray, bin_s: float, n_bins: int, vm_of: Int32Array,
                completion: FloatArray, latency: Float32Array, lru: Int32Array, cache_slots: int,
                order: IdArray, t: FloatArray, ids: IdArray, gi_t: FloatArray,
                gi_ids: IdArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, int, int]:
    """The open loop, one pass per stage; the same completions as the event loop, IO for IO.

    ``order`` is the arrival order; ``t``, ``ids``, ``gi_t`` and ``gi_ids`` are scratch lists of one
    entry per IO (see run_fast)."""
    n = len(is_write)
    per_io = service_s.shape[1] == n and n > 0
    vol_free, proc_free, disk_free, busy_vol, busy_proc, busy_disk, bins, state = _idle_array(
        len(volume_processor), n_proc, n_disks, n_bins, cache_slots)
    as_set = 0 < len(lru) <= cache_slots
    has_cow = cow_disk.shape[1] > 0  # (2, 0): no IO of the run copies on write
    for k in range(n):  # volumes
        i = order[k]
        ids[k] = i
        svc = service_s[0, i] if per_io else volume_s
        t[k] = _serve(vol_free, busy_vol, bins, 0, bin_s, vm_volume[vm_of[i]], issue_s[i], svc)
    sort_pairs(t, ids)
    for k in range(n):  # processors
        i = ids[k]
        svc = service_s[1, i] if per_io else processor_s
        t[k] = _serve(proc_free, busy_proc, bins, 1, bin_s, volume_processor[vm_volume[vm_of[i]]], t[k], svc)
    sort_pairs(t, ids)
    # The cache, in that order: a read hit completes; the rest go on to the GI disks (read misses of
    # GI data, copy-on-write reads) or to the pool (private read misses, writes), in the same order;
    # the pool's list is kept in t, ids (it is never longer than what has been read of them).
    ng = npool = 0
    reads = hits = 0
    for k in range(n):
        i = ids[k]
        hit = _cache_set_access(key[i], lru) if as_set else _cache_access(key[i], lru, state)
        if is_write[i] == 0:
            reads += 1
            if hit:
                hits += 1
                completion[i] = t[k]
                continue
        if (is_write[i] == 0 and disk[i] >= pool) or (is_write[i] != 0 and has_cow and cow_disk[0, i] >= 0):
            gi_t[ng], gi_ids[ng] = t[k], i
            ng += 1
        else:
            t[npool], ids[npool] = t[k], i
            npool += 1
    ncow = 0  # the copy-on-write reads' departures go back into gi_t, gi_ids: entry ncow <= k is read
    for k in range(ng):  # GI disks
        i = gi_ids[k]
        dsvc = service_s[2, i] if per_io else disk_s
        if is_write[i] == 0:
            completion[i] = _serve(disk_free, busy_disk, bins, 3, bin_s, disk[i], gi_t[k], dsvc)
        else:
            gi_t[ncow] = _cow_reads(i, gi_t[k], cow_disk, disk_free, busy_disk, bins, bin_s, dsvc)
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
            completion[i] = _writes(i, t[k], disk, write_disks, pool, disk_free, busy_disk, bins, bin_s, dsvc)
    for i in range(n):
        latency[i] = completion[i] - issue_s[i]
    return busy_vol, busy_proc, busy_disk, bins, reads, hits


#: Bins of the utilisation series: enough for a long overload (the last bin takes the rest).
UTIL_BINS = 4096


def run_fast(net: Network, events: bool = False, *, bucket_s: float | None = None,
             adapt_every: int = ADAPT_EVERY_EVENTS) -> RawRun:
    """Run the compiled engine on a network: an open loop stage by stage, a closed loop (or any loop
    with ``events=True``) in the event loop.

    ``bucket_s`` (the event calendar's first bucket width; default BUCKET_PROCESSOR_IOS processor
    service times) and ``adapt_every`` change how fast the event loop runs, never what it computes:
    the tests vary them to prove it.

    The big arrays are allocated here, by numpy, which asks the kernel for huge pages: the
    cache's rows and the per-IO state are touched at random, and huge pages spare the TLB (and
    the page faults of fresh memory, one per 4 KiB otherwise). Arrays made by np.empty cost no
    memory until they are written.
    """
    t0 = time.perf_counter()
    n = len(net.is_write)
    vms = len(net.vm_start) - 1
    vm_of = np.repeat(np.arange(vms, dtype=np.int32), np.diff(net.vm_start))
    completion = np.zeros(n)  # holds the issue time until the IO completes
    latency = np.zeros(n, np.float32)
    # One row per key; a cache with a slot for every key is kept as a set, which needs one column.
    lru = np.zeros((net.cache_keys if net.cache_slots else 0, 1 if net.cache_slots >= net.cache_keys else 2),
                   np.int32)
    if not net.closed and not events:
        bv, bp, bd, bins, reads, hits = _run_stages(
            net.issue_s, net.is_write, net.key, net.disk, net.cow_disk, net.vm_volume, net.volume_processor,
            net.processors, net.pool_disks, net.disks, net.write_disks, net.volume_s, net.processor_s,
            net.disk_s, net.service_s, net.util_bin_s, UTIL_BINS, vm_of, completion, latency, lru, net.cache_slots,
            net.arrival_order, np.empty(n), np.empty(n, id_dtype(n)), np.empty(n), np.empty(n, id_dtype(n)))
        return RawRun(completion, latency, bv, bp, bd, bins, int(reads), int(hits), "fast",
                      time.perf_counter() - t0)
    stage = np.zeros(n, np.int8)
    # Every IO has at most one pending event: a closed loop has at most q per VM in flight, an
    # open loop at most all of its IOs (np.empty: pages never touched cost no memory).
    cap = vms * net.queue_depth + 16 if net.closed else n + 16
    ht = np.empty(cap)
    hi = np.empty(cap, np.int64)
    bv, bp, bd, bins, reads, hits = _run(
        net.vm_start, net.start_s, net.issue_s, net.is_write, net.key, net.disk, net.cow_disk,
        net.vm_volume, net.volume_processor, net.processors, net.pool_disks, net.disks, net.write_disks,
        net.volume_s, net.processor_s, net.disk_s, net.service_s, net.queue_depth, net.closed,
        net.util_bin_s, UTIL_BINS, vm_of, completion, latency, stage, lru, net.cache_slots, ht, hi,
        net.arrival_order, BUCKET_PROCESSOR_IOS * net.processor_s / net.processors if bucket_s is None else bucket_s,
        adapt_every)
    return RawRun(completion, latency, bv, bp, bd, bins, int(reads), int(hits), "fast",
                  time.perf_counter() - t0)
