"""A fleet's life measured, not only modelled (issue 13): days of daily writes into real clones, their
capacity against the growth model, and refresh.

The fleet preset here is made for the check (:func:`life_preset`): a 64 MiB disk, so the 32 MiB GI
scales it by 1/2, whose daily writes are far from saturating their span after 5 days at 64 KiB
clusters (Eq. G1: about half of it), so that growth is most of C(5) and a wrong growth shows. The
scaled figures the test holds the measurement against are worked out here by hand from the preset
(:data:`SCALED`), not taken from the code under test:

- boot: W = 1 MiB in n = 8 extents over R = 8 MiB, the last 8 MiB of the disk;
- daily: W_day = 512 KiB in n_day = 20 extents over R_day = 12 MiB, just below the boot span;
- pagefile: P = 2 MiB, one extent, below the daily span, written with the boot writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import provision_fixtures as pf
import pytest

import clonefleet.provision as engine
from clonefleet.model import allocated_bytes_per_clone
from clonefleet.model.growth import clone_data_bytes, grown_bytes_per_clone
from clonefleet.provision.capacity import CapacityReport
from clonefleet.provision.goldimage import GoldenImage
from clonefleet.provision.journal import Journal
from clonefleet.provision.manifest import Manifest, write_manifest
from clonefleet.storage.data import sha256_file
from clonefleet.storage.paths import path_identity, same_file
from helpers import require_tool
from killing import MAX_ROUNDS, calibrate, kill_at_a_random_moment

qcow2_gi = pf.qcow2_gi  # a fixture
xfs_dir = pf.xfs_dir  # a fixture

pytestmark = [pytest.mark.backend, pytest.mark.slow]

MiB = 1024**2
KiB = 1024
TOLERANCE = 0.15
DAYS = 5
#: The preset's figures scaled by G_real / G_preset = 32 MiB / 64 MiB (module docstring).
SCALED = {"W": 1 * MiB, "n": 8, "R": 8 * MiB, "W_day": 512 * KiB, "n_day": 20, "R_day": 12 * MiB, "P": 2 * MiB,
          "G": 32 * MiB}


def life_preset(dir_: Path) -> Path:
    figures = {"boot_window": "30 s", "boot_ios": 6000, "read_fraction": 0.8, "gi_size": "64 MiB",
               "gi_used": "8 MiB", "boot_write_bytes": "2 MiB", "boot_write_extents": 16, "boot_write_span": "16 MiB",
               "boot_read_span": "8 MiB", "read_io_size": "16 KiB", "queue_depth": 4, "daily_write_bytes": "1 MiB",
               "daily_write_extents": 40, "daily_write_span": "24 MiB", "swap_size": "4 MiB"}
    lines = ['[preset]', 'kind = "fleet"', 'name = "life-test"', 'description = "the growth check of issue 13"']
    for key, value in figures.items():
        lines += ["", f"[{key}]", f"value = {json.dumps(value)}", 'assumption = "made for the test"']
    path = dir_ / "life-test.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def life_manifest(dir_: Path, gi: Path, count: int, backend: str = "qcow2", workers: int = 2) -> Manifest:
    return write_manifest(dir_ / "fleet.toml", {
        "fleet": {"name": "life", "count": count, "dest": "clones", "preset": str(life_preset(dir_))},
        "golden_image": {"path": str(gi), "sha256": sha256_file(gi), "bytes": gi.stat().st_size},
        "clones": {"backend": backend, "method": "snapshot", "golden_images": 1, "workers": workers},
        "writes": {"seed": 5},
    }, force=True)


def expected_data_bytes(days: int, unit: int) -> float:
    """Eq. G2 on the scaled figures: min(C_boot + C_day(days) + P_in, G), P_in in whole units."""
    s = SCALED
    boot = allocated_bytes_per_clone(s["W"], s["n"], s["R"], unit)
    grown = grown_bytes_per_clone(days, s["W_day"], s["n_day"], s["R_day"], unit)
    return float(clone_data_bytes(boot, grown, np.ceil(s["P"] / unit) * unit, s["G"]))


def own_data(report: CapacityReport) -> float:
    return float(np.mean([c["own_data_bytes"] for c in report.per_clone]))  # type: ignore[call-overload]


def clonefleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clonefleet", *args], capture_output=True, text=True, timeout=300)


def test_fifty_qcow2_clones_after_five_days_measure_within_15_percent_of_the_growth_model(
        tmp_path: Path, qcow2_gi: GoldenImage) -> None:
    require_tool("qemu-img", "qemu-io")
    gi_mtime = qcow2_gi.path.stat().st_mtime_ns
    m = life_manifest(tmp_path, qcow2_gi.path, 50)
    engine.provision(m)
    engine.apply_writes(m)
    day0 = engine.capacity(m)
    r = clonefleet("writes", str(m.path), "--days", str(DAYS), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    days = out["days"]
    assert (days["target"], days["clone_days_written"], days["age_min"], days["age_max"]) == (DAYS, 50 * DAYS, DAYS,
                                                                                              DAYS)
    assert out["footprint"]["daily_span_bytes"] == SCALED["R_day"] and out["footprint"]["swap_bytes"] == SCALED["P"]
    day5 = engine.capacity(m)
    unit = 64 * KiB
    measured0, measured5 = own_data(day0), own_data(day5)
    model0, model5 = expected_data_bytes(0, unit), expected_data_bytes(DAYS, unit)
    print(f"50 qcow2 clones: C measured {measured0:.0f} -> {measured5:.0f} bytes after {DAYS} days, model (Eq. G2) "
          f"{model0:.0f} -> {model5:.0f}: ratio {measured5 / model5:.4f}; consumed per clone "
          f"{day5.measured_per_clone_bytes:.0f} vs capacity's model {day5.model_per_clone_bytes:.0f} "
          f"({day5.per_clone_ratio:.4f}); total {day5.total_ratio:.4f}")
    assert abs(measured5 / model5 - 1) <= TOLERANCE
    assert abs(measured0 / model0 - 1) <= TOLERANCE
    assert measured5 > 2 * measured0  # growth is most of C(5): a wrong growth would show
    assert (day5.age_days_min, day5.age_days_max, day0.age_days_max) == (DAYS, DAYS, 0)
    assert abs(day5.per_clone_ratio - 1) <= TOLERANCE and abs(day5.total_ratio - 1) <= TOLERANCE
    # capacity's model is the same Eq. G2: its C (boot and growth) plus the pagefile
    assert day5.model_new_bytes + SCALED["P"] == pytest.approx(model5, rel=1e-9)
    # rerun: nothing more is written, the clones are as they were
    again = engine.apply_writes(m, days=DAYS)
    assert (again.written_now, again.clone_days_written) == (0, 0)
    assert [c["consumed_bytes"] for c in engine.capacity(m).per_clone] == [c["consumed_bytes"] for c in day5.per_clone]
    assert sha256_file(qcow2_gi.path) == qcow2_gi.sha256 and qcow2_gi.path.stat().st_mtime_ns == gi_mtime


def test_reflink_clones_after_five_days_measure_within_15_percent(xfs_dir: Path) -> None:
    base = Path(tempfile.mkdtemp(dir=xfs_dir))
    gi = pf.small_gi(base, fmt="raw")
    m = life_manifest(base, gi.path, 8, backend="reflink")
    engine.provision(m)
    engine.apply_writes(m)
    day0 = engine.capacity(m)
    result = engine.apply_writes(m, days=DAYS)
    assert result.clone_days_written == 8 * DAYS
    day5 = engine.capacity(m)
    unit = int(day5.unit_bytes)
    measured0, measured5 = own_data(day0), own_data(day5)
    model5 = expected_data_bytes(DAYS, unit)
    print(f"8 reflink clones: C measured {measured0:.0f} -> {measured5:.0f} bytes, model {model5:.0f}: ratio "
          f"{measured5 / model5:.4f}; per clone {day5.per_clone_ratio:.4f}")
    assert abs(measured5 / model5 - 1) <= TOLERANCE
    assert abs(day5.per_clone_ratio - 1) <= TOLERANCE
    assert measured5 > 1.5 * measured0
    refreshed = engine.refresh(m)
    assert len(refreshed.refreshed) == 8
    after = engine.capacity(m)
    assert all(c["own_data_bytes"] == 0 for c in after.per_clone) and after.age_days_max == 0
    assert sha256_file(gi.path) == gi.sha256
    engine.destroy(m)


def test_refresh_makes_clones_anew_resets_their_age_and_never_touches_the_gi(tmp_path: Path,
                                                                             qcow2_gi: GoldenImage) -> None:
    require_tool("qemu-img", "qemu-io")
    gi_mtime = qcow2_gi.path.stat().st_mtime_ns
    m = life_manifest(tmp_path, qcow2_gi.path, 6)
    engine.provision(m)
    fresh = engine.capacity(m).measured_per_clone_bytes
    engine.apply_writes(m)
    booted = engine.capacity(m)
    engine.apply_writes(m, days=3)
    assert engine.status(m).age_days_max == 3
    names = [p.name for p in m.dest.glob("vm-*")]
    (m.dest / "notes.txt").write_text("not clonefleet's")

    # a subset first: the others keep their writes and their age
    one = engine.refresh(m, clones=["vm-0001"])
    assert one.refreshed == ("vm-0001.qcow2",)
    state = Journal.read(m.dest)
    assert state.age_of("vm-0001.qcow2") == 0 and state.age_of("vm-0002.qcow2") == 3
    assert engine.refresh(m, older_than_days=3).refreshed == ()

    result = engine.refresh(m)
    assert len(result.refreshed) == 6
    after = engine.capacity(m)
    state = Journal.read(m.dest)
    assert {state.age_of(n) for n in names} == {0} and not state.written()
    assert not after.writes_applied and after.age_days_max == 0
    assert after.measured_per_clone_bytes == pytest.approx(fresh, rel=TOLERANCE)
    assert all(c["own_data_bytes"] == 0 for c in after.per_clone)  # made anew: none of the writes is left
    engine.apply_writes(m)  # the boot again: back to the boot footprint
    assert engine.capacity(m).measured_per_clone_bytes == pytest.approx(booted.measured_per_clone_bytes,
                                                                        rel=TOLERANCE)
    assert engine.status(m).in_sync and engine.status(m).age_days_max == 0
    assert (m.dest / "notes.txt").read_text() == "not clonefleet's"
    assert sha256_file(qcow2_gi.path) == qcow2_gi.sha256 and qcow2_gi.path.stat().st_mtime_ns == gi_mtime


def renamed_before_its_record(m: Manifest, gi: Path, name: str) -> os.stat_result:
    """What a refresh killed between its rename and its ``created`` record leaves: a fresh clone, made in
    the fleet's private folder, journaled ``remade`` and renamed over the clone ``name``."""
    new = m.dest / ".clonefleet" / "tmp" / f"0.{name}"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(gi), "-F", "qcow2", str(new)], check=True)
    st = new.stat()
    with Journal(m.dest) as j:
        j.append("remade", name=name, **path_identity(new).fields())  # as refresh records it
    os.rename(new, m.dest / name)
    return st


