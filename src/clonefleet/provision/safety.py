"""Validation of names and paths, and protection of golden images (GIs).

Everything a fleet creates or removes lives in one directory, the fleet
directory, and is addressed by a plain file name relative to a descriptor of
that directory (``dir_fd``), never by a path that could climb out of it. A
name is refused unless it is a short, plain name; an entry that turns out to
be a symlink is refused instead of followed.

A GI is only ever opened read-only. Before clones are made from it, it is
checked: its SHA-256 against the one the manifest recorded, its size, no
process holding it open for writing, its format's own consistency check, and
the depth of its own backing chain.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from clonefleet.errors import ClonefleetError, UsageError

#: Longest clone or file name accepted (well under NAME_MAX = 255, so suffixes fit).
MAX_NAME_CHARS = 128
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TEMPLATE = re.compile(r"^([A-Za-z0-9._-]*)\{index(?::(0?)(\d{1,2})d)?\}([A-Za-z0-9._-]*)$")
_HASH_CHUNK_BYTES = 4 << 20


class GoldenImageError(ClonefleetError):
    """A GI that must not be cloned: changed, truncated, corrupt, open for writing, too deep."""

    exit_code = 1


def check_name(name: str, what: str = "clone name") -> str:
    """A plain file name: letters, digits, '.', '_', '-', not starting with '.' or '-', at most 128 chars."""
    if not isinstance(name, str):
        raise UsageError(f"{what} {name!r}: must be a string")
    if "\x00" in name:
        raise UsageError(f"{what} {name!r}: contains a NUL byte; use letters, digits, '.', '_' and '-'")
    if len(name) > MAX_NAME_CHARS:
        raise UsageError(f"{what} of {len(name)} characters: at most {MAX_NAME_CHARS} allowed")
    if "/" in name or name in (".", "..") or ".." in name:
        raise UsageError(f"{what} {name!r}: must be a plain name inside the fleet directory "
                         "(no '/', no '..', not absolute)")
    if not _NAME.match(name):
        raise UsageError(f"{what} {name!r}: use letters, digits, '.', '_' and '-', starting with a "
                         "letter or digit")
    return name


@dataclass(frozen=True)
class NameTemplate:
    """Clone names as ``prefix`` + index (zero-padded to ``width``) + ``suffix``: ``vm-{index:04d}``."""

    prefix: str
    width: int
    suffix: str

    @classmethod
    def parse(cls, text: str) -> NameTemplate:
        if not isinstance(text, str) or "\x00" in text:
            raise UsageError(f"clone_name {text!r}: a template such as 'vm-{{index:04d}}' without NUL bytes")
        match = _TEMPLATE.match(text)
        if match is None:
            raise UsageError(f"clone_name {text[:60]!r}: a template with one '{{index}}' or "
                             "'{index:04d}' and only letters, digits, '.', '_', '-' around it, "
                             "e.g. 'vm-{index:04d}'")
        prefix, _zero, width, suffix = match.groups()
        template = cls(prefix, int(width) if width else 0, suffix)
        check_name(template.name(0) if prefix else "x" + template.name(0), "clone_name")
        return template

    def name(self, index: int) -> str:
        return f"{self.prefix}{index:0{self.width}d}{self.suffix}"

    def index_of(self, name: str) -> int | None:
        """The index a name made by this template carries, None for any other name."""
        if not (name.startswith(self.prefix) and name.endswith(self.suffix)) \
                or len(name) <= len(self.prefix) + len(self.suffix):
            return None
        digits = name[len(self.prefix):len(name) - len(self.suffix)]
        if not digits.isascii() or not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"
                                                            and len(digits) != self.width):
            return None
        index = int(digits)
        return index if index >= 1 and self.name(index) == name else None

    def __str__(self) -> str:
        return f"{self.prefix}{{index:0{self.width}d}}{self.suffix}" if self.width else \
            f"{self.prefix}{{index}}{self.suffix}"


def check_fleet_dir(path: Path) -> Path:
    """The fleet directory as an absolute path; refuses NUL bytes and the filesystem root."""
    text = str(path)
    if "\x00" in text:
        raise UsageError(f"dest {text!r}: contains a NUL byte")
    absolute = Path(os.path.abspath(text))
    if absolute == Path("/") or str(absolute) in ("/bin", "/boot", "/dev", "/etc", "/lib", "/proc",
                                                   "/root", "/sbin", "/sys", "/usr", "/var"):
        raise UsageError(f"dest {text!r}: a system directory; give a directory of its own for the fleet")
    if absolute.is_symlink():
        raise UsageError(f"dest {text!r}: is a symlink; give the real directory ({os.path.realpath(text)})")
    if absolute.exists() and not absolute.is_dir():
        raise UsageError(f"dest {text!r}: exists and is not a directory")
    return absolute


def lstat_in(dir_fd: int, name: str) -> os.stat_result | None:
    """lstat of one entry of the fleet directory, None when absent (symlinks are not followed)."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def require_regular(dir_fd: int, name: str, fleet_dir: Path) -> os.stat_result | None:
    """The entry's stat if it is a regular file, None if absent; refuses symlinks and others."""
    st = lstat_in(dir_fd, name)
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(name, dir_fd=dir_fd)
        raise UsageError(f"{fleet_dir / name}: is a symlink (to {target!r}); clonefleet never follows "
                         "links in a fleet directory: remove it")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{fleet_dir / name}: is not a regular file; remove it or pick another clone name")
    return st


