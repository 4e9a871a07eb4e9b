"""Run a boot storm on a provisioned fleet and measure it (``clonefleet storm``).

Prepare, then apply, cheapest failures first: the manifest and the fleet (every clone made,
under the fleet's lock), the workload (its offsets inside the clones), the result's file name,
the tools' versions; then the clones' bytes are measured, the iologs written to a private
temporary folder, the daemon started (qcow2) and fio run, watched every 0.1 s:

- the daemon dying stops fio, fio dying stops the daemon; either is one line (exit 1);
- SIGINT/SIGTERM kill both by pid (:func:`clonefleet.storage.tools.stop_on_signals`), and both
  die with clonefleet even when it is killed (parent-death signal);
- the temporary folder (iologs, job file, socket, pid file) is removed whatever happens.

The clones keep the storm's writes, as a booted VM's disk would: run it again and it rewrites
the same places (the same seed draws the same boots).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

from clonefleet.backends import Backend, Usage, get_backend
from clonefleet.backends.rbd import tool_conf
from clonefleet.errors import ClonefleetError, UsageError, output_folder
from clonefleet.presets import Method
from clonefleet.progress import Progress, no_progress
from clonefleet.provision import rbdfleet
from clonefleet.provision.manifest import Manifest
from clonefleet.provision.plan import FleetPlan, provisioned_plan
from clonefleet.sim.traceio import write_fio_iologs
from clonefleet.storage.files import refuse_to_replace, write_text_whole
from clonefleet.storage.goldimage import GoldenImageInfo
from clonefleet.storage.tools import ToolError, first_error_line, started_tool
from clonefleet.storage.workdirs import work_dir
from clonefleet.storm import daemon as qsd
from clonefleet.storm.fio import FioJob, FioJobSpec, fio_args, job_file, jobs_done, merged_percentiles_s, parse_fio_json
from clonefleet.storm.results import StormResult, VmResult, machine_info, tool_versions
from clonefleet.storm.workload import Workload, WorkloadSpec, check_direct_aligned, iolog_device

#: Backends a storm can drive, and how fio reaches their clones.
ENGINES = {
    "qcow2": "fio nbd engine -> qemu-storage-daemon NBD exports on a unix socket (cache.direct=on: O_DIRECT)",
    "reflink": "fio libaio engine on the clone files, direct=1 (O_DIRECT)",
    "rbd": "fio nbd engine -> qemu-storage-daemon NBD exports of the images through QEMU's rbd driver (librbd, "
           "cache.direct=on: librbd's client cache off, every IO reaches the OSDs)",
}
#: A storm that runs longer than this is stopped (seconds).
DEFAULT_TIMEOUT_S = 3600.0
POLL_S = 0.1
#: Name prefix of a storm's private temporary folder.
WORK_PREFIX = "clonefleet-storm-"
#: Longest path of a unix socket (sun_path holds 108 bytes with its terminating NUL).
MAX_SOCKET_PATH_BYTES = 107


class StormFailed(ToolError):
    """The daemon or fio died, or fio failed, mid-storm; everything of the storm was stopped."""


@dataclass(frozen=True)
class StormRequest:
    """What the user asked for, validated by :func:`run_storm` before anything runs."""

    vms: int | None = None
    trace: str | None = None
    start_spread_s: float = 0.0
    seed: int = 1
    ios_per_vm: int | None = None
    queue_depth: int | None = None
    out: Path | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    # --boot storms (:mod:`clonefleet.storm.boot`): real VMs under QEMU
    accel: str = "auto"
    memory_mib: int | None = None  # per VM; None: :data:`clonefleet.storm.boot.DEFAULT_MEMORY_MIB`

    @property
    def workload(self) -> WorkloadSpec:
        return WorkloadSpec(trace=self.trace, start_spread_s=self.start_spread_s, seed=self.seed,
                            ios_per_vm=self.ios_per_vm, queue_depth=self.queue_depth)


def result_path(manifest: Manifest, out: Path | None, started: dt.datetime) -> Path:
    """Where the storm JSON goes: beside the manifest, or in ``--out``; named by its start to the
    millisecond (storms of a few VMs follow each other within a second), so names sort by time."""
    folder = out if out is not None else manifest.path.parent
    return folder / f"storm-{manifest.name}-{started.strftime('%Y%m%dT%H%M%S')}.{started.microsecond // 1000:03d}Z.json"


def started_text(started: dt.datetime) -> str:
    """A storm's start as its JSON says it: UTC, ISO 8601, to the millisecond."""
    return started.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def result_target(manifest: Manifest, request: StormRequest) -> tuple[dt.datetime, Path]:
    """The storm's start time and the JSON it will write, refused in one line before any work when
    ``--timeout`` or ``--out`` is bad or the file exists."""
    if not (request.timeout_s > 0):
        raise UsageError(f"--timeout = {request.timeout_s!r}: a time above 0 s")
    now = dt.datetime.now(dt.UTC)
    started = now.replace(microsecond=now.microsecond // 1000 * 1000)
    if request.out is not None:
        output_folder(request.out, "--out")
    target = result_path(manifest, request.out, started)
    refuse_to_replace(target, "storm result")
    return started, target


def save_result(result: StormResult, target: Path) -> StormResult:
    """Write the storm JSON to ``target`` (never over a file) and return the result that names it."""
    saved = dataclasses.replace(result, saved_to=str(target))
    write_text_whole(target, json.dumps(saved.to_dict(), indent=2, allow_nan=False) + "\n", "storm result")
    return saved


def chosen_vms(request: StormRequest, count: int) -> int:
    """How many clones boot: ``--vms`` (default all), from 1 to the fleet's ``count``."""
    vms = request.vms if request.vms is not None else count
    if not 1 <= vms <= count:
        raise UsageError(f"--vms = {vms}: from 1 to the fleet's {count} clones")
    return vms


@dataclass(frozen=True)
class StormFleet:
    """The provisioned fleet a storm runs on, whatever its backend: its clones (names, in order), its
    GI, where its state lives, and the backend's own measure of its first ``n`` clones (and their GIs)."""

    backend: str
    method: Method
    fleet_dir: Path
    gi: GoldenImageInfo
    names: tuple[str, ...]
    measure: Callable[[int], Usage]
    plan: FleetPlan | None = None  # a fleet of files (qcow2, reflink)
    rbd: rbdfleet.ProvisionedFleet | None = None  # images in a Ceph cluster

    @property
    def nbd(self) -> bool:
        """Served by qemu-storage-daemon over NBD (qcow2, rbd), else fio opens the files (reflink)."""
        return self.backend != "reflink"


@contextmanager
def provisioned_fleet(manifest: Manifest, backend: Backend | None) -> Iterator[StormFleet]:
    """The fleet, every clone made, under its lock: RBD images through :mod:`clonefleet.provision.rbdfleet`,
    files through their backend; refused in one line otherwise."""
    if manifest.backend == "rbd":
        with rbdfleet.provisioned(manifest, "storm") as fleet:
            def measure_images(n: int) -> Usage:
                return rbdfleet.measure(fleet.cluster, manifest.method, fleet.tasks[:n], fleet.sources,
                                        max(manifest.workers, 8))

            yield StormFleet("rbd", manifest.method, fleet.fleet_dir, fleet.gi, tuple(t.name for t in fleet.tasks),
                             measure_images, rbd=fleet)
        return
    backend = backend or get_backend(manifest.backend)
    if backend.name not in ENGINES:
        raise UsageError(f"storm: backend {backend.name!r} is not supported yet; one of {', '.join(ENGINES)}")
    with provisioned_plan(manifest, backend, "storm") as plan:
        sources = [p for p in plan.sources if p.exists()]

        def measure_files(n: int) -> Usage:
            return backend.measure(plan.recipe, [plan.fleet_dir / t.name for t in plan.tasks[:n]], sources)

        yield StormFleet(backend.name, plan.recipe.method, plan.fleet_dir, plan.gi, tuple(t.name for t in plan.tasks),
                         measure_files, plan=plan)


def run_storm(manifest: Manifest, request: StormRequest = StormRequest(), backend: Backend | None = None,
              progress: Progress = no_progress) -> StormResult:
    """Run the storm (module docstring), save its JSON and return its results."""
    started, target = result_target(manifest, request)
    with provisioned_fleet(manifest, backend) as fleet:
        vms = chosen_vms(request, len(fleet.names))
        workload = request.workload.draw(manifest, fleet.gi, vms)
        if not fleet.nbd:
            check_direct_aligned(workload.trace, request.trace or "synthetic")
        tools = tool_versions(["fio", "qemu-storage-daemon"] if fleet.nbd else ["fio"])
        if fleet.rbd is not None:  # a killed earlier run's watches dropped; a live client refused
            rbdfleet.release_watchers(fleet.rbd, fleet.rbd.tasks[:vms], "storm")
        before = measured(lambda: fleet.measure(vms), vms, "measure the clones before the storm", progress)
        t0 = time.monotonic()
        jobs = _run(fleet, workload, vms, request.timeout_s, progress)
        wall_s = time.monotonic() - t0
        after = measured(lambda: fleet.measure(vms), vms, "measure the clones after the storm", progress)
    result = _result(manifest, fleet, request, workload, jobs, before, after, wall_s, started, tools)
    return save_result(result, target)


def _exports(fleet: StormFleet, vms: int, tmp: Path) -> tuple[list[tuple[Path, str]], list[qsd.Export | qsd.RbdExport],
                                                                  qsd.RbdAccess | None]:
    """What the daemon serves: (sources, exports, the cluster's access for RBD)."""
    if fleet.rbd is not None:
        return [], [qsd.RbdExport(t.name, t.source.pool, t.image) for t in fleet.rbd.tasks[:vms]], \
            rbd_client_conf(fleet.rbd, tmp)
    plan = fleet.plan
    assert plan is not None
    source_of = {p: i for i, p in enumerate(plan.sources)}
    exports: list[qsd.Export | qsd.RbdExport] = [
        qsd.Export(t.name, plan.fleet_dir / t.name, source_of[t.source] if plan.recipe.method is Method.SNAPSHOT
                   else None) for t in plan.tasks[:vms]]
    return [(p, plan.gi.fmt) for p in plan.sources], exports, None


def rbd_client_conf(fleet: rbdfleet.ProvisionedFleet, folder: Path) -> qsd.RbdAccess:
    """How a QEMU tool reaches the fleet's cluster: its configuration with this client's bounds and
    keyring (:func:`~clonefleet.backends.rbd.tool_conf`), written into ``folder`` (a private one)."""
    config = fleet.cluster.config
    conf = folder / "ceph.conf"
    conf.write_text(tool_conf(config), encoding="utf-8")
    return qsd.RbdAccess(conf, config.client_id)


def _run(fleet: StormFleet, workload: Workload, vms: int, timeout_s: float, progress: Progress) -> list[FioJob]:
    names = fleet.names[:vms]
    nbd = fleet.nbd
    # A private (0700) folder for the iologs, job file, socket and pid file: removed at the end, and by
    # its watchdog if clonefleet is killed outright.
    with work_dir(Path(tempfile.gettempdir()), WORK_PREFIX) as tmp:
        progress("write the iologs", 0, vms)
        logs = write_fio_iologs(workload.trace, tmp / "iologs", device=iolog_device(tmp, nbd))
        socket, pidfile, daemon_log = tmp / "nbd.sock", tmp / "daemon.pid", tmp / "daemon.log"
        if nbd and len(os.fsencode(socket)) > MAX_SOCKET_PATH_BYTES:
            raise UsageError(f"temporary folder {tmp}: too long a path for a unix socket (at most "
                             f"{MAX_SOCKET_PATH_BYTES} bytes); set TMPDIR to a shorter folder")
        if not nbd:
            for v, name in enumerate(names):
                os.symlink(fleet.fleet_dir / name, tmp / f"disk-{v}")
        specs = [FioJobSpec(name=name, iolog=logs[v], iodepth=workload.queue_depth,
                            start_s=float(workload.trace.start_s[v]), size_bytes=fleet.gi.virtual_bytes,
                            uri=qsd.nbd_uri(name, socket) if nbd else None)
                 for v, name in enumerate(names)]
        jobfile = tmp / "storm.fio"
        jobfile.write_text(job_file(specs, nbd=nbd), encoding="utf-8")
        daemon_cm = nullcontext(None)
        if nbd:
            sources, exports, access = _exports(fleet, vms, tmp)
            args = qsd.daemon_args(sources, exports, socket, pidfile, access)
            daemon_cm = started_tool(args, output=daemon_log)  # type: ignore[assignment]
        daemon_pid = 0
        try:
            with daemon_cm as daemon:
                if daemon is not None:
                    daemon_pid = daemon.pid
                    progress("start qemu-storage-daemon", 0, 0)
                    qsd.wait_ready(daemon, pidfile, daemon_log)
                output, status = tmp / "fio.json", tmp / "fio.out"
                with started_tool(fio_args(jobfile, output), output=status) as fio:
                    _watch(fio, daemon, status, vms, timeout_s, progress)
                text = output.read_text(encoding="utf-8", errors="replace") if output.exists() else ""
        finally:
            if fleet.rbd is not None and daemon_pid:
                # a daemon killed outright leaves its images watched for about 30 s: recorded as an ended
                # client of this fleet, so the next run drops the watches at once
                with suppress(ClonefleetError):
                    rbdfleet.record_ended_clients(fleet.rbd, fleet.rbd.tasks[:vms], daemon_pid, "storm daemon")
        _, jobs = parse_fio_json(text)
    return jobs


def measured(measure: Callable[[], Usage], clones: int, stage: str, progress: Progress) -> Usage:
    """The backend's own measure of a storm's clones (and the GIs they read from), as one progress stage."""
    progress(stage, 0, clones)
    usage = measure()
    progress(stage, clones, clones)
    return usage


def how_ended(code: int | None) -> str:
    if code is None:
        return "is running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _status_tail(path: Path, nbytes: int = 8192) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - nbytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _fio_error(path: Path) -> str:
    """fio's first error line from its status output (its chatter and status lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "no error message"
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines()]
    errors = [ln for ln in lines if ln and not ln.startswith("Jobs:") and "connected to NBD server" not in ln]
    return first_error_line("\n".join(errors))


def _watch(fio: subprocess.Popen[str], daemon: subprocess.Popen[str] | None, status: Path, vms: int,
           timeout_s: float, progress: Progress) -> None:
    """Wait for fio to finish; stop the storm in one line when the daemon or fio dies, or it runs too long."""
    deadline = time.monotonic() + timeout_s
    progress("storm: VMs booted", 0, vms)
    while fio.poll() is None:
        if daemon is not None and daemon.poll() is not None:
            raise StormFailed(f"qemu-storage-daemon (pid {daemon.pid}) {how_ended(daemon.returncode)} mid-storm: fio "
                              f"(pid {fio.pid}) and the storm were stopped; the clones are kept (check them with "
                              "'qemu-img check')")
        if time.monotonic() > deadline:
            raise StormFailed(f"the storm did not finish within {timeout_s:g} s: fio (pid {fio.pid}) and the "
                              "daemon were stopped")
        done = jobs_done(_status_tail(status))
        if done is not None:
            progress("storm: VMs booted", done, vms)
        time.sleep(POLL_S)
    if fio.returncode != 0:
        if daemon is not None and daemon.poll() is not None:
            raise StormFailed(f"qemu-storage-daemon (pid {daemon.pid}) {how_ended(daemon.returncode)} mid-storm: fio "
                              f"failed ({_fio_error(status)}); the storm was stopped and the clones are kept "
                              "(check them with 'qemu-img check')")
        raise StormFailed(f"fio (pid {fio.pid}) {how_ended(fio.returncode)} mid-storm: {_fio_error(status)}; the "
                          "storm was stopped" + (" with its daemon" if daemon is not None else ""))
    progress("storm: VMs booted", vms, vms)


def allocated_per_clone(before: Usage, after: Usage) -> dict[str, int]:
    was = {c.name: c.consumed_bytes for c in before.clones}
    return {c.name: c.consumed_bytes - was.get(c.name, 0) for c in after.clones}


def _result(manifest: Manifest, fleet: StormFleet, request: StormRequest, workload: Workload,
            jobs: Sequence[FioJob], before: Usage, after: Usage, wall_s: float, started: dt.datetime,
            tools: dict[str, str]) -> StormResult:
    by_name = {j.name: j for j in jobs}
    per_clone = allocated_per_clone(before, after)
    notes = [workload.note]
    results = []
    for v, name in enumerate(fleet.names[: workload.trace.vms]):
        job = by_name.get(name)
        if job is None:
            raise StormFailed(f"fio reported no results for VM {name}: the storm is incomplete")
        reads, writes, nbytes = workload.vm_ios(v)
        if job.error:
            raise StormFailed(f"fio: VM {name} failed with error {job.error} ({os.strerror(job.error)})")
        if job.issued_ios != reads + writes:
            notes.append(f"{name}: fio issued {job.issued_ios} IOs, the trace holds {reads + writes}")
        results.append(VmResult(name=name, start_s=float(workload.trace.start_s[v]), boot_s=job.runtime_s,
                                reads=reads, writes=writes, bytes=nbytes, latency_s=dict(job.latency_s),
                                latency_samples=job.latency_samples, allocated_bytes=per_clone.get(name)))
    samples = sum(r.latency_samples for r in results)
    total = sum(r.ios for r in results)
    if samples < total:
        notes.append(f"latencies rest on {samples:,} of {total:,} IOs: fio leaves the IOs in flight when an "
                     "iolog ends (at most queue depth - 1 per VM) out of its latency figures; IO counts and "
                     "bytes come from the trace")
    notes.append("boot time: from a VM's start to its last IO's completion, as fio times the job "
                 "(millisecond resolution)")
    return StormResult(
        manifest=str(manifest.path), fleet_dir=str(fleet.fleet_dir), fleet=manifest.name, backend=fleet.backend,
        method=fleet.method.value, engine=ENGINES[fleet.backend],
        started_at=started_text(started), seed=request.seed,
        start_spread_s=request.start_spread_s, workload=workload.to_dict(), vms=tuple(results),
        latency_s=merged_percentiles_s(jobs), wall_s=wall_s,
        allocated_bytes=after.total_bytes - before.total_bytes, accounting=after.accounting,
        machine=machine_info(), tools=tools, notes=tuple(notes),
        request={"vms": workload.trace.vms, **request.workload.to_dict()})
