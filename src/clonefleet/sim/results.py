"""Results of one run: boot times, IO latencies, utilisation over time, allocation. Seconds and bytes.

:func:`simulate` runs one built scenario: place its IOs on the array, run an
engine, summarise. A whole storm from presets is one call to
:func:`clonefleet.sim.run_storm`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from clonefleet.presets import Method
from clonefleet.sim.arraymodel import Network, compile_network, consumed_bytes
from clonefleet.sim.fast import UTIL_CLASSES, RawRun, run_fast
from clonefleet.sim.order import IdArray
from clonefleet.sim.quantiles import SKETCH_RELATIVE_ERROR, percentiles, sketch_percentiles
from clonefleet.sim.scenario import Scenario
from clonefleet.sim.trace import Arrivals

FloatArray = npt.NDArray[np.float64]

PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0)


class Engine(enum.StrEnum):
    FAST = "fast"  # numba event loop
    REFERENCE = "reference"  # SimPy


def run_engine(net: Network, engine: Engine) -> RawRun:
    """Run one engine, the run reduced (per IO records only where the engine keeps them anyway)."""
    if engine is Engine.REFERENCE:
        from clonefleet.sim.reference import run_reference

        return run_reference(net)
    return run_fast(net, per_io=False)


@dataclass(frozen=True)
class Spread:
    """Summary of a set of values in ``unit`` (``s`` or ``bytes``)."""

    min: float
    median: float
    p95: float
    max: float
    mean: float
    unit: str

    @staticmethod
    def of(values: npt.ArrayLike, unit: str) -> Spread:
        x = np.asarray(values, float)
        if x.size == 0:
            return Spread(0.0, 0.0, 0.0, 0.0, 0.0, unit)
        lo, med, p95, hi = np.percentile(x, [0, 50, 95, 100])
        return Spread(float(lo), float(med), float(p95), float(hi), float(x.mean()), unit)

    def to_dict(self) -> dict[str, float]:
        """Fields named with their unit: ``min_s``, ``p95_bytes``..."""
        return {f"{k}_{self.unit}": getattr(self, k) for k in ("min", "median", "p95", "max", "mean")}


@dataclass(frozen=True)
class Utilisation:
    """Busy share of one resource class: over the run, of its busiest server, and per time bin.

    A *server* is one unit of the class that serves IOs one at a time (one volume, one processor,
    one disk). The run's time is cut into bins (``SimResult.util_bin_s`` wide, the last one as long
    as what is left of the run); ``peak_bin`` is the class's busy share in its busiest bin, so it is
    never below ``mean`` (the run's average of the same share) but can be below ``busiest_server``
    (one server over the whole run).
    """

    resource: str
    servers: int
    mean: float  # busy server-seconds / (servers * makespan)
    busiest_server: float  # the busiest server's busy time / makespan
    peak_bin: float  # the highest per-bin value of the series
    series: FloatArray = field(repr=False)  # per bin: busy server-seconds / (servers * the bin's width)


@dataclass(frozen=True)
class ScenarioRecord:
    """What a run simulated, as its result reports it: preset names, counts, bytes."""

    fleet: str
    array: str
    function: str
    method: Method
    vms: int
    ios: int
    golden_images: int  # g: VM v's clone reads GI v mod g (1 for full and thin clones)
    arrivals: Arrivals
    queue_depth: int  # q, of a closed loop
    cache_bytes: float
    cache_block_bytes: int
    seed: int | None
    trace: str  # where the trace came from: "synthetic" or its file

    @staticmethod
    def of(scenario: Scenario) -> ScenarioRecord:
        return ScenarioRecord(
            fleet=scenario.fleet.name, array=scenario.array.name, function=scenario.function.name,
            method=scenario.method, vms=scenario.vms, ios=scenario.trace.ios, golden_images=scenario.golden_images,
            arrivals=scenario.arrivals, queue_depth=scenario.queue_depth, cache_bytes=scenario.array.cache_bytes,
            cache_block_bytes=scenario.cache_block_bytes, seed=scenario.seed, trace=scenario.trace.source)

    def to_dict(self) -> dict[str, object]:
        """The fields, the enums as their values."""
        return {**vars(self), "method": self.method.value, "arrivals": self.arrivals.value}


@dataclass(frozen=True)
class SimResult:
    """One simulated boot storm. Times in seconds, sizes in bytes; ``seed`` reproduces it."""

    scenario: ScenarioRecord
    engine: str
    seed: int | None
    ios: int
    makespan_s: float  # last completion
    boot: Spread  # per VM: last completion - power-on
    latency: Spread  # per IO
    latency_percentiles_s: dict[str, float]
    latency_percentiles_error: float  # bound on |reported - exact| / exact: 0 when exact, else the sketch's
    read_hit_ratio: float
    utilisation: tuple[Utilisation, ...]
    util_bin_s: float
    per_clone_new_bytes: Spread  # C per clone
    per_clone_new_mean_bytes: float
    consumed_bytes: float  # S
    boot_window_s: float  # the fleet's nominal boot window, boot_ios / A
    wall_s: float
    boot_s: FloatArray = field(repr=False)

    def slowest_vms(self, count: int = 10) -> list[dict[str, object]]:
        """The VMs that booted last: id, boot time [s], and the GI their clone reads (VM v reads GI
        v mod g; full and thin clones read none during the storm)."""
        g = self.scenario.golden_images
        snapshot = self.scenario.method is Method.SNAPSHOT
        order = np.argsort(-self.boot_s, kind="stable")[:count]
        return [{"vm": int(v), "boot_s": float(self.boot_s[v]), "golden_image": int(v % g) if snapshot else None}
                for v in order]

    def bottleneck(self) -> Utilisation:
        """The resource class whose busiest server was busy the largest share of the run: the one
        nearest to saturation, which limits the storm when it is near 100 %."""
        return max((u for u in self.utilisation if u.servers), key=lambda u: u.busiest_server)

    @property
    def ios_per_s(self) -> float:
        """Simulated IOs per wall-clock second of the engine."""
        return self.ios / self.wall_s if self.wall_s > 0 else float("inf")

    def to_dict(self) -> dict[str, object]:
        return {
            "scenario": self.scenario.to_dict(), "engine": self.engine, "seed": self.seed, "ios": self.ios,
            "makespan_s": self.makespan_s, "boot_window_s": self.boot_window_s,
            "boot": self.boot.to_dict(), "latency": self.latency.to_dict(),
            "latency_percentiles_s": self.latency_percentiles_s,
            "latency_percentiles_relative_error": self.latency_percentiles_error, "read_hit_ratio": self.read_hit_ratio,
            "utilisation": [{"resource": u.resource, "servers": u.servers, "mean": u.mean,
                             "busiest_server": u.busiest_server, "peak_bin": u.peak_bin} for u in self.utilisation],
            "util_bin_s": self.util_bin_s,
            "per_clone_new_bytes": self.per_clone_new_bytes.to_dict(),
            "per_clone_new_mean_bytes": self.per_clone_new_mean_bytes,
            "consumed_bytes": self.consumed_bytes, "engine_wall_s": self.wall_s,
            "engine_ios_per_s": self.ios_per_s,
            "slowest_vms": self.slowest_vms(), "boot_s_per_vm": self.boot_s.tolist(),
        }


def summarise(scenario: Scenario, net: Network, raw: RawRun) -> SimResult:
    """Turn an engine's reduced output into the per-VM, per-IO and per-resource figures."""
    boot = raw.vm_last_s - net.start_s
    makespan = float(raw.vm_last_s.max())
    used_bins = min(int(makespan / net.util_bin_s) + 1, raw.busy_bins_s.shape[1])
    pool, total = net.pool_disks, net.disks
    groups = (
        (raw.busy_volume_s, net.volumes),
        (raw.busy_processor_s, len(raw.busy_processor_s)),
        (raw.busy_disk_s[:pool], pool),
        (raw.busy_disk_s[pool:], total - pool),
    )
    # Each bin's width: util_bin_s, the last one what is left of the run (the engines book any time
    # past their last bin into it; a last piece under half a bin joins the bin before it), so each
    # bin's share is a true average and the peak never reads below the run's mean.
    binned = raw.busy_bins_s[:, :used_bins].copy()
    width = np.full(used_bins, net.util_bin_s)
    width[-1] = makespan - (used_bins - 1) * net.util_bin_s
    if used_bins > 1 and width[-1] < net.util_bin_s / 2:
        binned[:, -2] += binned[:, -1]
        width[-2] += width[-1]
        binned, width = binned[:, :-1], width[:-1]
    width = np.maximum(width, 1e-12)
    utils = []
    for row, (name, (busy, servers)) in enumerate(zip(UTIL_CLASSES, groups, strict=True)):
        series = binned[row] / (max(servers, 1) * width)
        utils.append(Utilisation(
            name, int(servers), float(busy.sum() / (max(servers, 1) * makespan)) if servers else 0.0,
            float(busy.max() / makespan) if servers else 0.0,
            float(series.max()) if servers else 0.0, series))
    per_clone = (raw.new_units * net.unit_bytes).astype(np.float64) if net.allocates else np.zeros(scenario.vms)
    n = len(net.is_write)
    # Percentiles exact (radix select) when every latency was kept, else from the sketch, within its bound.
    exact = len(raw.latency_s) == n
    wanted = [50.0, 95.0, *PERCENTILES]
    q = percentiles(raw.latency_s, wanted) if exact else sketch_percentiles(raw.latency_sketch, wanted)
    latency = Spread(raw.latency_min_s, float(q[0]), float(q[1]), raw.latency_max_s, raw.latency_sum_s / n, "s")
    pct = q[2:]
    return SimResult(
        scenario=ScenarioRecord.of(scenario), engine=raw.engine, seed=scenario.seed, ios=n,
        makespan_s=makespan, boot=Spread.of(boot, "s"), latency=latency,
        latency_percentiles_s={f"p{p:g}": float(v) for p, v in zip(PERCENTILES, pct, strict=True)},
        latency_percentiles_error=0.0 if exact else SKETCH_RELATIVE_ERROR,
        read_hit_ratio=raw.read_hits / raw.reads if raw.reads else 0.0,
        utilisation=tuple(utils), util_bin_s=net.util_bin_s,
        per_clone_new_bytes=Spread.of(per_clone, "bytes"), per_clone_new_mean_bytes=float(per_clone.mean()),
        consumed_bytes=consumed_bytes(scenario, per_clone), boot_window_s=scenario.fleet.boot_window_s,
        wall_s=raw.wall_s, boot_s=boot,
    )


def simulate(scenario: Scenario, engine: Engine = Engine.FAST, arrival_order: IdArray | None = None) -> SimResult:
    """Run one scenario on one engine and summarise it (``arrival_order``: see compile_network)."""
    net = compile_network(scenario, arrival_order)
    return summarise(scenario, net, run_engine(net, engine))
