"""A single-node Ceph cluster for development and tests: one mon, one mgr, one OSD (BlueStore on a
file), all on loopback, from Debian's packages (ceph-mon, ceph-mgr, ceph-osd, ceph-common).

Everything lives in one folder (``--dir``): ``ceph.conf``, the daemons' data, the OSD's block file
(outside the OSD data folder: BlueStore refuses a block file inside it), logs, and ``daemons.json``,
the pid of every daemon this module started. Daemons run in the foreground of their own session
(``-f``), so the pid recorded is the daemon's own; :func:`stop` stops exactly those pids (SIGTERM,
then SIGKILL after :data:`STOP_GRACE_S`), after checking that each pid still runs a Ceph daemon
with this cluster's ``ceph.conf`` on its command line. Nothing is ever stopped by name.

The cluster has no authentication (``auth * required = none``), pool size 1, and a pool ``rbd``
ready for images. Clients use its ``ceph.conf``; nothing else here is special to loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from clonefleet.errors import ClonefleetError, UsageError
from clonefleet.storage.tools import ToolError, run_tool

DAEMONS_FILE = "daemons.json"
CONF_NAME = "ceph.conf"
DEFAULT_POOL = "rbd"
#: Seconds a daemon is given to stop after SIGTERM before SIGKILL.
STOP_GRACE_S = 15.0
#: Seconds the cluster is given to come up (mon quorum, OSD up, pool active).
START_TIMEOUT_S = 90.0
PACKAGES = "ceph-mon ceph-mgr ceph-osd ceph-common"
_TOOLS = ("ceph-mon", "ceph-mgr", "ceph-osd", "ceph", "monmaptool", "rbd")


class DevCephError(ClonefleetError):
    """The development cluster could not start or stop."""

    exit_code = 1


@dataclass(frozen=True)
class Daemon:
    name: str  # mon.a, mgr.x, osd.0
    pid: int
    running: bool


@dataclass(frozen=True)
class ClusterStatus:
    directory: Path
    conf: Path
    daemons: tuple[Daemon, ...]

    @property
    def running(self) -> bool:
        return bool(self.daemons) and all(d.running for d in self.daemons)

    def to_dict(self) -> dict[str, object]:
        return {"dir": str(self.directory), "conf": str(self.conf), "running": self.running,
                "daemons": [{"name": d.name, "pid": d.pid, "running": d.running} for d in self.daemons]}


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def conf_text(directory: Path, fsid: str, port: int, block_bytes: int) -> str:
    d = directory
    return f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{port}
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
mon data = {d}/mon/$name
mgr data = {d}/mgr/$name
osd data = {d}/osd/$name
osd objectstore = bluestore
bluestore block path = {d}/block/$name.block
bluestore block create = true
bluestore block size = {block_bytes}
bluestore cache autotune = false
bluestore cache size = 268435456
osd memory target = 939524096
rbd default clone format = 2
mgr initial modules =
"""


def _conf(directory: Path) -> Path:
    return directory / CONF_NAME


def _read_daemons(directory: Path) -> dict[str, int]:
    try:
        data = json.loads((directory / DAEMONS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int)}


