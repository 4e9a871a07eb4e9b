"""A small golden image (GI) with a real ext4 filesystem and real files, built offline.

The GI holds an OS-like tree: ``/etc`` with config files, ``/usr/bin`` and
``/usr/lib`` with binary-like files (seeded random bytes: incompressible, so no
backend can store them for free), ``/boot`` with a kernel and an initrd blob,
``/var/log`` with logs, ``/home/user``. It is built without downloads, without
mounting and without root:

1. the tree is written to a staging folder from a ``numpy`` Generator seeded with
   ``seed``; every mode and time is fixed;
2. ``mkfs.ext4 -d STAGING`` populates the filesystem (e2fsprogs writes the files
   itself), with the UUID and directory hash seed derived from ``seed``, a fixed
   clock (``E2FSPROGS_FAKE_TIME``) and our own ``mke2fs.conf``, so the host's
   configuration does not change the result;
3. ``debugfs -w`` sets owner 0:0 and all inode times to the fixed epoch: ``mkfs.ext4
   -d`` copies the staging files' owner and ctime, which no user can fix on the
   host;
4. ``qemu-img convert`` writes the image sparse (all-zero blocks become holes):
   qcow2 with 64 KiB clusters, or raw.

Reproducibility: the same ``seed``, ``size_bytes``, ``content_bytes`` and format give
a byte-identical image, hence the same SHA-256, on one machine; another version of
e2fsprogs or qemu-img may lay the image out differently (the tests hold the
checksum equal across builds, not to a stored value). The finished image is made
read-only (mode 0444) so tools that honour permissions refuse to write it;
``clonefleet.provision.writes`` refuses it as well.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.storage.data import sha256_file
from clonefleet.storage.ext4 import FIXED_EPOCH_S, FS_BLOCK_BYTES, ext4_env, ext4_used_bytes, make_ext4
from clonefleet.storage.files import publish_new
from clonefleet.storage.measure import allocated_bytes
from clonefleet.storage.qcow2 import qcow2_allocation
from clonefleet.storage.tools import copy_timeout_s, run_tool, run_tool_result, stop_on_signals

MiB = 1024**2
DEFAULT_SIZE_BYTES = 256 * MiB
MIN_SIZE_BYTES = 16 * MiB
MAX_SIZE_BYTES = 64 * 1024**3  # 64 GiB virtual: sparse, but the checksum reads every byte
MAX_CONTENT_BYTES = 4 * 1024**3
MAX_CONTENT_FRACTION = 0.6  # of size_bytes: room for the journal, inode tables, slack
DEFAULT_CONTENT_FRACTION = 0.25
QCOW2_CLUSTER_BYTES = 65536
_CHUNK_BYTES = 8 * MiB
_MEAN_FILE_BYTES = 1 * MiB  # numbered files are added in /usr down to about this mean size
_MAX_AREA_FILES = 1000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")



class ImageFormat(enum.StrEnum):
    """Formats a GI can be written in."""

    QCOW2 = "qcow2"
    RAW = "raw"


@dataclass(frozen=True)
class GoldenImage:
    """A built GI and what was measured on it (all sizes in bytes)."""

    path: Path
    format: ImageFormat
    virtual_bytes: int  # guest-visible size
    used_bytes: int  # data the image holds (G_used): qcow2 data clusters, raw non-zero 4 KiB blocks
    fs_used_bytes: int  # blocks ext4 itself counts as used (its df inside the guest)
    content_bytes: int  # sum of the file sizes written into the tree
    file_count: int  # regular files in the tree
    disk_bytes: int  # what the image file takes on the host (st_blocks * 512)
    cluster_bytes: int | None  # qcow2 cluster size; None for raw
    sha256: str
    seed: int
    fs_uuid: str


def _digest_and_nonzero_bytes(path: Path) -> tuple[str, int]:
    """SHA-256 of the file and the bytes of its 4 KiB blocks that are not all zeros, in one read."""
    nonzero_blocks = 0

    def count(chunk: bytes) -> None:
        nonlocal nonzero_blocks
        whole = len(chunk) // FS_BLOCK_BYTES * FS_BLOCK_BYTES
        words = np.frombuffer(chunk[:whole], dtype=np.uint64).reshape(-1, FS_BLOCK_BYTES // 8)
        nonzero_blocks += int(np.count_nonzero(words.any(axis=1))) + int(any(chunk[whole:]))

    digest = sha256_file(path, observe=count)
    return digest, nonzero_blocks * FS_BLOCK_BYTES


def golden_image_unchanged(gi: GoldenImage) -> bool:
    """True when the GI's file still has the checksum it was built with."""
    return sha256_file(gi.path) == gi.sha256


