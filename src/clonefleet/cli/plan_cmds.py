"""Commands of the planner: presets, plan, sweep, reproduce."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.table import Table

from clonefleet.cli.app import JSON_OPTION, Whole, app, console, emit_json, progress_display
from clonefleet.errors import UsageError
from clonefleet.planner import DEFAULT_FUNCTIONS, MAX_VMS, Plan, plan
from clonefleet.presets import list_presets, load_array, load_fleet
from clonefleet.units import format_bytes

FLEET_OPTION = typer.Option(..., "--fleet", "-f", help="Fleet preset name or path to a fleet TOML file.")
ARRAY_OPTION = typer.Option(..., "--array", "-a", help="Array preset name or path to an array TOML file.")
FUNCTIONS_OPTION = typer.Option(
    ",".join(DEFAULT_FUNCTIONS), "--functions",
    help="Comma-separated storage-function presets (or TOML paths) to compare, e.g. full,thin,snapshot,qcow2-linked.",
)


#: A fleet size: ``1000``, ``1e3`` or ``1_000``, from 1 to MAX_VMS.
VMS = Whole(1, MAX_VMS, "VMS")


def parse_functions(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("--functions is empty: give storage-function presets, e.g. full,thin,snapshot")
    return names


@app.command("presets")
def presets_cmd(
    kind: str = typer.Option("all", "--kind", help="Only presets of this kind: fleet, array, function or all."),
    sources: bool = typer.Option(False, "--sources", help="Show the source of every figure."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the shipped presets (fleets, arrays, storage functions) with their sources."""
    kinds = ("fleet", "array", "function")
    if kind != "all" and kind not in kinds:
        raise UsageError(f"--kind = {kind!r}: one of fleet, array, function, all")
    infos = [p for p in list_presets() if kind in ("all", p.kind)]
    if as_json:
        emit_json([{"kind": p.kind, "name": p.name, "description": p.description, "sources": p.sources}
                   for p in infos])
        return
    table = Table(title="clonefleet presets (a path to your own TOML file works wherever a name does)")
    table.add_column("kind")
    table.add_column("name", style="bold")
    table.add_column("description")
    if sources:
        table.add_column("figure: source")
    for p in infos:
        row = [p.kind, p.name, p.description]
        if sources:
            row.append("\n".join(f"{k}: {v}" for k, v in p.sources.items()))
        table.add_row(*row)
    console.print(table)


def _maybe(value: float | None, fmt: Callable[[float], str]) -> str:
    return "-" if value is None else fmt(value)


def plan_table(result: Plan) -> Table:
    table = Table(title=f"{result.vms} VMs of {result.fleet} on {result.array}")
    for col in ("function", "method", "GIs", "clones/GI", "max VMs", "bottleneck", "C per VM",
                "D (GIs)", "S", "S / full", "holds"):
        table.add_column(col, justify="left" if col in ("function", "method", "bottleneck") else "right")
    for m in result.methods:
        table.add_row(
            m.function, m.method, str(m.golden_images), str(m.clones_per_gi), str(m.max_vms),
            f"{m.bottleneck} ({100 * m.utilisation[m.bottleneck]:.0f} %)",
            format_bytes(m.per_vm_new_bytes), _maybe(m.gi_bytes, format_bytes),
            _maybe(m.consumed_bytes, format_bytes), _maybe(m.capacity_ratio, lambda r: f"{100 * r:.2f} %"),
            "yes" if m.meets_requirement else "[red]no[/red]",
        )
    return table


@app.command("plan")
def plan_cmd(
    fleet: str = FLEET_OPTION,
    array: str = ARRAY_OPTION,
    vms: int = typer.Option(1000, "--vms", "-t", click_type=VMS, help="Number of VMs (clones) T."),
    functions: str = FUNCTIONS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Plan T clones per storage function: GIs, largest fleet, bottleneck, capacity, recommendation."""
    result = plan(load_fleet(fleet), load_array(array), vms, parse_functions(functions))
    if as_json:
        emit_json(result.to_dict())
        return
    console.print(plan_table(result))
    verdict = f"recommended: [bold]{result.recommended}[/bold]" if result.recommended else "[red]no method holds[/red]"
    console.print(f"{verdict}: {result.reason}")


reproduce_app = typer.Typer(help="Reproduce a published result.", no_args_is_help=True)
app.add_typer(reproduce_app, name="reproduce")


@reproduce_app.command("paper")
def reproduce_paper_cmd(
    out: Path = typer.Option(Path("out/paper"), "--out", "-o", help="Folder for fig4.png, fig4.svg, fig4.json."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Reproduce the paper's Fig. 4: capacity of thin and snapshot clones as % of full copies."""
    from clonefleet.report.fig4 import reproduce_fig4

    result = reproduce_fig4(out)
    if as_json:
        emit_json(result.to_dict())
        return
    table = Table(title="Paper Fig. 4: capacity for 1000 VMs, % of full copies (the 'normal' pattern)")
    for col in ("fleet", "full", "thin", "snapshot", "snapshot / thin", "recommended"):
        table.add_column(col, justify="left" if col == "fleet" else "right")
    for case in result.cases:
        table.add_row(case.label, "100.00 %", f"{100 * case.ratios['thin']:.2f} %",
                      f"{100 * case.ratios['snapshot']:.2f} %",
                      f"{case.ratios['snapshot'] / case.ratios['thin']:.2f}", case.plan.recommended or "-")
    console.print(table)
    for path in result.files:
        console.print(f"wrote {path}")


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
    out: Path = typer.Option(None, "--out", "-o", help="Folder for sweep.csv, sweep.json and sweep.png."),
    as_json: bool = JSON_OPTION,
) -> None:
    """S and the requirement against T per method; the largest T and the fewest disks for a target T."""
    from clonefleet.sweep import parse_param, parse_range, run_sweep

    with progress_display(not as_json) as report:
        result = run_sweep(load_fleet(fleet), load_array(array), parse_range(vms),
                           parse_functions(functions), parse_param(param) if param else None, target, report)
        files = result.write(out, report) if out is not None else []
    if as_json:
        emit_json(result.summary(files))
        return
    table = Table(title=f"sweep of {result.fleet} on {result.array}: {result.points:,} points")
    for col in ("function", "largest T", "bottleneck at largest T", "S at largest T", "fewest disks for target"):
        table.add_column(col)
    for row in result.method_rows():
        fewest = row["fewest_disks"]
        table.add_row(row["function"], str(row["max_vms"]), row["bottleneck"],
                      _maybe(row["consumed_bytes_at_max"], format_bytes),
                      "-" if row["target_vms"] is None else ("impossible: " + row["fewest_disks_reason"]
                                                            if fewest is None else str(fewest)))
    console.print(table)
    for path in files:
        console.print(f"wrote {path}")
