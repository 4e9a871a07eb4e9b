"""Calibrate the model from real storms (``clonefleet calibrate``), and check it on a size it did not see.

What is measured, and what becomes of it:

1. **Storms** of a few fleet sizes (the first N clones of one provisioned fleet, all at once, the same
   workload), each saved like ``clonefleet storm`` saves it.
2. **The storage under the fleet**, alone: fio straight on a file in the fleet's folder, O_DIRECT, the
   storm's read share and mean IO size, many IOs outstanding (:func:`probe_storage`). This is the
   model's disk throughput ``M*X`` (the disks and whatever caches sit below O_DIRECT).
3. **The fit** (:func:`fit_storms`), the paper's Eq. 2 read as a throughput (see
   :func:`clonefleet.planner.storm_figures`): ``Y(T) = min(T*A, N)``. ``A``, one storm VM's rate
   when it has the storage to itself, is the per-VM rate of the smallest storm (a lower bound when
   that storm was already at the limit); ``N``, the IO path's limit (qemu-storage-daemon or the
   kernel, and the CPUs they share with the VMs), minimises the squared log error of Y over the
   storms. The boot time follows, ``boot_ios * T / Y``: it is not fitted on its own.
4. **The presets**: an array preset (N, N_v = N: one host has one IO path; M*X from the probe;
   no cache between the VMs and the storage, since the storms bypass the page cache; the write
   penalty 1, as a file system writes once what the device below may copy; the copy-on-write share
   from the storm's own trace) and the storms' fleet preset (the replayed boot, with A), every
   figure with ``source = "calibrated from storms ... on DATE"``. ``clonefleet plan --array A
   --fleet F --vms T`` then plans with them.
5. **The check**: each size held out in turn, the model fitted on the others predicts its throughput
   and p95 boot time; the simulator, run with the calibrated array on the same trace, too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clonefleet.backends import get_backend
from clonefleet.errors import UsageError, output_folder
from clonefleet.model.equations import backend_iops_private, backend_iops_snapshot
from clonefleet.planner import StormFigures, storm_figures
from clonefleet.presets import ArrayPreset, Figure, FleetPreset, FunctionPreset, Method, load_array
from clonefleet.presets.derive import derive_fleet, toml_number, toml_string
from clonefleet.presets.schema import build_array
from clonefleet.progress import Progress, no_progress
from clonefleet.provision.manifest import Manifest
from clonefleet.provision.plan import provisioned_plan
from clonefleet.sim.arraymodel import compile_network
from clonefleet.sim.results import SimResult
from clonefleet.sim.scenario import DEFAULT_CACHE_BLOCK_BYTES, build_scenario
from clonefleet.sim.storm import run_storm as simulate_storm
from clonefleet.sim.trace import WRITE
from clonefleet.storage.files import refuse_to_replace, write_text_whole
from clonefleet.storage.goldimage import gi_used_bytes
from clonefleet.storage.tools import started_tool, stop_on_signals
from clonefleet.storage.workdirs import work_dir
from clonefleet.storm.results import StormResult, machine_info
from clonefleet.storm.run import StormRequest, run_storm
from clonefleet.storm.workload import Workload

DEFAULT_SIZES = (8, 32, 128)
#: The storage probe: IOs outstanding, seconds measured, file size.
PROBE_IODEPTH = 64
PROBE_SECONDS = 3.0
PROBE_FILE_BYTES = 256 << 20
#: Candidate limits N tried by the fit, log-spaced between half the slowest storm and twice the fastest.
_GRID = 4000


@dataclass(frozen=True)
class StormPoint:
    """One storm, as the fit sees it: its size, its throughput and boot times (IOPS, seconds)."""

    vms: int
    ios_per_vm: float
    iops: float
    vm_iops: float  # the median VM's IOs / its boot time
    boot_p50_s: float
    boot_p95_s: float
    boot_max_s: float
    saved_to: str | None = None

    @classmethod
    def of(cls, r: StormResult) -> StormPoint:
        return cls(vms=len(r.vms), ios_per_vm=r.ios / max(len(r.vms), 1), iops=r.iops,
                   vm_iops=float(np.median([v.iops for v in r.vms])), boot_p50_s=r.boot_s(0.5),
                   boot_p95_s=r.boot_s(0.95), boot_max_s=r.boot_s(1.0), saved_to=r.saved_to)


@dataclass(frozen=True)
class StormFit:
    """``Y(T) = min(T*A, N)`` fitted to storms (module docstring, item 3)."""

    host_iops: float  # A
    path_iops: float  # N
    sizes: tuple[int, ...]
    at_limit: tuple[int, ...]  # the sizes whose storms the fit puts at N
    note: str

    def iops(self, vms: int) -> float:
        return min(vms * self.host_iops, self.path_iops)


def fit_storms(points: Sequence[StormPoint]) -> StormFit:
    """Fit A and N to the storms (module docstring, item 3); at least two sizes."""
    pts = sorted(points, key=lambda p: p.vms)
    if len({p.vms for p in pts}) < 2:
        raise UsageError("a fit needs storms of at least two fleet sizes")
    if not all(math.isfinite(p.iops) and p.iops > 0 for p in pts):
        raise UsageError("a storm without a finite throughput cannot be fitted")
    a = pts[0].iops / pts[0].vms
    n = np.array([p.vms for p in pts], dtype=np.float64)
    y = np.log([p.iops for p in pts])
    lo, hi = min(p.iops for p in pts) / 2, max(float(n.max()) * a, max(p.iops for p in pts)) * 2
    grid = np.exp(np.linspace(math.log(lo), math.log(hi), _GRID))
    pred = np.log(np.minimum(n[None, :] * a, grid[:, None]))
    cap = float(grid[int(np.argmin(((pred - y[None, :]) ** 2).sum(axis=1)))])
    at_limit = tuple(p.vms for p in pts if p.vms * a >= cap)
    if len(at_limit) == len(pts):
        note = (f"every storm ran at the limit: A = {a:,.0f} IOPS (the smallest storm's IOPS per VM) is a lower "
                "bound of one VM's rate alone; add a smaller size to measure it")
    elif not at_limit:
        note = (f"no storm reached the limit: N = {cap:,.0f} IOPS is at least what the largest storm drew; add a "
                "larger size to find it")
    else:
        note = f"storms of {', '.join(map(str, at_limit))} VMs ran at the limit N"
    return StormFit(host_iops=a, path_iops=cap, sizes=tuple(p.vms for p in pts), at_limit=at_limit, note=note)


@dataclass(frozen=True)
class Check:
    """One size held out: what the model fitted without it, and the simulator, say of it."""

    vms: int
    measured: StormPoint
    model: StormFigures
    fit: StormFit
    simulated_iops: float
    simulated_boot_p95_s: float

    def errors(self) -> dict[str, float]:
        m = self.measured
        return {"model_iops": self.model.iops / m.iops - 1, "model_boot_p95": self.model.boot_s / m.boot_p95_s - 1,
                "sim_iops": self.simulated_iops / m.iops - 1,
                "sim_boot_p95": self.simulated_boot_p95_s / m.boot_p95_s - 1}

    def to_dict(self) -> dict[str, object]:
        return {"vms": self.vms, "fitted_on": [s for s in self.fit.sizes],
                "fit": {"host_iops": self.fit.host_iops, "path_iops": self.fit.path_iops},
                "measured": dataclasses.asdict(self.measured),
                "model": dataclasses.asdict(self.model),
                "simulated": {"iops": self.simulated_iops, "boot_p95_s": self.simulated_boot_p95_s},
                "relative_errors": self.errors()}


@dataclass(frozen=True)
class Calibration:
    """A calibration's storms, fit, presets and held-out checks."""

    manifest: str
    method: str
    backend: str
    points: tuple[StormPoint, ...]
    fit: StormFit
    storage_iops: float | None  # the probe's M*X (None: not probed)
    array: ArrayPreset
    fleet: FleetPreset
    array_file: str
    fleet_file: str
    checks: tuple[Check, ...]
    calibrated_on: str
    machine: dict[str, object]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"kind": "clonefleet calibration", "manifest": self.manifest, "method": self.method,
                "backend": self.backend, "calibrated_on": self.calibrated_on,
                "storms": [dataclasses.asdict(p) for p in self.points],
                "fit": dataclasses.asdict(self.fit), "storage_iops": self.storage_iops,
                "array_file": self.array_file, "fleet_file": self.fleet_file,
                "held_out": [c.to_dict() for c in self.checks], "machine": self.machine, "notes": list(self.notes)}


