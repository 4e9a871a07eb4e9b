"""``clonefleet storm --boot``: every clone boots as a real VM under QEMU, all at once.

For a provisioned fleet (qcow2, reflink or RBD: :func:`~clonefleet.storm.run.provisioned_fleet`),
:func:`run_boot_storm` boots the first N clones together (each after its start delay, uniform in
``[0, start_spread_s]``), each clone *being* its VM's disk: the guests write into their clones as
the fio storm does. QEMU opens a qcow2 clone's backing file (the GI, or its replica) read-only and
an RBD clone's parent snapshot through librbd (its own client of the cluster, with the cluster's
timeouts: :func:`clonefleet.backends.rbd.tool_conf`), so the GI is never written. Per VM:

- one ``qemu-system-x86_64`` started, tracked by its pid, in its own process group and with the
  parent-death signal (:func:`clonefleet.storage.tools.started_tool`); KVM when the probe of
  :func:`clonefleet.guest.capture.choose_accelerator` boots under it (or ``accel="kvm"``), TCG
  (software emulation) otherwise;
- direct kernel boot of the GI's own kernel and initramfs (read once out of the GI), the clone as
  a virtio disk with ``cache=none`` (O_DIRECT for files: the host page cache does not answer for
  the storage; librbd's cache off for RBD), the capture's
  :data:`~clonefleet.guest.capture.BOOT_APPEND` (the guest reaches its default target, runs
  ``true`` and powers off), its serial console into a file and QEMU's block trace events
  (``blk_co_preadv``/``blk_co_pwritev``: the guest's IOs at its disk) into another.

Figures per VM: the *boot time* runs from its QEMU's start to its power-off line on the console
(the console file's last write, which is that line: QEMU start-up, kernel, initramfs and systemd
all count); reads, writes and bytes are counted from its block trace (write-zeroes requests carry
no data and are counted apart, as a capture does); its IOPS are its IOs over its boot time. Trace
events record when an IO is issued, not when it completes, so a boot storm has no latency figures.
Under TCG a boot is CPU-bound (every guest instruction is emulated, and the VMs share the host's
cores): its boot times are then figures of the CPU, not of the storage.

Every QEMU is stopped (SIGTERM, then SIGKILL by its pid) when one dies or powers off without its
power-off line (one line: which VM, how, its last console line), when the storm outlives its
timeout, and on SIGINT/SIGTERM (:func:`clonefleet.storage.tools.stop_on_signals`); the kernel,
consoles and traces live in a private folder of the system's temporary folder, removed at the end
(by its watchdog if clonefleet is killed outright).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clonefleet.backends import Backend
from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.guest.capture import (
    BOOT_APPEND,
    POWER_OFF_LINE,
    QEMU,
    choose_accelerator,
    host_memory_mib,
    kernel_from_gi,
    last_line,
    powered_off,
    qemu_boot_args,
)
from clonefleet.progress import Progress, no_progress
from clonefleet.provision import rbdfleet
from clonefleet.provision.manifest import Manifest
from clonefleet.sim.trace import WRITE
from clonefleet.sim.traceio import qemu_zero_writes, read_trace
from clonefleet.storage.goldimage import GoldenImageInfo
from clonefleet.storage.tools import started_tool
from clonefleet.storage.workdirs import work_dir
from clonefleet.storm.daemon import RbdAccess
from clonefleet.storm.results import StormResult, VmResult, machine_info, tool_versions
from clonefleet.storm.run import (
    StormFailed,
    StormFleet,
    StormRequest,
    allocated_per_clone,
    chosen_vms,
    how_ended,
    measured,
    provisioned_fleet,
    rbd_client_conf,
    result_target,
    save_result,
    started_text,
)

#: Guest memory of each VM unless the caller gives its own [MiB].
DEFAULT_MEMORY_MIB = 512
MIN_MEMORY_MIB = 128
#: What one QEMU needs beside its guest's memory (its own code, TCG's translated code) [MiB].
QEMU_OVERHEAD_MIB = 256
#: Name prefix of a boot storm's private temporary folder.
WORK_PREFIX = "clonefleet-boot-storm-"
POLL_S = 0.1
#: A guest that printed its power-off line and whose QEMU still runs this long after is stopped.
EXIT_GRACE_S = 30.0
#: How long a QEMU asked to stop (SIGTERM: it closes its images cleanly) gets before SIGKILL.
STOP_GRACE_S = 10.0
#: Requests of the storm's flags that only the fio storm has.
_FIO_ONLY = (("trace", "--trace"), ("ios_per_vm", "--ios-per-vm"), ("queue_depth", "--queue-depth"))
_KERNEL_TIME = re.compile(r"^\[\s*(\d+\.\d+)\]\s*" + re.escape(POWER_OFF_LINE), re.M)


def engine(accel: str) -> str:
    return (f"QEMU VMs under {accel.upper()}, one per clone: virtio-blk on the clone's qcow2 file (cache=none: "
            "O_DIRECT), its backing file (the GI) opened read-only")


def guest_power_off_s(console_text: str) -> float | None:
    """The guest kernel's own time stamp of its power-off line (seconds since the kernel started), or None
    when the console shows no time-stamped power-off line."""
    found = _KERNEL_TIME.findall(console_text)
    return float(found[-1]) if found else None


@dataclass(frozen=True)
class BootIO:
    """One VM's IOs from its QEMU block trace: counts, bytes and the span from its first to its last IO."""

    reads: int
    writes: int
    bytes: int
    zero_writes: int  # write-zeroes requests: no data, not in reads/writes/bytes
    zero_write_bytes: int
    io_span_s: float


