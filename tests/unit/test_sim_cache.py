"""The fast engine's LRU cache behaves as an OrderedDict-based LRU, hit for hit."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from clonefleet.sim.fast import _cache_access, _cache_set_access


@pytest.mark.parametrize(("slots", "universe"), [(1, 3), (7, 20), (64, 100), (500, 5000), (100, 100), (300, 100)])
def test_lru_matches_an_ordered_dict(slots: int, universe: int) -> None:
    rng = np.random.default_rng(slots)
    # Skewed keys (some hot, many cold); slots >= universe: the LRU never evicts and is kept as a set.
    keys = rng.zipf(1.3, 20_000) % universe
    lru = np.zeros((universe, 2), np.int32)
    state = np.array([-1, -1, 0, slots], np.int64)
    model: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for k in keys.tolist():
        expected = k in model
        if expected:
            model.move_to_end(k)
        else:
            model[k] = None
            if len(model) > slots:
                model.popitem(last=False)
        access = _cache_set_access(k, lru) if slots >= universe else _cache_access(k, lru, state)
        assert access == expected
        hits += expected
    assert 0 < hits < len(keys)
    assert sorted(np.flatnonzero(lru[:, 0] != 0).tolist()) == sorted(model)
    if slots < universe:  # the recency list, from the most recent, is the dict's order reversed
        order, k = [], int(state[0])
        while k >= 0:
            order.append(k)
            k = int(lru[k, 1])
        assert order == list(reversed(model))
