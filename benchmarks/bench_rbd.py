"""RBD provisioning speed, beside an anchor measured in the same run, on the same cluster.

1000 layered clones with ``clonefleet provision`` (end to end: a new Python process, the GI's checksum,
the journal with its synced intent and id records, one connection shared by a pool of threads) against
a shell loop of ``rbd clone`` (one process per clone; the loop is timed over ANCHOR_CLONES clones and
taken per clone). Floor: 3x faster per clone. Then a boot storm of 32 of those clones
(``clonefleet storm``: qemu-storage-daemon's rbd driver, NBD, fio) beside the same storm on 32 linked
qcow2 clones of the same GI on this machine's disk.

The cluster: the one ``CLONEFLEET_CEPH_CONF`` names (pool ``CLONEFLEET_CEPH_POOL``, default rbd), else a
single-node cluster started for the run in a temporary folder and stopped after it
(:mod:`clonefleet.storage.devceph`).

Run: ``.venv/bin/python -m benchmarks rbd`` (or ``make bench``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from clonefleet.provision import load_manifest, provision
from clonefleet.provision.manifest import write_manifest
from clonefleet.storage import devceph
from clonefleet.storage.data import sha256_file
from clonefleet.storm import StormRequest, run_storm

CLONES = 1000
STORM_VMS = 32
ANCHOR_CLONES = 100
FLOOR = 3.0
MiB = 1024**2


@contextmanager
def cluster() -> Iterator[tuple[Path, str]]:
    given = os.environ.get("CLONEFLEET_CEPH_CONF")
    if given:
        yield Path(given), os.environ.get("CLONEFLEET_CEPH_POOL", "rbd")
        return
    folder = Path(tempfile.mkdtemp(prefix="cf-bench-ceph-"))
    try:
        t0 = time.perf_counter()
        devceph.start(folder, die_with_parent=True)
        print(f"   dev cluster started in {time.perf_counter() - t0:.1f} s ({folder})")
        yield folder / devceph.CONF_NAME, devceph.DEFAULT_POOL
    finally:
        devceph.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


def rbd(conf: Path, pool: str, *args: str) -> None:
    subprocess.run(["rbd", "-c", str(conf), "-p", pool, *args], check=True, capture_output=True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cf-bench-rbd-") as tmp, cluster() as (conf, pool):
        work = Path(tmp)
        gi = work / "gi.raw"
        gi.write_bytes(np.random.default_rng(1).bytes(64 * MiB))
        name = f"bench{os.getpid()}"
        manifest = work / "fleet.toml"
        write_manifest(manifest, {
            "fleet": {"name": name, "count": CLONES, "dest": "state", "clone_name": "vm-{index:05d}"},
            "golden_image": {"path": str(gi), "sha256": sha256_file(gi), "bytes": gi.stat().st_size},
            "clones": {"backend": "rbd", "method": "snapshot", "golden_images": 1, "workers": 32},
            "rbd": {"conf": str(conf), "pool": pool},
        })
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        # the GI imported and its snapshot protected by a first run of one clone, outside the timing
        small = work / "one.toml"
        small.write_text(manifest.read_text().replace(f"count = {CLONES}", "count = 1"))
        subprocess.run([sys.executable, "-m", "clonefleet", "provision", str(small)], check=True, env=env,
                       capture_output=True)
        subprocess.run([sys.executable, "-m", "clonefleet", "destroy", str(small), "--yes"], check=True, env=env,
                       capture_output=True)
        subprocess.run([sys.executable, "-m", "clonefleet", "provision", str(small)], check=True, env=env,
                       capture_output=True)  # the snapshot made again: the big run below finds it
        snap = f"{pool}/{name}.gi@clonefleet-gi"

        t0 = time.perf_counter()
        subprocess.run(["bash", "-c", f"set -e; for i in $(seq 1 {ANCHOR_CLONES}); do rbd -c {conf} clone "
                                      f"{snap} {pool}/anchor{os.getpid()}-$i; done"], check=True)
        anchor_s = (time.perf_counter() - t0) / ANCHOR_CLONES
        subprocess.run(["bash", "-c", f"for i in $(seq 1 {ANCHOR_CLONES}); do rbd -c {conf} rm "
                                      f"{pool}/anchor{os.getpid()}-$i >/dev/null 2>&1; done"], check=True)

        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "clonefleet", "provision", str(manifest)], env=env,
                           capture_output=True, text=True)
        total_s = time.perf_counter() - t0
        if r.returncode:
            raise SystemExit(f"bench_rbd: provision failed: {r.stderr.strip()}")
        per_s = total_s / (CLONES - 1)  # vm-00001 was made by the warm-up run
        ratio = anchor_s / per_s
        print(f"   shell loop of 'rbd clone' ({ANCHOR_CLONES} clones): {anchor_s * 1000:.1f} ms per clone")
        print(f"   clonefleet provision, {CLONES} clones (end to end, 32 threads on one connection): "
              f"{total_s:.2f} s, {per_s * 1000:.1f} ms per clone")
        print(f"   ratio: {ratio:.1f}x faster than the shell loop (floor {FLOOR:g}x): "
              f"{'ok' if ratio >= FLOOR else 'BELOW THE FLOOR'}")
        storm_beside_qcow2(work, manifest, gi)
        subprocess.run([sys.executable, "-m", "clonefleet", "destroy", str(manifest), "--yes"], check=True, env=env,
                       capture_output=True)
        rbd(conf, pool, "rm", f"{name}.gi")


def storm_beside_qcow2(work: Path, manifest: Path, gi: Path) -> None:
    """A storm of the fleet's first STORM_VMS clones on RBD, and its anchor: the same boots (same seed)
    on as many linked qcow2 clones of the same GI on this machine's disk, in the same run."""
    m = load_manifest(manifest)
    local = work / "local.toml"
    write_manifest(local, {
        "fleet": {"name": "local", "count": STORM_VMS, "dest": "local"},
        "golden_image": {"path": str(gi), "sha256": m.gi_sha256, "bytes": gi.stat().st_size},
        "clones": {"backend": "qcow2", "method": "snapshot", "golden_images": 1, "workers": 4},
    })
    provision(load_manifest(local))
    request = StormRequest(vms=STORM_VMS, seed=1, out=work / "results")
    figures = {}
    for label, path in (("rbd", manifest), ("qcow2", local)):
        run_storm(load_manifest(path), request)  # a warm-up: the boots' objects and clusters get allocated
        figures[label] = run_storm(load_manifest(path), request)
    r, q = figures["rbd"], figures["qcow2"]
    for label, f in figures.items():
        print(f"   storm of {STORM_VMS} snapshot clones on {label}: {f.ios:,} IOs in {f.span_s:.2f} s, "
              f"{f.iops:,.0f} IOPS, boot p50 {f.boot_s(0.5):.2f} s, p95 {f.boot_s(0.95):.2f} s, latency p50 "
              f"{f.latency_s[50.0] * 1e3:.2f} ms, p99 {f.latency_s[99.0] * 1e3:.2f} ms")
    print(f"   ratio RBD / local qcow2: IOPS {r.iops / q.iops:.3f}, boot p95 {r.boot_s(0.95) / q.boot_s(0.95):.3f} "
          "(one OSD on this machine's disk beside qemu-storage-daemon's qcow2 files on it)")
