"""The one runner of external storage tools (qemu-img, qemu-io, mkfs, debugfs, xfs_spaceman...).

Every tool clonefleet starts goes through :func:`run_tool_result`:

- it has a timeout (:data:`DEFAULT_TIMEOUT_S`, or the caller's, e.g. :func:`copy_timeout_s` for a
  copy of many bytes); a tool that outlives it is killed by its pid and the run fails with one line;
- a missing tool or a non-zero exit is one :class:`ToolError` line naming the tool and quoting its
  first error line (ENOSPC stays an ``OSError`` with its errno, so callers can tell a full disk);
- while it runs, its ``Popen`` is registered; :func:`kill_running` kills every registered child by
  pid, and :func:`stop_on_signals` makes SIGINT and SIGTERM do that before the process stops, so
  no tool is left writing after clonefleet has gone. After a stop no new tool is started;
- each tool runs in a process group of its own, and stopping it stops the group: the processes a
  tool starts itself (debootstrap's dpkg and chroot) go with it. A tool given a ``grace_s`` gets
  SIGTERM first, to clean up.

:func:`run_tool_until` runs a long-lived tool (QEMU) the same way, until it exits or a condition
holds; it also dies with clonefleet if clonefleet is killed outright (SIGKILL).
"""

from __future__ import annotations

import ctypes
import math
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from types import FrameType

from clonefleet.errors import ClonefleetError

#: Timeout of one tool run unless the caller gives its own: metadata work (info, map, check, create).
DEFAULT_TIMEOUT_S = 600.0
#: Slowest rate a copy is allowed before it counts as hung (bytes per second).
MIN_COPY_RATE_BYTES_S = 10 * 1024**2

_INSTALL_HINT = {
    "qemu-img": "qemu-utils",
    "qemu-io": "qemu-utils",
    "mkfs.ext4": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "dumpe2fs": "e2fsprogs",
    "xfs_spaceman": "xfsprogs",
    "debootstrap": "debootstrap",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-storage-daemon": "qemu-system-common",
    "fio": "fio",
}
#: prctl option: the child gets this signal when the thread that started it dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1

_lock = threading.Lock()
_running: dict[int, tuple[subprocess.Popen[str], float]] = {}  # pid -> (process, grace before SIGKILL)
_stopping = threading.Event()
_guarded = threading.Event()


class ToolError(ClonefleetError):
    """A storage tool is missing, failed or timed out."""

    exit_code = 1


class Stopped(ClonefleetError):
    """SIGINT or SIGTERM arrived: the tools were killed and the run stops."""

    exit_code = 130


def copy_timeout_s(nbytes: int) -> float:
    """Timeout of a tool that copies ``nbytes``: the default plus the time at the slowest allowed rate."""
    return DEFAULT_TIMEOUT_S + max(nbytes, 0) / MIN_COPY_RATE_BYTES_S


def first_error_line(*outputs: str) -> str:
    """The first non-empty line of the first output that has one, or a placeholder."""
    for out in outputs:
        for line in out.splitlines():
            if line.strip():
                return line.strip()
    return "no error message"


def _subcommand(args: Sequence[str]) -> str:
    return f"{args[1]} " if len(args) > 1 and not args[1].startswith("-") else ""


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    """Send ``sig`` to the tool and every process it started (its own process group)."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _kill(proc: subprocess.Popen[str], grace_s: float = 0.0) -> None:
    """Stop one tool and its children by its pid (its process group) and reap it: SIGTERM first when it
    has ``grace_s`` to clean up (debootstrap unmounts what it mounted), then SIGKILL."""
    if proc.poll() is None and grace_s > 0:
        _signal_group(proc, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(grace_s)
    _signal_group(proc, signal.SIGKILL)  # also children the tool left behind
    proc.wait()


def running_pids() -> list[int]:
    """Pids of the tools this process runs now."""
    with _lock:
        return sorted(_running)


def kill_running() -> int:
    """Stop every tool this process runs, with its children (by process group): SIGKILL, or SIGTERM for
    a tool given time to clean up (its caller's ``_kill`` then waits and kills); returns how many."""
    with _lock:
        procs = list(_running.values())
    for proc, grace_s in procs:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
    return len(procs)


def _check_timeout(timeout_s: float) -> None:
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s = {timeout_s!r}: a finite time greater than 0")


def run_tool_result(
    args: Sequence[str],
    *,
    stdin_text: str | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    check: bool = True,
    grace_s: float = 0.0,
) -> subprocess.CompletedProcess[str]:
    """Run a storage tool to its end; stdout and stderr as text. See the module docstring. ``grace_s``:
    when it must be stopped, the tool gets SIGTERM and this long to clean up before SIGKILL."""
    tool = args[0]
    _check_timeout(timeout_s)
    if _stopping.is_set():
        raise Stopped(f"stopped by a signal: {tool} {_subcommand(args)}not started")
    try:
        proc = subprocess.Popen(list(args), stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)  # no preexec_fn: tools also run from worker threads
    except FileNotFoundError:
        raise ToolError(f"{tool} not found on PATH: install {_INSTALL_HINT.get(tool, 'its package')} "
                        "(scripts/setup.sh does)") from None
    with _lock:
        _running[proc.pid] = (proc, grace_s)
    try:
        try:
            out, err = proc.communicate(stdin_text, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc, grace_s)
            raise ToolError(f"{tool} {_subcommand(args)}did not finish within {timeout_s:g} s and was killed "
                            f"(pid {proc.pid})") from None
        except BaseException:
            _kill(proc, grace_s)
            raise
    finally:
        with _lock:
            _running.pop(proc.pid, None)
    if _stopping.is_set() and proc.returncode != 0:
        raise Stopped(f"stopped by a signal: {tool} {_subcommand(args)}killed (pid {proc.pid})")
    result = subprocess.CompletedProcess(list(args), proc.returncode, out, err)
    if check and proc.returncode != 0:
        line = first_error_line(err, out)
        if "No space left on device" in line:
            raise OSError(28, "No space left on device", args[-1])
        raise ToolError(f"{tool} {_subcommand(args)}failed (exit {proc.returncode}): {line}")
    return result


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it if clonefleet dies, even by SIGKILL (Linux), and no core dump
    (QEMU aborting in a KVM probe must not drop a core file where it runs). Long-lived tools run from the
    main thread only, so a preexec function is safe here."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _start_long_lived(args: Sequence[str], output: str | os.PathLike[str] | None,
                      cwd: str | os.PathLike[str] | None,
                      env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a long-lived tool from the main thread: its own process group, dies with clonefleet,
    stdout and stderr into ``output`` (or nowhere); ``env``: its whole environment (default: ours)."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(f"{args[0]}: long-lived tools start from the main thread only (the parent-death "
                           "signal follows the starting thread)")
    try:
        with open(output if output is not None else os.devnull, "w") as sink:
            return subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                    text=True, cwd=cwd, env=None if env is None else dict(env),
                                    start_new_session=True, preexec_fn=_die_with_parent)
    except FileNotFoundError:
        raise ToolError(f"{args[0]} not found on PATH: install {_INSTALL_HINT.get(args[0], 'its package')} "
                        "(scripts/setup.sh does)") from None


