"""Data reduction (Eq. G5) on a plan, checked against arithmetic done here by hand.

The array declares dedup 5:1 on GI data and nothing else. Then, at the first boot of T clones:
- full copies store T*G/5 (each copy is GI data; a full copy's boot writes land in place, its own data);
- snapshot clones store D/5 + T*(what each clone wrote and its metadata), D = g*G_used;
and the plan recommends whichever stores less. The fleet is changed so that full copies win once
dedup is declared: a fleet whose clones write a lot per boot against a small GI.
"""

from __future__ import annotations

import dataclasses

import pytest

from clonefleet.lifetime import Lifetime
from clonefleet.model import allocated_bytes_per_clone
from clonefleet.planner import plan
from clonefleet.presets import load_array, load_fleet, load_function

GIB, MIB = 2**30, 2**20
T = 1000


def test_dedup_5_to_1_on_gi_data_changes_s_and_the_recommendation_as_the_arithmetic_says() -> None:
    array = load_array("allflash-2024")
    dedup = dataclasses.replace(array, dedup_ratio_gi=5.0)
    fleet = load_fleet("server-linux")  # G = 20 GiB, G_used = 2 GiB, boot writes 48 MiB over 2 GiB
    raw = plan(fleet, array, T, ["full", "snapshot"])
    reduced = plan(fleet, dedup, T, ["full", "snapshot"])

    g_full = raw.method("full")
    snap = raw.method("snapshot")
    # by hand: full copies
    assert g_full.consumed_bytes == T * 20 * GIB
    assert reduced.method("full").reduced_consumed_bytes == pytest.approx(
        T * (20 * GIB - _written(fleet, 64 * 1024)) / 5 + T * _written(fleet, 64 * 1024))
    # by hand: snapshot clones (64 KiB units, g GIs)
    c = float(allocated_bytes_per_clone(48 * MIB, 400, 2 * GIB, 64 * 1024))
    g = snap.golden_images
    assert snap.consumed_bytes == pytest.approx(g * 2 * GIB + T * c)
    assert reduced.method("snapshot").reduced_consumed_bytes == pytest.approx(g * 2 * GIB / 5 + T * c)
    # raw S is reported unchanged beside the stored
    assert reduced.method("snapshot").consumed_bytes == snap.consumed_bytes
    assert raw.recommended == reduced.recommended == "snapshot"  # 4 TiB vs 47 GiB: dedup does not change it

    # A fleet whose clones each write 6 GiB per boot over a 10 GiB GI: full copies at 5:1 store
    # T*(10 - 6)/5 + T*6 = 6.8 TiB... and snapshots T*6 GiB + g*G_used/5: snapshots still win.
    # Full copies can only win when their own writes are smaller: a thick copy's writes land in place
    # while the snapshot's 4 MiB objects (rbd-clone) over-allocate scattered writes.
    scattered = dataclasses.replace(fleet, gi_virtual_bytes=10 * GIB, gi_used_bytes=2 * GIB,
                                    boot_write_bytes=200 * MIB, boot_write_extents=50_000,
                                    boot_write_span_bytes=8 * GIB, boot_read_span_bytes=250e6)
    functions = ["full", "rbd-clone"]
    before = plan(scattered, array, T, functions)
    after = plan(scattered, dedup, T, functions)
    u_full, u_rbd = 64 * 1024, 4 * MIB
    w_full = _written(scattered, u_full)
    c_rbd = float(allocated_bytes_per_clone(200 * MIB, 50_000, 8 * GIB, u_rbd))
    g_rbd = before.method("rbd-clone").golden_images
    full_stored = T * (10 * GIB - w_full) / 5 + T * w_full
    rbd_stored = g_rbd * 2 * GIB / 5 + T * c_rbd
    assert after.method("full").reduced_consumed_bytes == pytest.approx(full_stored)
    assert after.method("rbd-clone").reduced_consumed_bytes == pytest.approx(rbd_stored)
    assert before.method("full").consumed_bytes == T * 10 * GIB > before.method("rbd-clone").consumed_bytes
    assert before.recommended == "rbd-clone"
    assert full_stored < rbd_stored  # the arithmetic: 5:1 makes full copies the smaller
    assert after.recommended == "full"
    assert any("data reduction changes the recommendation" in n for n in after.notes)


def _written(fleet: object, unit: int) -> float:
    """What a full copy's boot writes overwrite in place, in units of ``unit`` (its own data after)."""
    f = fleet  # a FleetPreset
    return float(allocated_bytes_per_clone(f.boot_write_bytes, f.boot_write_extents,  # type: ignore[attr-defined]
                                           f.boot_write_span_bytes, unit))  # type: ignore[attr-defined]


def test_reduced_peak_over_time_uses_the_clone_ratio_for_growth() -> None:
    fleet, array = load_fleet("desktop-win10"), load_array("allflash-2024")
    dr = dataclasses.replace(array, dedup_ratio_clone=2.0)
    snap = load_function("snapshot")
    life = Lifetime(days=10)
    raw = plan(fleet, array, 100, [snap], life).method("snapshot")
    red = plan(fleet, dr, 100, [snap], life).method("snapshot")
    assert red.peak_consumed_bytes == raw.peak_consumed_bytes
    gi = raw.golden_images * fleet.gi_used_bytes
    assert red.peak_reduced_consumed_bytes == pytest.approx(gi + (raw.peak_consumed_bytes - gi) / 2)
