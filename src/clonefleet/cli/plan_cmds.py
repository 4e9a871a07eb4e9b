"""Commands of the planner: presets, plan, sweep, reproduce."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from clonefleet.cli.app import (
    JSON_OPTION,
    TRACE_FORMAT_HELP,
    TRACE_KINDS,
    Col,
    Whole,
    app,
    console,
    emit_json,
    print_table,
    progress_display,
)
from clonefleet.cli.sim_cmds import (
    DASK_OPTION,
    MAX_IOS_PER_VM,
    SEED_OPTION,
    SLACK_OPTION,
    STORM_IOS_PER_VM,
    WORKERS_OPTION,
    check_slack,
)
from clonefleet.cli.traces import derive_from_trace
from clonefleet.errors import UsageError, output_folder
from clonefleet.lifetime import MAX_DAYS, Lifetime, parse_capacity, parse_period_days, period_text
from clonefleet.planner import (
    DEFAULT_FUNCTIONS,
    MAX_VMS,
    RESOURCES,
    MethodPlan,
    Plan,
    plan,
    reduces_data,
    resolve_functions,
)
from clonefleet.presets import (
    ArrayPreset,
    PresetInfo,
    copy_preset,
    list_presets,
    load_array,
    load_fleet,
    load_preset,
    preset_label,
)
from clonefleet.storage.files import refuse_to_replace, write_text_whole
from clonefleet.sweep import MAX_SWEEP_STORMS
from clonefleet.units import format_bytes

if TYPE_CHECKING:  # the simulator (numba) is imported when a command runs, not when the CLI starts
    from clonefleet.sim import StormPoint

FLEET_OPTION = typer.Option(..., "--fleet", "-f", help="Fleet preset name or path to a fleet TOML file.")
ARRAY_OPTION = typer.Option(..., "--array", "-a", help="Array preset name or path to an array TOML file.")
FUNCTIONS_OPTION = typer.Option(
    ",".join(DEFAULT_FUNCTIONS), "--functions",
    help="Comma-separated storage-function presets (or TOML paths) to compare, e.g. full,thin,snapshot,qcow2-linked.",
)


#: A fleet size: ``1000``, ``1e3`` or ``1_000``, from 1 to MAX_VMS.
VMS = Whole(1, MAX_VMS, "VMS")
DAYS_OPTION = typer.Option(0, "--days", click_type=Whole(0, MAX_DAYS, "DAYS"),
                           help="Look this many days past the first boot: clones grow with daily use "
                                "(the fleet's daily_write_* figures) until refreshed.")
REFRESH_OPTION = typer.Option("never", "--refresh", help="When clones are reset to their boot footprint: never, "
                              "logoff (non-persistent pools: every day) or every N days, e.g. 7d.")
RECOMPOSE_OPTION = typer.Option("never", "--recompose", help="A new GI version every N days (e.g. 30d): every clone "
                                "rebuilt, both GI versions kept that day; or never.")
CAPACITY_OPTION = typer.Option(None, "--capacity", help="The datastore the fleet must fit in, e.g. 20TiB: the plan "
                               "says on which day, if any, the stored S passes it (less the headroom).")
HEADROOM_OPTION = typer.Option("0", "--headroom", help="Share of capacity and of every resource to keep free, "
                               "e.g. 0.2: a method holds only if its peak and its boot-time load stay under 1 - it.")


def parse_headroom(text: str) -> float:
    """``--headroom 0.2`` (or ``20%``) as a share in [0, 1)."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value < 1):
        raise UsageError(f"--headroom = {text!r}: a share of capacity to keep free, from 0 up to (not including) "
                         "1, e.g. 0.2 or 20%")
    return value


def make_lifetime(days: int, refresh: str, recompose: str, capacity: str | None, headroom: str) -> Lifetime:
    """The plan's horizon from its flags, validated whole (one line naming the flag on bad input)."""
    return Lifetime(days=days, refresh_days=parse_period_days(refresh, "--refresh"),
                    recompose_days=parse_period_days(recompose, "--recompose"),
                    capacity_bytes=parse_capacity(capacity), headroom=parse_headroom(headroom))


