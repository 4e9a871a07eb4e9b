"""plan over the fleet's life: --days, --refresh, --recompose, --capacity, --headroom, --plot; bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult

Cli = Callable[..., CliResult]
BASE = ["plan", "-f", "desktop-win10", "-a", "allflash-2024", "--vms", "1000"]


def test_plan_over_days_keeps_day_zero_and_adds_the_peak(cli: Cli) -> None:
    day0 = json.loads(cli(*BASE, "--json").out)
    r = cli(*BASE, "--days", "90", "--refresh", "7d", "--capacity", "20TiB", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["lifetime"] == {"days": 90, "refresh": "7d", "refresh_days": 7.0, "recompose_days": None,
                               "capacity_bytes": 20 * 2**40, "headroom": 0.0}
    for before, m in zip(day0["methods"], doc["methods"], strict=True):
        assert m["consumed_bytes"] == before["consumed_bytes"]  # day 0, as before
        assert m["peak_consumed_bytes"] >= m["consumed_bytes"]
        assert 0 <= m["peak_day"] <= 7  # refreshed every 7 days: the peak comes in the first week
        assert isinstance(m["fits_capacity"], bool)
    snap = next(m for m in doc["methods"] if m["method"] == "snapshot")
    assert snap["peak_consumed_bytes"] > 2 * snap["consumed_bytes"]  # a week of use at least doubles S


def test_plan_over_days_prints_the_table_and_a_plot(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    png = tmp_path / "growth.png"
    r = cli("plan", "-f", "desktop-win10", "-a", "allflash-dr-2024", "--vms", "1000", "--days", "30",
            "--refresh", "logoff", "--capacity", "20TiB", "--headroom", "0.2", "--plot", str(png))
    assert r.code == 0, r.err
    assert "Over 30 days, refresh logoff; datastore 20 TiB, target 16 TiB (80 %)" in r.out
    assert "peak stored" in r.out and "outgrows on day" in r.out
    assert "data reduction on allflash-dr-2024" in r.out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in r.out


def test_a_small_datastore_is_outgrown_on_a_day(cli: Cli) -> None:
    r = cli(*BASE, "--functions", "snapshot", "--days", "30", "--capacity", "8TiB", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    m = doc["methods"][0]
    assert m["fits_capacity"] is False and 1 <= m["outgrows_day"] <= 30 and not m["meets_requirement"]
    assert doc["recommended"] is None and "datastore" in doc["reason"]
    assert m["boot_holds"] is True  # the load carries the fleet: only the datastore is too small


def test_the_load_table_says_the_boot_holds_when_only_the_datastore_is_outgrown(
        cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    r = cli(*BASE, "--functions", "snapshot", "--days", "30", "--capacity", "8TiB")
    assert r.code == 0, r.err
    load = r.out[r.out.index("Load:"):]
    row = next(line for line in load.splitlines() if line.startswith("│ snapshot"))
    assert row.rstrip(" │").endswith("yes"), row  # T <= T_max: the boot holds
    words = " ".join(r.out.split())
    assert "no storage function fits 1000 VMs in the datastore's target of 8 TiB over 30 days" in words
    assert "(the least at its peak: snapshot," in words


@pytest.mark.parametrize(("args", "expected"), [
    (["--days", "-3"], "--days"),
    (["--days", "7", "--refresh", "30d"], "--refresh = 30d: longer than the horizon --days 7"),
    (["--refresh", "7d"], "--refresh = 7d: longer than the horizon --days 0"),
    (["--days", "7", "--refresh", "weekly"], "--refresh = 'weekly'"),
    (["--days", "4000"], "--days"),
    (["--headroom", "1.5"], "--headroom = '1.5'"),
    (["--headroom", "-0.1"], "--headroom"),
    (["--capacity", "0"], "--capacity = '0'"),
    (["--capacity", "lots"], "--capacity = 'lots'"),
    (["--plot", "growth.txt"], "--plot"),
])
def test_bad_life_input_is_one_line_and_exit_2(cli: Cli, args: list[str], expected: str) -> None:
    r = cli(*BASE, *args)
    assert r.code == 2, (r.out, r.err)
    assert expected in r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err


def test_a_ratio_below_1_in_an_array_is_one_line_and_exit_2(cli: Cli, tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "src/clonefleet/presets/arrays/allflash-dr-2024.toml"
    bad = tmp_path / "bad.toml"
    bad.write_text(src.read_text().replace("[dedup_gi]\nvalue = 5", "[dedup_gi]\nvalue = 0.5"))
    r = cli("plan", "-f", "desktop-win10", "-a", str(bad))
    assert r.code == 2
    assert "field 'dedup_gi' = 0.5: a ratio of raw to stored bytes from 1" in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_sweep_takes_days_and_refresh(cli: Cli, tmp_path: Path) -> None:
    r = cli("sweep", "-f", "desktop-win10", "-a", "allflash-2024", "--vms", "100:1000:300", "--days", "30",
            "--refresh", "7d", "-p", "daily_write_span=4GiB:20GiB:3", "--functions", "full,snapshot",
            "--out", str(tmp_path), "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["lifetime"]["days"] == 30 and doc["lifetime"]["refresh_days"] == 7.0
    snap = next(m for m in doc["methods"] if m["function"] == "snapshot")
    assert snap["peak_consumed_bytes_at_max"] > snap["consumed_bytes_at_max"]
    rows = (tmp_path / "sweep.csv").read_text().splitlines()
    assert rows[0].endswith("peak_consumed_bytes,peak_reduced_consumed_bytes")
    # a wider daily span lets a clone grow more: the peak rises along the swept field at one T
    snap_rows = [r.split(",") for r in rows[1:] if r.startswith("snapshot,") and r.split(",")[2] == "1000"]
    peaks = [float(r[-2]) for r in snap_rows]
    assert len(peaks) == 3 and peaks[0] < peaks[1] < peaks[2]


def test_sweep_refuses_a_refresh_longer_than_its_horizon(cli: Cli) -> None:
    r = cli("sweep", "-f", "desktop-win10", "-a", "allflash-2024", "--days", "5", "--refresh", "7d")
    assert r.code == 2 and "--refresh = 7d: longer than the horizon --days 5" in r.err
