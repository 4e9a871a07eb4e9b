"""One composition of the model: g and S are computed once and every layer takes them from there.

Each test here failed before the composition was shared: the simulator left the qcow2 table bytes out
of S, and the four places that computed g disagreed when no GI can carry a clone.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from clonefleet.errors import UsageError
from clonefleet.planner import (
    evaluate,
    fleet_consumed_bytes,
    golden_images_for,
    per_clone_bytes,
    plan,
)
from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.provision.manifest import build_manifest, resolve_golden_images
from clonefleet.sim.arraymodel import allocated_bytes_per_clone, consumed_bytes
from clonefleet.sim.compare import model_golden_images
from clonefleet.sim.scenario import build_scenario
from clonefleet.sim.trace import generate_trace

FLEET = load_fleet("desktop-win7")
ARRAY = load_array("midrange-2012")
#: One volume's processor cannot serve even one desktop: k = 0, no number of GIs carries a clone.
STARVED = dataclasses.replace(ARRAY, volume_iops_limit=1.0)


def test_the_simulator_counts_the_qcow2_tables_the_planner_counts() -> None:
    fn = load_function("qcow2-linked")
    assert fn.table_bytes > 0
    trace = generate_trace(FLEET, 20, np.random.default_rng(3), ios_per_vm=None, seed=3)
    scenario = build_scenario(trace, FLEET, ARRAY, fn, golden_images=1, seed=3)
    per_clone = allocated_bytes_per_clone(scenario)
    s_sim = consumed_bytes(scenario, per_clone)
    # By hand, Eq. 3 with the clone's whole footprint: GI data + each clone's overhead, tables and C.
    ev = evaluate(FLEET, ARRAY, fn, 20)
    tables = float(ev.per_clone_bytes) - fn.clone_overhead_bytes - float(ev.per_vm_new_bytes)
    assert tables > 0
    by_hand = FLEET.gi_used_bytes + 20 * (fn.clone_overhead_bytes + tables) + float(per_clone.sum())
    assert s_sim == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("function", ["full", "thin", "thin-physical", "snapshot", "qcow2-linked", "reflink"])
def test_the_planners_s_is_the_one_composition(function: str) -> None:
    fn = load_function(function)
    ev = evaluate(FLEET, ARRAY, fn, 700)
    assert float(ev.consumed_bytes) == pytest.approx(
        float(fleet_consumed_bytes(FLEET, fn, ev.golden_images, 700, ev.per_vm_new_bytes)), rel=1e-12)
    # Full copies are T thick copies of the virtual size whatever the boot wrote.
    if function == "full":
        assert float(ev.consumed_bytes) == 700 * FLEET.gi_virtual_bytes
        assert float(per_clone_bytes(FLEET, fn, 1e9)) == FLEET.gi_virtual_bytes


def test_no_gi_carries_a_clone_one_answer_each_layer_reads_its_own_way(tmp_path) -> None:
    # One function answers (None); the planner reports the method as infeasible (no g, no S), the
    # simulator runs its storm on one GI per clone (the most GIs can do), the manifest refuses 'auto'.
    snap = load_function("snapshot")
    assert golden_images_for(FLEET, STARVED, snap, 50) is None
    assert golden_images_for(FLEET, STARVED, load_function("thin"), 50) == 1
    method = plan(FLEET, STARVED, 50, functions=["snapshot"]).method("snapshot")
    assert method.golden_images == 0 and method.consumed_bytes is None
    assert model_golden_images(FLEET, STARVED, snap, 50) == 50  # the simulator: one GI per clone


def test_golden_images_never_exceed_the_fleet() -> None:
    snap = load_function("snapshot")
    for vms in (1, 2, 3, 219, 220, 1000, 5000):
        g = golden_images_for(FLEET, ARRAY, snap, vms)
        assert g is not None and 1 <= g <= vms
        assert g == int(evaluate(FLEET, ARRAY, snap, vms).golden_images)


def test_auto_golden_images_of_a_manifest_are_the_planners(tmp_path) -> None:
    data = {"fleet": {"name": "f", "dest": str(tmp_path / "fleet"), "count": 1000, "preset": "desktop-win7",
                      "array": "midrange-2012"},
            "golden_image": {"path": str(tmp_path / "gi.img")},
            "clones": {"method": "snapshot", "golden_images": "auto"}}
    manifest = build_manifest(tmp_path / "m.toml", data)
    assert resolve_golden_images(manifest) == golden_images_for(FLEET, ARRAY, load_function("snapshot"), 1000)
    starved = tmp_path / "starved.toml"
    starved.write_text(_array_toml(volume_iops_limit=1), encoding="utf-8")
    manifest = build_manifest(tmp_path / "m.toml", {**data, "fleet": {**data["fleet"], "array": str(starved)}})
    with pytest.raises(UsageError, match="cannot serve even one clone"):
        resolve_golden_images(manifest)


def _array_toml(**changes: float) -> str:
    from importlib import resources

    text = (resources.files("clonefleet.presets") / "arrays" / "midrange-2012.toml").read_text(encoding="utf-8")
    for key, value in changes.items():
        head = f"[{key}]\nvalue = "
        start = text.index(head) + len(head)
        end = text.index("\n", start)
        text = text[:start] + str(value) + text[end:]
    return text


@pytest.mark.parametrize("function", ["full", "thin", "snapshot", "qcow2-linked"])
def test_every_field_of_an_evaluation_has_the_grids_shape(function: str) -> None:
    # A field that moves only some outputs (the GI's size: not T_max, not S of thin clones) still gives
    # every output the whole grid: T down the rows, the swept field across the columns.
    sizes = np.array([[100e9, 150e9, 200e9]])
    fleet = dataclasses.replace(FLEET, gi_virtual_bytes=sizes)
    ev = evaluate(fleet, ARRAY, load_function(function), np.array([[10.0], [100.0]]))
    for field in dataclasses.fields(ev):
        value = getattr(ev, field.name)
        assert value.shape[-2:] == (2, 3), field.name
    np.testing.assert_allclose(ev.full_copy_bytes[1], 100 * sizes[0])


def test_validate_of_a_method_no_gi_can_carry_compares_finite_figures() -> None:
    from clonefleet.sim import check_method

    check = check_method(FLEET, STARVED, load_function("snapshot"), ios_per_vm=20, capacity_vms=10)
    assert check.model_max_vms == 0 and check.max_vms_ratio is None  # the model carries no clone
    # S of model and simulation at the same g and T: finite, and within the trace's C from the model's
    assert check.golden_images == 10
    assert np.isfinite(check.model_consumed_bytes) and 0.8 < check.consumed_ratio < 1.25
