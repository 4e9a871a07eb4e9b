"""The test suite's Ceph cluster: one single-node cluster (clonefleet.storage.devceph) for the whole
session, started by the first test that asks for it (the ``ceph_cluster`` fixture of tests/conftest.py)
and stopped, by the pids it recorded, when the session ends: after failures, on Ctrl-C and on
SIGTERM (turned into KeyboardInterrupt so pytest finalises), and by the kernel if pytest is killed
(the daemons are started with PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from clonefleet.storage import devceph
from helpers import unavailable

TOOLS = ("ceph-mon", "ceph-mgr", "ceph-osd", "ceph", "monmaptool", "rbd")


@dataclass(frozen=True)
class CephCluster:
    directory: Path
    conf: Path
    pool: str

    def rbd(self, *args: str, pool: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The rbd command line tool against this cluster (to check clonefleet's work independently)."""
        return subprocess.run(["rbd", "-c", str(self.conf), "-p", pool or self.pool, *args], capture_output=True,
                              text=True, check=check, timeout=60)

    def ls(self, pool: str | None = None) -> set[str]:
        return set(json.loads(self.rbd("ls", "--format", "json", pool=pool).stdout))

    def children(self, spec: str) -> set[str]:
        out = json.loads(self.rbd("children", spec, "--format", "json").stdout)
        return {f"{c['pool']}/{c['image']}" for c in out}

    def daemon_pids(self) -> list[int]:
        return [d.pid for d in devceph.status(self.directory).daemons]


def bindings_or_unavailable() -> None:
    try:
        import rados  # noqa: F401
        import rbd  # noqa: F401
    except ImportError:
        unavailable("the Python bindings rados and rbd are not importable (apt-get install python3-rados "
                    "python3-rbd; make setup links them into the venv)")


def session_cluster() -> Iterator[CephCluster]:
    """Start a cluster in a new temporary folder; stop exactly its daemons and remove the folder after."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        unavailable(f"missing Ceph tool(s): {', '.join(missing)} (make setup installs them)")
    bindings_or_unavailable()
    directory = Path(tempfile.mkdtemp(prefix="cf-ceph-"))
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt("SIGTERM")  # pytest then runs the finalisers: the cluster stops

    signal.signal(signal.SIGTERM, on_term)
    try:
        devceph.start(directory, block_bytes=16 << 30, die_with_parent=True)
        yield CephCluster(directory, directory / devceph.CONF_NAME, devceph.DEFAULT_POOL)
    finally:
        devceph.stop(directory)
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(directory, ignore_errors=True)
