"""The fake backend registered for a test: marker files instead of images (never offered to users)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from clonefleet.backends import register, unregister
from clonefleet.backends.fake import FakeBackend
from clonefleet.provision.manifest import Manifest, write_manifest
from clonefleet.storage.data import sha256_file


@pytest.fixture
def fake_backend() -> Iterator[None]:
    """Register ``fake`` for one test, then remove it again."""
    register("fake", FakeBackend)
    try:
        yield
    finally:
        unregister("fake")


def make_fleet(tmp_path: Path, count: int = 4, g: int = 1, method: str = "snapshot", dest: str = "clones",
               gi_name: str = "gi.img") -> Manifest:
    """A fleet of the fake backend on a 64 KiB random GI, its manifest written (and replaced) in ``tmp_path``."""
    gi = tmp_path / gi_name
    if not gi.exists():
        gi.write_bytes(os.urandom(64 * 1024))
    return write_manifest(tmp_path / "fleet.toml", {
        "fleet": {"name": "t", "count": count, "dest": dest},
        "golden_image": {"path": gi_name, "sha256": sha256_file(gi), "bytes": gi.stat().st_size},
        "clones": {"backend": "fake", "method": method, "golden_images": g, "workers": 2},
    }, force=True)
