"""Shared pieces of the RBD backend tests: a small raw GI of random data, a fleet manifest on the
session's cluster, and checks made with the rbd tool itself."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from ceph_cluster import CephCluster
from clonefleet.provision.manifest import Manifest, write_manifest
from clonefleet.storage.data import sha256_file

MiB = 1024**2
_names = itertools.count(1)


def raw_gi(folder: Path, size_bytes: int = 32 * MiB, seed: int = 1) -> Path:
    """A raw GI whose every byte is data (so a clone's copy-up of an object copies a whole object)."""
    path = folder / "gi.raw"
    path.write_bytes(np.random.default_rng(seed).bytes(size_bytes))
    return path


def fleet_name() -> str:
    return f"t{os.getpid()}x{next(_names)}"


def rbd_manifest(folder: Path, cluster: CephCluster, gi: Path, count: int, method: str = "snapshot",
                 g: int = 1, workers: int = 16, name: str | None = None, rbd: dict[str, Any] | None = None,
                 writes: dict[str, Any] | None = None) -> Manifest:
    name = name or fleet_name()
    return write_manifest(folder / f"{name}.toml", {
        "fleet": {"name": name, "count": count, "dest": f"{name}-state"},
        "golden_image": {"path": str(gi), "sha256": sha256_file(gi), "bytes": gi.stat().st_size},
        "clones": {"backend": "rbd", "method": method, "golden_images": g, "workers": workers},
        "writes": {"source": "preset", "seed": 1, **(writes or {})},
        "rbd": {"conf": str(cluster.conf), "pool": cluster.pool, **(rbd or {})},
    })


def image_sha256(cluster: CephCluster, spec: str) -> str:
    """SHA-256 of an image (or image@snapshot) as 'rbd export' reads it."""
    proc = subprocess.run(["rbd", "-c", str(cluster.conf), "export", spec, "-"], capture_output=True, check=True,
                          timeout=120)
    return hashlib.sha256(proc.stdout).hexdigest()


def fleet_images(cluster: CephCluster, m: Manifest, pool: str | None = None) -> set[str]:
    return {n for n in cluster.ls(pool) if n.startswith(f"{m.name}.vm-")}


def remove_fleet_leftovers(cluster: CephCluster, m: Manifest) -> None:
    """After a test: the GI image the fleet imported (destroy keeps the GI), so the pool stays small."""
    for spec in (f"{m.name}.gi",):
        cluster.rbd("snap", "unprotect", f"{spec}@clonefleet-gi", check=False)
        cluster.rbd("snap", "purge", spec, check=False)
        cluster.rbd("rm", spec, check=False)
