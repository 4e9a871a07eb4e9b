"""What a report says, gathered before anything is drawn or rendered (``clonefleet report``).

:func:`report_from_presets` answers the planner's question for a fleet and an array given as presets;
:func:`report_from_manifest` does the same for a provisioned fleet (its manifest names the presets and the
size) and adds the storms saved beside the manifest, with model vs simulation vs measurement for the
newest one. Both return a :class:`Report`: plain data (the plan, the model over fleet sizes, one
simulated storm, the preset figures used with their sources, the command that reproduces each figure)
that :mod:`clonefleet.report.render` turns into HTML or Markdown. Seconds and bytes throughout.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from clonefleet.errors import UsageError
from clonefleet.lifetime import Lifetime as LifeHorizon
from clonefleet.planner import DEFAULT_FUNCTIONS, PLANNER_FIGURES, RESOURCES, Plan, evaluate, plan, resolve_functions
from clonefleet.presets import (
    ArrayPreset,
    FigureView,
    FleetPreset,
    FunctionPreset,
    Method,
    figures_of,
    load_array,
    load_fleet,
    preset_label,
)

if TYPE_CHECKING:
    from clonefleet.provision.manifest import Manifest
    from clonefleet.sim.results import SimResult
    from clonefleet.storm.compare import Comparison

FloatArray = npt.NDArray[np.float64]

#: The simulated storm's budget of IOs (all VMs together): each VM's boot is shortened to fit it, with
#: the same mix, so a report takes seconds; ``--sim-ios`` raises it (the whole boot: minutes).
DEFAULT_SIM_IOS = 2_000_000
#: Larger fleets are not simulated in a report (a line says how to simulate them).
MAX_SIM_VMS = 100_000
#: Fewest IOs per simulated boot: below that a boot has no mix left to speak of.
MIN_SIM_IOS_PER_VM = 10
#: Points of the model over fleet sizes (log-spaced, the asked size among them).
GROWTH_POINTS = 240


@dataclass(frozen=True)
class PresetSection:
    """One preset the report used: every figure of its file with its source, and which the plan uses."""

    kind: str  # fleet, array or function
    name: str
    label: str  # as the plan names it (and where it came from when a file shadows a shipped name)
    given: str  # as the user gave it (a name or a path)
    description: str
    figures: tuple[FigureView, ...]
    used_by_plan: frozenset[str]  # figure keys the planner reads (the others feed the simulator)


@dataclass(frozen=True)
class Growth:
    """The model over fleet sizes T, per storage function: S and the busiest resource's load."""

    vms: FloatArray  # T [VMs], increasing
    consumed_bytes: dict[str, FloatArray]  # function -> S [bytes] (NaN where no GI count carries a clone)
    peak_load: dict[str, FloatArray]  # function -> load / capacity of the busiest resource (1.0 = saturated)
    max_vms: dict[str, int]  # function -> T_max (Eq. 2)
    methods: dict[str, str]  # function -> method (full, thin, snapshot)


@dataclass(frozen=True)
class Simulation:
    """One simulated storm of the recommended function, or why there is none."""

    function: str
    ios_per_vm: int | None  # the shortened boot's IOs (None: the fleet's whole boot)
    boot_ios: float  # the fleet's whole boot [IOs]
    result: SimResult | None
    skipped: str | None  # why no storm was simulated


@dataclass(frozen=True)
class StormSummary:
    """One storm saved beside the manifest, as its JSON says it (seconds, bytes, IOPS)."""

    file: str
    started_at: str
    mode: str  # fio or boot
    vms: int
    iops: float | None
    boot_p50_s: float | None
    boot_p95_s: float | None
    boot_max_s: float | None
    allocated_bytes: float | None


@dataclass(frozen=True)
class FleetSection:
    """A provisioned fleet: its manifest, its storms and, for the newest fio storm, the comparison."""

    manifest: str
    name: str
    backend: str
    method: str
    count: int
    golden_images: str  # a number, or "auto"
    gi: str
    storms: tuple[StormSummary, ...]
    comparison: Comparison | None
    comparison_note: str | None  # why there is no comparison


#: The horizon a report draws S over (``plan --days``): a quarter of use, clones never refreshed.
LIFE_DAYS = 90


