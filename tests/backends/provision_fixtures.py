"""Fixtures of the provisioning tests on real storage: small real GIs, a loop-mounted xfs with
reflink, a size-limited tmpfs. Every mount is undone in teardown, even when the test fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from clonefleet.provision.goldimage import GoldenImage, build_golden_image
from clonefleet.provision.manifest import Manifest, write_manifest
from helpers import require_tool

MiB = 1024**2


def small_gi(dest: Path, fmt: str = "qcow2", size: int = 32 * MiB, content: int = 4 * MiB) -> GoldenImage:
    require_tool("qemu-img", "mkfs.ext4", "debugfs")
    return build_golden_image(dest, "gi", size_bytes=size, fmt=fmt, seed=7, content_bytes=content)


def fleet_manifest(dir_: Path, gi: Path, count: int, backend: str = "qcow2", method: str = "snapshot",
                   g: int = 1, workers: int = 4, writes: dict[str, object] | None = None,
                   name: str = "fleet.toml", dest: str = "clones") -> Manifest:
    from clonefleet.provision.safety import sha256_file

    return write_manifest(dir_ / name, {
        "fleet": {"name": "t", "count": count, "dest": dest},
        "golden_image": {"path": str(gi), "sha256": sha256_file(gi), "bytes": gi.stat().st_size},
        "clones": {"backend": backend, "method": method, "golden_images": g, "workers": workers},
        "writes": writes or {},
    }, force=True)


def _run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True)


@contextlib.contextmanager
def mounted(kind: str, size_bytes: int) -> Iterator[Path]:
    """A fresh filesystem of ``kind`` (xfs with reflink, btrfs, ext4 or tmpfs) mounted on a temporary folder."""
    if os.geteuid() != 0:
        message = "mounting a test filesystem needs root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    base = Path(tempfile.mkdtemp(prefix=f"cf-{kind}-"))
    mnt = base / "mnt"
    mnt.mkdir()
    image = base / "fs.img"
    mounted_ok = False
    try:
        if kind == "tmpfs":
            _run("mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(mnt))
        elif kind == "ext4":
            require_tool("mkfs.ext4")
            with open(image, "wb") as f:
                f.truncate(size_bytes)
            _run("mkfs.ext4", "-q", "-F", str(image))
            _run("mount", "-o", "loop", str(image), str(mnt))
        elif kind == "btrfs":
            require_tool("mkfs.btrfs")
            with open(image, "wb") as f:
                f.truncate(size_bytes)
            _run("mkfs.btrfs", "-q", str(image))
            _run("mount", "-o", "loop", str(image), str(mnt))
        else:
            require_tool("mkfs.xfs")
            with open(image, "wb") as f:
                f.truncate(size_bytes)
            _run("mkfs.xfs", "-q", "-m", "reflink=1", str(image))
            _run("mount", "-o", "loop", str(image), str(mnt))
        mounted_ok = True
        yield mnt
    finally:
        if mounted_ok:
            subprocess.run(["umount", str(mnt)], check=False, capture_output=True)
            if os.path.ismount(mnt):
                subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def qcow2_gi(tmp_path_factory: pytest.TempPathFactory) -> GoldenImage:
    return small_gi(tmp_path_factory.mktemp("gi-qcow2"))


@pytest.fixture(scope="session")
def xfs_dir() -> Iterator[Path]:
    with mounted("xfs", 12 * 1024**3) as mnt:
        yield mnt
