"""Sweeps agree with single plans; the inverse answers are the boundaries they claim to be."""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clonefleet import load_array, load_fleet, plan
from clonefleet.errors import UsageError
from clonefleet.presets import load_function
from clonefleet.report import sweepfig
from clonefleet.report.sweepfig import write_sweep
from clonefleet.sweep import (
    SweepResult,
    fewest_disks,
    largest_vms,
    parse_param,
    parse_range,
    run_sweep,
    with_disks,
)
from conftest import CliResult

PRESETS = Path(__file__).resolve().parents[2] / "src" / "clonefleet" / "presets"

FLEETS = st.sampled_from(["server-ws2008", "desktop-win7", "desktop-win11", "server-linux"])
ARRAYS = st.sampled_from(["midrange-2012", "allflash-2024"])
FUNCTIONS = st.sampled_from(["full", "thin", "snapshot", "qcow2-linked", "rbd-clone"])


@pytest.mark.parametrize(("array_name", "disks_range"), [
    ("midrange-2012", "200:800:4"),
    ("allflash-2024", "2:40:8"),  # X_g = 24: below it the GI's group shrinks with the pool
])
def test_sweep_matches_plan_at_every_sampled_point(array_name: str, disks_range: str) -> None:
    fleet, array = load_fleet("desktop-win7"), load_array(array_name)
    result = run_sweep(fleet, array, parse_range("1:5000"), None, parse_param(f"disks={disks_range}"))
    rng = np.random.default_rng(7)
    for t in rng.integers(1, 5001, 20):
        for j, disks in enumerate(result.param.values):  # type: ignore[union-attr]
            pool = dataclasses.replace(array, disks=float(disks), gi_disks=min(array.gi_disks, float(disks)))
            single = plan(fleet, pool, int(t))
            for m in single.methods:
                grid = result.grids[m.function]
                assert grid.consumed_bytes[t - 1, j] == pytest.approx(m.consumed_bytes, rel=1e-12)
                assert bool(grid.meets_requirement[t - 1, j]) == m.meets_requirement


@given(FLEETS, ARRAYS, FUNCTIONS)
def test_largest_vms_is_the_boundary(fleet: str, array: str, fn: str) -> None:
    f, a, s = load_fleet(fleet), load_array(array), load_function(fn)
    t = largest_vms(f, a, s)
    if t > 0:
        assert plan(f, a, t, [s]).methods[0].meets_requirement
    assert not plan(f, a, t + 1, [s]).methods[0].meets_requirement


@given(FLEETS, ARRAYS, FUNCTIONS, st.integers(1, 20000))
def test_fewest_disks_is_the_boundary(fleet: str, array: str, fn: str, target: int) -> None:
    f, a, s = load_fleet(fleet), load_array(array), load_function(fn)
    disks, reason = fewest_disks(f, a, s, target)
    if disks is None:
        assert "processors" in reason or "no clone" in reason
        huge = dataclasses.replace(a, disks=1e9)
        assert not plan(f, huge, target, [s]).methods[0].meets_requirement
        return
    assert plan(f, with_disks(a, disks), target, [s]).methods[0].meets_requirement
    # One disk fewer fails, whatever the preset's gi_disks: the answer is never floored at X_g.
    if disks > 1:
        assert not plan(f, with_disks(a, disks - 1), target, [s]).methods[0].meets_requirement


def test_with_disks_shrinks_the_gi_group_only_below_it() -> None:
    a = load_array("midrange-2012")  # X = 480, X_g = 8
    assert (with_disks(a, 5).disks, with_disks(a, 5).gi_disks) == (5, 5)
    assert (with_disks(a, 100).disks, with_disks(a, 100).gi_disks) == (100, 8)
    column = with_disks(a, np.array([[2.0, 8.0, 50.0]]))
    assert column.gi_disks.tolist() == [[2.0, 8.0, 8.0]]  # type: ignore[attr-defined]


def _allflash_12(tmp_path: Path) -> Path:
    """The issue's case: the all-flash preset cut to 12 disks (X_g = X = 12, as the preset stripes)."""
    text = (PRESETS / "arrays" / "allflash-2024.toml").read_text()
    for key in ("disks", "gi_disks"):
        text = text.replace(f"[{key}]\nvalue = 24", f"[{key}]\nvalue = 12")
    path = tmp_path / "allflash-12.toml"
    path.write_text(text)
    return path


