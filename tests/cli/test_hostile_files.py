"""A preset, a manifest or a trace that is a FIFO, a device or a directory is refused at once.

Each case runs in a subprocess with a timeout: a regression (a read that blocks on the FIFO
or never ends on /dev/zero) fails the test instead of hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
TIMEOUT_S = 60  # the refusal takes milliseconds; the import of the CLI takes a few seconds on a busy machine


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI (``-m clonefleet``) or, when the first argument is ``-c``, a Python snippet."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("CLONEFLEET_DEBUG", None)
    command = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "clonefleet", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.toml"
    os.mkfifo(path)
    return path


def _assert_refused(r: subprocess.CompletedProcess[str], reason: str) -> None:
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("clonefleet: error: "), r.stderr
    assert reason in r.stderr and "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("flag", ["--fleet", "--array", "--functions"])
def test_a_preset_that_is_a_fifo_is_refused(fifo: Path, flag: str) -> None:
    args = {"--fleet": "desktop-win7", "--array": "midrange-2012", "--functions": "thin"}
    args[flag] = str(fifo)
    r = run("plan", *(x for pair in args.items() for x in pair))
    _assert_refused(r, f"'{fifo}': is a FIFO (named pipe); give the path of a regular file")


def test_a_preset_that_is_a_device_or_a_directory_is_refused(tmp_path: Path) -> None:
    _assert_refused(run("plan", "--fleet", "desktop-win7", "--array", "/dev/zero"),
                    "array file '/dev/zero': is a device")
    _assert_refused(run("plan", "--fleet", str(tmp_path), "--array", "midrange-2012"),
                    f"fleet file '{tmp_path}': is a directory")


def test_a_manifest_that_is_a_fifo_a_device_or_a_directory_is_refused(fifo: Path, tmp_path: Path) -> None:
    _assert_refused(run("status", str(fifo)), "is a FIFO (named pipe)")
    _assert_refused(run("status", "/dev/zero"), "manifest '/dev/zero': is a device")
    _assert_refused(run("status", str(tmp_path)), "is a directory")


TRACE = """
import sys
from clonefleet.errors import UsageError
from clonefleet.sim.traceio import read_trace
try:
    read_trace(sys.argv[1], sys.argv[2])
except UsageError as exc:
    print(exc.message)
    raise SystemExit(2)
"""


@pytest.mark.parametrize("fmt", ["auto", "fio", "blkparse", "csv"])
def test_a_trace_that_is_a_fifo_or_a_device_is_refused(fifo: Path, fmt: str) -> None:
    for path, reason in ((fifo, "is a FIFO (named pipe)"), (Path("/dev/zero"), "is a device")):
        r = run("-c", TRACE, str(path), fmt)
        assert r.returncode == 2 and f"trace '{path}': {reason}" in r.stdout, (r.stdout, r.stderr)


def test_a_fifo_in_a_folder_of_iologs_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "vm-0.iolog")
    r = run("-c", TRACE, str(tmp_path), "auto")
    assert r.returncode == 2 and "is a FIFO (named pipe)" in r.stdout, (r.stdout, r.stderr)
