"""Crash safety: SIGKILL the provisioner at random moments, at least 20 times, during a 300-clone
provision; after a rerun every clone passes ``qemu-img check``, the manifest, the journal and the
disk agree exactly, and the GI's checksum is unchanged.

The provisioner runs as a subprocess (``python -m clonefleet provision``). Kill moments are drawn
from a seeded generator: a third anywhere in a run (start-up included), the rest after the run has
written its first journal record, within the time a whole run's work takes (measured here, in a
calibration run). Only kills that land while the process is alive and the fleet is incomplete
count. After each kill, before any rerun, every file under a clone's final name must already be a
whole clone: a kill may leave temporaries and unjournaled clones, never a half-made clone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import provision_fixtures as pf
import pytest

import clonefleet.provision as engine
from clonefleet.backends import get_backend
from clonefleet.provision.goldimage import GoldenImage
from clonefleet.provision.journal import Journal
from clonefleet.storage.data import sha256_file
from helpers import require_tool
from killing import KILLS, MAX_ROUNDS, calibrate, kill_at_a_random_moment, start

qcow2_gi = pf.qcow2_gi  # a fixture

pytestmark = [pytest.mark.backend, pytest.mark.slow]

CLONES = 300


def journal_records(fleet: Path) -> int:
    return Journal.read(fleet).records if (fleet / ".clonefleet").is_dir() else 0


def qemu_check(path: Path) -> tuple[Path, int, str]:
    r = subprocess.run(["qemu-img", "check", "-q", str(path)], capture_output=True, text=True)
    return path, r.returncode, r.stderr.strip()


def final_clone_files(fleet: Path) -> list[Path]:
    return sorted(p for p in fleet.glob("vm-*.qcow2"))


def tools_still_running(fleet: Path) -> list[int]:
    """Pids of processes (qemu-img a killed provisioner started) whose command line names ``fleet``."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if str(fleet).encode() in cmdline and b"pytest" not in cmdline:
                pids.append(int(entry.name))
    return pids


def wait_for_orphans(fleet: Path) -> None:
    deadline = time.monotonic() + 30
    while tools_still_running(fleet):
        assert time.monotonic() < deadline, "a killed provisioner's tools did not finish"
        time.sleep(0.01)


