"""The engines' LRU cache behaves as an OrderedDict-based LRU, hit for hit, in memory bounded by its slots."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from clonefleet.sim.lru import lru_access, lru_keys_by_recency, new_lru


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize(("slots", "universe"), [(1, 3), (7, 20), (64, 100), (500, 5000), (100, 100), (300, 100),
                                                 (0, 10)])
def test_lru_matches_an_ordered_dict(slots: int, universe: int, dense: bool) -> None:
    rng = np.random.default_rng(slots)
    # Skewed keys (some hot, many cold): dense numbers 0..universe-1 (each at its own cell), or spread
    # over a wide range (hashed) so that probe runs collide and wrap.
    keys = rng.zipf(1.3, 20_000) % universe
    if not dense:
        keys = keys * 7_919 + (1 << 40)
    lru = new_lru(slots, universe, dense)
    model: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for k in keys.tolist():
        expected = k in model
        if expected:
            model.move_to_end(k)
        elif slots:
            model[k] = None
            if len(model) > slots:
                model.popitem(last=False)
        assert lru_access(k, lru) == expected
        hits += expected
    assert (0 < hits < len(keys)) if slots else hits == 0
    if slots >= universe:  # a slot for every key: kept as a set, no recency order
        assert sorted(lru_keys_by_recency(lru)) == sorted(model)
    else:
        assert lru_keys_by_recency(lru) == list(reversed(model))
    # The table holds exactly the cached keys: dense, at their own cells; hashed, in the key column.
    held = np.flatnonzero(lru[0] >= 0) if dense else lru[0][0::2][lru[0][0::2] >= 0]
    assert sorted(held.tolist()) == sorted(model)


def test_the_cache_memory_is_bounded_by_its_slots_not_by_the_keys_it_sees() -> None:
    lru = new_lru(1000, 10**9)
    size = sum(a.nbytes for a in lru)
    for k in range(200_000):
        lru_access(k * 4_096 + 3, lru)
    assert sum(a.nbytes for a in lru) == size <= 1000 * 96 + 64  # per slot two cells (16 bytes), two records (8)
    assert len(lru_keys_by_recency(lru)) == 1000
