"""What each VM of a storm replays: a boot trace for ``vms`` VMs, checked against the clones.

Two sources, both closed loop (each VM keeps its queue depth of IOs outstanding from its
power-on time until its boot's last IO completes):

- the simulator's synthetic trace for the fleet's preset, scaled to the real GI as the boot
  writes are (:func:`clonefleet.provision.bootwrites.model_fleet`), drawn by
  :func:`clonefleet.sim.trace.generate_trace`;
- a captured trace (a file, or a shipped name such as ``debian-boot``) that every VM replays,
  VM ``i`` the trace's boot ``i mod k`` (:func:`clonefleet.sim.replay.replay_boots`).

VMs power on uniformly in ``[0, start_spread_s]`` (0: all at once). Every offset must fall inside
the clone's virtual size: a trace captured on a larger disk is refused in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clonefleet.errors import UsageError
from clonefleet.presets import load_fleet, resolve_trace
from clonefleet.provision.bootwrites import model_fleet
from clonefleet.provision.manifest import Manifest
from clonefleet.sim.replay import replay_boots
from clonefleet.sim.trace import WRITE, Trace, generate_trace
from clonefleet.sim.traceio import read_trace
from clonefleet.storage.goldimage import GoldenImageInfo
from clonefleet.units import format_bytes

#: Offsets and lengths of O_DIRECT IO on a file must be multiples of the logical sector (512 B).
DIRECT_ALIGN_BYTES = 512


@dataclass(frozen=True)
class Workload:
    """The storm's trace (one closed-loop boot per VM), the queue depth and where it came from."""

    trace: Trace
    queue_depth: int
    source: str  # "synthetic" or the captured trace's path
    note: str

    def vm_ios(self, vm: int) -> tuple[int, int, int]:
        """VM ``vm``'s IOs: (reads, writes, bytes)."""
        sl = self.trace.vm_slice(vm)
        writes = int(np.count_nonzero(self.trace.op[sl] == WRITE))
        return sl.stop - sl.start - writes, writes, int(self.trace.length_bytes[sl].sum(dtype=np.int64))

    def to_dict(self) -> dict[str, object]:
        t = self.trace
        return {"source": self.source, "vms": t.vms, "ios": t.ios,
                "bytes": int(t.length_bytes.sum(dtype=np.int64)),
                "write_ios": int(np.count_nonzero(t.op == WRITE)), "queue_depth": self.queue_depth,
                "start_s": t.start_s.tolist(), "note": self.note}


@dataclass(frozen=True)
class WorkloadSpec:
    """What draws a storm's workload; saved with the storm's results, so that a comparison or a
    calibration draws the very same boots again (the same seed draws the same boots)."""

    trace: str | None = None
    start_spread_s: float = 0.0
    seed: int = 1
    ios_per_vm: int | None = None
    queue_depth: int | None = None

    def draw(self, manifest: Manifest, gi: GoldenImageInfo, vms: int) -> Workload:
        return storm_workload(manifest, gi, vms, trace=self.trace, start_spread_s=self.start_spread_s,
                              seed=self.seed, ios_per_vm=self.ios_per_vm, queue_depth=self.queue_depth)

    def to_dict(self) -> dict[str, object]:
        return {"trace": self.trace, "start_spread_s": self.start_spread_s, "seed": self.seed,
                "ios_per_vm": self.ios_per_vm, "queue_depth": self.queue_depth}

    @classmethod
    def from_dict(cls, data: Mapping[str, object], where: str) -> WorkloadSpec:
        """Read :meth:`to_dict`'s output back; anything else is one line naming ``where``."""
        def whole(key: str, optional: bool) -> int | None:
            value = data.get(key)
            if value is None and optional:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"{where}: request.{key} = {value!r}: a whole number")
            return value

        trace, spread = data.get("trace"), data.get("start_spread_s")
        if trace is not None and not isinstance(trace, str):
            raise UsageError(f"{where}: request.trace = {trace!r}: a trace name or path")
        if isinstance(spread, bool) or not isinstance(spread, int | float) or not spread >= 0:
            raise UsageError(f"{where}: request.start_spread_s = {spread!r}: seconds, 0 or more")
        seed = whole("seed", False)
        assert seed is not None
        return cls(trace=trace, start_spread_s=float(spread), seed=seed, ios_per_vm=whole("ios_per_vm", True),
                   queue_depth=whole("queue_depth", True))


def storm_workload(manifest: Manifest, gi: GoldenImageInfo, vms: int, *, trace: str | None = None,
                   start_spread_s: float = 0.0, seed: int = 1, ios_per_vm: int | None = None,
                   queue_depth: int | None = None) -> Workload:
    """The boot each of ``vms`` VMs replays (module docstring); nothing is written."""
    if not (np.isfinite(start_spread_s) and start_spread_s >= 0):
        raise UsageError(f"--start-spread = {start_spread_s!r}: a time of 0 s or more")
    rng = np.random.default_rng(seed)
    preset = load_fleet(manifest.preset)
    depth = int(queue_depth if queue_depth is not None else max(1, round(preset.queue_depth)))
    if trace is None:
        model = model_fleet(manifest, gi)
        drawn = generate_trace(model.fleet, vms, rng, ios_per_vm=ios_per_vm, start_spread_s=start_spread_s,
                               seed=seed)
        source = "synthetic"
        note = (f"synthetic boots of preset {preset.name} ({drawn.ios // max(vms, 1):,} IOs per VM, seed {seed}); "
                f"{model.note}")
    else:
        if ios_per_vm is not None:
            raise UsageError("--ios-per-vm: only for the synthetic trace; a captured trace is replayed whole "
                             "(drop --ios-per-vm or --trace)")
        path = resolve_trace(trace)
        captured = read_trace(path, closed=True)
        drawn = replay_boots(captured, vms, rng, start_spread_s=start_spread_s, closed=True)
        source = str(path)
        note = f"captured trace {trace}: {drawn.source}"
    check_fits(drawn, gi.virtual_bytes, trace or f"the synthetic trace of preset {preset.name}")
    return Workload(drawn, depth, source, note)


def check_fits(trace: Trace, virtual_bytes: int, what: str) -> None:
    """Refuse, in one line, a trace with an IO past the clone's virtual size (or none at all)."""
    if trace.ios == 0:
        raise UsageError(f"{what}: no IOs to replay")
    end = trace.offset_bytes.astype(np.int64) + trace.length_bytes.astype(np.int64)
    last = int(end.max())
    if last > virtual_bytes or int(trace.offset_bytes.min()) < 0:
        raise UsageError(f"trace {what}: IOs reach byte {last:,} ({format_bytes(last)}); the clones' virtual "
                         f"size is {virtual_bytes:,} bytes ({format_bytes(virtual_bytes)}): use a GI at least "
                         "that large, or a trace captured on one")


def check_direct_aligned(trace: Trace, what: str) -> None:
    """O_DIRECT on a file (reflink fleets): every offset and length a multiple of 512 bytes."""
    bad = (trace.offset_bytes % DIRECT_ALIGN_BYTES != 0) | (trace.length_bytes % DIRECT_ALIGN_BYTES != 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UsageError(f"trace {what}: IO at byte {int(trace.offset_bytes[i]):,} of {int(trace.length_bytes[i]):,} "
                         f"bytes is not aligned to {DIRECT_ALIGN_BYTES} bytes, which O_DIRECT on a file needs")


def iolog_device(folder: Path, nbd: bool) -> str:
    """The file name each VM's iolog names: fio's NBD connection, or a link to the clone in ``folder``."""
    return "nbd" if nbd else str(folder / "disk-{vm}")