def test_fewest_disks_below_the_gi_group_through_the_cli(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    # desktop-win7 (A = 80 IOPS, r = 0.84) on the all-flash array (M = 60000 IOPS, p = 2, h_p = 0.3,
    # h_s = 0.95, phi = 0, N = 1e6, N_v = 3e5):
    #   full, thin: B = 80*(0.84*0.7 + 0.16*2) = 72.64;  X >= 4000*72.64/60000 = 4.84  -> 5 disks
    #   snapshot:   B = 80*(0.84*0.05 + 0.16*2) = 28.96; X >= 4000*28.96/60000 = 1.93  -> 2 disks
    #   (one GI on 2 disks: k = min(3e5/80, 2*60000/3.36) = 3750 clones, g = 2)
    array = _allflash_12(tmp_path)
    r = cli("sweep", "--fleet", "desktop-win7", "--array", str(array), "--vms", "1:8000:1",
            "--param", "disks=1:12:12", "--target", "4000", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    fewest = {m["function"]: m["fewest_disks"] for m in doc["methods"]}
    assert fewest == {"full": 5, "thin": 5, "snapshot": 2}
    # The sweep's own grid over X agrees: the first X whose largest T reaches the target.
    disks = doc["param"]["values"]
    for m in doc["methods"]:
        first = next(x for x, t in zip(disks, m["max_vms_by_param"], strict=True) if t >= 4000)
        assert first == m["fewest_disks"]
    snapshot = next(m for m in doc["methods"] if m["function"] == "snapshot")
    assert "X_g = 2" in snapshot["fewest_disks_reason"]


@pytest.mark.parametrize(("text", "message"), [
    ("0:10", "1 <= START"), ("10", None), ("5:1", "START <= STOP"), ("a:b", "whole numbers"),
    ("1:2:3:4", "START:STOP"), ("1:10:0", "STEP >= 1"),
])
def test_parse_range(text: str, message: str | None) -> None:
    if message is None:
        assert parse_range(text).tolist() == [10]
        return
    with pytest.raises(UsageError, match=message):
        parse_range(text)


def test_parse_param_units_and_whole_fields() -> None:
    p = parse_param("gi_used=5GiB:20GiB:4")
    assert p.kind == "fleet" and p.values.tolist() == [5 * 2**30, 10 * 2**30, 15 * 2**30, 20 * 2**30]
    d = parse_param("disks=100:101:50")
    assert d.values.tolist() == [100, 101]
    with pytest.raises(UsageError, match="FIELD=START:STOP"):
        parse_param("disks")


def test_too_many_points_refused() -> None:
    with pytest.raises(UsageError, match="at most"):
        run_sweep(load_fleet("desktop-win7"), load_array("midrange-2012"), parse_range("1:1000000"),
                  None, parse_param("disks=1:1000:100"))


GIB = 2**30


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_sweep_of_gi_size_through_the_cli(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = cli("sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "1:50",
            "--param", "gi_size=100GiB:200GiB:2", "--out", str(out), "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["param"] == {"field": "gi_size", "values": [100 * GIB, 200 * GIB]}
    assert doc["points"] == 3 * 50 * 2
    assert sorted(p.name for p in out.iterdir()) == ["sweep.csv", "sweep.json", "sweep.png"]
    rows = _csv(out / "sweep.csv")
    assert len(rows) == 3 * 50 * 2
    for row in rows:
        t, g_size = int(row["vms"]), float(row["gi_size"])
        assert g_size in (100 * GIB, 200 * GIB)
        if row["method"] == "full":
            # Full copies: S = T * G, the virtual size copied per VM; the ratio to itself is 1.
            assert float(row["consumed_bytes"]) == pytest.approx(t * g_size, rel=1e-6)
            assert float(row["capacity_ratio"]) == 1.0
    # A larger image changes S of full copies only: thin and snapshot clones never copy the virtual size.
    by = {(row["function"], int(row["vms"]), float(row["gi_size"])): float(row["consumed_bytes"]) for row in rows}
    for fn in ("thin", "snapshot"):
        assert by[(fn, 50, 100 * GIB)] == by[(fn, 50, 200 * GIB)]
    assert json.loads((out / "sweep.json").read_text())["param"]["field"] == "gi_size"


def test_sweep_of_gi_used_writes_whole_files(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = cli("sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "1:20",
            "--param", "gi_used=1GiB:2GiB:2", "--out", str(out))
    assert r.code == 0, r.err
    assert sorted(p.name for p in out.iterdir()) == ["sweep.csv", "sweep.json", "sweep.png"]
    rows = _csv(out / "sweep.csv")
    assert len(rows) == 3 * 20 * 2
    by = {(row["function"], int(row["vms"]), float(row["gi_used"])): row for row in rows}
    for t in (1, 20):
        # Eq. 3, S = g*G_used + T*C: one more GiB in each of the g GIs, nothing else moves.
        for fn in ("thin", "snapshot"):
            low, high = by[(fn, t, 1 * GIB)], by[(fn, t, 2 * GIB)]
            g = int(low["golden_images"])
            assert g >= 1 and high["golden_images"] == low["golden_images"]
            assert float(high["consumed_bytes"]) - float(low["consumed_bytes"]) == pytest.approx(g * GIB, abs=1)
        # Full copies copy the virtual size whatever the GI holds.
        assert by[("full", t, 1 * GIB)]["consumed_bytes"] == by[("full", t, 2 * GIB)]["consumed_bytes"]
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["param"] == {"field": "gi_used", "values": [1 * GIB, 2 * GIB]}
    assert [m["function"] for m in doc["methods"]] == ["full", "thin", "snapshot"]
    assert all(len(m["max_vms_by_param"]) == 2 for m in doc["methods"])
    assert doc["series"]["thin"]["vms"] == list(range(1, 21))


def test_sweep_outputs_appear_whole_or_not_at_all(
    cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    args = ("sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "1:20", "--out", str(out))
    assert cli(*args).code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_figure(result: SweepResult) -> object:
        raise OSError(28, "No space left on device")

    # A failure after the CSV and the JSON are written: the earlier files stay, nothing half-made appears.
    monkeypatch.setattr(sweepfig, "sweep_figure", broken_figure)
    r = cli(*(a if a != "1:20" else "1:30" for a in args))
    assert r.code == 1 and "No space left on device" in r.err and len(r.err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    fresh = tmp_path / "fresh"
    assert cli(*args[:-1], str(fresh)).code == 1
    assert list(fresh.iterdir()) == []


def test_swept_values_no_preset_could_hold_are_refused(cli: Callable[..., CliResult]) -> None:
    for param, message in (("gi_size=1GiB:200GiB:2", "gi_size = 1 GiB: at least gi_used of the fleet (15 GiB)"),
                           ("gi_used=10GiB:200GiB:3", "at most gi_size"),
                           ("gi_disks=1:1000:3", "gi_disks = 500: at most disks of the array (480)")):
        r = cli("sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "1:10", "--param", param)
        assert r.code == 2, param
        assert message in r.err and len(r.err.strip().splitlines()) == 1
    # Fewer pool disks than the GI's group is allowed: the group shrinks with the pool.
    r = cli("sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "1:10", "--param", "disks=1:10:10")
    assert r.code == 0, r.err


def test_sweep_reports_progress_through_the_callback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clonefleet.presets import load_array, load_fleet
    from clonefleet.sweep import run_sweep

    monkeypatch.setattr(sweepfig, "CSV_ROWS_PER_REPORT", 1000)
    calls: list[tuple[str, int, int]] = []

    def record(stage: str, done: int, total: int) -> None:
        calls.append((stage, done, total))

    result = run_sweep(load_fleet("desktop-win7"), load_array("midrange-2012"), parse_range("1:2500"),
                       param=parse_param("disks=100:400:2"), target=500, progress=record)
    write_sweep(result, tmp_path / "out", progress=record)
    stages = [c[0] for c in calls]
    assert stages[0] == "sweep: evaluate the grid" and stages[-1] == "draw sweep.png"
    csv_calls = [(d, t) for s, d, t in calls if s == "write sweep.csv"]
    rows = 3 * 2500 * 2  # functions x T x disks values
    with (tmp_path / "out" / "sweep.csv").open() as fh:
        assert sum(1 for _ in fh) == rows + 1  # the header
    assert all(t == rows for _, t in csv_calls)
    assert [d for d, _ in csv_calls] == [0, *range(1000, rows + 1, 1000)]
    assert ("sweep: largest T and fewest disks", 3, 3) in calls
