"""Helpers shared by the tests.

Two rules hold for every test that needs something of the machine:

- :func:`unavailable` is the one way to say "this machine lacks what the test needs": a skip on
  a developer's machine, a failure in CI (``CI`` set), where everything is installed.
- :func:`storage_tool_guard` makes a test that runs a storage tool without the ``backend``
  marker fail (tests/conftest.py applies it to every unmarked test).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
import pytest


def unavailable(message: str) -> NoReturn:
    """Skip when the machine lacks what the test needs; fail in CI, where everything is installed."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: everything the tests need must be installed)")
    pytest.skip(message)


def require_tool(*names: str) -> None:
    """Skip when a tool is missing on a developer's machine; fail in CI (:func:`unavailable`)."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        unavailable(f"missing tool(s): {', '.join(missing)} (make setup installs them)")


# --- the backend marker, enforced -------------------------------------------------------------

#: Programs that touch real storage: a test that runs one carries ``@pytest.mark.backend``.
STORAGE_TOOL = re.compile(
    r"(qemu-img|qemu-io|qemu-nbd|qemu-storage-daemon|qemu-system-.+|fio|mkfs|mkfs\..+|mke2fs|mount|umount|debootstrap"
    r"|losetup|xfs_.+|debugfs|dumpe2fs|e2fsck|fsck|fsck\..+|tune2fs|resize2fs|btrfs"
    r"|rbd|rados|ceph|ceph-.+|monmaptool)"
)
#: Programs that run the next word as a command (``sudo qemu-img ...``, ``sh -c "mount ..."``).
_LAUNCHERS = frozenset({"sudo", "env", "timeout", "nice", "ionice", "taskset", "setsid", "stdbuf", "nohup",
                        "chrt", "flock", "unshare", "nsenter", "sh", "bash", "dash"})


def _words(command: object) -> list[str]:
    if isinstance(command, bytes):
        command = os.fsdecode(command)
    if isinstance(command, str | os.PathLike):
        return [os.fspath(command)]
    if isinstance(command, Sequence):
        return [os.fsdecode(w) if isinstance(w, bytes) else os.fspath(w) for w in command]
    return []


def storage_tool_in(args: object, executable: object = None, shell: bool = False) -> str | None:
    """The storage tool a command would run (``args`` as subprocess takes it), or None."""
    words = _words(args)
    if shell:  # a shell line may run several commands: look at every word
        words = [w for line in words for w in shlex.split(line, posix=True)] if words else []
    candidates = [os.fspath(executable)] if executable is not None else []
    candidates += words if (shell or (words and Path(words[0]).name in _LAUNCHERS)) else words[:1]
    for word in candidates:
        # "sh -c 'qemu-img info x'" hands its command over as one word: split that too.
        for part in (shlex.split(word) if " " in word else [word]):
            name = Path(part).name
            if STORAGE_TOOL.fullmatch(name):
                return name
    return None


class StorageToolWithoutMarker(RuntimeError):
    """Raised where a test without the ``backend`` marker starts a storage tool."""


@contextlib.contextmanager
def storage_tool_guard(test: str) -> Iterator[list[str]]:
    """While active, starting a storage tool raises :class:`StorageToolWithoutMarker`, and the block
    fails with one clear message even when the code under test swallowed that exception.

    Wraps the process-starting entry points of this interpreter: ``subprocess.Popen`` (and so
    ``subprocess.run``, ``os.popen``, asyncio's subprocesses), ``os.posix_spawn[p]``, ``os.exec*``
    and ``os.system``. A tool started by a child process (``python -m clonefleet ...`` run as a
    subprocess) is that child's business: such a test is a backend test by its nature.
    """
    seen: list[str] = []

    def refuse(tool: str) -> NoReturn:
        seen.append(tool)
        raise StorageToolWithoutMarker(f"{test} runs {tool} without @pytest.mark.backend")

    patch = pytest.MonkeyPatch()
    popen_init = subprocess.Popen.__init__
    signature = inspect.signature(popen_init)

    @functools.wraps(popen_init)  # nested guards (the self-tests) still see Popen's own signature
    def guarded_popen_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs).arguments
        tool = storage_tool_in(bound.get("args"), bound.get("executable"), bool(bound.get("shell", False)))
        if tool is not None:
            refuse(tool)
        popen_init(self, *args, **kwargs)

    def guard_argv(original: Any) -> Any:
        def guarded(path: Any, argv: Any, *rest: Any, **kwargs: Any) -> Any:
            tool = storage_tool_in([path]) or storage_tool_in(argv)
            if tool is not None:
                refuse(tool)
            return original(path, argv, *rest, **kwargs)
        return guarded

    def guard_system(original: Any) -> Any:
        def guarded(command: Any) -> Any:
            tool = storage_tool_in(command, shell=True)
            if tool is not None:
                refuse(tool)
            return original(command)
        return guarded

    patch.setattr(subprocess.Popen, "__init__", guarded_popen_init)
    for name in ("posix_spawn", "posix_spawnp", "execv", "execve"):
        if hasattr(os, name):
            patch.setattr(os, name, guard_argv(getattr(os, name)))
    patch.setattr(os, "system", guard_system(os.system))
    def message() -> str:
        return (f"{test} runs a storage tool ({', '.join(sorted(set(seen)))}) without the backend marker: "
                "add @pytest.mark.backend (or pytestmark = pytest.mark.backend) so that it runs, and fails "
                "when a tool is missing, in CI")

    try:
        yield seen
    except BaseException:
        if not seen:
            raise
        # else: the clear reason below replaces whatever the refused start led to
    finally:
        patch.undo()
    if seen:  # also when the code under test swallowed the refusal
        raise pytest.fail.Exception(message(), pytrace=False) from None


def units_touched(offsets: npt.ArrayLike, lengths: npt.ArrayLike, unit_bytes: int) -> int:
    """Distinct units of ``unit_bytes`` that extents (offsets, lengths in bytes) touch, counted exactly.

    The tests' count of what a footprint allocates, held against the occupancy model (C(u)/u
    in expectation), the simulator and the real backends.
    """
    start = np.asarray(offsets, dtype=np.int64)
    length = np.asarray(lengths, dtype=np.int64)
    touched: set[int] = set()
    for first, last in zip((start // unit_bytes).tolist(), ((start + length - 1) // unit_bytes).tolist(),
                           strict=True):
        touched.update(range(first, last + 1))
    return len(touched)


def _run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True)


@contextlib.contextmanager
def mounted(kind: str, size_bytes: int) -> Iterator[Path]:
    """A fresh filesystem of ``kind`` (xfs with reflink, btrfs, ext4 or tmpfs) mounted on a temporary folder."""
    if os.geteuid() != 0:
        unavailable("mounting a test filesystem needs root")
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
