"""Compare the open-loop simulator of two source trees on this machine, now, alternating.

``python -m benchmarks.ab_open OLD_TREE NEW_TREE [ROUNDS]``: for each round, one process per
tree (its ``src`` first on the path) times ``simulate()`` end to end, the engine alone (CPU
time) and ``compile_network`` alone on the open-loop bench scenario (100 desktops, snapshot),
best of 8 runs each. Absolute figures move with the machine's day; the ratio of two trees
measured side by side does not. Not run by ``make bench`` (it needs a second tree, e.g. a
``git worktree add /tmp/base <commit>``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_ONE_TREE = r"""
import time
import numpy as np
from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.sim.scenario import build_scenario
from clonefleet.sim.trace import Arrivals, generate_trace
from clonefleet.sim.arraymodel import compile_network
from clonefleet.sim.fast import run_fast
from clonefleet.sim.results import Engine, simulate

fleet, array, fn = load_fleet("desktop-win7"), load_array("midrange-2012"), load_function("snapshot")
trace = generate_trace(fleet, 100, np.random.default_rng(0), arrivals=Arrivals.OPEN, seed=0)
scenario = build_scenario(trace, fleet, array, fn, golden_images=1, seed=0)
simulate(scenario, Engine.FAST)
wall, engine, build = [], [], []
for _ in range(8):
    t0 = time.perf_counter(); simulate(scenario, Engine.FAST); wall.append(time.perf_counter() - t0)
    t0 = time.perf_counter(); net = compile_network(scenario); build.append(time.perf_counter() - t0)
    c0 = time.thread_time(); run_fast(net); engine.append(time.thread_time() - c0)
n = trace.ios
print(f"{n / min(wall) / 1e6:.2f} {n / min(engine) / 1e6:.2f} {min(build) * 1e3:.0f}")
"""


def _run(tree: Path) -> tuple[float, float, float]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    out = subprocess.run([sys.executable, "-c", _ONE_TREE], env=env, capture_output=True, text=True, check=True)
    e2e, engine, build = out.stdout.split()
    return float(e2e), float(engine), float(build)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    old, new = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    rounds = int(argv[2]) if len(argv) == 3 else 3
    results: dict[Path, list[tuple[float, float, float]]] = {old: [], new: []}
    for r in range(rounds):
        for tree in (old, new):
            results[tree].append(_run(tree))
            e2e, engine, build = results[tree][-1]
            print(f"round {r + 1} {tree}: end to end {e2e:.2f} M IO/s, engine {engine:.2f} M IO/s, "
                  f"network build {build:.0f} ms", flush=True)
    for i, what in enumerate(("end to end", "engine", "network build (lower wins)")):
        mean_old = sum(x[i] for x in results[old]) / rounds
        mean_new = sum(x[i] for x in results[new]) / rounds
        print(f"{what}: new / old = {mean_new / mean_old:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