def check_sizes(sizes: Sequence[int], clones: int) -> tuple[int, ...]:
    """Two or more distinct fleet sizes, each from 1 to the fleet's clones, smallest first."""
    out = tuple(sorted(set(sizes)))
    if len(out) < 2:
        raise UsageError(f"--sizes = {','.join(map(str, sizes))}: at least two different fleet sizes, e.g. 8,32,128")
    if out[0] < 1 or out[-1] > clones:
        raise UsageError(f"--sizes = {','.join(map(str, sizes))}: each from 1 to the fleet's {clones} clones")
    return out


def storm_fleet(workload: Workload, gi_virtual_bytes: int, gi_used_bytes: int, host_iops: float, date: str,
                label: str) -> tuple[FleetPreset, str]:
    """The fleet preset of what the storm's VMs replayed: figures derived from its trace, A calibrated."""
    a = Figure(source=f"calibrated from storms of {label} on {date}: IOs per second of one VM of the smallest "
                      "storm (closed loop at its queue depth)", date=date)
    derived = derive_fleet(workload.trace, name=f"storm-{label}", source_label=f"the storm trace of {label}",
                           sha256=_trace_digest(workload), gi_virtual_bytes=float(gi_virtual_bytes),
                           gi_used_bytes=float(gi_used_bytes), queue_depth=workload.queue_depth, date=date,
                           gi_source="measured on the GI", host_iops=(host_iops, a))
    return derived.fleet, derived.toml


