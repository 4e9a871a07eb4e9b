"""Capacity of 200 RBD clones with their boot writes applied, measured in bytes really stored ('rbd diff'
extents of each image without its parent's), against the model's S with the rbd-clone storage function
(4 MiB objects): within 15 %. The GI is all data, so a clone's first write to an object copies that
whole object up (copy-up), as the model's unit assumes; 'rbd du' would round every image to whole
objects, which is why it is not used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import rbd_fixtures as rf

from ceph_cluster import CephCluster
from clonefleet.provision import rbdfleet

pytestmark = [pytest.mark.backend, pytest.mark.slow]


def test_measured_capacity_of_200_clones_with_boot_writes_is_within_15_percent_of_the_model(
        tmp_path: Path, ceph_cluster: CephCluster) -> None:
    gi = rf.raw_gi(tmp_path, 64 * rf.MiB)
    m = rf.rbd_manifest(tmp_path, ceph_cluster, gi, 200)
    rbdfleet.provision(m)
    fresh = rbdfleet.capacity(m)
    assert fresh.measured_per_clone_max_bytes == 0  # a fresh clone stores no data of its own
    w = subprocess.run([sys.executable, "-m", "clonefleet", "writes", str(m.path), "--json"], capture_output=True,
                       text=True, timeout=300)
    assert w.returncode == 0, w.stderr
    assert json.loads(w.stdout)["written_now"] == 200
    r = subprocess.run([sys.executable, "-m", "clonefleet", "capacity", str(m.path), "--json"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["writes_applied"] and report["function"] == "rbd-clone" and report["unit_bytes"] == 4 * rf.MiB
    print(f"measured {report['measured_total_bytes']} bytes, model {report['model_total_bytes']:.0f}: "
          f"ratio {report['total_ratio']:.3f}; per clone {report['per_clone_ratio']:.3f}")
    assert abs(report["total_ratio"] - 1) <= 0.15
    assert abs(report["per_clone_ratio"] - 1) <= 0.15
    # checked without clonefleet: over an all-data GI each object a clone wrote to was copied up whole, so
    # its bytes are its RADOS data objects ('rados ls') times 4 MiB
    info = json.loads(ceph_cluster.rbd("info", f"{m.name}.vm-0001", "--format", "json").stdout)
    objects = subprocess.run(["rados", "-c", str(ceph_cluster.conf), "-p", ceph_cluster.pool, "ls"],
                             capture_output=True, text=True, check=True).stdout.split()
    own = [o for o in objects if o.startswith(info["block_name_prefix"] + ".")]
    assert report["per_clone"][0]["consumed_bytes"] == len(own) * 4 * rf.MiB > 0
    rbdfleet.destroy(m)
    rf.remove_fleet_leftovers(ceph_cluster, m)
