"""clonefleet calibrate and clonefleet compare: the model fitted to real storms, and model vs simulation vs
measurement for one storm."""

from __future__ import annotations

from pathlib import Path

import typer

from clonefleet.cli.app import JSON_OPTION, Col, Whole, app, console, emit_json, print_table, progress_display
from clonefleet.errors import UsageError
from clonefleet.units import format_bytes

MANIFEST_ARG = typer.Argument(..., help="The manifest of a provisioned fleet (TOML).", show_default=False)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--sizes = {text!r}: fleet sizes separated by commas, e.g. 8,32,128") from None
    return sizes


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f} %"


def _value(x: float | None, unit: str) -> str:
    if x is None:
        return "-"
    if unit == "bytes":
        return format_bytes(x)
    if unit == "IOPS":
        return f"{x:,.0f}"
    return f"{x:.3f}"


@app.command("calibrate")
def calibrate_cmd(
    manifest: str = MANIFEST_ARG,
    sizes: str = typer.Option("8,32,128", "--sizes", metavar="N,N,...",
                              help="Fleet sizes to storm (the first N clones each time), two or more."),
    trace: str = typer.Option(None, "--trace", help="A captured boot to replay (default: the synthetic boot)."),
    seed: int = typer.Option(1, "--seed", click_type=Whole(0, 2**63 - 1, "SEED"), help="Seed of the boots drawn."),
    ios_per_vm: int = typer.Option(None, "--ios-per-vm", click_type=Whole(1, 10**7, "N"),
                                   help="A shorter synthetic boot with the same mix (default: the preset's)."),
    queue_depth: int = typer.Option(None, "--queue-depth", click_type=Whole(1, 1024, "N"),
                                    help="IOs each VM keeps outstanding (default: the fleet preset's)."),
    probe: bool = typer.Option(True, "--probe/--no-probe",
                               help="Measure the storage under the fleet with fio alone (the model's M*X)."),
    out: Path = typer.Option(None, "--out", help="Folder for the results (default: beside the manifest)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Storm the fleet at a few sizes, fit the model's array to them, and check it on each size held out."""
    from clonefleet import provision
    from clonefleet.storm import StormRequest
    from clonefleet.storm.calibrate import calibrate
    from clonefleet.storm.plots import calibration_figure, write_figure

    m = provision.load_manifest(manifest)
    request = StormRequest(trace=trace, seed=seed, ios_per_vm=ios_per_vm, queue_depth=queue_depth, out=out)
    with progress_display(not as_json) as report:
        cal = calibrate(m, _sizes(sizes), request, probe=probe, progress=report)
    plot = write_figure(calibration_figure(cal), Path(cal.array_file).with_name(
        Path(cal.array_file).name.replace("calibrated-array-", "calibration-").replace(".toml", ".png")))
    if as_json:
        emit_json({**cal.to_dict(), "plot": str(plot)})
        return
    print_table(f"storms of fleet {m.name} ({cal.method} clones on {cal.backend})",
                [Col("VMs", right=True), Col("IOPS", right=True), Col("IOPS per VM", "per VM", right=True),
                 Col("boot p50 s", "p50", right=True), Col("boot p95 s", "p95", right=True)],
                [[str(p.vms), f"{p.iops:,.0f}", f"{p.iops / p.vms:,.0f}", f"{p.boot_p50_s:.3f}",
                  f"{p.boot_p95_s:.3f}"] for p in cal.points])
    disk = "not probed" if cal.storage_iops is None else f"{cal.storage_iops:,.0f} IOPS (fio alone, O_DIRECT)"
    console.print(f"fit: A = {cal.fit.host_iops:,.0f} IOPS per VM, N = {cal.fit.path_iops:,.0f} IOPS; storage "
                  f"{disk}; {cal.fit.note}", markup=False)
    print_table("each size held out: the model and the simulator fitted on the others",
                [Col("VMs", right=True), Col("measured IOPS", "IOPS", right=True),
                 Col("model IOPS error", "model", right=True), Col("simulator IOPS error", "sim", right=True),
                 Col("measured p95 s", "p95", right=True), Col("model p95 error", "model p95", right=True),
                 Col("simulator p95 error", "sim p95", right=True)],
                [[str(c.vms), f"{c.measured.iops:,.0f}", _pct(c.errors()["model_iops"]), _pct(c.errors()["sim_iops"]),
                  f"{c.measured.boot_p95_s:.3f}", _pct(c.errors()["model_boot_p95"]),
                  _pct(c.errors()["sim_boot_p95"])] for c in cal.checks])
    smallest = min(p.vms for p in cal.points)
    console.print(f"note: held out, the smallest size ({smallest}) is predicted from a fit that never saw a VM "
                  "with more of the storage to itself: A comes from a larger storm", markup=False)
    for note in cal.notes[1:]:
        console.print(f"note: {note}", markup=False)
    console.print(f"array preset: {cal.array_file}\nfleet preset: {cal.fleet_file}\nplot: {plot}", markup=False)
    console.print(f"plan with them: clonefleet plan --array {cal.array_file} --fleet {cal.fleet_file} --vms N",
                  markup=False)


@app.command("compare")
def compare_cmd(
    manifest: str = MANIFEST_ARG,
    storm: Path = typer.Option(None, "--storm", help="A storm result (default: the newest beside the manifest)."),
    array: str = typer.Option(None, "--array", help="Array preset (default: the newest calibration beside the "
                              "manifest, else the manifest's)."),
    fleet: str = typer.Option(None, "--fleet", help="Fleet preset giving A (default: the newest calibration)."),
    plot: Path = typer.Option(None, "--plot", help="Write the comparison as a PNG to this file."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Model vs simulation vs measurement for one storm of the fleet, side by side."""
    from clonefleet import provision
    from clonefleet.storage.files import refuse_to_replace
    from clonefleet.storm.compare import METRICS, compare
    from clonefleet.storm.plots import comparison_figure, write_figure

    m = provision.load_manifest(manifest)
    if plot is not None:
        if plot.suffix.lower() != ".png":
            raise UsageError(f"--plot {plot}: a .png file name")
        refuse_to_replace(plot, "plot")
    with progress_display(not as_json) as report:
        report("draw the storm's boots again, simulate them", 0, 1)
        cmp = compare(m, storm, array, fleet)
        report("compared", 1, 1)
    written = write_figure(comparison_figure(cmp), plot) if plot is not None else None
    if as_json:
        emit_json({**cmp.to_dict(), "plot": None if written is None else str(written)})
        return
    print_table(f"storm of {cmp.vms} {cmp.method} clones ({Path(cmp.storm_file).name}): model vs simulation vs "
                "measurement",
                [Col("figure"), Col("model", right=True), Col("simulation", "sim", right=True),
                 Col("measured", right=True), Col("model error", "model err", right=True),
                 Col("simulation error", "sim err", right=True)],
                [[label, _value(cmp.model[key], unit), _value(cmp.simulation[key], unit),
                  _value(cmp.measured[key], unit), _pct(cmp.error("model", key)), _pct(cmp.error("simulation", key))]
                 for key, label, unit in METRICS])
    console.print(f"array: {cmp.array}; fleet: {cmp.fleet}; the model's storm is held back by: {cmp.model_bound}",
                  markup=False)
    for note in cmp.notes:
        console.print(f"note: {note}", markup=False)
    if written is not None:
        console.print(f"plot: {written}", markup=False)
