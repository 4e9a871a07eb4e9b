"""The model fleet for a small real GI (the preset scaled), per-clone footprints, trace files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clonefleet.errors import UsageError
from clonefleet.model import allocated_bytes_per_clone
from clonefleet.presets import load_fleet
from clonefleet.provision.bootwrites import clone_seed, footprint_for, load_trace_writes, model_fleet
from clonefleet.provision.manifest import build_manifest
from clonefleet.storage.goldimage import GoldenImageInfo
from helpers import units_touched

MiB = 1024**2


def gi(virtual: int = 256 * MiB) -> GoldenImageInfo:
    return GoldenImageInfo(Path("/x/gi.qcow2"), "qcow2", virtual, 10 * MiB, "0" * 64, 1)


def manifest(tmp_path: Path, **writes: object):  # type: ignore[no-untyped-def]
    return build_manifest(tmp_path / "f.toml", {"fleet": {"count": 3, "dest": "d", "preset": "server-linux"},
                                                "golden_image": {"path": "gi.qcow2"}, "writes": writes})


def test_preset_scaled_to_the_gi(tmp_path: Path) -> None:
    base = load_fleet("server-linux")
    model = model_fleet(manifest(tmp_path), gi(), gi_used_bytes=5 * MiB)
    scale = 256 * MiB / base.gi_virtual_bytes
    f = model.fleet
    assert model.scale == pytest.approx(scale)
    assert f.gi_virtual_bytes == 256 * MiB and f.gi_used_bytes == 5 * MiB
    assert f.boot_write_bytes == pytest.approx(base.boot_write_bytes * scale)
    assert f.boot_write_span_bytes == pytest.approx(base.boot_write_span_bytes * scale)
    assert f.boot_write_extents == max(1, round(base.boot_write_extents * scale))
    assert model.span_start_bytes + f.boot_write_span_bytes <= 256 * MiB  # the last R bytes of the disk
    assert model.span_start_bytes % (64 * 1024) == 0
    assert "scaled" in model.note and "G_used = 5 MiB" in model.note


def test_manifest_overrides_and_same_footprint_every_time(tmp_path: Path) -> None:
    m = manifest(tmp_path, bytes="2 MiB", extents=16, span="32 MiB", span_start="8 MiB", seed=9)
    model = model_fleet(m, gi(), gi_used_bytes=MiB)
    assert (model.fleet.boot_write_bytes, model.fleet.boot_write_extents) == (2 * MiB, 16)
    a, b, c = footprint_for(m, model, 1), footprint_for(m, model, 1), footprint_for(m, model, 2)
    assert np.array_equal(a.offsets_bytes, b.offsets_bytes) and a.seed == b.seed
    assert a.seed != c.seed
    assert a.offsets_bytes.min() >= 8 * MiB and (a.offsets_bytes + a.lengths_bytes).max() <= 40 * MiB
    assert clone_seed(9, 1) != clone_seed(10, 1)


def test_mean_allocation_of_the_footprints_follows_the_model(tmp_path: Path) -> None:
    m = manifest(tmp_path, bytes="1 MiB", extents=8, span="16 MiB")
    model = model_fleet(m, gi(), gi_used_bytes=MiB)
    unit = 64 * 1024
    exact = [units_touched(fp.offsets_bytes, fp.lengths_bytes, unit) * unit
             for fp in (footprint_for(m, model, i) for i in range(1, 401))]
    f = model.fleet
    expected = float(allocated_bytes_per_clone(f.boot_write_bytes, f.boot_write_extents,
                                               f.boot_write_span_bytes, unit))
    assert np.mean(exact) == pytest.approx(expected, rel=0.05)


def test_a_span_past_the_disk_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="span_start"):
        model_fleet(manifest(tmp_path, span="32 MiB", span_start="250 MiB"), gi(), gi_used_bytes=MiB)


def test_trace_writes_per_vm(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    np.savez(path, vm_start=np.array([0, 3, 5]), op=np.array([0, 1, 1, 1, 0], np.int8),
             offset_bytes=np.array([0, 4096, 8192, 65536, 0]), length_bytes=np.array([4096] * 5, np.int32))
    per_vm = load_trace_writes(path)
    assert [o.tolist() for o, _ in per_vm] == [[4096, 8192], [65536]]
    m = manifest(tmp_path, source=str(path))
    model = model_fleet(m, gi(), gi_used_bytes=MiB)
    assert footprint_for(m, model, 3).offsets_bytes.tolist() == [4096, 8192]  # VM 0 again, cycled
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(UsageError, match="not a simulator trace"):
        load_trace_writes(bad)


def test_trace_writes_from_a_csv_trace(tmp_path: Path) -> None:
    path = tmp_path / "boot.csv"
    path.write_text("vm,op,offset,length\n0,read,0,4096\n0,write,8192,4096\n1,write,65536,8192\n"
                    "1,write,131072,4096\n")
    per_vm = load_trace_writes(path)
    assert [(o.tolist(), n.tolist()) for o, n in per_vm] == [([8192], [4096]), ([65536, 131072], [8192, 4096])]
    with pytest.raises(UsageError, match="no such trace"):
        load_trace_writes(tmp_path / "none.csv")


def test_writes_larger_than_the_span_they_fall_in_are_refused_not_cut(tmp_path: Path) -> None:
    # No span in the manifest: the preset's, scaled to a 256 MiB GI (a few MiB), cannot hold 200 MiB.
    m = manifest(tmp_path, bytes="200 MiB")
    with pytest.raises(UsageError, match=r"writes\.bytes.*at most the writes span"):
        model_fleet(m, gi(), gi_used_bytes=MiB)
    # A span given larger than the GI is clipped to it; writes beyond the clipped span are refused too.
    m = manifest(tmp_path, bytes="300 MiB", span="400 MiB", span_start="0 B")
    with pytest.raises(UsageError, match=r"writes\.bytes"):
        model_fleet(m, gi(), gi_used_bytes=MiB)


def test_an_npz_writes_source_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "writes.npz"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="FIFO"):
        load_trace_writes(fifo)  # np.load of a FIFO blocked forever (no writer)
