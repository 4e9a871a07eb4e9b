"""Capture a real boot: a linked clone of a GI booted under QEMU, every block IO of the boot recorded.

:func:`capture_boot` does, in a temporary folder inside the output folder:

1. reads the kernel and initramfs out of the GI itself (``/boot``, with ``debugfs``: no mount), unless
   the caller gives them;
2. makes a qcow2 linked clone of the GI (64 KiB clusters); QEMU opens the GI read-only as its backing
   file, so the GI is never written;
3. chooses the accelerator: KVM when a short probe boots the kernel under it, TCG (software
   emulation) otherwise; the choice and why go into the provenance, because a TCG boot is slower
   and its IO rate is not a real host's;
4. boots the clone with direct kernel boot, a virtio disk and QEMU's block trace events
   (``blk_co_preadv``/``blk_co_pwritev``: offset and length of every guest IO, with times) until the
   guest powers off (``systemd.run=/bin/true systemd.run_success_action=poweroff``: the boot
   reaches its default target, runs ``true``, powers off) or, with ``marker``, until that text
   appears on the serial console; past ``timeout_s`` it fails;
5. writes, into the output folder and only when all went well: ``boot.csv`` (the trace in the
   project's format), ``fio/vm-00000.iolog`` (fio iolog v3), ``qemu-trace.log.gz`` (QEMU's own
   lines), ``console.log`` and ``capture.json`` (the provenance: QEMU version, accelerator, kernel,
   command line, the GI's SHA-256, IO counts, the clone's measured growth).

QEMU is tracked by its pid (:func:`clonefleet.storage.tools.run_tool_until`): SIGINT or SIGTERM kill
it and remove the temporary folder; if clonefleet itself is killed (SIGKILL), QEMU dies with it and
the temporary folder's watchdog removes the folder (:func:`clonefleet.storage.workdirs.work_dir`).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from clonefleet import __version__
from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.guest.bootfiles import newest_kernel
from clonefleet.presets.derive import merged_runs, trace_sha256
from clonefleet.progress import Progress, no_progress
from clonefleet.sim.trace import READ, WRITE
from clonefleet.sim.traceio import qemu_zero_writes, read_trace, write_csv, write_fio_iologs
from clonefleet.storage.data import nonzero_data_bytes, sha256_file
from clonefleet.storage.ext4 import dump_file, list_dir
from clonefleet.storage.files import existing_file, publish_new, refuse_to_replace
from clonefleet.storage.qcow2 import create_overlay, qcow2_actual_bytes, qcow2_allocation, qcow2_info
from clonefleet.storage.tools import ToolError, copy_timeout_s, run_tool, run_tool_until, stop_on_signals
from clonefleet.storage.workdirs import work_dir

QEMU = "qemu-system-x86_64"
CLUSTER_BYTES = 65536
MEMORY_MIB = 1024
TIMEOUT_S = 900.0
KVM_PROBE_TIMEOUT_S = 20.0
ACCELS = ("auto", "kvm", "tcg")
#: Ends the boot: systemd reaches its default target, runs /bin/true, powers the VM off.
BOOT_APPEND = "console=ttyS0 root=/dev/vda rw panic=-1 systemd.run=/bin/true systemd.run_success_action=poweroff"
POWER_OFF_LINE = "reboot: Power down"
WORK_PREFIX = ".clonefleet-capture-"
OUTPUTS = ("boot.csv", "fio", "qemu-trace.log.gz", "console.log", "capture.json")


@dataclass(frozen=True)
class Capture:
    """One captured boot: where its files are and what it measured (bytes, seconds)."""

    folder: Path
    trace: Path  # boot.csv
    provenance: Path  # capture.json
    accelerator: str  # kvm or tcg
    accelerator_reason: str
    ios: int
    reads: int
    writes: int
    read_bytes: int
    write_bytes: int  # every byte of every write, rewrites counted again
    write_distinct_bytes: int  # the bytes written at least once (what a clone must hold: W)
    boot_s: float  # QEMU's wall time, start to power-off (or marker)
    trace_s: float  # first to last IO
    growth_bytes: int  # data clusters the boot allocated in the clone (qemu-img map, depth 0)
    growth_actual_bytes: int  # growth of the clone file on the host (actual-size after - before)
    gi_virtual_bytes: int
    gi_used_bytes: int  # G_used: the GI's data (qcow2 data clusters, or a raw image's non-zero bytes)
    zero_writes: int  # write-zeroes requests (no data; left out of the trace)
    zero_write_bytes: int
    ended_by: str  # "power-off" or "marker"


def host_memory_mib(field: str = "MemTotal") -> int:
    """This machine's memory [MiB]: ``MemTotal``, or another field of /proc/meminfo (``MemAvailable``)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) // 1024
    return 1024 * 1024


