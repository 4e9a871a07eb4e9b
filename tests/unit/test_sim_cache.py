"""The fast engine's LRU cache behaves as an OrderedDict-based LRU, hit for hit."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from clonefleet.sim.fast import _cache_access


@pytest.mark.parametrize(("slots", "universe"), [(1, 3), (7, 20), (64, 100), (500, 5000)])
def test_lru_matches_an_ordered_dict(slots: int, universe: int) -> None:
    rng = np.random.default_rng(slots)
    # Skewed keys (some hot, many cold), large enough to exercise hashing and the backward shift.
    keys = (rng.zipf(1.3, 20_000) % universe).astype(np.int64) * 1_000_003 + (1 << 36)
    bits = 1
    while (1 << bits) < 2 * slots:
        bits += 1
    slot_rows = np.empty((slots, 4), np.int64)
    bucket = np.full(1 << bits, -1, np.int32)
    state = np.array([-1, -1, 0, 64 - bits], np.int64)
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
        assert _cache_access(k, slot_rows, bucket, state) == expected
        hits += expected
    assert 0 < hits < len(keys)
    assert sorted(slot_rows[: min(slots, int(state[2])), 0].tolist()) == sorted(model)
