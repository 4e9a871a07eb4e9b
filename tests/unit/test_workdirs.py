"""Work folders that never outlive clonefleet, and tools stopped with every process they started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clonefleet.storage.tools import ToolError, run_tool
from clonefleet.storage.workdirs import MARKER, remove_stale_work_dirs, work_dir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _watchdogs_of(path: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "clonefleet.storage.workdirs" in cmdline and str(path) in cmdline:
                found.append(int(proc.name))
    return found


def test_a_work_dir_is_marked_watched_and_gone_with_its_watchdog(tmp_path: Path) -> None:
    with work_dir(tmp_path, ".job-") as work:
        assert work.parent == tmp_path and (work / MARKER).read_text() == str(os.getpid())
        (work / "data").write_bytes(b"x" * 1000)
        deadline = time.monotonic() + 30  # until it has exec'd, the watchdog's command line is pytest's
        while not _watchdogs_of(work) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(_watchdogs_of(work)) == 1
    assert not work.exists() and _watchdogs_of(work) == []


def test_a_work_dir_goes_on_error_too(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), work_dir(tmp_path, ".job-") as work:
        raise RuntimeError("boom")
    assert not work.exists() and _watchdogs_of(work) == []


def test_the_watchdog_removes_the_folder_of_a_killed_owner(tmp_path: Path) -> None:
    code = ("import sys, time\nfrom pathlib import Path\nfrom clonefleet.storage.workdirs import work_dir\n"
            "with work_dir(Path(sys.argv[1]), '.job-') as w:\n    print(w, flush=True)\n    time.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    work = Path(owner.stdout.readline().strip())
    assert work.is_dir()
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 20
    while (work.exists() or _watchdogs_of(work)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not work.exists() and _watchdogs_of(work) == []  # removed, and the watchdog gone too


def test_stale_folders_are_removed_only_when_ours_and_orphaned(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan, alive, stranger = (tmp_path / ".job-1"), (tmp_path / ".job-2"), (tmp_path / ".job-3")
    for folder in (orphan, alive, stranger):
        folder.mkdir()
    (orphan / MARKER).write_text(str(dead.pid))
    (alive / MARKER).write_text(str(os.getpid()))
    assert remove_stale_work_dirs(tmp_path, ".job-") == [orphan]
    assert alive.exists() and stranger.exists() and not orphan.exists()


def test_a_tool_stopped_at_its_timeout_takes_its_children_with_it(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    with pytest.raises(ToolError, match="did not finish within 1 s"):
        run_tool(["sh", "-c", f"sleep 321 & echo $! > {pidfile}; wait"], timeout_s=1)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_a_tool_needs_a_finite_timeout(timeout: float) -> None:
    with pytest.raises(ValueError, match="finite time"):
        run_tool(["true"], timeout_s=timeout)
