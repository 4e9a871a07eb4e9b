"""Calibration and comparison on real storms (qemu-storage-daemon + fio on linked qcow2 clones):
``clonefleet calibrate`` storms three sizes, probes the storage, writes presets that load back and
plan, and checks every size held out; ``clonefleet compare`` puts model, simulation and measurement
of one storm side by side. Nothing of the storms or the probe is left behind.

How close the predictions come is a measurement, not a test: benchmarks/bench_storm.py (``make bench``)
records it in docs/benchmarks.md."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import provision_fixtures as pf
import pytest
from test_storm import assert_nothing_left, private_tmp

import clonefleet.provision as engine
from clonefleet.backends import get_backend
from clonefleet.planner import storm_figures
from clonefleet.presets import FunctionPreset, load_array, load_fleet
from clonefleet.provision.manifest import Manifest
from clonefleet.provision.plan import provisioned_plan
from clonefleet.storm import StormRequest
from clonefleet.storm.calibrate import calibrate
from helpers import require_tool

qcow2_gi = pf.qcow2_gi  # a fixture
private_tmp = private_tmp  # a fixture

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, qcow2_gi: pf.GoldenImage) -> Manifest:
    require_tool("fio", "qemu-storage-daemon")
    m = pf.fleet_manifest(tmp_path_factory.mktemp("calibrate"), qcow2_gi.path, 8, method="snapshot",
                          writes={"bytes": "1 MiB", "extents": 16})
    engine.provision(m)
    return m


def test_calibrate_writes_presets_that_plan_and_checks_each_size_held_out(
        fleet: Manifest, private_tmp: Path, cli: Callable[..., object]) -> None:
    out = fleet.path.parent / "cal"
    cal = calibrate(fleet, (2, 4, 8), StormRequest(ios_per_vm=600, seed=3, out=out))
    assert [p.vms for p in cal.points] == [2, 4, 8]
    assert all(p.iops > 0 and p.boot_p95_s > 0 for p in cal.points)
    assert cal.storage_iops is not None and cal.storage_iops > 0  # fio alone on the fleet's folder
    assert not list(fleet.dest.glob(".clonefleet-probe-*"))  # the probe's folder and file are gone
    # the presets load back to the fitted figures, every figure sourced
    array, fl = load_array(cal.array_file), load_fleet(cal.fleet_file)
    assert float(array.processor_iops) == pytest.approx(cal.fit.path_iops, rel=1e-12)
    assert float(fl.host_iops) == pytest.approx(cal.fit.host_iops, rel=1e-12)
    assert float(fl.boot_ios) == pytest.approx(600)
    assert all("calibrated from storms of 2, 4, 8 VMs" in (f.source or "") for f in array.sources.values())
    # each size held out: the model's figures are storm_figures of the presets fitted without it
    assert [c.vms for c in cal.checks] == [2, 4, 8]
    for c in cal.checks:
        assert c.vms not in c.fit.sizes
        assert c.model.iops == pytest.approx(min(c.vms * c.fit.host_iops, c.fit.path_iops), rel=1e-6)
        assert all(math.isfinite(e) for e in c.errors().values())
    saved = json.loads(Path(cal.array_file).with_name(Path(cal.array_file).name.replace(
        "calibrated-array-", "calibration-").replace(".toml", ".json")).read_text())
    assert [h["vms"] for h in saved["held_out"]] == [2, 4, 8] and saved["storms"][2]["vms"] == 8
    # plan with the calibrated presets: the model at a size no storm ran
    res = cli("plan", "--array", cal.array_file, "--fleet", cal.fleet_file, "--vms", "16", "--json")
    assert res.code == 0, res.err  # type: ignore[attr-defined]
    assert json.loads(res.out)["vms"] == 16  # type: ignore[attr-defined]
    figures = storm_figures(fl, array, model_function(fleet), 16)
    assert figures.iops == pytest.approx(min(16 * cal.fit.host_iops, cal.fit.path_iops), rel=1e-6)
    assert_nothing_left(fleet, private_tmp)

    # compare: the newest storm (the 8-VM one) against the calibration saved beside it
    plot = fleet.path.parent / "compare.png"
    res = cli("compare", str(fleet.path), "--storm", cal.points[-1].saved_to, "--plot", str(plot), "--json")
    assert res.code == 0, res.err  # type: ignore[attr-defined]
    data = json.loads(res.out)  # type: ignore[attr-defined]
    assert data["array"] == cal.array_file and data["vms"] == 8
    rows = {r["metric"]: r for r in data["metrics"]}
    storm = json.loads(Path(str(cal.points[-1].saved_to)).read_text())
    assert rows["iops"]["measured"] == pytest.approx(storm["fleet_figures"]["iops"])
    assert rows["iops"]["model"] == pytest.approx(min(8 * cal.fit.host_iops, cal.fit.path_iops), rel=1e-6)
    assert rows["boot_p95_s"]["simulation"] > 0 and rows["iops"]["simulation"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = cli("compare", str(fleet.path), "--storm", cal.points[-1].saved_to, "--plot", str(plot))
    assert res.code == 2 and "plot" in res.err  # type: ignore[attr-defined]  # never overwritten
    assert_nothing_left(fleet, private_tmp)


def model_function(m: Manifest) -> FunctionPreset:
    with provisioned_plan(m, get_backend(m.backend), "test") as plan:
        return plan.recipe.model_function


def test_bad_sizes_and_storm_files_are_one_line(fleet: Manifest, private_tmp: Path,
                                                cli: Callable[..., object]) -> None:
    for args, words in ((("--sizes", "8"), "at least two"), (("--sizes", "2,64"), "from 1 to the fleet's 8"),
                        (("--sizes", "two,four"), "separated by commas")):
        res = cli("calibrate", str(fleet.path), *args)
        assert res.code == 2 and words in res.err and "Traceback" not in res.err, res.err  # type: ignore[attr-defined]
    bad = fleet.path.parent / "not-a-storm.json"
    bad.write_text("{}")
    res = cli("compare", str(fleet.path), "--storm", str(bad))
    assert res.code == 2 and "not a storm result" in res.err  # type: ignore[attr-defined]
    assert_nothing_left(fleet, private_tmp)