def run_tool_until(
    args: Sequence[str],
    *,
    until: Callable[[], bool] | None = None,
    output: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout_s: float,
    poll_s: float = 0.2,
    stop_grace_s: float = 10.0,
) -> tuple[int, bool]:
    """Run a long-lived tool (a VM) until it exits by itself or ``until()`` turns true.

    Its stdout and stderr go to the file ``output`` (discarded without one). In the
    second case the tool is asked to stop (SIGTERM, which QEMU answers by closing its images
    cleanly), then killed after ``stop_grace_s``. It is registered like every tool (killed by
    pid on SIGINT/SIGTERM) and dies with clonefleet even if clonefleet is killed (SIGKILL), so
    nothing is left running. Returns (exit code, whether ``until`` stopped it); past
    ``timeout_s`` the tool is killed and the run fails with one :class:`ToolError` line.
    """
    tool = args[0]
    _check_timeout(timeout_s)
    if _stopping.is_set():
        raise Stopped(f"stopped by a signal: {tool} not started")
    proc = _start_long_lived(args, output, cwd)
    with _lock:
        _running[proc.pid] = (proc, 0.0)
    stopped_by_us = False
    try:
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None:
            if until is not None and until():
                stopped_by_us = True
                proc.terminate()
                try:
                    proc.wait(stop_grace_s)
                except subprocess.TimeoutExpired:
                    _kill(proc)
                break
            if time.monotonic() > deadline:
                _kill(proc)
                raise ToolError(f"{tool} did not finish within {timeout_s:g} s and was killed (pid {proc.pid})")
            time.sleep(poll_s)
    except BaseException:
        _kill(proc)
        raise
    finally:
        with _lock:
            _running.pop(proc.pid, None)
    if _stopping.is_set():
        raise Stopped(f"stopped by a signal: {tool} killed (pid {proc.pid})")
    return int(proc.returncode), stopped_by_us


@contextmanager
def started_tool(args: Sequence[str], *, output: str | os.PathLike[str] | None = None,
                 stop_grace_s: float = 5.0, env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """Start a long-lived tool (a storage daemon, a load generator) that runs beside others while
    the caller watches them all; yields its ``Popen``.

    Like :func:`run_tool_until`'s tool it runs in a process group of its own, is registered
    (stopped with its group on SIGINT/SIGTERM through :func:`stop_on_signals`), dies with
    clonefleet even if clonefleet is killed (SIGKILL), and its stdout and stderr go to ``output``.
    Leaving the block stops it if it still runs: SIGTERM (a daemon closes its images cleanly),
    then SIGKILL to its group after ``stop_grace_s``; it is always reaped and unregistered, so no
    process is left. Start it from the main thread: the parent-death signal follows the starting
    thread. ``env``: the tool's whole environment (default: clonefleet's).
    """
    tool = args[0]
    if _stopping.is_set():
        raise Stopped(f"stopped by a signal: {tool} not started")
    proc = _start_long_lived(args, output, None, env)
    with _lock:
        _running[proc.pid] = (proc, stop_grace_s)
    try:
        yield proc
    finally:
        try:
            _kill(proc, stop_grace_s)
        finally:
            with _lock:
                _running.pop(proc.pid, None)


def run_tool(args: Sequence[str], *, stdin_text: str | None = None, env: dict[str, str] | None = None,
             timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """As :func:`run_tool_result`; returns stdout."""
    return run_tool_result(args, stdin_text=stdin_text, env=env, timeout_s=timeout_s).stdout


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside: SIGINT and SIGTERM kill every running tool by pid, stop new ones from starting,
    and raise :class:`Stopped` in the main thread (the caller's ``finally`` blocks and undo run).
    Nested uses and uses outside the main thread change nothing."""
    if threading.current_thread() is not threading.main_thread() or _guarded.is_set():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        _stopping.set()
        kill_running()
        raise Stopped(f"stopped by {signal.Signals(signum).name}: running tools killed; rerun to finish")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    _guarded.set()
    try:
        yield
    finally:
        _guarded.clear()
        for s, h in previous.items():
            signal.signal(s, h)
        kill_running()
        _stopping.clear()
