"""Real boot storms (``clonefleet storm``): qemu-storage-daemon NBD exports and fio on qcow2 clones, fio
with O_DIRECT on reflink clones of a loop-mounted xfs; a daemon or fio killed mid-storm, and the storm
itself stopped by SIGTERM. After every storm: no process of the storm left running (every process of
the machine is looked at in /proc), its private folder (socket, iologs, job file) gone, the clones intact.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import provision_fixtures as pf
import pytest

import clonefleet.provision as engine
from clonefleet.errors import UsageError
from clonefleet.presets import resolve_trace
from clonefleet.provision.manifest import Manifest
from clonefleet.sim.trace import WRITE
from clonefleet.sim.traceio import read_trace
from clonefleet.storage.qcow2 import check_image
from clonefleet.storm import StormRequest, run_storm
from clonefleet.storm.fio import jobs_done
from helpers import require_tool

xfs_dir = pf.xfs_dir  # a fixture
qcow2_gi = pf.qcow2_gi  # a fixture

pytestmark = pytest.mark.backend

BOOT_WRITES: dict[str, object] = {"bytes": "1 MiB", "extents": 16}
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short, private TMPDIR for the storm's temporary folder (a unix socket path has at most 107
    bytes), so the test can assert that the storm left nothing in it."""
    folder = Path(tempfile.mkdtemp(prefix="cfst-"))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    yield folder
    assert not list(folder.iterdir()), f"the storm left {sorted(p.name for p in folder.iterdir())} behind"
    folder.rmdir()