def _seed_uuid(seed: int, purpose: str) -> str:
    raw = hashlib.sha256(f"clonefleet-gi/{purpose}/{seed}".encode()).digest()[:16]
    return str(uuid.UUID(bytes=raw, version=4))


def _validate(
    dest_dir: Path, name: str, size_bytes: int, fmt: str, seed: int, content_bytes: int | None
) -> tuple[ImageFormat, int, Path]:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(
            f"GI name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit"
        )
    try:
        image_format = ImageFormat(fmt)
    except ValueError:
        allowed = ", ".join(f.value for f in ImageFormat)
        raise UsageError(f"GI format {fmt!r}: one of {allowed}") from None
    if isinstance(size_bytes, bool) or not isinstance(size_bytes, int):
        raise UsageError(f"GI size_bytes = {size_bytes!r}: an integer number of bytes")
    if not MIN_SIZE_BYTES <= size_bytes <= MAX_SIZE_BYTES or size_bytes % FS_BLOCK_BYTES:
        raise UsageError(
            f"GI size_bytes = {size_bytes}: a multiple of {FS_BLOCK_BYTES} between "
            f"{MIN_SIZE_BYTES} (16 MiB) and {MAX_SIZE_BYTES} (64 GiB)"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"GI seed = {seed!r}: an integer >= 0")
    default_content = int(size_bytes * DEFAULT_CONTENT_FRACTION)
    content = default_content if content_bytes is None else content_bytes
    limit = min(int(size_bytes * MAX_CONTENT_FRACTION), MAX_CONTENT_BYTES)
    if isinstance(content, bool) or not isinstance(content, int):
        raise UsageError(f"GI content_bytes = {content!r}: an integer number of bytes")
    if not 64 * 1024 <= content <= limit:
        raise UsageError(
            f"GI content_bytes = {content!r}: between 65536 and {limit} "
            f"({MAX_CONTENT_FRACTION:.0%} of size_bytes, at most 4 GiB)"
        )
    dest = Path(dest_dir)
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"GI dest_dir '{dest}' exists and is not a folder")
    target = dest / f"{name}.{image_format.value}"
    if target.exists() or target.is_symlink():
        raise UsageError(
            f"GI '{target}' already exists: remove it (and its clones) or choose another name"
        )
    return image_format, content, target


# --- the staged tree -------------------------------------------------------------------------

# (folder, share of the content bytes, kind, file names); the shares sum to 1.
_AREAS: tuple[tuple[str, float, str, tuple[str, ...]], ...] = (
    ("boot", 0.14, "binary", ("vmlinuz-6.1.0-cf-amd64", "initrd.img-6.1.0-cf-amd64")),
    (
        "usr/bin",
        0.22,
        "binary",
        ("bash", "coreutils", "python3.11", "ssh", "systemctl", "tar", "gzip", "grep", "sed",
         "less", "vim.basic", "curl"),
    ),
    (
        "usr/lib/x86_64-linux-gnu",
        0.40,
        "binary",
        ("libc.so.6", "libssl.so.3", "libcrypto.so.3", "libsystemd.so.0", "libstdc++.so.6",
         "libz.so.1", "libpython3.11.so.1.0", "libm.so.6", "libglib-2.0.so.0", "libzstd.so.1"),
    ),
    ("usr/share/doc/base", 0.04, "text", ("changelog", "copyright", "README")),
    ("var/log", 0.08, "text", ("syslog", "auth.log", "dpkg.log", "kern.log", "boot.log")),
    ("var/lib/dpkg", 0.04, "text", ("status",)),
    ("home/user", 0.08, "binary", ("photo.jpg", "archive.tar.gz", "notes.odt")),
)

_WORDS = (
    "systemd", "started", "stopped", "kernel", "usb", "device", "eth0", "link", "up", "down",
    "service", "unit", "mounted", "session", "opened", "closed", "for", "user", "root", "cron",
    "job", "dhcp", "lease", "renewed", "audit", "allowed", "denied", "apparmor", "profile",
    "loaded", "ntp", "sync", "clock", "package", "installed", "configured", "unpacking",
)