@dataclass(frozen=True)
class Lifetime:
    """S over the fleet's life: the plan over :data:`LIFE_DAYS` days of use (the capacity-over-time model,
    ``plan --days``), with the presets it is drawn from; per method S at day 0 and at its peak."""

    plan: Plan
    fleet: FleetPreset
    array: ArrayPreset

    @property
    def note(self) -> str | None:
        """Why the curves are flat, when the fleet declares no daily writes."""
        if float(self.fleet.daily_write_bytes) > 0 or float(self.fleet.swap_bytes) > 0:
            return None
        return (f"fleet {self.fleet.name} declares no daily writes (daily_write_bytes = 0): by the model its clones "
                "do not grow after the first boot; give the daily_write_* figures of your desktops in the preset "
                "(desktop-win10 and desktop-linux carry sourced examples)")

    def rows(self) -> list[tuple[str, float | None, float | None, int | None]]:
        """(function, S stored at day 0, S stored at its peak, the day of the peak) per method: after the array's
        data reduction (Eq. G5), S itself on an array that reduces nothing."""
        return [(m.function, m.reduced_consumed_bytes, m.peak_reduced_consumed_bytes, m.peak_day)
                for m in self.plan.methods]


@dataclass(frozen=True)
class Report:
    """Everything one report shows; :mod:`clonefleet.report.render` lays it out."""

    question: str
    plan: Plan
    fleet_label: str
    array_label: str
    presets: tuple[PresetSection, ...]
    growth: Growth
    simulation: Simulation
    lifetime: Lifetime | None
    fleet: FleetSection | None
    commands: dict[str, str]  # figure or table name -> the command that reproduces it
    generated_at: str
    version: str
    notes: tuple[str, ...] = field(default=())

    @property
    def recommended(self) -> str | None:
        return self.plan.recommended


def _quote(text: str | Path) -> str:
    return shlex.quote(str(text))


def report_command(args: Sequence[str]) -> str:
    """``clonefleet`` followed by ``args``, each quoted for a POSIX shell."""
    return " ".join(["clonefleet", *(_quote(a) for a in args)])


def growth_of(fleet: FleetPreset, array: ArrayPreset, functions: Sequence[FunctionPreset], vms: int) -> Growth:
    """The model from 1 VM to well past ``vms`` and past every function's T_max (log-spaced, ``vms`` included)."""
    limits = [float(evaluate(fleet, array, f, vms).max_vms) for f in functions]
    finite = [t for t in limits if math.isfinite(t) and t >= 1]
    top = max([10.0 * vms, *(2.0 * t for t in finite)])
    top = min(top, 1e13)
    grid = np.unique(np.concatenate([np.round(np.geomspace(1.0, top, GROWTH_POINTS)), [float(vms)]]))
    consumed: dict[str, FloatArray] = {}
    peak: dict[str, FloatArray] = {}
    for f in functions:
        ev = evaluate(fleet, array, f, grid)
        s = np.where(np.isfinite(ev.golden_images), ev.consumed_bytes, np.nan)
        consumed[f.name] = np.asarray(s, dtype=np.float64)
        peak[f.name] = np.asarray(np.max(ev.utilisation, axis=0), dtype=np.float64)
    p = plan(fleet, array, vms, list(functions))
    return Growth(vms=grid, consumed_bytes=consumed, peak_load=peak,
                  max_vms={m.function: m.max_vms for m in p.methods},
                  methods={m.function: m.method for m in p.methods})


def sim_ios_per_vm(fleet: FleetPreset, vms: int, budget_ios: int) -> int | None:
    """IOs per simulated boot for ``vms`` VMs within ``budget_ios`` (None: the whole boot fits)."""
    whole = int(math.ceil(float(fleet.boot_ios)))
    per_vm = budget_ios // vms
    if per_vm >= whole:
        return None
    return max(MIN_SIM_IOS_PER_VM, per_vm)


def simulate_for(fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset, vms: int,
                 budget_ios: int, enabled: bool = True) -> Simulation:
    """A closed-loop storm of ``vms`` clones by ``function`` (seed 0, the model's GIs), boots shortened to
    the budget; None with the reason when the fleet is too large or simulation was turned off."""
    boot_ios = float(fleet.boot_ios)
    if not enabled:
        return Simulation(function.name, None, boot_ios, None, "not simulated (--no-simulate)")
    if vms > MAX_SIM_VMS:
        return Simulation(function.name, None, boot_ios, None,
                          f"not simulated: {vms:,} VMs is more than a report simulates ({MAX_SIM_VMS:,}); run "
                          "the command below for a storm of that size (it may take hours)")
    from clonefleet.sim import run_storm

    ios = sim_ios_per_vm(fleet, vms, budget_ios)
    storm = run_storm(fleet, array, function, vms, seed=0, ios_per_vm=ios)
    return Simulation(function.name, ios, boot_ios, storm.runs[0], None)


