"""A fleet preset derived from a boot trace: every figure a trace can give, with the trace as its source.

:func:`derive_fleet` is pure: it takes a :class:`~clonefleet.sim.trace.Trace` (read by
:func:`clonefleet.sim.traceio.read_trace`) and returns a :class:`DerivedFleet`, the
:class:`FleetPreset` and the TOML text that loads back to it. Every figure is computed per VM
and then averaged over the VMs that issued IOs (the arithmetic mean of the per-VM values):

- ``boot_ios``: IOs one VM issues;
- ``read_fraction`` r: that VM's reads / its IOs;
- ``read_io_size``: mean length of the VM's reads [bytes];
- ``boot_read_span``: the bytes of the distinct 4 KiB blocks the VM reads (the data of the files a
  boot reads, its read working set; a re-read block counts once) [bytes];
- ``boot_write_bytes`` W: the distinct bytes the VM writes (a byte rewritten counts once: it allocates
  once) [bytes];
- ``boot_write_extents`` n: the VM's write runs after merging writes that overlap or touch;
- ``boot_write_span`` R: highest minus lowest byte the VM writes, at least one 4 KiB block [bytes];
- ``boot_write_regions``: where the writes fall (:func:`write_regions`): a real boot writes a few
  separate stretches of the disk, and C(u) is counted per region from them; W and n are then the
  sums over the regions;
- ``host_iops`` A, only from a trace with times (open loop): IOs / (last issue - first issue).
  A trace without times cannot give it: ``boot_window`` is then the caller's (an assumption).

A trace cannot give the GI's virtual size, its used data or the VM's queue depth: those are the
caller's, or an ``assumption`` saying how to supply them.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clonefleet.errors import UsageError
from clonefleet.presets.schema import Figure, FleetPreset, build_fleet
from clonefleet.sim.trace import READ, WRITE, Trace

#: Block of the read working set and the least write span [bytes].
BLOCK_BYTES = 4096
#: Writes with a gap of at least this between them fall into separate write regions [bytes].
REGION_GAP_BYTES = 256 * 1024
#: Queue depth written when the trace cannot tell (no completion times).
DEFAULT_QUEUE_DEPTH = 8
#: Boot window written when the trace has no times [s].
DEFAULT_BOOT_WINDOW_S = 30.0
GiB = 2**30


def trace_sha256(path: str | Path) -> str:
    """SHA-256 of a trace file, or of a folder's ``*.iolog`` files (names and contents, sorted)."""
    p = Path(path)
    digest = hashlib.sha256()
    files = sorted(p.glob("*.iolog")) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            digest.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def covered_bytes(offsets: np.ndarray, lengths: np.ndarray, unit_bytes: int) -> int:
    """Bytes of the distinct units of ``unit_bytes`` the IOs (offsets, lengths) touch: the union of
    the units each IO covers, counted once, times the unit."""
    keep = lengths > 0
    if not np.any(keep):
        return 0
    first = offsets[keep] // unit_bytes
    last = (offsets[keep] + lengths[keep] - 1) // unit_bytes
    order = np.argsort(first, kind="stable")
    first, last = first[order], last[order]
    reach = np.maximum.accumulate(last)
    # A new run starts where a unit interval begins after every earlier one has ended.
    new = np.empty(len(first), bool)
    new[0] = True
    new[1:] = first[1:] > reach[:-1]
    run_first = first[new]
    run_last = reach[np.append(np.flatnonzero(new)[1:] - 1, len(first) - 1)]
    return int(np.sum(run_last - run_first + 1)) * unit_bytes


