"""Boot storms on RBD fleets (``clonefleet storm``: qemu-storage-daemon serves the images through
QEMU's rbd driver over NBD, fio replays the boots) on the session's real Ceph cluster: 8 snapshot
clones stormed, every VM's IOs issued as the trace holds them, the bytes the storm allocated measured
by the backend and checked against the objects the trace writes (a snapshot clone's first write to an
object copies the whole 4 MiB object up), the GI image and its snapshot unchanged byte for byte, no
process left, the private folder gone; fio or the daemon killed mid-storm (one line, exit 1, and the
next run does not wait for a killed client's watches); a wrong pool, an unreachable monitor and an
incomplete fleet refused in one line (exit 2) before anything starts; and 2 Debian clones booted as real
VMs (``storm --boot``), QEMU opening the images through its rbd driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import rbd_fixtures as rf
from test_storm import private_tmp, run_and_kill, storm_processes
from test_storm_boot import assert_every_vm_booted, debian_gi

from ceph_cluster import CephCluster
from clonefleet.guest.debian import DebianImage
from clonefleet.provision import load_manifest, rbdfleet
from clonefleet.provision.manifest import Manifest, write_manifest
from clonefleet.sim.trace import WRITE
from clonefleet.storage import devceph
from clonefleet.storage.goldimage import check_golden_image
from clonefleet.storm import StormRequest, run_storm
from helpers import require_tool, unavailable

__all__ = ["debian_gi", "private_tmp"]  # fixtures, imported from test_storm_boot and test_storm
pytestmark = [pytest.mark.backend, pytest.mark.slow]
MiB = rf.MiB
OBJECT_BYTES = 4 * MiB  # rbd's default object size
SRC = Path(__file__).resolve().parents[2] / "src"


def require_storm_tools() -> None:
    require_tool("fio", "qemu-storage-daemon")
    probe = subprocess.run(["qemu-storage-daemon", "--blockdev",
                            "driver=rbd,node-name=x,pool=p,image=i,conf=/nonexistent/ceph.conf"],
                           capture_output=True, text=True, timeout=30)
    if "does not accept value 'rbd'" in probe.stderr:
        unavailable("qemu-storage-daemon has no rbd driver (Debian: apt-get install qemu-block-extra)")


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clonefleet", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def written_objects(m: Manifest, vms: int, request: StormRequest) -> list[set[int]]:
    """Per VM, the 4 MiB objects the storm's trace writes to (the same seed draws the same boots)."""
    gi = check_golden_image(m.gi, m.gi_sha256)
    w = request.workload.draw(m, gi, vms)
    out = []
    for v in range(vms):
        sl = w.trace.vm_slice(v)
        writes = w.trace.op[sl] == WRITE
        start = w.trace.offset_bytes[sl][writes].astype(np.int64)
        first = start // OBJECT_BYTES
        last = (start + w.trace.length_bytes[sl][writes] - 1) // OBJECT_BYTES
        out.append({int(o) for a, b in zip(first.tolist(), last.tolist(), strict=True) for o in range(a, b + 1)})
    return out


def watchers(cluster: CephCluster, m: Manifest) -> dict[str, list[object]]:
    found = {}
    for name in m.clone_names():
        status = json.loads(cluster.rbd("status", f"{m.name}.{name}", "--format", "json").stdout)
        if status.get("watchers"):
            found[name] = status["watchers"]
    return found


@pytest.fixture(scope="module")
def rbd_fleet(tmp_path_factory: pytest.TempPathFactory, ceph_cluster: CephCluster) -> Manifest:
    require_storm_tools()
    base = tmp_path_factory.mktemp("storm-rbd")
    gi = rf.raw_gi(base)  # 32 MiB, every byte data: a copy-up copies a whole object
    m = rf.rbd_manifest(base, ceph_cluster, gi, 8, writes={"bytes": "1 MiB", "extents": 16})
    rbdfleet.provision(m)
    return m


