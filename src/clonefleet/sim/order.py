"""Sorting events by (time, IO id), the simulator's tie-break order (see docs/simulator.md).

IO ids number the IOs VM by VM in issue order, so at equal times the lower VM
id goes first, then the lower IO index. Both the compiled engine and the
network compiler (which puts an open loop's arrivals in this order once, before
any engine runs) use these functions; they release the GIL so that the arrival
order can be sorted on one core while the IOs are placed on the array on the other.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IdArray = npt.NDArray[np.int32 | np.int64]  # IO ids: int32 while they fit, half the memory traffic


def id_dtype(ios: int) -> type[np.signedinteger[Any]]:
    """The dtype of an IO id list for ``ios`` IOs."""
    return np.int32 if ios < np.iinfo(np.int32).max else np.int64


@numba.njit(cache=True, inline="always")
def less(ta: float, ia: int, tb: float, ib: int) -> bool:
    """(ta, ia) sorts before (tb, ib)."""
    return ta < tb or (ta == tb and ia < ib)


@numba.njit(cache=True, nogil=True)
def sort_pairs(t: FloatArray, ids: IdArray) -> None:
    """Sort the pairs (t[k], ids[k]) by (time, id) in place.

    Insertion sort: the lists it gets are nearly sorted already (a stage's departures are nearly in
    its arrival order), so it moves little. When it moves too much (a queue that reorders heavily),
    a merge sort takes over.
    """
    n = len(t)
    budget = 16 * n + 1024
    for k in range(1, n):
        x, xi = t[k], ids[k]
        j = k - 1
        while j >= 0 and less(x, xi, t[j], ids[j]):
            t[j + 1] = t[j]
            ids[j + 1] = ids[j]
            j -= 1
        t[j + 1] = x
        ids[j + 1] = xi
        budget -= k - 1 - j
        if budget < 0:
            by_id = np.argsort(ids, kind="mergesort")
            by_time = np.argsort(t[by_id], kind="mergesort")  # stable: ties stay in id order
            perm = by_id[by_time]
            t[:] = t[perm]
            ids[:] = ids[perm]
            return


@numba.njit(cache=True, nogil=True)
def _time_order_into(issue_s: FloatArray, t: FloatArray, ids: IdArray) -> None:
    """Fill ``t``, ``ids`` with the issue times and IO ids in (time, id) order.

    A bucket sort on time (in id order, so each bucket holds its ids ascending), then the insertion
    sort above puts each bucket in order. The scatter only writes; reading back the bucket's last
    entry to insert at once measured twice as slow (a cache miss on the critical path).
    """
    n = len(issue_s)
    if n == 0:
        return
    lo = issue_s.min()
    buckets = max(1, n // 4)
    span = issue_s.max() - lo
    scale = buckets / span if span > 0 else 0.0  # the bucket of a time grows with the time
    fill = np.zeros(buckets + 1, np.int32)
    for i in range(n):
        fill[min(int((issue_s[i] - lo) * scale), buckets - 1) + 1] += 1
    for b in range(buckets):
        fill[b + 1] += fill[b]
    for i in range(n):
        b = min(int((issue_s[i] - lo) * scale), buckets - 1)
        t[fill[b]] = issue_s[i]
        ids[fill[b]] = i
        fill[b] += 1
    sort_pairs(t, ids)


def time_order(issue_s: FloatArray) -> IdArray:
    """The IO ids in (issue time, id) order: an open loop's arrival order.

    The scratch arrays are numpy's: large numpy arrays get huge pages, which spares the page
    faults of fresh memory (one per 4 KiB otherwise) that the scatter would pay.
    """
    n = len(issue_s)
    ids = np.empty(n, id_dtype(n))
    _time_order_into(np.ascontiguousarray(issue_s, np.float64), np.empty(n), ids)
    return ids