def _trace_digest(workload: Workload) -> str:
    h = hashlib.sha256()
    t = workload.trace
    for part in (t.vm_start, t.op, t.offset_bytes, t.length_bytes):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def cow_read_fraction(workload: Workload, fleet: FleetPreset, function: FunctionPreset) -> float:
    """Share of the trace's writes that read old GI data first (copy-on-write), as the simulator places
    them for ``function``'s unit; 0 for methods that never read the GI."""
    if function.method is not Method.SNAPSHOT:
        return 0.0
    scenario = build_scenario(workload.trace, fleet, load_array("midrange-2012"), function,
                              queue_depth=workload.queue_depth)
    net = compile_network(scenario)
    writes = int(np.count_nonzero(net.is_write))
    return float(np.count_nonzero(net.cow_disk[0] >= 0)) / writes if writes else 0.0


def backend_per_host(fleet: FleetPreset, function: FunctionPreset, phi: float) -> float:
    """B/A on the calibrated array (no cache, p = 1), by the model's own equations for this fleet
    preset and function: the disks are raised by it so that they never bind before the path (a
    second copy of B/A, with the largest workload's read share, left a held-out preset's a hair below it)."""
    if function.method is Method.SNAPSHOT:
        return float(backend_iops_snapshot(1.0, fleet.read_fraction, 0.0, 1.0, phi))
    return float(backend_iops_private(1.0, fleet.read_fraction, 0.0, 1.0))


def array_toml(name: str, fit: StormFit, storage_iops: float | None, phi: float, label: str, date: str,
               cache_block_bytes: int) -> str:
    """The calibrated array preset (module docstring, item 4), as a file that loads back."""
    src = f"calibrated from storms of {label} on {date}"
    rows: list[tuple[str, object, str]] = [
        ("processor_iops", fit.path_iops, f"{src}: the storms' throughput limit N, fitted as min(T*A, N) ({fit.note})"),
        ("processors", 1, f"{src}: one host, one IO path"),
        ("volume_iops_limit", fit.path_iops, f"{src}: one host has one IO path, so a volume's limit is N; storms on "
                                             "several GIs would tell them apart"),
    ]
    if storage_iops is not None:
        rows.append(("disk_iops", storage_iops, f"{src}: fio on a file in the fleet's folder, O_DIRECT, the storm's "
                                                f"read share and IO size, {PROBE_IODEPTH} IOs outstanding"))
    else:
        rows.append(("disk_iops", fit.path_iops, f"{src}: not probed (no file system under the fleet); set to N so "
                                                 "the disks never bind before the path"))
    rows += [
        ("disks", 1, f"{src}: the storage under the fleet measured as one"),
        ("gi_disks", 1, f"{src}: the GI lies on the same storage"),
        ("raid_write_penalty", 1, f"{src}: a write reaches the storage once (what the device does below is in M)"),
        ("cache_hit_shared", 0.0, f"{src}: the storms bypass the host page cache (O_DIRECT, cache=none)"),
        ("cache_hit_private", 0.0, f"{src}: the storms bypass the host page cache (O_DIRECT, cache=none)"),
        ("cow_read_fraction", phi, f"{src}: writes of the storm's trace that read old GI data first"),
        ("cache_size", f"{cache_block_bytes} B", f"{src}: no cache; the simulator's smallest (one block)"),
    ]
    lines = [f"# An array calibrated by clonefleet calibrate from storms of {label}.", "[preset]", 'kind = "array"',
             f"name = {toml_string(name)}", f"description = {toml_string(f'this machine as storms of {label} saw it')}"]
    for key, value, source in rows:
        written = toml_string(value) if isinstance(value, str) else toml_number(float(value))  # type: ignore[arg-type]
        lines += ["", f"[{key}]", f"value = {written}", f"source = {toml_string(source)}", f'date = "{date}"']
    return "\n".join(lines) + "\n"


