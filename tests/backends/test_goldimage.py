"""The golden-image builder against the real tools (mkfs.ext4, debugfs, e2fsck, qemu-img)."""

from __future__ import annotations

import json
import os
import subprocess
import zlib
from pathlib import Path

import pytest

from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.provision.goldimage import (
    GoldenImage,
    ImageFormat,
    build_golden_image,
    golden_image_unchanged,
    sha256_file,
)
from helpers import require_tool

MiB = 1024**2
TOOLS = ("qemu-img", "mkfs.ext4", "debugfs", "dumpe2fs")


def _build(dest: Path, **kw: object) -> GoldenImage:
    args: dict[str, object] = {"size_bytes": 64 * MiB, "seed": 1}
    args.update(kw)
    return build_golden_image(dest, **args)  # type: ignore[arg-type]


@pytest.mark.backend
def test_qcow2_gi_is_what_qemu_img_says(tmp_path: Path) -> None:
    require_tool(*TOOLS, "sha256sum")
    gi = _build(tmp_path)
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(gi.path)],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    assert gi.path == tmp_path / "gi.qcow2"
    assert gi.format is ImageFormat.QCOW2
    assert info["format"] == "qcow2"
    assert info["cluster-size"] == gi.cluster_bytes == 65536
    assert info["virtual-size"] == gi.virtual_bytes == 64 * MiB
    assert "backing-filename" not in info
    tool_sum = subprocess.run(
        ["sha256sum", str(gi.path)], check=True, capture_output=True, text=True
    ).stdout.split()[0]
    assert gi.sha256 == tool_sum
    assert os.stat(gi.path).st_mode & 0o777 == 0o444
    # The content is random bytes and text: the image must store at least all of it,
    # and not more than what ext4 itself counts as used (journal zeros stay holes).
    assert gi.content_bytes == 16 * MiB
    assert gi.content_bytes <= gi.used_bytes <= gi.fs_used_bytes
    assert gi.used_bytes % 65536 == 0
    assert gi.file_count > 40
    # Only the build's result is left in the folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gi.qcow2"]


@pytest.mark.backend
def test_raw_gi_holds_a_consistent_ext4_with_real_files(tmp_path: Path) -> None:
    require_tool(*TOOLS, "e2fsck")
    gi = _build(tmp_path, fmt="raw", seed=7)
    assert gi.path.name == "gi.raw" and gi.cluster_bytes is None
    assert gi.path.stat().st_size == gi.virtual_bytes
    fsck = subprocess.run(["e2fsck", "-fn", str(gi.path)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr

    def debugfs(cmd: str) -> str:
        return subprocess.run(
            ["debugfs", "-R", cmd, str(gi.path)], check=True, capture_output=True, text=True
        ).stdout

    assert debugfs("cat /etc/hostname") == "gi-7\n"
    assert f"UUID={gi.fs_uuid}" in debugfs("cat /etc/fstab")
    listing = debugfs("ls -l /usr/bin")
    assert " bash" in listing and " 0      0 " in listing  # owner root:root
    stat_out = debugfs("stat /usr/lib/x86_64-linux-gnu/libc.so.6")
    assert "2023" in stat_out and "User:     0" in stat_out
    # Binary-like files are incompressible (seeded random bytes), logs compress well.
    dump = tmp_path / "bash.out"
    debugfs(f"dump /usr/bin/bash {dump}")
    binary = dump.read_bytes()
    assert len(binary) > 64 * 1024
    assert len(zlib.compress(binary)) > 0.99 * len(binary)
    debugfs(f"dump /var/log/syslog {dump}")
    text = dump.read_bytes()
    assert len(zlib.compress(text)) < 0.5 * len(text)
    assert text.splitlines()[0].startswith(b"Nov 14 ")


@pytest.mark.backend
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    require_tool(*TOOLS)
    a = _build(tmp_path / "a", seed=3)
    b = _build(tmp_path / "b", seed=3)
    c = _build(tmp_path / "c", seed=4)
    assert a.sha256 == b.sha256 == sha256_file(b.path)
    assert c.sha256 != a.sha256
    assert a.fs_uuid == b.fs_uuid != c.fs_uuid
    assert golden_image_unchanged(a)
    # The raw build of the same seed holds the same guest data, stored in 4 KiB blocks
    # rather than 64 KiB clusters.
    raw = _build(tmp_path / "r", seed=3, fmt="raw")
    same = subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(raw.path), str(a.path)],
        capture_output=True, text=True, check=False,
    )
    assert same.returncode == 0, same.stdout + same.stderr
    assert raw.used_bytes % 4096 == 0
    assert raw.content_bytes <= raw.used_bytes <= a.used_bytes


def test_sha256_file_reads_in_chunks(tmp_path: Path) -> None:
    import hashlib

    f = tmp_path / "x"
    data = os.urandom(3 * 4096 + 17)
    f.write_bytes(data)
    assert sha256_file(f, chunk_bytes=4096) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"fmt": "vmdk"}, "one of qcow2, raw"),
        ({"name": "../x"}, "GI name"),
        ({"name": ""}, "GI name"),
        ({"size_bytes": 4 * MiB}, "between"),
        ({"size_bytes": 64 * MiB + 1}, "multiple of 4096"),
        ({"content_bytes": 60 * MiB}, "content_bytes"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, kw: dict[str, object], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        _build(tmp_path, **kw)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.backend
def test_refuses_to_replace_an_existing_gi(tmp_path: Path) -> None:
    require_tool(*TOOLS)
    gi = _build(tmp_path)
    with pytest.raises(UsageError, match="already exists"):
        _build(tmp_path)
    assert golden_image_unchanged(gi)


@pytest.mark.backend
def test_missing_tool_is_one_line_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    dest = tmp_path / "dest"
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ClonefleetError, match="mkfs.ext4 not found on PATH: install e2fsprogs"):
        _build(dest)
    assert list(dest.iterdir()) == []


@pytest.mark.backend
def test_debugfs_errors_are_not_swallowed(tmp_path: Path) -> None:
    """debugfs exits 0 when its commands fail; the builder must still notice."""
    require_tool("mkfs.ext4", "debugfs")
    from clonefleet.provision.goldimage import _fix_owners_and_times

    raw = tmp_path / "fs.img"
    with open(raw, "wb") as f:
        f.truncate(16 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(raw)], check=True)
    _fix_owners_and_times(raw, ["lost+found"], dict(os.environ))  # exists: fine
    with pytest.raises(ClonefleetError, match="debugfs could not fix owners and times .*no/such"):
        _fix_owners_and_times(raw, ["no/such/file"], dict(os.environ))
