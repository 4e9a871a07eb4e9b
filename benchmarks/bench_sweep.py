"""Sweep speed: points per second of the vectorised sweep, against a loop of single plans.

Anchor: the same model evaluated point by point through ``plan()`` (the obvious way),
timed in this run on a sample of the same grid. Two grids: sweeping the pool's disks
X (only Eq. 2 depends on X, so broadcasting leaves S at one column) and sweeping the
host load A (everything depends on A: every output is a full grid).
"""

from __future__ import annotations

import time

import numpy as np

from clonefleet import load_array, load_fleet, plan
from clonefleet.presets import load_function
from clonefleet.sweep import parse_param, parse_range, run_sweep, sweep_grids


def _best_of(runs: int, fn: object) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    fleet, array = load_fleet("desktop-win7"), load_array("midrange-2012")
    functions = [load_function(n) for n in ("full", "thin", "snapshot")]
    vms = np.arange(1, 10_001)

    sample = 300
    rng = np.random.default_rng(0)
    ts = rng.integers(1, 10_001, sample)
    start = time.perf_counter()
    for t in ts:
        plan(fleet, array, int(t), functions)
    loop_rate = sample * len(functions) / (time.perf_counter() - start)
    print(f"   anchor: plan() point by point = {loop_rate:,.0f} points/s")

    for text in ("disks=100:1099:100", "host_iops=20:119:100"):
        param = parse_param(text)
        points = len(vms) * len(param.values) * len(functions)
        sweep_grids(fleet, array, functions, vms[:10], param)  # warm up
        best = _best_of(3, lambda p=param: sweep_grids(fleet, array, functions, vms, p))
        rate = points / best
        print(f"   sweep over {param.key}: {points:,} points (10,000 fleet sizes x {len(param.values)} values"
              f" x 3 methods) in {best:.3f} s = {rate:,.0f} points/s = {rate / loop_rate:,.0f}x the anchor")

    best = _best_of(3, lambda: run_sweep(fleet, array, parse_range("1:10000"), functions,
                                         parse_param("host_iops=20:119:34"), 1000).summary())
    points = 10_000 * 34 * 3
    print(f"   end to end (run_sweep with inverse answers): {points:,} points in {best:.3f} s"
          f" = {points / best:,.0f} points/s = {points / best / loop_rate:,.0f}x the anchor")


if __name__ == "__main__":
    main()
