"""clonefleet report MANIFEST on a real fleet: 6 linked qcow2 clones provisioned and stormed (fio on
qemu-storage-daemon NBD exports); the report puts the storm beside the model and the simulation, as
``clonefleet compare`` does, and draws the comparison."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import provision_fixtures as pf
import pytest

import clonefleet.provision as engine
from clonefleet.report.build import report_from_manifest
from clonefleet.report.render import Format, render
from clonefleet.storm import StormRequest, run_storm
from conftest import CliResult
from helpers import require_tool

qcow2_gi = pf.qcow2_gi  # a fixture

pytestmark = pytest.mark.backend


def test_a_stormed_fleets_report_compares_the_storm_with_the_model(tmp_path: Path, qcow2_gi: pf.GoldenImage,
                                                                   cli: Callable[..., CliResult]) -> None:
    require_tool("fio", "qemu-storage-daemon")
    m = pf.fleet_manifest(tmp_path, qcow2_gi.path, 6, method="snapshot", writes={"bytes": "1 MiB", "extents": 16})
    engine.provision(m)
    storm = run_storm(m, StormRequest(ios_per_vm=800, seed=3))
    report = report_from_manifest(m.path, simulate=False)
    assert report.fleet is not None and report.plan.vms == 6
    assert [s.file for s in report.fleet.storms] == [storm.saved_to]
    cmp = report.fleet.comparison
    assert cmp is not None, report.fleet.comparison_note
    assert cmp.measured["iops"] == pytest.approx(storm.iops) and cmp.vms == 6
    assert report.commands["compare"].startswith(f"clonefleet compare {m.path} --storm {storm.saved_to}")
    html = render(report, Format.HTML)
    assert 'id="comparison-table"' in html and 'id="figure-comparison"' in html
    assert "model vs simulation vs measurement" in html
    assert "| throughput |" in render(report, Format.MARKDOWN)
    out = tmp_path / "report.html"
    r = cli("report", str(m.path), "-o", str(out), "--no-simulate", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["wrote"] == str(out) and "comparison-table" in out.read_text()
    r = cli("report", str(m.path), "--figure", "comparison", "-o", str(tmp_path / "cmp.png"))
    assert r.code == 0, r.err
    assert (tmp_path / "cmp.png").read_bytes()[:4] == b"\x89PNG"