# --- golden images ---------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """SHA-256 of a file read through a read-only descriptor."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, _HASH_CHUNK_BYTES):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def writers_of(path: Path) -> list[int]:
    """Pids of processes that hold ``path`` open for writing (read from /proc)."""
    try:
        target = os.stat(path)
    except OSError:
        return []
    found: list[int] = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        fd_dir = f"/proc/{entry.name}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino):
                continue
            try:
                with open(f"/proc/{entry.name}/fdinfo/{fd}", encoding="ascii") as info:
                    flags = next((int(line.split()[1], 8) for line in info if line.startswith("flags:")), 0)
            except (OSError, ValueError):
                continue
            if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                found.append(int(entry.name))
                break
    return found


@dataclass(frozen=True)
class GoldenImageInfo:
    """What the checks learned about a GI."""

    path: Path
    fmt: str  # qcow2 or raw
    virtual_bytes: int
    file_bytes: int
    sha256: str
    chain_depth: int  # 1 when the GI has no backing file


def image_info(path: Path) -> dict[str, object]:
    """``qemu-img info`` (all of the backing chain) as JSON, read-only and without taking locks."""
    result = subprocess.run(
        ["qemu-img", "info", "-U", "--backing-chain", "--output=json", str(path)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["unreadable"])[-1]
        raise GoldenImageError(f"golden image {path}: qemu-img cannot read it ({detail}); it is "
                               "corrupt or truncated: rebuild it or restore it from a copy")
    chain = json.loads(result.stdout)
    chain = chain if isinstance(chain, list) else [chain]
    return {"chain": chain}


def check_golden_image(path: Path, expected_sha256: str | None, max_chain_depth: int = 1,
                       expected_bytes: int | None = None) -> GoldenImageInfo:
    """Refuse a GI that is missing, open for writing, truncated, corrupt, changed or too deep.

    The cheap checks come first; the checksum (a full read) last.
    """
    if not path.exists():
        raise GoldenImageError(f"golden image {path}: does not exist")
    if not path.is_file():
        raise GoldenImageError(f"golden image {path}: is not a regular file")
    writers = writers_of(path)
    if writers:
        raise GoldenImageError(f"golden image {path}: open for writing by pid {', '.join(map(str, writers))}; "
                               "a GI must not change while clones are made from it: stop that process first")
    size = path.stat().st_size
    if expected_bytes is not None and size != expected_bytes:
        state = "truncated" if size < expected_bytes else "grown"
        raise GoldenImageError(f"golden image {path}: {state}: {size} bytes, the manifest recorded "
                               f"{expected_bytes}; restore the original GI")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"QFI\xfb":
        # raw: nothing inside to check but its size and checksum; no backing chain. A disk is
        # whole 512-byte sectors: anything else is a truncated image or not an image at all.
        if size == 0 or size % 512:
            raise GoldenImageError(f"golden image {path}: {size} bytes, not a qcow2 image nor a raw disk "
                                   "(a raw disk is a whole number of 512-byte sectors, at least one)")
        fmt, virtual, depth = "raw", size, 1
    else:
        chain = image_info(path)["chain"]
        assert isinstance(chain, list)
        top = chain[0]
        fmt, virtual, depth = str(top.get("format", "raw")), int(top.get("virtual-size", size)), len(chain)
        if fmt != "qcow2":
            raise GoldenImageError(f"golden image {path}: format {fmt!r}; clonefleet clones qcow2 or raw images")
        if depth > max_chain_depth:
            raise GoldenImageError(f"golden image {path}: a backing chain {depth} deep, more than "
                                   f"max_chain_depth = {max_chain_depth}; flatten it (qemu-img convert) "
                                   "or raise the limit in the manifest")
        result = subprocess.run(["qemu-img", "check", "-U", "-f", "qcow2", str(path)],
                                capture_output=True, text=True, check=False)
        # 0: clean; 3: leaked clusters only (harmless); anything else: corrupt or unreadable.
        if result.returncode not in (0, 3):
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise GoldenImageError(f"golden image {path}: qemu-img check finds it corrupt "
                                   f"({detail[-1] if detail else 'exit ' + str(result.returncode)}); "
                                   "restore the GI from a good copy")
    digest = sha256_file(path)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise GoldenImageError(f"golden image {path}: SHA-256 {digest[:16]}... differs from the manifest's "
                               f"{expected_sha256[:16]}...; the GI changed since the fleet was planned: "
                               "restore it, or record the new checksum with 'clonefleet init --force'")
    return GoldenImageInfo(path=path, fmt=fmt, virtual_bytes=virtual, file_bytes=size, sha256=digest,
                           chain_depth=depth)