def qemu_version() -> str:
    first = run_tool([QEMU, "--version"]).splitlines()
    return first[0].strip() if first else "unknown"


def probe_kvm(kernel: Path, work: Path) -> tuple[bool, str]:
    """Whether QEMU can boot ``kernel`` under KVM here: a short boot until the kernel prints."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "no usable /dev/kvm"
    log, out = work / "kvm-probe-console.log", work / "kvm-probe-qemu.log"
    log.touch()

    def printed() -> bool:
        with contextlib.suppress(OSError):
            return "Linux version" in log.read_text(errors="replace")
        return False

    args = [QEMU, "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", f"file:{log}", "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"]
    try:
        code, stopped = run_tool_until(args, until=printed, output=out, cwd=work, timeout_s=KVM_PROBE_TIMEOUT_S)
    except ToolError:
        return False, f"KVM probe: the kernel printed nothing within {KVM_PROBE_TIMEOUT_S:g} s under KVM"
    if stopped or printed():
        return True, "KVM probe booted the kernel"
    lines = [ln.strip() for ln in out.read_text(errors="replace").splitlines() if ln.strip()]
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited {code}"
    return False, f"KVM probe: QEMU {how}: {lines[-1] if lines else 'no message'}"


def choose_accelerator(accel: str, kernel: Path, work: Path) -> tuple[str, str]:
    """The accelerator (``kvm`` or ``tcg``) and why: ``auto`` asks :func:`probe_kvm` (a short boot of
    ``kernel`` under KVM, in ``work``) and falls back to TCG; ``kvm``/``tcg`` are the user's choice."""
    if accel not in ACCELS:
        raise UsageError(f"--accel = {accel!r}: one of {', '.join(ACCELS)}")
    if accel != "auto":
        return accel, f"--accel {accel}"
    kvm_ok, reason = probe_kvm(kernel, work)
    return ("kvm", reason) if kvm_ok else ("tcg", f"{reason}; using TCG (software emulation)")


def qemu_boot_args(accel: str, memory_mib: int, console: Path, kernel: Path, initrd: Path, drive: str,
                   append: str, block_trace: Path) -> list[str]:
    """The QEMU command line of a boot: direct kernel boot, no devices but the serial console (into
    the file ``console``) and the virtio disk ``drive`` (``-drive`` options), the block trace events
    (``blk_co_preadv``/``blk_co_pwritev``) into ``block_trace``, no reboot (a guest power-off or panic
    ends QEMU)."""
    cpu = ["-cpu", "host"] if accel == "kvm" else []
    return [QEMU, "-accel", accel, *cpu, "-m", str(memory_mib), "-nodefaults", "-display", "none",
            "-no-reboot", "-serial", f"file:{console}", "-kernel", str(kernel), "-initrd", str(initrd),
            "-drive", f"{drive},if=virtio", "-append", append,
            "-trace", f"enable=blk_co_p*,file={block_trace}", "-msg", "timestamp=on"]


def powered_off(console_text: str) -> bool:
    """Whether the guest's console shows the kernel's power-off line (:data:`POWER_OFF_LINE`)."""
    return POWER_OFF_LINE in console_text


def last_line(text: str) -> str:
    """The last non-blank line of ``text`` (a console, QEMU's messages), or ``(none)``."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(none)"


def kernel_from_gi(gi: Path, fmt: str, work: Path) -> tuple[Path, Path, str]:
    """The newest /boot/vmlinuz-* and its initrd.img-* copied out of the GI's filesystem."""
    raw = gi
    if fmt != "raw":
        raw = work / "gi-view.raw"
        run_tool(["qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", str(gi), str(raw)],
                 timeout_s=copy_timeout_s(os.stat(gi).st_size))
    try:
        names = list_dir(raw, "/boot")
    except ClonefleetError:
        raise UsageError(f"GI '{gi}': no ext4 filesystem with a /boot folder on the whole disk; give --kernel "
                         "and --initrd") from None
    version = newest_kernel(names)
    if version is None:
        raise UsageError(f"GI '{gi}': /boot holds no vmlinuz-* with its initrd.img-*; give --kernel and --initrd")
    kernel, initrd = work / "vmlinuz", work / "initrd.img"
    dump_file(raw, f"/boot/vmlinuz-{version}", kernel)
    dump_file(raw, f"/boot/initrd.img-{version}", initrd)
    if raw != gi:
        raw.unlink()
    return kernel, initrd, version