def merged_runs(offsets: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs the IOs cover after merging those that overlap or touch, in order."""
    keep = lengths > 0
    if not np.any(keep):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    start = offsets[keep].astype(np.int64)
    order = np.argsort(start, kind="stable")
    start, end = start[order], (start + lengths[keep].astype(np.int64))[order]
    reach = np.maximum.accumulate(end)
    new = np.r_[True, start[1:] > reach[:-1]]
    last = np.r_[np.flatnonzero(new)[1:] - 1, len(start) - 1]
    return start[new], reach[last]


def write_runs(offsets: np.ndarray, lengths: np.ndarray) -> int:
    """Extents n: runs of writes after merging those that overlap or touch (byte exact)."""
    return len(merged_runs(offsets, lengths)[0])


def _mean_figure(value: float) -> float:
    """A mean kept to 9 significant digits (what the TOML file shows), a whole number stays whole."""
    return float(f"{value:.9g}")


def write_regions(trace: Trace, gap_bytes: int = REGION_GAP_BYTES) -> tuple[tuple[int, int, float, float], ...]:
    """Where the boots write: (start, end, bytes, extents) per region, for
    :func:`clonefleet.model.allocation.allocated_bytes_in_regions`.

    A region is a stretch of the disk holding writes with no gap of ``gap_bytes`` or more
    (every VM's writes pooled), its bounds rounded out to 4 KiB blocks; its bytes are the distinct
    bytes each VM writes in it and its extents each VM's write runs in it, means over the VMs that
    issued IOs (rounded; a region whose mean rounds to no byte is left out).
    """
    active = [v for v in range(trace.vms) if trace.vm_start[v + 1] > trace.vm_start[v]]
    w = (trace.op == WRITE) & (trace.length_bytes > 0)
    if not active or not np.any(w):
        return ()
    pooled_start, pooled_end = merged_runs(trace.offset_bytes[w], trace.length_bytes[w])
    first = np.r_[True, pooled_start[1:] - pooled_end[:-1] >= gap_bytes]
    at = np.flatnonzero(first)
    bounds_start = pooled_start[at] // BLOCK_BYTES * BLOCK_BYTES
    bounds_end = -(-np.maximum.reduceat(pooled_end, at) // BLOCK_BYTES) * BLOCK_BYTES
    written = np.zeros(len(at))
    runs = np.zeros(len(at))
    for v in active:
        sl = trace.vm_slice(v)
        mine = w[sl]
        starts, ends = merged_runs(trace.offset_bytes[sl][mine], trace.length_bytes[sl][mine])
        region = np.searchsorted(bounds_start, starts, side="right") - 1
        written += np.bincount(region, ends - starts, minlength=len(at))
        runs += np.bincount(region, minlength=len(at))
    rows = []
    for k in range(len(at)):
        if written[k] > 0:
            rows.append((int(bounds_start[k]), int(bounds_end[k]), _mean_figure(written[k] / len(active)),
                         _mean_figure(runs[k] / len(active))))
    return tuple(rows)


def allocated_bytes_from_trace(trace: Trace, unit_bytes: int) -> float:
    """C counted exactly: distinct units of ``unit_bytes`` each VM's writes touch, times the unit,
    mean over the VMs that issued IOs [bytes]."""
    per_vm = []
    for v in range(trace.vms):
        sl = trace.vm_slice(v)
        if sl.stop == sl.start:
            continue
        w = trace.op[sl] == WRITE
        per_vm.append(covered_bytes(trace.offset_bytes[sl][w], trace.length_bytes[sl][w].astype(np.int64),
                                    unit_bytes))
    return float(np.mean(per_vm)) if per_vm else 0.0


@dataclass(frozen=True)
class VmFigures:
    """One VM's boot as the trace shows it (bytes, seconds)."""

    ios: int
    reads: int
    read_bytes: int
    read_set_bytes: int
    write_bytes: int  # distinct bytes written (a byte written twice counts once)
    rewritten_bytes: int  # every byte of every write, rewrites counted again
    write_extents: int
    write_span_bytes: int
    highest_byte: int
    iops: float | None  # None without times or with fewer than 2 IOs


def vm_figures(trace: Trace, vm: int) -> VmFigures:
    """The figures of one VM of ``trace``."""
    sl = trace.vm_slice(vm)
    op, off = trace.op[sl], trace.offset_bytes[sl]
    ln = trace.length_bytes[sl].astype(np.int64)
    r, w = op == READ, op == WRITE
    w_off, w_len = off[w], ln[w]
    written = w_len > 0
    span = int((w_off[written] + w_len[written]).max() - w_off[written].min()) if np.any(written) else 0
    iops = None
    if len(trace.issue_s) and len(op) >= 2:
        t = trace.issue_s[sl]
        elapsed = float(t.max() - t.min())
        iops = len(op) / elapsed if elapsed > 0 else None
    run_start, run_end = merged_runs(w_off, w_len)
    return VmFigures(ios=len(op), reads=int(np.count_nonzero(r)), read_bytes=int(ln[r].sum()),
                     read_set_bytes=covered_bytes(off[r], ln[r], BLOCK_BYTES),
                     write_bytes=int((run_end - run_start).sum()), rewritten_bytes=int(w_len.sum()),
                     write_extents=len(run_start), write_span_bytes=max(span, BLOCK_BYTES),
                     highest_byte=int((off + ln).max()) if len(op) else 0, iops=iops)


@dataclass(frozen=True)
class DerivedFleet:
    """A fleet preset derived from a trace, and the TOML file that loads back to it."""

    fleet: FleetPreset
    toml: str
    vms: int  # VMs of the trace that issued IOs (the figures are their means)
    timed: bool  # whether the trace had times (A derived) or not (boot_window assumed)


def toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def toml_number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def derive_fleet(trace: Trace, *, name: str, source_label: str, sha256: str,
                 gi_virtual_bytes: float | None = None, gi_used_bytes: float | None = None,
                 boot_window_s: float | None = None, queue_depth: int | None = None,
                 date: str = "", rate_note: str = "", gi_source: str = "",
                 host_iops: tuple[float, Figure] | None = None) -> DerivedFleet:
    """Derive a fleet preset from ``trace``: each figure per VM, the mean over the VMs with IOs.

    ``source_label`` names the trace (its path) and ``sha256`` its contents in every derived figure's
    source; ``date`` is the derivation's (ISO); ``rate_note`` is added to A's source (how the boot ran,
    e.g. under software emulation); ``gi_source`` says where the GI's sizes come from (default: the
    user's flags); ``host_iops`` gives A with its figure instead of the trace's rate.
    The GI's size and used data, the boot window of a
    trace without times and the queue depth are the caller's; left out, they get a default with
    an ``assumption`` that says how to supply them. A trace without IOs, without reads, or that
    reaches beyond ``gi_virtual_bytes`` is refused with one line.
    """
    figures = [vm_figures(trace, v) for v in range(trace.vms) if trace.vm_start[v + 1] > trace.vm_start[v]]
    if not figures:
        raise UsageError(f"trace '{source_label}': no read or write IOs; nothing to derive a fleet from")
    if not any(f.reads for f in figures) or not any(f.read_bytes for f in figures):
        raise UsageError(f"trace '{source_label}': no reads of any bytes; a boot trace reads its GI")
    highest = max(f.highest_byte for f in figures)
    if gi_virtual_bytes is not None and highest > gi_virtual_bytes:
        raise UsageError(f"trace '{source_label}': an IO reaches byte {highest:,}, beyond --gi-size "
                         f"({gi_virtual_bytes:,.0f} bytes); give the GI's real size")

    def mean(values: list[float]) -> float:
        return float(np.mean(values))

    read_vms = [f for f in figures if f.reads]
    values: dict[str, float] = {
        "boot_ios": mean([f.ios for f in figures]),
        "read_fraction": mean([f.reads / f.ios for f in figures]),
        "boot_write_bytes": mean([f.write_bytes for f in figures]),
        "boot_write_extents": mean([f.write_extents for f in figures]),
        "boot_write_span": mean([f.write_span_bytes for f in figures]),
        "boot_read_span": mean([f.read_set_bytes for f in read_vms]),
        "read_io_size": mean([f.read_bytes / f.reads for f in read_vms]),
    }
    regions = write_regions(trace)
    if regions:
        values["boot_write_bytes"] = float(np.sum([r[2] for r in regions]))
        values["boot_write_extents"] = float(np.sum([r[3] for r in regions]))
    rewrites = mean([f.rewritten_bytes for f in figures])
    rates = [f.iops for f in figures if f.iops is not None]
    timed = len(trace.issue_s) > 0 and len(rates) > 0
    derived = f"derived from {source_label} (sha256 {sha256[:16]})"
    how = {
        "boot_ios": "IOs per VM, mean over {vms} VMs",
        "read_fraction": "reads / IOs per VM, mean over {vms} VMs",
        "boot_write_bytes": "distinct bytes written per VM (rewrites once; all writes: {rewrites}), mean over "
                            "{vms} VMs, summed over the write regions",
        "boot_write_extents": "write runs per VM after merging touching writes, mean over {vms} VMs, summed over "
                              "the write regions",
        "boot_write_regions": "stretches of the disk the writes fall in, apart by 256 KiB or more, bounds rounded "
                              "to 4 KiB; bytes and write runs per VM in each, means over {vms} VMs",
        "boot_write_span": "highest minus lowest byte written per VM, mean over {vms} VMs",
        "boot_read_span": "distinct 4 KiB blocks read per VM, mean over {vms} VMs",
        "read_io_size": "mean read length per VM, mean over {vms} VMs",
        "host_iops": "IOs / (last issue - first issue) per VM, mean over {vms} VMs",
    }
    table: dict[str, tuple[float, Figure]] = {}
    shown_rewrites = f"{rewrites:,.0f} bytes"
    for key, value in values.items():
        table[key] = (value, Figure(source=f"{derived}: {how[key].format(vms=len(figures), rewrites=shown_rewrites)}",
                                    date=date))
    if host_iops is not None:
        table["host_iops"] = host_iops
    elif timed:
        note = f"; {rate_note}" if rate_note else ""
        table["host_iops"] = (mean(rates), Figure(
            source=f"{derived}: {how['host_iops'].format(vms=len(rates))}{note}", date=date))
    else:
        window = DEFAULT_BOOT_WINDOW_S if boot_window_s is None else boot_window_s
        table["boot_window"] = (window, Figure(source="given by the user (--boot-window)", date=date)
                                if boot_window_s is not None else Figure(assumption=(
                                    "the trace has no times, so A is not derived; measure one boot "
                                    "(systemd-analyze) and set boot_window here, or --boot-window")))
    gi_floor = max(-(-highest // GiB) * GiB, GiB)
    if gi_virtual_bytes is None:
        table["gi_size"] = (float(gi_floor), Figure(assumption=(
            "the highest byte the trace touches, rounded up to a GiB; a trace cannot tell the GI's size: "
            "give --gi-size or set it here")))
    else:
        table["gi_size"] = (gi_virtual_bytes, Figure(source=gi_source or "given by the user (--gi-size)", date=date))
    if gi_used_bytes is None:
        touched = mean([float(f.read_set_bytes) for f in figures])
        used = min(max(touched, values["boot_write_span"], BLOCK_BYTES), table["gi_size"][0])
        table["gi_used"] = (used, Figure(assumption=(
            "at least what one boot touches (its read set or write span); a trace cannot tell the GI's "
            "used data: give --gi-used or set it here (qemu-img info: disk size)")))
    else:
        table["gi_used"] = (gi_used_bytes, Figure(source=gi_source or "given by the user (--gi-used)", date=date))
    if queue_depth is None:
        table["queue_depth"] = (float(DEFAULT_QUEUE_DEPTH), Figure(assumption=(
            "a trace of issues has no completions to tell the queue depth; 8, a virtio-blk boot "
            "with readahead: set it here")))
    else:
        table["queue_depth"] = (float(queue_depth), Figure(source="given by the user", date=date))
    order = ("host_iops", "boot_window", "boot_ios", "read_fraction", "gi_size", "gi_used", "boot_write_bytes",
             "boot_write_extents", "boot_write_span", "boot_read_span", "read_io_size", "queue_depth",
             "boot_write_regions")
    description = f"derived from the boot trace {source_label} ({len(figures)} VMs)"
    lines = [f"# A fleet derived by clonefleet presets derive from {source_label}.", "[preset]", 'kind = "fleet"',
             f"name = {toml_string(name)}", f"description = {toml_string(description)}"]
    if regions:
        table["boot_write_regions"] = (float(len(regions)), Figure(
            source=f"{derived}: {how['boot_write_regions'].format(vms=len(figures))}", date=date))
    for key in order:
        if key not in table:
            continue
        value, fig = table[key]
        if key == "boot_write_regions":
            written = "[" + ", ".join("[" + ", ".join(toml_number(x) for x in row) + "]" for row in regions) + "]"
        elif key == "boot_window":
            written = toml_string(f"{value!r} s")
        else:
            written = toml_number(value)
        lines += ["", f"[{key}]", f"value = {written}"]
        lines += [f"{k} = {toml_string(v)}" for k, v in
                  (("source", fig.source), ("date", fig.date), ("assumption", fig.assumption)) if v]
    text = "\n".join(lines) + "\n"
    fleet = build_fleet(f"fleet derived from '{source_label}'", tomllib.loads(text))
    return DerivedFleet(fleet, text, len(figures), timed)


__all__ = ["BLOCK_BYTES", "REGION_GAP_BYTES", "DerivedFleet", "allocated_bytes_from_trace", "covered_bytes",
           "derive_fleet", "merged_runs", "toml_number", "toml_string", "trace_sha256", "vm_figures", "write_regions",
           "write_runs"]