def probe_storage(folder: Path, read_fraction: float, io_bytes: int, progress: Progress = no_progress) -> float:
    """IOPS of the storage under ``folder``: fio, O_DIRECT, random IO of the storm's mix, on a file in a
    private folder there that is removed afterwards (also if clonefleet is killed)."""
    block = max(4096, int(round(io_bytes / 4096)) * 4096)
    with stop_on_signals(), work_dir(folder, ".clonefleet-probe-") as tmp:
        jobfile, output, status = tmp / "probe.fio", tmp / "probe.json", tmp / "probe.out"
        jobfile.write_text("\n".join([
            "[probe]", f"filename={tmp / 'probe.dat'}", f"size={PROBE_FILE_BYTES}", "ioengine=libaio", "direct=1",
            "rw=randrw", f"rwmixread={round(read_fraction * 100)}", f"bs={block}", f"iodepth={PROBE_IODEPTH}",
            "time_based=1", f"runtime={PROBE_SECONDS:g}", "ramp_time=0.5", "unified_rw_reporting=mixed"]) + "\n",
            encoding="utf-8")
        progress("probe the storage (fio, O_DIRECT)", 0, 1)
        with started_tool(["fio", "--output-format=json", f"--output={output}", str(jobfile)], output=status) as fio:
            code = fio.wait(timeout=PROBE_SECONDS * 20 + 60)
        if code != 0:
            raise UsageError(f"the storage probe (fio on {folder}) failed: "
                             f"{status.read_text(errors='replace').strip().splitlines()[-1:]}")
        data = json.loads(output.read_text(encoding="utf-8"))
        job = data["jobs"][0]["mixed"]
        progress("probe the storage (fio, O_DIRECT)", 1, 1)
        return float(job["iops"])


def simulate(workload: Workload, fleet: FleetPreset, array: ArrayPreset, function: FunctionPreset,
             golden_images: int) -> SimResult:
    """The simulator's run of the storm's very trace on ``array`` (closed loop, its queue depth)."""
    storm = simulate_storm(fleet, array, function, workload.trace.vms, golden_images=golden_images,
                           trace=workload.trace, queue_depth=workload.queue_depth)
    return storm.runs[0]


def sim_figures(result: SimResult) -> tuple[float, float]:
    """(IOPS, p95 boot time) of a simulated storm, as a storm measures them."""
    return result.ios / result.makespan_s, float(np.quantile(result.boot_s, 0.95))


def calibration_files(manifest: Manifest, out: Path | None, stamp: str) -> tuple[Path, Path, Path]:
    """(array preset, fleet preset, calibration JSON): beside the manifest, or in ``--out``."""
    folder = out if out is not None else manifest.path.parent
    base = f"{manifest.name}-{stamp}"
    return (folder / f"calibrated-array-{base}.toml", folder / f"calibrated-fleet-{base}.toml",
            folder / f"calibration-{base}.json")


