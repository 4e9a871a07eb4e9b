"""Read real boot traces (fio iolog v2/v3, blkparse text, CSV) and write fio iologs.

Every reader returns a :class:`~clonefleet.sim.trace.Trace`: VMs numbered in
order of first appearance (fio, blkparse) or by the CSV's ``vm`` column, each
VM's IOs in file order. A trace with times is open loop (the IOs are issued at
their times, relative to the trace's first IO); ``closed=True`` drops the times
and keeps each VM's first time as its power-on.

- fio iolog v2: ``fio version 2 iolog`` then ``<file> <action> [<offset> <length>]``;
  each file it names is one VM (in a folder of iologs: each iolog is one VM); no times.
- fio iolog v3: ``fio version 3 iolog`` then ``<time> <file> <action> [...]``,
  time in microseconds (what fio's ``write_iolog`` writes).
- blkparse text (default output format): ``maj,min cpu seq time pid action rwbs
  sector + sectors [proc]``; queue events (``Q``) become IOs, each device one VM,
  sectors of 512 bytes.
- CSV: a header naming ``time, vm, op, offset, length`` (any order; ``time`` in
  seconds may be omitted); ``op`` is read/write (or r/w, R/W).

Write: :func:`write_fio_iologs` writes one iolog per VM into a folder (v3 with
the open-loop times, v2 without), for fio's ``read_iolog`` on each clone.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from clonefleet.errors import UsageError, output_folder
from clonefleet.sim.trace import READ, WRITE, Trace
from clonefleet.storage.files import open_regular

FORMATS: tuple[str, ...] = ("auto", "fio", "blkparse", "csv")
SECTOR_BYTES = 512
_OPS = {"read": READ, "r": READ, "write": WRITE, "w": WRITE}


@dataclass
class _Rows:
    """IOs as read, in file order."""

    vm: list[int]
    op: list[int]
    offset: list[int]
    length: list[int]
    time_s: list[float]


def _bad(path: Path, line: int, what: str) -> UsageError:
    return UsageError(f"trace '{path}' line {line}: {what}")


def _int(path: Path, line: int, name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _bad(path, line, f"{name} = {text!r}: a whole number of bytes") from None
    if value < 0:
        raise _bad(path, line, f"{name} = {value}: 0 or more")
    return value


def _open(path: Path, errors: str = "strict", newline: str | None = None) -> TextIO:
    """A trace file for reading, if it is a regular file: a FIFO, a device or a directory is
    refused before a byte is read (:func:`clonefleet.storage.files.open_regular`)."""
    return os.fdopen(open_regular(path, "trace"), encoding="utf-8", errors=errors, newline=newline)


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    try:
        with _open(path) as fh:
            yield from enumerate(fh, start=1)
    except UnicodeDecodeError:
        raise UsageError(f"trace '{path}': not a text file (UTF-8); give a fio iolog, blkparse text or CSV") \
            from None


def _read_fio(path: Path, rows: _Rows, names: dict[str, int], vm: int | None = None) -> None:
    """One fio iolog: each file it names is a VM, or all of it is VM ``vm`` when given."""
    version = 0
    for no, raw in _lines(path):
        parts = raw.split()
        if not parts:
            continue
        if version == 0:
            if raw.strip() not in ("fio version 2 iolog", "fio version 3 iolog"):
                raise _bad(path, no, "not a fio iolog header; 'fio version 2 iolog' or 'fio version 3 iolog'")
            version = int(raw.split()[2])
            continue
        t: float | None = None
        if version == 3:
            try:
                t = float(parts[0]) * 1e-6
            except ValueError:
                raise _bad(path, no, f"time = {parts[0]!r}: microseconds (fio iolog v3)") from None
            parts = parts[1:]
        if len(parts) < 2:
            raise _bad(path, no, "expected '<file> <action> [<offset> <length>]'")
        name, action = parts[0], parts[1]
        if action in ("add", "open", "close"):
            names.setdefault(name, len(names))
            continue
        if action not in ("read", "write"):
            continue  # sync, datasync, trim, wait: not boot data IO
        if len(parts) != 4:
            raise _bad(path, no, f"a {action} needs '<offset> <length>'")
        rows.vm.append(names.setdefault(name, len(names)) if vm is None else vm)
        rows.op.append(_OPS[action])
        rows.offset.append(_int(path, no, "offset", parts[2]))
        rows.length.append(_int(path, no, "length", parts[3]))
        rows.time_s.append(t if t is not None else np.nan)


def _read_blkparse(path: Path, rows: _Rows) -> None:
    names: dict[str, int] = {}
    for no, raw in _lines(path):
        parts = raw.split()
        # maj,min cpu seq time pid action rwbs sector + sectors [proc]
        if len(parts) < 10 or "," not in parts[0] or parts[5] != "Q" or parts[8] != "+":
            continue  # summary lines, other actions (G, I, D, C, ...)
        rwbs = parts[6]
        if "R" in rwbs:
            op = READ
        elif "W" in rwbs:
            op = WRITE
        else:
            continue
        try:
            t = float(parts[3])
        except ValueError:
            raise _bad(path, no, f"time = {parts[3]!r}: seconds") from None
        rows.vm.append(names.setdefault(parts[0], len(names)))
        rows.op.append(op)
        rows.offset.append(_int(path, no, "sector", parts[7]) * SECTOR_BYTES)
        rows.length.append(_int(path, no, "sectors", parts[9]) * SECTOR_BYTES)
        rows.time_s.append(t)


def _read_csv(path: Path, rows: _Rows) -> None:
    with _open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        missing = [f for f in ("vm", "op", "offset", "length") if f not in fields]
        if missing:
            raise UsageError(f"trace '{path}': CSV header lacks {', '.join(missing)}; "
                             "columns time (s, optional), vm, op, offset, length (bytes)")
        reader.fieldnames = fields
        for no, rec in enumerate(reader, start=2):
            op = _OPS.get(str(rec["op"]).strip().lower())
            if op is None:
                raise _bad(path, no, f"op = {rec['op']!r}: read or write")
            rows.vm.append(_int(path, no, "vm", str(rec["vm"]).strip()))
            rows.op.append(op)
            rows.offset.append(_int(path, no, "offset", str(rec["offset"]).strip()))
            rows.length.append(_int(path, no, "length", str(rec["length"]).strip()))
            text = str(rec.get("time") or "").strip()
            try:
                rows.time_s.append(float(text) if text else np.nan)
            except ValueError:
                raise _bad(path, no, f"time = {text!r}: seconds") from None


def detect_format(path: Path) -> str:
    """fio, blkparse or csv, from the first line of the file."""
    with _open(path, errors="replace") as fh:
        first = fh.readline(4096)
    if first.startswith("fio version"):
        return "fio"
    if "," in first and any(k in first.lower() for k in ("offset", "length")):
        return "csv"
    parts = first.split()
    if len(parts) >= 7 and "," in parts[0]:
        return "blkparse"
    raise UsageError(f"trace '{path}': unknown format; give --trace-format fio, blkparse or csv")


def read_trace(path: str | Path, fmt: str = "auto", *, closed: bool = False) -> Trace:
    """Read a trace file (or a folder of fio iologs, one per VM) into a :class:`Trace`."""
    p = Path(path)
    if fmt not in FORMATS:
        raise UsageError(f"--trace-format = {fmt!r}: one of {', '.join(FORMATS)}")
    if not p.exists():
        raise UsageError(f"trace '{p}' does not exist; give a fio iolog (or a folder of them), "
                         "blkparse text or CSV file")
    rows = _Rows([], [], [], [], [])
    if p.is_dir():
        files = sorted(p.glob("*.iolog"))
        if not files:
            raise UsageError(f"trace folder '{p}' holds no *.iolog files")
        for k, f in enumerate(files):
            _read_fio(f, rows, {}, vm=k)  # one clone per file, whatever its device is called
    else:
        kind = detect_format(p) if fmt == "auto" else fmt
        if kind == "fio":
            _read_fio(p, rows, {})
        elif kind == "blkparse":
            _read_blkparse(p, rows)
        else:
            _read_csv(p, rows)
    return _to_trace(rows, str(p), closed)


def _to_trace(rows: _Rows, source: str, closed: bool) -> Trace:
    vm = np.asarray(rows.vm, np.int64)
    if vm.size == 0:
        return Trace(np.zeros(1, np.int64), np.zeros(0, np.int8), np.zeros(0, np.int64),
                     np.zeros(0, np.int32), np.zeros(0), np.zeros(0), None, source)
    order = np.argsort(vm, kind="stable")
    vms = int(vm.max()) + 1
    counts = np.bincount(vm, minlength=vms)
    vm_start = np.zeros(vms + 1, np.int64)
    np.cumsum(counts, out=vm_start[1:])
    length = np.asarray(rows.length, np.int64)[order]
    if length.max() > np.iinfo(np.int32).max:
        raise UsageError(f"trace '{source}': an IO of {int(length.max())} bytes; at most 2 GiB per IO")
    times = np.asarray(rows.time_s, np.float64)[order]
    has_time = bool(np.all(np.isfinite(times)))
    starts = np.zeros(vms)
    issue = np.zeros(0)
    if has_time:
        times = times - times.min()
        firsts = vm_start[:-1][counts > 0]
        starts[counts > 0] = times[firsts]
        if not closed:
            issue = times
    return Trace(vm_start, np.asarray(rows.op, np.int8)[order], np.asarray(rows.offset, np.int64)[order],
                 length.astype(np.int32), issue, starts, None, source)


def write_fio_iologs(trace: Trace, folder: str | Path, device: str = "/dev/clonefleet/vm{vm}") -> list[Path]:
    """Write one fio iolog per VM (``vm-00000.iolog``...); ``device`` names the clone's file (``{vm}``)."""
    out = output_folder(folder, "--write-iolog")
    timed = len(trace.issue_s) > 0
    paths = []
    for v in range(trace.vms):
        sl = trace.vm_slice(v)
        name = device.format(vm=v)
        ops = np.where(trace.op[sl] == WRITE, "write", "read")
        lines = [f"fio version {3 if timed else 2} iolog"]
        if timed:
            t_us = np.round(trace.issue_s[sl] * 1e6).astype(np.int64)
            first = int(t_us[0]) if len(t_us) else 0
            lines.append(f"{first} {name} add")
            lines.append(f"{first} {name} open")
            lines += [f"{t} {name} {o} {off} {ln}" for t, o, off, ln in
                      zip(t_us.tolist(), ops.tolist(), trace.offset_bytes[sl].tolist(),
                          trace.length_bytes[sl].tolist(), strict=True)]
            lines.append(f"{int(t_us[-1]) if len(t_us) else 0} {name} close")
        else:
            lines += [f"{name} add", f"{name} open"]
            lines += [f"{name} {o} {off} {ln}" for o, off, ln in
                      zip(ops.tolist(), trace.offset_bytes[sl].tolist(), trace.length_bytes[sl].tolist(),
                          strict=True)]
            lines.append(f"{name} close")
        path = out / f"vm-{v:05d}.iolog"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