def _write_daemons(directory: Path, daemons: dict[str, int]) -> None:
    tmp = directory / f".{DAEMONS_FILE}.tmp"
    tmp.write_text(json.dumps(daemons, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, directory / DAEMONS_FILE)


def _is_ours(pid: int, conf: Path) -> bool:
    """The pid runs a Ceph daemon of the cluster whose ``ceph.conf`` is ``conf`` (not a reused pid)."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and bool(words) and Path(os.fsdecode(words[0])).name.startswith("ceph-") \
        and os.fsencode(str(conf)) in words


def status(directory: Path) -> ClusterStatus:
    directory = directory.absolute()
    conf = _conf(directory)
    daemons = tuple(Daemon(name, pid, _is_ours(pid, conf)) for name, pid in _read_daemons(directory).items())
    return ClusterStatus(directory, conf, daemons)


def _ceph(conf: Path, *args: str, timeout_s: float = 30.0) -> str:
    return run_tool(["ceph", "-c", str(conf), "--connect-timeout", "10", *args], timeout_s=timeout_s)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it dies (Linux prctl)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def start_daemon(directory: Path, name: str, die_with_parent: bool = False) -> int:
    """Start one daemon (``mon.a``, ``mgr.x``, ``osd.0``) in the foreground of its own session; record
    its pid; return it. ``die_with_parent`` (tests): the kernel stops it if this process dies, even by
    SIGKILL, so a killed test run leaves no daemon behind."""
    directory = directory.absolute()
    conf = _conf(directory)
    kind, _, ident = name.partition(".")
    log = open(directory / "log" / f"{name}.out", "ab")  # noqa: SIM115  (handed to the daemon)
    try:
        proc = subprocess.Popen([f"ceph-{kind}", "-f", "-c", str(conf), "-i", ident], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent if die_with_parent else None)
    finally:
        log.close()
    daemons = _read_daemons(directory)
    daemons[name] = proc.pid
    _write_daemons(directory, daemons)
    return proc.pid


def stop_daemon(directory: Path, name: str, sig: int = signal.SIGTERM) -> bool:
    """Stop one daemon this module started, by its recorded pid; True when it was running."""
    directory = directory.absolute()
    conf = _conf(directory)
    daemons = _read_daemons(directory)
    pid = daemons.get(name)
    was_running = pid is not None and _is_ours(pid, conf)
    if pid is not None and was_running:
        os.kill(pid, sig)
        deadline = time.monotonic() + STOP_GRACE_S
        while _is_ours(pid, conf) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_ours(pid, conf):
            os.kill(pid, signal.SIGKILL)
            while _is_ours(pid, conf):
                time.sleep(0.02)
    _reap(pid)
    daemons.pop(name, None)
    _write_daemons(directory, daemons)
    return was_running


def _reap(pid: int | None) -> None:
    """Reap a daemon this very process started (a child), so no zombie stays behind: its command line
    empties while it exits, before it can be reaped, so wait for that (bounded)."""
    if pid is None:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.02)


def stop(directory: Path) -> list[str]:
    """Stop every daemon of the cluster in ``directory`` (OSD first, then mgr, then mon); the names
    of those that were running."""
    directory = directory.absolute()
    order = {"osd": 0, "mgr": 1, "mon": 2}
    stopped = []
    for name in sorted(_read_daemons(directory), key=lambda n: order.get(n.split(".")[0], 3)):
        if stop_daemon(directory, name):
            stopped.append(name)
    return stopped


def wait_osd_up(conf: Path, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            stat = json.loads(_ceph(conf, "osd", "stat", "--format", "json"))
            if int(stat.get("num_up_osds", 0)) >= 1 and int(stat.get("num_in_osds", 0)) >= 1:
                return
        except (ToolError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise DevCephError(f"the OSD did not come up within {timeout_s:g} s; see {conf.parent}/log")
        time.sleep(0.2)


def start(directory: Path, port: int | None = None, block_bytes: int = 20 << 30,
          pool: str = DEFAULT_POOL, die_with_parent: bool = False) -> ClusterStatus:
    """Create (first time) and start the cluster in ``directory``; a running one is left as it is.
    ``die_with_parent``: see :func:`start_daemon`."""
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        raise UsageError(f"dev-ceph needs {', '.join(missing)}: apt-get install --no-install-recommends "
                         f"{PACKAGES} (scripts/setup.sh does)")
    directory = directory.absolute()
    now = status(directory)
    if now.running:
        return now
    if now.daemons:  # some died: stop the rest, start them all again
        stop(directory)
    conf = _conf(directory)
    fresh = not conf.exists()
    try:
        if fresh:
            directory.mkdir(parents=True, exist_ok=True)
            for sub in ("run", "log", "mon", "mgr", "osd", "block"):
                (directory / sub).mkdir(exist_ok=True)
            fsid = str(uuid.uuid4())
            port = port or free_port()
            conf.write_text(conf_text(directory, fsid, port, block_bytes), encoding="utf-8")
            monmap = directory / "monmap"
            run_tool(["monmaptool", "--create", "--clobber", "--fsid", fsid, "--addv", "a",
                      f"[v2:127.0.0.1:{port}]", str(monmap)])
            run_tool(["ceph-mon", "-c", str(conf), "--mkfs", "-i", "a", "--monmap", str(monmap)])
            (directory / "mgr" / "mgr.x").mkdir(exist_ok=True)
        start_daemon(directory, "mon.a", die_with_parent)
        start_daemon(directory, "mgr.x", die_with_parent)
        if fresh:
            osd_uuid = str(uuid.uuid4())
            osd_id = _ceph(conf, "osd", "new", osd_uuid).strip()
            if osd_id != "0":
                raise DevCephError(f"ceph osd new gave id {osd_id!r}, expected 0")
            (directory / "osd" / "osd.0").mkdir(exist_ok=True)
            run_tool(["ceph-osd", "-c", str(conf), "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], timeout_s=120)
            _ceph(conf, "osd", "crush", "add-bucket", "localhost", "host")
            _ceph(conf, "osd", "crush", "move", "localhost", "root=default")
            _ceph(conf, "osd", "crush", "add", "osd.0", "1.0", "host=localhost")
        start_daemon(directory, "osd.0", die_with_parent)
        wait_osd_up(conf)
        if fresh:
            _ceph(conf, "osd", "pool", "create", pool, "16")
            _ceph(conf, "osd", "pool", "set", pool, "size", "1", "--yes-i-really-mean-it")
            run_tool(["rbd", "-c", str(conf), "pool", "init", pool], timeout_s=120)
    except BaseException:
        stop(directory)
        raise
    return status(directory)


def create_pool(conf: Path, pool: str) -> None:
    """A new replicated RBD pool of size 1 (for GI replicas in separate pools)."""
    _ceph(conf, "osd", "pool", "create", pool, "8")
    _ceph(conf, "osd", "pool", "set", pool, "size", "1", "--yes-i-really-mean-it")
    run_tool(["rbd", "-c", str(conf), "pool", "init", pool], timeout_s=120)
