"""Commands of the simulator (clonefleet simulate, validate)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer
from rich.table import Table

from clonefleet.cli.app import JSON_OPTION, Whole, app, console, emit_json, parse_whole, progress_display
from clonefleet.errors import UsageError, output_folder
from clonefleet.planner import MAX_VMS
from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.units import format_bytes

if TYPE_CHECKING:  # the simulator (numba) is imported when a command runs, not when the CLI starts
    from clonefleet.sim import SimResult

FLEET_OPTION = typer.Option(..., "--fleet", "-f", help="Fleet preset name or path to a fleet TOML file.")
ARRAY_OPTION = typer.Option(..., "--array", "-a", help="Array preset name or path to an array TOML file.")
SEED_OPTION = typer.Option(0, "--seed", click_type=Whole(0, 2**63 - 1, "SEED"),
                           help="Seed of the numpy random generator (a whole number >= 0).")
#: IOs one boot issues, or outstanding per VM: far beyond any real boot, and a storm still fits in memory.
MAX_IOS_PER_VM = 10**9
IOS_HELP = "IOs per VM boot (default: the fleet's boot_ios); fewer for a quick run, W and n scale along."


def _ratio(value: float | None) -> str:
    """A ratio to three places, or a dash when the model has none (no VM carried)."""
    return "—" if value is None else f"{value:.3f}"


def _choice(flag: str, text: str, allowed: tuple[str, ...]) -> str:
    if text not in allowed:
        raise UsageError(f"{flag} = {text!r}: one of {', '.join(allowed)}")
    return text


@app.command("simulate")
def simulate_cmd(
    fleet: str = FLEET_OPTION,
    array: str = ARRAY_OPTION,
    vms: int = typer.Option(..., "--vms", "-t", click_type=Whole(1, MAX_VMS, "VMS"),
                            help="Number of VMs T booting together."),
    method: str = typer.Option(..., "--method", "-m",
                               help="full, thin or snapshot, or any storage-function preset (e.g. qcow2-linked)."),
    golden_images: str = typer.Option(None, "--golden-images", "-g",
                                      help="GIs g the snapshot clones spread over (default: the model's g); "
                                           "a list such as 1,2,4 runs each on the same trace and compares them."),
    engine: str = typer.Option("fast", "--engine", help="fast (numba) or reference (SimPy, slow)."),
    seed: int = SEED_OPTION,
    arrivals: str = typer.Option("closed", "--arrivals",
                                 help="closed: each VM keeps q IOs outstanding; open: each VM issues at rate A."),
    ios_per_vm: int | None = typer.Option(None, "--ios-per-vm", click_type=Whole(1, MAX_IOS_PER_VM), help=IOS_HELP),
    queue_depth: int | None = typer.Option(None, "--queue-depth", "-q", click_type=Whole(1, 1_000_000),
                                           help="IOs a VM keeps outstanding (closed loop)."),
    start_spread: float = typer.Option(0.0, "--start-spread", help="VMs power on uniformly within this many s."),
    trace: Path = typer.Option(None, "--trace", help="Replay a real trace (fio iolog, folder of iologs, "
                                                     "blkparse text or CSV) instead of a synthetic one."),
    trace_format: str = typer.Option("auto", "--trace-format", help="auto, fio, blkparse or csv."),
    plots: Path = typer.Option(None, "--plots", help="Folder for boot_times.png and utilisation.png."),
    write_iolog: Path = typer.Option(None, "--write-iolog", help="Also write the trace as fio iologs (one per VM)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Simulate a boot storm: per-VM boot times, IO latency, utilisation over time, C and S."""
    from clonefleet import sim

    fleet_p, array_p, function_p = load_fleet(fleet), load_array(array), load_function(method)
    t, s = vms, seed
    eng = sim.Engine(_choice("--engine", engine, tuple(e.value for e in sim.Engine)))
    arr = sim.Arrivals(_choice("--arrivals", arrivals, tuple(a.value for a in sim.Arrivals)))
    ios, q = ios_per_vm, queue_depth
    gs = None if golden_images is None else [
        parse_whole(part.strip(), "--golden-images", 1, MAX_VMS) for part in golden_images.split(",")]
    if not (np.isfinite(start_spread) and start_spread >= 0):
        raise UsageError(f"--start-spread = {start_spread!r}: a time of 0 s or more")
    for flag, folder in (("--plots", plots), ("--write-iolog", write_iolog)):
        if folder is not None:
            output_folder(folder, flag)  # before the run, not after it
    tr = None
    if trace is not None:
        _choice("--trace-format", trace_format, sim.TRACE_FORMATS)
        tr = sim.read_trace(trace, trace_format, closed=arr is sim.Arrivals.CLOSED)
    with progress_display(not as_json) as report:
        storm = sim.run_storm(fleet_p, array_p, function_p, t, golden_images=gs, seed=s, arrivals=arr,
                              ios_per_vm=ios if tr is None else None, queue_depth=q, start_spread_s=start_spread,
                              trace=tr, engine=eng, progress=report)
    results = list(storm.runs)
    files: list[Path] = []
    if plots is not None:
        for r in results:
            files += sim.write_plots(r, plots if len(results) == 1 else plots / f"g{r.scenario.golden_images}")
    if write_iolog is not None:
        files += sim.write_fio_iologs(storm.trace, write_iolog)[:1]
    if as_json:
        docs = [r.to_dict() for r in results]
        if len(docs) == 1:
            emit_json({**docs[0], "files": [str(p) for p in files]})
        else:
            emit_json({"golden_images": storm.golden_images, "runs": docs, "files": [str(p) for p in files]})
        return
    if len(results) == 1:
        _print_result(results[0])
    else:
        _print_replicas(results)
    for p in files:
        console.print(f"wrote {p}" + (" (and one iolog per VM beside it)" if p.suffix == ".iolog" else ""))