def _area_names(area: str, names: tuple[str, ...], area_bytes: int) -> list[str]:
    """The area's named files, plus numbered ones in /usr so a big GI has many files of
    about ``_MEAN_FILE_BYTES`` rather than a few huge ones (at most ``_MAX_AREA_FILES``)."""
    if not area.startswith("usr/"):
        return list(names)
    count = min(max(len(names), area_bytes // _MEAN_FILE_BYTES), _MAX_AREA_FILES)
    extra = [f"cf-{area.rsplit('/', 1)[-1][:3]}-{i:04d}" for i in range(count - len(names))]
    return [*names, *extra]


def _config_files(seed: int, fs_uuid: str) -> dict[str, str]:
    host = f"gi-{seed}"
    return {
        "etc/hostname": f"{host}\n",
        "etc/hosts": f"127.0.0.1\tlocalhost\n127.0.1.1\t{host}\n::1\tlocalhost ip6-localhost\n",
        "etc/fstab": f"UUID={fs_uuid}\t/\text4\terrors=remount-ro\t0\t1\n",
        "etc/os-release": 'PRETTY_NAME="clonefleet golden image"\nID=clonefleet\nVERSION_ID="1"\n',
        "etc/passwd": (
            "root:x:0:0:root:/root:/bin/bash\n"
            "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
            "user:x:1000:1000:user:/home/user:/bin/bash\n"
        ),
        "etc/group": "root:x:0:\ndaemon:x:1:\nuser:x:1000:\n",
        "etc/ssh/sshd_config": "PermitRootLogin no\nPasswordAuthentication no\nUsePAM yes\n",
        "etc/systemd/system/clonefleet-boot.service": (
            "[Unit]\nDescription=first boot of a clone\n\n[Service]\nType=oneshot\n"
            "ExecStart=/usr/bin/true\n\n[Install]\nWantedBy=multi-user.target\n"
        ),
        "etc/machine-id": "",  # empty: each clone makes its own at first boot
        "boot/grub/grub.cfg": (
            "set default=0\nmenuentry 'clonefleet' {\n"
            f"  linux /boot/vmlinuz-6.1.0-cf-amd64 root=UUID={fs_uuid} ro quiet\n"
            "  initrd /boot/initrd.img-6.1.0-cf-amd64\n}\n"
        ),
        "home/user/.profile": 'if [ -f "$HOME/.bashrc" ]; then . "$HOME/.bashrc"; fi\n',
        "home/user/.bashrc": "export PATH=/usr/local/bin:/usr/bin:/bin\nalias ll='ls -l'\n",
    }


def _split(total: int, count: int, rng: np.random.Generator) -> list[int]:
    """Split ``total`` bytes into ``count`` file sizes (random shares, each >= 1, exact sum)."""
    shares = rng.dirichlet(np.full(count, 2.0))
    sizes = np.maximum(np.floor(shares * total).astype(np.int64), 1)
    sizes[-1] = max(1, total - int(sizes[:-1].sum()))
    return [int(s) for s in sizes]


def _text_chunks(size: int, rng: np.random.Generator) -> Iterator[bytes]:
    """Log-like lines, ``size`` bytes in all: compressible, as text on a real system is."""
    written = 0
    words = np.array(_WORDS)
    while written < size:
        lines = 4096
        picks = words[rng.integers(0, len(words), size=(lines, 6))]
        stamps = rng.integers(0, 86_400, size=lines)
        text = "".join(
            f"Nov 14 {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d} gi {' '.join(w)}\n"
            for s, w in zip(stamps.tolist(), picks.tolist(), strict=True)
        ).encode()
        piece = text[: size - written]
        written += len(piece)
        yield piece


def _binary_chunks(size: int, rng: np.random.Generator) -> Iterator[bytes]:
    for start in range(0, size, _CHUNK_BYTES):
        yield rng.bytes(min(_CHUNK_BYTES, size - start))


def _stage_tree(root: Path, content_bytes: int, rng: np.random.Generator, seed: int,
                fs_uuid: str) -> tuple[int, int, list[str]]:
    """Write the tree; return (content bytes, regular files, every path made, relative)."""
    made: list[str] = []

    def folder(rel: str) -> Path:
        parts = Path(rel).parts
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            p = root / sub
            if not p.is_dir():
                p.mkdir(mode=0o755)
                made.append(sub)
        return root / rel

    files = 0
    total = 0
    for rel, text in _config_files(seed, fs_uuid).items():
        folder(str(Path(rel).parent))
        data = text.encode()
        (root / rel).write_bytes(data)
        made.append(rel)
        files += 1
        total += len(data)
    budget = max(content_bytes - total, 64 * len(_AREAS))
    area_sizes = [int(budget * share) for _, share, _, _ in _AREAS]
    area_sizes[-1] = budget - sum(area_sizes[:-1])  # the exact total
    for (area, _, kind, names), area_bytes in zip(_AREAS, area_sizes, strict=True):
        d = folder(area)
        all_names = _area_names(area, names, area_bytes)
        for fname, size in zip(all_names, _split(area_bytes, len(all_names), rng), strict=True):
            chunks = _binary_chunks(size, rng) if kind == "binary" else _text_chunks(size, rng)
            with open(d / fname, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
            made.append(f"{area}/{fname}")
            files += 1
            total += size
    for rel, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("usr/bin/sh", "bash")):
        os.symlink(target, root / rel)
        made.append(rel)
    for rel in made:
        p = root / rel
        if not p.is_symlink():
            executable = p.is_dir() or rel.startswith(("usr/bin/", "usr/lib/", "boot/vmlinuz"))
            os.chmod(p, 0o755 if executable else 0o644)
    # Times last, deepest first, so writing children does not move a folder's mtime again.
    for rel in [*sorted(made, key=lambda r: r.count("/"), reverse=True), "."]:
        os.utime(root / rel, (FIXED_EPOCH_S, FIXED_EPOCH_S), follow_symlinks=False)
    return total, files, made


def _fix_owners_and_times(raw: Path, made: list[str], env: dict[str, str]) -> None:
    """Owner 0:0 and the fixed epoch on every inode the tree put into the image."""
    stamp = f"@{FIXED_EPOCH_S}"
    lines = []
    for rel in ["", *made]:
        inode = "/" + rel
        lines += [f"sif {inode} uid 0", f"sif {inode} gid 0"]
        lines += [f"sif {inode} {field} {stamp}" for field in ("atime", "mtime", "ctime", "crtime")]
    script = raw.with_suffix(".debugfs")
    script.write_text("\n".join(lines) + "\n")
    try:
        result = run_tool_result(["debugfs", "-w", "-f", str(script), str(raw)], env=env)
    finally:
        script.unlink()
    # debugfs exits 0 whatever its commands did; it reports them on stderr after its banner.
    errors = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("debugfs ")]
    if errors:
        raise ClonefleetError(f"debugfs could not fix owners and times in '{raw}': {errors[0]}")


def build_golden_image(
    dest_dir: Path,
    name: str = "gi",
    size_bytes: int = DEFAULT_SIZE_BYTES,
    fmt: str = "qcow2",
    seed: int = 0,
    content_bytes: int | None = None,
) -> GoldenImage:
    """Build ``dest_dir/<name>.<fmt>``: a GI of ``size_bytes`` virtual with an ext4 filesystem.

    ``content_bytes`` (default a quarter of ``size_bytes``) is the sum of the file
    sizes written into the tree; the image's ``used_bytes`` come out a little higher
    (filesystem metadata and journal blocks that are not all zero). The same
    arguments give the same bytes (see the module docstring). Refuses to replace an
    existing file. Nothing is left behind on failure.
    """
    image_format, content, target = _validate(dest_dir, name, size_bytes, fmt, seed, content_bytes)
    target.parent.mkdir(parents=True, exist_ok=True)
    with stop_on_signals():
        return _build(target, image_format, size_bytes, content, seed)


def _build(target: Path, image_format: ImageFormat, size_bytes: int, content: int, seed: int) -> GoldenImage:
    name = target.stem
    rng = np.random.default_rng(seed)
    fs_uuid = _seed_uuid(seed, "uuid")
    with tempfile.TemporaryDirectory(prefix=f".{name}-build-", dir=target.parent) as tmp:
        work = Path(tmp)
        env = ext4_env(work)
        staging = work / "root"
        staging.mkdir()
        total, files, made = _stage_tree(staging, content, rng, seed, fs_uuid)
        raw = work / "fs.img"
        make_ext4(raw, staging, size_bytes=size_bytes, label="clonefleet-gi", fs_uuid=fs_uuid,
                  hash_seed=_seed_uuid(seed, "hash"), env=env)
        _fix_owners_and_times(raw, made, env)
        fs_used = ext4_used_bytes(raw)
        out = work / f"out.{image_format.value}"
        convert = ["qemu-img", "convert", "-f", "raw", "-O", image_format.value]
        if image_format is ImageFormat.QCOW2:
            convert += ["-o", f"cluster_size={QCOW2_CLUSTER_BYTES}"]
        run_tool([*convert, str(raw), str(out)], env=env, timeout_s=copy_timeout_s(size_bytes))
        os.chmod(out, 0o444)
        publish_new(out, target, "GI")
    digest, nonzero_bytes = _digest_and_nonzero_bytes(target)
    if image_format is ImageFormat.QCOW2:
        used = qcow2_allocation(target).own_data_bytes
        cluster: int | None = QCOW2_CLUSTER_BYTES
    else:
        # Counted from the content, not from SEEK_DATA: how a host filesystem allocates
        # (xfs leaves preallocated extents that SEEK_DATA may or may not call data) must
        # not change G_used.
        used = nonzero_bytes
        cluster = None
    return GoldenImage(
        path=target,
        format=image_format,
        virtual_bytes=size_bytes,
        used_bytes=used,
        fs_used_bytes=fs_used,
        content_bytes=total,
        file_count=files,
        disk_bytes=allocated_bytes(target),
        cluster_bytes=cluster,
        sha256=digest,
        seed=seed,
        fs_uuid=fs_uuid,
    )