def test_rbd_storm_of_8_snapshot_clones(rbd_fleet: Manifest, ceph_cluster: CephCluster, private_tmp: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    m = rbd_fleet
    gi_snap, gi_head = f"{m.name}.gi@clonefleet-gi", f"{m.name}.gi"
    shas = {spec: rf.image_sha256(ceph_cluster, spec) for spec in (gi_snap, gi_head)}
    # the daemon must take the manifest's ceph.conf, not whatever the caller's environment names
    monkeypatch.setenv("CEPH_CONF", str(private_tmp.parent / "no-such-ceph.conf"))
    request = StormRequest(ios_per_vm=1500, start_spread_s=0.3, seed=11, out=m.path.parent / "out")
    result = run_storm(m, request)
    assert result.backend == "rbd" and result.method == "snapshot"
    assert "rbd driver" in result.engine and "client cache off" in result.engine
    assert [v.name for v in result.vms] == [f"vm-{i:04d}" for i in range(1, 9)]
    # fio issued exactly the trace's IOs for every VM (else the storm notes the difference)
    assert not [n for n in result.notes if "fio issued" in n], result.notes
    objects = written_objects(m, 8, request)
    for v, objs in zip(result.vms, objects, strict=True):
        assert v.ios == 1500 and v.writes > 0 and v.reads > 0
        assert v.boot_s > 0 and v.iops > 0 and 0 <= v.start_s <= 0.3
        assert 0 < v.latency_s[50.0] <= v.latency_s[99.0]
        # every object the boot writes was copied up whole (the GI is data throughout), and nothing else
        assert v.allocated_bytes == len(objs) * OBJECT_BYTES, (v.name, v.allocated_bytes, sorted(objs))
    assert result.allocated_bytes == sum(len(o) for o in objects) * OBJECT_BYTES
    # the cluster agrees: each clone now holds exactly those objects of its own
    for name, objs in zip(m.clone_names(), objects, strict=True):
        assert rbdfleet_stored(ceph_cluster, m, name) == len(objs) * OBJECT_BYTES
    saved = json.loads(Path(str(result.saved_to)).read_text())
    assert saved["backend"] == "rbd" and saved["fleet_figures"]["ios"] == 12000
    assert saved["tools"]["fio"].startswith("fio-") and "qemu-storage-daemon" in saved["tools"]
    assert {spec: rf.image_sha256(ceph_cluster, spec) for spec in shas} == shas  # the GI untouched
    assert watchers(ceph_cluster, m) == {}  # the daemon closed every image
    assert storm_processes(str(m.dest), str(private_tmp)) == []


def rbdfleet_stored(cluster: CephCluster, m: Manifest, name: str) -> int:
    """Bytes of the objects a clone holds itself, as 'rbd du' counts them (whole objects: what a copy-up
    writes over a GI that is data throughout; its parent's objects not counted)."""
    out = json.loads(cluster.rbd("du", f"{m.name}.{name}", "--format", "json").stdout)
    return sum(int(i["used_size"]) for i in out["images"] if i.get("snapshot") is None)


@pytest.mark.parametrize("victim", ["fio", "qemu-storage-daemon"])
def test_rbd_storm_whose_fio_or_daemon_is_killed_stops_in_one_line(tmp_path: Path, ceph_cluster: CephCluster,
                                                                   victim: str) -> None:
    require_storm_tools()
    gi = rf.raw_gi(tmp_path, 16 * MiB)
    m = rf.rbd_manifest(tmp_path, ceph_cluster, gi, 4)
    rbdfleet.provision(m)
    tmp = Path(tempfile.mkdtemp(prefix="cfst-"))
    try:
        done = run_and_kill(m, tmp, victim, ios=100_000)
        err = done.stderr.strip()
        assert done.returncode == 1, (done.stdout, err)
        assert "\n" not in err and "Traceback" not in err, err
        assert err.startswith(f"clonefleet: error: {victim} (pid ") and "killed by SIGKILL mid-storm" in err, err
        assert storm_processes(str(m.dest), str(tmp)) == [] and list(tmp.iterdir()) == []
        assert not (m.path.parent / "killed").exists() or not list((m.path.parent / "killed").iterdir())
        # a killed daemon leaves its images watched (Ceph drops such watches after about 30 s); the storm recorded
        # those clients as ended, so the next storm drops them at once instead of waiting or refusing
        t0 = time.monotonic()
        again = cli("storm", str(m.path), "--ios-per-vm", "200", "--json",
                    env={**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": f"{SRC}:{os.environ.get('PYTHONPATH', '')}"})
        assert again.returncode == 0, again.stderr
        assert time.monotonic() - t0 < 25
        assert watchers(ceph_cluster, m) == {}
        assert list(tmp.iterdir()) == []
    finally:
        tmp.rmdir() if tmp.exists() and not list(tmp.iterdir()) else None
        rbdfleet.destroy(m)
        rf.remove_fleet_leftovers(ceph_cluster, m)


@pytest.mark.parametrize("case", ["wrong pool", "unreachable monitor", "incomplete fleet"])
def test_rbd_storm_refuses_a_bad_configuration_in_one_line(rbd_fleet: Manifest, tmp_path: Path, case: str) -> None:
    m = rbd_fleet
    table = tomllib.loads(m.path.read_text(encoding="utf-8"))
    table["fleet"]["dest"] = str(m.dest)  # the provisioned fleet's directory, from another folder
    table["golden_image"]["path"] = str(m.gi)
    if case == "wrong pool":
        table["rbd"]["pool"] = "no-such-pool"
        expected = "no-such-pool"
    elif case == "unreachable monitor":
        conf = tmp_path / "elsewhere.conf"
        conf.write_text(f"[global]\nmon host = v2:127.0.0.1:{devceph.free_port()}\n", encoding="utf-8")
        table["rbd"]["conf"] = str(conf)
        expected = "monitors"
    else:
        table["fleet"]["count"] = 9
        expected = "1 of 9 clones are not provisioned"
    path = tmp_path / "bad.toml"
    write_manifest(path, table)
    assert load_manifest(str(path)).dest == m.dest
    t0 = time.monotonic()
    r = cli("storm", str(path), "--ios-per-vm", "100")
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert time.monotonic() - t0 < 15
    assert not list(tmp_path.glob("storm-*.json"))  # refused before the storm: no result


def test_rbd_boot_storm_of_2_debian_clones(debian_gi: DebianImage, tmp_path: Path, ceph_cluster: CephCluster,
                                           private_tmp: Path) -> None:
    require_tool("qemu-system-x86_64")
    m = rf.rbd_manifest(tmp_path, ceph_cluster, debian_gi.qcow2, 2)
    rbdfleet.provision(m)
    try:
        gi_snap = f"{m.name}.gi@clonefleet-gi"
        sha = rf.image_sha256(ceph_cluster, gi_snap)
        env = {**os.environ, "TMPDIR": str(private_tmp), "PYTHONPATH": f"{SRC}:{os.environ.get('PYTHONPATH', '')}"}
        r = cli("storm", str(m.path), "--boot", "--vms", "2", "--accel", "tcg", "--json", timeout=900, env=env)
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert data["backend"] == "rbd" and data["mode"] == "boot"
        assert_every_vm_booted(data, ["vm-0001", "vm-0002"])
        # the boot's writes, measured to the byte (the clones were fresh), within the whole objects
        # 'rbd du' counts for each clone
        for v in data["vms"]:
            assert 0 < v["allocated_bytes"] <= rbdfleet_stored(ceph_cluster, m, v["name"]), v
        assert rf.image_sha256(ceph_cluster, gi_snap) == sha  # the GI snapshot untouched
        assert watchers(ceph_cluster, m) == {}  # every QEMU closed its image
        assert storm_processes(str(m.dest), str(private_tmp)) == []
        assert list(private_tmp.iterdir()) == []
    finally:
        rbdfleet.destroy(m)
        rf.remove_fleet_leftovers(ceph_cluster, m)
