"""The planner's commands: JSON contract, tables, one-line errors with exit 2, help text."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer.main

from clonefleet.cli import app
from conftest import CliResult

Cli = Callable[..., CliResult]
PLAN_KEYS = {"fleet", "array", "vms", "methods", "recommended", "reason"}
METHOD_KEYS = {"method", "golden_images", "clones_per_gi", "max_vms", "bottleneck", "per_vm_new_bytes",
               "gi_bytes", "consumed_bytes", "capacity_ratio", "meets_requirement"}


def test_plan_json_contract(cli: Cli) -> None:
    r = cli("plan", "--fleet", "desktop-win7", "--array", "midrange-2012", "--vms", "1000", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert set(doc) >= PLAN_KEYS
    assert [m["method"] for m in doc["methods"]] == ["full", "thin", "snapshot"]
    for m in doc["methods"]:
        assert set(m) >= METHOD_KEYS
    full = doc["methods"][0]
    assert full["capacity_ratio"] == 1.0
    for m in doc["methods"]:
        assert m["capacity_ratio"] == pytest.approx(m["consumed_bytes"] / full["consumed_bytes"])
    assert doc["recommended"] == "snapshot"
    assert "snapshot" in doc["reason"]


def test_plan_table_names_the_recommendation(cli: Cli) -> None:
    r = cli("plan", "-f", "server-ws2008", "-a", "midrange-2012")
    assert r.code == 0, r.err
    assert "recommended" in r.out and "snapshot" in r.out and "GI disks" in r.out


def test_plan_with_backend_granularities(cli: Cli) -> None:
    r = cli("plan", "-f", "server-linux", "-a", "allflash-2024", "--vms", "500",
            "--functions", "full,qcow2-copy,qcow2-linked,reflink,rbd-clone", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert [m["function"] for m in doc["methods"]] == ["full", "qcow2-copy", "qcow2-linked", "reflink", "rbd-clone"]


def test_plan_when_nothing_holds(cli: Cli) -> None:
    r = cli("plan", "-f", "desktop-win11", "-a", "midrange-2012", "--vms", "5000", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["recommended"] is None
    assert "no storage function carries 5000 VMs" in doc["reason"]


def test_presets_lists_sources(cli: Cli) -> None:
    r = cli("presets", "--json")
    assert r.code == 0
    doc = json.loads(r.out)
    names = {(p["kind"], p["name"]) for p in doc}
    assert ("fleet", "desktop-win7") in names and ("array", "midrange-2012") in names
    assert all(p["sources"] for p in doc)
    table = cli("presets", "--kind", "array", "--sources")
    assert table.code == 0 and "AMS2500" in table.out


def test_reproduce_paper(cli: Cli, tmp_path: Path) -> None:
    r = cli("reproduce", "paper", "--out", str(tmp_path), "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["fig4"] == json.loads((tmp_path / "fig4.json").read_text())
    table = cli("reproduce", "paper", "--out", str(tmp_path))
    assert table.code == 0 and "fig4.png" in table.out


def test_sweep_json_and_files(cli: Cli, tmp_path: Path) -> None:
    r = cli("sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "1:3000",
            "--param", "disks=240:960:4", "--target", "1000", "--out", str(tmp_path), "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["points"] == 3000 * 4 * 3
    rows = {m["function"]: m for m in doc["methods"]}
    assert rows["snapshot"]["max_vms"] == 2686 and rows["thin"]["max_vms"] == 1189
    assert rows["thin"]["fewest_disks"] == 404
    assert len(rows["thin"]["max_vms_by_param"]) == 4
    assert {p.name for p in tmp_path.iterdir()} == {"sweep.csv", "sweep.json", "sweep.png"}
    lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert len(lines) == 1 + 3000 * 4 * 3


SWEEP_SIM = ("sweep", "-f", "server-ws2008", "-a", "midrange-2012", "--vms", "1000:4000:1500", "--simulate",
             "--ios-per-vm", "200", "--seed", "3", "--json")


def test_sweep_simulate_boots_the_fleet_at_each_t_as_the_simulator_does(cli: Cli, tmp_path: Path) -> None:
    from clonefleet.presets import load_array, load_fleet, load_function
    from clonefleet.sim.compare import run_fleet
    from clonefleet.sim.trace import Arrivals

    r = cli(*SWEEP_SIM, "--workers", "1", "--out", str(tmp_path))
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    sim = doc["simulation"]
    assert (sim["arrivals"], sim["ios_per_vm"], sim["slack"], sim["seed"]) == ("open", 200, 1.02, 3)
    largest = {m["function"]: m["max_vms"] for m in doc["methods"]}
    points = {(p["function"], p["vms"]): p for p in sim["storms"]}
    assert sorted(points) == sorted((f, t) for f in ("full", "thin", "snapshot") for t in (1000, 2500, 4000))
    fleet, array = load_fleet("server-ws2008"), load_array("midrange-2012")
    for (name, t), p in points.items():
        assert p["model_carries"] == (t <= largest[name]) and p["meets_window"] == (p["p95_boot_over_nominal"] <= 1.02)
        if name != "full":  # full and thin share their storms: the same IO path
            _, ratio = run_fleet(fleet, array, load_function(name), t, 3, 200, Arrivals.OPEN)
            assert p["p95_boot_over_nominal"] == ratio
    assert all(points["full", t]["p95_boot_over_nominal"] == points["thin", t]["p95_boot_over_nominal"]
               for t in (1000, 2500, 4000))
    # the sweep crosses the model's largest T of full and thin: storms on both sides of the knee
    assert not points["thin", 4000]["meets_window"] and points["thin", 1000]["meets_window"]
    assert points["snapshot", 1000]["golden_images"] >= 1 and points["thin", 1000]["golden_images"] == 1
    assert json.loads((tmp_path / "sweep.json").read_text())["simulation"] == sim
    # the same storms on two local processes: the same figures
    assert json.loads(cli(*SWEEP_SIM, "--workers", "2").out)["simulation"] == sim
    table = " ".join(cli(*SWEEP_SIM[:-1], "--workers", "1").out.split())
    assert "boot storms along the sweep" in table and "misses" in table and "meets" in table


@pytest.mark.parametrize(("extra", "words"), [
    (("--vms", "1:100"), "100 fleet sizes x 2 IO paths = 200 storms, at most 64; give --vms a step"),
    (("--vms", "10:20", "--slack", "0.5"), "--slack = 0.5: a factor of at least 1"),
])
def test_sweep_simulate_refuses_what_it_cannot_run_in_one_line(cli: Cli, extra: tuple[str, ...], words: str) -> None:
    r = cli("sweep", "-f", "server-ws2008", "-a", "midrange-2012", "--simulate", *extra)
    assert r.code == 2 and words in " ".join(r.err.split()) and len(r.err.strip().splitlines()) == 1, r.err


#: What a fleet-size flag allows (cli.app.parse_whole).
WHOLE_VMS = "a whole number from 1 to 1,000,000,000,000"

BAD_INPUT = [
    (["plan", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "0"], WHOLE_VMS),
    (["plan", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "-5"], WHOLE_VMS),
    (["plan", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "lots"], WHOLE_VMS),
    (["plan", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "2.5"], WHOLE_VMS),
    (["plan", "-f", "desktop-win8", "-a", "midrange-2012"],
     "known: debian-boot, desktop-linux, desktop-win10, desktop-win11, desktop-win7"),
    (["plan", "-f", "desktop-win7", "-a", "nas"], "unknown array preset 'nas'; known: allflash-2024"),
    (["plan", "-f", "desktop-win7", "-a", "midrange-2012", "--functions", "thin,clone"],
     "unknown function preset 'clone'"),
    (["plan", "-f", "desktop-win7"], "Missing option '--array'"),
    (["plan", "-f", "desktop-win7", "-a", "midrange-2012", "--color"], "No such option"),
    (["sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "10:1"], "START <= STOP"),
    (["sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--param", "speed=1:2"], "not a fleet or array field"),
    (["sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--param", "gi_used=1GX:2GiB"], "unknown unit 'GX'"),
    (["plan", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "1e300"], WHOLE_VMS),
    (["sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--target", "1e30"],
     "Invalid value for '--target': '1e30': a whole number from 1 to 1,000,000,000,000"),
    (["sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "1:1000000000000"],
     "1,000,000,000,000 fleet sizes, at most 50,000,000; give a larger STEP"),
    (["sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--param", "disks=1:10:many"], "COUNT must be a whole"),
    (["sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--param", "disks=1:1000:100000000"],
     "more than 50,000,000 values"),
    (["presets", "--kind", "disk"], "one of fleet, array, function, all"),
    (["frobnicate"], "No such command"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_INPUT, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_bad_input_is_one_line_and_exit_2(cli: Cli, args: list[str], expected: str) -> None:
    r = cli(*args)
    assert r.code == 2
    assert expected in r.err
    assert r.err.count("\n") == 1 and r.err.startswith("clonefleet: error: ")
    assert "Traceback" not in r.err and r.out == ""


@pytest.mark.parametrize(("content", "expected"), [
    ("not toml at all = =", "not valid TOML"),
    ('[preset]\nkind = "fleet"\nname = "x"\n[gi_size]\nvalue = "100 GX"\nsource = "me"\n', "unknown unit 'GX'"),
    ('[preset]\nkind = "fleet"\nname = "x"\n', "missing; required"),
])
def test_bad_preset_file_is_one_line(cli: Cli, tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(content)
    r = cli("plan", "--fleet", str(path), "--array", "midrange-2012")
    assert r.code == 2 and expected in r.err and r.err.count("\n") == 1


def _commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    found = []
    for name, cmd in getattr(group, "commands", {}).items():
        found.append(((*prefix, name), cmd))
        found.extend(_commands(cmd, (*prefix, name)))
    return found


def test_every_command_has_help_text(cli: Cli) -> None:
    commands = _commands(typer.main.get_command(app))
    assert len(commands) >= 5
    for path, cmd in commands:
        assert (getattr(cmd, "help", None) or "").strip(), f"{' '.join(path)} has no help text"
        r = cli(*path, "--help")
        assert r.code == 0 and "Usage" in r.out, path


def test_a_gi_that_carries_no_clone_is_reported_not_crashed(cli: Cli, tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "src" / "clonefleet" / "presets" / "arrays" / "midrange-2012.toml"
    text = shipped.read_text()
    assert "value = 50000" in text
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(text.replace("value = 50000", "value = 10"))  # N_v = 10 IOPS: k = 0
    r = cli("plan", "-f", "desktop-win7", "-a", str(tiny), "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    snap = doc["methods"][2]
    assert snap["meets_requirement"] is False and snap["golden_images"] == 0
    assert snap["consumed_bytes"] is None and snap["capacity_ratio"] is None
    assert doc["recommended"] == "thin" and "one GI cannot serve even one clone" in doc["reason"]
    assert cli("plan", "-f", "desktop-win7", "-a", str(tiny)).code == 0
    s = cli("sweep", "-f", "desktop-win7", "-a", str(tiny), "--vms", "1:100", "--out", str(tmp_path / "s"), "--json")
    assert s.code == 0, s.err
    series = json.loads((tmp_path / "s" / "sweep.json").read_text())["series"]["snapshot"]
    assert series["consumed_bytes"][0] is None


def test_presets_show_prints_values_with_units_and_json(cli: Cli) -> None:
    r = cli("presets", "show", "midrange-2012")
    assert r.code == 0, r.err
    assert "180 IOPS" in r.out and "480 disks" in r.out and "assumption:" in r.out
    doc = json.loads(cli("presets", "show", "desktop-win11", "--json").out)
    gi_used = next(f for f in doc["figures"] if f["key"] == "gi_used")
    assert (gi_used["text"], gi_used["unit"], gi_used["source"]) == ("27 GiB", "bytes", None)
    listed = json.loads(cli("presets", "--json").out)
    assert isinstance(listed, list) and all(p["figures"] for p in listed)  # an array, as reference.md says
    bad = cli("presets", "show", "no-such")
    assert bad.code == 2 and bad.err.count("\n") == 1 and "unknown preset 'no-such'" in bad.err


def test_presets_copy_then_plan_says_where_the_preset_came_from(cli: Cli, tmp_path: Path) -> None:
    dest = tmp_path / "my-array.toml"
    r = cli("presets", "copy", "allflash-2024", str(dest), "--name", "my-array")
    assert r.code == 0, r.err
    assert 'name = "my-array"' in dest.read_text()
    again = cli("presets", "copy", "allflash-2024", str(dest))
    assert again.code == 2 and "exists; pass --force" in again.err and again.err.count("\n") == 1
    shadow = tmp_path / "x.toml"
    assert cli("presets", "copy", "allflash-2024", str(shadow), "--name", "allflash-2024").code == 0
    plan_out = cli("plan", "-f", "desktop-win11", "-a", str(shadow), "--vms", "600")
    assert plan_out.code == 0, plan_out.err
    # Whatever the width wraps (a long temporary path breaks anywhere), the title says it all.
    assert "".join(f"allflash-2024 (from {shadow}, not the shipped one)".split()) in "".join(plan_out.out.split())


def test_plan_shows_eq1_processor_load_and_why_more_gis_do_not_help(cli: Cli) -> None:
    doc = json.loads(cli("plan", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "2000", "--json").out)
    assert (doc["array_iops"], doc["array_bound"]) == (86400.0, "disks")
    snap = next(m for m in doc["methods"] if m["method"] == "snapshot")
    assert snap["gi_clone_limit"] == 219
    assert any(n.startswith("thin: 1 GI") for n in doc["notes"])
    # 2700 desktops: over what the array's disks carry for snapshots too (2686, Eq. 2); GIs cannot help
    text = " ".join(cli("plan", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "2700").out.split())
    assert "86,400 IOPS (Eq. 1): its disks bound it" in text
    assert "snapshot: more GIs would not help: the array disks are the limit" in text
    assert {a["key"] for a in doc["assumptions"]} >= {"volume_iops_limit", "gi_used", "unit"}


def widest(out: str) -> int:
    """The longest line of ``out``: at most the width the output was laid out for."""
    return max(len(line) for line in out.splitlines())


def table_rows(out: str) -> dict[str, list[str]]:
    """The rows of the tables in ``out`` (one line each when wide enough), by their first cell."""
    rows = ([c.strip() for c in line.strip("│ ").split("│")] for line in out.splitlines() if line.startswith("│"))
    return {cells[0]: cells[1:] for cells in rows}


def test_reproduce_paper_fits_80_columns_and_shows_fig4_when_wide(cli: Cli, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    doc = json.loads(cli("reproduce", "paper", "--out", str(tmp_path), "--json").out)
    monkeypatch.setenv("COLUMNS", "80")
    narrow = cli("reproduce", "paper", "--out", str(tmp_path))
    assert narrow.code == 0, narrow.err
    assert widest(narrow.out) <= 80 and "Paper Fig. 4" in narrow.out and "snapshot / thin" in narrow.out
    monkeypatch.setenv("COLUMNS", "200")
    rows = table_rows(cli("reproduce", "paper", "--out", str(tmp_path)).out)
    fig4 = doc["fig4"]
    assert len(rows) == len(fig4) == 2
    assert sorted(cells[:3] for cells in rows.values()) == sorted(
        ["100.00 %", f"{100 * r['thin']:.2f} %", f"{100 * r['snapshot']:.2f} %"] for r in fig4.values())
    assert sorted(cells[4] for cells in rows.values()) == sorted(p["recommended"] for p in doc["plans"].values())


def test_sweep_table_fits_80_columns_and_shows_the_json_figures_when_wide(cli: Cli,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    args = ("sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "1:3000", "--target", "1000")
    doc = json.loads(cli(*args, "--json").out)
    monkeypatch.setenv("COLUMNS", "80")
    narrow = cli(*args)
    assert narrow.code == 0, narrow.err
    assert widest(narrow.out) <= 80 and "fewest disks for target" in narrow.out  # spelt out in the legend
    impossible = cli("sweep", "-f", "desktop-win7", "-a", "midrange-2012", "--vms", "1:300", "--target", "100000")
    assert impossible.code == 0 and widest(impossible.out) <= 80
    assert "impossible: the array's" in impossible.out  # the reason wraps inside its cell, not past 80
    monkeypatch.setenv("COLUMNS", "200")
    rows = table_rows(cli(*args).out)
    for m in doc["methods"]:
        cells = rows[m["function"]]
        assert cells[0] == str(m["max_vms"]) and cells[1] == m["bottleneck"] and cells[3] == str(m["fewest_disks"])


def test_a_plan_that_holds_at_its_limit_says_it_has_no_headroom(cli: Cli, tmp_path: Path) -> None:
    array = tmp_path / "a12.toml"
    assert cli("presets", "copy", "allflash-2024", str(array), "--name", "a12").code == 0
    text = array.read_text()
    for key in ("disks", "gi_disks"):  # 12 disks: one GI's volume carries exactly 1000 Linux servers
        head = f"[{key}]\nvalue = "
        start = text.index(head) + len(head)
        text = text[:start] + "12" + text[text.index("\n", start):]
    array.write_text(text)
    data = json.loads(cli("plan", "-f", "server-linux", "-a", str(array), "--vms", "2000", "--json").out)
    snap = next(m for m in data["methods"] if m["method"] == "snapshot")
    assert snap["meets_requirement"] and max(snap["utilisation"].values()) >= 0.95
    assert any(n.startswith("snapshot") and "no headroom" in n for n in data["notes"])
    thin = json.loads(cli("plan", "-f", "server-linux", "-a", str(array), "--vms", "1000", "--json").out)
    assert not any("no headroom" in n for n in thin["notes"] if n.startswith("thin"))


def test_presets_show_gives_a_fleets_load_a_even_when_its_file_gives_the_boot_window(cli: Cli) -> None:
    data = json.loads(cli("presets", "show", "desktop-win11", "--json").out)
    figures = {f["key"]: f for f in data["figures"]}
    assert "host_iops" in figures and "boot_window" in figures
    assert figures["host_iops"]["value"] == pytest.approx(70_000 / 150)  # boot_ios / boot_window
    assert figures["host_iops"]["source"].startswith("derived: boot_ios / boot_window")
