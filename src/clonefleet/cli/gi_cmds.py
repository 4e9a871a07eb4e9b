"""Commands on golden images: build a small synthetic one (no downloads) or a bootable Debian one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from clonefleet.cli.app import JSON_OPTION, QUIET_OPTION, app, console, emit_json, progress_display
from clonefleet.errors import UsageError
from clonefleet.guest import capture
from clonefleet.units import UnitError, format_bytes, parse_bytes

gi_app = typer.Typer(help="Golden images: build a synthetic one for demos and tests, or a bootable Debian one.",
                     no_args_is_help=True)
OS_CHOICES = ("synthetic", "debian")
app.add_typer(gi_app, name="gi")


def _size(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_bytes(text)
    except UnitError as exc:
        raise UsageError(f"{flag} = {text!r}: {exc}") from None


@gi_app.command("build")
def gi_build_cmd(
    out: Path = typer.Option(Path("out/gi"), "--out", "-o", help="Folder to write the image into."),
    os_name: str = typer.Option("synthetic", "--os",
                                help="synthetic: an ext4 tree of seeded files, built in seconds, no downloads; "
                                     "debian: a bootable Debian bookworm from Debian's packages (root, the mirror; "
                                     "a minute or two the first time, then cached)."),
    name: str = typer.Option(None, "--name", help="Image file name, without the extension (default gi, or debian)."),
    size: str = typer.Option(None, "--size", help="synthetic: virtual size, e.g. '256 MiB' (the default), '2 GiB'."),
    content: str = typer.Option(None, "--content", help="synthetic: bytes of files in the tree (default: a quarter "
                                                        "of --size)."),
    fmt: str = typer.Option(None, "--format", help="synthetic: qcow2 (default) or raw. debian writes both."),
    seed: int = typer.Option(None, "--seed", min=0, max=2**63 - 1,
                             help="synthetic: seed of the tree (default 0): the same seed gives the same bytes."),
    mirror: str = typer.Option(None, "--mirror", help="debian: the Debian mirror (default: the one apt uses)."),
    cache: Path = typer.Option(None, "--cache", help="debian: cache folder (default $CLONEFLEET_CACHE or "
                                                     "~/.cache/clonefleet)."),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Build a golden image: a synthetic ext4 tree of real files (fast), or a bootable Debian (--os debian)."""
    if os_name not in OS_CHOICES:
        raise UsageError(f"--os = {os_name!r}: one of {', '.join(OS_CHOICES)}")
    if os_name == "debian":
        given = [flag for flag, value in (("--size", size), ("--content", content), ("--format", fmt),
                                          ("--seed", seed)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only for --os synthetic; the Debian GI's recipe is fixed "
                             "(1 GiB, qcow2 and raw)")
        _build_debian(out, name or "debian", mirror, cache, as_json, quiet)
        return
    if mirror is not None or cache is not None:
        raise UsageError("--mirror, --cache: only for --os debian")
    from clonefleet.provision.goldimage import build_golden_image

    size_bytes = _size("--size", size or "256 MiB")
    assert size_bytes is not None
    gi = build_golden_image(out, name or "gi", size_bytes=size_bytes, fmt=fmt or "qcow2", seed=seed or 0,
                            content_bytes=_size("--content", content))
    if as_json:
        doc = dataclasses.asdict(gi)
        doc["path"], doc["format"] = str(gi.path), str(gi.format.value)
        emit_json(doc)
        return
    console.print(f"built {gi.path}: {format_bytes(gi.virtual_bytes)} virtual, ext4 with {gi.file_count} files, "
                  f"{format_bytes(gi.used_bytes)} of data (G_used), sha256 {gi.sha256}", markup=False, soft_wrap=True)


def _build_debian(out: Path, name: str, mirror: str | None, cache: Path | None, as_json: bool, quiet: bool) -> None:
    from clonefleet.guest.debian import build_debian_gi

    with progress_display(not (as_json or quiet)) as report:
        gi = build_debian_gi(out, name, mirror=mirror, cache_dir=cache, progress=report)
    if as_json:
        emit_json(dataclasses.asdict(gi))  # paths as text
        return
    how = "copied from the cache" if gi.from_cache else "built"
    console.print(f"{how}: {gi.qcow2} (and {gi.raw.name}): Debian bookworm, kernel {gi.kernel_version}, "
                  f"{gi.packages} packages, {format_bytes(gi.virtual_bytes)} virtual, "
                  f"{format_bytes(gi.used_bytes)} of data (G_used); manifest {gi.manifest}; "
                  f"sha256 {gi.qcow2_sha256}", markup=False, soft_wrap=True)


@app.command("capture")
def capture_cmd(
    gi: Path = typer.Argument(..., help="The GI to boot (qcow2 or raw) with its kernel in /boot, "
                                        "e.g. out/gi/debian.qcow2."),
    out: Path = typer.Option(Path("out/capture"), "--out", "-o",
                             help="Folder for boot.csv, fio/, qemu-trace.log.gz, console.log, capture.json."),
    accel: str = typer.Option("auto", "--accel", help="auto (KVM if a short probe boots under it, else TCG), "
                                                      "kvm or tcg."),
    marker: str = typer.Option(None, "--marker", help="Stop when this text appears on the serial console "
                                                      "(default: when the guest powers off)."),
    timeout: float = typer.Option(capture.TIMEOUT_S, "--timeout", help="Give up after this many s."),
    memory: int = typer.Option(capture.MEMORY_MIB, "--memory", help="Guest memory [MiB]."),
    kernel: Path = typer.Option(None, "--kernel", help="Boot this kernel instead of the GI's own (with --initrd)."),
    initrd: Path = typer.Option(None, "--initrd", help="The initramfs that goes with --kernel."),
    append: str = typer.Option(None, "--append", help="The whole kernel command line, replacing the default: keep "
                                                      "console=ttyS0 and root=/dev/vda, and a way to end the boot "
                                                      "(power-off, or --marker)."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier capture's files in --out."),
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Boot a linked clone of a GI under QEMU and record every block IO of its boot: the trace (CSV,
    fio iolog, QEMU's log), the console, the clone's growth and the provenance. The GI is only read."""
    with progress_display(not (as_json or quiet)) as report:
        c = capture.capture_boot(gi, out, accel=accel, memory_mib=memory, timeout_s=timeout, marker=marker,
                                 kernel=kernel, initrd=initrd, append=append or capture.BOOT_APPEND, force=force,
                                 progress=report)
    if as_json:
        emit_json(dataclasses.asdict(c))  # paths as text
        return
    console.print(f"captured a boot under {c.accelerator.upper()}, until {c.ended_by}: {c.ios} IOs over "
                  f"{c.trace_s:.1f} s (QEMU ran {c.boot_s:.0f} s), {c.reads} reads ({format_bytes(c.read_bytes)}), "
                  f"{c.writes} writes ({format_bytes(c.write_bytes)}, {format_bytes(c.write_distinct_bytes)} of them "
                  f"distinct); the clone grew by {format_bytes(c.growth_bytes)} of data (whole 64 KiB clusters)",
                  markup=False, soft_wrap=True)
    console.print(f"accelerator: {c.accelerator} ({c.accelerator_reason})", markup=False, soft_wrap=True)
    console.print(f"wrote {c.trace} (and fio/, qemu-trace.log.gz, console.log) and {c.provenance}; next: "
                  f"clonefleet presets derive {c.trace} -o my-fleet.toml --gi-size {c.gi_virtual_bytes} "
                  f"--gi-used {c.gi_used_bytes}", markup=False, soft_wrap=True)
