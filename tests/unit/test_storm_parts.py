"""The storm's pure parts: fio's job file and status lines, its JSON read back, latency histograms
merged, the daemon's command line, and traces refused when they do not fit the clones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clonefleet.errors import UsageError
from clonefleet.sim.trace import Trace
from clonefleet.storm.daemon import Export, daemon_args, nbd_uri
from clonefleet.storm.fio import FioJob, FioJobSpec, job_file, jobs_done, merged_percentiles_s, parse_fio_json
from clonefleet.storm.workload import check_direct_aligned, check_fits


def test_jobs_done_counts_ended_jobs_in_the_last_status_line() -> None:
    text = ("Jobs: 3 (f=3): [R(3)][10%][eta 00m:01s]\rJobs: 4 (f=4): [_(2),r(1),E,X(2),C(3)][-.-%]"
            "[r=1MiB/s][eta 00m:00s]\r")
    assert jobs_done(text) == 2 + 1 + 2  # reaped, exited, exited with an error
    assert jobs_done("fio: connected to NBD server\n") is None


def test_job_file_has_one_job_per_vm_with_its_log_depth_and_delay(tmp_path: Path) -> None:
    jobs = [FioJobSpec("vm-0001.qcow2", tmp_path / "a.iolog", 8, 0.25, 1 << 20, nbd_uri("vm-0001.qcow2", Path("/s"))),
            FioJobSpec("vm-0002.qcow2", tmp_path / "b.iolog", 8, 0.0, 1 << 20, None)]
    text = job_file(jobs, nbd=True)
    assert text.count("\n[vm-") == 2 and "ioengine=nbd" in text and "thread" in text
    assert "startdelay=250000us" in text and "uri=nbd+unix:///vm-0001.qcow2?socket=/s" in text
    assert f"read_iolog={tmp_path / 'b.iolog'}" in text
    files = job_file(jobs, nbd=False)
    assert "direct=1" in files and "ioengine=libaio" in files


def test_fio_json_read_back_skips_the_engines_chatter() -> None:
    doc = {"fio version": "fio-3.33", "jobs": [{
        "jobname": "vm-1", "error": 0, "job_runtime": 1500,
        "mixed": {"total_ios": 100, "lat_ns": {"N": 93, "percentile": {"50.000000": 1000000, "95.000000": 2000000,
                                                                        "99.000000": 3000000},
                                               "bins": {"1000000": 50, "3000000": 43}}}}]}
    version, jobs = parse_fio_json("fio: connected to NBD server\n" + json.dumps(doc))
    assert version == "fio-3.33"
    (job,) = jobs
    assert job.runtime_s == 1.5 and job.issued_ios == 100 and job.latency_samples == 93
    assert job.latency_s == {50.0: 0.001, 95.0: 0.002, 99.0: 0.003}


def test_merged_percentiles_are_those_of_every_io() -> None:
    a = FioJob("a", 0, 1.0, 10, 10, {}, {1000: 9, 5000: 1})
    b = FioJob("b", 0, 1.0, 10, 10, {}, {2000: 10})
    merged = merged_percentiles_s([a, b], (50.0, 95.0, 100.0))
    # 20 IOs: 9 at 1 us, 10 at 2 us, 1 at 5 us
    assert merged == {50.0: 2e-6, 95.0: 2e-6, 100.0: 5e-6}


def test_daemon_shares_one_read_only_node_per_source_and_exports_each_clone() -> None:
    exports = [Export("vm-1", Path("/f/vm-1"), 0), Export("vm-2", Path("/f/vm-2"), 0), Export("vm-3", Path("/f/vm-3"),
                                                                                             None)]
    args = daemon_args([(Path("/gi.qcow2"), "qcow2"), (Path("/r1.qcow2"), "qcow2")], exports, Path("/s"), Path("/p"))
    blockdevs = [json.loads(args[i + 1]) for i, a in enumerate(args) if a == "--blockdev"]
    sources = [b for b in blockdevs if b["node-name"].startswith("src")]
    assert [b["node-name"] for b in sources] == ["src0-f", "src0"]  # replica 1 is nobody's source: not opened
    assert all(b["read-only"] for b in sources)
    clones = [b for b in blockdevs if b["driver"] == "qcow2" and b["node-name"].startswith("c")]
    assert [c["backing"] for c in clones] == ["src0", "src0", None]
    assert all(b["cache"] == {"direct": True} for b in blockdevs if b["driver"] == "file")
    # the NBD server comes before the exports (the daemon refuses an export without it)
    assert args.index("--nbd-server") < args.index("--export")
    assert [json.loads(args[i + 1])["name"] for i, a in enumerate(args) if a == "--export"] == ["vm-1", "vm-2", "vm-3"]


def trace_of(offsets: list[int], lengths: list[int]) -> Trace:
    n = len(offsets)
    return Trace(np.array([0, n]), np.zeros(n, np.int8), np.array(offsets, np.int64), np.array(lengths, np.int32),
                 np.zeros(0), np.zeros(1))


def test_a_trace_past_the_virtual_size_or_unaligned_for_o_direct_is_refused() -> None:
    check_fits(trace_of([0, 4096], [4096, 4096]), 8192, "t")
    with pytest.raises(UsageError, match="virtual size is 8,191 bytes"):
        check_fits(trace_of([0, 4096], [4096, 4096]), 8191, "t")
    check_direct_aligned(trace_of([512], [1024]), "t")
    with pytest.raises(UsageError, match="not aligned to 512"):
        check_direct_aligned(trace_of([100], [512]), "t")


def test_rbd_exports_are_rbd_nodes_of_one_client_with_the_cache_off(tmp_path: Path) -> None:
    from clonefleet.storm.daemon import RbdAccess, RbdExport

    access = RbdAccess(tmp_path / "ceph.conf", "storm")
    args = daemon_args([], [RbdExport("vm-1", "rbd", "f.vm-1"), RbdExport("vm-2", "fast", "f.vm-2")],
                       tmp_path / "s.sock", tmp_path / "d.pid", access)
    nodes = [json.loads(args[i + 1]) for i, a in enumerate(args) if a == "--blockdev"]
    assert nodes == [{"driver": "rbd", "node-name": "c0", "pool": "rbd", "image": "f.vm-1",
                      "conf": str(tmp_path / "ceph.conf"), "user": "storm", "cache": {"direct": True}},
                     {"driver": "rbd", "node-name": "c1", "pool": "fast", "image": "f.vm-2",
                      "conf": str(tmp_path / "ceph.conf"), "user": "storm", "cache": {"direct": True}}]
    exports = [json.loads(args[i + 1]) for i, a in enumerate(args) if a == "--export"]
    assert [(e["node-name"], e["name"], e["writable"]) for e in exports] == [("c0", "vm-1", True), ("c1", "vm-2", True)]
    with pytest.raises(ValueError):
        daemon_args([], [RbdExport("vm-1", "rbd", "f.vm-1")], tmp_path / "s.sock", tmp_path / "d.pid")