def storm_processes(*needles: str) -> list[str]:
    """Every process of the machine whose command line names one of ``needles`` (a fleet directory,
    a storm's temporary folder): pid and command."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if any(n in cmd for n in needles) and "pytest" not in cmd:
            found.append(f"{entry.name}: {cmd[:200]}")
    return found


def assert_nothing_left(m: Manifest, tmp: Path) -> None:
    assert storm_processes(str(m.dest), str(tmp)) == []
    assert list(tmp.iterdir()) == []  # no socket, iolog, job file or pid file
    for clone in sorted(m.dest.glob("vm-*")):
        if clone.suffix == ".qcow2":
            assert check_image(clone) is None, clone


@pytest.fixture(scope="module")
def qcow2_fleet(tmp_path_factory: pytest.TempPathFactory, qcow2_gi: pf.GoldenImage) -> Manifest:
    require_tool("fio", "qemu-storage-daemon")
    base = tmp_path_factory.mktemp("storm-qcow2")
    # boots that write 1 MiB in 16 extents (the preset scaled to this 32 MiB GI writes a single extent)
    m = pf.fleet_manifest(base, qcow2_gi.path, 8, method="snapshot", writes=BOOT_WRITES)
    engine.provision(m)
    return m


def test_qcow2_storm_of_8_linked_clones_measures_every_vm(qcow2_fleet: Manifest, private_tmp: Path) -> None:
    m = qcow2_fleet
    result = run_storm(m, StormRequest(ios_per_vm=1500, start_spread_s=0.3, seed=11, out=m.path.parent / "out"))
    assert [v.name for v in result.vms] == [f"vm-{i:04d}.qcow2" for i in range(1, 9)]
    for v in result.vms:
        assert v.ios == 1500 and v.writes > 0 and v.reads > 0
        assert 0 <= v.start_s <= 0.3
        assert v.boot_s > 0 and v.iops > 0
        assert 0 < v.latency_s[50.0] <= v.latency_s[95.0] <= v.latency_s[99.0]
        assert v.latency_samples >= v.ios - 8  # all but the IOs in flight when the iolog ends
    assert len({v.start_s for v in result.vms}) == 8  # staggered
    assert result.iops == pytest.approx(8 * 1500 / max(v.done_s for v in result.vms))
    # The storm's writes land in the clones: new clusters, counted by qemu-img map before and after.
    assert result.allocated_bytes is not None and result.allocated_bytes > 0
    assert all(v.allocated_bytes is not None and v.allocated_bytes > 0 for v in result.vms)
    saved = json.loads(Path(str(result.saved_to)).read_text())
    assert Path(str(result.saved_to)).parent == m.path.parent / "out"
    assert saved["fleet_figures"]["vms"] == 8 and saved["fleet_figures"]["ios"] == 12000
    assert saved["tools"]["fio"].startswith("fio-") and "qemu-storage-daemon" in saved["tools"]
    assert saved["machine"]["cores"] >= 1 and saved["machine"]["kernel"]
    assert "cache.direct=on" in saved["engine"]
    assert_nothing_left(m, private_tmp)


def test_storm_cli_json_and_table(qcow2_fleet: Manifest, private_tmp: Path,
                                  cli: Callable[..., object]) -> None:
    m = qcow2_fleet
    res = cli("storm", str(m.path), "--vms", "3", "--ios-per-vm", "400", "--seed", "12", "--json")
    assert res.code == 0, res.err  # type: ignore[attr-defined]
    data = json.loads(res.out)  # type: ignore[attr-defined]
    assert [v["name"] for v in data["vms"]] == ["vm-0001.qcow2", "vm-0002.qcow2", "vm-0003.qcow2"]
    assert Path(data["saved_to"]).parent == m.path.parent  # beside the manifest by default
    assert set(data["fleet_figures"]["latency_s"]) == {"p50", "p95", "p99"}
    res = cli("storm", str(m.path), "--vms", "2", "--ios-per-vm", "300", "--seed", "13", "--out",
              str(m.path.parent / "table"))
    assert res.code == 0, res.err  # type: ignore[attr-defined]
    assert "vm-0002.qcow2" in res.out and "IOPS" in res.out and "saved:" in res.out  # type: ignore[attr-defined]
    assert_nothing_left(m, private_tmp)


def test_the_shipped_debian_boot_replayed_by_8_clones_of_a_1_gib_gi(tmp_path: Path, private_tmp: Path) -> None:
    require_tool("fio", "qemu-storage-daemon")
    gi = pf.small_gi(tmp_path, size=1024 * pf.MiB, content=4 * pf.MiB)  # the capture's disk was 1 GiB
    m = pf.fleet_manifest(tmp_path, gi.path, 8, method="snapshot")
    engine.provision(m)
    result = run_storm(m, StormRequest(trace="debian-boot", start_spread_s=0.5, seed=2))
    assert result.workload["source"].endswith("debian-boot.csv.gz")
    # every VM replays the whole captured boot, as the shipped trace holds it
    shipped = read_trace(resolve_trace("debian-boot"))
    writes = int((shipped.op == WRITE).sum())
    assert {(v.ios, v.writes) for v in result.vms} == {(shipped.ios, writes)} and writes > 0
    assert all(v.boot_s > 0 for v in result.vms) and result.allocated_bytes and result.allocated_bytes > 0
    assert_nothing_left(m, private_tmp)


def test_storm_refuses_bad_input_in_one_line(qcow2_fleet: Manifest, private_tmp: Path,
                                             cli: Callable[..., object]) -> None:
    m = qcow2_fleet
    for args, words in [(["--trace", "debian-boot"], "virtual size"), (["--vms", "9"], "--vms"),
                        (["--start-spread", "-1"], "--start-spread"), (["--trace", str(m.path.parent / "none.csv")],
                                                                        "none.csv")]:
        res = cli("storm", str(m.path), *args)
        assert res.code == 2, (args, res)
        err = res.err.strip()  # type: ignore[attr-defined]
        assert words in err and "\n" not in err and "Traceback" not in err
    with pytest.raises(UsageError, match="virtual size"):
        run_storm(m, StormRequest(trace="debian-boot"))
    assert_nothing_left(m, private_tmp)


def children(parent: int) -> list[tuple[int, str]]:
    """(pid, command name) of every child process of ``parent``, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            close = stat.rindex(")")
            if int(stat[close + 2:].split()[1]) == parent:
                found.append((int(entry.name), stat[stat.index("(") + 1: close]))
    return found


