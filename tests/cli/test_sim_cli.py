"""clonefleet simulate / validate: JSON output, help text, one-line refusals with exit 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult

Cli = Callable[..., CliResult]
BASE = ("simulate", "--fleet", "server-ws2008", "--array", "midrange-2012")


def test_simulate_json_reports_storm_and_capacity(cli: Cli) -> None:
    r = cli(*BASE, "--vms", "6", "--method", "snapshot", "--ios-per-vm", "300", "--seed", "4", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["seed"] == 4 and doc["ios"] == 6 * 300 and doc["engine"] == "fast"
    assert doc["scenario"]["method"] == "snapshot" and doc["scenario"]["golden_images"] >= 1
    boot = doc["boot"]
    assert 0 < boot["min_s"] <= boot["median_s"] <= boot["p95_s"] <= boot["max_s"]
    assert {u["resource"] for u in doc["utilisation"]} == {"volumes", "processors", "pool disks", "GI disks"}
    assert doc["per_clone_new_mean_bytes"] > 0 and doc["consumed_bytes"] > doc["per_clone_new_mean_bytes"]
    per_vm = doc["boot_s_per_vm"]
    assert len(per_vm) == 6 and max(per_vm) == boot["max_s"] and min(per_vm) == boot["min_s"]
    slowest = doc["slowest_vms"]
    assert [d["boot_s"] for d in slowest] == sorted(per_vm, reverse=True)
    g = doc["scenario"]["golden_images"]
    assert all(d["golden_image"] == d["vm"] % g and per_vm[d["vm"]] == d["boot_s"] for d in slowest)


def test_a_list_of_golden_images_compares_them_on_one_storm(cli: Cli, tmp_path: Path) -> None:
    args = (*BASE, "--vms", "12", "--method", "snapshot", "--ios-per-vm", "300", "--golden-images", "1,3")
    doc = json.loads(cli(*args, "--json", "--plots", str(tmp_path)).out)
    assert doc["golden_images"] == [1, 3]
    assert [r["scenario"]["golden_images"] for r in doc["runs"]] == [1, 3]
    assert doc["runs"][0]["ios"] == doc["runs"][1]["ios"] == 12 * 300
    alone = json.loads(cli(*BASE, "--vms", "12", "--method", "snapshot", "--ios-per-vm", "300",
                           "--golden-images", "3", "--json").out)
    assert alone["boot"] == doc["runs"][1]["boot"]  # the same storm as a run of g = 3 alone
    assert {p.parent.name for p in map(Path, doc["files"])} == {"g1", "g3"}
    table = cli(*args)
    assert table.code == 0 and "what GI replicas buy" in table.out
    _one_line_refusal(cli(*BASE, "--vms", "4", "--method", "snapshot", "--golden-images", "1,two"),
                      "--golden-images", "'two'")
    _one_line_refusal(cli(*BASE, "--vms", "4", "--method", "thin", "--golden-images", "1,2"), "golden_images")


def test_engines_agree_through_the_cli(cli: Cli) -> None:
    args = (*BASE, "--vms", "3", "--method", "thin", "--ios-per-vm", "80", "--seed", "9", "--json")
    fast = json.loads(cli(*args, "--engine", "fast").out)
    ref = json.loads(cli(*args, "--engine", "reference").out)
    assert ref["engine"] == "reference"
    for key in ("makespan_s", "boot", "latency", "read_hit_ratio", "consumed_bytes"):
        assert fast[key] == pytest.approx(ref[key], abs=1e-9)


def test_simulate_table_and_plots(cli: Cli, tmp_path: Path) -> None:
    r = cli(*BASE, "--vms", "4", "--method", "full", "--ios-per-vm", "100", "--plots", str(tmp_path),
            "--write-iolog", str(tmp_path / "logs"))
    assert r.code == 0, r.err
    assert "boot time" in r.out and "utilisation" in r.out
    assert (tmp_path / "boot_times.png").stat().st_size > 0 and (tmp_path / "utilisation.png").exists()
    assert len(list((tmp_path / "logs").glob("*.iolog"))) == 4


def test_replays_a_csv_trace(cli: Cli, tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("time,vm,op,offset,length\n0,0,read,0,4096\n0.001,1,write,8192,4096\n0.002,0,read,4096,4096\n")
    r = cli(*BASE, "--vms", "2", "--method", "thin", "--trace", str(p), "--arrivals", "open", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["ios"] == 3


def _one_line_refusal(r: CliResult, *words: str) -> None:
    assert r.code == 2
    assert r.err.count("\n") == 1 and "Traceback" not in r.err
    for w in words:
        assert w in r.err


@pytest.mark.parametrize(("extra", "words"), [
    (("--vms", "0", "--method", "thin"), ("--vms",)),
    (("--vms", "3", "--method", "thin", "--engine", "turbo"), ("--engine", "fast, reference")),
    (("--vms", "3", "--method", "bogus"), ("bogus",)),
    (("--vms", "3", "--method", "thin", "--golden-images", "2"), ("golden_images",)),
    (("--vms", "3", "--method", "thin", "--arrivals", "sideways"), ("--arrivals",)),
])
def test_bad_flags_refused(cli: Cli, extra: tuple[str, ...], words: tuple[str, ...]) -> None:
    _one_line_refusal(cli(*BASE, *extra), *words)


def test_a_storm_too_big_for_memory_is_refused_before_anything_is_drawn(cli: Cli) -> None:
    _one_line_refusal(cli(*BASE, "--vms", "1e9", "--method", "thin"), "1,000,000,000 VMs", "available",
                      "--ios-per-vm")


def test_output_folders_are_checked_before_the_run(cli: Cli, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for flag in ("--plots", "--write-iolog"):
        r = cli(*BASE, "--vms", "2", "--method", "thin", "--ios-per-vm", "50", flag, str(a_file / "sub"))
        _one_line_refusal(r, flag, "cannot create the folder")


def test_bad_scenarios_refused(cli: Cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("vm,op,offset,length\n")
    _one_line_refusal(cli(*BASE, "--vms", "1", "--method", "thin", "--trace", str(empty)), "empty")
    beyond = tmp_path / "beyond.csv"
    beyond.write_text(f"vm,op,offset,length\n0,read,{200 * 10**9},4096\n")
    _one_line_refusal(cli(*BASE, "--vms", "1", "--method", "thin", "--trace", str(beyond)), "inside the image")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("vm,op,offset,length\n0,read,0,4096\n5,read,0,4096\n")
    _one_line_refusal(cli(*BASE, "--vms", "2", "--method", "thin", "--trace", str(unknown)), "VM 5")
    array = tmp_path / "nodisks.toml"
    text = Path(__file__).resolve().parents[2].joinpath(
        "src/clonefleet/presets/arrays/midrange-2012.toml").read_text()
    array.write_text(text.replace("[disks]\nvalue = 480", "[disks]\nvalue = 0"))
    r = cli("simulate", "--fleet", "server-ws2008", "--array", str(array), "--vms", "2", "--method", "thin")
    _one_line_refusal(r, "disks")


def test_validate_json(cli: Cli) -> None:
    r = cli("validate", "--fleet", "server-ws2008", "--array", "midrange-2012", "--functions", "thin",
            "--ios-per-vm", "100", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    (m,) = doc["methods"]
    assert m["function"] == "thin" and m["model_max_vms"] > 0 and m["sim_max_vms"] > 0
    assert m["bisection"] and m["consumed_ratio"] == pytest.approx(1.0, rel=0.10)


def test_validate_refuses_bad_slack(cli: Cli) -> None:
    _one_line_refusal(cli("validate", "--fleet", "server-ws2008", "--array", "midrange-2012", "--slack", "0.5"),
                      "--slack")


@pytest.mark.parametrize("command", ["simulate", "validate"])
def test_commands_have_help(cli: Cli, command: str) -> None:
    r = cli(command, "--help")
    assert r.code == 0
    assert "--fleet" in r.out and "--json" in r.out and len(r.out.splitlines()) > 5


def test_the_json_scenario_keeps_its_keys_and_nothing_goes_to_stderr_off_a_terminal(cli: Cli) -> None:
    r = cli(*BASE, "--vms", "3", "--method", "qcow2-linked", "--golden-images", "2", "--ios-per-vm", "40",
            "--queue-depth", "3", "--json")
    assert r.code == 0 and r.err == ""  # no progress display: --json, and stderr is not a terminal
    assert json.loads(r.out)["scenario"] == {
        "fleet": "server-ws2008", "array": "midrange-2012", "function": "qcow2-linked", "method": "snapshot",
        "vms": 3, "ios": 120, "golden_images": 2, "arrivals": "closed", "queue_depth": 3,
        "cache_bytes": 34359738368.0, "cache_block_bytes": 4096, "seed": 0, "trace": "synthetic"}
    assert cli(*BASE, "--vms", "2", "--method", "thin", "--ios-per-vm", "40").err == ""


def test_the_progress_display_draws_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import io

    from rich.console import Console

    app = importlib.import_module("clonefleet.cli.app")  # the module (the package exports the typer app)

    screen = io.StringIO()
    monkeypatch.setattr(app, "err_console", Console(file=screen, force_terminal=True, width=100))
    with app.progress_display(True) as report:
        report("snapshot: T = 5684", 3, 0)
        report("draw the trace", 7, 10)
    assert "draw the trace" in screen.getvalue() and "7/10" in screen.getvalue()
    for enabled, terminal in ((False, True), (True, False)):
        screen = io.StringIO()
        monkeypatch.setattr(app, "err_console", Console(file=screen, force_terminal=terminal))
        with app.progress_display(enabled) as report:
            report("draw the trace", 1, 2)
        assert screen.getvalue() == ""


def test_the_cli_reaches_the_simulator_through_its_public_faces_only() -> None:
    source = Path(__file__).resolve().parents[2].joinpath("src/clonefleet/cli/sim_cmds.py").read_text()
    assert "clonefleet.sim." not in source and "from clonefleet import sim" in source


ROOT = Path(__file__).resolve().parents[2]


def _under_a_terminal(*args: str, timeout_s: float = 120.0) -> tuple[int, str, str]:
    """Run the CLI in a child whose stderr is a pseudo-terminal and whose stdout is a pipe, as a
    user's `clonefleet ... > out.json` on a terminal; return its status, stdout and what the
    terminal showed."""
    import os
    import select
    import subprocess
    import sys
    import time

    master, slave = os.openpty()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}", "TERM": "xterm-256color", "COLUMNS": "160"}
    env.pop("CI", None)
    env.pop("NO_COLOR", None)
    child = subprocess.Popen([sys.executable, "-m", "clonefleet", *args], stdout=subprocess.PIPE, stderr=slave,
                             stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            elif child.poll() is not None:
                break
        assert child.stdout is not None
        out = child.stdout.read().decode()
        code = child.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if child.poll() is None:
            child.kill()
        os.close(master)
    return code, out, shown.decode(errors="replace")


SIM_SMALL = (*BASE, "--vms", "20", "--method", "snapshot", "--golden-images", "1,2", "--ios-per-vm", "300")


def test_simulate_shows_its_progress_on_a_terminal_and_never_on_stdout() -> None:
    code, out, screen = _under_a_terminal(*SIM_SMALL)
    assert code == 0, screen
    # the stages, with the storm's size and its runs (side by side on the local cores)
    assert "draw the trace" in screen and "6,000 IOs, 20 VMs: 2 runs side by side" in screen
    assert "what GI replicas buy" in out and "draw the trace" not in out and "\x1b" not in out
    code, out, screen = _under_a_terminal(*SIM_SMALL, "--json")
    assert code == 0 and json.loads(out)["golden_images"] == [1, 2]
    assert "draw the trace" not in screen and "IOs" not in screen


def test_validate_shows_each_search_run_on_a_terminal() -> None:
    args = ("validate", "--fleet", "server-ws2008", "--array", "midrange-2012", "--ios-per-vm", "40")
    code, out, screen = _under_a_terminal(*args, "--functions", "thin,snapshot")
    assert code == 0, screen
    # each storm as it ends, named by its search's function, T and ratio; the runs still expected
    assert "thin: T = " in screen and "x nominal; search run 2 of about" in screen
    assert "snapshot: T = " in screen and "largest T = " in screen
    assert "model vs simulation" in out and "search run" not in out
    code, out, screen = _under_a_terminal(*args, "--functions", "thin", "--json")
    assert code == 0 and [m["function"] for m in json.loads(out)["methods"]] == ["thin"]
    assert "search run" not in screen


def test_quiet_silences_the_progress_per_command_and_for_every_command() -> None:
    for args in ((*SIM_SMALL, "--quiet"), ("--quiet", *SIM_SMALL)):
        code, out, screen = _under_a_terminal(*args)
        assert code == 0 and "what GI replicas buy" in out
        assert screen == ""


def widest(out: str) -> int:
    """The longest line of ``out``: at most the width the output was laid out for."""
    return max(len(line) for line in out.splitlines())


def test_more_gis_that_do_not_help_are_explained_with_the_processors(cli: Cli,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # wide enough for the table's one line per row
    r = cli("simulate", "--fleet", "desktop-win7", "--array", "allflash-2024", "--vms", "200", "--method",
            "snapshot", "--golden-images", "4,5", "--ios-per-vm", "500")
    assert r.code == 0, r.err
    header = next(line for line in r.out.splitlines() if "golden images" in line and "boot p95" in line)
    assert all(word in header for word in ("GI disks", "pool disks", "volumes", "processors", "limited by"))
    row5 = next(line for line in r.out.splitlines() if line.lstrip("│ ").startswith("5 "))
    assert "processors 100 %" in row5
    assert "5 GIs slower than 4" in r.out and "GIs 0, 2, 4 on processor 0" in r.out


def test_the_single_run_tables_explain_their_words_and_their_limit(cli: Cli) -> None:
    r = cli(*BASE, "--vms", "20", "--method", "snapshot", "--ios-per-vm", "300", "--golden-images", "1")
    assert r.code == 0, r.err
    text = " ".join(r.out.split())
    for words in ("servers: how many", "busiest server: share", "peak bin: its busy share",
                  "at least the mean", "nominal window", "boot IOs / A", "closed loop (each VM keeps"):
        assert words in text, words
    assert "what limits this storm: the " in text or "nothing saturates" in text


def test_the_cli_defaults_are_the_simulators() -> None:
    from clonefleet.cli import sim_cmds
    from clonefleet.sim import compare

    assert (sim_cmds.DEFAULT_SLACK, sim_cmds.STORM_IOS_PER_VM) == (compare.DEFAULT_SLACK, compare.DEFAULT_IOS_PER_VM)


def test_latency_percentiles_from_the_sketch_state_their_bound(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    args = (*BASE, "--vms", "20", "--method", "thin", "--ios-per-vm", "300", "--arrivals", "closed")
    exact = cli(*args, "--json")
    assert json.loads(exact.out)["latency_percentiles_relative_error"] == 0.0
    assert "sketch" not in cli(*args).out
    from clonefleet.sim import trace

    monkeypatch.setattr(trace, "EXACT_LATENCY_BYTES", 0)  # as a storm whose latencies outgrow the exact store
    doc = json.loads(cli(*args, "--json").out)
    bound = doc["latency_percentiles_relative_error"]
    assert 0 < bound < 1e-3
    want = json.loads(exact.out)["latency"]
    for q in ("median_s", "p95_s"):
        assert abs(doc["latency"][q] - want[q]) <= bound * want[q]
    text = " ".join(cli(*args).out.split())
    assert f"within {100 * bound:.3g} % of the exact value" in text


def test_the_simulator_tables_fit_80_columns(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    single = cli(*BASE, "--vms", "20", "--method", "snapshot", "--ios-per-vm", "300")
    assert single.code == 0, single.err
    assert widest(single.out) <= 80
    assert "boot time (s)" in single.out and "IO latency (ms)" in single.out and "busiest" in single.out
    replicas = cli(*BASE, "--vms", "20", "--method", "snapshot", "--ios-per-vm", "300", "--golden-images", "1,2,3")
    assert replicas.code == 0, replicas.err
    assert widest(replicas.out) <= 80
    for words in ("what GI replicas buy", "1 GI", "2 GIs", "3 GIs", "boot p95 (s)", "limited by"):
        assert words in replicas.out, words
    val = cli("validate", "--fleet", "server-ws2008", "--array", "midrange-2012", "--functions", "thin",
              "--ios-per-vm", "200")
    assert val.code == 0, val.err
    assert widest(val.out) <= 80
    assert "model vs simulation" in val.out and "largest T sim" in val.out


def test_the_validate_table_shows_the_json_figures_on_one_row_when_wide(cli: Cli,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    args = ("validate", "--fleet", "server-ws2008", "--array", "midrange-2012", "--functions", "thin",
            "--ios-per-vm", "200")
    (m,) = json.loads(cli(*args, "--json").out)["methods"]
    r = cli(*args)
    assert r.code == 0, r.err
    row = next(line for line in r.out.splitlines() if line.lstrip("│ ").startswith("thin "))
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[:3] == ["thin", str(m["model_max_vms"]), str(m["sim_max_vms"])]
