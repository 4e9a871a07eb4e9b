"""Real boot storms: what the harness costs, and storms of 8, 32 and 128 qcow2 clones per method.

1. Harness cost: ``clonefleet storm`` (the library's :func:`run_storm`) on 8 linked qcow2 clones,
   24,000 IOs each (the synthetic server-linux boot, four times as long: runs of seconds),
   against a hand-written fio job run directly on the same clones through a hand-started
   qemu-storage-daemon serving the same NBD exports (O_DIRECT), replaying the same iologs at
   the same queue depth, in the same session, alternating, after one warm-up storm (the first
   run allocates the boots' clusters). The anchor's figure is fio's own group IOPS
   (``group_reporting``). Floor (issue 12): the storm's IOPS within 10 % of the anchor's, taken as
   the median over the rounds of each storm's IOPS over the hand-written run's right after it.
2. Storms of 8, 32 and 128 clones for full, thin and snapshot qcow2 fleets (the preset's whole
   synthetic boot per VM, all VMs at once): fleet IOPS, boot time p50 / p95 / max, IO latency
   p50 / p99, bytes allocated by the storm.

Run: ``.venv/bin/python -m benchmarks storm`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import json
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clonefleet.provision import load_manifest, provision
from clonefleet.provision.goldimage import build_golden_image
from clonefleet.provision.manifest import write_manifest
from clonefleet.sim.traceio import write_fio_iologs
from clonefleet.storage.data import sha256_file
from clonefleet.storm import StormRequest, run_storm
from clonefleet.storm.results import machine_info
from clonefleet.storm.workload import storm_workload
from clonefleet.units import format_bytes

MiB = 1024**2
GI_BYTES = 256 * MiB
COST_VMS = 8
COST_IOS = 24_000  # 4x the server-linux preset's boot: runs of several seconds, less noise
COST_ROUNDS = 5


def fleet(base: Path, gi: Path, count: int, method: str, name: str = "") -> Path:
    """A fresh fleet of ``count`` clones (``name`` keeps the harness-cost fleet apart from the others)."""
    name = name or f"{method}-{count}"
    path = base / f"{name}.toml"
    write_manifest(path, {
        "fleet": {"name": name.replace("-", ""), "count": count, "dest": name},
        "golden_image": {"path": str(gi), "sha256": sha256_file(gi), "bytes": gi.stat().st_size},
        "clones": {"backend": "qcow2", "method": method, "golden_images": 1, "workers": 4},
    }, force=True)
    provision(load_manifest(path))
    return path


def hand_written(manifest_path: Path, gi: Path, work: Path) -> float:
    """fio's own IOPS for a hand-written job on the fleet's clones, served by a hand-started daemon."""
    m = load_manifest(manifest_path)
    from clonefleet.storage.goldimage import check_golden_image

    info = check_golden_image(gi, None)
    workload = storm_workload(m, info, COST_VMS, seed=1, ios_per_vm=COST_IOS)
    logs = write_fio_iologs(workload.trace, work / "iologs", device="nbd")
    sock, pid = work / "s.sock", work / "qsd.pid"
    clones = sorted(m.dest.glob("vm-*.qcow2"))[:COST_VMS]
    args = ["qemu-storage-daemon",
            "--blockdev", f"driver=file,node-name=gif,filename={gi},cache.direct=on,read-only=on",
            "--blockdev", "driver=qcow2,node-name=gi,file=gif,read-only=on",
            "--nbd-server", f"addr.type=unix,addr.path={sock}"]
    for i, c in enumerate(clones):
        args += ["--blockdev", f"driver=file,node-name=f{i},filename={c},cache.direct=on",
                 "--blockdev", f"driver=qcow2,node-name=n{i},file=f{i},backing=gi",
                 "--export", f"type=nbd,id=e{i},node-name=n{i},name=vm{i},writable=on"]
    args += ["--pidfile", str(pid)]
    job = ["[global]", "ioengine=nbd", "thread", "group_reporting", f"iodepth={workload.queue_depth}",
           f"size={info.virtual_bytes}"]
    for i in range(COST_VMS):
        job += [f"[vm{i}]", f"uri=nbd+unix:///vm{i}?socket={sock}", f"read_iolog={logs[i]}"]
    (work / "hand.fio").write_text("\n".join(job) + "\n")
    daemon = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not pid.exists():
            if daemon.poll() is not None:
                raise RuntimeError(f"qemu-storage-daemon exited with {daemon.returncode}: {' '.join(args)}")
            time.sleep(0.01)
        out = work / "hand.json"
        subprocess.run(["fio", "--output-format=json", f"--output={out}", str(work / "hand.fio")], check=True,
                       stdout=subprocess.DEVNULL)
        text = out.read_text()  # the nbd engine's "connected" lines come first
        return _iops(json.loads(text[text.index("{"):])["jobs"][0])
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(work / "iologs", ignore_errors=True)
        sock.unlink(missing_ok=True)
        pid.unlink(missing_ok=True)


def _iops(job: dict[str, dict[str, float]]) -> float:
    return float(job["read"]["iops"]) + float(job["write"]["iops"])


def harness_cost(base: Path, gi: Path) -> None:
    path = fleet(base, gi, COST_VMS, "snapshot", name="cost")
    m = load_manifest(path)
    request = StormRequest(seed=1, ios_per_vm=COST_IOS, out=base / "results")
    run_storm(m, request)  # warm-up: the boots' clusters get allocated
    time.sleep(1)
    ours, anchor = [], []
    for _ in range(COST_ROUNDS):
        ours.append(run_storm(m, request).iops)
        work = Path(tempfile.mkdtemp(prefix="cfb-"))
        try:
            anchor.append(hand_written(path, gi, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        time.sleep(1)  # a distinct file name for the next storm's JSON (one per second)
    o, a = statistics.median(ours), statistics.median(anchor)
    # Each storm beside the hand-written run right after it: the machine's drift cancels in the pair.
    pairs = statistics.median(x / y for x, y in zip(ours, anchor, strict=True))
    print(f"harness cost: clonefleet storm on {COST_VMS} linked clones, {COST_IOS:,} IOs each: {o:,.0f} IOPS "
          f"(median of {COST_ROUNDS}: {', '.join(f'{x:,.0f}' for x in ours)}); hand-written fio job, same exports "
          f"and iologs: {a:,.0f} IOPS ({', '.join(f'{x:,.0f}' for x in anchor)}); ratio of the medians "
          f"{o / a:.3f}, median of the paired ratios {pairs:.3f}, of the best runs {max(ours) / max(anchor):.3f} "
          f"(floor: within 10 %: {'met' if abs(pairs - 1) <= 0.10 else 'NOT met'})", flush=True)


def scaling(base: Path, gi: Path) -> None:
    print("| method | VMs | IOs | span s | IOPS | boot p50 s | boot p95 s | boot max s | lat p50 ms | lat p99 ms "
          "| allocated |", flush=True)
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for method in ("full", "thin", "snapshot"):
        for count in (8, 32, 128):
            path = fleet(base, gi, count, method)
            r = run_storm(load_manifest(path), StormRequest(seed=1, out=base / "results"))
            print(f"| {method} | {count} | {r.ios:,} | {r.span_s:.2f} | {r.iops:,.0f} | {r.boot_s(0.5):.2f} | "
                  f"{r.boot_s(0.95):.2f} | {r.boot_s(1.0):.2f} | {r.latency_s[50.0] * 1e3:.2f} | "
                  f"{r.latency_s[99.0] * 1e3:.2f} | {format_bytes(r.allocated_bytes or 0)} |", flush=True)
            shutil.rmtree(load_manifest(path).dest)


@contextmanager
def bench_folder(prefix: str) -> Iterator[tuple[Path, Path]]:
    """A temporary folder with the benchmark's GI in it, the machine described; removed at the end (a
    SIGTERM too)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        gi = build_golden_image(base, "gi", size_bytes=GI_BYTES, fmt="qcow2", seed=3).path
        mach = machine_info()
        print(f"machine: {mach['cpu_model']}, {mach['cores']} cores, {format_bytes(int(str(mach['memory_bytes'])))}, "
              f"kernel {mach['kernel']}; GI {format_bytes(GI_BYTES)} qcow2 on {base}", flush=True)
        yield base, gi
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    with bench_folder("cf-bench-storm-") as (base, gi):
        harness_cost(base, gi)
        scaling(base, gi)


if __name__ == "__main__":
    main()