def calibrate(manifest: Manifest, sizes: Sequence[int] = DEFAULT_SIZES, request: StormRequest = StormRequest(), *,
              probe: bool = True, progress: Progress = no_progress) -> Calibration:
    """Storms of each size, the probe, the fit, the presets and the held-out checks (module docstring)."""
    backend = get_backend(manifest.backend)
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stamp, date = started.strftime("%Y%m%dT%H%M%SZ"), started.date().isoformat()
    if request.out is not None:
        output_folder(request.out, "--out")
    files = calibration_files(manifest, request.out, stamp)
    for path in files:
        refuse_to_replace(path, "calibration output")
    with provisioned_plan(manifest, backend, "calibrate") as plan:  # checked now; each storm locks again
        sizes = check_sizes(sizes, len(plan.tasks))
        gi, g, function, fleet_dir = plan.gi, plan.golden_images, plan.recipe.model_function, plan.fleet_dir
    used = gi_used_bytes(gi)
    label = f"{', '.join(map(str, sizes))} VMs of fleet {manifest.name} ({function.method} clones on {backend.name})"

    results: list[StormResult] = []
    workloads: dict[int, Workload] = {}
    for i, size in enumerate(sizes):
        progress(f"storm {i + 1} of {len(sizes)}: {size} VMs", i, len(sizes))
        results.append(run_storm(manifest, dataclasses.replace(request, vms=size), backend=backend))
        workloads[size] = request.workload.draw(manifest, gi, size)
    points = tuple(StormPoint.of(r) for r in results)
    largest = workloads[sizes[-1]]
    t = largest.trace
    read_share = float(np.count_nonzero(t.op != WRITE)) / t.ios
    storage_iops = None
    if probe and backend.name != "rbd":
        storage_iops = probe_storage(fleet_dir, read_share, int(t.length_bytes.mean()), progress)
    notes: list[str] = []

    def presets(fit: StormFit, workload: Workload) -> tuple[ArrayPreset, FleetPreset, str, str]:
        fleet, fleet_text = storm_fleet(workload, gi.virtual_bytes, used, fit.host_iops, date, label)
        phi = cow_read_fraction(workload, fleet, function)
        disk = storage_iops
        if disk is not None:
            b_per_a = backend_per_host(fleet, function, phi)
            if disk / b_per_a < fit.path_iops:  # the storms beat the probe: a cache below O_DIRECT answered
                disk = fit.path_iops * b_per_a
        text = array_toml(f"calibrated-{manifest.name}", fit, disk, phi, label, date, DEFAULT_CACHE_BLOCK_BYTES)
        return build_array(f"calibrated array of {label}", tomllib.loads(text)), fleet, text, fleet_text

    fit = fit_storms(points)
    array, fleet, array_text, fleet_text = presets(fit, largest)
    if storage_iops is not None and float(array.disk_iops) > storage_iops:
        notes.append(f"the storms drew more than the probe's {storage_iops:,.0f} IOPS from the storage: M*X was raised "
                     "to what they drew (a cache below O_DIRECT, or the probe's file too small to miss it)")
    checks = []
    for size, point in zip(sizes, points, strict=True):
        progress(f"check: {size} VMs held out", len(results), len(sizes))
        others = [p for p in points if p.vms != size]
        if len({p.vms for p in others}) < 2:
            continue
        held_fit = fit_storms(others)
        held_array, held_fleet, _, _ = presets(held_fit, workloads[size])
        gis = min(g, size) if function.method is Method.SNAPSHOT else 1
        model = storm_figures(held_fleet, held_array, function, size, gis)
        sim_iops, sim_p95 = sim_figures(simulate(workloads[size], held_fleet, held_array, function, gis))
        checks.append(Check(size, point, model, held_fit, sim_iops, sim_p95))
    array_file, fleet_file, json_file = files
    write_text_whole(array_file, array_text, "calibrated array preset")
    write_text_whole(fleet_file, fleet_text, "calibrated fleet preset")
    result = Calibration(manifest=str(manifest.path), method=function.method.value, backend=backend.name,
                         points=points, fit=fit, storage_iops=storage_iops, array=array, fleet=fleet,
                         array_file=str(array_file), fleet_file=str(fleet_file), checks=tuple(checks),
                         calibrated_on=started.isoformat().replace("+00:00", "Z"), machine=machine_info(),
                         notes=(fit.note, *notes))
    write_text_whole(json_file, json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n", "calibration")
    progress("calibrated", len(sizes), len(sizes))
    return result


