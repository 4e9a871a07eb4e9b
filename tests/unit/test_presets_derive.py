"""A fleet preset derived from a trace drawn from a shipped preset gives that preset's figures back."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from clonefleet.model import allocated_bytes_per_clone
from clonefleet.presets import FleetPreset, load_fleet
from clonefleet.presets.derive import (
    DerivedFleet,
    allocated_bytes_from_trace,
    covered_bytes,
    derive_fleet,
    trace_sha256,
    write_runs,
)
from clonefleet.sim import generate_trace
from clonefleet.sim.trace import WRITE, Arrivals, Trace
from clonefleet.sim.traceio import read_trace, write_fio_iologs

VMS = 6


@pytest.fixture(scope="module")
def drawn() -> tuple[FleetPreset, Trace]:
    fleet = load_fleet("server-linux")
    return fleet, generate_trace(fleet, VMS, np.random.default_rng(7), arrivals=Arrivals.OPEN)


def _derive(path: Path) -> DerivedFleet:
    return derive_fleet(read_trace(path), name="derived", source_label=str(path), sha256=trace_sha256(path),
                        date="2025-01-01")


def _write_csv(trace: Trace, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["time", "vm", "op", "offset", "length"])
        for v in range(trace.vms):
            sl = trace.vm_slice(v)
            for t, op, off, ln in zip(trace.issue_s[sl].tolist(), trace.op[sl].tolist(),
                                      trace.offset_bytes[sl].tolist(), trace.length_bytes[sl].tolist(), strict=True):
                out.writerow([repr(t), v, "write" if op == WRITE else "read", off, ln])


@pytest.mark.parametrize("form", ["fio", "csv"])
def test_derived_figures_agree_with_the_preset_drawn_from(drawn: tuple[FleetPreset, Trace], tmp_path: Path,
                                                         form: str) -> None:
    fleet, trace = drawn
    if form == "fio":
        write_fio_iologs(trace, tmp_path / "iologs")
        path = tmp_path / "iologs"
    else:
        path = tmp_path / "trace.csv"
        _write_csv(trace, path)
    got = _derive(path).fleet
    # The generator issues exactly boot_ios IOs per VM and round(boot_ios * (1 - r)) of them writes
    # (400 extents need no more than the 600 write IOs), so both come back exactly.
    assert got.boot_ios == fleet.boot_ios
    assert got.read_fraction == pytest.approx(fleet.read_fraction, abs=1e-9)
    # Extent lengths are floor/ceil of W/n blocks mixed to mean W/n, drawn per VM: 400 draws of
    # a 0/1 block difference move W by well under 0.5 %. The derived W counts distinct bytes, and
    # extents drawn at random in R overlap: a byte is covered again with probability about W/(2R)
    # (48 MiB / 4 GiB, 1.2 %), so W comes back that much low.
    overlap = fleet.boot_write_bytes / (2 * fleet.boot_write_span_bytes)
    assert got.boot_write_bytes == pytest.approx(fleet.boot_write_bytes * (1 - overlap), rel=0.005)
    # Extents fall at random in R, so some overlap or touch and merge into one run: about n^2 e / R
    # = 400^2 x 120 KiB / 2 GiB ~ 9 of 400 per VM, so n comes back a few % low, never high.
    assert 0.95 * fleet.boot_write_extents <= got.boot_write_extents <= fleet.boot_write_extents
    # R is the range of 400 uniform placements in the span: short of R by about 2 / (n + 1) = 0.5 %.
    assert 0.98 * fleet.boot_write_span_bytes <= got.boot_write_span_bytes <= fleet.boot_write_span_bytes
    # Read sizes are 4 KiB x (1 + Poisson(7)), one template of ~5400 reads shared by every VM: its
    # mean is off 32 KiB by about 4 KiB x sqrt(7) / sqrt(5400) ~ 0.15 KiB, 0.5 %; 2 % leaves room.
    assert got.read_io_bytes == pytest.approx(fleet.read_io_bytes, rel=0.02)
    # Open-loop issues are a Poisson stream at A: 6000 gaps estimate the rate within ~1.3 % (1 sigma).
    assert got.host_iops == pytest.approx(fleet.host_iops, rel=0.05)


@pytest.mark.parametrize("unit", [64 * 2**10, 4 * 2**20])
def test_model_c_of_the_derived_figures_matches_c_counted_from_the_trace(drawn: tuple[FleetPreset, Trace],
                                                                        tmp_path: Path, unit: int) -> None:
    _, trace = drawn
    write_fio_iologs(trace, tmp_path)
    derived = _derive(tmp_path).fleet
    model = float(allocated_bytes_per_clone(derived.boot_write_bytes, derived.boot_write_extents,
                                            derived.boot_write_span_bytes, unit))
    counted = allocated_bytes_from_trace(read_trace(tmp_path), unit)
    assert model == pytest.approx(counted, rel=0.10)


def test_the_written_toml_loads_back_to_the_same_fleet(drawn: tuple[FleetPreset, Trace], tmp_path: Path) -> None:
    _, trace = drawn
    write_fio_iologs(trace, tmp_path / "t")
    derived = _derive(tmp_path / "t")
    path = tmp_path / "mine.toml"
    path.write_text(derived.toml, encoding="utf-8")
    loaded = load_fleet(path)
    assert loaded == derived.fleet
    sha = trace_sha256(tmp_path / "t")[:16]
    for key in ("boot_ios", "read_fraction", "boot_write_bytes", "boot_write_extents", "boot_write_span",
                "boot_read_span", "read_io_size", "host_iops"):
        assert f"sha256 {sha}" in str(loaded.sources[key].source) and loaded.sources[key].date == "2025-01-01"
    assert "--gi-size" in str(loaded.sources["gi_size"].assumption)
    assert "--gi-used" in str(loaded.sources["gi_used"].assumption)
    assert loaded.sources["queue_depth"].assumption


def test_a_trace_without_times_leaves_the_boot_window_to_the_user(drawn: tuple[FleetPreset, Trace],
                                                                  tmp_path: Path) -> None:
    fleet = drawn[0]
    closed = generate_trace(fleet, 2, np.random.default_rng(3))
    write_fio_iologs(closed, tmp_path)
    derived = _derive(tmp_path)
    assert not derived.timed
    assert "boot_window" in (derived.fleet.sources["boot_window"].assumption or "")
    given = derive_fleet(read_trace(tmp_path), name="g", source_label="t", sha256="0" * 64, boot_window_s=12.0)
    assert given.fleet.boot_window_s == pytest.approx(12.0)


def test_runs_and_covered_units_by_hand() -> None:
    off = np.array([0, 4096, 10000, 9000, 100_000], np.int64)
    ln = np.array([4096, 4096, 100, 2000, 1], np.int64)
    # [0, 8192) touch; [9000, 11000) holds [10000, 10100); 100000 stands alone.
    assert write_runs(off, ln) == 3
    # 4 KiB units: 0, 1, 2 (9000..10999), 24 (100000) -> 4 units.
    assert covered_bytes(off, ln, 4096) == 4 * 4096
    assert write_runs(off[:0], ln[:0]) == 0 and covered_bytes(off[:0], ln[:0], 4096) == 0


def test_an_io_beyond_the_given_gi_size_is_refused(drawn: tuple[FleetPreset, Trace], tmp_path: Path) -> None:
    from clonefleet.errors import UsageError

    write_fio_iologs(drawn[1].first_vms(1), tmp_path)
    with pytest.raises(UsageError, match="beyond --gi-size"):
        derive_fleet(read_trace(tmp_path), name="x", source_label="t", sha256="0" * 64, gi_virtual_bytes=2**20)