def trace_io(path: Path) -> BootIO:
    """The figures of one VM's QEMU block trace (:func:`clonefleet.sim.traceio.read_trace`); a trace with
    no IO (a VM that never reached its disk) gives zeros."""
    zero_writes, zero_bytes = qemu_zero_writes(path) if path.exists() else (0, 0)
    try:
        trace = read_trace(path, "qemu")
    except UsageError:  # no such file, or no read or write in it
        return BootIO(0, 0, 0, zero_writes, zero_bytes, 0.0)
    if trace.vms != 1:
        raise StormFailed(f"the QEMU trace {path.name} shows {trace.vms} disks; each VM of a boot storm has one")
    writes = int(np.count_nonzero(trace.op == WRITE))
    span = float(trace.issue_s.max()) if trace.issue_s.size else 0.0
    return BootIO(trace.ios - writes, writes, int(trace.length_bytes.sum(dtype=np.int64)), zero_writes, zero_bytes,
                  span)


def memory_budget(vms: int, memory_mib: int, available_mib: int) -> None:
    """Refuse, in one line, ``vms`` VMs of ``memory_mib`` each (plus QEMU's own) that do not fit in the
    ``available_mib`` this machine has."""
    if not MIN_MEMORY_MIB <= memory_mib <= 1024 * 1024:
        raise UsageError(f"--memory = {memory_mib} MiB: from {MIN_MEMORY_MIB} MiB per VM")
    need = vms * (memory_mib + QEMU_OVERHEAD_MIB)
    if need > available_mib:
        raise UsageError(f"--boot: {vms} VMs of {memory_mib} MiB (+{QEMU_OVERHEAD_MIB} MiB for each QEMU) need "
                         f"{need:,} MiB; this machine has {available_mib:,} MiB available: boot fewer (--vms) or "
                         "smaller (--memory) VMs")


@dataclass
class _Vm:
    """One VM of the storm while it runs."""

    name: str
    drive: str  # its clone, as QEMU's -drive options
    start_s: float  # its start delay
    console: Path
    trace: Path
    log: Path
    proc: subprocess.Popen[str] | None = None
    started_wall: float = 0.0  # time.time() at its QEMU's start
    started_mono: float = 0.0  # time.monotonic() at its QEMU's start
    seen_off: float | None = None  # time.monotonic() when its power-off line was first seen
    ended: bool = False
    boot_s: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


def _console(vm: _Vm) -> str:
    with contextlib.suppress(OSError):
        return vm.console.read_text(encoding="utf-8", errors="replace")
    return ""


def _escaped(value: object) -> str:
    """A QEMU option value: a comma in it is written twice."""
    return str(value).replace(",", ",,")


def file_drive(path: Path, fmt: str) -> str:
    """``-drive`` options of a clone that is a file in format ``fmt``."""
    return f"file={_escaped(path)},format={fmt},cache=none"


