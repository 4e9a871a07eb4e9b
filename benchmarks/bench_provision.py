"""Provisioning speed and scale, each figure beside an anchor measured in the same run.

1. 1000 linked qcow2 clones with ``clonefleet provision`` (end to end: a new Python
   process, the GI's checksum, the journal, fsync of every clone) against a shell
   loop of ``qemu-img create -f qcow2 -F qcow2 -b GI`` (one process per clone).
   Floor: 3x faster. Every clone is then checked with ``qemu-img check``.
2. 1000 reflink clones on a loop-mounted xfs against a shell loop of
   ``cp --reflink=always``. Floor: within 1.2x (needs root for the mount).
3. 10,000 linked clones in one fleet: time, and the provisioner's peak memory
   (``ru_maxrss`` of its process) against the same figure for 1000 clones.

Run: ``.venv/bin/python -m benchmarks provision`` (or ``make bench``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clonefleet.provision.goldimage import build_golden_image
from clonefleet.provision.manifest import write_manifest

MiB = 1024**2


def shell_loop(command: str, count: int, workdir: Path) -> float:
    """Seconds for ``count`` runs of ``command`` ($i the index) in one bash loop."""
    script = f"set -e; for i in $(seq 1 {count}); do {command}; done"
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", script], cwd=workdir, check=True)
    return time.perf_counter() - t0


def manifest(dir_: Path, gi: Path, count: int, backend: str, name: str) -> Path:
    from clonefleet.storage.data import sha256_file

    path = dir_ / f"{name}.toml"
    write_manifest(path, {
        "fleet": {"name": name, "count": count, "dest": name, "clone_name": "vm-{index:05d}"},
        "golden_image": {"path": str(gi), "sha256": sha256_file(gi), "bytes": gi.stat().st_size},
        "clones": {"backend": backend, "method": "snapshot", "golden_images": 1, "workers": 4},
    }, force=True)
    return path


def provision(path: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one ``clonefleet provision`` process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "clonefleet", "provision", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"bench_provision: clonefleet provision {path} failed: {err.strip()}")
    if proc.stderr:
        proc.stderr.close()
    return elapsed, usage.ru_maxrss * 1024


def qemu_checks(paths: list[Path]) -> int:
    """How many of ``paths`` pass ``qemu-img check``."""
    def one(p: Path) -> bool:
        return subprocess.run(["qemu-img", "check", "-q", str(p)], capture_output=True).returncode == 0

    with ThreadPoolExecutor(max_workers=4) as pool:
        return sum(pool.map(one, paths))


def destroy(path: Path) -> None:
    subprocess.run([sys.executable, "-m", "clonefleet", "destroy", str(path), "--yes"], check=True,
                   stdout=subprocess.DEVNULL)


def linked_qcow2(base: Path, gi: Path, repeats: int = 3) -> int:
    """Anchor and clonefleet alternate ``repeats`` times (this machine's load varies); medians compared."""
    anchors, ours, rss = [], [], 0
    m = manifest(base, gi, 1000, "qcow2", "linked1000")
    for r in range(repeats):
        anchor_dir = base / "anchor"
        anchor_dir.mkdir()
        anchors.append(shell_loop(f'qemu-img create -q -f qcow2 -F qcow2 -b "{gi}" c$i.qcow2', 1000, anchor_dir))
        shutil.rmtree(anchor_dir)
        seconds, rss = provision(m)
        ours.append(seconds)
        if r < repeats - 1:
            destroy(m)
    clones = sorted((base / "linked1000").glob("vm-*.qcow2"))
    ok = qemu_checks(clones)
    anchor_s, ours_s = statistics.median(anchors), statistics.median(ours)
    print(f"1000 linked qcow2 clones (median of {repeats}, alternating): clonefleet provision {ours_s:.2f} s "
          f"({ours_s:.2f} ms each), shell loop of qemu-img create -b {anchor_s:.2f} s ({anchor_s:.2f} ms each): "
          f"{anchor_s / ours_s:.1f}x faster (floor 3x; runs: ours {fmt(ours)}, loop {fmt(anchors)}); "
          f"{ok} of {len(clones)} pass qemu-img check")
    destroy(m)
    return rss


def fmt(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def reflink(base: Path, gi: Path) -> None:
    if os.geteuid() != 0 or shutil.which("mkfs.xfs") is None:
        print("1000 reflink clones: not measured (needs root and xfsprogs for a loop-mounted xfs)")
        return
    image, mnt = base / "xfs.img", base / "xfs"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(4 * 1024**3)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        raw = build_golden_image(mnt, "gi", size_bytes=64 * MiB, fmt="raw", seed=1).path
        m = manifest(mnt, raw, 1000, "reflink", "reflink1000")
        anchors, ours = [], []
        for r in range(3):
            anchor_dir = mnt / "anchor"
            anchor_dir.mkdir()
            anchors.append(shell_loop(f'cp --reflink=always "{raw}" c$i.img', 1000, anchor_dir))
            shutil.rmtree(anchor_dir)
            ours.append(provision(m)[0])
            if r < 2:
                destroy(m)
        anchor_s, ours_s = statistics.median(anchors), statistics.median(ours)
        print(f"1000 reflink clones (median of 3, alternating): clonefleet provision {ours_s:.2f} s, shell loop "
              f"of cp --reflink=always {anchor_s:.2f} s: clonefleet takes {ours_s / anchor_s:.2f}x the loop's "
              f"time (floor: <= 1.2x; runs: ours {fmt(ours)}, loop {fmt(anchors)})")
        destroy(m)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def ten_thousand(base: Path, gi: Path, rss_1k: int) -> None:
    m = manifest(base, gi, 10_000, "qcow2", "linked10000")
    ours_s, rss_10k = provision(m)
    clones = sorted((base / "linked10000").glob("vm-*.qcow2"))
    sample = clones[:: max(1, len(clones) // 100)]
    ok = qemu_checks(sample)
    print(f"10,000 linked clones in one fleet: {ours_s:.2f} s ({ours_s / 10:.2f} ms each), {len(clones)} made; "
          f"peak memory {rss_10k / MiB:.1f} MiB vs {rss_1k / MiB:.1f} MiB for 1000 clones "
          f"({rss_10k / rss_1k:.2f}x for 10x the clones: bounded); {ok} of {len(sample)} sampled pass qemu-img check")
    destroy(m)


def main() -> None:
    for tool in ("qemu-img", "mkfs.ext4", "debugfs"):
        if shutil.which(tool) is None:
            print(f"bench_provision: {tool} missing; run make setup")
            return
    base = Path(tempfile.mkdtemp(prefix="cf-bench-provision-"))
    try:
        gi = build_golden_image(base, "gi", size_bytes=256 * MiB, fmt="qcow2", seed=1).path
        rss_1k = linked_qcow2(base, gi)
        reflink(base, gi)
        ten_thousand(base, gi, rss_1k)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