@pytest.mark.parametrize(("method", "clones", "kills_wanted"), [("snapshot", CLONES, KILLS), ("thin", 60, 6)])
def test_sigkill_at_random_moments_then_rerun_finishes_exactly(tmp_path: Path, qcow2_gi: GoldenImage,
                                                               method: str, clones: int, kills_wanted: int) -> None:
    require_tool("qemu-img")
    rng = np.random.default_rng(20261126)
    m = pf.fleet_manifest(tmp_path, qcow2_gi.path, clones, method=method, g=2 if method == "snapshot" else 1,
                          workers=2)
    backend = get_backend("qcow2")

    provision = ("provision", m.path)
    calibration = calibrate(provision, lambda: journal_records(m.dest))
    engine.destroy(m)

    kills = rounds = 0
    progress_at_kill: list[int] = []
    completed_runs = 0
    while kills < kills_wanted and rounds < MAX_ROUNDS:
        rounds += 1
        alive = kill_at_a_random_moment(provision, lambda: journal_records(m.dest), rng, calibration).alive
        wait_for_orphans(m.dest)
        plan = engine.make_plan(m, backend)
        complete = not (plan.create or plan.adopt or plan.temporaries)
        if alive and not complete:
            kills += 1
            made = clones - len(plan.create)
            progress_at_kill.append(made)
        # the invariant after any kill: a final name holds a whole clone, or nothing
        files = final_clone_files(m.dest) if m.dest.is_dir() else []
        for f in files:
            task = next(t for t in plan.tasks if t.name == f.name)
            assert backend.status(plan.recipe, f, task.source) is None, f
        newest = sorted(files, key=lambda p: p.stat().st_mtime_ns)[-3:]
        for path, code, err in map(qemu_check, newest):
            assert code == 0, f"{path}: {err}"
        if complete:
            completed_runs += 1
            engine.destroy(m)  # start over, so later kills land in an unfinished provision
    assert kills >= kills_wanted, f"only {kills} kills landed mid-provision in {rounds} rounds"

    # the rerun finishes the job
    result = subprocess.run([sys.executable, "-m", "clonefleet", "provision", str(m.path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    expected = {t for t in m.clone_names()}
    on_disk = {p.name.removesuffix(".qcow2") for p in final_clone_files(m.dest)}
    assert on_disk == expected
    replicas = ["golden"] if method == "snapshot" else []
    assert sorted(os.listdir(m.dest)) == sorted([*(f"{n}.qcow2" for n in expected), ".clonefleet", *replicas])
    if replicas:
        assert sorted(os.listdir(m.dest / "golden")) == ["gi-r2.qcow2"]
    assert {n.removesuffix(".qcow2") for n in Journal.read(m.dest).present()} == expected
    with ThreadPoolExecutor(max_workers=4) as pool:
        bad = [(p, e) for p, code, e in pool.map(qemu_check, final_clone_files(m.dest)) if code != 0]
    assert not bad
    assert engine.status(m).in_sync
    assert sha256_file(qcow2_gi.path) == qcow2_gi.sha256
    print(f"{kills} kills mid-provision in {rounds} rounds ({completed_runs} runs finished before their "
          f"kill); clones on disk at each kill: {progress_at_kill}; calibration run {calibration.total_s:.2f} s")
    # most kills must land while clones are being made, not before the first or after the last
    assert sum(0 < n < clones for n in progress_at_kill) >= kills_wanted // 2, progress_at_kill


def test_sigkill_during_destroy_then_rerun_leaves_nothing(tmp_path: Path, qcow2_gi: GoldenImage) -> None:
    require_tool("qemu-img")
    rng = np.random.default_rng(7)
    m = pf.fleet_manifest(tmp_path, qcow2_gi.path, CLONES, g=2, workers=2)
    engine.provision(m)
    kills = 0
    for _ in range(60):
        if kills >= 5:
            break
        if not m.dest.exists():  # a destroy finished before its kill: bring the fleet back
            engine.provision(m)
        before = journal_records(m.dest)
        proc = subprocess.Popen([sys.executable, "-m", "clonefleet", "destroy", str(m.path), "--yes"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while journal_records(m.dest) <= before and proc.poll() is None:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.02))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        if m.dest.exists():  # what is left still holds whole clones only
            for f in final_clone_files(m.dest)[:5]:
                assert qemu_check(f)[1] == 0
            if rng.random() < 0.3:  # sometimes the fleet is provisioned again before the next destroy
                engine.provision(m)
    print(f"{kills} kills during destroy")
    assert kills >= 5
    r = subprocess.run([sys.executable, "-m", "clonefleet", "destroy", str(m.path), "--yes"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not m.dest.exists()
    assert sha256_file(qcow2_gi.path) == qcow2_gi.sha256


def test_sigkill_during_refresh_leaves_every_clone_old_or_fresh_and_a_rerun_finishes(tmp_path: Path,
                                                                                   qcow2_gi: GoldenImage) -> None:
    """Kill ``clonefleet refresh`` at random moments: each clone is then the old one, untouched (same inode,
    size and mtime), or a whole fresh clone (no data of its own), never missing; nothing else in the fleet
    directory is touched; a rerun refreshes every clone."""
    require_tool("qemu-img", "qemu-io")
    rng = np.random.default_rng(13)
    clones, kills_wanted = 30, 8
    m = pf.fleet_manifest(tmp_path, qcow2_gi.path, clones, workers=2)
    backend = get_backend("qcow2")
    engine.provision(m)
    foreign = m.dest / "notes.txt"
    foreign.write_text("not clonefleet's")

    def refresh() -> subprocess.Popen[bytes]:
        return start("refresh", m.path, "--yes")

    def stats() -> dict[str, tuple[int, int, int]]:
        return {f.name: (f.stat().st_ino, f.stat().st_size, f.stat().st_mtime_ns) for f in final_clone_files(m.dest)}

    def clone_records() -> int:
        """The journal's records of clones made anew: a 'remade' and a 'created' per clone refreshed (the
        run's other records, such as those voiding a killed run's 'remade', are not counted)."""
        text = (m.dest / ".clonefleet" / "journal.jsonl").read_bytes()
        return text.count(b'"op":"remade"') + text.count(b'"op":"created"')

    def reached(proc: subprocess.Popen[bytes], records: int) -> None:
        """Wait until the journal holds ``records`` records of clones made anew (or the run ended)."""
        while clone_records() < records and proc.poll() is None:
            time.sleep(0.0005)

    engine.apply_writes(m)
    recipe = engine.make_plan(m, backend).recipe
    kills = mixed = adopting = 0
    finished = True
    for _ in range(MAX_ROUNDS):
        if kills >= kills_wanted:
            break
        if finished:
            engine.apply_writes(m)  # every clone old again: it holds its boot writes
        old = stats()
        proc = refresh()
        # a kill after a random number of the run's records (a remade and a created one per clone): anywhere
        # from its start to its end, between a clone's rename and its record included
        reached(proc, clone_records() + int(rng.integers(1, 2 * clones + 2)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        if proc.stderr:
            proc.stderr.close()
        wait_for_orphans(m.dest)
        now = stats()
        assert set(now) == set(old)  # never missing
        renewed = [name for name in now if now[name] != old[name]]
        usage = backend.measure(recipe, [m.dest / n for n in renewed], [qcow2_gi.path])
        assert all(c.own_data_bytes == 0 for c in usage.clones), renewed  # a fresh clone, whole
        for name in renewed:
            assert backend.status(recipe, m.dest / name, qcow2_gi.path) is None
        mixed += 0 < len(renewed) < clones
        adopting += bool(engine.make_plan(m, backend).adopt)  # killed between a rename and its record
        assert foreign.read_text() == "not clonefleet's"
        finished = bool(rng.random() < 0.5)  # else the next round's refresh runs on what this kill left
        if finished:
            assert refresh().wait(timeout=120) == 0
    r = subprocess.run([sys.executable, "-m", "clonefleet", "refresh", str(m.path), "--yes"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    state = Journal.read(m.dest)
    assert not state.written() and {n.removesuffix(".qcow2") for n in state.present()} == set(m.clone_names())
    assert engine.status(m).in_sync
    print(f"{kills} kills during refresh, {mixed} of them with old and fresh clones side by side, {adopting} "
          "with a renamed clone to adopt")
    assert kills >= kills_wanted and mixed >= kills_wanted // 2  # most kills land mid-refresh
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert not [(p, e) for p, code, e in pool.map(qemu_check, final_clone_files(m.dest)) if code != 0]
    assert sorted(os.listdir(m.dest)) == sorted([*(f"{n}.qcow2" for n in m.clone_names()), ".clonefleet", "notes.txt"])
    assert sha256_file(qcow2_gi.path) == qcow2_gi.sha256