def rbd_drive(pool: str, image: str, access: RbdAccess) -> str:
    """``-drive`` options of an RBD image, opened through QEMU's rbd driver as client ``access.user``."""
    return (f"file.driver=rbd,file.pool={_escaped(pool)},file.image={_escaped(image)},"
            f"file.conf={_escaped(access.conf)},file.user={_escaped(access.user)},format=raw,cache=none")


def _drives(fleet: StormFleet, vms: int, work: Path) -> list[str]:
    """``-drive`` options of the first ``vms`` clones: files in their format, or RBD images with the
    cluster's configuration written privately into ``work``."""
    if fleet.rbd is not None:
        access = rbd_client_conf(fleet.rbd, work)
        return [rbd_drive(t.source.pool, t.image, access) for t in fleet.rbd.tasks[:vms]]
    assert fleet.plan is not None
    return [file_drive(fleet.fleet_dir / name, fleet.plan.recipe.clone_format) for name in fleet.names[:vms]]


def _failure(vm: _Vm, code: int | None) -> str:
    text = _console(vm)
    pid = vm.proc.pid if vm.proc is not None else 0
    if code == 0:
        how = f"{QEMU} (pid {pid}) exited without the guest's power-off line"
    else:
        how = f"{QEMU} (pid {pid}) {how_ended(code)} mid-storm"
    qemu_says = ""
    if not text.strip() and vm.log.exists():
        qemu_says = f"; QEMU: {last_line(vm.log.read_text(encoding='utf-8', errors='replace'))}"
    return (f"VM {vm.name}: {how}; last console line: {last_line(text)}{qemu_says}; every VM of the storm was "
            "stopped and the clones are kept (check them with 'clonefleet status --verify')")


def _stop_all(vms: Sequence[_Vm]) -> None:
    """Ask every QEMU still running to stop (SIGTERM to its group): they close their images together;
    leaving the storm's block then reaps each (SIGKILL after :data:`STOP_GRACE_S`)."""
    for vm in vms:
        if vm.proc is not None and vm.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(vm.proc.pid, signal.SIGTERM)


def _boot_all(vms: list[_Vm], args_of: dict[str, list[str]], timeout_s: float, progress: Progress) -> float:
    """Start every VM at its start delay, wait until each has powered off; returns the storm's wall time."""
    total = len(vms)
    with contextlib.ExitStack() as stack:
        try:
            t0 = time.monotonic()
            deadline = t0 + timeout_s
            progress("boot storm: VMs powered off", 0, total)
            while True:
                now = time.monotonic()
                for vm in vms:
                    if vm.proc is None and now - t0 >= vm.start_s:
                        vm.started_wall, vm.started_mono = time.time(), time.monotonic()
                        vm.proc = stack.enter_context(started_tool(args_of[vm.name], output=vm.log,
                                                                   stop_grace_s=STOP_GRACE_S))
                for vm in vms:
                    if vm.proc is not None and not vm.ended:
                        _check(vm)
                done = sum(vm.ended for vm in vms)
                progress("boot storm: VMs powered off", done, total)
                if done == total:
                    return time.monotonic() - t0
                if time.monotonic() > deadline:
                    left = [vm for vm in vms if not vm.ended]
                    raise StormFailed(f"the boot storm did not finish within {timeout_s:g} s ({len(left)} of "
                                      f"{total} VMs still booting, e.g. {left[0].name}, last console line: "
                                      f"{last_line(_console(left[0]))}); every VM was stopped")
                time.sleep(POLL_S)
        except BaseException:
            _stop_all(vms)
            raise


def _check(vm: _Vm) -> None:
    """Whether one running VM has ended: powered off (its boot time taken), or died (the storm fails)."""
    assert vm.proc is not None
    code = vm.proc.poll()
    if vm.seen_off is None and powered_off(_console(vm)):
        vm.seen_off = time.monotonic()
    if code is None:
        if vm.seen_off is not None and time.monotonic() - vm.seen_off > EXIT_GRACE_S:
            vm.extra["stopped_after_power_off"] = True  # the guest is off; its QEMU did not exit by itself
            _stop_all([vm])
        return
    text = _console(vm)
    if not powered_off(text) or (code != 0 and not vm.extra.get("stopped_after_power_off")):
        raise StormFailed(_failure(vm, code))
    # The power-off line is the console's last write: its file's modification time is when QEMU wrote it.
    boot_s = vm.console.stat().st_mtime - vm.started_wall
    if not boot_s > 0:  # the wall clock stepped: fall back to when the storm saw the line (0.1 s polls)
        boot_s = (vm.seen_off or time.monotonic()) - vm.started_mono
    vm.boot_s = boot_s
    vm.ended = True
    vm.extra.update({"ended_by": "power-off", "qemu_exit": code, "guest_kernel_s": guest_power_off_s(text),
                     "console_tail": [ln.strip() for ln in text.splitlines() if ln.strip()][-3:]})


