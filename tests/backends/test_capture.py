"""A real boot, end to end: a Debian GI built from Debian's packages, its boot captured under QEMU.

The GI is built once per recipe into the cache (``$CLONEFLEET_CACHE`` or ~/.cache/clonefleet):
a clean CI machine builds it here (debootstrap, a minute or two), later runs copy it. Two boots
are captured (one with the accelerator chosen by the KVM probe, one with TCG forced) and checked
against each other, against the GI's filesystem (debugfs maps the reads to the files a boot
loads) and against the model; then captures are killed by SIGTERM and SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clonefleet.guest.capture import WORK_PREFIX, Capture, capture_boot
from clonefleet.guest.debian import DebianImage, build_debian_gi, default_cache_dir
from clonefleet.planner import boot_allocated_bytes
from clonefleet.presets.derive import allocated_bytes_from_trace, derive_fleet, trace_sha256
from clonefleet.sim.trace import READ
from clonefleet.sim.traceio import read_trace
from clonefleet.storage.data import sha256_file
from clonefleet.storage.ext4 import files_of_blocks
from clonefleet.storage.workdirs import MARKER, remove_stale_work_dirs
from helpers import require_tool, unavailable

pytestmark = [pytest.mark.backend, pytest.mark.slow]


@pytest.fixture(scope="module")
def debian_gi(tmp_path_factory: pytest.TempPathFactory) -> DebianImage:
    require_tool("debootstrap", "qemu-system-x86_64", "qemu-img", "debugfs", "mkfs.ext4", "dumpe2fs")
    if os.geteuid() != 0:
        unavailable("building the Debian GI needs root (debootstrap)")
    return build_debian_gi(tmp_path_factory.mktemp("gi"), "debian", cache_dir=default_cache_dir())


@pytest.fixture(scope="module")
def captures(debian_gi: DebianImage, tmp_path_factory: pytest.TempPathFactory) -> list[Capture]:
    return [capture_boot(debian_gi.qcow2, tmp_path_factory.mktemp("auto"), accel="auto"),
            capture_boot(debian_gi.qcow2, tmp_path_factory.mktemp("tcg"), accel="tcg")]


def _qemu_pids_for(text: str) -> list[int]:
    """Pids of live processes whose command line mentions ``text`` (a capture's folder)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "qemu-system" in cmdline and text in cmdline:
                pids.append(int(proc.name))
    return pids


def test_the_debian_gi_records_its_packages_and_checksums(debian_gi: DebianImage) -> None:
    doc = json.loads(debian_gi.manifest.read_text(encoding="utf-8"))
    assert doc["suite"] == "bookworm" and doc["kernel"].startswith("/boot/vmlinuz-")
    for pkg in ("systemd", "udev", "linux-image-cloud-amd64", "libc6"):
        assert doc["packages"].get(pkg), pkg  # every package with its version
    assert sha256_file(debian_gi.qcow2) == doc["images"]["qcow2"]["sha256"] == debian_gi.qcow2_sha256
    assert sha256_file(debian_gi.raw) == doc["images"]["raw"]["sha256"]
    assert debian_gi.qcow2.stat().st_mode & 0o222 == 0  # read-only


def test_two_captures_of_the_same_gi_agree(captures: list[Capture]) -> None:
    a, b = captures
    assert a.ended_by == b.ended_by == "power-off"
    assert a.accelerator in ("kvm", "tcg") and b.accelerator == "tcg" and a.accelerator_reason
    assert b.ios == pytest.approx(a.ios, rel=0.10)
    assert b.read_bytes == pytest.approx(a.read_bytes, rel=0.10)
    for c in captures:
        provenance = json.loads(c.provenance.read_text(encoding="utf-8"))
        assert provenance["qemu"].startswith("QEMU emulator") and provenance["kernel"]["version"]
        assert provenance["files"]["boot.csv"] == trace_sha256(c.trace)
        assert (c.folder / "fio" / "vm-00000.iolog").read_text().startswith("fio version 3 iolog")
        assert "reboot: Power down" in (c.folder / "console.log").read_text(errors="replace")


def test_the_reads_are_the_files_a_boot_loads(debian_gi: DebianImage, captures: list[Capture]) -> None:
    trace = read_trace(captures[0].trace)
    reads = trace.op == READ
    blocks = np.unique(trace.offset_bytes[reads] // 4096)
    sample = np.random.default_rng(0).choice(blocks, size=min(400, len(blocks)), replace=False)
    files = set(files_of_blocks(debian_gi.raw, sample.tolist()).values())
    assert len(files) > 50
    assert any(f.startswith("/usr/lib/modules/") and f.endswith(".ko") for f in files)  # kernel modules
    assert any(f.startswith("/usr/lib/systemd/") for f in files)  # systemd
    assert any(f.startswith("/usr/lib/x86_64-linux-gnu/") and ".so" in f for f in files)  # shared libraries


def test_the_model_agrees_with_the_trace_and_the_clone_growth(debian_gi: DebianImage,
                                                              captures: list[Capture]) -> None:
    for c in captures:
        trace = read_trace(c.trace)
        fleet = derive_fleet(trace, name="captured", source_label=str(c.trace), sha256=trace_sha256(c.trace),
                             gi_virtual_bytes=debian_gi.virtual_bytes, gi_used_bytes=debian_gi.used_bytes).fleet
        for unit in (64 * 2**10, 4 * 2**20):
            assert float(boot_allocated_bytes(fleet, unit)) == pytest.approx(
                allocated_bytes_from_trace(trace, unit), rel=0.10)
        assert float(boot_allocated_bytes(fleet, 64 * 2**10)) == pytest.approx(c.growth_bytes, rel=0.15)


def test_the_gi_is_untouched_and_nothing_is_left(debian_gi: DebianImage, captures: list[Capture]) -> None:
    assert sha256_file(debian_gi.qcow2) == debian_gi.qcow2_sha256
    for c in captures:
        assert not _qemu_pids_for(str(c.folder))
        assert sorted(p.name for p in c.folder.iterdir()) == ["boot.csv", "capture.json", "console.log", "fio",
                                                               "qemu-trace.log.gz"]


def _start_capture(gi: Path, out: Path) -> tuple[subprocess.Popen[bytes], Path]:
    proc = subprocess.Popen([sys.executable, "-m", "clonefleet", "capture", str(gi), "-o", str(out), "--accel",
                             "tcg", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until QEMU runs and the guest prints
        consoles = list(out.glob(f"{WORK_PREFIX}*/console.log"))
        if consoles and consoles[0].stat().st_size > 0 and _qemu_pids_for(str(out)):
            return proc, consoles[0].parent
        if proc.poll() is not None:
            pytest.fail(f"the capture ended before QEMU booted: {proc.stderr.read() if proc.stderr else ''!r}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail("QEMU did not start within 120 s")


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_capture_leaves_nothing(debian_gi: DebianImage, tmp_path: Path, how: signal.Signals) -> None:
    out = tmp_path / "out"
    proc, work = _start_capture(debian_gi.qcow2, out)
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and len(err.decode().strip().splitlines()) == 1 and b"Traceback" not in err
    assert not _qemu_pids_for(str(out)) and not work.exists()
    assert list(out.iterdir()) == []  # no output, no temporary, no socket
    assert sha256_file(debian_gi.qcow2) == debian_gi.qcow2_sha256


def test_a_killed_capture_takes_qemu_with_it_and_leaves_no_folder(debian_gi: DebianImage, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stranger = out / f"{WORK_PREFIX}not-ours"
    stranger.mkdir()  # named like ours but without our marker: never removed
    proc, work = _start_capture(debian_gi.qcow2, out)
    assert (work / MARKER).read_text() == str(proc.pid)
    proc.kill()  # SIGKILL: no handler of clonefleet runs
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while (_qemu_pids_for(str(out)) or work.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _qemu_pids_for(str(out))  # QEMU died with it (PR_SET_PDEATHSIG)
    assert not work.exists()  # the work folder's watchdog removed it
    assert sorted(p.name for p in out.iterdir()) == [stranger.name]
    assert remove_stale_work_dirs(out, WORK_PREFIX) == [] and stranger.exists()


def test_a_capture_that_outlives_its_timeout_fails_in_one_line_and_leaves_nothing(cli, debian_gi: DebianImage,
                                                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = cli("capture", str(debian_gi.qcow2), "-o", str(out), "--accel", "tcg", "--timeout", "3")
    assert r.code == 1 and "did not finish within 3 s" in r.err and len(r.err.strip().splitlines()) == 1
    assert not _qemu_pids_for(str(out)) and list(out.iterdir()) == []


def test_a_gi_without_a_kernel_is_one_line(cli, tmp_path: Path) -> None:
    require_tool("qemu-img", "debugfs")
    blank = tmp_path / "blank.raw"
    with open(blank, "wb") as f:
        f.truncate(64 * 2**20)
    r = cli("capture", str(blank), "-o", str(tmp_path / "out"))
    assert r.code == 2 and "no ext4 filesystem" in r.err and len(r.err.strip().splitlines()) == 1


def test_the_debian_gi_comes_from_the_cache_and_refuses_synthetic_flags(cli, debian_gi: DebianImage,
                                                                        tmp_path: Path) -> None:
    r = cli("gi", "build", "--os", "debian", "-o", str(tmp_path / "gi"), "--cache", str(default_cache_dir()),
            "--json")
    assert r.code == 0 and json.loads(r.out)["from_cache"] is True
    assert sha256_file(tmp_path / "gi" / "debian.qcow2") == debian_gi.qcow2_sha256
    again = cli("gi", "build", "--os", "debian", "-o", str(tmp_path / "gi"), "--cache", str(default_cache_dir()))
    assert again.code == 2 and "exists" in again.err
    bad = cli("gi", "build", "--os", "debian", "--size", "2GiB", "-o", str(tmp_path / "x"))
    assert bad.code == 2 and "only for --os synthetic" in bad.err
