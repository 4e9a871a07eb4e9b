"""A full disk mid-provision (a size-limited tmpfs) and two provisioners on one fleet at once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import provision_fixtures as pf
import pytest

import clonefleet.provision as engine
from clonefleet.provision.goldimage import GoldenImage
from clonefleet.storage.data import sha256_file
from helpers import require_tool

qcow2_gi = pf.qcow2_gi  # a fixture

pytestmark = pytest.mark.backend

MiB = 1024**2


@pytest.mark.parametrize("method", ["thin", "full"])
def test_full_disk_one_line_half_made_clone_removed_rerun_completes(tmp_path: Path, qcow2_gi: GoldenImage,
                                                                    cli, method: str) -> None:  # type: ignore[no-untyped-def]
    require_tool("qemu-img")
    per_clone = qcow2_gi.used_bytes if method == "thin" else qcow2_gi.virtual_bytes
    with pf.mounted("tmpfs", 4 * per_clone + 2 * MiB) as mnt:
        m = pf.fleet_manifest(tmp_path, qcow2_gi.path, 10, method=method, workers=1,
                              dest=str(mnt / "fleet"))
        r = cli("provision", str(m.path))  # the plan needs more than is free: refused before anything starts
        assert r.code == 2 and "are free" in r.err and not m.dest.exists(), r.err
        r = cli("provision", str(m.path), "--force")  # started anyway: the disk fills part way
        assert r.code == 1
        lines = [ln for ln in r.err.strip().splitlines() if "warning" not in ln]
        assert len(lines) == 1 and "no space left" in lines[0] and "rerun" in lines[0], r.err
        st = engine.status(m)
        failed = [c.name for c in st.clones if c.state == "failed"]
        # the clone that hit the wall, and any a parallel worker had already started, are listed
        assert failed and any(name in lines[0] for name in failed)
        assert not any((m.dest / name).exists() for name in failed)
        assert not [p for p in m.dest.iterdir() if p.name.startswith(".cf-tmp.")]
        made = st.count("ok")
        assert 0 < made < 10
        for clone in m.dest.glob("vm-*.qcow2"):  # what was made is whole
            assert subprocess.run(["qemu-img", "check", "-q", str(clone)]).returncode == 0
        subprocess.run(["mount", "-o", f"remount,size={12 * per_clone + 4 * MiB}", str(mnt)], check=True)
        r = cli("provision", str(m.path))
        assert r.code == 0, r.err
        st = engine.status(m, verify=True)
        assert st.in_sync and st.count("ok") == 10
        engine.destroy(m)
    assert sha256_file(qcow2_gi.path) == qcow2_gi.sha256


def test_a_second_provisioner_refuses_clearly(tmp_path: Path, qcow2_gi: GoldenImage, cli) -> None:  # type: ignore[no-untyped-def]
    require_tool("qemu-img")
    m = pf.fleet_manifest(tmp_path, qcow2_gi.path, 300, method="thin", workers=1)
    first = subprocess.Popen([sys.executable, "-m", "clonefleet", "provision", str(m.path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while engine.status(m).locked_by is None:
            assert first.poll() is None, "the first provisioner ended before it was seen holding the lock"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        r = cli("provision", str(m.path))
        assert r.code == 3
        assert len(r.err.strip().splitlines()) == 1
        assert "locked by clonefleet provision (pid" in r.err and str(first.pid) in r.err
        r = cli("destroy", str(m.path), "--yes")
        assert r.code == 3 and "locked" in r.err
    finally:
        first.kill()
        first.wait()
        if first.stderr:
            first.stderr.close()
    small = pf.fleet_manifest(tmp_path, qcow2_gi.path, 3, method="thin")  # the lock went with the process
    assert cli("provision", str(small.path)).code == 0
    assert engine.status(small).in_sync
    engine.destroy(small)