def parse_functions(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("--functions is empty: give storage-function presets, e.g. full,thin,snapshot")
    return names


presets_app = typer.Typer(
    help="List, show and copy presets: fleets, arrays, storage functions, each figure with its value and source.",
    invoke_without_command=True, no_args_is_help=False)
app.add_typer(presets_app, name="presets")


def _figure_rows(info: PresetInfo) -> list[list[str]]:
    return [[f.key, f.text, escape(f.origin)] for f in info.figures]


def _info_json(info: PresetInfo) -> dict[str, object]:
    return {"kind": info.kind, "name": info.name, "description": info.description, "sources": info.sources,
            "figures": [f.to_dict() for f in info.figures]}


@presets_app.callback()
def presets_cmd(
    ctx: typer.Context,
    kind: str = typer.Option("all", "--kind", help="Only presets of this kind: fleet, array, function or all."),
    sources: bool = typer.Option(False, "--sources", help="Show every figure: its value, unit and source."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array, one object per preset."),
) -> None:
    """List the shipped presets (fleets, arrays, storage functions); 'presets show NAME' shows one,
    'presets copy NAME FILE' makes it yours. A path to your own TOML file works wherever a name does."""
    if ctx.invoked_subcommand is not None:
        return
    kinds = ("fleet", "array", "function")
    if kind != "all" and kind not in kinds:
        raise UsageError(f"--kind = {kind!r}: one of fleet, array, function, all")
    infos = [p for p in list_presets() if kind in ("all", p.kind)]
    if as_json:
        emit_json([_info_json(p) for p in infos])
        return
    if not sources:
        print_table("clonefleet presets (a path to your own TOML file works wherever a name does)",
                    [Col("name"), Col("kind"), Col("description", wrap=True)],
                    [[p.name, p.kind, escape(p.description)] for p in infos])
        console.print("each figure's value and source: clonefleet presets --sources, or presets show NAME")
        return
    for p in infos:
        print_table(f"{p.kind} {p.name}: {p.description}",
                    [Col("figure"), Col("value", right=True), Col("source or assumption", wrap=True)],
                    _figure_rows(p))


@presets_app.command("show")
def presets_show_cmd(
    name: str = typer.Argument(..., help="A shipped preset's name (e.g. allflash-2024) or a path to a TOML file."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one preset: each figure's value with its unit beside its source or assumption."""
    info = load_preset(name)
    if as_json:
        emit_json(_info_json(info))
        return
    print_table(f"{info.kind} {info.name}: {info.description}",
                [Col("figure"), Col("value", right=True), Col("source or assumption", wrap=True)],
                _figure_rows(info))
    assumed = [f.key for f in info.figures if f.assumed]
    if assumed:
        console.print(f"{len(assumed)} of {len(info.figures)} figures are assumptions: measure them on your "
                      f"own system and change them in a copy (clonefleet presets copy {info.name} FILE)",
                      markup=False)


@presets_app.command("copy")
def presets_copy_cmd(
    source: str = typer.Argument(..., help="The preset to copy: a shipped name or a path."),
    dest: Path = typer.Argument(..., help="The new TOML file, e.g. my-array.toml."),
    name: str = typer.Option(None, "--name", help="The copy's name (default: the file's name without .toml)."),
    force: bool = typer.Option(False, "--force", help="Overwrite DEST if it exists."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Copy a preset to a TOML file of your own, renamed; edit it, then pass its path to plan, sweep or simulate."""
    info = copy_preset(source, dest, name, force)
    if as_json:
        emit_json({"wrote": str(dest), **_info_json(info)})
        return
    console.print(f"wrote {dest}: {info.kind} preset '{info.name}', a copy of '{source}'; change its figures, "
                  f"then pass the path, e.g. --{info.kind} {dest}", markup=False)




@presets_app.command("derive")
def presets_derive_cmd(
    trace: Path = typer.Argument(..., help="The boot trace: " + TRACE_KINDS + "."),
    out: Path = typer.Option(..., "--out", "-o", help="The fleet TOML file to write, e.g. my-fleet.toml."),
    name: str = typer.Option(None, "--name", help="The preset's name (default: the output file's name)."),
    gi_size: str = typer.Option(None, "--gi-size", help="G: the GI's virtual size, e.g. 20GiB (a trace cannot "
                                "tell it; default: its highest byte, rounded up to a GiB)."),
    gi_used: str = typer.Option(None, "--gi-used", help="G_used: data the GI really holds, e.g. 2GiB "
                                "(default: what one boot touches)."),
    boot_window: str = typer.Option(None, "--boot-window", help="How long one boot lasts, e.g. 30s, for a "
                                    "trace without times (a trace with times gives A itself)."),
    trace_format: str = typer.Option("auto", "--trace-format", help=TRACE_FORMAT_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite the output file if it exists."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Derive a fleet preset from a boot trace: each figure per VM, averaged, with the trace as its source."""
    if out.suffix != ".toml":
        raise UsageError(f"--out = {out}: a .toml file, e.g. my-fleet.toml")
    refuse_to_replace(out, "--out", force=force)  # before the trace is read and derived
    derived = derive_from_trace(trace, trace_format, name or out.stem, gi_size, gi_used, boot_window)
    write_text_whole(out, derived.toml, "--out", force=force)
    info = load_preset(out)
    if as_json:
        emit_json({"wrote": str(out), "vms": derived.vms, "timed": derived.timed, **_info_json(info)})
        return
    print_table(f"fleet {info.name}: {info.description}",
                [Col("figure"), Col("value", right=True), Col("source or assumption", wrap=True)],
                _figure_rows(info))
    if not derived.timed:
        console.print("the trace has no times: A (boot_window) is an assumption; give --boot-window or edit it",
                      markup=False)
    console.print(f"wrote {out}: pass it to plan, sweep or simulate with --fleet {out}", markup=False)


def _maybe(value: float | None, fmt: Callable[[float], str]) -> str:
    return "-" if value is None else fmt(value)


def _function_label(m: MethodPlan) -> str:
    return m.function if m.function == m.method else f"{m.function} ({m.method})"


CAPACITY_COLUMNS = (Col("function"), Col("GIs", "g", right=True), Col("clones/GI", "k/GI", right=True),
                    Col("C per VM", "C", right=True), Col("D (GIs)", "D", right=True), Col("S", right=True),
                    Col("S / full", "S/full", right=True))
LOAD_COLUMNS = (Col("function"), *(Col(r, s, right=True) for r, s in zip(
    RESOURCES, ("arr proc", "arr disk", "GI proc", "GI disk"), strict=True)),
    Col("max VMs", "T_max", right=True), Col("holds", "ok", right=True))


def capacity_rows(result: Plan) -> list[list[str]]:
    """Per method: GIs, clones on the busiest GI, C, D, S and S as a share of full copies."""
    return [[_function_label(m), str(m.golden_images), str(m.clones_per_gi), format_bytes(m.per_vm_new_bytes),
             _maybe(m.gi_bytes, format_bytes), _maybe(m.consumed_bytes, format_bytes),
             _maybe(m.capacity_ratio, lambda r: f"{100 * r:.2f} %")] for m in result.methods]


def load_rows(result: Plan) -> list[list[str]]:
    """Per method: each resource's busy share at T (the bottleneck starred), T_max, and whether T holds."""
    rows = []
    for m in result.methods:
        cells = []
        for r in RESOURCES:
            text = f"{100 * m.utilisation[r]:.0f} %"
            cells.append(f"[bold]{text}*[/bold]" if r == m.bottleneck else f"{text} ")
        rows.append([_function_label(m), *cells, str(m.max_vms), "yes" if m.boot_holds else "[red]no[/red]"])
    return rows


def array_line(result: Plan, array: ArrayPreset) -> str:
    """Eq. 1 for the array: its performance Y and what bounds it."""
    return (f"{result.array}: Y = min(N, M x X) = min({array.processor_iops:,.0f}, {array.disk_iops:,.0f} x "
            f"{array.disks:,.0f}) = {result.array_iops:,.0f} IOPS (Eq. 1): its {result.array_bound} bound it")


def life_columns(result: Plan, reduces: bool) -> list[Col]:
    """The columns of the table over time: raw S at day 0 and at its peak, stored S when the array reduces
    data, the peak's day, and against a datastore the day it is outgrown."""
    cols = [Col("function"), Col("S day 0", "S(0)", right=True)]
    if reduces:
        cols.append(Col("stored day 0", "st(0)", right=True))
    cols.append(Col("peak S", "peak", right=True))
    if reduces:
        cols.append(Col("peak stored", "st peak", right=True))
    cols.append(Col("peak day", "day", right=True))
    if result.life.capacity_bytes is not None:
        cols += [Col("outgrows on day", "out day", right=True), Col("fits", right=True)]
    return cols


def life_rows(result: Plan, reduces: bool) -> list[list[str]]:
    rows = []
    for m in result.methods:
        row = [_function_label(m), _maybe(m.consumed_bytes, format_bytes)]
        if reduces:
            row.append(_maybe(m.reduced_consumed_bytes, format_bytes))
        row.append(_maybe(m.peak_consumed_bytes, format_bytes))
        if reduces:
            row.append(_maybe(m.peak_reduced_consumed_bytes, format_bytes))
        row.append("-" if m.peak_day is None else str(m.peak_day))
        if result.life.capacity_bytes is not None:
            row.append("never" if m.outgrows_day is None else str(m.outgrows_day))
            row.append("-" if m.fits_capacity is None else ("yes" if m.fits_capacity else "[red]no[/red]"))
        rows.append(row)
    return rows


def print_plan(result: Plan, array: ArrayPreset, fleet_label: str, array_label: str) -> None:
    """The plan as a person reads it: the array's Eq. 1, capacity, load, the answer, why, what to measure."""
    console.print(array_line(result, array), markup=False)
    where = f"{result.vms:,} VMs of {fleet_label} on {array_label}"
    print_table(f"Capacity: {where}", CAPACITY_COLUMNS, capacity_rows(result))
    reduces = reduces_data(array)
    if result.life.asks_over_time or reduces:
        life = result.life
        target = "" if life.capacity_bytes is None else \
            f"; datastore {format_bytes(life.capacity_bytes)}" + \
            (f", target {format_bytes(life.capacity_limit_bytes or 0)} ({100 * life.target_utilisation:.0f} %)"
             if life.headroom else "")
        stored = "; stored = after the array's data reduction" if reduces else ""
        print_table(f"Over {life.days} days, refresh {period_text(life.refresh_days)}{target}{stored}",
                    life_columns(result, reduces), life_rows(result, reduces))
    print_table(f"Load: busy share while {result.vms:,} VMs boot, * the bottleneck",
                LOAD_COLUMNS, load_rows(result))
    verdict = f"recommended: [bold]{result.recommended}[/bold]" if result.recommended else "[red]no method holds[/red]"
    console.print(f"{verdict}: {escape(result.reason)}")
    console.print("why:", markup=False)
    for note in result.notes:
        console.print(f"  {note}", markup=False)
    by_preset: dict[str, list[str]] = {}
    for a in result.assumptions:
        by_preset.setdefault(f"{a.kind} {a.preset}", []).append(f"{a.key} {a.text}")
    if by_preset:
        console.print("assumed, not measured (measure these first; clonefleet presets show NAME says why):",
                      markup=False)
        for preset, figures in by_preset.items():
            console.print(f"  {preset}: {', '.join(figures)}", markup=False)


@app.command("plan")
def plan_cmd(
    fleet: str = typer.Option(None, "--fleet", "-f",
                              help="Fleet preset name or path to a fleet TOML file (or give --trace)."),
    trace: Path = typer.Option(None, "--trace", help="Plan from a boot trace (" + TRACE_KINDS + "): its fleet is "
                               "derived in memory, as 'presets derive' would write it."),
    trace_format: str = typer.Option("auto", "--trace-format", help=TRACE_FORMAT_HELP),
    array: str = ARRAY_OPTION,
    vms: int = typer.Option(1000, "--vms", "-t", click_type=VMS, help="Number of VMs (clones) T."),
    functions: str = FUNCTIONS_OPTION,
    days: int = DAYS_OPTION,
    refresh: str = REFRESH_OPTION,
    recompose: str = RECOMPOSE_OPTION,
    capacity: str = CAPACITY_OPTION,
    headroom: str = HEADROOM_OPTION,
    plot: Path = typer.Option(None, "--plot", help="Draw S(t) per method over the horizon (with the datastore's "
                              "line) to this PNG or SVG file."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Plan T clones per storage function: GIs, largest fleet, bottleneck, capacity, recommendation.

    \b
    Capacity table: GIs = g, golden-image copies on the array; clones/GI = clones on the
    busiest GI; C per VM = capacity one clone allocates by its boot writes; D (GIs) = capacity
    of the GIs; S = total consumed capacity (Eq. 3); S / full = S as a share of full copies.
    Load table: busy share (load / capacity, 100 % = saturated) of the array's processors,
    its pool disks, the GI volume's processor and the GI's disks while all T VMs boot; * marks
    the bottleneck, the busiest; max VMs = T_max, the most VMs the array carries (Eq. 2);
    holds = yes when T <= T_max (with --headroom: and every resource under its target). Last
    come the figures the plan assumed: measure those first.
    Over time (--days, --refresh, --capacity, --headroom): S at day 0 and at its peak as the
    clones grow with use, stored = after the array's dedup and compression, the day the
    datastore is outgrown. Every term: docs/background.md, Glossary.
    """
    life = make_lifetime(days, refresh, recompose, capacity, headroom)
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"--plot = {str(plot)!r}: a .png or .svg file, e.g. growth.png")
    if (fleet is None) == (trace is None):
        raise UsageError("give exactly one of --fleet (a preset) or --trace (a boot trace)")
    if trace is not None:
        fleet_preset = derive_from_trace(trace, trace_format, None, None, None).fleet
        fleet_label = f"{fleet_preset.name} (derived from trace {trace})"
    else:
        fleet_preset = load_fleet(fleet)
        fleet_label = preset_label("fleet", fleet, fleet_preset.name)
    array_preset = load_array(array)
    result = plan(fleet_preset, array_preset, vms, parse_functions(functions), life)
    written = []
    if plot is not None:
        from clonefleet.report.lifefig import write_life_figure

        written.append(write_life_figure(fleet_preset, array_preset, result, plot))
    if as_json:
        emit_json(result.to_dict() | ({"files": [str(p) for p in written]} if written else {}))
        return
    print_plan(result, array_preset, fleet_label, preset_label("array", array, array_preset.name))
    for path in written:
        console.print(f"wrote {path}", markup=False)


reproduce_app = typer.Typer(help="Reproduce a published result.", no_args_is_help=True)
app.add_typer(reproduce_app, name="reproduce")


@reproduce_app.command("paper")
def reproduce_paper_cmd(
    out: Path = typer.Option(Path("out/paper"), "--out", "-o", help="Folder for fig4.png, fig4.svg, fig4.json."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Reproduce the paper's Figure 4: capacity of thin and snapshot clones as % of full copies."""
    from clonefleet.report.fig4 import reproduce_fig4

    result = reproduce_fig4(out)
    if as_json:
        emit_json(result.to_dict())
        return
    print_table("Paper Fig. 4: capacity for 1000 VMs, % of full copies (the 'normal' pattern)",
                [Col("fleet"), Col("full", right=True), Col("thin", right=True), Col("snapshot", right=True),
                 Col("snapshot / thin", "snap/thin", right=True), Col("recommended", "best")],
                [[escape(case.label), "100.00 %", f"{100 * case.ratios['thin']:.2f} %",
                  f"{100 * case.ratios['snapshot']:.2f} %",
                  f"{case.ratios['snapshot'] / case.ratios['thin']:.2f}", case.plan.recommended or "-"]
                 for case in result.cases])
    for path in result.files:
        console.print(f"wrote {path}")


def _print_sweep_storms(points: list[StormPoint], settings: dict[str, object], functions: list[str],
                        largest: dict[str, int]) -> None:
    """The storms of sweep --simulate: one row per T, per function its p95 boot / nominal and verdict."""
    cell = {(p.function, p.vms): p for p in points}
    rows, disagree = [], False
    for t in sorted({p.vms for p in points}):
        row = [f"{t:,}"]
        for name in functions:
            p = cell[name, t]
            mark = "" if p.meets_window == p.model_carries else " *"
            disagree = disagree or bool(mark)
            row.append(f"{p.p95_boot_over_nominal:.3f} {'meets' if p.meets_window else 'misses'}{mark}")
        rows.append(row)
    print_table(f"boot storms along the sweep: p95 boot / nominal window ({settings['arrivals']} loop, "
                f"{settings['ios_per_vm']:,} IOs per boot, seed {settings['seed']})",
                [Col("T", right=True), *(Col(name, right=True) for name in functions)], rows)
    model = ", ".join(f"{name} {largest[name]:,}" for name in functions)
    console.print(f"meets: p95 boot within {settings['slack']:g} x the nominal window (one boot at the fleet's rate "
                  f"A with no queueing); the model's largest T: {model}"
                  + ("; *: the storm and the model disagree at that T" if disagree else ""), style="dim")


@app.command("sweep")
def sweep_cmd(
    fleet: str = FLEET_OPTION,
    array: str = ARRAY_OPTION,
    vms: str = typer.Option("1:10000", "--vms", "-t", help="Fleet sizes as START:STOP[:STEP] (inclusive)."),
    param: str = typer.Option(None, "--param", "-p",
                              help="Also sweep one preset field, FIELD=START:STOP[:COUNT], e.g. disks=100:1000:10."),
    functions: str = FUNCTIONS_OPTION,
    target: int | None = typer.Option(None, "--target", click_type=VMS,
                                      help="Target T for the inverse question: fewest disks X."),
    days: int = DAYS_OPTION,
    refresh: str = REFRESH_OPTION,
    recompose: str = RECOMPOSE_OPTION,
    out: Path = typer.Option(None, "--out", "-o", help="Folder for sweep.csv, sweep.json and sweep.png."),
    simulate: bool = typer.Option(False, "--simulate",
                                  help="Also boot the fleet at each T of --vms (one storm per T and IO path, at "
                                       f"most {MAX_SWEEP_STORMS}): does its p95 boot stay within --slack of the "
                                       "nominal window where the model says the array carries it?"),
    ios_per_vm: int = typer.Option(STORM_IOS_PER_VM, "--ios-per-vm", click_type=Whole(10, MAX_IOS_PER_VM),
                                   help="IOs per boot in the --simulate storms (open loop, as validate runs them)."),
    slack: float = SLACK_OPTION,
    seed: int = SEED_OPTION,
    dask: str = DASK_OPTION,
    workers: int = WORKERS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """S and the requirement against T per method; the largest T and the fewest disks for a target T.

    \b
    T = number of VMs; S = consumed capacity (Eq. 3); largest T = T_max, the most VMs the
    array carries (Eq. 2); bottleneck = the busiest of the array's processors, its disks, the
    GI volume's processor, the GI's disks; fewest disks for target = the smallest pool X that
    carries --target VMs. With --days: S also at its peak over that many days of use (growth,
    refresh, recompose), in the JSON, the CSV and the table. With --simulate: a boot storm at each T
    (open loop, each VM offering A), its p95 boot / nominal window beside the model's verdict, the
    storms side by side on the local cores (--workers) or a Dask cluster (--dask), the same results
    either way. Every term: docs/background.md, Glossary.
    """
    life = make_lifetime(days, refresh, recompose, None, "0")
    from clonefleet.report.sweepfig import write_sweep
    from clonefleet.sweep import parse_param, parse_range, run_sweep

    check_slack(slack)
    fleet_p, array_p, ts = load_fleet(fleet), load_array(array), parse_range(vms)
    fns = resolve_functions(parse_functions(functions))
    if simulate:  # refused before the model's sweep, before any storm: too many storms, an unusable --out
        from clonefleet import sim

        sim.check_sweep_storms(fns, ts.tolist())
        if out is not None:
            output_folder(out)
    points: list[StormPoint] = []
    with progress_display(not as_json) as report:
        result = run_sweep(fleet_p, array_p, ts, fns, parse_param(param) if param else None, target, report, life)
        if simulate:
            settings = {"arrivals": sim.Arrivals.OPEN.value, "ios_per_vm": ios_per_vm, "slack": slack, "seed": seed}
            with sim.storm_executor(dask, workers) as executor:
                points = sim.sweep_storms(fleet_p, array_p, fns, ts.tolist(), seed=seed, ios_per_vm=ios_per_vm,
                                          slack=slack, executor=executor, progress=report)
            result.storms, result.storm_settings = [p.to_dict() for p in points], settings
        files = write_sweep(result, out, report) if out is not None else []
    if as_json:
        emit_json(result.summary(files))
        return
    rows = []
    for row in result.method_rows():
        fewest = row["fewest_disks"]
        peak = [_maybe(row["peak_consumed_bytes_at_max"], format_bytes)] if life.days > 0 else []
        rows.append([row["function"], str(row["max_vms"]), row["bottleneck"],
                     _maybe(row["consumed_bytes_at_max"], format_bytes), *peak,
                     "-" if row["target_vms"] is None else (escape("impossible: " + row["fewest_disks_reason"])
                                                           if fewest is None else str(fewest))])
    print_table(f"sweep of {result.fleet} on {result.array}: {result.points:,} points",
                [Col("function"), Col("largest T", "T_max", right=True),
                 Col("bottleneck at largest T", "bottleneck"), Col("S at largest T", "S", right=True),
                 *([Col(f"peak S over {life.days} days", "peak", right=True)] if life.days > 0 else []),
                 Col("fewest disks for target", "disks", wrap=True)], rows)
    if points:
        _print_sweep_storms(points, result.storm_settings, [f.name for f in result.functions], result.largest)
    for path in files:
        console.print(f"wrote {path}")
