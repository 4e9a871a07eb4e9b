"""clonefleet report: one file a person reads (HTML, or Markdown for tickets and wikis)."""

from __future__ import annotations

from pathlib import Path

import typer

from clonefleet.cli.app import JSON_OPTION, Whole, app, console, emit_json, progress_display
from clonefleet.cli.plan_cmds import VMS, parse_functions
from clonefleet.errors import UsageError
from clonefleet.planner import DEFAULT_FUNCTIONS


@app.command("report")
def report_cmd(
    manifest: str = typer.Argument(None, show_default=False,
                                   help="The manifest of a provisioned fleet (TOML): its presets, its size and the "
                                        "storms saved beside it. Or give --fleet, --array and --vms."),
    fleet: str = typer.Option(None, "--fleet", "-f", help="Fleet preset name or path to a fleet TOML file."),
    array: str = typer.Option(None, "--array", "-a", help="Array preset name or path to an array TOML file."),
    vms: int = typer.Option(None, "--vms", "-t", click_type=VMS, help="Number of VMs (clones) T (default 1000)."),
    functions: str = typer.Option(",".join(DEFAULT_FUNCTIONS), "--functions",
                                  help="Comma-separated storage-function presets (or TOML paths) to compare."),
    out: Path = typer.Option(..., "--out", "-o", help="The file to write, e.g. report.html or report.md."),
    fmt: str = typer.Option(None, "--format", metavar="html|md",
                            help="html (one self-contained page) or md (Markdown); default: from the file's "
                                 "suffix, else html."),
    figure: str = typer.Option(None, "--figure", metavar="NAME",
                               help="Write only this figure of the report (capacity, growth; with a manifest and "
                                    "its storm also comparison) as SVG or PNG, by the file's suffix."),
    storm: Path = typer.Option(None, "--storm", help="With a manifest: the storm result to compare (default: the "
                                                    "newest fio storm beside the manifest)."),
    simulate: bool = typer.Option(True, "--simulate/--no-simulate", help="Simulate a boot storm of the "
                                                                        "recommended method (seconds)."),
    sim_ios: int = typer.Option(None, "--sim-ios", click_type=Whole(1000, 10**10, "N"),
                                help="IOs the simulated storm may take in all (default 2,000,000): each boot is "
                                     "shortened to fit, with the same mix."),
    force: bool = typer.Option(False, "--force", help="Replace OUT when it is a file clonefleet report wrote."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a report a person reads: the question and the recommendation first, with the reason and the
    assumptions to verify; capacity by method; S and the requirement against fleet size; a simulated boot
    storm; measured vs model for a provisioned fleet's storms; every preset figure with its source; the
    command that reproduces each figure. One HTML file that needs no network, or Markdown (--format md)."""
    from clonefleet.report import writer
    from clonefleet.report.build import DEFAULT_SIM_IOS, report_from_manifest, report_from_presets

    if manifest is not None and any(x is not None for x in (fleet, array, vms)):
        raise UsageError("give a MANIFEST or --fleet/--array/--vms, not both: a manifest names its presets and size")
    if manifest is None and (fleet is None or array is None):
        raise UsageError("give a MANIFEST, or --fleet and --array (and --vms, default 1000)")
    if manifest is None and storm is not None:
        raise UsageError("--storm: only with a MANIFEST (the storm's fleet)")
    target = writer.Target.of(out, fmt, figure, force)  # refused before any work: a folder, a foreign file
    names = parse_functions(functions)
    budget = sim_ios or DEFAULT_SIM_IOS
    wants_sim = simulate and figure is None
    with progress_display(not as_json) as report_progress:
        report_progress("plan, model over fleet sizes" + (", simulate a storm" if wants_sim else ""), 0, 1)
        if manifest is not None:
            report = report_from_manifest(manifest, names, storm=storm, simulate=wants_sim, sim_budget_ios=budget)
        else:
            report = report_from_presets(fleet, array, vms or 1000, names, simulate=wants_sim,
                                         sim_budget_ios=budget)
        report_progress("render", 1, 2)
        wrote = writer.write(report, target)
        report_progress("written", 2, 2)
    if as_json:
        emit_json({"wrote": str(wrote), "format": target.kind, "recommended": report.recommended,
                   "vms": report.plan.vms, "fleet": report.plan.fleet, "array": report.plan.array})
        return
    # one line however long the path: it is there to be copied
    console.print(f"recommended: {report.recommended or 'none'}; wrote {wrote}", markup=False, soft_wrap=True)