def _check_out(out: Path, force: bool) -> None:
    """Refuse, before any work, an output folder whose capture files exist (unless ``force``)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"capture output '{out}': is not a folder; give a folder (it is created if absent)")
    for name in OUTPUTS:
        target = out / name
        if name != "fio":
            refuse_to_replace(target, "capture output", force=force)
        elif target.is_symlink() or (target.exists() and not target.is_dir()):
            raise UsageError(f"capture output {target}: is not a folder; give another --out")
        elif target.is_dir() and any(target.iterdir()) and not force:
            raise UsageError(f"capture output {target}: exists; pass --force to overwrite it")


def capture_boot(gi: Path, out: Path, *, accel: str = "auto", memory_mib: int = MEMORY_MIB,
                 timeout_s: float = TIMEOUT_S, marker: str | None = None, kernel: Path | None = None,
                 initrd: Path | None = None, append: str = BOOT_APPEND, force: bool = False,
                 progress: Progress = no_progress) -> Capture:
    """Boot a linked clone of ``gi`` under QEMU and record its block trace into ``out`` (module docstring)."""
    if accel not in ACCELS:
        raise UsageError(f"--accel = {accel!r}: one of {', '.join(ACCELS)}")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise UsageError(f"--timeout = {timeout_s!r}: a time greater than 0 s")
    host_mib = host_memory_mib()
    if not 128 <= memory_mib <= host_mib:
        raise UsageError(f"--memory = {memory_mib} MiB: from 128 MiB to this machine's {host_mib:,} MiB")
    if (kernel is None) != (initrd is None):
        raise UsageError("--kernel and --initrd go together: give both, or neither to use the GI's own /boot")
    gi = existing_file(gi, "GI").resolve()
    out = out.resolve()
    try:
        info = qcow2_info(gi)
    except ToolError as exc:
        raise UsageError(f"GI '{gi}': not an image qemu-img can read ({exc})") from None
    if info.format not in ("raw", "qcow2"):
        raise UsageError(f"GI '{gi}': format {info.format}; give a raw or qcow2 image")
    _check_out(out, force)
    stat_before = os.stat(gi)
    with stop_on_signals(), work_dir(out, WORK_PREFIX) as work:
        progress("read the GI", 0, 4)
        gi_sha256 = sha256_file(gi)
        gi_used = qcow2_allocation(gi).own_data_bytes if info.format == "qcow2" else nonzero_data_bytes(gi)
        if kernel is None or initrd is None:
            kernel_file, initrd_file, kernel_version = kernel_from_gi(gi, info.format, work)
        else:
            kernel_file = existing_file(kernel, "kernel").resolve()
            initrd_file = existing_file(initrd, "initrd").resolve()
            kernel_version = kernel_file.name.removeprefix("vmlinuz-")
        progress("choose the accelerator", 1, 4)
        chosen, reason = choose_accelerator(accel, kernel_file, work)
        clone = work / "clone.qcow2"
        create_overlay(clone, gi, info.format, CLUSTER_BYTES)
        actual_before = qcow2_actual_bytes(clone)
        console, qtrace, qlog = work / "console.log", work / "qemu-trace.log", work / "qemu.log"
        console.touch()
        args = qemu_boot_args(chosen, memory_mib, console, kernel_file, initrd_file, f"file={clone},format=qcow2",
                              append, qtrace)

        def marker_seen() -> bool:
            with contextlib.suppress(OSError):
                return marker is not None and marker in console.read_text(errors="replace")
            return False

        progress(f"boot under {chosen.upper()} (until power-off)" if marker is None
                 else f"boot under {chosen.upper()} (until '{marker}')", 2, 4)
        started = time.monotonic()
        code, by_marker = run_tool_until(args, until=marker_seen if marker is not None else None, output=qlog,
                                         cwd=work, timeout_s=timeout_s)
        boot_s = time.monotonic() - started
        console_text = console.read_text(errors="replace")
        if not by_marker:
            if code != 0:
                raise ClonefleetError(f"{QEMU} exited {code}: {last_line(qlog.read_text(errors='replace'))}")
            if marker is not None or not powered_off(console_text):
                what = f"before '{marker}' appeared" if marker is not None else "without a clean power-off"
                raise ClonefleetError(f"the guest stopped {what}; last console line: "
                                      f"{last_line(console_text)} (see the console log)")
        progress("write the trace", 3, 4)
        if os.stat(gi).st_mtime_ns != stat_before.st_mtime_ns or sha256_file(gi) != gi_sha256:
            raise ClonefleetError(f"GI '{gi}' changed during the capture: the trace is discarded")
        trace = read_trace(qtrace, "qemu")
        if trace.vms != 1:
            raise ClonefleetError(f"the QEMU trace shows {trace.vms} disks; a capture boots one")
        zero_writes, zero_bytes = qemu_zero_writes(qtrace)
        growth = qcow2_allocation(clone).own_data_bytes
        growth_actual = qcow2_actual_bytes(clone) - actual_before
        reads, writes = trace.op == READ, trace.op == WRITE
        run_starts, run_ends = merged_runs(trace.offset_bytes[writes], trace.length_bytes[writes])
        staged = work / "out"
        staged.mkdir()
        write_csv(trace, staged / "boot.csv")
        write_fio_iologs(trace, staged / "fio", device="/dev/vda")
        with open(qtrace, "rb") as src, open(staged / "qemu-trace.log.gz", "wb") as raw_dst, \
                gzip.GzipFile(fileobj=raw_dst, mode="wb", mtime=0) as dst:
            shutil.copyfileobj(src, dst)
        shutil.copyfile(console, staged / "console.log")
        result = Capture(folder=out, trace=out / "boot.csv", provenance=out / "capture.json", accelerator=chosen,
                         accelerator_reason=reason, ios=trace.ios, reads=int(reads.sum()),
                         writes=int(writes.sum()), read_bytes=int(trace.length_bytes[reads].sum()),
                         write_bytes=int(trace.length_bytes[writes].sum()),
                         write_distinct_bytes=int((run_ends - run_starts).sum()),
                         boot_s=round(boot_s, 3),
                         trace_s=round(float(trace.issue_s.max()), 6), growth_bytes=growth,
                         growth_actual_bytes=growth_actual, gi_virtual_bytes=info.virtual_bytes,
                         gi_used_bytes=gi_used, zero_writes=zero_writes, zero_write_bytes=zero_bytes,
                         ended_by="marker" if by_marker else "power-off")
        doc = {
            "clonefleet": __version__,
            "captured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()},
            "qemu": qemu_version(),
            "gi": {"path": str(gi), "format": info.format, "virtual_bytes": info.virtual_bytes,
                   "used_bytes": gi_used, "sha256": gi_sha256},
            "kernel": {"version": kernel_version, "from": "the GI's /boot" if kernel is None else str(kernel_file)},
            "kernel_append": append,
            "memory_mib": memory_mib,
            "clone_cluster_bytes": CLUSTER_BYTES,
            "command_line": [a.replace(str(work), "<work>") for a in args],
            "files": {"boot.csv": trace_sha256(staged / "boot.csv"),
                      "qemu-trace.log.gz": trace_sha256(staged / "qemu-trace.log.gz"),
                      "fio/vm-00000.iolog": trace_sha256(staged / "fio" / "vm-00000.iolog"),
                      "fio": trace_sha256(staged / "fio")},
        }
        (staged / "capture.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        _publish_outputs(staged, out, force)
        progress("captured", 4, 4)
    return result


def _publish_outputs(staged: Path, out: Path, force: bool) -> None:
    """Move the staged outputs into ``out``; with ``force``, the earlier capture's files are replaced."""
    for name in OUTPUTS:
        src, dest = staged / name, out / name
        if name == "fio":
            dest.mkdir(exist_ok=True)
            for f in src.iterdir():
                os.replace(f, dest / f.name)
            continue
        if force and dest.exists():
            os.replace(src, dest)
        else:
            publish_new(src, dest, "capture output")


def capture_note(trace: Path, sha256: str) -> str:
    """How the boot in ``trace`` ran, from the capture's provenance beside it (``capture.json`` in its
    folder or the folder above, for ``fio/``, or ``NAME.capture.json`` for ``NAME.csv[.gz]``) when that
    provenance names this very trace (its SHA-256); empty otherwise. Goes into the source of the IO
    rate A a trace gives."""
    base = trace.name.removesuffix(".gz").removesuffix(".csv")
    for candidate in (trace.parent / "capture.json", trace.parent.parent / "capture.json",
                      trace.parent / f"{base}.capture.json"):
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            doc = json.loads(candidate.read_text(encoding="utf-8"))
            if sha256 not in doc.get("files", {}).values():
                continue
            accel = str(doc["accelerator"])
            slow = " (software emulation: a boot runs several times slower than on a host with KVM, so A is " \
                   "low)" if accel == "tcg" else ""
            return f"captured under {accel.upper()}{slow}, {doc.get('qemu', 'QEMU')}, {candidate.name}"
    return ""
