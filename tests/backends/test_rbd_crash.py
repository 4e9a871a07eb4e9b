"""Crash safety on RBD, as tests/backends/test_provision_crash.py shows it for qcow2 files: SIGKILL the
provisioner at random moments, at least 20 times, during a 300-clone provision (two GI images: the GI
and a replica); after a rerun the cluster holds exactly the fleet's images, each GI snapshot's children
are exactly its clones (compared with 'rbd ls' and 'rbd children'), no half-made image or orphaned
id object is left ('rados ls'), the journal names every image by the id Ceph gave it, and the GI and
its protected snapshot are intact, byte for byte.

And an OSD stopped mid-provision: the run fails with one line within a bounded time (no hang); once the
OSD is back, a rerun completes and no image made before the failure is lost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rbd_fixtures as rf

from ceph_cluster import CephCluster
from clonefleet.backends.rbd import connected
from clonefleet.provision import rbdfleet
from clonefleet.provision.manifest import Manifest
from clonefleet.storage import devceph
from killing import KILLS, MAX_ROUNDS, calibrate, kill_at_a_random_moment, start

pytestmark = [pytest.mark.backend, pytest.mark.slow]

CLONES = 300


def records(m: Manifest) -> int:
    return rbdfleet.read_journal(m.dest).records if (m.dest / ".clonefleet").is_dir() else 0


def clones_recorded(m: Manifest) -> int:
    """Clones the journal records as made: a run is past its start-up (and its cleanup of what a killed
    run left half-made, which waits for the killed client's watches to go) once this grows."""
    return len(rbdfleet.read_journal(m.dest).clones) if (m.dest / ".clonefleet").is_dir() else 0


def made_and_recorded(m: Manifest) -> tuple[int, list[str]]:
    """(clones recorded with the id their image has now, images of the fleet neither recorded nor intended)."""
    state = rbdfleet.read_journal(m.dest) if (m.dest / ".clonefleet").is_dir() else rbdfleet.RbdJournal()
    assert m.rbd is not None
    with connected(m.rbd) as cluster:
        ids = cluster.images(m.rbd.pool)
    recorded = {r["image"]: r["id"] for r in state.clones.values()}
    ok = sum(1 for image, image_id in recorded.items() if ids.get(image) == image_id)
    stray = [n for n in ids if n.startswith(f"{m.name}.") and recorded.get(n) != ids[n]
             and f"{m.rbd.pool}/{n}" not in state.intents
             and n not in {str(r["image"]) for r in state.sources.values()}]
    return ok, stray


def orphan_id_objects(cluster: CephCluster, pool: str, prefix: str) -> list[str]:
    """'rbd_id.<name>' objects of the fleet whose name 'rbd ls' does not list: a half-made image left behind."""
    objects = subprocess.run(["rados", "-c", str(cluster.conf), "-p", pool, "ls"], capture_output=True, text=True,
                             check=True, timeout=60).stdout.split()
    listed = cluster.ls(pool)
    return [o for o in objects if o.startswith(f"rbd_id.{prefix}") and o.removeprefix("rbd_id.") not in listed]


def test_sigkill_at_random_moments_then_rerun_finishes_exactly(tmp_path: Path, ceph_cluster: CephCluster) -> None:
    rng = np.random.default_rng(20261129)
    gi = rf.raw_gi(tmp_path, 16 * rf.MiB)
    m = rf.rbd_manifest(tmp_path, ceph_cluster, gi, CLONES, g=2, workers=32)
    provision = ("provision", m.path)
    assert start(*provision).wait(timeout=120) == 0  # the GI imported once (later runs reuse it)
    rbdfleet.destroy(m)
    # calibration: until the first journal record, then the rest; kills mid-work wait for this run's first
    # clone (a run first clears what a killed run left half-made, waiting for the killed client's watches)
    calibration = calibrate(provision, lambda: records(m), min_work_s=0.05)
    rbdfleet.destroy(m)

    kills = rounds = completed = 0
    progress_at_kill: list[int] = []
    outcomes: list[str] = []
    while kills < KILLS and rounds < MAX_ROUNDS:
        rounds += 1
        killed = kill_at_a_random_moment(provision, lambda: clones_recorded(m), rng, calibration,
                                         wait_for_progress_s=60)
        alive, err = killed.alive, killed.stderr
        made, stray = made_and_recorded(m)
        outcomes.append("killed" if alive else f"exit {killed.returncode}: {err[:160]}")
        # the invariant after any kill: every image of the fleet is recorded by its id, or was intended
        assert stray == [], stray
        if alive and made < CLONES:
            kills += 1
            progress_at_kill.append(made)
        if made == CLONES:
            completed += 1
            rbdfleet.destroy(m)  # start over, so later kills land in an unfinished provision
    assert kills >= KILLS, f"only {kills} kills landed mid-provision in {rounds} rounds: {outcomes}"

    result = subprocess.run([sys.executable, "-m", "clonefleet", "provision", str(m.path)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    names = m.clone_names()
    gi_image, replica = f"{m.name}.gi", f"{m.name}.gi-r2"
    # 'rbd ls': exactly the clones, the GI and its replica
    assert {n for n in ceph_cluster.ls() if n.startswith(f"{m.name}.")} == \
        {f"{m.name}.{n}" for n in names} | {gi_image, replica}
    # 'rbd children': clone i from the GI when i is odd, from the replica when even
    assert ceph_cluster.children(f"{gi_image}@clonefleet-gi") == \
        {f"rbd/{m.name}.{n}" for i, n in enumerate(names, 1) if i % 2 == 1}
    assert ceph_cluster.children(f"{replica}@clonefleet-gi") == \
        {f"rbd/{m.name}.{n}" for i, n in enumerate(names, 1) if i % 2 == 0}
    assert orphan_id_objects(ceph_cluster, ceph_cluster.pool, f"{m.name}.") == []
    made, stray = made_and_recorded(m)
    assert (made, stray) == (CLONES, [])
    assert rbdfleet.status(m, verify=True).in_sync
    for image in (gi_image, replica):
        snaps = json.loads(ceph_cluster.rbd("snap", "ls", image, "--format", "json").stdout)
        assert [(s["name"], s["protected"]) for s in snaps] == [("clonefleet-gi", "true")]
        assert rf.image_sha256(ceph_cluster, f"{image}@clonefleet-gi") == rf.sha256_file(gi)
    assert rf.sha256_file(gi) == m.gi_sha256
    print(f"{kills} kills mid-provision in {rounds} rounds ({completed} runs finished before their kill); "
          f"clones recorded at each kill: {progress_at_kill}; calibration run {calibration.total_s:.2f} s")
    assert sum(0 < n < CLONES for n in progress_at_kill) >= KILLS // 2, progress_at_kill
    rbdfleet.destroy(m)
    assert {n for n in ceph_cluster.ls() if n.startswith(f"{m.name}.")} == {gi_image}
    rf.remove_fleet_leftovers(ceph_cluster, m)


def test_osd_stopped_mid_provision_fails_in_one_line_and_a_rerun_completes(tmp_path: Path,
                                                                            ceph_cluster: CephCluster) -> None:
    gi = rf.raw_gi(tmp_path, 8 * rf.MiB)
    m = rf.rbd_manifest(tmp_path, ceph_cluster, gi, 400, workers=8, rbd={"op_timeout": 5})
    proc = subprocess.Popen([sys.executable, "-m", "clonefleet", "provision", str(m.path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(rbdfleet.read_journal(m.dest).clones if m.dest.is_dir() else {}) < 64:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        before = dict(rbdfleet.read_journal(m.dest).clones)
        t_stop = time.monotonic()
        osd_pid = next(d.pid for d in devceph.status(ceph_cluster.directory).daemons if d.name == "osd.0")
        assert devceph.stop_daemon(ceph_cluster.directory, "osd.0")
        assert not Path(f"/proc/{osd_pid}").exists()  # stopped by its pid, and reaped
        out, err = proc.communicate(timeout=60)  # bounded: 5 s per operation, then one line
        failed_after = time.monotonic() - t_stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if "osd.0" not in {d.name for d in devceph.status(ceph_cluster.directory).daemons}:
            devceph.start_daemon(ceph_cluster.directory, "osd.0", die_with_parent=True)
        devceph.wait_osd_up(ceph_cluster.conf)
    assert proc.returncode == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "did not answer" in lines[0] or "timed out" in lines[0].lower(), lines[0]
    assert failed_after < 45, f"the run failed {failed_after:.1f} s after the OSD stopped"
    print(f"failed {failed_after:.1f} s after the OSD stopped: {lines[0]}")
    # the OSD is back: a rerun completes; every image recorded before the failure is still the same image
    deadline = time.monotonic() + 120
    while True:
        r = subprocess.run([sys.executable, "-m", "clonefleet", "provision", str(m.path)], capture_output=True,
                           text=True, timeout=300)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)  # placement groups still peering after the restart
    assert r.returncode == 0, r.stderr
    after = rbdfleet.read_journal(m.dest).clones
    assert all(after[n]["id"] == rec["id"] for n, rec in before.items())
    assert rf.fleet_images(ceph_cluster, m) == {f"{m.name}.{n}" for n in m.clone_names()}
    assert ceph_cluster.children(f"{m.name}.gi@clonefleet-gi") == {f"rbd/{m.name}.{n}" for n in m.clone_names()}
    assert rbdfleet.status(m, verify=True).in_sync
    rbdfleet.destroy(m)
    rf.remove_fleet_leftovers(ceph_cluster, m)