def lifetime_section(fleet: FleetPreset, array: ArrayPreset, vms: int,
                     functions: Sequence[FunctionPreset]) -> Lifetime:
    """S over :data:`LIFE_DAYS` days of use, refresh never (the worst case: every clone keeps growing)."""
    return Lifetime(plan(fleet, array, vms, functions, life=LifeHorizon(days=LIFE_DAYS)), fleet, array)


def _preset_sections(used: Sequence[tuple[str, str, FleetPreset | ArrayPreset | FunctionPreset]]
                     ) -> tuple[PresetSection, ...]:
    sections = []
    for kind, given, record in used:
        keys = PLANNER_FIGURES[kind]
        if isinstance(record, FunctionPreset) and record.method is Method.FULL:
            keys = ()  # a full copy's figures change nothing it is planned by
        sections.append(PresetSection(kind, record.name, preset_label(kind, given, record.name), given,
                                      record.description, tuple(figures_of(record)), frozenset(keys)))
    return tuple(sections)


def _question(vms: int, fleet_label: str, array_label: str) -> str:
    return (f"Which way of cloning {vms:,} VMs of {fleet_label} on {array_label} uses the least capacity while "
            "every VM still boots in time, and how many golden-image copies does it take?")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clonefleet")
    except PackageNotFoundError:
        return "unknown"


def _simulated_function(p: Plan, functions: Sequence[FunctionPreset]) -> FunctionPreset:
    """The recommended function; when none holds, the one that carries the most VMs."""
    name = p.recommended or max(p.methods, key=lambda m: m.max_vms).function
    return next(f for f in functions if f.name == name)


def _base(fleet: FleetPreset, array: ArrayPreset, fleet_given: str, array_given: str, vms: int,
          function_names: Sequence[str], commands_base: list[str], simulate: bool, sim_budget_ios: int,
          fleet_label: str | None = None) -> tuple[Report, list[FunctionPreset]]:
    functions = resolve_functions(list(function_names))
    p = plan(fleet, array, vms, functions)
    f_label = fleet_label or preset_label("fleet", fleet_given, fleet.name)
    a_label = preset_label("array", array_given, array.name)
    used: list[tuple[str, str, FleetPreset | ArrayPreset | FunctionPreset]] = [
        ("fleet", fleet_given, fleet), ("array", array_given, array),
        *(("function", name, f) for name, f in zip(function_names, functions, strict=True))]
    chosen = _simulated_function(p, functions)
    sim = simulate_for(fleet, array, chosen, vms, sim_budget_ios, simulate)
    functions_arg = ",".join(function_names)
    plan_args = ["plan", "--fleet", fleet_given, "--array", array_given, "--vms", str(vms),
                 "--functions", functions_arg]
    sim_args = ["simulate", "--fleet", fleet_given, "--array", array_given, "--vms", str(vms), "--method",
                chosen.name, "--seed", "0"]
    if sim.ios_per_vm is not None:
        sim_args += ["--ios-per-vm", str(sim.ios_per_vm)]
    commands = {
        "plan": report_command([*plan_args, "--json"]),
        "capacity": report_command([*commands_base, "--figure", "capacity", "-o", "capacity.svg"]),
        "growth": report_command([*commands_base, "--figure", "growth", "-o", "growth.svg"]),
        "lifetime": report_command([*plan_args, "--days", str(LIFE_DAYS), "--plot", "life.png"]),
        "simulation": report_command([*sim_args, "--plots", "sim"]),
        "report": report_command([*commands_base, "-o", "report.html"]),
        "sources": report_command(["presets", "show", fleet_given]) + "; "
        + report_command(["presets", "show", array_given]),
    }
    report = Report(
        question=_question(vms, f_label, a_label), plan=p, fleet_label=f_label, array_label=a_label,
        presets=_preset_sections(used), growth=growth_of(fleet, array, functions, vms), simulation=sim,
        lifetime=lifetime_section(fleet, array, vms, functions), fleet=None, commands=commands,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), version=_version())
    return report, functions


