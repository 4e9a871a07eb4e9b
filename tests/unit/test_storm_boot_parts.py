"""The parts of a ``--boot`` storm that need no VM: the power-off line on a console, a VM's figures from
its QEMU block trace, the memory budget, the QEMU command line and the result's JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from clonefleet.errors import UsageError
from clonefleet.guest.capture import BOOT_APPEND, last_line, powered_off, qemu_boot_args
from clonefleet.storm.boot import (
    QEMU_OVERHEAD_MIB,
    StormFailed,
    file_drive,
    guest_power_off_s,
    memory_budget,
    rbd_drive,
    trace_io,
)
from clonefleet.storm.daemon import RbdAccess
from clonefleet.storm.results import StormResult, VmResult

CONSOLE_OFF = """[    0.000000] Linux version 6.1.0-50-cloud-amd64
[   30.101000] systemd[1]: Reached target multi-user.target
[   31.512345] systemd-shutdown[1]: Powering off.
[   31.700001] ACPI: PM: Preparing to enter system sleep state S5
[   31.701234] reboot: Power down
"""
CONSOLE_PANIC = """[    0.000000] Linux version 6.1.0-50-cloud-amd64
[    2.000000] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)
[    2.000100] Rebooting in 1 seconds..
"""


def test_the_power_off_line_ends_a_boot_and_its_kernel_time_is_read() -> None:
    assert powered_off(CONSOLE_OFF) and guest_power_off_s(CONSOLE_OFF) == pytest.approx(31.701234)
    assert not powered_off(CONSOLE_PANIC) and guest_power_off_s(CONSOLE_PANIC) is None
    assert not powered_off("") and last_line("") == "(none)"
    assert last_line(CONSOLE_PANIC + "\n  \n") == "[    2.000100] Rebooting in 1 seconds.."
    # a power-off line without the kernel's time stamp (printk.time=0) still ends the boot
    assert powered_off("reboot: Power down\n") and guest_power_off_s("reboot: Power down\n") is None


def test_a_vms_figures_come_from_its_block_trace(tmp_path: Path) -> None:
    log = tmp_path / "trace.log"
    log.write_text(
        "7@1000.000000:blk_co_preadv blk 0xa bs 0xb offset 0 bytes 512 flags 0x0\n"
        "7@1000.100000:some_other_event x 1\n"
        "7@1002.000000:blk_co_preadv blk 0xa bs 0xb offset 4096 bytes 8192 flags 0x0\n"
        "7@1003.000000:blk_co_pwritev blk 0xa bs 0xb offset 65536 bytes 4096 flags 0x0\n"
        "7@1003.500000:blk_co_pwritev blk 0xa bs 0xb offset 1048576 bytes 2097152 flags 0x6\n"
        "7@1004.250000:blk_co_pwritev blk 0xa bs 0xb offset 131072 bytes 1024 flags 0x0\n", encoding="utf-8")
    io = trace_io(log)
    assert (io.reads, io.writes, io.bytes) == (2, 2, 512 + 8192 + 4096 + 1024)
    assert (io.zero_writes, io.zero_write_bytes) == (1, 2097152)  # no data: apart from the counts
    assert io.io_span_s == pytest.approx(4.25)


def test_a_trace_without_io_gives_zeros_and_two_disks_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("7@1000.0:other_event x\n", encoding="utf-8")
    assert trace_io(empty).reads == trace_io(tmp_path / "absent.log").writes == 0
    two = tmp_path / "two.log"
    two.write_text("1@1.0:blk_co_preadv blk 0xa bs 0xb offset 0 bytes 512 flags 0x0\n"
                   "1@2.0:blk_co_preadv blk 0xc bs 0xd offset 0 bytes 512 flags 0x0\n", encoding="utf-8")
    with pytest.raises(StormFailed, match="2 disks"):
        trace_io(two)


def test_vms_that_do_not_fit_in_memory_are_refused_in_one_line() -> None:
    memory_budget(4, 512, 4 * (512 + QEMU_OVERHEAD_MIB))  # fits exactly
    with pytest.raises(UsageError) as info:
        memory_budget(64, 512, 22_000)
    assert "64 VMs of 512 MiB" in str(info.value) and "22,000 MiB" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="--memory = 64 MiB"):
        memory_budget(1, 64, 22_000)


def test_the_qemu_command_boots_the_clone_itself_with_its_console_and_trace(tmp_path: Path) -> None:
    clone = tmp_path / "a,b" / "vm-0001.qcow2"
    args = qemu_boot_args("tcg", 512, tmp_path / "c.log", tmp_path / "vmlinuz", tmp_path / "initrd.img",
                          file_drive(clone, "qcow2"), BOOT_APPEND, tmp_path / "t.log")
    assert args[:3] == ["qemu-system-x86_64", "-accel", "tcg"] and "-cpu" not in args  # -cpu host: KVM only
    drive = args[args.index("-drive") + 1]
    assert drive == f"file={tmp_path}/a,,b/vm-0001.qcow2,format=qcow2,cache=none,if=virtio"  # the comma doubled
    assert args[args.index("-serial") + 1] == f"file:{tmp_path}/c.log"
    assert args[args.index("-trace") + 1] == f"enable=blk_co_p*,file={tmp_path}/t.log"
    assert "-no-reboot" in args and "systemd.run_success_action=poweroff" in args[args.index("-append") + 1]
    assert qemu_boot_args("kvm", 512, *[tmp_path] * 3, "file=x", "", tmp_path)[3:5] == ["-cpu", "host"]


def test_an_rbd_clone_is_opened_through_qemus_rbd_driver(tmp_path: Path) -> None:
    drive = rbd_drive("pool,1", "vm-0001", RbdAccess(tmp_path / "x,y" / "ceph.conf", "admin"))
    assert drive == (f"file.driver=rbd,file.pool=pool,,1,file.image=vm-0001,file.conf={tmp_path}/x,,y/ceph.conf,"
                     "file.user=admin,format=raw,cache=none")  # every comma in a value doubled
    assert file_drive(tmp_path / "vm-0001.img", "raw") == f"file={tmp_path}/vm-0001.img,format=raw,cache=none"


def test_a_boot_storms_json_says_its_mode_and_accelerator_and_has_no_latency() -> None:
    vm = VmResult(name="vm-0001.qcow2", start_s=0.0, boot_s=40.0, reads=800, writes=200, bytes=10**6, latency_s={},
                  latency_samples=0, allocated_bytes=4096, boot={"ended_by": "power-off"})
    result = StormResult(manifest="m.toml", fleet_dir="d", fleet="f", backend="qcow2", method="snapshot", engine="e",
                         started_at="2026-01-01T00:00:00Z", seed=1, start_spread_s=0.0, workload={}, vms=(vm,),
                         latency_s={}, wall_s=41.0, allocated_bytes=4096, accounting="a", machine={}, tools={},
                         mode="boot", accelerator="tcg", accelerator_reason="--accel tcg")
    doc = result.to_dict()
    assert doc["format"] == 1 and doc["mode"] == "boot" and doc["accelerator"] == "tcg"
    assert doc["fleet_figures"]["latency_s"] == {} and doc["fleet_figures"]["boot_s"]["max"] == 40.0
    (v,) = doc["vms"]
    assert v["latency_s"] == {} and v["iops"] == 25.0 and v["boot"] == {"ended_by": "power-off"}
    # a fio storm's VM has no "boot" figures, and its storm is mode "fio"
    plain = VmResult(name="x", start_s=0, boot_s=1, reads=1, writes=0, bytes=1, latency_s={}, latency_samples=1,
                     allocated_bytes=None)
    assert "boot" not in plain.to_dict()