def run_and_kill(m: Manifest, tmp: Path, victim: str, ios: int = 200_000) -> subprocess.CompletedProcess[str]:
    """Run ``clonefleet storm`` in its own process and, once its fio is replaying, kill ``victim``
    (``qemu-storage-daemon``, ``fio``: SIGKILL), send the storm SIGTERM (``storm``) or SIGKILL
    clonefleet itself (``clonefleet``)."""
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": f"{SRC}:{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "clonefleet", "storm", str(m.path), "--ios-per-vm", str(ios),
                             "--out", str(m.path.parent / "killed")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        pids: dict[str, int] = {}
        while time.monotonic() < deadline and proc.poll() is None:
            for pid, comm in children(proc.pid):
                pids["qemu-storage-daemon" if comm.startswith("qemu-sto") else comm] = pid
            # fio's status output says it runs its jobs; give it a moment past its start-up
            if "fio" in pids and any(p.name == "fio.out" and jobs_done(p.read_text(errors="replace")) is not None
                                     for p in tmp.glob("clonefleet-storm-*/fio.out")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.3)
        if victim == "storm":
            os.kill(proc.pid, signal.SIGTERM)
        elif victim == "clonefleet":
            os.kill(proc.pid, signal.SIGKILL)
        else:
            os.kill(pids[victim], signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["qemu-storage-daemon", "fio", "storm", "clonefleet"])
def test_a_storm_whose_daemon_or_fio_dies_stops_everything_in_one_line(
        tmp_path: Path, qcow2_gi: pf.GoldenImage, victim: str) -> None:
    require_tool("fio", "qemu-storage-daemon")
    m = pf.fleet_manifest(tmp_path, qcow2_gi.path, 4, method="snapshot")
    engine.provision(m)
    tmp = Path(tempfile.mkdtemp(prefix="cfst-"))
    try:
        done = run_and_kill(m, tmp, victim)
        err = done.stderr.strip()
        assert "\n" not in err and "Traceback" not in err, err
        if victim == "storm":
            assert done.returncode == 130 and "SIGTERM" in err
        elif victim == "clonefleet":
            # no handler runs: the daemon and fio die with it (parent-death signal), the watchdog of its
            # private folder removes the folder
            assert done.returncode == -signal.SIGKILL and err == ""
            deadline = time.monotonic() + 10
            while (list(tmp.iterdir()) or storm_processes(str(m.dest), str(tmp))) and time.monotonic() < deadline:
                time.sleep(0.1)
        else:
            assert done.returncode == 1
            assert err.startswith(f"clonefleet: error: {victim} (pid ") and "killed by SIGKILL mid-storm" in err
        assert not (m.path.parent / "killed").exists() or not list((m.path.parent / "killed").iterdir())
        assert_nothing_left(m, tmp)
    finally:
        tmp.rmdir() if tmp.exists() and not list(tmp.iterdir()) else None


def test_reflink_storm_of_8_clones_on_xfs(xfs_dir: Path, private_tmp: Path) -> None:
    require_tool("fio")
    base = Path(tempfile.mkdtemp(dir=xfs_dir))
    gi = pf.small_gi(base, fmt="raw")
    m = pf.fleet_manifest(base, gi.path, 8, backend="reflink", method="snapshot", writes=BOOT_WRITES)
    engine.provision(m)
    result = run_storm(m, StormRequest(ios_per_vm=1000, seed=5))
    assert len(result.vms) == 8 and result.backend == "reflink" and "direct=1" in result.engine
    for v in result.vms:
        assert v.ios == 1000 and v.boot_s > 0 and v.latency_s[50.0] > 0
    # The writes unshare blocks of the reflinked clones: the fleet holds more bytes than before.
    assert result.allocated_bytes is not None and result.allocated_bytes > 0
    assert_nothing_left(m, private_tmp)