def _refuse_fio_options(request: StormRequest) -> None:
    for attr, flag in _FIO_ONLY:
        if getattr(request, attr) is not None:
            raise UsageError(f"{flag}: only for fio storms; a --boot storm boots real VMs, whose IOs are their own "
                             f"(drop {flag} or --boot)")


def run_boot_storm(manifest: Manifest, request: StormRequest = StormRequest(), backend: Backend | None = None,
                   progress: Progress = no_progress) -> StormResult:
    """Boot the first ``request.vms`` clones as QEMU VMs together (module docstring); save the storm JSON
    beside the manifest (or in ``request.out``) and return the results."""
    _refuse_fio_options(request)
    spread = request.start_spread_s
    if not (math.isfinite(spread) and spread >= 0):
        raise UsageError(f"--start-spread = {spread!r}: a time of 0 s or more")
    memory = request.memory_mib if request.memory_mib is not None else DEFAULT_MEMORY_MIB
    started, target = result_target(manifest, request)
    with provisioned_fleet(manifest, backend) as fleet:
        vms = chosen_vms(request, len(fleet.names))
        memory_budget(vms, memory, host_memory_mib("MemAvailable"))
        # choose_accelerator refuses a bad --accel; check it before any work
        if request.accel not in ("auto", "kvm", "tcg"):
            raise UsageError(f"--accel = {request.accel!r}: one of auto, kvm, tcg")
        tools = tool_versions([QEMU, "qemu-img"])
        if fleet.rbd is not None:  # a killed earlier run's watches dropped; a live client refused
            rbdfleet.release_watchers(fleet.rbd, fleet.rbd.tasks[:vms], "storm --boot")
        before = measured(lambda: fleet.measure(vms), vms, "measure the clones before the storm", progress)
        gi_stamp = os.stat(fleet.gi.path).st_mtime_ns
        starts = (np.random.default_rng(request.seed).uniform(0.0, spread, vms) if spread > 0
                  else np.zeros(vms))
        with work_dir(Path(tempfile.gettempdir()), WORK_PREFIX) as work:
            kernel, initrd, version, accel, reason = _boot_files(fleet.gi, request.accel, work, progress)
            running = [_Vm(name, drive, float(starts[i]), work / f"console-{i:05d}.log",
                           work / f"trace-{i:05d}.log", work / f"qemu-{i:05d}.log")
                       for i, (name, drive) in enumerate(zip(fleet.names[:vms], _drives(fleet, vms, work),
                                                              strict=True))]
            args_of = {vm.name: qemu_boot_args(accel, memory, vm.console, kernel, initrd, vm.drive, BOOT_APPEND,
                                               vm.trace) for vm in running}
            for vm in running:
                vm.console.touch()
            try:
                wall_s = _boot_all(running, args_of, request.timeout_s, progress)
            finally:
                _record_ended_clients(fleet, running)
            ios = {vm.name: trace_io(vm.trace) for vm in running}
        if os.stat(fleet.gi.path).st_mtime_ns != gi_stamp:
            raise StormFailed(f"GI '{fleet.gi.path}' changed during the boot storm: its figures are discarded")
        after = measured(lambda: fleet.measure(vms), vms, "measure the clones after the storm", progress)
    per_clone = allocated_per_clone(before, after)
    results = []
    for vm in running:
        io = ios[vm.name]
        results.append(VmResult(
            name=vm.name, start_s=vm.start_s, boot_s=round(vm.boot_s, 3), reads=io.reads, writes=io.writes,
            bytes=io.bytes, latency_s={}, latency_samples=0, allocated_bytes=per_clone.get(vm.name),
            boot={**vm.extra, "io_span_s": round(io.io_span_s, 6), "zero_writes": io.zero_writes,
                  "zero_write_bytes": io.zero_write_bytes}))
    result = StormResult(
        manifest=str(manifest.path), fleet_dir=str(fleet.fleet_dir), fleet=manifest.name, backend=fleet.backend,
        method=fleet.method.value, engine=engine(accel), started_at=started_text(started),
        seed=request.seed, start_spread_s=spread, workload=_workload(results, starts, memory, version),
        vms=tuple(results), latency_s={}, wall_s=wall_s, allocated_bytes=after.total_bytes - before.total_bytes,
        accounting=after.accounting, machine=machine_info(), tools=tools,
        notes=_notes(accel, reason, vms, results), mode="boot", accelerator=accel, accelerator_reason=reason)
    return save_result(result, target)


