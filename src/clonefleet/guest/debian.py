"""A bootable Debian golden image, built from Debian's packages, cached per recipe.

The recipe (:data:`SUITE`, :data:`VARIANT`, :data:`PACKAGES`, the image size) is fixed:

1. ``debootstrap --variant=minbase --include=systemd-sysv,udev,linux-image-cloud-amd64 bookworm``
   from the mirror apt is configured with (or ``mirror``) into a staging folder; the GI carries its own
   kernel and initramfs in ``/boot`` (Debian's cloud kernel: virtio built in);
2. the GI is sealed like a template: an empty ``/etc/machine-id`` (each clone makes its own at first
   boot), no apt caches, no bootstrap log, a fixed host name; every file time is set to a fixed epoch;
3. ``mkfs.ext4 -d`` writes the tree into a sparse raw image without mounting it (fixed UUID, hash
   seed and clock: :mod:`clonefleet.storage.ext4`); ``qemu-img convert`` makes the qcow2 GI
   (64 KiB clusters);
4. a manifest (``NAME.gi.json``) records the suite, the mirror, every installed package's version,
   the kernel, and both images' SHA-256.

Reproducibility: the same recipe from the same mirror gives the same packages at the same versions
(the manifest lists them, so two builds can be compared); the image bytes also depend on the time
of the build where Debian's tools write it into files (logs, the initramfs), so the SHA-256 names
one build and is checked, not promised. The build is cached in ``cache_dir/debian-<key>`` (the key
hashes the recipe and the mirror): a second ``build_debian_gi`` copies the cached images, which is
what lets the tests build it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.guest.bootfiles import newest_kernel
from clonefleet.progress import Progress, no_progress
from clonefleet.storage.data import copy_file_private, sha256_file
from clonefleet.storage.ext4 import FIXED_EPOCH_S, ext4_env, ext4_used_bytes, make_ext4
from clonefleet.storage.files import publish_new, refuse_to_replace
from clonefleet.storage.paths import check_name
from clonefleet.storage.qcow2 import qcow2_allocation
from clonefleet.storage.tools import copy_timeout_s, run_tool, run_tool_result, stop_on_signals
from clonefleet.storage.workdirs import remove_work_dir, work_dir

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES: tuple[str, ...] = ("systemd-sysv", "udev", "linux-image-cloud-amd64")
IMAGE_BYTES = 1024**3
QCOW2_CLUSTER_BYTES = 65536
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: Changes whenever the recipe's steps change, so an older cache entry is not reused.
RECIPE_VERSION = 1
HOSTNAME = "clonefleet-gi"
FS_UUID = "c10efee7-0000-4000-8000-00000000deb1"
HASH_SEED = "c10efee7-0000-4000-8000-00000000deb2"
DEBOOTSTRAP_TIMEOUT_S = 3600.0
#: debootstrap, when it must stop, gets SIGTERM and this long before SIGKILL [s].
DEBOOTSTRAP_GRACE_S = 20.0
BUILD_PREFIX = ".debian-build-"
COPY_PREFIX = ".clonefleet-copy-"
MANIFEST_SUFFIX = ".gi.json"


@dataclass(frozen=True)
class DebianImage:
    """A built Debian GI: both images, its manifest, and what a boot needs to know."""

    raw: Path
    qcow2: Path
    manifest: Path
    kernel: str  # path of the kernel inside the image, e.g. /boot/vmlinuz-6.1.0-50-cloud-amd64
    initrd: str
    kernel_version: str
    raw_sha256: str
    qcow2_sha256: str
    virtual_bytes: int
    used_bytes: int  # G_used: data clusters of the qcow2 GI
    fs_used_bytes: int
    packages: int
    from_cache: bool


def apt_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt is configured with for :data:`SUITE` (deb822 ``*.sources`` or
    ``sources.list``), or :data:`DEFAULT_MIRROR`."""
    for f in sorted((etc / "sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            for stanza in f.read_text(encoding="utf-8").split("\n\n"):
                fields: dict[str, str] = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, re.M))
                if SUITE in fields.get("Suites", "").split() and "deb" in fields.get("Types", "").split():
                    return fields.get("URIs", DEFAULT_MIRROR).split()[0]
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in (etc / "sources.list").read_text(encoding="utf-8").splitlines():
            parts = line.split()
            uris = [p for p in parts[1:] if "://" in p]
            if parts and parts[0] == "deb" and uris and SUITE in parts:
                return uris[0]
    return DEFAULT_MIRROR


