"""Commands of the simulator (clonefleet simulate, validate)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer

from clonefleet.cli.app import (
    JSON_OPTION,
    QUIET_OPTION,
    TRACE_FORMAT_HELP,
    TRACE_KINDS,
    Col,
    Whole,
    app,
    console,
    emit_json,
    parse_whole,
    print_table,
    progress_display,
)
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
DASK_OPTION = typer.Option(None, "--dask", metavar="ADDRESS",
                           help="Run the independent storms on the Dask cluster whose scheduler is at ADDRESS "
                                "(e.g. tcp://10.0.0.5:8786) instead of on the local cores.")
WORKERS_OPTION = typer.Option(None, "--workers", click_type=Whole(1, 4096, "WORKERS"),
                              help="Local processes for independent storms (default: one per core; 1: none, "
                                   "all in this process).")
#: The CLI's copies of the simulator's defaults (DEFAULT_SLACK, DEFAULT_IOS_PER_VM of its compare module; a
#: test holds them equal): the CLI starts without importing the simulator.
DEFAULT_SLACK = 1.02
SLACK_OPTION = typer.Option(DEFAULT_SLACK, "--slack", help="A fleet meets its window when p95 boot / nominal <= slack.")
#: IOs per boot in the storms validate bisects with and sweep --simulate runs.
STORM_IOS_PER_VM = 4000


def check_slack(slack: float) -> float:
    """--slack: a finite factor of at least 1."""
    if not (np.isfinite(slack) and slack >= 1.0):
        raise UsageError(f"--slack = {slack!r}: a factor of at least 1")
    return slack


#: IOs one boot issues, or outstanding per VM: far beyond any real boot, and a storm still fits in memory.
MAX_IOS_PER_VM = 10**9
IOS_HELP = "IOs per VM boot (default: the fleet's boot_ios); fewer for a quick run, W and n scale along."

#: The words of the simulator's tables, one line each (also in docs/simulator.md and the help).
TERMS = {
    "nominal window": "one boot's length at the fleet's own IO rate A with no queueing: boot IOs / A",
    "closed loop": "each VM keeps q IOs outstanding, issuing the next as one completes, as a guest does",
    "open loop": "each VM issues its IOs at rate A whatever the array does (the paper's premise)",
    "servers": "how many of the resource the array has; each serves one IO at a time",
    "mean": "share of the run its servers were busy, averaged over them",
    "busiest server": "share of the run its most loaded server was busy (near 100 %: saturated)",
    "peak bin": "its busy share in the busiest time slice; at least the mean, may be below the busiest server",
    "T for S": "the fleet size T at which C and S are compared (the model's largest T, at most 1000)",
}
#: The busy shares the "what GI replicas buy" table shows, one column each.
REPLICA_RESOURCES = ("GI disks", "pool disks", "volumes", "processors")
REPLICA_COLUMNS = (Col("golden images", "GIs"), Col("boot p95 (s)", "p95 s", right=True),
                   Col("boot max (s)", "max s", right=True),
                   *(Col(name, short, right=True) for name, short in zip(
                       REPLICA_RESOURCES, ("GI dk", "pool dk", "vol", "proc"), strict=True)),
                   Col("limited by", "limit"), Col("S", right=True))
VALIDATE_COLUMNS = (Col("function"), Col("largest T model", "T mod", right=True),
                    Col("largest T sim", "T sim", right=True), Col("T sim/model", "T s/m", right=True),
                    Col("T for S", "T@S", right=True), Col("C model", "C mod", right=True),
                    Col("C sim", right=True), Col("S model", "S mod", right=True), Col("S sim", right=True),
                    Col("S sim/model", "S s/m", right=True))
UTIL_TERMS = "; ".join(f"{k}: {TERMS[k]}" for k in ("servers", "mean", "busiest server", "peak bin"))


def _ratio(value: float | None) -> str:
    """A ratio to three places, or a dash when the model has none (no VM carried)."""
    return "—" if value is None else f"{value:.3f}"


def _choice(flag: str, text: str, allowed: tuple[str, ...]) -> str:
    if text not in allowed:
        raise UsageError(f"{flag} = {text!r}: one of {', '.join(allowed)}")
    return text


@app.command("simulate")
def simulate_cmd(
    fleet: str = typer.Option(None, "--fleet", "-f", help="Fleet preset name or path to a fleet TOML file "
                                                          "(with --trace: default, the fleet the trace gives)."),
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
    order_jitter: float = typer.Option(0.0, "--order-jitter",
                                       help="With --trace: each VM shuffles its IOs within phases of this many s "
                                            "of its boot (0: the captured order)."),
    trace: Path = typer.Option(None, "--trace", help="Replay a real trace (" + TRACE_KINDS + ") instead of a "
                                                     "synthetic one; with fewer VMs than --vms, each VM replays "
                                                     "one of its boots."),
    trace_format: str = typer.Option("auto", "--trace-format", help=TRACE_FORMAT_HELP),
    plots: Path = typer.Option(None, "--plots", help="Folder for boot_times.png and utilisation.png."),
    write_iolog: Path = typer.Option(None, "--write-iolog", help="Also write the trace as fio iologs (one per VM)."),
    dask: str = DASK_OPTION,
    workers: int = WORKERS_OPTION,
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Simulate a boot storm: per-VM boot times, IO latency, utilisation over time, C and S, and the
    resource that limits it. A list of GIs (-g 1,2,3) runs the same storm on each and says why more
    GIs stop helping.

    Words: nominal window: how long one boot takes at the fleet's IO rate A with no queueing (boot
    IOs / A). closed loop: each VM keeps q IOs outstanding, as a guest does; open loop: each VM
    issues IOs at rate A whatever the array does. servers: how many of a resource the array has;
    mean / busiest server: the share of the run the resource was busy, on average / on its most
    loaded server; peak bin: its busy share in its busiest time slice.
    """
    from clonefleet import sim
    from clonefleet.presets import resolve_trace

    if fleet is None and trace is None:
        raise UsageError("give --fleet (a preset name or TOML file), or --trace to derive the fleet from a trace")
    if fleet is None:
        from clonefleet.cli.traces import derive_from_trace

        fleet_p = derive_from_trace(trace, trace_format, None, None, None).fleet
    else:
        fleet_p = load_fleet(fleet)
    array_p, function_p = load_array(array), load_function(method)
    t, s = vms, seed
    eng = sim.Engine(_choice("--engine", engine, tuple(e.value for e in sim.Engine)))
    arr = sim.Arrivals(_choice("--arrivals", arrivals, tuple(a.value for a in sim.Arrivals)))
    ios, q = ios_per_vm, queue_depth
    gs = None if golden_images is None else [
        parse_whole(part.strip(), "--golden-images", 1, MAX_VMS) for part in golden_images.split(",")]
    if not (np.isfinite(start_spread) and start_spread >= 0):
        raise UsageError(f"--start-spread = {start_spread!r}: a time of 0 s or more")
    if not (np.isfinite(order_jitter) and order_jitter >= 0):
        raise UsageError(f"--order-jitter = {order_jitter!r}: a phase length of 0 s or more")
    for flag, folder in (("--plots", plots), ("--write-iolog", write_iolog)):
        if folder is not None:
            output_folder(folder, flag)  # before the run, not after it
    tr = None
    if trace is not None:
        _choice("--trace-format", trace_format, sim.TRACE_FORMATS)
        closed = arr is sim.Arrivals.CLOSED
        tr = sim.read_trace(resolve_trace(trace), trace_format, closed=closed and order_jitter == 0)
        if tr.vms < t or start_spread > 0 or order_jitter > 0:
            # Fewer boots than VMs: every VM replays one of the trace's boots, with its own jitter.
            tr = sim.replay_boots(tr, t, np.random.default_rng(s), start_spread_s=start_spread,
                                  order_window_s=order_jitter, closed=closed)
    elif order_jitter > 0:
        raise UsageError("--order-jitter: only with --trace (a synthetic trace has no captured order)")
    with progress_display(not (as_json or quiet)) as report, \
            sim.storm_executor(dask, workers if gs is not None and len(gs) > 1 else 1) as executor:
        storm = sim.run_storm(fleet_p, array_p, function_p, t, golden_images=gs, seed=s, arrivals=arr,
                              ios_per_vm=ios if tr is None else None, queue_depth=q, start_spread_s=start_spread,
                              trace=tr, engine=eng, progress=report, executor=executor,
                              keep_trace=write_iolog is not None)
    results = list(storm.runs)
    files: list[Path] = []
    if plots is not None:
        for r in results:
            files += sim.write_plots(r, plots if len(results) == 1 else plots / f"g{r.scenario.golden_images}",
                                     compared_with=[o for o in results if o is not r])
    if write_iolog is not None:
        assert storm.trace is not None  # kept for the iologs
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
    from clonefleet import sim

    first = results[0].scenario
    console.print(f"{first.vms} x {first.fleet} on {first.array} with {first.function}, "
                  f"{first.arrivals.value} loop, {results[0].ios:,} IOs, seed {results[0].seed}: the same storm on "
                  f"{len(results)} numbers of GIs")
    rows = []
    for r in results:
        util = {u.resource: u for u in r.utilisation}
        top = r.bottleneck()
        busy = [f"{100 * u.busiest_server:.0f} / {100 * u.mean:.0f} %" if u.servers else "-"
                for u in (util[name] for name in REPLICA_RESOURCES)]
        g = r.scenario.golden_images
        rows.append([f"{g} GI" + ("s" if g != 1 else ""), _secs(r.boot.p95), _secs(r.boot.max), *busy,
                     f"{top.resource} {100 * top.busiest_server:.0f} %", format_bytes(r.consumed_bytes)])
    print_table("what GI replicas buy (busy shares: of the run, busiest server / mean of all)", REPLICA_COLUMNS, rows)
    console.print(f"nominal window {results[0].boot_window_s:.1f} s (one boot at the fleet's IO rate, no queueing); "
                  "S counts every GI copy; limited by: the resource whose busiest server is busiest")
    lines = sim.explain_replicas(results)
    for line in lines:
        console.print(line)
    g = results[-1].scenario.golden_images
    if not any(line.startswith(f"{g} GIs") for line in lines):
        console.print(sim.explain_bottleneck(results[-1]).replace("what limits this storm",
                                                                 f"at g = {g}, what limits the storm", 1))


