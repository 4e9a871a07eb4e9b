"""Temporary work folders that never outlive clonefleet: made, marked, watched, removed.

A long job (a Debian build, a boot capture) works in a folder of its own inside the place it
writes to. :func:`work_dir` makes one and:

- marks it as ours with a ``clonefleet.pid`` file naming the process that owns it, so a later run
  (:func:`remove_stale_work_dirs`) or the watchdog removes only folders clonefleet made, and only
  when their owner is gone;
- starts a watchdog (``python -m clonefleet.storage.workdirs PID DIR``, a process of its own session)
  that removes the folder if the owner dies without removing it, e.g. killed with SIGKILL, when no
  handler runs; the watchdog is stopped (by pid) when the folder is removed normally;
- removes it on the way out (:func:`remove_work_dir`): first every filesystem mounted below it
  (debootstrap mounts /proc and /sys in its target), never deleting through a mount.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from clonefleet.errors import ClonefleetError

MARKER = "clonefleet.pid"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unescape(field: str) -> str:
    """A path from /proc/self/mountinfo, where space, tab, newline and backslash are octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mounts_below(path: Path) -> list[Path]:
    """Mount points strictly inside ``path``, deepest first."""
    root = os.path.realpath(path)
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split(" ")
            if len(fields) > 4:
                point = _unescape(fields[4])
                if point.startswith(root + os.sep):
                    found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_work_dir(path: Path) -> None:
    """Unmount whatever is mounted below ``path`` (lazily), then remove it; refuses to delete through
    a mount that will not go away."""
    for point in mounts_below(path):
        subprocess.run(["umount", "-l", str(point)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60, check=False)
    left = mounts_below(path)
    if left:
        raise ClonefleetError(f"cannot remove the work folder {path}: {left[0]} is still mounted there; "
                              f"unmount it (umount -l {left[0]}) and remove the folder")
    shutil.rmtree(path, ignore_errors=True)


def _owner(path: Path) -> int | None:
    try:
        return int((path / MARKER).read_text().strip())
    except (OSError, ValueError):
        return None


def remove_stale_work_dirs(parent: Path, prefix: str) -> list[Path]:
    """Remove the folders ``parent/prefix*`` an earlier clonefleet made and left (its process is gone);
    a folder without our marker is someone else's and stays."""
    removed = []
    for work in sorted(parent.glob(f"{prefix}*")):
        owner = _owner(work)
        if owner is not None and not work.is_symlink() and work.is_dir() and not _pid_alive(owner):
            remove_work_dir(work)
            removed.append(work)
    return removed


@contextlib.contextmanager
def work_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A new folder ``parent/prefix*``, marked, watched and removed at the end (module docstring)."""
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_work_dirs(parent, prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    (path / MARKER).write_text(str(os.getpid()))
    watchdog = subprocess.Popen([sys.executable, "-m", "clonefleet.storage.workdirs", str(os.getpid()), str(path)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        yield path
    finally:
        try:
            remove_work_dir(path)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(watchdog.pid, signal.SIGKILL)
            watchdog.wait()


def _watch(owner: int, path: Path) -> None:
    """The watchdog: wait until ``owner`` is gone, then remove ``path`` if it is still ours."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the owner's terminal is the owner's
    while _pid_alive(owner):
        time.sleep(0.5)
    if _owner(path) == owner:
        with contextlib.suppress(ClonefleetError):
            remove_work_dir(path)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), Path(sys.argv[2]))
