"""A fleet's life on real clones, the parts without storage: the daily writes and the pagefile scaled to the
GI and placed in regions of their own, a day's footprint, the journal's ages, refresh's records."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from clonefleet.errors import UsageError
from clonefleet.model import allocated_bytes_per_clone
from clonefleet.model.growth import grown_bytes_per_clone
from clonefleet.presets import load_fleet
from clonefleet.provision.bootwrites import day_footprint, footprint_for, model_fleet
from clonefleet.provision.journal import STATE_DIR, Journal
from clonefleet.provision.manifest import build_manifest
from clonefleet.storage.goldimage import GoldenImageInfo
from helpers import units_touched

MiB = 1024**2
ALIGN = 64 * 1024


def gi(virtual: int = 256 * MiB) -> GoldenImageInfo:
    return GoldenImageInfo(Path("/x/gi.qcow2"), "qcow2", virtual, 10 * MiB, "0" * 64, 1)


def manifest(tmp_path: Path, preset: str = "desktop-linux", **writes: object):  # type: ignore[no-untyped-def]
    return build_manifest(tmp_path / "f.toml", {"fleet": {"count": 3, "dest": "d", "preset": preset},
                                                "golden_image": {"path": "gi.qcow2"}, "writes": writes})


def test_daily_writes_and_pagefile_scale_like_the_boot_and_lie_in_regions_of_their_own(tmp_path: Path) -> None:
    base = load_fleet("desktop-linux")
    model = model_fleet(manifest(tmp_path), gi(), gi_used_bytes=5 * MiB)
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
    m = manifest(tmp_path, seed=4)
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
    m = manifest(tmp_path)
    model = model_fleet(m, gi(), gi_used_bytes=MiB)
    fp = footprint_for(m, model, 1)
    assert (int(fp.offsets_bytes[-1]), int(fp.lengths_bytes[-1])) == (model.swap_start_bytes, model.fleet.swap_bytes)
    assert model.as_written(False).swap_bytes == 0 and model.as_written(False).boot_write_bytes == 0
    assert model.as_written(True) is model.fleet


def test_days_of_footprints_allocate_as_the_growth_model_says(tmp_path: Path) -> None:
    """Eq. G1 over the cumulated days, against the units the drawn footprints really touch (400 clones)."""
    m = manifest(tmp_path)
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
        model_fleet(manifest(tmp_path, span="8 MiB", span_start=0), gi(), gi_used_bytes=MiB)


def test_the_journal_holds_each_clones_age_until_it_is_made_anew(tmp_path: Path) -> None:
    (tmp_path / STATE_DIR).mkdir()
    with Journal(tmp_path) as j:
        for name, ino in (("a", 1), ("b", 2), ("c", 3)):
            j.append("created", name=name, dev=9, ino=ino)
            j.append("written", name=name)
        j.append("days", name="a", days=2, dev=9, ino=1)
        j.append("days", name="a", days=3, dev=9, ino=1)
        j.append("days", name="b", days=4, dev=9, ino=7)  # another file than the one made under that name
        j.append("days", name="c", days=-1, dev=9, ino=3)  # not whole days: ignored
        j.append("days", name="c", days=True, dev=9, ino=3)
        j.append("remade", name="a", dev=9, ino=11)
    state = Journal.read(tmp_path)
    assert (state.age_of("a"), state.age_of("b"), state.age_of("c")) == (3, 0, 0)
    assert state.damaged_lines == 2
    assert state.remade == {"a": (9, 11)} and state.identity_of("a") == (9, 1)  # the old clone is still ours
    assert state.written() == {"a", "b", "c"}
    with Journal(tmp_path) as j:
        j.append("created", name="a", dev=9, ino=11, refreshed=True)
    state = Journal.read(tmp_path)
    assert state.age_of("a") == 0 and state.written() == {"b", "c"} and state.identity_of("a") == (9, 11)
    assert state.remade == {} and state.present() == {"a", "b", "c"}
