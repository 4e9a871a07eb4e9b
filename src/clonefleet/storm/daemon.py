"""One qemu-storage-daemon that serves a fleet's clones as NBD exports on a unix socket.

The whole graph is given on the daemon's command line (no QMP round trips):

- qcow2 clones (:class:`Export`): one read-only node per source (the GI, or each GI replica)
  that the linked clones read from, so all clones of one source share one node (one cache, one
  open file); per clone a ``file`` node with ``cache.direct=on`` (O_DIRECT: the host page cache
  does not answer for the storage) and a writable ``qcow2`` node on it, its ``backing`` set to
  its source's node (snapshot clones) or to null (thin and full copies hold their own data);
- RBD images (:class:`RbdExport`): per clone one node of QEMU's ``rbd`` driver (librbd, which
  reads a layered clone's parent itself), ``cache.direct=on`` (QEMU then turns librbd's client
  cache off: every IO reaches the OSDs), all through one librados client of the daemon;
- one NBD export per clone, named after the clone, on one unix socket.

The daemon writes its pid file once every node, export and the NBD server exist (QEMU documents
this order); :func:`wait_ready` waits for that file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

from clonefleet.storage.tools import ToolError, first_error_line

#: How long the daemon may take to open every image and start its NBD server.
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Export:
    """One clone served over NBD: its export name, file, and the source node it reads from (or None)."""

    name: str
    path: Path
    source: int | None  # index into the daemon's sources, None: no backing


@dataclass(frozen=True)
class RbdExport:
    """One RBD image served over NBD: its export name, pool and image."""

    name: str
    pool: str
    image: str


@dataclass(frozen=True)
class RbdAccess:
    """How the daemon's librados client reaches the cluster: a ceph.conf and the client's id (``admin``)."""

    conf: Path
    user: str


def _blockdev(spec: dict[str, object]) -> list[str]:
    return ["--blockdev", json.dumps(spec, separators=(",", ":"))]


def daemon_args(sources: Sequence[tuple[Path, str]], exports: Sequence[Export | RbdExport], socket: Path,
                pidfile: Path, rbd: RbdAccess | None = None) -> list[str]:
    """The qemu-storage-daemon command line (module docstring); ``sources`` are (path, format);
    ``rbd`` is needed by :class:`RbdExport` exports."""
    args = ["qemu-storage-daemon"]
    used = sorted({e.source for e in exports if isinstance(e, Export) and e.source is not None})
    for i in used:
        path, fmt = sources[i]
        args += _blockdev({"driver": "file", "node-name": f"src{i}-f", "filename": str(path),
                           "cache": {"direct": True}, "read-only": True})
        args += _blockdev({"driver": fmt, "node-name": f"src{i}", "file": f"src{i}-f", "read-only": True})
    for n, e in enumerate(exports):
        if isinstance(e, RbdExport):
            if rbd is None:
                raise ValueError("daemon_args: RBD exports need the cluster's access (rbd=RbdAccess(...))")
            args += _blockdev({"driver": "rbd", "node-name": f"c{n}", "pool": e.pool, "image": e.image,
                               "conf": str(rbd.conf), "user": rbd.user, "cache": {"direct": True}})
            continue
        args += _blockdev({"driver": "file", "node-name": f"c{n}-f", "filename": str(e.path),
                           "cache": {"direct": True}})
        args += _blockdev({"driver": "qcow2", "node-name": f"c{n}", "file": f"c{n}-f",
                           "backing": f"src{e.source}" if e.source is not None else None})
    args += ["--nbd-server", f"addr.type=unix,addr.path={socket},max-connections=0"]
    for n, e in enumerate(exports):
        args += ["--export", json.dumps({"type": "nbd", "id": f"e{n}", "node-name": f"c{n}", "name": e.name,
                                         "writable": True}, separators=(",", ":"))]
    args += ["--pidfile", str(pidfile)]
    return args


def nbd_uri(export: str, socket: Path) -> str:
    """The NBD URI fio's nbd engine connects to (libnbd syntax)."""
    return f"nbd+unix:///{export}?socket={socket}"


def wait_ready(proc: Popen[str], pidfile: Path, log: Path, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Wait until the daemon wrote its pid file (all exports up); one line if it exits or hangs first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if pidfile.exists() and pidfile.read_text(encoding="utf-8", errors="replace").strip():
            return
        code = proc.poll()
        if code is not None:
            text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
            raise ToolError(f"qemu-storage-daemon failed to start (exit {code}): {first_error_line(text)}")
        if time.monotonic() > deadline:
            raise ToolError(f"qemu-storage-daemon did not serve its exports within {timeout_s:g} s "
                            f"(pid {proc.pid}); it was stopped")
        time.sleep(0.02)
