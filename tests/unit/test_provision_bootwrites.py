"""The model fleet for a small real GI (the preset scaled), per-clone footprints, trace files."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from clonefleet.errors import UsageError
from clonefleet.model import allocated_bytes_per_clone
from clonefleet.model.growth import grown_bytes_per_clone
from clonefleet.presets import load_fleet
from clonefleet.provision.bootwrites import clone_seed, day_footprint, footprint_for, load_trace_writes, model_fleet
from clonefleet.provision.manifest import build_manifest
from clonefleet.storage.goldimage import GoldenImageInfo
from helpers import units_touched

MiB = 1024**2


def gi(virtual: int = 256 * MiB) -> GoldenImageInfo:
    return GoldenImageInfo(Path("/x/gi.qcow2"), "qcow2", virtual, 10 * MiB, "0" * 64, 1)


def manifest(tmp_path: Path, preset: str = "server-linux", **writes: object):  # type: ignore[no-untyped-def]
    return build_manifest(tmp_path / "f.toml", {"fleet": {"count": 3, "dest": "d", "preset": preset},
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


# --- days of use: the daily writes and the pagefile (writes --days) ----------------------------------

DESKTOP = "desktop-linux"  # a preset with daily writes and a pagefile in the clone
ALIGN = 64 * 1024


def test_daily_writes_and_pagefile_scale_like_the_boot_and_lie_in_regions_of_their_own(tmp_path: Path) -> None:
    base = load_fleet("desktop-linux")
    model = model_fleet(manifest(tmp_path, DESKTOP), gi(), gi_used_bytes=5 * MiB)
    s = 256 * MiB / base.gi_virtual_bytes
    f = model.fleet
    assert f.daily_write_bytes == pytest.approx(base.daily_write_bytes * s)
    assert f.daily_write_extents == round(base.daily_write_extents * s)
    assert f.daily_write_span_bytes == pytest.approx(base.daily_write_span_bytes * s)
    assert base.swap_bytes * s <= f.swap_bytes < base.swap_bytes * s + 4096 and f.swap_bytes % 4096 == 0
    regions = sorted([(model.swap_start_bytes, model.swap_start_bytes + f.swap_bytes),
                      (model.daily_span_start_bytes, model.daily_span_start_bytes + f.daily_write_span_bytes),
                      (model.span_start_bytes, model.span_start_bytes + f.boot_write_span_bytes)])
    assert regions[0][0] >= 0 and regions[-1][1] <= 256 * MiB
    for (_, end), (start, _) in itertools.pairwise(regions):
        assert end <= start  # disjoint: C_boot + C_day + P_in add up
    assert all(r[0] % ALIGN == 0 for r in regions)  # no 64 KiB cluster shared by two regions
    assert "daily writes W_day" in model.note and "pagefile P" in model.note


def test_a_days_footprint_is_seeded_by_clone_and_day_and_stays_in_the_daily_span(tmp_path: Path) -> None:
    m = manifest(tmp_path, DESKTOP, seed=4)
    model = model_fleet(m, gi(), gi_used_bytes=MiB)
    f = model.fleet
    a, again, other_day, other_clone = (day_footprint(m, model, 1, 1), day_footprint(m, model, 1, 1),
                                        day_footprint(m, model, 1, 2), day_footprint(m, model, 2, 1))
    assert np.array_equal(a.offsets_bytes, again.offsets_bytes) and a.seed == again.seed
    assert len({a.seed, other_day.seed, other_clone.seed, footprint_for(m, model, 1).seed}) == 4
    assert a.offsets_bytes.size == f.daily_write_extents
    assert a.written_bytes == pytest.approx(f.daily_write_bytes, rel=0.05)
    lo, hi = model.daily_span_start_bytes, model.daily_span_start_bytes + f.daily_write_span_bytes
    for fp in (a, other_day, other_clone):
        assert fp.offsets_bytes.min() >= lo and (fp.offsets_bytes + fp.lengths_bytes).max() <= hi


def test_the_boot_footprint_carries_the_pagefile_as_one_extent(tmp_path: Path) -> None:
    m = manifest(tmp_path, DESKTOP)
    model = model_fleet(m, gi(), gi_used_bytes=MiB)
    fp = footprint_for(m, model, 1)
    assert (int(fp.offsets_bytes[-1]), int(fp.lengths_bytes[-1])) == (model.swap_start_bytes, model.fleet.swap_bytes)
    assert model.as_written(False).swap_bytes == 0 and model.as_written(False).boot_write_bytes == 0
    assert model.as_written(True) is model.fleet


def test_days_of_footprints_allocate_as_the_growth_model_says(tmp_path: Path) -> None:
    """Eq. G1 over the cumulated days, against the units the drawn footprints really touch (400 clones)."""
    m = manifest(tmp_path, DESKTOP)
    model = model_fleet(m, gi(), gi_used_bytes=MiB)
    f, unit, days = model.fleet, 64 * 1024, 3
    touched = [units_touched(np.concatenate([day_footprint(m, model, i, d).offsets_bytes for d in range(1, days + 1)]),
                             np.concatenate([day_footprint(m, model, i, d).lengths_bytes for d in range(1, days + 1)]),
                             unit) * unit for i in range(1, 401)]
    expected = float(grown_bytes_per_clone(days, f.daily_write_bytes, f.daily_write_extents, f.daily_write_span_bytes,
                                           unit))
    assert float(np.mean(touched)) == pytest.approx(expected, rel=0.05)
    one_day = float(allocated_bytes_per_clone(f.daily_write_bytes, f.daily_write_extents, f.daily_write_span_bytes,
                                              unit))
    assert expected > 1.5 * one_day  # not saturated after 3 days: the days add up


def test_a_pagefile_on_a_disposable_disk_is_neither_written_nor_modelled(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "src/clonefleet/presets/fleets/desktop-linux.toml").read_text()
    preset = tmp_path / "disposable.toml"
    preset.write_text('swap_disk = "disposable"\n' + text.replace('name = "desktop-linux"', 'name = "disposable"'))
    m = manifest(tmp_path, preset=str(preset))
    model = model_fleet(m, gi(), gi_used_bytes=MiB)
    assert model.fleet.swap_bytes == 0 and "disposable disk" in model.note
    assert footprint_for(m, model, 1).offsets_bytes.size == model.fleet.boot_write_extents


def test_regions_that_do_not_fit_below_the_boot_span_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="daily span R_day .* does not fit below offset 0"):
        model_fleet(manifest(tmp_path, DESKTOP, span="8 MiB", span_start=0), gi(), gi_used_bytes=MiB)


def test_a_footprints_data_comes_in_bounded_chunks_the_same_whatever_their_size() -> None:
    """RBD writes and file writes draw a footprint's bytes through one generator: a 3 MiB extent (a
    pagefile is gigabytes) in chunks of at most the chunk size, covering each extent exactly, and the
    same bytes for any chunk size that is a multiple of 4 (the generator draws 4-byte words)."""
    from clonefleet.provision.writes import seeded_chunks

    offsets, lengths = [0, 5 * 2**20], [3 * 2**20, 4096]
    small = list(seeded_chunks(offsets, lengths, seed=7, chunk_bytes=2**20))
    assert [(o, len(d)) for o, d in small] == [(0, 2**20), (2**20, 2**20), (2 * 2**20, 2**20), (5 * 2**20, 4096)]
    whole = list(seeded_chunks(offsets, lengths, seed=7, chunk_bytes=8 * 2**20))
    assert [(o, len(d)) for o, d in whole] == [(0, 3 * 2**20), (5 * 2**20, 4096)]
    assert b"".join(d for _, d in small) == b"".join(d for _, d in whole)
    assert b"".join(d for _, d in whole) != b"".join(d for _, d in seeded_chunks(offsets, lengths, seed=8))
