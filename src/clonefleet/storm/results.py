"""A storm's results: per VM and for the fleet, with the machine and the tools that measured them.

Seconds and bytes throughout. A VM's *boot time* is the time from its power-on (its start delay)
to its last IO's completion (fio storms) or to its guest's power-off (``--boot`` storms, where real
VMs boot); its *done time* adds the start delay (seconds since the storm began). The fleet's IOPS
are every IO of every VM over the storm's span (the last VM's done time).
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from clonefleet.storage.tools import run_tool

#: Version of the storm JSON layout.
STORM_FORMAT = 1


@dataclass(frozen=True)
class VmResult:
    """One VM of the storm: its clone, when it started, how long its boot took, its IO figures."""

    name: str
    start_s: float
    boot_s: float
    reads: int
    writes: int
    bytes: int
    latency_s: Mapping[float, float]
    latency_samples: int
    allocated_bytes: int | None  # the clone's consumed bytes after the storm minus before
    boot: Mapping[str, object] | None = None  # --boot storms: how the VM's boot ended (console, trace span)

    @property
    def ios(self) -> int:
        return self.reads + self.writes

    @property
    def done_s(self) -> float:
        return self.start_s + self.boot_s

    @property
    def iops(self) -> float:
        return self.ios / self.boot_s if self.boot_s > 0 else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "start_s": self.start_s, "boot_s": self.boot_s, "done_s": self.done_s,
                "ios": self.ios, "reads": self.reads, "writes": self.writes, "bytes": self.bytes,
                "iops": _finite(self.iops), "latency_s": {f"p{p:g}": _finite(v) for p, v in self.latency_s.items()},
                "latency_samples": self.latency_samples, "allocated_bytes": self.allocated_bytes,
                **({"boot": dict(self.boot)} if self.boot is not None else {})}


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


@dataclass(frozen=True)
class StormResult:
    """Everything one storm measured, and how (:data:`STORM_FORMAT` layout in :meth:`to_dict`)."""

    manifest: str
    fleet_dir: str
    fleet: str
    backend: str
    method: str
    engine: str  # how fio reached the clones
    started_at: str  # UTC, ISO 8601
    seed: int
    start_spread_s: float
    workload: Mapping[str, object]
    vms: tuple[VmResult, ...]
    latency_s: Mapping[float, float]  # every IO of the fleet
    wall_s: float  # fio's whole run, its start-up included
    allocated_bytes: int | None  # the fleet's consumed bytes (GIs and clones) after the storm minus before
    accounting: str
    machine: Mapping[str, object]
    tools: Mapping[str, str]
    notes: tuple[str, ...] = field(default_factory=tuple)
    saved_to: str | None = None
    mode: str = "fio"  # "fio": fio replays the boots; "boot": real VMs boot under QEMU
    accelerator: str | None = None  # --boot: "kvm" or "tcg"
    accelerator_reason: str | None = None
    request: Mapping[str, object] = field(default_factory=dict)  # what was asked: the workload is drawn again from it

    @property
    def ios(self) -> int:
        return sum(v.ios for v in self.vms)

    @property
    def bytes(self) -> int:
        return sum(v.bytes for v in self.vms)

    @property
    def span_s(self) -> float:
        """From the storm's start to the last VM's last IO."""
        return max((v.done_s for v in self.vms), default=0.0)

    @property
    def iops(self) -> float:
        return self.ios / self.span_s if self.span_s > 0 else float("nan")

    @property
    def throughput_bytes_s(self) -> float:
        return self.bytes / self.span_s if self.span_s > 0 else float("nan")

    def boot_s(self, q: float) -> float:
        """Quantile ``q`` (0..1) of the VMs' boot times."""
        return float(np.quantile([v.boot_s for v in self.vms], q)) if self.vms else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {
            "format": STORM_FORMAT, "kind": "clonefleet storm", "mode": self.mode, "accelerator": self.accelerator,
            "accelerator_reason": self.accelerator_reason, "manifest": self.manifest,
            "fleet_dir": self.fleet_dir, "fleet": self.fleet, "backend": self.backend, "method": self.method,
            "engine": self.engine, "started_at": self.started_at, "seed": self.seed,
            "start_spread_s": self.start_spread_s, "request": dict(self.request), "workload": dict(self.workload),
            "fleet_figures": {
                "vms": len(self.vms), "ios": self.ios, "bytes": self.bytes, "span_s": self.span_s,
                "wall_s": self.wall_s, "iops": _finite(self.iops),
                "throughput_bytes_s": _finite(self.throughput_bytes_s),
                "boot_s": {"p50": self.boot_s(0.5), "p95": self.boot_s(0.95), "max": self.boot_s(1.0)},
                "latency_s": {f"p{p:g}": _finite(v) for p, v in self.latency_s.items()},
                "allocated_bytes": self.allocated_bytes, "accounting": self.accounting},
            "vms": [v.to_dict() for v in self.vms],
            "machine": dict(self.machine), "tools": dict(self.tools), "notes": list(self.notes),
            "saved_to": self.saved_to,
        }


def machine_info() -> dict[str, object]:
    """The machine a storm ran on: CPU model, cores, memory, kernel."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    memory = 0
    with contextlib.suppress(ValueError, OSError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu_model": model or platform.processor() or "unknown", "cores": os.cpu_count() or 0,
            "memory_bytes": memory, "kernel": platform.release(), "system": platform.system()}


def tool_versions(tools: Sequence[str]) -> dict[str, str]:
    """The first line of ``TOOL --version`` for each tool (a missing tool is one line from the runner)."""
    out = {}
    for tool in tools:
        text = run_tool([tool, "--version"], timeout_s=30)
        out[tool] = next((line.strip() for line in text.splitlines() if line.strip()), "unknown")
    return out