def _print_replicas(results: list[SimResult]) -> None:
    """What each GI replica buys: the same storm on g = each given number of GIs."""
    first = results[0].scenario
    console.print(f"{first.vms} x {first.fleet} on {first.array} with {first.function}, "
                  f"{first.arrivals.value} loop, {results[0].ios:,} IOs, seed {results[0].seed}: the same storm on "
                  f"{len(results)} numbers of GIs")
    table = Table(title="what GI replicas buy")
    for col in ("GIs g", "boot p95 (s)", "boot max (s)", "busiest GI disk", "GI disks", "pool disks",
                "busiest volume", "S"):
        table.add_column(col, justify="right")
    for r in results:
        util = {u.resource: u for u in r.utilisation}
        table.add_row(str(r.scenario.golden_images), f"{r.boot.p95:.1f}", f"{r.boot.max:.1f}",
                      f"{100 * util['GI disks'].busiest_server:.1f} %", f"{100 * util['GI disks'].mean:.1f} %",
                      f"{100 * util['pool disks'].mean:.1f} %", f"{100 * util['volumes'].busiest_server:.1f} %",
                      format_bytes(r.consumed_bytes))
    console.print(table)
    console.print(f"nominal window {results[0].boot_window_s:.1f} s; S counts every GI copy")


