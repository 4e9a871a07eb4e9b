"""Helpers shared by the tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def require_tool(*names: str) -> None:
    """Skip when a tool is missing on a developer's machine; fail in CI, where everything is installed."""
    missing = [n for n in names if shutil.which(n) is None]
    if not missing:
        return
    message = f"missing tool(s): {', '.join(missing)} (make setup installs them)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


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
