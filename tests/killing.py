"""The crash tests' harness: a clonefleet command run as a subprocess and killed (SIGKILL) at a random
moment, drawn from a seeded generator so a failure can be replayed.

The moments are calibrated on one whole run of the command (:func:`calibrate`): its start-up (until
its progress probe first moves) and its work. A third of the kills land anywhere in a whole run
(start-up included); the rest once this run has shown progress, within the work's duration, so most
kills land while the command is changing the fleet. Each test checks its own invariants after each
kill (:func:`kill_at_a_random_moment` returns whether the kill landed in a live process).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Kills that must land mid-run, and the most rounds a test may take to land them.
KILLS = 20
MAX_ROUNDS = 80

Probe = Callable[[], int]  # how far the command has come (journal records, clones recorded, ...)


def start(*args: str | Path) -> subprocess.Popen[bytes]:
    """``python -m clonefleet ARGS`` in a process of its own; its error output kept for the test."""
    return subprocess.Popen([sys.executable, "-m", "clonefleet", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass(frozen=True)
class Calibration:
    """How long one whole run of the command takes [s]: until its progress first moves, then the rest."""

    begin_s: float
    work_s: float

    @property
    def total_s(self) -> float:
        return self.begin_s + self.work_s


def calibrate(args: tuple[str | Path, ...], progress: Probe, timeout_s: float = 120,
              min_work_s: float = 0.02) -> Calibration:
    """Time one whole run of ``clonefleet ARGS`` (it must succeed)."""
    t0 = time.perf_counter()
    proc = start(*args)
    while progress() == 0 and proc.poll() is None:
        time.sleep(0.002)
    begin_s = time.perf_counter() - t0
    code = proc.wait(timeout=timeout_s)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    assert code == 0, err
    return Calibration(begin_s, max(time.perf_counter() - t0 - begin_s, min_work_s))


@dataclass(frozen=True)
class Killed:
    """One round: whether the process was still alive when killed, its exit code and error output."""

    alive: bool
    returncode: int
    stderr: str


def kill_at_a_random_moment(args: tuple[str | Path, ...], progress: Probe, rng: np.random.Generator,
                            calibration: Calibration, wait_for_progress_s: float = 30) -> Killed:
    """Start ``clonefleet ARGS`` and SIGKILL it at a moment drawn from ``rng`` (module docstring);
    the process is reaped before this returns."""
    before = progress()
    proc = start(*args)
    started = time.perf_counter()
    if rng.random() < 1 / 3:  # anywhere: start-up, cleanup of what a killed run left, the work
        time.sleep(rng.uniform(0, calibration.total_s))
    else:  # once this run has made progress: mid-work
        while progress() <= before and proc.poll() is None and time.perf_counter() - started < wait_for_progress_s:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, calibration.work_s))
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    return Killed(alive, proc.returncode, err)
