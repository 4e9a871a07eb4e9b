"""clonefleet storm: a real boot storm on a provisioned fleet, measured with fio (or, with --boot, real VMs)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from clonefleet.cli.app import JSON_OPTION, Col, Whole, app, console, emit_json, print_table, progress_display
from clonefleet.errors import UsageError
from clonefleet.provision.manifest import MAX_CLONES
from clonefleet.units import format_bytes

if TYPE_CHECKING:
    from clonefleet.storm import StormResult

MANIFEST_ARG = typer.Argument(..., help="The manifest of a provisioned fleet (TOML).", show_default=False)


def _seconds(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag} = {text!r}: a time in seconds, 0 or more") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{flag} = {text!r}: a time in seconds, 0 or more")
    return value


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None or not math.isfinite(seconds) else f"{seconds * 1e3:.2f}"


@app.command("storm")
def storm_cmd(
    manifest: str = MANIFEST_ARG,
    vms: int = typer.Option(None, "--vms", click_type=Whole(1, MAX_CLONES, "N"),
                            help="VMs that boot together: the first N clones (default: all)."),
    trace: str = typer.Option(None, "--trace", help="A captured boot to replay (a trace file, or a shipped name: "
                              "debian-boot); default: the simulator's synthetic boot of the fleet's preset."),
    start_spread: str = typer.Option("0", "--start-spread", metavar="S",
                                     help="VMs power on uniformly within S seconds (0: all at once)."),
    seed: int = typer.Option(1, "--seed", click_type=Whole(0, 2**63 - 1, "SEED"),
                             help="Seed of the boots drawn and the start times."),
    ios_per_vm: int = typer.Option(None, "--ios-per-vm", click_type=Whole(1, 10**7, "N"),
                                   help="A shorter synthetic boot with the same mix (default: the preset's)."),
    queue_depth: int = typer.Option(None, "--queue-depth", click_type=Whole(1, 1024, "N"),
                                    help="IOs each VM keeps outstanding (default: the fleet preset's)."),
    out: Path = typer.Option(None, "--out", help="Folder for the storm JSON (default: beside the manifest)."),
    boot: bool = typer.Option(False, "--boot", help="Boot every clone as a real VM under QEMU (KVM where it works, "
                              "else TCG) until its guest powers off; a fleet (qcow2, reflink, RBD) of a bootable GI."),
    accel: str = typer.Option(None, "--accel", metavar="auto|kvm|tcg",
                              help="--boot: the accelerator (default auto: KVM when a probe boots under it)."),
    memory: int = typer.Option(None, "--memory", metavar="MIB", click_type=Whole(1, 1024**2, "MIB"),
                               help="--boot: guest memory per VM in MiB (default 512)."),
    timeout: str = typer.Option(None, "--timeout", metavar="S",
                                help="Stop the storm (every process of it) past S seconds (default 3600)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Boot the fleet's clones together (fio replays each VM's boot, or --boot: real VMs) and measure the storm."""
    from clonefleet import provision
    from clonefleet.storm import StormRequest, run_boot_storm, run_storm

    if not boot:
        for flag, given in (("--accel", accel), ("--memory", memory)):
            if given is not None:
                raise UsageError(f"{flag}: only with --boot (real VMs); fio storms run no VM")
    request = StormRequest(vms=vms, trace=trace, start_spread_s=_seconds(start_spread, "--start-spread"),
                           seed=seed, ios_per_vm=ios_per_vm, queue_depth=queue_depth, out=out, accel=accel or "auto",
                           memory_mib=memory)
    if timeout is not None:
        request = dataclasses.replace(request, timeout_s=_seconds(timeout, "--timeout"))
    m = provision.load_manifest(manifest)
    with progress_display(not as_json) as report:
        result = (run_boot_storm if boot else run_storm)(m, request, progress=report)
    if as_json:
        emit_json(result.to_dict())
        return
    if boot:
        _print_boot_storm(m.name, result)
        return
    rows = [[v.name, f"{v.start_s:.3f}", f"{v.boot_s:.3f}", f"{v.ios:,}", f"{v.iops:,.0f}",
             _ms(v.latency_s.get(50.0)), _ms(v.latency_s.get(95.0)), _ms(v.latency_s.get(99.0)),
             format_bytes(v.allocated_bytes) if v.allocated_bytes is not None else "-"] for v in result.vms]
    print_table(escape(f"storm: {len(result.vms)} VMs of fleet {m.name} ({result.method} clones on "
                       f"{result.backend})"),
                [Col("VM"), Col("start s", "start", right=True), Col("boot s", "boot", right=True),
                 Col("IOs", right=True), Col("IOPS", right=True), Col("p50 ms", "p50", right=True),
                 Col("p95 ms", "p95", right=True), Col("p99 ms", "p99", right=True),
                 Col("allocated", "alloc", right=True)], rows)
    lat = result.latency_s
    console.print(f"fleet: {result.ios:,} IOs ({format_bytes(result.bytes)}) in {result.span_s:.3f} s: "
                  f"{result.iops:,.0f} IOPS, {format_bytes(result.throughput_bytes_s)}/s; boot time p50 "
                  f"{result.boot_s(0.5):.3f} s, p95 {result.boot_s(0.95):.3f} s, max {result.boot_s(1.0):.3f} s; "
                  f"latency p50 {_ms(lat.get(50.0))} ms, p95 {_ms(lat.get(95.0))} ms, p99 {_ms(lat.get(99.0))} ms",
                  markup=False)
    _print_footer(result)


def _print_boot_storm(fleet: str, result: StormResult) -> None:
    """The table of a --boot storm: each VM's boot time and the IOs its block trace counted."""
    rows = [[v.name, f"{v.start_s:.3f}", f"{v.boot_s:.3f}", f"{v.reads:,}", f"{v.writes:,}", format_bytes(v.bytes),
             f"{v.iops:,.0f}", format_bytes(v.allocated_bytes) if v.allocated_bytes is not None else "-"]
            for v in result.vms]
    accel = (result.accelerator or "?").upper()
    print_table(escape(f"boot storm: {len(result.vms)} VMs of fleet {fleet} booted under {accel} "
                       f"({result.method} clones on {result.backend})"),
                [Col("VM"), Col("start s", "start", right=True), Col("boot s", "boot", right=True),
                 Col("reads", right=True), Col("writes", right=True), Col("bytes", right=True),
                 Col("IOPS", right=True), Col("allocated", "alloc", right=True)], rows)
    console.print(f"fleet: {len(result.vms)} VMs booted in {result.span_s:.3f} s (wall {result.wall_s:.3f} s); boot "
                  f"time p50 {result.boot_s(0.5):.3f} s, p95 {result.boot_s(0.95):.3f} s, max "
                  f"{result.boot_s(1.0):.3f} s; {result.ios:,} IOs ({format_bytes(result.bytes)}): "
                  f"{result.iops:,.0f} IOPS over the storm", markup=False)
    _print_footer(result)


def _print_footer(result: StormResult) -> None:
    """What every storm prints under its table: bytes allocated, engine and tools, machine, notes, file."""
    alloc = format_bytes(result.allocated_bytes) if result.allocated_bytes is not None else "-"
    console.print(f"allocated by the storm: {alloc} ({result.accounting})", markup=False)
    console.print(f"engine: {result.engine}; {', '.join(result.tools.values())}", markup=False)
    console.print(f"machine: {result.machine['cpu_model']}, {result.machine['cores']} cores, kernel "
                  f"{result.machine['kernel']}", markup=False)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"saved: {result.saved_to}", markup=False)
