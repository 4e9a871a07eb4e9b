"""The radix-select percentiles equal numpy's, and the ranks they find are the sorted values, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from clonefleet.sim.quantiles import (
    SKETCH_RELATIVE_ERROR,
    _ranked,
    new_sketch,
    percentiles,
    sketch_add,
    sketch_add_all,
    sketch_percentiles,
)

QS = [0.0, 0.1, 12.5, 50.0, 95.0, 99.0, 99.9, 100.0]


@given(hnp.arrays(np.float32, st.integers(1, 400), elements=st.floats(allow_nan=False, width=32)))
def test_every_rank_is_the_sorted_value(x: np.ndarray) -> None:
    ranked = _ranked(x, np.arange(len(x)))
    want = np.sort(x)
    np.testing.assert_array_equal(ranked, want)  # -0.0 and 0.0 compare equal; any other value bit for bit
    nonzero = want != 0
    np.testing.assert_array_equal(ranked[nonzero].view(np.uint32), want[nonzero].view(np.uint32))


@pytest.mark.parametrize("case", ["exponential", "ties", "zeros", "one", "signed", "huge and tiny"])
def test_percentiles_equal_numpys(case: str) -> None:
    rng = np.random.default_rng(11)
    x = {
        "exponential": rng.exponential(2e-3, 200_001),
        "ties": np.round(rng.random(30_000), 2),
        "zeros": np.zeros(17),
        "one": np.array([0.25]),
        "signed": rng.standard_normal(5_000),
        "huge and tiny": np.concatenate([rng.random(1000) * 1e-30, rng.random(1000) * 1e30]),
    }[case].astype(np.float32)
    np.testing.assert_allclose(percentiles(x, QS), np.percentile(x, QS), rtol=1e-6, atol=0)


def test_nan_is_left_to_numpy_and_bad_requests_refused() -> None:
    x = np.array([1.0, np.nan, 3.0], np.float32)
    assert np.isnan(percentiles(x, [50.0])).all()
    with pytest.raises(ValueError, match="no values"):
        percentiles(np.zeros(0, np.float32), [50.0])
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentiles(np.ones(3, np.float32), [101.0])


@pytest.mark.parametrize("case", ["exponential", "ties", "one", "lognormal wide", "two clusters"])
def test_the_sketch_is_within_its_stated_bound_of_numpys_percentiles(case: str) -> None:
    rng = np.random.default_rng(5)
    x = {
        "exponential": rng.exponential(2e-3, 300_001),
        "ties": np.round(rng.random(30_000) + 0.01, 2),
        "one": np.array([0.25]),
        "lognormal wide": rng.lognormal(-6.0, 4.0, 100_000),
        "two clusters": np.concatenate([rng.random(1000) * 1e-6 + 1e-6, rng.random(10) * 1e3 + 1.0]),
    }[case].astype(np.float32)
    sketch = new_sketch()
    sketch_add_all(sketch, x[: len(x) // 2])
    scratch = np.zeros(1, np.float32)
    for v in x[len(x) // 2:].tolist():  # one by one, as the engine counts
        sketch_add(sketch, scratch, v)
    want = np.percentile(x, QS)
    got = sketch_percentiles(sketch, QS)
    assert np.all(np.abs(got - want) <= SKETCH_RELATIVE_ERROR * want)
    if case == "exponential":  # the bound is not loose by orders of magnitude: the sketch is not exact
        assert np.any(got != want) and np.max(np.abs(got - want) / want) > SKETCH_RELATIVE_ERROR / 100


def test_the_sketch_keeps_its_bound_on_the_edges_of_its_bins() -> None:
    # Powers of two sit on a bin's lower edge, the farthest from its middle: the bound is reached
    # there, so the middle must be computed without rounding (a float32 sum went one ulp past it).
    rng = np.random.default_rng(11)
    for _ in range(300):
        x = (2.0 ** rng.integers(-30, 10, int(rng.integers(1, 20)))).astype(np.float32)
        sketch = new_sketch()
        sketch_add_all(sketch, x)
        qs = [*rng.uniform(0.0, 100.0, 5).tolist(), 0.0, 50.0, 100.0]
        want = np.percentile(x.astype(np.float64), qs)
        assert np.all(np.abs(sketch_percentiles(sketch, qs) - want) <= SKETCH_RELATIVE_ERROR * want)
