"""Names and paths: plain clone names, the fleet directory, entries addressed inside a directory.

Everything a fleet creates or removes lives in one directory, the fleet directory, and is
addressed by a plain file name relative to a descriptor of that directory (``dir_fd``), never by
a path that could climb out of it. A name is refused unless it is a short, plain name; an entry
that turns out to be a symlink is refused instead of followed.

:func:`check_fleet_dir` is the one resolver of a fleet directory: the path is resolved fully
(symlinks, ``//``, ``..``) before it is checked, and a system directory is refused however it is
spelt or linked to.
"""

from __future__ import annotations

import fcntl
import os
import re
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clonefleet.errors import UsageError

#: Longest clone or file name accepted (well under NAME_MAX = 255, so suffixes fit).
MAX_NAME_CHARS = 128
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TEMPLATE = re.compile(r"^([A-Za-z0-9._-]*)\{index(?::(0?)(\d{1,2})d)?\}([A-Za-z0-9._-]*)$")

#: Directories a fleet may never be in, at any depth (first path component after resolving).
SYSTEM_TREES = ("etc", "boot", "usr", "bin", "sbin", "proc", "sys", "dev", "run")
#: Directories a fleet may never be itself (a folder below them is fine: /var/tmp/fleet, /home/me/fleet).
SYSTEM_DIRS = ("/", "/var", "/var/lib", "/var/tmp", "/root", "/home", "/tmp", "/mnt", "/media", "/opt", "/srv")


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


def system_directory(resolved: str) -> str | None:
    """The system directory a resolved absolute path is or lies in, None when it is none of them."""
    if resolved in SYSTEM_DIRS:
        return resolved
    top = resolved.lstrip("/").split("/", 1)[0]
    if top in SYSTEM_TREES or top.startswith("lib"):
        return "/" + top
    return None


def check_fleet_dir(path: Path | str) -> Path:
    """The fleet directory, resolved fully (symlinks, ``//``, ``..``), or a one-line :class:`UsageError`.

    Refused: NUL bytes, the root, a system directory or anything under the system trees (however
    it is spelt, and through any symlink), and an existing path that is not a directory. Resolving
    an already resolved path gives it back unchanged, so every command can call this again right
    before it uses the directory and find a swapped link.
    """
    text = os.fspath(path)
    if "\x00" in text:
        raise UsageError(f"dest {text!r}: contains a NUL byte")
    resolved = os.path.realpath(os.path.abspath(text))
    system = system_directory(resolved)
    if system is not None:
        shown = text if text == resolved else f"{text} (resolves to {resolved})"
        raise UsageError(f"dest {shown}: is or lies in the system directory {system}; give a directory of "
                         "its own for the fleet")
    if os.path.islink(os.path.abspath(text)):
        raise UsageError(f"dest {text!r}: is a symlink; give the real directory ({resolved})")
    if os.path.lexists(resolved) and not os.path.isdir(resolved):
        raise UsageError(f"dest {text!r}: exists and is not a directory")
    return Path(resolved)


def open_dir(path: Path) -> int:
    """A descriptor of a directory, opened without following a final symlink."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def lstat_in(dir_fd: int, name: str) -> os.stat_result | None:
    """lstat of one entry of a directory, None when absent (symlinks are not followed)."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def require_regular(dir_fd: int, name: str, dir_path: Path) -> os.stat_result | None:
    """The entry's stat if it is a regular file, None if absent; refuses symlinks and others."""
    st = lstat_in(dir_fd, name)
    if st is None:
        return None
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(name, dir_fd=dir_fd)
        raise UsageError(f"{dir_path / name}: is a symlink (to {target!r}); clonefleet never follows "
                         "links in a fleet directory: remove it")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{dir_path / name}: is not a regular file; remove it or pick another clone name")
    return st


#: ioctl FS_IOC_GETVERSION (_IOR('v', 1, long)): the inode's generation number.
FS_IOC_GETVERSION = 0x80087601


@dataclass(frozen=True)
class FileId:
    """Which file an entry is, whatever its name: its device, inode number and the inode's generation.

    Filesystems reuse a freed inode number (ext4 gives it to the next file made, often at once), so
    (dev, ino) alone would take a user's file, put under a clone's name after the clone was deleted,
    for the clone clonefleet made. The generation (``FS_IOC_GETVERSION``; ext4, xfs and btrfs keep
    one) changes when an inode number is reused. Where a filesystem keeps none (tmpfs), ``gen`` is
    None and (dev, ino) decide, as they do for records of older versions (:func:`same_file`).
    """

    dev: int
    ino: int
    gen: int | None = None

    def fields(self) -> dict[str, int]:
        """The journal record's fields of this identity."""
        return {"dev": self.dev, "ino": self.ino, **({} if self.gen is None else {"gen": self.gen})}

    @staticmethod
    def from_record(record: Mapping[str, Any]) -> FileId | None:
        """The identity a journal record holds; None when it holds none (or a damaged one)."""
        def whole(key: str) -> int | None:
            value = record.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        dev, ino = whole("dev"), whole("ino")
        return None if dev is None or ino is None else FileId(dev, ino, whole("gen"))


def same_file(recorded: FileId | None, found: FileId | None) -> bool:
    """Whether ``found`` is the file clonefleet recorded: the same device and inode, and, when the record
    holds a generation, the same generation (one that could not be read now does not match: it cannot
    tell a reused inode number from the file). A record without one (an older version, a filesystem
    without generations) is matched by device and inode."""
    if recorded is None or found is None or (recorded.dev, recorded.ino) != (found.dev, found.ino):
        return False
    return recorded.gen is None or recorded.gen == found.gen


def _generation(name: str | Path, dir_fd: int | None, st: os.stat_result) -> int | None:
    """The inode generation of a regular file or directory entry, read through a descriptor opened
    without following a link and without blocking; None where the filesystem has none, or when the
    entry changed since ``st`` was taken."""
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return None
        gen: int = struct.unpack("l", fcntl.ioctl(fd, FS_IOC_GETVERSION, bytes(8)))[0]
        return gen
    except OSError:  # none kept (ENOTTY on tmpfs), or not readable: None, which matches no recorded one
        return None
    finally:
        os.close(fd)


def identity(st: os.stat_result, name: str | Path, dir_fd: int | None = None) -> FileId:
    """The :class:`FileId` of the entry ``name`` (in the directory ``dir_fd``, or a path) whose lstat is
    ``st``."""
    return FileId(st.st_dev, st.st_ino, _generation(name, dir_fd, st))


def path_identity(path: Path) -> FileId:
    """The :class:`FileId` of ``path`` (a final symlink not followed)."""
    return identity(os.lstat(path), path)
