"""fio for a storm: the job file (one job per VM, in one fio process), its progress and its results.

Each VM is one fio job that replays its boot's iolog (``read_iolog``) with ``iodepth`` IOs
outstanding, starting ``startdelay`` after the storm begins. Jobs run as threads of one fio
process (``thread``), so one pid stops them all. Reads and writes are reported together per
job (``unified_rw_reporting=mixed``), with total latency (submission to completion) percentiles
and, through ``--output-format=json+``, the latency histogram, merged over all VMs for the
fleet's percentiles.

fio 3.33, replaying an iolog with an asynchronous engine, leaves the IOs still in flight when
the log ends (at most ``iodepth - 1``) out of its latency and byte counts although it issues and
waits for them; the storm therefore counts IOs and bytes from the trace, and
:attr:`FioJob.latency_samples` says how many IOs the latency figures rest on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clonefleet.errors import ClonefleetError

#: Latency percentiles reported per VM and for the fleet.
PERCENTILES = (50.0, 95.0, 99.0)
#: fio's smallest ETA interval: progress is read from its status lines this often.
ETA_INTERVAL_MS = 250


@dataclass(frozen=True)
class FioJobSpec:
    """One VM's job: its name, iolog, queue depth and start delay; ``uri`` (NBD) or ``filename`` (file)."""

    name: str
    iolog: Path
    iodepth: int
    start_s: float
    size_bytes: int
    uri: str | None = None


def job_file(jobs: Sequence[FioJobSpec], *, nbd: bool) -> str:
    """The fio job file of a storm: a global section, then one section per VM."""
    lines = ["[global]", "thread", "unified_rw_reporting=mixed", "lat_percentiles=1",
             "percentile_list=" + ":".join(f"{p:g}" for p in PERCENTILES)]
    lines += ["ioengine=nbd"] if nbd else ["ioengine=libaio", "direct=1"]
    for job in jobs:
        lines += ["", f"[{job.name}]", f"read_iolog={job.iolog}", f"iodepth={job.iodepth}",
                  f"startdelay={round(job.start_s * 1e6)}us", f"size={job.size_bytes}"]
        if job.uri is not None:
            lines.append(f"uri={job.uri}")
    return "\n".join(lines) + "\n"


def fio_args(jobfile: Path, output: Path) -> list[str]:
    """The fio command: JSON+ results to ``output``, status lines (progress) on stdout."""
    return ["fio", "--output-format=json+", f"--output={output}", "--eta=always", "--eta-newline=1",
            f"--eta-interval={ETA_INTERVAL_MS}ms", str(jobfile)]


_RUN_STATE = re.compile(r"Jobs: \d+ \(f=\d+\): \[([^\]]*)\]")
_STATE_RUN = re.compile(r"([A-Za-z_])(?:\((\d+)\))?")
#: fio's run-state letters of a job that has ended: reaped, exited, exited with an error or by a signal.
_ENDED = frozenset("_EXK")


def jobs_done(status_text: str) -> int | None:
    """How many jobs have ended, from the last status line fio printed (None before the first)."""
    found = _RUN_STATE.findall(status_text)
    if not found:
        return None
    return sum(int(n or 1) for letter, n in _STATE_RUN.findall(found[-1]) if letter in _ENDED)


@dataclass(frozen=True)
class FioJob:
    """One job's figures as fio reports them: seconds, bytes, IO counts."""

    name: str
    error: int
    runtime_s: float  # from the job's start (after its startdelay) to its end
    issued_ios: int
    latency_samples: int
    latency_s: Mapping[float, float]  # percentile -> seconds (total latency)
    latency_bins_ns: Mapping[int, int]  # histogram: bucket value (ns) -> IOs

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "error": self.error, "runtime_s": self.runtime_s,
                "issued_ios": self.issued_ios, "latency_samples": self.latency_samples,
                "latency_s": {f"p{p:g}": v for p, v in self.latency_s.items()}}


class FioOutputError(ClonefleetError):
    """fio's JSON could not be read."""


def parse_fio_json(text: str) -> tuple[str, list[FioJob]]:
    """fio's version and its jobs, from ``--output-format=json+`` (text before the JSON is skipped)."""
    start = text.find("{")
    try:
        data = json.loads(text[start:]) if start >= 0 else None
    except json.JSONDecodeError as exc:
        raise FioOutputError(f"fio's JSON output cannot be read ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise FioOutputError("fio's output holds no jobs: it did not run the storm")
    jobs = []
    for raw in data["jobs"]:
        mixed = raw.get("mixed") or {}
        lat = mixed.get("lat_ns") or {}
        pct = {float(k): float(v) / 1e9 for k, v in (lat.get("percentile") or {}).items()}
        jobs.append(FioJob(
            name=str(raw["jobname"]), error=int(raw.get("error", 0)),
            runtime_s=float(raw.get("job_runtime", 0)) / 1e3, issued_ios=int(mixed.get("total_ios", 0)),
            latency_samples=int(lat.get("N", 0)),
            latency_s={p: pct.get(p, float("nan")) for p in PERCENTILES},
            latency_bins_ns={int(k): int(v) for k, v in (lat.get("bins") or {}).items()}))
    return str(data.get("fio version", "fio")), jobs


def merged_percentiles_s(jobs: Sequence[FioJob], percentiles: Sequence[float] = PERCENTILES) -> dict[float, float]:
    """Latency percentiles of every IO of every job, from their merged histograms (seconds; fio's
    buckets are within about 1.6 % of the value they hold)."""
    merged: dict[int, int] = {}
    for job in jobs:
        for value, count in job.latency_bins_ns.items():
            merged[value] = merged.get(value, 0) + count
    if not merged:
        return {p: float("nan") for p in percentiles}
    values = np.array(sorted(merged), dtype=np.float64)
    counts = np.array([merged[int(v)] for v in values], dtype=np.float64)
    cum = np.cumsum(counts)
    out = {}
    for p in percentiles:
        rank = p / 100.0 * cum[-1]
        out[p] = float(values[min(int(np.searchsorted(cum, rank, side="left")), len(values) - 1)]) / 1e9
    return out
