"""presets derive and plan --trace: the file round-trips, the plan equals the file's, bad traces are one line."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from clonefleet.presets import load_fleet
from clonefleet.sim import generate_trace
from clonefleet.sim.trace import Arrivals
from clonefleet.sim.traceio import write_fio_iologs
from conftest import CliResult

Cli = Callable[..., CliResult]


@pytest.fixture(scope="module")
def iologs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("trace") / "boot"
    trace = generate_trace(load_fleet("server-linux"), 3, np.random.default_rng(5), arrivals=Arrivals.OPEN)
    write_fio_iologs(trace, folder)
    return folder


def test_derive_writes_a_preset_that_loads_back(cli: Cli, iologs: Path, tmp_path: Path) -> None:
    out = tmp_path / "my-fleet.toml"
    r = cli("presets", "derive", str(iologs), "-o", str(out), "--gi-size", "20GiB", "--gi-used", "2GiB", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["wrote"] == str(out) and doc["vms"] == 3 and doc["timed"] is True
    fleet = load_fleet(out)
    figures = {f["key"]: f for f in doc["figures"]}
    assert figures["boot_ios"]["value"] == fleet.boot_ios == 6000
    assert figures["gi_size"]["value"] == fleet.gi_virtual_bytes == 20 * 2**30
    assert "sha256" in figures["boot_write_bytes"]["source"]
    again = cli("presets", "derive", str(iologs), "-o", str(out))
    assert again.code == 2 and "--force" in again.err and len(again.err.strip().splitlines()) == 1
    table = cli("presets", "derive", str(iologs), "-o", str(out), "--force")
    assert table.code == 0, table.err
    flat = "".join(table.out.split())  # long paths wrap at the console's width
    assert "boot_write_extents" in flat and "derivedfrom" in flat and f"wrote{out}" in flat


def test_plan_from_a_trace_equals_the_plan_of_its_derived_file(cli: Cli, iologs: Path, tmp_path: Path) -> None:
    out = tmp_path / "boot.toml"
    assert cli("presets", "derive", str(iologs), "-o", str(out)).code == 0
    by_file = json.loads(cli("plan", "--fleet", str(out), "--array", "midrange-2012", "--vms", "500", "--json").out)
    r = cli("plan", "--trace", str(iologs), "--array", "midrange-2012", "--vms", "500", "--json")
    assert r.code == 0, r.err
    by_trace = json.loads(r.out)
    keys = ("method", "golden_images", "max_vms", "consumed_bytes")
    assert [[m[k] for k in keys] for m in by_trace["methods"]] == [[m[k] for k in keys] for m in by_file["methods"]]
    title = cli("plan", "--trace", str(iologs), "--array", "midrange-2012", "--vms", "500")
    flat = "".join(title.out.split())  # the title wraps at the console's width
    assert title.code == 0 and "".join(f"derived from trace {iologs}".split()) in flat


@pytest.mark.parametrize("args", [[], ["--fleet", "server-linux", "--trace", "x"]])
def test_plan_takes_exactly_one_of_fleet_or_trace(cli: Cli, args: list[str]) -> None:
    r = cli("plan", "--array", "midrange-2012", *args)
    assert r.code == 2 and "exactly one of --fleet" in r.err


def _bad(tmp_path: Path, kind: str) -> str:
    path = tmp_path / kind
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "gzip-damaged":
        path.write_bytes(gzip.compress(b"fio version 2 iolog\n" * 1000)[:60])
    elif kind == "gzip-binary":
        path.write_bytes(gzip.compress(np.random.default_rng(0).bytes(4096)))
    elif kind == "folder":
        path.mkdir()
    elif kind == "device":
        return "/dev/zero"
    return str(path)


@pytest.mark.parametrize(("kind", "expected"), [("empty", "is empty"), ("random", "not a text file"),
                                                ("gzip-damaged", "damaged or truncated gzip"),
                                                ("gzip-binary", "not a text file"),
                                                ("folder", "no *.iolog"), ("device", "device")])
def test_a_bad_trace_is_one_line_and_exit_2(cli: Cli, tmp_path: Path, kind: str, expected: str) -> None:
    r = cli("presets", "derive", _bad(tmp_path, kind), "-o", str(tmp_path / "o.toml"))
    assert r.code == 2 and expected in r.err and len(r.err.strip().splitlines()) == 1
    assert not (tmp_path / "o.toml").exists()


def test_an_empty_fio_log_has_nothing_to_derive(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "e.iolog").write_text("fio version 2 iolog\n", encoding="utf-8")
    r = cli("presets", "derive", str(tmp_path / "e.iolog"), "-o", str(tmp_path / "o.toml"))
    assert r.code == 2 and "no read or write IOs" in r.err


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-m", "clonefleet", "presets", "derive", str(fifo), "-o",
                           str(tmp_path / "o.toml")], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "FIFO" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_preset_written_where_nothing_can_be_written_is_one_line_and_exit_2() -> None:
    # /proc refuses new files even to root: the copy cannot be written, and says so in one line.
    r = subprocess.run([sys.executable, "-m", "clonefleet", "presets", "copy", "allflash-2024",
                        "/proc/clonefleet-test.toml"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "/proc/clonefleet-test.toml: cannot be written" in r.stderr and "Traceback" not in r.stderr


def test_simulate_replays_the_shipped_boot_for_a_fleet_and_derives_the_fleet_when_none_is_given(cli: Cli) -> None:
    r = cli("simulate", "--trace", "debian-boot", "-a", "midrange-2012", "-m", "snapshot", "-t", "300",
            "--start-spread", "10", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    run = doc["runs"][0] if "runs" in doc else doc
    assert run["scenario"]["fleet"] == "debian-boot" and run["scenario"]["vms"] == 300
    assert "each of 300 VMs replays its boot, start spread 10 s" in run["scenario"]["trace"]
    assert run["ios"] == 300 * load_fleet("debian-boot").boot_ios
    neither = cli("simulate", "-a", "midrange-2012", "-m", "snapshot", "-t", "10")
    assert neither.code == 2 and "give --fleet" in neither.err


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_a_bad_order_jitter_is_one_line(cli: Cli, value: str) -> None:
    r = cli("simulate", "--trace", "debian-boot", "-a", "midrange-2012", "-m", "snapshot", "-t", "1",
            "--order-jitter", value)
    assert r.code == 2 and "--order-jitter" in r.err and len(r.err.strip().splitlines()) == 1
