"""The array's read cache: a least-recently-used set of keys, its memory bounded by its slots.

A key is any integer >= 0 (the engines use ``owner * blocks + block``, see
:mod:`clonefleet.sim.arraymodel`). The cached keys sit in an open-addressing hash
table (linear probing, at most half full), each cell a key and the *stamp* of its
last access. Every access appends the key to a ring of access records (the stamp
is the record's position), so the ring, read from its oldest record, lists the
accesses in order: the least recent key is the first whose record is still its
last access (its cell holds that stamp); older records of keys accessed since are
skipped. On a miss with every slot taken that key is evicted and its cell emptied
by backward-shift deletion (no tombstones). When the ring fills, the records that
are no key's last access are dropped (at least half of it). This is exact LRU (a
linked recency list gives the same hits) but touches fewer random cache lines per
access: the key's cell, and on average one more cell when records are read back.
When the cache has a slot for every key that can come, nothing is ever evicted
and no ring is kept (a set; of dense keys, one cell per key indexed by the key,
at most 8 bytes per slot). Dense keys (numbered 0, 1, 2, ... in the order of
their first access, VM by VM) need no hashing at all: the table is one stamp per
key, indexed by the key (-1: not cached), so a VM's keys sit together in memory
and an access touches the key's own cell; the ring works as above. That costs 8
bytes per distinct key, so it is for storms whose keys were numbered ahead.

Memory, keys hashed: the table has two to four cells per slot (a power of two at
least twice the slots, 16 bytes each) and the ring as many records (8 bytes each),
48 to 96 bytes per slot, or as much per key that can come when that is less:
bounded by the cache's capacity, never by the number of distinct keys a storm
touches. Dense keys: 8 bytes per key that can come, plus the ring. Everything is in
three arrays (:func:`new_lru`) that the compiled engines pass around as one value.
``test_sim_cache`` holds it equal to an ``OrderedDict`` LRU, hit for hit.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from clonefleet.sim.prefetch import prefetch

IntArray = npt.NDArray[np.int64]
#: (cells: 2 int64 per cell, the key (-1: empty) then the stamp of its last access; the ring of access
#: records (keys; the record at position p is ring[p & ring mask]); state = [position of the oldest
#: record, position of the next, keys cached, slots, cell mask, ring mask, 1 when a set, 1 when dense])
Lru = tuple[IntArray, IntArray, IntArray]
#: An eviction starts loading the cell of the ring record this many places ahead (a later eviction's).
EVICT_AHEAD = 8


def new_lru(slots: int, max_keys: int, dense: bool = False) -> Lru:
    """An empty cache of ``slots`` keys; ``max_keys``: how many distinct keys can ever come (the table
    needs no more room than that, and a cache with a slot for each never evicts: a set). ``dense``:
    the keys are the numbers 0 .. max_keys - 1 (clonefleet.sim.arraymodel numbers them in the order of
    first access): the table is one cell per key, indexed by the key (a set's flag, or the stamp of
    the key's last access), so a VM's keys, numbered together, sit together in it; 8 bytes per key
    that can come, whatever the slots."""
    slots = max(0, int(slots))
    room = max(1, min(slots, int(max_keys)))
    as_set = slots >= max_keys
    cells = 4
    while cells < 2 * room:
        cells *= 2
    records = 0 if as_set else cells
    if dense:  # one cell per key, indexed by the key itself (no probing): a set's flag, or the last access's stamp
        return (np.full(max(int(max_keys), 1), -1, np.int64), np.empty(records, np.int64),
                np.array([0, 0, 0, slots, 0, records - 1, 1 if as_set else 0, 1], np.int64))
    return (np.full(2 * cells, -1, np.int64), np.empty(records, np.int64),
            np.array([0, 0, 0, slots, cells - 1, records - 1, 1 if as_set else 0, 0], np.int64))


@numba.njit(cache=True, inline="always")
def _home(key: int, state: IntArray) -> int:
    """A key's first cell: Fibonacci hashing (the high bits mix best)."""
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return int(h >> np.uint64(32)) & int(state[4])


@numba.njit(cache=True, inline="always")
def _find(cells: IntArray, key: int, state: IntArray) -> int:
    """The cell of ``key``, or the empty cell where it would go."""
    mask = state[4]
    c = _home(key, state)
    while cells[2 * c] >= 0 and cells[2 * c] != key:
        c = (c + 1) & mask
    return c


@numba.njit(cache=True, inline="always")
def _empty(cells: IntArray, hole: int, state: IntArray) -> None:
    """Empty cell ``hole``: backward-shift deletion keeps every probe run whole."""
    mask = state[4]
    c = (hole + 1) & mask
    while cells[2 * c] >= 0:
        home = _home(cells[2 * c], state)
        # The key at c may move to the hole when its home is not in (hole, c] (cyclically).
        if (c - home) & mask >= (c - hole) & mask:
            cells[2 * hole] = cells[2 * c]
            cells[2 * hole + 1] = cells[2 * c + 1]
            hole = c
        c = (c + 1) & mask
    cells[2 * hole] = -1


@numba.njit(cache=True, inline="always")
def _record(cells: IntArray, ring: IntArray, state: IntArray, c: int) -> None:
    """Append the access of the key in cell ``c`` to the ring; drop the ring's stale records when full."""
    rmask = state[5]
    if state[1] - state[0] == len(ring):
        w = state[0]
        for p in range(state[0], state[1]):  # keep each key's last access, in order, stamps updated
            k = ring[p & rmask]
            d = _find(cells, k, state)
            if cells[2 * d + 1] == p:
                ring[w & rmask] = k
                cells[2 * d + 1] = w
                w += 1
        state[1] = w
    cells[2 * c + 1] = state[1]
    ring[state[1] & rmask] = cells[2 * c]
    state[1] += 1


@numba.njit(cache=True, inline="always")
def _record_dense(stamps: IntArray, ring: IntArray, state: IntArray, key: int) -> None:
    """_record for dense keys: ``stamps[k]`` is key k's last access (-1: not cached)."""
    rmask = state[5]
    if state[1] - state[0] == len(ring):
        w = state[0]
        for p in range(state[0], state[1]):
            k = ring[p & rmask]
            if stamps[k] == p:
                ring[w & rmask] = k
                stamps[k] = w
                w += 1
        state[1] = w
    stamps[key] = state[1]
    ring[state[1] & rmask] = key
    state[1] += 1


@numba.njit(cache=True, inline="always")
def _dense_access(key: int, stamps: IntArray, ring: IntArray, state: IntArray) -> bool:
    """lru_access for dense keys: the key is its own cell."""
    if state[6]:  # a set
        if stamps[key] >= 0:
            return True
        stamps[key] = 1
        return False
    if stamps[key] >= 0:
        _record_dense(stamps, ring, state, key)
        return True
    if state[2] == state[3]:  # evict the least recent: the first record that is still its key's last access
        while True:
            p = state[0]
            state[0] += 1
            ahead = p + EVICT_AHEAD
            if ahead < state[1]:  # the stamp a later eviction reads: loading while other events run
                prefetch(stamps, ring[ahead & state[5]])
            k = ring[p & state[5]]
            if stamps[k] == p:
                stamps[k] = -1
                break
    else:
        state[2] += 1
    _record_dense(stamps, ring, state, key)
    return False


@numba.njit(cache=True, inline="always")
def lru_prefetch(key: int, lru: Lru) -> None:
    """Start loading the cell ``lru_access(key, lru)`` will read first (an engine asks when it places
    the IO, two stages before its lookup). Changes nothing."""
    cells, _, state = lru
    if state[3] != 0:
        prefetch(cells, key if state[7] else 2 * _home(key, state))


@numba.njit(cache=True)
def lru_access(key: int, lru: Lru) -> bool:
    """Look ``key`` up: a hit makes it the most recent; a miss inserts it (evicting the least recent
    when the slots are full). True on a hit."""
    cells, ring, state = lru
    if state[3] == 0:
        return False
    if state[7]:
        return _dense_access(key, cells, ring, state)
    c = _find(cells, key, state)
    if cells[2 * c] == key:
        if state[6] == 0:
            _record(cells, ring, state, c)
        return True
    if state[6] == 0 and state[2] == state[3]:  # evict the least recent, then find the new key's cell again
        while True:
            p = state[0]
            state[0] += 1
            ahead = p + EVICT_AHEAD
            if ahead < state[1]:
                prefetch(cells, 2 * _home(ring[ahead & state[5]], state))
            d = _find(cells, ring[p & state[5]], state)
            if cells[2 * d + 1] == p:
                _empty(cells, d, state)
                break
        c = _find(cells, key, state)
    else:
        state[2] += 1
    cells[2 * c] = key
    if state[6] == 0:
        _record(cells, ring, state, c)
    return False


def lru_keys_by_recency(lru: Lru) -> list[int]:
    """The cached keys, the most recent first (a set's in no particular order; for tests)."""
    cells, _, state = lru
    if state[7]:
        cached = np.flatnonzero(cells >= 0)
        return [int(k) for k in (cached if state[6] else cached[np.argsort(-cells[cached], kind="stable")])]
    keys = [int(k) for k in cells[0::2] if k >= 0]
    if state[6]:
        return keys
    stamp = {int(cells[2 * c]): int(cells[2 * c + 1]) for c in range(len(cells) // 2) if cells[2 * c] >= 0}
    return sorted(keys, key=lambda k: -stamp[k])