def _secs(x: float) -> str:
    """A time in s to 0.1 s, or to 3 significant digits under 10 s."""
    return f"{x:,.1f}" if abs(x) >= 10 else f"{x:.3g}"


def _print_result(result: SimResult) -> None:
    from clonefleet import sim

    sc = result.scenario
    if sc.arrivals.value == "closed":
        loop = f"each VM keeps {sc.queue_depth} IOs outstanding"
    else:
        loop = "each VM issues IOs at its rate A" if sc.trace == "synthetic" else \
            "each VM issues IOs at the trace's times"
    gis = f"{sc.golden_images} GI{'s' if sc.golden_images != 1 else ''}"
    console.print(f"{sc.vms} x {sc.fleet} on {sc.array} with {sc.function} ({sc.method.value}, "
                  f"{gis}), {sc.arrivals.value} loop ({loop}), {result.ios:,} IOs, seed {result.seed}, "
                  f"{result.engine} engine {result.wall_s:.2f} s")
    if sc.trace != "synthetic":
        console.print(f"trace: {sc.trace}", markup=False, soft_wrap=True)
    b, lat, c = result.boot, result.latency, result.per_clone_new_bytes
    print_table("boot storm", [Col("figure"), *(Col(q, right=True) for q in ("min", "median", "p95", "max"))],
                [["boot time (s)", f"{b.min:.1f}", f"{b.median:.1f}", f"{b.p95:.1f}", f"{b.max:.1f}"],
                 ["IO latency (ms)", f"{1e3 * lat.min:.2f}", f"{1e3 * lat.median:.2f}", f"{1e3 * lat.p95:.2f}",
                  f"{1e3 * lat.max:.2f}"],
                 ["C per clone", format_bytes(c.min), format_bytes(c.median), format_bytes(c.p95),
                  format_bytes(c.max)]])
    print_table(f"utilisation (busy share of the run; peak in {result.util_bin_s:.2g} s bins)",
                [Col("resource"), Col("servers", right=True), Col("mean", right=True),
                 Col("busiest server", "busiest", right=True), Col("peak bin", "peak", right=True)],
                [[u.resource, str(u.servers), f"{100 * u.mean:.1f} %", f"{100 * u.busiest_server:.1f} %",
                  f"{100 * u.peak_bin:.1f} %"] for u in result.utilisation if u.servers])
    if result.latency_percentiles_error:
        console.print(f"IO latency min and max are exact; its median and p95 come from a sketch (the storm's "
                      f"{result.ios:,} latencies are more than clonefleet keeps for exact percentiles): each within "
                      f"{100 * result.latency_percentiles_error:.3g} % of the exact value")
    console.print(UTIL_TERMS, style="dim")
    console.print(f"nominal window {result.boot_window_s:.1f} s ({TERMS['nominal window']}); read hit ratio "
                  f"{100 * result.read_hit_ratio:.1f} %; S = {format_bytes(result.consumed_bytes)}")
    if sc.arrivals.value == "closed" and result.boot.p95 < result.boot_window_s:
        console.print("the boots end before the nominal window: in a closed loop a VM issues its next IO as soon "
                      "as one completes, faster than its rate A when the array keeps up")
    console.print(sim.explain_bottleneck(result))
    late = [f"VM {d['vm']}" + (f" (GI {d['golden_image']})" if d["golden_image"] is not None else "")
            + f" {d['boot_s']:.1f} s" for d in result.slowest_vms(5)]
    console.print("last to boot: " + ", ".join(late))


