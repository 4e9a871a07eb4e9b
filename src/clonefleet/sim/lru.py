"""The array's read cache: a least-recently-used set of keys, its memory bounded by its slots.

A key is any integer >= 0 (the engines use ``owner * blocks + block``, see
:mod:`clonefleet.sim.arraymodel`). The cache holds at most ``slots`` keys in
*entries* (key, previous, next: the recency list, the most recent first); an
open-addressing hash index (linear probing, at most half full) finds a key's
entry. On a miss with every slot taken, the least recent entry is evicted: its
index cell is removed by backward-shift deletion (no tombstones), its entry is
reused. Memory is 16 bytes per slot for the entries plus 16 bytes per index
cell (two per slot): bounded by the cache's capacity, never by the number of
distinct keys a storm touches.

Everything is in one tuple of arrays (:func:`new_lru`) so the compiled engines
pass it around as a value. ``test_sim_cache`` holds it equal to an
``OrderedDict`` LRU, hit for hit.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]
#: (index: 2 int64 per cell, key then entry, key -1 when empty; entry keys; entry previous, next
#: (-1 at an end); state = [head (most recent entry), tail, entries in use, slots, index mask])
Lru = tuple[IntArray, IntArray, Int32Array, Int32Array, IntArray]


def new_lru(slots: int, max_keys: int) -> Lru:
    """An empty cache of ``slots`` keys; ``max_keys``: how many distinct keys can ever come (the
    entries and the index need no more room than that)."""
    slots = max(0, int(slots))
    room = max(1, min(slots, int(max_keys)))
    cells = 4
    while cells < 2 * room:
        cells *= 2
    index = np.full(2 * cells, -1, np.int64)
    return (index, np.empty(room, np.int64), np.empty(room, np.int32), np.empty(room, np.int32),
            np.array([-1, -1, 0, slots, cells - 1], np.int64))


@numba.njit(cache=True, inline="always")
def _cell(key: int, mask: int) -> int:
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the high bits mix best
    return int(h >> np.uint64(32)) & mask


@numba.njit(cache=True, inline="always")
def _unlink(e: int, prev: Int32Array, nxt: Int32Array, state: IntArray) -> None:
    p, n = prev[e], nxt[e]
    if p >= 0:
        nxt[p] = n
    else:
        state[0] = n
    if n >= 0:
        prev[n] = p
    else:
        state[1] = p


@numba.njit(cache=True, inline="always")
def _link_first(e: int, prev: Int32Array, nxt: Int32Array, state: IntArray) -> None:
    head = state[0]
    prev[e] = -1
    nxt[e] = head
    if head >= 0:
        prev[head] = e
    else:
        state[1] = e
    state[0] = e


@numba.njit(cache=True, inline="always")
def _remove(key: int, index: IntArray, mask: int) -> None:
    """Remove ``key`` (present) from the index: backward-shift deletion keeps every probe run whole."""
    c = _cell(key, mask)
    while index[2 * c] != key:
        c = (c + 1) & mask
    hole = c
    c = (c + 1) & mask
    while index[2 * c] >= 0:
        home = _cell(index[2 * c], mask)
        # The entry at c may move to the hole when its home is not in (hole, c] (cyclically).
        if (c - home) & mask >= (c - hole) & mask:
            index[2 * hole] = index[2 * c]
            index[2 * hole + 1] = index[2 * c + 1]
            hole = c
        c = (c + 1) & mask
    index[2 * hole] = -1


@numba.njit(cache=True)
def lru_access(key: int, lru: Lru) -> bool:
    """Look ``key`` up: a hit makes it the most recent; a miss inserts it (evicting the least recent
    when the slots are full). True on a hit."""
    index, keys, prev, nxt, state = lru
    slots = state[3]
    if slots == 0:
        return False
    mask = state[4]
    c = _cell(key, mask)
    while True:
        k = index[2 * c]
        if k == key:
            e = index[2 * c + 1]
            if e != state[0]:
                _unlink(e, prev, nxt, state)
                _link_first(e, prev, nxt, state)
            return True
        if k < 0:
            break
        c = (c + 1) & mask
    if state[2] < slots and state[2] < len(keys):
        e = state[2]
        state[2] += 1
    else:  # evict the least recent; its entry takes the new key
        e = state[1]
        _unlink(e, prev, nxt, state)
        _remove(keys[e], index, mask)
        c = _cell(key, mask)
        while index[2 * c] >= 0:
            c = (c + 1) & mask
    keys[e] = key
    index[2 * c] = key
    index[2 * c + 1] = e
    _link_first(e, prev, nxt, state)
    return False


def lru_keys_by_recency(lru: Lru) -> list[int]:
    """The cached keys, the most recent first (for tests)."""
    _, keys, _, nxt, state = lru
    out, e = [], int(state[0])
    while e >= 0:
        out.append(int(keys[e]))
        e = int(nxt[e])
    return out
