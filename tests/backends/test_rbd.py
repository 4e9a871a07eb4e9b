"""Backend rbd on a real single-node Ceph cluster: the three methods, replicas in their own pool,
protection of the GI snapshot, flatten, the clone depth limit, destroy, images clonefleet did not make,
and bad configuration (a wrong pool, a missing keyring, an unreachable monitor: one line, exit 2,
under 10 s). Every result is checked with the rbd tool itself, not only through clonefleet."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rbd_fixtures as rf

from ceph_cluster import CephCluster
from clonefleet.provision import rbdfleet
from clonefleet.storage import devceph

pytestmark = [pytest.mark.backend, pytest.mark.slow]
MiB = rf.MiB


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clonefleet", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_snapshot_clones_are_layered_on_a_protected_snapshot_and_destroy_keeps_the_gi(
        tmp_path: Path, ceph_cluster: CephCluster) -> None:
    gi = rf.raw_gi(tmp_path)
    m = rf.rbd_manifest(tmp_path, ceph_cluster, gi, 12)
    r = cli("provision", str(m.path))
    assert r.returncode == 0, r.stderr
    names = {f"{m.name}.{n}" for n in m.clone_names()}
    assert rf.fleet_images(ceph_cluster, m) == names
    gi_snap = f"{m.name}.gi@clonefleet-gi"
    assert ceph_cluster.children(gi_snap) == {f"rbd/{n}" for n in names}
    info = ceph_cluster.rbd("info", f"{m.name}.vm-0001", "--format", "json")
    assert '"parent"' in info.stdout
    assert rf.image_sha256(ceph_cluster, gi_snap) == rf.sha256_file(gi)  # the import is the GI, byte for byte
    assert rf.image_sha256(ceph_cluster, f"{m.name}.vm-0007") == rf.sha256_file(gi)
    # the snapshot is protected: Ceph itself refuses to remove it while clones exist
    refused = ceph_cluster.rbd("snap", "rm", gi_snap, check=False)
    assert refused.returncode != 0 and "protected" in refused.stderr
    st = cli("status", str(m.path), "--verify")
    assert st.returncode == 0, st.stdout + st.stderr
    # a rerun changes nothing
    again = rbdfleet.provision(m)
    assert (again.created, again.adopted, again.remade) == (0, 0, 0)
    d = cli("destroy", str(m.path), "--yes")
    assert d.returncode == 0, d.stderr
    assert rf.fleet_images(ceph_cluster, m) == set()
    assert f"{m.name}.gi" in ceph_cluster.ls()  # never the GI image
    assert ceph_cluster.rbd("snap", "ls", f"{m.name}.gi").stdout.strip() == ""  # unprotected and removed
    # provisioned again after a destroy: the GI image is reused, its snapshot made again
    assert rbdfleet.provision(m).created == 12
    rbdfleet.destroy(m)
    rf.remove_fleet_leftovers(ceph_cluster, m)


def test_thin_and_full_copies_hold_their_data(tmp_path: Path, ceph_cluster: CephCluster) -> None:
    gi = rf.raw_gi(tmp_path, 16 * MiB)
    half_sparse = tmp_path / "sparse.raw"  # 8 MiB of data, 24 MiB of hole
    with open(half_sparse, "wb") as f:
        f.write(gi.read_bytes()[:8 * MiB])
        f.truncate(32 * MiB)
    thin = rf.rbd_manifest(tmp_path, ceph_cluster, half_sparse, 3, method="thin")
    full = rf.rbd_manifest(tmp_path, ceph_cluster, half_sparse, 2, method="full")
    for m in (thin, full):
        rbdfleet.provision(m)
        assert rbdfleet.status(m, verify=True).in_sync
        for name in m.clone_names():
            info = ceph_cluster.rbd("info", f"{m.name}.{name}")
            assert "parent" not in info.stdout  # a copy, not a clone
            assert rf.image_sha256(ceph_cluster, f"{m.name}.{name}") == rf.sha256_file(half_sparse)
    cap_thin, cap_full = rbdfleet.capacity(thin), rbdfleet.capacity(full)
    assert cap_thin.measured_per_clone_min_bytes == cap_thin.measured_per_clone_max_bytes == 8 * MiB  # sparse
    assert cap_full.measured_per_clone_min_bytes == 32 * MiB  # thick: the whole virtual size
    assert cap_thin.measured_gi_bytes == 8 * MiB  # the import wrote the data only, not the hole
    for m in (thin, full):
        rbdfleet.destroy(m)
        assert rf.fleet_images(ceph_cluster, m) == set()
        rf.remove_fleet_leftovers(ceph_cluster, m)


def test_replicas_in_their_own_pool_flatten_and_the_depth_limit(tmp_path: Path, ceph_cluster: CephCluster) -> None:
    if "cf-replicas" not in subprocess.run(["ceph", "-c", str(ceph_cluster.conf), "osd", "pool", "ls"],
                                           capture_output=True, text=True, check=True).stdout.split():
        devceph.create_pool(ceph_cluster.conf, "cf-replicas")
    gi = rf.raw_gi(tmp_path, 8 * MiB)
    m = rf.rbd_manifest(tmp_path, ceph_cluster, gi, 6, g=2, rbd={"replica_pools": ["cf-replicas"]})
    rbdfleet.provision(m)
    replica = f"cf-replicas/{m.name}.gi-r2"
    assert f"{m.name}.gi-r2" in ceph_cluster.ls("cf-replicas")
    # clones 2, 4, 6 are made from the replica and live in its pool
    assert ceph_cluster.children(f"{replica}@clonefleet-gi") == {f"cf-replicas/{m.name}.vm-000{i}" for i in (2, 4, 6)}
    assert ceph_cluster.children(f"{m.name}.gi@clonefleet-gi") == {f"rbd/{m.name}.vm-000{i}" for i in (1, 3, 5)}
    r = cli("flatten", str(m.path), "vm-0001", "vm-0002")
    assert r.returncode == 0, r.stderr
    assert ceph_cluster.children(f"{m.name}.gi@clonefleet-gi") == {f"rbd/{m.name}.vm-000{i}" for i in (3, 5)}
    assert "parent" not in ceph_cluster.rbd("info", f"{m.name}.vm-0001").stdout
    assert rbdfleet.status(m, verify=True).in_sync
    bad = cli("flatten", str(m.path), "vm-0099")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "vm-0099" in bad.stderr
    rbdfleet.destroy(m)
    assert f"{m.name}.gi-r2" not in ceph_cluster.ls("cf-replicas")
    rf.remove_fleet_leftovers(ceph_cluster, m)
    # a depth limit of 1 allows no clone of the GI at all
    shallow = rf.rbd_manifest(tmp_path, ceph_cluster, gi, 2, rbd={"max_clone_depth": 1})
    r = cli("provision", str(shallow.path))
    assert r.returncode == 2 and "max_clone_depth" in r.stderr and "Traceback" not in r.stderr


def test_an_image_clonefleet_did_not_make_is_never_touched(tmp_path: Path, ceph_cluster: CephCluster) -> None:
    gi = rf.raw_gi(tmp_path, 8 * MiB)
    m = rf.rbd_manifest(tmp_path, ceph_cluster, gi, 3)
    ceph_cluster.rbd("create", "--size", "4M", f"{m.name}.vm-0002")  # someone else's image, under a clone's name
    r = cli("provision", str(m.path))
    assert r.returncode == 2, r.stderr
    assert f"{m.name}.vm-0002" in r.stderr and "did not make" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert f"{m.name}.vm-0002" in ceph_cluster.ls()
    rbdfleet.destroy(m)  # removes nothing it did not make
    assert f"{m.name}.vm-0002" in ceph_cluster.ls()
    ceph_cluster.rbd("rm", f"{m.name}.vm-0002")
    rf.remove_fleet_leftovers(ceph_cluster, m)


@pytest.mark.parametrize("case", ["wrong pool", "missing keyring", "unreachable monitor"])
def test_bad_configuration_is_one_line_exit_2_within_10_s(tmp_path: Path, ceph_cluster: CephCluster,
                                                          case: str) -> None:
    gi = rf.raw_gi(tmp_path, 4 * MiB)
    rbd: dict[str, object] = {}
    if case == "wrong pool":
        rbd = {"pool": "no-such-pool"}
    elif case == "missing keyring":
        rbd = {"keyring": str(tmp_path / "ceph.client.admin.keyring")}
    else:
        conf = tmp_path / "elsewhere.conf"
        conf.write_text(f"[global]\nmon host = v2:127.0.0.1:{devceph.free_port()}\n", encoding="utf-8")
        rbd = {"conf": str(conf)}
    m = rf.rbd_manifest(tmp_path, ceph_cluster, gi, 2, rbd=rbd)
    expected = {"wrong pool": "no-such-pool", "missing keyring": "keyring", "unreachable monitor": "monitors"}[case]
    for command in (["provision"], ["status"], ["destroy", "--yes"]):
        t0 = time.monotonic()
        r = cli(*command, str(m.path))
        elapsed = time.monotonic() - t0
        assert r.returncode == 2, (command, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in r.stderr, r.stderr
        assert elapsed < 10, f"{case}: {elapsed:.1f} s"
    assert not m.dest.exists()  # refused before anything was made: no trace left


def test_dev_ceph_status_names_each_daemon_by_pid(tmp_path: Path, ceph_cluster: CephCluster) -> None:
    r = cli("dev-ceph", "status", "--dir", str(ceph_cluster.directory), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["running"] and {d["name"] for d in report["daemons"]} == {"mon.a", "mgr.x", "osd.0"}
    for d in report["daemons"]:
        assert Path(f"/proc/{d['pid']}/cmdline").read_bytes().split(b"\0")[0].decode().startswith("ceph-")
    empty = cli("dev-ceph", "status", "--dir", str(tmp_path / "none"))
    assert empty.returncode == 1 and "not running" in empty.stdout
    stopped = cli("dev-ceph", "stop", "--dir", str(tmp_path / "none"))
    assert stopped.returncode == 0 and "nothing was running" in stopped.stdout