def report_from_presets(fleet: str, array: str, vms: int, functions: Sequence[str] = DEFAULT_FUNCTIONS, *,
                        simulate: bool = True, sim_budget_ios: int = DEFAULT_SIM_IOS) -> Report:
    """The report of ``vms`` clones of preset ``fleet`` on preset ``array`` (names or TOML paths)."""
    base = ["report", "--fleet", fleet, "--array", array, "--vms", str(vms), "--functions", ",".join(functions)]
    report, _ = _base(load_fleet(fleet), load_array(array), fleet, array, vms, functions, base, simulate,
                      sim_budget_ios)
    return report


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def read_storm_summary(path: Path) -> StormSummary | None:
    """A storm JSON's figures, or None when the file is not a storm 'clonefleet storm' saved."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("kind") != "clonefleet storm":
        return None
    figures = data.get("fleet_figures") if isinstance(data.get("fleet_figures"), dict) else {}
    assert isinstance(figures, dict)
    boot = figures.get("boot_s") if isinstance(figures.get("boot_s"), dict) else {}
    assert isinstance(boot, dict)
    vms = figures.get("vms")
    return StormSummary(file=str(path), started_at=str(data.get("started_at", "")), mode=str(data.get("mode", "fio")),
                        vms=vms if isinstance(vms, int) else 0, iops=_num(figures.get("iops")),
                        boot_p50_s=_num(boot.get("p50")), boot_p95_s=_num(boot.get("p95")),
                        boot_max_s=_num(boot.get("max")), allocated_bytes=_num(figures.get("allocated_bytes")))


def _fleet_section(manifest: Manifest, storm: Path | None) -> tuple[FleetSection, str | None]:
    """The manifest's storms and the comparison of the chosen (else newest fio) one; the compare command."""
    from clonefleet.storm.compare import compare

    folder = manifest.path.parent
    files = sorted(folder.glob(f"storm-{manifest.name}-*.json"))
    if storm is not None and storm not in files:
        files.append(storm)
    storms = tuple(s for s in (read_storm_summary(p) for p in files) if s is not None)
    if storm is not None and not any(s.file == str(storm) for s in storms):
        raise UsageError(f"--storm {storm}: not a storm result that 'clonefleet storm' saved")
    fio = [s for s in storms if s.mode == "fio"]
    target = Path(storm) if storm is not None else (Path(fio[-1].file) if fio else None)
    comparison, note, command = None, None, None
    if target is None:
        note = (f"no fio storm of fleet {manifest.name} beside {manifest.path}: run 'clonefleet storm "
                f"{manifest.path}' while the fleet is provisioned")
    else:
        command = report_command(["compare", str(manifest.path), "--storm", str(target), "--plot", "compare.png"])
        try:
            comparison = compare(manifest, target)
        except UsageError as exc:
            note = f"no model vs simulation for {target.name}: {exc.message}"
    gis = "auto" if manifest.golden_images is None else str(manifest.golden_images)
    section = FleetSection(manifest=str(manifest.path), name=manifest.name, backend=manifest.backend,
                           method=manifest.method.value, count=manifest.count, golden_images=gis, gi=str(manifest.gi),
                           storms=storms, comparison=comparison, comparison_note=note)
    return section, command


def report_from_manifest(manifest_path: str | Path, functions: Sequence[str] = DEFAULT_FUNCTIONS, *,
                         storm: Path | None = None, simulate: bool = True,
                         sim_budget_ios: int = DEFAULT_SIM_IOS) -> Report:
    """The report of a provisioned fleet: the plan for its size with its presets, and its storms."""
    from clonefleet.provision import load_manifest

    manifest = load_manifest(str(manifest_path))
    base = ["report", str(manifest_path), "--functions", ",".join(functions)]
    if storm is not None:
        base += ["--storm", str(storm)]
    fleet, array = load_fleet(manifest.preset), load_array(manifest.array)
    report, _ = _base(fleet, array, manifest.preset, manifest.array, manifest.count, functions, base, simulate,
                      sim_budget_ios)
    section, compare_command = _fleet_section(manifest, storm)
    commands = dict(report.commands)
    if compare_command is not None:
        commands["compare"] = compare_command
    question = (f"Fleet {manifest.name} ({manifest.count:,} {manifest.method.value} clones on {manifest.backend}): "
                + report.question)
    return replace(report, fleet=section, commands=commands, question=question)


__all__ = ["DEFAULT_SIM_IOS", "RESOURCES", "FleetSection", "Growth", "Lifetime", "PresetSection", "Report",
           "Simulation", "StormSummary", "report_from_manifest", "report_from_presets"]
