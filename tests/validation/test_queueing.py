"""The fast engine against queueing theory, over seeded replications.

Expected values (textbook results, e.g. Kleinrock, Queueing Systems vol. 1):

- M/M/1: mean response time W = 1 / (mu - lambda).
- M/D/1: Pollaczek-Khinchine, W = 1/mu + rho / (2 mu (1 - rho)).
- Closed network of FIFO exponential single servers (product form): exact mean
  value analysis (Reiser and Lavenberg 1980): R_k(n) = D_k (1 + Q_k(n-1)),
  X(n) = n / sum_k R_k(n), Q_k(n) = X(n) R_k(n), with D_k the service demand.

Tolerance: 2 % on the mean over the replications (each replication a fresh
seed; the first tenth of each run is dropped as warm-up).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.sim.arraymodel import compile_network
from clonefleet.sim.fast import run_fast
from clonefleet.sim.scenario import build_scenario
from clonefleet.sim.trace import Trace

FLEET = load_fleet("server-ws2008")
REPLICATIONS = 8


def _single_queue(rng: np.random.Generator, ios: int, rate_iops: float, service: np.ndarray) -> float:
    """Mean response of one open FIFO server (the array's one disk; volume and processor take no time)."""
    array = dataclasses.replace(load_array("midrange-2012"), disks=1.0, gi_disks=1.0, cache_bytes=0.0,
                                raid_write_penalty=1.0)
    times = np.cumsum(rng.exponential(1.0 / rate_iops, ios))
    trace = Trace(np.array([0, ios], np.int64), np.zeros(ios, np.int8), np.zeros(ios, np.int64),
                  np.full(ios, 4096, np.int32), times, np.zeros(1))
    per_io = np.zeros((3, ios))
    per_io[2] = service
    sc = build_scenario(trace, FLEET, array, load_function("thin"), service_s=per_io, seed=0)
    out = run_fast(compile_network(sc))
    return float(out.latency_s[ios // 10:].astype(np.float64).mean())


@pytest.mark.parametrize("rho", [0.5, 0.8])
@pytest.mark.parametrize("kind", ["M/M/1", "M/D/1"])
def test_single_server_mean_response(kind: str, rho: float) -> None:
    mu = 1000.0
    lam = rho * mu
    ios = 200_000
    means = []
    for rep in range(REPLICATIONS):
        rng = np.random.default_rng([17, rep, int(rho * 10), kind == "M/M/1"])
        service = rng.exponential(1.0 / mu, ios) if kind == "M/M/1" else np.full(ios, 1.0 / mu)
        means.append(_single_queue(rng, ios, lam, service))
    theory = 1.0 / (mu - lam) if kind == "M/M/1" else 1.0 / mu + rho / (2.0 * mu * (1.0 - rho))
    assert np.mean(means) == pytest.approx(theory, rel=0.02)


def mva(demands_s: list[float], customers: int) -> tuple[float, float]:
    """Exact MVA for single-server FIFO stations: mean response time and throughput at N customers."""
    q = np.zeros(len(demands_s))
    d = np.asarray(demands_s)
    r = x = 0.0
    for n in range(1, customers + 1):
        rk = d * (1.0 + q)
        r = float(rk.sum())
        x = n / r
        q = x * rk
    return r, x


@pytest.mark.parametrize("customers", [1, 6, 16])
def test_closed_network_against_mean_value_analysis(customers: int) -> None:
    """One VM keeps N IOs outstanding: volume -> processor -> one of X disks (uniform), all exponential."""
    disks = 4
    s_vol, s_proc, s_disk = 0.8e-3, 0.3e-3, 3.0e-3
    array = dataclasses.replace(load_array("midrange-2012"), disks=float(disks), gi_disks=1.0, processors=1.0,
                                cache_bytes=0.0, raid_write_penalty=1.0)
    ios = 100_000
    responses, throughputs = [], []
    for rep in range(REPLICATIONS):
        rng = np.random.default_rng([29, rep, customers])
        # Offsets on random 64 KiB stripes: each IO lands on a disk drawn uniformly.
        offsets = rng.integers(0, 4096, ios).astype(np.int64) * 65536
        trace = Trace(np.array([0, ios], np.int64), np.zeros(ios, np.int8), offsets, np.full(ios, 4096, np.int32),
                      np.zeros(0), np.zeros(1))
        service = np.stack([rng.exponential(s_vol, ios), rng.exponential(s_proc, ios), rng.exponential(s_disk, ios)])
        sc = build_scenario(trace, FLEET, array, load_function("thin"), queue_depth=customers, service_s=service,
                            seed=rep)
        out = run_fast(compile_network(sc))
        keep = slice(ios // 10, None)
        responses.append(float(out.latency_s[keep].astype(np.float64).mean()))
        done = np.sort(out.completion_s)[keep]
        throughputs.append((len(done) - 1) / (done[-1] - done[0]))
    r, x = mva([s_vol, s_proc] + [s_disk / disks] * disks, customers)
    assert np.mean(responses) == pytest.approx(r, rel=0.02)
    assert np.mean(throughputs) == pytest.approx(x, rel=0.02)