def _print_result(result: SimResult) -> None:
    sc = result.scenario
    console.print(f"{sc.vms} x {sc.fleet} on {sc.array} with {sc.function} ({sc.method.value}, "
                  f"{sc.golden_images} GI), {sc.arrivals.value} loop, {result.ios:,} IOs, seed {result.seed}, "
                  f"{result.engine} engine {result.wall_s:.2f} s")
    table = Table(title="boot storm")
    for col in ("figure", "min", "median", "p95", "max"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    b, lat = result.boot, result.latency
    table.add_row("boot time (s)", f"{b.min:.1f}", f"{b.median:.1f}", f"{b.p95:.1f}", f"{b.max:.1f}")
    table.add_row("IO latency (ms)", f"{1e3 * lat.min:.2f}", f"{1e3 * lat.median:.2f}",
                  f"{1e3 * lat.p95:.2f}", f"{1e3 * lat.max:.2f}")
    c = result.per_clone_new_bytes
    table.add_row("C per clone", format_bytes(c.min), format_bytes(c.median), format_bytes(c.p95),
                  format_bytes(c.max))
    console.print(table)
    util = Table(title="utilisation")
    for col in ("resource", "servers", "mean", "busiest server", "peak bin"):
        util.add_column(col, justify="left" if col == "resource" else "right")
    for u in result.utilisation:
        if u.servers:
            util.add_row(u.resource, str(u.servers), f"{100 * u.mean:.1f} %", f"{100 * u.busiest_server:.1f} %",
                         f"{100 * u.peak_bin:.1f} %")
    console.print(util)
    console.print(f"nominal window {result.boot_window_s:.1f} s; read hit ratio {100 * result.read_hit_ratio:.1f} %; "
                  f"S = {format_bytes(result.consumed_bytes)}")
    late = [f"VM {d['vm']}" + (f" (GI {d['golden_image']})" if d["golden_image"] is not None else "")
            + f" {d['boot_s']:.1f} s" for d in result.slowest_vms(5)]
    console.print("last to boot: " + ", ".join(late))


@app.command("validate")
def validate_cmd(
    fleet: str = FLEET_OPTION,
    array: str = ARRAY_OPTION,
    functions: str = typer.Option("full,thin,snapshot", "--functions",
                                  help="Comma-separated storage functions to check, e.g. full,thin,snapshot."),
    ios_per_vm: int = typer.Option(4000, "--ios-per-vm", click_type=Whole(10, MAX_IOS_PER_VM),
                                   help="IOs per boot in the bisection runs (C and S always use the full boot)."),
    arrivals: str = typer.Option("open", "--arrivals", help="open (each VM offers A, the model's premise) or closed."),
    slack: float = typer.Option(1.02, "--slack", help="A fleet meets its window when p95 boot / nominal <= slack."),
    seed: int = SEED_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Simulation against the model per method: the largest T that meets the boot window, C and S."""
    from clonefleet import sim

    fleet_p, array_p = load_fleet(fleet), load_array(array)
    names = [n.strip() for n in functions.split(",") if n.strip()]
    if not names:
        raise UsageError("--functions is empty: give storage functions, e.g. thin,snapshot")
    fns = [load_function(n) for n in names]
    ios, s = ios_per_vm, seed
    arr = sim.Arrivals(_choice("--arrivals", arrivals, tuple(a.value for a in sim.Arrivals)))
    if not (np.isfinite(slack) and slack >= 1.0):
        raise UsageError(f"--slack = {slack!r}: a factor of at least 1")
    pool = sim.TracePool(fleet_p, s, ios, arr)  # one trace for every function and every T of the bisections
    with progress_display(not as_json) as report:
        checks = [sim.check_method(fleet_p, array_p, f, seed=s, ios_per_vm=ios, slack=slack, arrivals=arr,
                                   pool=pool, progress=report) for f in fns]
    if as_json:
        emit_json({"fleet": fleet_p.name, "array": array_p.name, "seed": s, "ios_per_vm": ios,
                   "methods": [c.to_dict() for c in checks]})
        return
    table = Table(title=f"{fleet_p.name} on {array_p.name}: model vs simulation ({arr.value} loop, "
                        f"p95 boot <= {slack:g} x nominal, seed {s})")
    for col in ("function", "largest T model", "largest T sim", "sim/model", "T for S", "C model", "C sim",
                "S model", "S sim", "sim/model"):
        table.add_column(col, justify="left" if col == "function" else "right")
    for c in checks:
        table.add_row(c.function, str(c.model_max_vms), str(c.sim_max_vms), _ratio(c.max_vms_ratio),
                      str(c.vms_at_check), format_bytes(c.model_per_clone_bytes),
                      format_bytes(c.sim_per_clone_bytes), format_bytes(c.model_consumed_bytes),
                      format_bytes(c.sim_consumed_bytes), f"{c.consumed_ratio:.3f}")
    console.print(table)