@app.command("validate")
def validate_cmd(
    fleet: str = FLEET_OPTION,
    array: str = ARRAY_OPTION,
    functions: str = typer.Option("full,thin,snapshot", "--functions",
                                  help="Comma-separated storage functions to check, e.g. full,thin,snapshot."),
    ios_per_vm: int = typer.Option(STORM_IOS_PER_VM, "--ios-per-vm", click_type=Whole(10, MAX_IOS_PER_VM),
                                   help="IOs per boot in the search's runs (C and S always use the full boot)."),
    arrivals: str = typer.Option("open", "--arrivals", help="open (each VM offers A, the model's premise) or closed."),
    slack: float = SLACK_OPTION,
    seed: int = SEED_OPTION,
    dask: str = DASK_OPTION,
    workers: int = WORKERS_OPTION,
    as_json: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Simulation against the model per method: the largest T that meets the boot window, C and S.

    The largest T is found by a search on T to 1 %, one simulated storm per T tried (progress shows
    each; each storm's ratio picks the next T); the functions' searches and the count of C run side
    by side on the local cores (--workers) or on a Dask cluster (--dask), with the same results
    either way.
    Words: nominal window: how long one boot takes at the fleet's IO rate A with no queueing; a
    fleet meets it when its p95 boot is within --slack of it. open loop: each VM issues IOs at rate
    A (the model's premise); closed loop: each keeps q IOs outstanding. T for S: the fleet size at
    which C (per clone) and S (all clones) are compared.
    """
    from clonefleet import sim

    fleet_p, array_p = load_fleet(fleet), load_array(array)
    names = [n.strip() for n in functions.split(",") if n.strip()]
    if not names:
        raise UsageError("--functions is empty: give storage functions, e.g. thin,snapshot")
    fns = [load_function(n) for n in names]
    ios, s = ios_per_vm, seed
    arr = sim.Arrivals(_choice("--arrivals", arrivals, tuple(a.value for a in sim.Arrivals)))
    check_slack(slack)
    with progress_display(not (as_json or quiet)) as report, sim.storm_executor(dask, workers) as executor:
        checks = sim.validate_fleet(fleet_p, array_p, fns, seed=s, ios_per_vm=ios, slack=slack, arrivals=arr,
                                    executor=executor, slots=sim.executor_slots(executor), progress=report)
    if as_json:
        emit_json({"fleet": fleet_p.name, "array": array_p.name, "seed": s, "ios_per_vm": ios,
                   "methods": [c.to_dict() for c in checks]})
        return
    print_table(f"{fleet_p.name} on {array_p.name}: model vs simulation ({arr.value} loop, "
                f"p95 boot <= {slack:g} x nominal, seed {s})", VALIDATE_COLUMNS,
                [[c.function, str(c.model_max_vms), str(c.sim_max_vms), _ratio(c.max_vms_ratio), str(c.vms_at_check),
                  format_bytes(c.model_per_clone_bytes), format_bytes(c.sim_per_clone_bytes),
                  format_bytes(c.model_consumed_bytes), format_bytes(c.sim_consumed_bytes), f"{c.consumed_ratio:.3f}"]
                 for c in checks])
    console.print(f"largest T: the most VMs whose p95 boot stays within {slack:g} x the nominal window ("
                  f"{TERMS['nominal window']}); T for S: {TERMS['T for S']}; C: new bytes per clone; S: all "
                  "clones and GI copies", style="dim")

