"""Model vs simulation vs measurement for one storm (``clonefleet compare``).

The storm's saved JSON says what was asked (:class:`~clonefleet.storm.workload.WorkloadSpec`); the
very same boots are drawn again from it and checked against the storm's IO count. Then, for the same
VMs, GIs and storage function:

- **the model**: :func:`clonefleet.planner.storm_figures` (Eq. 2 read as a throughput) and the
  occupancy formula for what the boots allocate;
- **the simulation**: the simulator on the very trace the storm replayed, closed loop at its queue
  depth (:func:`clonefleet.storm.calibrate.simulate`);
- **the measurement**: the storm's own figures.

The array and fleet presets are the newest calibration beside the storm, else beside the manifest
(``clonefleet calibrate``), unless given; without one, the manifest's own presets, with a note that they
describe another array.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clonefleet.backends import get_backend
from clonefleet.errors import UsageError
from clonefleet.planner import evaluate, storm_figures
from clonefleet.presets import ArrayPreset, FleetPreset, Method, load_array, load_fleet
from clonefleet.provision.manifest import Manifest
from clonefleet.provision.plan import provisioned_plan
from clonefleet.storage.files import existing_file
from clonefleet.storage.goldimage import gi_used_bytes
from clonefleet.storm.calibrate import sim_figures, simulate, storm_fleet
from clonefleet.storm.workload import WorkloadSpec

#: The figures compared, in order: key, label, unit.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("iops", "throughput", "IOPS"),
    ("boot_p50_s", "boot time p50", "s"),
    ("boot_p95_s", "boot time p95", "s"),
    ("boot_max_s", "boot time max", "s"),
    ("allocated_bytes", "allocated by the boots", "bytes"),
)


@dataclass(frozen=True)
class Comparison:
    """The three sources side by side, per metric (None: that source has no such figure)."""

    storm_file: str
    array: str
    fleet: str
    vms: int
    method: str
    golden_images: int
    model: dict[str, float | None]
    simulation: dict[str, float | None]
    measured: dict[str, float | None]
    sim_boot_s: tuple[float, ...]
    measured_boot_s: tuple[float, ...]
    model_bound: str
    notes: tuple[str, ...]

    def error(self, source: str, key: str) -> float | None:
        """(source - measured) / measured, or None."""
        got = getattr(self, source)[key]
        ref = self.measured[key]
        if got is None or ref is None or not ref:
            return None
        return float(got) / float(ref) - 1

    def to_dict(self) -> dict[str, object]:
        return {"kind": "clonefleet comparison", "storm": self.storm_file, "array": self.array, "fleet": self.fleet,
                "vms": self.vms, "method": self.method, "golden_images": self.golden_images,
                "model_bound": self.model_bound,
                "metrics": [{"metric": key, "label": label, "unit": unit, "model": self.model[key],
                             "simulation": self.simulation[key], "measured": self.measured[key],
                             "model_error": self.error("model", key), "simulation_error": self.error("simulation", key)}
                            for key, label, unit in METRICS],
                "notes": list(self.notes)}


def newest(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.glob(pattern))
    return found[-1] if found else None


def read_storm(path: Path) -> dict[str, object]:
    """A storm JSON that ``clonefleet storm`` saved (fio mode): refused in one line otherwise."""
    path = existing_file(path, "storm result")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"storm result {path}: not JSON ({exc}); give a file 'clonefleet storm' saved") from None
    if not isinstance(data, dict) or data.get("kind") != "clonefleet storm":
        raise UsageError(f"storm result {path}: not a storm result; give a file 'clonefleet storm' saved")
    if data.get("mode", "fio") != "fio" or not isinstance(data.get("request"), dict):
        raise UsageError(f"storm result {path}: a --boot storm or one saved before storms recorded their request; "
                         "compare needs a fio storm saved by this version (run 'clonefleet storm' again)")
    return data


def compare(manifest: Manifest, storm_file: Path | None = None, array: str | None = None,
            fleet: str | None = None) -> Comparison:
    """Model, simulation and measurement of one storm of ``manifest``'s fleet (module docstring)."""
    folder = manifest.path.parent
    storm_path = storm_file or newest(folder, f"storm-{manifest.name}-*.json")
    if storm_path is None:
        raise UsageError(f"no storm of fleet {manifest.name} beside {manifest.path}; run 'clonefleet storm "
                         f"{manifest.path}' first, or give --storm FILE")
    data = read_storm(storm_path)
    notes: list[str] = []
    # the newest calibration beside the storm (calibrate --out keeps them together), else beside the manifest
    places = dict.fromkeys([storm_path.parent, folder])
    array_src = array or _str(_newest_of(places, f"calibrated-array-{manifest.name}-*.toml"))
    fleet_src = fleet or _str(_newest_of(places, f"calibrated-fleet-{manifest.name}-*.toml"))
    array_preset: ArrayPreset = load_array(array_src or manifest.array)
    if array_src is None:
        notes.append(f"array {manifest.array}: the manifest's preset, not this machine's; run 'clonefleet calibrate' "
                     "for an array the storms measured")
    backend = get_backend(manifest.backend)
    with provisioned_plan(manifest, backend, "compare") as plan:
        gi, g, function = plan.gi, plan.golden_images, plan.recipe.model_function
    request = data["request"]
    assert isinstance(request, dict)
    vms = int(request.get("vms") or 0)
    spec = WorkloadSpec.from_dict(request, f"storm result {storm_path}")
    workload = spec.draw(manifest, gi, vms)
    figures = data.get("fleet_figures")
    assert isinstance(figures, dict)
    if workload.trace.ios != figures.get("ios"):
        raise UsageError(f"storm result {storm_path}: its boots ({figures.get('ios')} IOs) are not what the fleet "
                         f"draws now ({workload.trace.ios} IOs): the manifest or its GI changed since the storm")
    if fleet_src is not None:
        fleet_preset: FleetPreset = load_fleet(fleet_src)
        notes.append(f"fleet: A = {float(fleet_preset.host_iops):,.0f} IOPS from {fleet_src}; the other figures "
                     "from the storm's own boots")
        a = float(fleet_preset.host_iops)
    else:
        a = float(load_fleet(manifest.preset).host_iops)
        notes.append(f"fleet: A = {a:g} IOPS, the preset {manifest.preset}'s boot rate (no calibration): a storm's VMs "
                     "run as fast as the storage lets them, so the model's throughput is A times the VMs")
    storm_fleet_preset, _ = storm_fleet(workload, gi.virtual_bytes, gi_used_bytes(gi), a,
                                        str(data.get("started_at", ""))[:10], f"storm {storm_path.name}")
    gis = min(g, vms) if function.method is Method.SNAPSHOT else 1
    model = storm_figures(storm_fleet_preset, array_preset, function, vms, gis)
    per_clone = float(evaluate(storm_fleet_preset, array_preset, function, vms).per_vm_new_bytes)
    sim = simulate(workload, storm_fleet_preset, array_preset, function, gis)
    sim_iops, sim_p95 = sim_figures(sim)
    boot = figures.get("boot_s")
    assert isinstance(boot, dict)
    rows = data.get("vms")
    measured_boots = tuple(float(v["boot_s"]) for v in rows if isinstance(v, dict)) if isinstance(rows, list) else ()
    allocated = figures.get("allocated_bytes")
    if function.method is not Method.FULL and isinstance(allocated, int) and \
            allocated < 0.5 * sim.per_clone_new_mean_bytes * vms:
        notes.append("the storm allocated less than half of what its boots write anew: the clones already held "
                     "these writes (an earlier storm on them); provision fresh clones to compare capacity")
    if float(spec.start_spread_s) > 0:
        notes.append(f"VMs powered on over {spec.start_spread_s:g} s: the model assumes they start together")
    return Comparison(
        storm_file=str(storm_path), array=array_src or manifest.array, fleet=fleet_src or manifest.preset, vms=vms,
        method=function.method.value, golden_images=gis,
        model={"iops": model.iops, "boot_p50_s": model.boot_s, "boot_p95_s": model.boot_s,
               "boot_max_s": model.boot_s, "allocated_bytes": per_clone * vms},
        simulation={"iops": sim_iops, "boot_p50_s": float(np.quantile(sim.boot_s, 0.5)), "boot_p95_s": sim_p95,
                    "boot_max_s": float(np.max(sim.boot_s)), "allocated_bytes": sim.per_clone_new_mean_bytes * vms},
        measured={"iops": _num(figures.get("iops")), "boot_p50_s": _num(boot.get("p50")),
                  "boot_p95_s": _num(boot.get("p95")), "boot_max_s": _num(boot.get("max")),
                  "allocated_bytes": _num(allocated)},
        sim_boot_s=tuple(float(x) for x in sim.boot_s), measured_boot_s=measured_boots, model_bound=model.bound,
        notes=tuple(notes))


def _newest_of(folders: dict[Path, None], pattern: str) -> Path | None:
    return next((p for p in (newest(f, pattern) for f in folders) if p is not None), None)


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
