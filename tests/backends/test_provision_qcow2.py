"""qcow2 clones made by qemu-img, checked by qemu-img: each method, GI protection, the CLI end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import provision_fixtures as pf
import pytest

import clonefleet.provision as engine
from clonefleet.provision.goldimage import GoldenImage
from clonefleet.storage.data import sha256_file
from clonefleet.storage.goldimage import GoldenImageError, check_golden_image
from clonefleet.storage.qcow2 import qcow2_info
from helpers import require_tool

qcow2_gi = pf.qcow2_gi  # a fixture

pytestmark = pytest.mark.backend


def qemu_check(path: Path) -> int:
    return subprocess.run(["qemu-img", "check", "-q", str(path)], capture_output=True).returncode


@pytest.mark.parametrize("method", ["snapshot", "thin", "full"])
def test_each_method_makes_clones_that_pass_qemu_img_check(tmp_path: Path, qcow2_gi: GoldenImage,
                                                           method: str) -> None:
    require_tool("qemu-img", "qemu-io")
    m = pf.fleet_manifest(tmp_path, qcow2_gi.path, 6, method=method, g=2 if method == "snapshot" else 1)
    engine.provision(m)
    engine.apply_writes(m)
    clones = sorted(m.dest.glob("vm-*.qcow2"))
    assert len(clones) == 6
    for clone in clones:
        assert qemu_check(clone) == 0
        info = qcow2_info(clone)
        assert info.virtual_bytes == qcow2_gi.virtual_bytes
        if method == "snapshot":
            assert info.backing_file is not None and Path(info.backing_file).is_absolute()
        else:
            assert info.backing_file is None
    if method == "full":  # thick: every byte of the virtual size allocated
        assert all(os.stat(c).st_blocks * 512 >= qcow2_gi.virtual_bytes for c in clones)
    if method == "snapshot":  # spread evenly: 3 clones on the GI, 3 on its replica
        backings = [qcow2_info(c).backing_file for c in clones]
        assert sorted(backings.count(b) for b in set(backings)) == [3, 3]
    assert sha256_file(qcow2_gi.path) == qcow2_gi.sha256
    assert engine.status(m, verify=True).in_sync
    engine.destroy(m)
    assert not m.dest.exists() and sha256_file(qcow2_gi.path) == qcow2_gi.sha256


def test_gi_refused_when_corrupt(tmp_path: Path, qcow2_gi: GoldenImage) -> None:
    bad = tmp_path / "bad.qcow2"
    shutil.copyfile(qcow2_gi.path, bad)
    with open(bad, "r+b") as f:  # break the L1 table offset in the header
        f.seek(40)
        f.write(b"\xff" * 8)
    with pytest.raises(GoldenImageError, match="corrupt|cannot read"):
        check_golden_image(bad, None)


def test_gi_refused_when_truncated_even_without_a_recorded_size(tmp_path: Path, qcow2_gi: GoldenImage) -> None:
    short = tmp_path / "short.qcow2"
    shutil.copyfile(qcow2_gi.path, short)
    os.truncate(short, short.stat().st_size // 3)
    with pytest.raises(GoldenImageError, match="corrupt|cannot read"):
        check_golden_image(short, None)


@pytest.mark.parametrize("size", [0, 1221, 4097])
def test_a_file_that_is_no_disk_is_refused_as_raw_gi(tmp_path: Path, size: int) -> None:
    not_a_disk = tmp_path / "passwd"
    not_a_disk.write_bytes(b"root:x:0:0::/root:/bin/sh\n" * (size // 26) + b"x" * (size % 26))
    with pytest.raises(GoldenImageError, match="not a qcow2 image nor a raw disk"):
        check_golden_image(not_a_disk, None)


def test_gi_refused_when_its_own_chain_is_too_deep(tmp_path: Path, qcow2_gi: GoldenImage) -> None:
    top = tmp_path / "top.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(qcow2_gi.path),
                    str(top)], check=True)
    with pytest.raises(GoldenImageError, match="chain 2 deep"):
        check_golden_image(top, None, max_chain_depth=1)
    assert check_golden_image(top, None, max_chain_depth=2).chain_depth == 2


def test_gi_refused_while_qemu_io_holds_it_for_writing(tmp_path: Path, qcow2_gi: GoldenImage) -> None:
    require_tool("qemu-io")
    gi = tmp_path / "gi.qcow2"
    shutil.copyfile(qcow2_gi.path, gi)
    holder = subprocess.Popen(["qemu-io", "-f", "qcow2", str(gi)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdin is not None
        holder.stdin.write("write -P 1 0 4k\n")
        holder.stdin.flush()
        assert holder.stdout is not None and "wrote" in holder.stdout.readline()
        with pytest.raises(GoldenImageError, match="open for writing"):
            check_golden_image(gi, None)
    finally:
        holder.kill()
        holder.wait()


def test_cli_end_to_end(tmp_path: Path, qcow2_gi: GoldenImage, cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "f.toml"
    r = cli("init", "--gi", str(qcow2_gi.path), "--dest", str(tmp_path / "c"), "-n", "5", "-g", "auto",
            "-o", str(out))
    assert r.code == 0, r.err
    r = cli("provision", str(out), "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["clones"] == 5
    r = cli("status", str(out), "--json", "--verify")
    assert r.code == 0 and json.loads(r.out)["ok"] == 5
    r = cli("writes", str(out), "--json")
    assert r.code == 0 and json.loads(r.out)["written_now"] == 5
    r = cli("capacity", str(out), "--json")
    report = json.loads(r.out)
    assert r.code == 0 and report["writes_applied"] and report["measured_fresh_clone_bytes"] > 0
    r = cli("capacity", str(out))
    assert "per-clone overhead" in r.out
    r = cli("destroy", str(out), "--yes", "--json")
    assert r.code == 0 and json.loads(r.out)["removed"] == 5
    assert sha256_file(qcow2_gi.path) == qcow2_gi.sha256


def test_writes_from_a_trace_land_in_each_clone(tmp_path: Path, qcow2_gi: GoldenImage) -> None:
    require_tool("qemu-img", "qemu-io")
    from clonefleet.storage.qcow2 import qcow2_allocation

    trace = tmp_path / "boot.csv"
    trace.write_text("vm,op,offset,length\n0,write,0,65536\n0,read,0,4096\n1,write,1048576,131072\n")
    m = pf.fleet_manifest(tmp_path, qcow2_gi.path, 3, writes={"source": str(trace)})
    engine.provision(m)
    engine.apply_writes(m)
    own = [qcow2_allocation(m.dest / f"vm-{i:04d}.qcow2").own_data_bytes for i in (1, 2, 3)]
    assert own == [65536, 131072, 65536]  # VM 0, VM 1, then VM 0 again
    again = engine.apply_writes(m)
    assert again.written_now == 0 and again.already == 3
    engine.destroy(m)