def test_a_clone_renamed_into_place_before_its_record_is_adopted_and_a_foreign_one_is_refused(
        tmp_path: Path, qcow2_gi: GoldenImage) -> None:
    """The kill windows of refresh, made by hand: after the rename, before the ``created`` record; and a
    file someone else put under a clone's name, which refresh must neither replace nor use."""
    require_tool("qemu-img", "qemu-io")
    m = life_manifest(tmp_path, qcow2_gi.path, 3)
    engine.provision(m)
    engine.apply_writes(m, days=1)
    st = renamed_before_its_record(m, qcow2_gi.path, "vm-0001.qcow2")
    result = engine.refresh(m, clones=["vm-0002"])
    assert result.adopted == 1 and result.refreshed == ("vm-0002.qcow2",)
    state = Journal.read(m.dest)
    assert same_file(state.identity_of("vm-0001.qcow2"), path_identity(m.dest / "vm-0001.qcow2"))
    assert path_identity(m.dest / "vm-0001.qcow2").ino == st.st_ino and state.age_of("vm-0001.qcow2") == 0
    assert state.age_of("vm-0003.qcow2") == 1
    # killed again after a rename: writes asks for the rerun, destroy removes the renamed clone (it is ours)
    renamed_before_its_record(m, qcow2_gi.path, "vm-0002.qcow2")
    r = clonefleet("writes", str(m.path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "rerun it" in r.stderr, r.stderr
    foreign = m.dest / "vm-0003.qcow2"
    copy = tmp_path / "copy"
    copy.write_bytes(b"someone else's")
    os.replace(copy, foreign)  # a user's file moved over the clone (a new inode while the old one still lives)
    r = clonefleet("refresh", str(m.path), "--yes")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "will not use or overwrite it" in r.stderr, r.stderr
    assert foreign.read_bytes() == b"someone else's"
    result = engine.destroy(m)
    assert result.removed == 2 and len(result.kept) == 1 and "vm-0003.qcow2" in result.kept[0]
    assert sorted(os.listdir(m.dest)) == [".clonefleet", "vm-0003.qcow2"]
    assert foreign.read_bytes() == b"someone else's"


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, qcow2_gi: GoldenImage) -> None:
    require_tool("qemu-img")
    m = life_manifest(tmp_path, qcow2_gi.path, 2)
    engine.provision(m)
    server = pf.fleet_manifest(tmp_path, qcow2_gi.path, 2, name="server.toml", dest="server")
    engine.provision(server)
    cases = [
        (("writes", str(m.path), "--days", "-1"), "--days"),
        (("writes", str(m.path), "--days", "abc"), "--days"),
        (("writes", str(m.path), "--days", "1.5"), "--days"),
        (("writes", str(server.path), "--days", "2"), "declares no daily writes"),
        (("refresh", str(tmp_path / "missing.toml"), "--yes"), "no such file"),
        (("refresh", str(m.path)), "--yes"),
        (("refresh", str(m.path), "--yes", "--older-than", "-3"), "--older-than"),
        (("refresh", str(m.path), "--yes", "--clones", "vm-0099"), "not a clone of fleet"),
    ]
    for args, fragment in cases:
        r = clonefleet(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("clonefleet: error:"), (args, r.stderr)
        assert fragment in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert Journal.read(m.dest).written() == set()  # nothing was written by a refused command


def test_writes_days_killed_at_random_moments_then_rerun_writes_what_one_uninterrupted_run_writes(
        tmp_path: Path, qcow2_gi: GoldenImage) -> None:
    """SIGKILL ``clonefleet writes --days 4`` at random moments, rerun it: every clone then holds exactly
    the data of a twin fleet written by one run that was never killed (``qemu-img compare``), and its age
    is 4 days. A day is journaled only once its writes are flushed, and a day's writes are the same bytes
    at the same places each time, so a day written twice changes nothing."""
    require_tool("qemu-img", "qemu-io")
    rng = np.random.default_rng(29)
    fleets = []
    for side in ("killed", "twin"):
        (tmp_path / side).mkdir()
        m = life_manifest(tmp_path / side, qcow2_gi.path, 8)
        engine.provision(m)
        fleets.append(m)
    killed, twin = fleets
    base = Journal.read(twin.dest).records
    # the twin: one whole run, never killed; it also times a run for the kills
    calibration = calibrate(("writes", twin.path, "--days", "4"), lambda: Journal.read(twin.dest).records - base)
    args = ("writes", killed.path, "--days", "4")
    kills = rounds = 0
    while kills < 6 and rounds < MAX_ROUNDS:
        rounds += 1
        state = Journal.read(killed.dest)
        if all(state.age_of(n) == 4 for n in state.present()):
            engine.refresh(killed)  # done: start over from fresh clones, so the kills land mid-work
        before = Journal.read(killed.dest).records
        landed = kill_at_a_random_moment(args, lambda b=before: Journal.read(killed.dest).records - b, rng,
                                         calibration)
        state = Journal.read(killed.dest)
        ages = [state.age_of(n) for n in state.present()]
        assert all(0 <= a <= 4 for a in ages)
        kills += landed.alive and min(ages) < 4
    assert kills >= 6, f"only {kills} kills landed mid-run in {rounds} rounds"
    r = clonefleet(*map(str, args))
    assert r.returncode == 0, r.stderr
    state = Journal.read(killed.dest)
    assert sorted(state.present()) == sorted(f"{n}.qcow2" for n in killed.clone_names())
    for name in sorted(state.present()):
        assert state.age_of(name) == 4
        same = subprocess.run(["qemu-img", "compare", "-q", str(killed.dest / name), str(twin.dest / name)],
                              capture_output=True, text=True)
        assert same.returncode == 0, (name, same.stdout, same.stderr)
    assert sha256_file(qcow2_gi.path) == qcow2_gi.sha256
