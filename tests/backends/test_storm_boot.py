"""``clonefleet storm --boot``: real Debian clones of a qcow2 fleet booted together under QEMU (TCG here,
KVM where it works), each until its guest powers off; a reflink fleet's clones on xfs likewise (the RBD
boot storm is in test_storm_rbd); then storms stopped by a QEMU killed mid-boot,
by SIGTERM and SIGKILL of clonefleet, and by their timeout. After every storm: no process of the storm
left (every process of the machine is looked at), nothing left in the temporary folder, the GI
unchanged, the clones consistent (``qemu-img check``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import provision_fixtures as pf
import pytest
from test_storm import assert_nothing_left, children, private_tmp, storm_processes

import clonefleet.provision as engine
from clonefleet.guest.debian import DebianImage, build_debian_gi, default_cache_dir
from clonefleet.provision.manifest import Manifest
from clonefleet.storage.data import sha256_file
from clonefleet.storm.boot import WORK_PREFIX
from helpers import require_tool, unavailable

pytestmark = [pytest.mark.backend, pytest.mark.slow]
_ = private_tmp  # a fixture
xfs_dir = pf.xfs_dir  # a fixture

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def debian_gi(tmp_path_factory: pytest.TempPathFactory) -> DebianImage:
    require_tool("debootstrap", "qemu-system-x86_64", "qemu-img", "debugfs", "mkfs.ext4", "dumpe2fs")
    if os.geteuid() != 0 and not (default_cache_dir().is_dir() and any(default_cache_dir().glob("debian-*"))):
        unavailable("building the Debian GI needs root (debootstrap)")
    return build_debian_gi(tmp_path_factory.mktemp("gi"), "debian", cache_dir=default_cache_dir())


@pytest.fixture(scope="module")
def debian_fleet(debian_gi: DebianImage, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    m = pf.fleet_manifest(tmp_path_factory.mktemp("boot-fleet"), debian_gi.qcow2, 4, method="snapshot")
    engine.provision(m)
    return m


def assert_gi_untouched(gi: DebianImage) -> None:
    assert sha256_file(gi.qcow2) == gi.qcow2_sha256


def assert_every_vm_booted(data: dict[str, object], names: list[str]) -> None:
    """Each VM of a boot storm's JSON powered off by itself, issued its boot's IOs and wrote into its clone."""
    vms = data["vms"]
    assert isinstance(vms, list) and [v["name"] for v in vms] == names
    for v in vms:
        boot = v["boot"]
        assert v["boot_s"] > 0 and boot["ended_by"] == "power-off" and boot["qemu_exit"] == 0
        assert boot["console_tail"][-1].endswith("reboot: Power down")
        # the guest kernel's own clock at power-off: inside the VM's boot (QEMU start-up comes before it)
        assert 0 < boot["guest_kernel_s"] < v["boot_s"]
        assert v["reads"] > 100 and v["writes"] > 0 and v["bytes"] > 1024**2 and v["iops"] > 0
        assert v["latency_s"] == {} and v["latency_samples"] == 0  # trace events carry no completion time
        assert v["allocated_bytes"] > 0  # the guest wrote into its clone


def test_a_boot_storm_of_4_debian_clones_reports_each_vms_boot_time(
        debian_fleet: Manifest, debian_gi: DebianImage, private_tmp: Path, cli: Callable[..., object]) -> None:
    m = debian_fleet
    res = cli("storm", str(m.path), "--boot", "--vms", "4", "--json")
    assert res.code == 0, res.err  # type: ignore[attr-defined]
    data = json.loads(res.out)  # type: ignore[attr-defined]
    assert data["mode"] == "boot" and data["accelerator"] in ("kvm", "tcg") and data["accelerator_reason"]
    assert data["backend"] == "qcow2"
    assert_every_vm_booted(data, [f"vm-{i:04d}.qcow2" for i in range(1, 5)])
    assert data["fleet_figures"]["latency_s"] == {} and data["fleet_figures"]["boot_s"]["max"] > 0
    assert any("latency" in n and "not measured" in n for n in data["notes"])
    if data["accelerator"] == "tcg":
        assert any("CPU-bound" in n for n in data["notes"])
    assert "qemu-system-x86_64" in data["tools"]
    saved = json.loads(Path(data["saved_to"]).read_text())
    assert Path(data["saved_to"]).parent == m.path.parent and saved["vms"] == data["vms"]
    assert_gi_untouched(debian_gi)
    assert_nothing_left(m, private_tmp)


def test_a_boot_storm_of_reflink_clones_on_xfs(debian_gi: DebianImage, xfs_dir: Path, private_tmp: Path,
                                               cli: Callable[..., object]) -> None:
    base = Path(tempfile.mkdtemp(dir=xfs_dir))
    try:
        gi = base / "debian.qcow2"  # the GI on the reflink filesystem: each clone a reflinked copy of it
        shutil.copyfile(debian_gi.qcow2, gi)
        m = pf.fleet_manifest(base, gi, 2, backend="reflink", method="snapshot")
        engine.provision(m)
        res = cli("storm", str(m.path), "--boot", "--vms", "2", "--accel", "tcg", "--json")
        assert res.code == 0, res.err  # type: ignore[attr-defined]
        data = json.loads(res.out)  # type: ignore[attr-defined]
        assert data["backend"] == "reflink" and data["method"] == "snapshot"
        assert_every_vm_booted(data, ["vm-0001.qcow2", "vm-0002.qcow2"])
        assert sha256_file(gi) == debian_gi.qcow2_sha256  # the GI untouched
        assert_nothing_left(m, private_tmp)
    finally:
        shutil.rmtree(base)


def test_the_boot_storm_table_and_its_refusals(debian_fleet: Manifest, private_tmp: Path,
                                               cli: Callable[..., object]) -> None:
    m = debian_fleet
    for args, words in [(["--boot", "--trace", "debian-boot"], "--trace: only for fio storms"),
                        (["--boot", "--ios-per-vm", "10"], "--ios-per-vm: only for fio storms"),
                        (["--boot", "--queue-depth", "4"], "--queue-depth: only for fio storms"),
                        (["--accel", "tcg"], "--accel: only with --boot"),
                        (["--boot", "--accel", "xen"], "--accel = 'xen'"),
                        (["--boot", "--vms", "5"], "--vms = 5"),
                        (["--boot", "--memory", "1000000"], "MiB available"),
                        (["--boot", "--memory", "64"], "--memory = 64 MiB")]:
        res = cli("storm", str(m.path), *args)
        assert res.code == 2, (args, res)
        err = res.err.strip()  # type: ignore[attr-defined]
        assert words in err and "\n" not in err and "Traceback" not in err, (args, err)
    # one VM, as a user reads it
    res = cli("storm", str(m.path), "--boot", "--vms", "1", "--accel", "tcg", "--out", str(m.path.parent / "t"))
    assert res.code == 0, res.err  # type: ignore[attr-defined]
    out = res.out  # type: ignore[attr-defined]
    assert "booted under TCG" in out and "vm-0001.qcow2" in out and "boot time p50" in out and "saved:" in out
    assert_nothing_left(m, private_tmp)


def test_a_fleet_of_a_gi_that_does_not_boot_is_one_line(tmp_path: Path, private_tmp: Path,
                                                        cli: Callable[..., object]) -> None:
    blank = tmp_path / "blank" / "blank.qcow2"  # no filesystem at all: refused before any VM starts
    blank.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(blank), "64M"], check=True)
    m = pf.fleet_manifest(blank.parent, blank, 2, method="snapshot")
    engine.provision(m)
    res = cli("storm", str(m.path), "--boot", "--accel", "tcg")
    err = res.err.strip()  # type: ignore[attr-defined]
    assert res.code == 2 and "does not boot" in err and "\n" not in err, err  # type: ignore[attr-defined]
    assert_nothing_left(m, private_tmp)
    # the synthetic GI's /boot holds blobs named like a kernel and an initrd: QEMU refuses them at once
    gi = pf.small_gi(tmp_path)
    m = pf.fleet_manifest(tmp_path, gi.path, 2, method="snapshot")
    engine.provision(m)
    res = cli("storm", str(m.path), "--boot", "--accel", "tcg")
    err = res.err.strip()  # type: ignore[attr-defined]
    assert res.code == 1 and "\n" not in err and "Traceback" not in err, err  # type: ignore[attr-defined]
    assert "qemu-system-x86_64 (pid " in err and "exited with status 1" in err and "; QEMU: " in err, err
    assert "every VM of the storm was stopped" in err
    assert_nothing_left(m, private_tmp)


def run_and_stop(m: Manifest, tmp: Path, how: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``clonefleet storm --boot`` in its own process; once every VM's guest printed on its console,
    SIGKILL one QEMU (``qemu``), SIGTERM the storm (``storm``) or SIGKILL clonefleet (``clonefleet``).
    Returns the run and the pid of the process killed or signalled."""
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": f"{SRC}:{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "clonefleet", "storm", str(m.path), "--boot", "--vms", "2",
                             "--accel", "tcg", "--out", str(m.path.parent / "stopped"), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 180
        qemus: list[int] = []
        while time.monotonic() < deadline and proc.poll() is None:
            qemus = [pid for pid, comm in children(proc.pid) if comm.startswith("qemu-system")]
            consoles = list(tmp.glob(f"{WORK_PREFIX}*/console-*.log"))
            if len(qemus) == 2 and len(consoles) == 2 and all(c.stat().st_size > 0 for c in consoles):
                break
            time.sleep(0.1)
        assert proc.poll() is None and len(qemus) == 2, proc.communicate()
        victim = qemus[1] if how == "qemu" else proc.pid
        os.kill(victim, {"qemu": signal.SIGKILL, "storm": signal.SIGTERM}.get(how, signal.SIGKILL))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), victim