def recipe(mirror: str) -> dict[str, object]:
    """What decides the image's content: the cache key hashes it."""
    return {"os": "debian", "suite": SUITE, "variant": VARIANT, "packages": list(PACKAGES),
            "image_bytes": IMAGE_BYTES, "mirror": mirror, "recipe_version": RECIPE_VERSION}


def cache_key(mirror: str) -> str:
    return hashlib.sha256(json.dumps(recipe(mirror), sort_keys=True).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$CLONEFLEET_CACHE``, else ``$XDG_CACHE_HOME/clonefleet``, else ``~/.cache/clonefleet``."""
    if os.environ.get("CLONEFLEET_CACHE"):
        return Path(os.environ["CLONEFLEET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clonefleet"


def installed_packages(root: Path) -> dict[str, str]:
    """Package -> version of every package dpkg lists as installed in the tree ``root``."""
    status = (root / "var/lib/dpkg/status").read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for stanza in status.split("\n\n"):
        fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            arch = fields.get("Architecture", "")
            name = fields["Package"] if arch in ("", "all", "amd64") else f"{fields['Package']}:{arch}"
            out[name] = fields.get("Version", "")
    return dict(sorted(out.items()))


def _seal(root: Path) -> None:
    """Make the tree a template: no identity of its own, no build leftovers, fixed times."""
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text(HOSTNAME + "\n")
    for leftover in ("var/log/bootstrap.log", "var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin"):
        (root / leftover).unlink(missing_ok=True)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in [*filenames, *dirnames]:
            os.utime(os.path.join(dirpath, name), (FIXED_EPOCH_S, FIXED_EPOCH_S), follow_symlinks=False)
    os.utime(root, (FIXED_EPOCH_S, FIXED_EPOCH_S))


def _boot_files(root: Path) -> tuple[str, str, str]:
    version = newest_kernel([p.name for p in (root / "boot").iterdir()])
    if version is None:
        raise ClonefleetError(f"debootstrap installed no kernel with its initramfs in {root / 'boot'}: is "
                              f"{PACKAGES[-1]} available from the mirror?")
    return f"/boot/vmlinuz-{version}", f"/boot/initrd.img-{version}", version


def _build_into(entry: Path, mirror: str, progress: Progress) -> None:
    """Build the images and the manifest into the new folder ``entry``."""
    root = entry / "root"
    progress("debootstrap (a minute or two)", 0, 4)
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(FIXED_EPOCH_S), LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    run_tool_result(["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}", SUITE, str(root),
                     mirror], env=env, timeout_s=DEBOOTSTRAP_TIMEOUT_S, grace_s=DEBOOTSTRAP_GRACE_S)
    packages = installed_packages(root)
    kernel, initrd, version = _boot_files(root)
    _seal(root)
    progress("mkfs.ext4 -d", 1, 4)
    raw = entry / "debian.raw"
    make_ext4(raw, root, size_bytes=IMAGE_BYTES, label="clonefleet-deb", fs_uuid=FS_UUID, hash_seed=HASH_SEED,
              env=ext4_env(entry.parent))
    remove_work_dir(root)  # debootstrap's own mounts (/proc, /sys) are gone by now; never delete through one
    fs_used = ext4_used_bytes(raw)
    progress("qemu-img convert", 2, 4)
    qcow2 = entry / "debian.qcow2"
    run_tool(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", f"cluster_size={QCOW2_CLUSTER_BYTES}",
              str(raw), str(qcow2)], timeout_s=copy_timeout_s(IMAGE_BYTES))
    progress("SHA-256", 3, 4)
    for image in (raw, qcow2):
        os.chmod(image, 0o444)
    debootstrap_version = run_tool(["dpkg-query", "-W", "-f=${Version}", "debootstrap"]).strip()
    doc = {
        **recipe(mirror),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "debootstrap_version": debootstrap_version,
        "kernel": kernel, "initrd": initrd, "kernel_version": version,
        "fs_used_bytes": fs_used,
        "used_bytes": qcow2_allocation(qcow2).own_data_bytes,
        "images": {"raw": {"file": raw.name, "sha256": sha256_file(raw)},
                   "qcow2": {"file": qcow2.name, "sha256": sha256_file(qcow2),
                             "cluster_bytes": QCOW2_CLUSTER_BYTES}},
        "packages": packages,
    }
    (entry / "debian.gi.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    progress("built", 4, 4)


def _cached_entry(cache_dir: Path, mirror: str, progress: Progress) -> tuple[Path, bool]:
    """The cache folder of the recipe, built first if absent. A build goes to a temporary folder
    renamed into place at the end, so a killed build leaves no half entry."""
    entry = cache_dir / f"debian-{cache_key(mirror)}"
    if (entry / "debian.gi.json").is_file():
        return entry, True
    with work_dir(cache_dir, BUILD_PREFIX) as tmp:
        work = tmp / "entry"
        work.mkdir()
        _build_into(work, mirror, progress)
        try:
            os.rename(work, entry)
        except OSError:  # another build finished first: keep its entry
            if not (entry / "debian.gi.json").is_file():
                raise
    return entry, False


def build_debian_gi(out_dir: Path, name: str = "debian", *, mirror: str | None = None,
                    cache_dir: Path | None = None, progress: Progress = no_progress) -> DebianImage:
    """Build (or copy from the cache) ``out_dir/NAME.qcow2``, ``NAME.raw`` and ``NAME.gi.json``.

    Needs root (debootstrap) and the Debian mirror for a first build. Refuses to replace an
    existing file; a failed or interrupted build leaves nothing in ``out_dir``.
    """
    check_name(name, "GI name")
    targets = {kind: out_dir / f"{name}.{kind}" for kind in ("qcow2", "raw")}
    manifest = out_dir / f"{name}{MANIFEST_SUFFIX}"
    for target in (*targets.values(), manifest):
        refuse_to_replace(target, "GI file", force=False)
    cache = cache_dir or default_cache_dir()
    with stop_on_signals():
        entry = cache / f"debian-{cache_key(mirror or apt_mirror())}"
        if not (entry / "debian.gi.json").is_file() and os.geteuid() != 0:
            raise UsageError("gi build --os debian: debootstrap needs root for a first build; run it as root "
                             f"(the result is cached in {cache})")
        entry, from_cache = _cached_entry(cache, mirror or apt_mirror(), progress)
        doc = json.loads((entry / "debian.gi.json").read_text(encoding="utf-8"))
        with work_dir(out_dir, COPY_PREFIX) as tmp:
            progress("copy the GI from the cache", 0, 1)
            sources = {kind: entry / doc["images"][kind]["file"] for kind in targets}
            for kind, target in targets.items():
                staged = Path(tmp) / target.name
                copy_file_private(sources[kind], staged)
                os.chmod(staged, 0o444)
                doc["images"][kind]["file"] = target.name
            staged_manifest = Path(tmp) / manifest.name
            staged_manifest.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
            for kind in targets:
                if sha256_file(Path(tmp) / targets[kind].name) != doc["images"][kind]["sha256"]:
                    raise ClonefleetError(f"the cached GI {sources[kind]} no longer has the SHA-256 its manifest "
                                          f"records; remove {entry} and build again")
            published: list[Path] = []
            try:
                for target in (*targets.values(), manifest):
                    publish_new(Path(tmp) / target.name, target, "GI file")
                    published.append(target)
            except BaseException:
                for target in published:  # ours: made a moment ago by this call
                    target.unlink(missing_ok=True)
                raise
    return DebianImage(raw=targets["raw"], qcow2=targets["qcow2"], manifest=manifest, kernel=doc["kernel"],
                       initrd=doc["initrd"], kernel_version=doc["kernel_version"],
                       raw_sha256=doc["images"]["raw"]["sha256"], qcow2_sha256=doc["images"]["qcow2"]["sha256"],
                       virtual_bytes=doc["image_bytes"], used_bytes=doc["used_bytes"],
                       fs_used_bytes=doc["fs_used_bytes"], packages=len(doc["packages"]), from_cache=from_cache)
