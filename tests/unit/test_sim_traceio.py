"""Traces read from fio iologs (v2, v3, a folder), blkparse text and CSV; fio iologs written back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clonefleet.errors import UsageError
from clonefleet.presets import load_fleet
from clonefleet.sim.trace import READ, WRITE, Arrivals, generate_trace
from clonefleet.sim.traceio import read_trace, write_fio_iologs

FLEET = load_fleet("server-ws2008")


@pytest.mark.parametrize("arrivals", [Arrivals.OPEN, Arrivals.CLOSED])
def test_fio_iologs_round_trip(tmp_path: Path, arrivals: Arrivals) -> None:
    tr = generate_trace(FLEET, 3, np.random.default_rng(4), ios_per_vm=50, arrivals=arrivals)
    paths = write_fio_iologs(tr, tmp_path / "logs")
    assert len(paths) == 3
    header = paths[0].read_text().splitlines()[0]
    assert header == f"fio version {3 if arrivals is Arrivals.OPEN else 2} iolog"
    back = read_trace(tmp_path / "logs")
    assert back.vms == 3
    np.testing.assert_array_equal(back.vm_start, tr.vm_start)
    np.testing.assert_array_equal(back.op, tr.op)
    np.testing.assert_array_equal(back.offset_bytes, tr.offset_bytes)
    np.testing.assert_array_equal(back.length_bytes, tr.length_bytes)
    if arrivals is Arrivals.OPEN:  # microseconds in the file, relative to the first IO
        np.testing.assert_allclose(back.issue_s, tr.issue_s - tr.issue_s.min(), atol=1e-6)
    else:
        assert back.arrivals is Arrivals.CLOSED


def test_fio_v2_file_with_two_devices_is_two_vms(tmp_path: Path) -> None:
    p = tmp_path / "two.iolog"
    p.write_text("fio version 2 iolog\n/dev/vdb add\n/dev/vdc add\n/dev/vdb open\n/dev/vdc open\n"
                 "/dev/vdc write 8192 4096\n/dev/vdb read 0 65536\n/dev/vdb sync 0 0\n/dev/vdb close\n")
    tr = read_trace(p)
    assert tr.vms == 2 and tr.ios == 2
    assert tr.op.tolist() == [READ, WRITE]  # VM 0 is /dev/vdb, added first
    assert tr.offset_bytes.tolist() == [0, 8192] and tr.length_bytes.tolist() == [65536, 4096]


def test_blkparse_queue_events(tmp_path: Path) -> None:
    p = tmp_path / "boot.txt"
    p.write_text(
        "  8,0    1        1     0.000000000  2431  Q   R 2048 + 8 [systemd]\n"
        "  8,0    1        2     0.000002000  2431  G   R 2048 + 8 [systemd]\n"
        "  8,16   0        1     0.000500000   191  Q  WS 4096 + 16 [jbd2/sda1-8]\n"
        "  8,0    1        3     0.001000000  2431  Q  RA 100 + 8 [systemd]\n"
        "  8,0    1        4     0.001200000  2431  C   R 2048 + 8 [0]\n"
        "CPU1 (8,0):\n Reads Queued:           2,        8KiB\n")
    tr = read_trace(p)
    assert tr.vms == 2 and tr.ios == 3
    assert tr.op.tolist() == [READ, READ, WRITE]
    assert tr.offset_bytes.tolist() == [2048 * 512, 100 * 512, 4096 * 512]
    assert tr.length_bytes.tolist() == [4096, 4096, 8192]
    np.testing.assert_allclose(tr.issue_s, [0.0, 0.001, 0.0005])


def test_csv_any_column_order_and_closed_loop(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("vm,op,offset,length,time\n1,write,4096,4096,0.5\n0,read,0,8192,0.25\n0,R,8192,4096,0.75\n")
    tr = read_trace(p, closed=True)
    assert tr.vms == 2 and tr.arrivals is Arrivals.CLOSED
    assert tr.op.tolist() == [READ, READ, WRITE]
    np.testing.assert_allclose(tr.start_s, [0.0, 0.25])  # each VM powers on at its first IO


@pytest.mark.parametrize(("text", "match"), [
    ("vm,op,offset,length\n0,erase,0,4096\n", "op = 'erase'"),
    ("vm,op,offset\n0,read,0\n", "lacks length"),
    ("vm,op,offset,length\n0,read,-5,4096\n", "offset = -5"),
])
def test_bad_csv_rows_are_named(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(UsageError, match=match):
        read_trace(p)


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        read_trace(tmp_path / "nope.csv")
    p = tmp_path / "x.txt"
    p.write_text("hello world\n")
    with pytest.raises(UsageError, match="unknown format"):
        read_trace(p)
