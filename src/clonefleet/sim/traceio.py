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
  seconds may be omitted); ``op`` is read/write (or r/w, R/W). This is the project's own format
  (:func:`write_csv` writes it).
- QEMU block trace (``-trace 'blk_co_p*,file=LOG'``, the ``log`` trace backend):
  ``<pid>@<epoch s>:blk_co_preadv blk <ptr> bs <ptr> offset <bytes> bytes <bytes> flags <hex>``
  (and ``blk_co_pwritev``); each block backend (``blk`` pointer) is one VM disk.

Any of them may be gzip-compressed (read by its magic bytes, whatever the name).

Write: :func:`write_fio_iologs` writes one iolog per VM into a folder (v3 with
the open-loop times, v2 without), for fio's ``read_iolog`` on each clone.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from clonefleet.errors import UsageError, output_folder
from clonefleet.sim.trace import READ, WRITE, Trace
from clonefleet.storage.files import open_regular

FORMATS: tuple[str, ...] = ("auto", "fio", "blkparse", "csv", "qemu")
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


_GZIP_MAGIC = b"\x1f\x8b"
_KINDS = "a fio iolog, blkparse text, CSV or a QEMU block trace (optionally gzip-compressed)"


class _GzipOwning(gzip.GzipFile):
    """A gzip reader that closes the file it reads when it is closed."""

    def __init__(self, raw: io.BufferedReader) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def _open(path: Path, errors: str = "strict", newline: str | None = None) -> TextIO:
    """A trace file for reading as text, if it is a regular file: a FIFO, a device or a directory is
    refused before a byte is read (:func:`clonefleet.storage.files.open_regular`). A gzip file is
    decompressed on the fly."""
    raw = os.fdopen(open_regular(path, "trace"), "rb")
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        return io.TextIOWrapper(_GzipOwning(raw), encoding="utf-8", errors=errors, newline=newline)
    return io.TextIOWrapper(raw, encoding="utf-8", errors=errors, newline=newline)


def _not_text(path: Path) -> UsageError:
    return UsageError(f"trace '{path}': not a text file (UTF-8, or gzip of one); give {_KINDS}")


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    with _open(path) as fh:
        yield from enumerate(fh, start=1)


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


_QEMU_LINE = re.compile(r"^\d+@(\d+(?:\.\d+)?):blk_co_p(read|write)v blk (\S+) bs \S+ offset (\S+) bytes (\S+)"
                        r"(?: flags (0x[0-9a-fA-F]+))?")
_QEMU_OPS = {"read": READ, "write": WRITE}
#: QEMU's BDRV_REQ_ZERO_WRITE flag (include/block/block-common.h): a write of zeros that carries no data
#: (the guest's WRITE ZEROES / discard-zeroing, e.g. ext4's lazy inode table init).
QEMU_ZERO_WRITE_FLAG = 0x2


def qemu_zero_writes(path: str | Path) -> tuple[int, int]:
    """(requests, bytes) of the zero writes in a QEMU block trace: left out of the trace itself."""
    count = total = 0
    for _, raw in _lines(Path(path)):
        m = _QEMU_LINE.match(raw)
        if m and m.group(2) == "write" and m.group(6) and int(m.group(6), 16) & QEMU_ZERO_WRITE_FLAG:
            count, total = count + 1, total + int(m.group(5))
    return count, total


def _read_qemu(path: Path, rows: _Rows) -> None:
    """A QEMU ``log``-backend trace of ``blk_co_preadv``/``blk_co_pwritev``: other events are skipped,
    and so are zero writes (:data:`QEMU_ZERO_WRITE_FLAG`): they store no data (qcow2 marks the clusters
    zero; a thin array unmaps them), so they are not boot writes W (:func:`qemu_zero_writes` counts them)."""
    disks: dict[str, int] = {}
    for no, raw in _lines(path):
        m = _QEMU_LINE.match(raw)
        if m is None:
            continue  # other trace events, QEMU's own messages
        t, action, blk, offset, length, flags = m.groups()
        if action == "write" and flags and int(flags, 16) & QEMU_ZERO_WRITE_FLAG:
            continue
        rows.vm.append(disks.setdefault(blk, len(disks)))
        rows.op.append(_QEMU_OPS[action])
        rows.offset.append(_int(path, no, "offset", offset))
        rows.length.append(_int(path, no, "bytes", length))
        rows.time_s.append(float(t))


def detect_format(path: Path) -> str:
    """fio, blkparse, csv or qemu, from the first line of the file."""
    with _open(path) as fh:
        head = fh.read(4096)  # UnicodeDecodeError: read_trace says "not a text file"
    if "\x00" in head:
        raise _not_text(path)
    first = head.splitlines()[0] if head else ""
    if not first.strip():
        raise UsageError(f"trace '{path}': is empty (its first line is blank); give {_KINDS}")
    if first.startswith("fio version"):
        return "fio"
    if _QEMU_LINE.match(first) or re.match(r"^\d+@\d+(\.\d+)?:\w+ ", first):
        return "qemu"
    if "," in first and any(k in first.lower() for k in ("offset", "length")):
        return "csv"
    parts = first.split()
    if len(parts) >= 7 and "," in parts[0]:
        return "blkparse"
    raise UsageError(f"trace '{path}': unknown format; give --trace-format fio, blkparse, csv or qemu")


def read_trace(path: str | Path, fmt: str = "auto", *, closed: bool = False) -> Trace:
    """Read a trace file (or a folder of fio iologs, one per VM) into a :class:`Trace`."""
    p = Path(path)
    if fmt not in FORMATS:
        raise UsageError(f"--trace-format = {fmt!r}: one of {', '.join(FORMATS)}")
    if not p.exists():
        raise UsageError(f"trace '{p}' does not exist; give {_KINDS}, or a folder of fio iologs")
    rows = _Rows([], [], [], [], [])
    try:
        _read_into(p, fmt, rows)
    except UnicodeDecodeError:
        raise _not_text(p) from None
    except (gzip.BadGzipFile, EOFError, zlib.error):
        raise UsageError(f"trace '{p}': a damaged or truncated gzip file; give {_KINDS}") from None
    if not rows.vm:
        raise UsageError(f"trace '{p}': holds no read or write IOs; give {_KINDS}")
    return _to_trace(rows, str(p), closed)


def _read_into(p: Path, fmt: str, rows: _Rows) -> None:
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
        elif kind == "qemu":
            _read_qemu(p, rows)
        else:
            _read_csv(p, rows)


def _to_trace(rows: _Rows, source: str, closed: bool) -> Trace:
    vm = np.asarray(rows.vm, np.int64)
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


def write_csv(trace: Trace, path: str | Path) -> Path:
    """Write ``trace`` in the project's CSV format (``time,vm,op,offset,length``; ``time`` in
    seconds from the trace's first IO, empty for a closed-loop trace), read back by :func:`read_trace`."""
    out = Path(path)
    timed = len(trace.issue_s) > 0
    vm = np.repeat(np.arange(trace.vms), np.diff(trace.vm_start))
    ops = np.where(trace.op == WRITE, "write", "read")
    times = [f"{t:.6f}" for t in trace.issue_s.tolist()] if timed else [""] * trace.ios
    lines = ["time,vm,op,offset,length"]
    lines += [f"{t},{v},{o},{off},{ln}" for t, v, o, off, ln in
              zip(times, vm.tolist(), ops.tolist(), trace.offset_bytes.tolist(), trace.length_bytes.tolist(),
                  strict=True)]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
