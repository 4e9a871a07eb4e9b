"""Reflink clones on a loop-mounted xfs (reflink=1); refusal on ext4 (/tmp here) instead of full copies."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import provision_fixtures as pf
import pytest

import clonefleet.provision as engine
from clonefleet.backends import BackendUnavailable
from clonefleet.backends.reflink import filesystem_of
from clonefleet.storage.data import sha256_file
from clonefleet.storage.measure import fleet_sharing

xfs_dir = pf.xfs_dir  # a fixture

pytestmark = pytest.mark.backend


def refuse_on(base: Path) -> None:
    gi = pf.small_gi(base, fmt="raw")
    m = pf.fleet_manifest(base, gi.path, 3, backend="reflink")
    with pytest.raises(BackendUnavailable) as info:
        engine.provision(m)
    assert "never falls back" in info.value.message and "\n" not in info.value.message
    assert not m.dest.exists()  # nothing made, no full copy behind the user's back


def test_reflink_refuses_a_filesystem_without_reflink_and_copies_nothing() -> None:
    """On /tmp when it has no reflink (ext4 here), else on a loop-mounted ext4."""
    with tempfile.TemporaryDirectory() as tmp:
        if filesystem_of(Path(tmp)) not in ("xfs", "btrfs"):
            refuse_on(Path(tmp))
            return
    with pf.mounted("ext4", 256 * 1024**2) as mnt:
        refuse_on(mnt)


def test_reflink_refuses_tmpfs() -> None:
    with pf.mounted("tmpfs", 128 * 1024**2) as mnt:
        refuse_on(mnt)


@pytest.mark.parametrize("method", ["snapshot", "thin", "full"])
def test_reflink_fleet_each_method(xfs_dir: Path, method: str) -> None:
    base = Path(tempfile.mkdtemp(dir=xfs_dir))
    gi = pf.small_gi(base, fmt="raw")
    m = pf.fleet_manifest(base, gi.path, 8, backend="reflink", method=method,
                       g=2 if method == "snapshot" else 1)
    engine.provision(m)
    clones = sorted(m.dest.glob("vm-*.img"))
    assert len(clones) == 8
    assert all(sha256_file(c) == gi.sha256 for c in clones)  # same bytes as the GI, before writes
    sharing = fleet_sharing([gi.path, *clones])
    if method == "snapshot":  # shares: far less than 8 copies (GI + one replica's worth)
        assert sharing.unique_physical_bytes < 3 * gi.used_bytes
        assert all(f.shared_bytes > 0 for f in sharing.files)
    else:  # private copies: nothing shared
        assert all(f.shared_bytes == 0 for f in sharing.files)
        assert sharing.unique_physical_bytes >= 8 * gi.used_bytes
    engine.apply_writes(m)
    assert engine.status(m).written == 8
    assert sha256_file(gi.path) == gi.sha256
    engine.destroy(m)
    assert not m.dest.exists()
    assert os.path.exists(gi.path)


def test_reflink_on_btrfs_shares_and_measures_within_the_model() -> None:
    from clonefleet.provision.capacity import capacity

    with pf.mounted("btrfs", 2 * 1024**3) as mnt:
        gi = pf.small_gi(mnt, fmt="raw")
        m = pf.fleet_manifest(mnt, gi.path, 40, backend="reflink",
                              writes={"bytes": "1 MiB", "extents": 8, "span": "16 MiB"})
        engine.provision(m)
        engine.apply_writes(m)
        report = capacity(m)
        assert abs(report.total_ratio - 1) <= 0.10, report.to_dict()
        assert sha256_file(gi.path) == gi.sha256
        engine.destroy(m)


def test_reflink_refuses_a_gi_on_another_filesystem(xfs_dir: Path, tmp_path: Path) -> None:
    gi = pf.small_gi(tmp_path, fmt="raw")  # /tmp: not the xfs
    base = Path(tempfile.mkdtemp(dir=xfs_dir))
    m = pf.fleet_manifest(base, gi.path, 2, backend="reflink")
    with pytest.raises(BackendUnavailable, match="another filesystem"):
        engine.provision(m)
    assert not list(m.dest.glob("vm-*"))


def test_a_qcow2_gi_on_reflink_measures_above_the_model_and_capacity_says_why(xfs_dir: Path) -> None:
    """The figures of docs/howto-reflink.md at a smaller size: a qcow2 GI's clones allocate whole
    64 KiB clusters and unshare qcow2 tables, so per clone they measure far above the model's 4 KiB
    blocks; a raw GI's clones measure at the model. Only the qcow2 case carries the note."""
    from clonefleet.provision.capacity import capacity

    ratios = {}
    for fmt in ("qcow2", "raw"):
        base = Path(tempfile.mkdtemp(dir=xfs_dir))
        gi = pf.small_gi(base, fmt=fmt)
        m = pf.fleet_manifest(base, gi.path, 12, backend="reflink",
                              writes={"bytes": "512 KiB", "extents": 5, "span": "8 MiB"})
        engine.provision(m)
        engine.apply_writes(m)
        report = capacity(m)
        ratios[fmt] = report.per_clone_ratio
        flagged = [n for n in report.notes if n.startswith("a qcow2 GI on reflink")]
        assert len(flagged) == (1 if fmt == "qcow2" else 0), report.notes
        assert all("\n" not in n for n in report.notes)
        engine.destroy(m)
    assert ratios["qcow2"] > 1.3, ratios
    assert 0.85 <= ratios["raw"] <= 1.1, ratios
