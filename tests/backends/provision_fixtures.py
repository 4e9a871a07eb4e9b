"""Fixtures of the provisioning tests on real storage: small real GIs, a loop-mounted xfs with
reflink, a size-limited tmpfs. Every mount is undone in teardown, even when the test fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clonefleet.provision.goldimage import GoldenImage, build_golden_image
from clonefleet.provision.manifest import Manifest, write_manifest
from helpers import mounted, require_tool

MiB = 1024**2


def small_gi(dest: Path, fmt: str = "qcow2", size: int = 32 * MiB, content: int = 4 * MiB) -> GoldenImage:
    require_tool("qemu-img", "mkfs.ext4", "debugfs")
    return build_golden_image(dest, "gi", size_bytes=size, fmt=fmt, seed=7, content_bytes=content)


def fleet_manifest(dir_: Path, gi: Path, count: int, backend: str = "qcow2", method: str = "snapshot",
                   g: int = 1, workers: int = 4, writes: dict[str, object] | None = None,
                   name: str = "fleet.toml", dest: str = "clones") -> Manifest:
    from clonefleet.storage.data import sha256_file

    return write_manifest(dir_ / name, {
        "fleet": {"name": "t", "count": count, "dest": dest},
        "golden_image": {"path": str(gi), "sha256": sha256_file(gi), "bytes": gi.stat().st_size},
        "clones": {"backend": backend, "method": method, "golden_images": g, "workers": workers},
        "writes": writes or {},
    }, force=True)


@pytest.fixture(scope="session")
def qcow2_gi(tmp_path_factory: pytest.TempPathFactory) -> GoldenImage:
    return small_gi(tmp_path_factory.mktemp("gi-qcow2"))


@pytest.fixture(scope="session")
def xfs_dir() -> Iterator[Path]:
    with mounted("xfs", 12 * 1024**3) as mnt:
        yield mnt