@pytest.mark.parametrize("how", ["qemu", "storm", "clonefleet"])
def test_a_boot_storm_stopped_mid_boot_stops_every_vm_and_leaves_nothing(
        debian_fleet: Manifest, debian_gi: DebianImage, how: str) -> None:
    m = debian_fleet
    tmp = Path(tempfile.mkdtemp(prefix="cfsb-"))
    try:
        done, victim = run_and_stop(m, tmp, how)
        err = done.stderr.strip()
        assert "\n" not in err and "Traceback" not in err, err
        if how == "qemu":
            assert done.returncode == 1
            assert re.match(rf"clonefleet: error: VM vm-000[12]\.qcow2: qemu-system-x86_64 \(pid {victim}\) ", err), err
            assert "was killed by SIGKILL mid-storm; last console line: " in err and "every VM" in err
        elif how == "storm":
            assert done.returncode == 130 and "SIGTERM" in err
        else:  # no handler runs: the QEMUs die with it (parent-death signal), the watchdog removes the folder
            assert done.returncode == -signal.SIGKILL and err == ""
            deadline = time.monotonic() + 15
            while (list(tmp.iterdir()) or storm_processes(str(m.dest), str(tmp))) and time.monotonic() < deadline:
                time.sleep(0.1)
        assert not (m.path.parent / "stopped").exists() or not list((m.path.parent / "stopped").iterdir())
        assert_nothing_left(m, tmp)
        assert_gi_untouched(debian_gi)
    finally:
        tmp.rmdir() if tmp.exists() and not list(tmp.iterdir()) else None


def test_a_boot_storm_past_its_timeout_is_one_line(debian_fleet: Manifest, private_tmp: Path,
                                                   cli: Callable[..., object]) -> None:
    m = debian_fleet
    res = cli("storm", str(m.path), "--boot", "--vms", "2", "--accel", "tcg", "--timeout", "5")
    assert res.code == 1, res  # type: ignore[attr-defined]
    err = res.err.strip()  # type: ignore[attr-defined]
    assert "did not finish within 5 s" in err and "every VM was stopped" in err and "\n" not in err
    assert_nothing_left(m, private_tmp)