def _record_ended_clients(fleet: StormFleet, vms: Sequence[_Vm]) -> None:
    """RBD: a QEMU stopped mid-boot may leave its clone watched for about 30 s; its client is recorded as
    an ended client of this fleet, so the next run drops the watch at once."""
    if fleet.rbd is None:
        return
    for i, vm in enumerate(vms):
        if vm.proc is not None and not vm.ended:
            with contextlib.suppress(ClonefleetError):
                rbdfleet.record_ended_clients(fleet.rbd, fleet.rbd.tasks[i:i + 1], vm.proc.pid, "storm --boot VM")


def _boot_files(gi: GoldenImageInfo, accel: str, work: Path, progress: Progress) -> tuple[Path, Path, str, str, str]:
    """The GI's kernel and initramfs (copied into ``work``), its version, the accelerator and why."""
    progress("read the kernel out of the GI", 0, 0)
    try:
        kernel, initrd, version = kernel_from_gi(gi.path, gi.fmt, work)
    except UsageError:
        raise UsageError(f"storm --boot: GI '{gi.path}' does not boot: no ext4 filesystem on the whole disk "
                         "with a kernel (/boot/vmlinuz-*) and its initrd.img-*; a boot storm needs a bootable GI, "
                         "e.g. 'clonefleet gi build --os debian'") from None
    progress("choose the accelerator", 0, 0)
    chosen, reason = choose_accelerator(accel, kernel, work)
    return kernel, initrd, version, chosen, reason


def _workload(results: Sequence[VmResult], starts: np.ndarray, memory_mib: int, kernel: str) -> dict[str, object]:
    return {"source": "boot", "vms": len(results), "ios": sum(r.ios for r in results),
            "bytes": sum(r.bytes for r in results), "write_ios": sum(r.writes for r in results),
            "queue_depth": None, "start_s": [float(s) for s in starts], "memory_mib": memory_mib,
            "kernel": kernel, "kernel_append": BOOT_APPEND,
            "note": f"each VM boots its clone under QEMU ({memory_mib} MiB, 1 vCPU, kernel {kernel} from the GI) "
                    "until its guest powers off; its IOs are the guest's own"}


def _notes(accel: str, reason: str, vms: int, results: Sequence[VmResult]) -> tuple[str, ...]:
    cores = os.cpu_count() or 1
    notes = [f"accelerator: {accel.upper()} ({reason})"]
    if accel == "tcg":
        notes.append(f"under TCG (software emulation) a boot is CPU-bound: {vms} VMs share {cores} cores and every "
                     "guest instruction is emulated, so the boot times measure this machine's CPU, not its "
                     "storage; the IO figures (counts, bytes) come from each VM's QEMU block trace events")
    notes.append("boot time: from a VM's QEMU start to its guest's power-off line on its serial console (the "
                 "console file's last write), QEMU start-up, kernel, initramfs and systemd included; IOPS: the "
                 "VM's IOs over its boot time")
    notes.append("latency: not measured in a --boot storm (QEMU's block trace events record when an IO is "
                 "issued, not when it completes), so there are no latency percentiles")
    zero = sum(int(str(r.boot.get("zero_writes", 0))) for r in results if r.boot is not None)
    if zero:
        notes.append(f"{zero:,} write-zeroes requests (no data) are left out of the IO counts and bytes; each VM's "
                     "'boot' figures count them")
    return tuple(notes)
