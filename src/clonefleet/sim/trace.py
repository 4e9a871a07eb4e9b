"""Boot IO traces: one flat, VM-ordered table of IOs, and a synthetic generator.

A :class:`Trace` holds every IO of every VM as parallel numpy arrays, grouped by
VM (VM 0's IOs first, in issue order, then VM 1's...): ``vm_start[v]`` is the
index of VM v's first IO. Offsets and lengths are bytes in the GI's virtual
address space (the clone sees the GI's addresses). ``issue_s`` holds open-loop
issue times; a closed-loop trace leaves it empty (the engine issues IOs as
earlier ones complete).

The synthetic generator draws a boot from a fleet preset, per VM:

- ``boot_ios`` IOs, a share ``read_fraction`` of them reads, the rest writes,
  interleaved at random;
- reads walk the boot's read span (``boot_read_span``, the files a boot reads)
  in runs of sequential IOs (a file), the runs in random order. All VMs read
  the same runs, as clones of one OS do; the order differs per VM. A share
  ``reread_fraction`` of reads re-reads one of the VM's recent reads (the data
  a guest reads twice, which the array's cache can serve);
- writes are the boot's write extents, drawn per VM by
  :func:`clonefleet.model.footprint.write_extents` (so C from the trace follows
  the occupancy model), each extent cut into IOs of about ``W / write IOs``;
- read sizes are multiples of 4 KiB with mean ``read_io_size``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clonefleet.errors import UsageError
from clonefleet.model.footprint import DEFAULT_ALIGN_BYTES, write_extents
from clonefleet.presets import FleetPreset
from clonefleet.progress import Progress, no_progress
from clonefleet.units import format_bytes

IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]
Int8Array = npt.NDArray[np.int8]
FloatArray = npt.NDArray[np.float64]

READ: int = 0
WRITE: int = 1

#: Sequential reads per run (one file) of the synthetic read pattern.
DEFAULT_RUN_IOS = 8
#: Share of reads that re-read one of the VM's recent reads.
DEFAULT_REREAD_FRACTION = 0.30
#: How far back (in reads) a re-read may reach.
REREAD_WINDOW_IOS = 256
#: The write span starts on a multiple of this (a multiple of 4 MiB objects and 42 MiB pages).
SPAN_ALIGN_BYTES = 84 * 2**20


class Arrivals(enum.StrEnum):
    """How a VM issues its IOs."""

    OPEN = "open"  # at given times (each VM at its rate), whatever the array does
    CLOSED = "closed"  # q IOs outstanding; the next one when one completes


#: Peak memory of a whole run (trace, network, engine, summary) per IO, measured with the fast engine
#: (maximum RSS of `clonefleet simulate` on 300 desktop-win7 VMs: 67 bytes per IO open loop, 43
#: closed; the 62 M-IO storm 44-48), with some room; plus the interpreter and its libraries.
PEAK_BYTES_PER_IO = {Arrivals.OPEN: 72, Arrivals.CLOSED: 52}
BASE_BYTES = 256 * 2**20


def peak_memory_bytes(ios: int, arrivals: Arrivals) -> int:
    """About how much memory simulating ``ios`` IOs takes at its peak [bytes]."""
    return BASE_BYTES + ios * PEAK_BYTES_PER_IO[Arrivals(arrivals)]


#: A closed-loop storm drawn packed for one run (TraceDraw.packed, the event loop): 7 bytes per IO, with room.
PACKED_BYTES_PER_IO = 8
#: What the packed storm holds whatever its IOs: the cache (48-96 bytes per slot of the largest presets'
#: cache, 32 GiB in 4 KiB blocks, when it hashes its keys), the latency sketch, the slots and the calendar.
PACKED_BASE_BYTES = BASE_BYTES + 768 * 2**20
#: A run keeps every IO's latency (4 bytes per IO) for exact percentiles while they take at most this much
#: memory; above it, the percentiles come from the sketch (clonefleet.sim.quantiles).
EXACT_LATENCY_BYTES = 1 << 30
#: A closed storm numbers its IOs' cache keys ahead while that takes at most this much memory: a key per IO
#: (4 bytes) and the cache's table indexed by key (8 bytes per key, at most one key per IO). The cache then
#: finds a VM's keys side by side (the 1000-desktop thin storm, 62 M IOs: 1.9x faster than hashing them).
DENSE_KEYS_BYTES = 3 << 30
DENSE_BYTES_PER_IO = 12


def keeps_latencies(ios: int) -> bool:
    """A run of ``ios`` IOs keeps every latency (exact percentiles), or only the sketch."""
    return 4 * ios <= EXACT_LATENCY_BYTES


def numbers_keys_ahead(ios: int, cache_slots: int) -> bool:
    """A closed storm of ``ios`` IOs numbers its cache keys ahead: when it has a cache, and either the
    cache holds every key (a set indexed by key) or the keys fit in DENSE_KEYS_BYTES."""
    return cache_slots > 0 and (cache_slots >= ios or DENSE_BYTES_PER_IO * ios <= DENSE_KEYS_BYTES)


def packed_memory_bytes(ios: int, cache_slots: int) -> int:
    """About how much memory a closed-loop storm of ``ios`` IOs drawn packed takes at its peak [bytes]:
    the packed IOs, their dense keys and the cache's table by key when it numbers them, their latencies
    while it keeps them."""
    per_io = PACKED_BYTES_PER_IO + (DENSE_BYTES_PER_IO if numbers_keys_ahead(ios, cache_slots) else 0) \
        + (4 if keeps_latencies(ios) else 0)
    return PACKED_BASE_BYTES + ios * per_io


def available_memory_bytes() -> int:
    """Memory the kernel can give without swapping (MemAvailable) [bytes]; 0 when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def check_fits_in_memory(vms: int, ios_per_vm: int, arrivals: Arrivals, packed_cache_slots: int | None = None) -> None:
    """Refuse, before drawing anything, a storm this machine cannot hold in memory (``packed_cache_slots``:
    a closed storm drawn packed, on a cache of that many slots)."""
    ios = vms * ios_per_vm
    need = peak_memory_bytes(ios, arrivals) if packed_cache_slots is None else packed_memory_bytes(ios,
                                                                                                  packed_cache_slots)
    have = available_memory_bytes()
    if have and need > have:
        raise UsageError(f"{vms:,} VMs x {ios_per_vm:,} IOs need about {format_bytes(need)} of memory to "
                         f"simulate; {format_bytes(have)} is available: fewer VMs or IOs per VM (--ios-per-vm)")


@dataclass(frozen=True, eq=False)
class Trace:
    """Every IO of every VM, grouped by VM in issue order. Bytes and seconds.

    ``vm_start`` has one entry per VM plus one (CSR offsets); ``op`` is
    :data:`READ` or :data:`WRITE`; ``issue_s`` is empty for a closed-loop trace; ``start_s`` is each VM's power-on time
    (a closed-loop VM issues its first IOs then).
    ``seed`` is the generator seed (None for a trace read from a file).
    """

    vm_start: IntArray
    op: Int8Array
    offset_bytes: IntArray
    length_bytes: Int32Array
    issue_s: FloatArray
    start_s: FloatArray
    seed: int | None = None
    source: str = "synthetic"

    @property
    def vms(self) -> int:
        return int(len(self.vm_start) - 1)

    @property
    def ios(self) -> int:
        return int(len(self.op))

    @property
    def arrivals(self) -> Arrivals:
        return Arrivals.OPEN if len(self.issue_s) else Arrivals.CLOSED

    def vm_slice(self, vm: int) -> slice:
        return slice(int(self.vm_start[vm]), int(self.vm_start[vm + 1]))

    def first_vms(self, vms: int) -> Trace:
        """The trace of VMs 0..vms-1 only (views, no copy)."""
        end = int(self.vm_start[vms])
        return Trace(self.vm_start[: vms + 1], self.op[:end], self.offset_bytes[:end], self.length_bytes[:end],
                     self.issue_s[:end], self.start_s[:vms], self.seed, self.source)


@dataclass(frozen=True, eq=False)
class IoTable:
    """The IOs of a trace as the engines read them: grouped by VM (CSR ``vm_start``), each an op, an
    offset and a length in units of ``scale_bytes``: 1 for a :class:`Trace`'s own arrays; a synthetic
    trace drawn for one storm (:meth:`TraceDraw.packed`) keeps them in 4 KiB units, 7 bytes per IO
    instead of 13."""

    vm_start: IntArray
    op: Int8Array
    offset: npt.NDArray[Any]
    length: npt.NDArray[Any]
    scale_bytes: int

    @staticmethod
    def of(trace: Trace) -> IoTable:
        return IoTable(trace.vm_start, trace.op, trace.offset_bytes, trace.length_bytes, 1)

    @property
    def ios(self) -> int:
        return len(self.op)


#: VMs drawn at a time into a packed table (their full-width arrays are the draw's only temporaries).
PACK_CHUNK_VMS = 64


def _read_template(fleet: FleetPreset, reads: int, rng: np.random.Generator,
                   align: int) -> tuple[IntArray, Int32Array]:
    """The fresh reads of one boot, in file order: offsets and lengths inside the read span."""
    mean_blocks = max(fleet.read_io_bytes / align, 1.0)
    sizes = (1 + rng.poisson(mean_blocks - 1.0, reads)).astype(np.int64) * align
    span = max(int(fleet.boot_read_span_bytes // align) * align, align)
    offsets = (np.cumsum(sizes) - sizes) % span
    sizes = np.minimum(sizes, span - offsets)
    return offsets.astype(np.int64), sizes.astype(np.int32)


def _write_ios(fleet: FleetPreset, write_ios: int, scale: float, rng: np.random.Generator,
               span_start: int, align: int) -> tuple[IntArray, Int32Array]:
    """One VM's write IOs: the boot's extents, each cut into IOs, extents in random order. A fleet that
    gives write regions (derived from a real boot) draws each region's extents inside that region."""
    if fleet.boot_write_regions:
        drawn = [write_extents(nbytes * scale, extents * scale, end - start, rng, start, align)
                 for start, end, nbytes, extents in fleet.boot_write_regions]
        offsets, lengths = np.concatenate([d[0] for d in drawn]), np.concatenate([d[1] for d in drawn])
    else:
        offsets, lengths = write_extents(fleet.boot_write_bytes * scale, fleet.boot_write_extents * scale,
                                         fleet.boot_write_span_bytes, rng, span_start, align)
    n = len(offsets)
    if n == 0 or write_ios == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int32)
    blocks = lengths // align
    # IOs per extent: proportional to its length, at least one, at most one per block.
    want = max(write_ios, n)
    share = np.maximum(1, np.floor(blocks * (want / blocks.sum())).astype(np.int64))
    share = np.minimum(share, blocks)
    short = want - int(share.sum())
    if short > 0:
        room = np.flatnonzero(share < blocks)
        if len(room):
            extra = rng.choice(room, size=min(short, len(room)), replace=False)
            share[extra] += 1
    order = rng.permutation(n)
    offsets, blocks, share = offsets[order], blocks[order], share[order]
    # Cut extent k of b blocks into s pieces of floor/ceil(b/s) blocks.
    piece = np.repeat(np.arange(n), share)
    j = np.arange(len(piece)) - np.repeat(np.cumsum(share) - share, share)
    s, b = share[piece], blocks[piece]
    start_block = (j * b) // s
    end_block = ((j + 1) * b) // s
    return (offsets[piece] + start_block * align).astype(np.int64), \
        ((end_block - start_block) * align).astype(np.int32)


@dataclass(frozen=True, eq=False)
class TraceDraw:
    """What every VM of a synthetic trace shares (the read template, the write span, one child
    generator per VM), so that any range of VMs can be drawn on its own: ``vms(a, b)`` is exactly
    VMs a..b-1 of the whole trace (each VM draws from its own child generator). A storm, or C per
    clone, can then be drawn a chunk of VMs at a time, in bounded memory, or on several machines."""

    fleet: FleetPreset
    arrivals: Arrivals
    ios: int
    scale: float
    write_n: int
    write_span_start: int
    reread_fraction: float
    fresh_off: IntArray
    fresh_len: Int32Array
    runs: IntArray
    run_len: IntArray
    start_spread_s: float
    align_bytes: int
    children: tuple[np.random.SeedSequence, ...]  # VM v draws from a fresh generator of children[v]
    bit_generator: type[np.random.BitGenerator]
    seed: int | None

    @property
    def total_vms(self) -> int:
        return len(self.children)

    def child(self, vm: int) -> np.random.Generator:
        """VM ``vm``'s generator, fresh (as ``rng.spawn`` made it): the same draws however often asked."""
        return np.random.Generator(self.bit_generator(self.children[vm]))

    def vms(self, first: int, end: int, progress: Progress = no_progress) -> Trace:
        """VMs ``first`` .. ``end - 1`` as a trace of their own (VM ``first`` is its VM 0)."""
        count = end - first
        # Filled in place (a VM has max(ios, its write IOs) IOs: ios but for tiny boots with many extents),
        # never a list of per-VM arrays concatenated at the end, which held the trace twice.
        size = count * self.ios
        timed = self.arrivals is Arrivals.OPEN
        op, off, ln = np.empty(size, np.int8), np.empty(size, np.int64), np.empty(size, np.int32)
        times = np.empty(size if timed else 0)
        vm_start = np.zeros(count + 1, np.int64)
        starts = np.zeros(count, np.float64)
        positions = np.arange(len(self.fresh_off))
        at = 0
        for k in range(count):
            progress("draw the trace", first + k, self.total_vms)
            o, f, n, starts[k], t = self._one(self.child(first + k), positions)
            if at + len(o) > len(op):  # grow: this VM and the rest at ios each
                size = at + len(o) + (count - k - 1) * self.ios
                op, off, ln = np.resize(op, size), np.resize(off, size), np.resize(ln, size)
                times = np.resize(times, size if timed else 0)
            op[at:at + len(o)], off[at:at + len(o)], ln[at:at + len(o)] = o, f, n
            if t is not None:
                times[at:at + len(o)] = t
            at += len(o)
            vm_start[k + 1] = at
        if at < len(op):  # fewer IOs than room (only after growing): the exact size
            op, off, ln, times = op[:at].copy(), off[:at].copy(), ln[:at].copy(), times[:at if timed else 0].copy()
        return Trace(vm_start=vm_start, op=op, offset_bytes=off, length_bytes=ln, issue_s=times, start_s=starts,
                     seed=self.seed)

    def packed(self, progress: Progress = no_progress) -> tuple[Trace, IoTable]:
        """Every VM, drawn PACK_CHUNK_VMS at a time, as a trace of ops and times only (no offsets, no
        lengths) and the IOs packed: offsets and lengths in units of ``align_bytes`` (uint32, and
        uint16 while every length fits), 7 bytes per IO. The same IOs as ``vms(0, total_vms)``."""
        count, align = self.total_vms, self.align_bytes
        size = count * self.ios
        op, off, ln = np.empty(size, np.int8), np.empty(size, np.uint32), np.empty(size, np.uint16)
        timed = self.arrivals is Arrivals.OPEN
        times = np.empty(size if timed else 0)
        vm_start = np.zeros(count + 1, np.int64)
        starts = np.zeros(count)
        for first in range(0, count, PACK_CHUNK_VMS):
            part = self.vms(first, min(first + PACK_CHUNK_VMS, count), progress)
            at, n = int(vm_start[first]), part.ios
            if at + n > len(op):  # more IOs than ios per VM (tiny boots with many extents): grow
                size = at + n + (count - first - part.vms) * self.ios
                op, off, ln = np.resize(op, size), np.resize(off, size), np.resize(ln, size)
                times = np.resize(times, size if timed else 0)
            o, n_bytes = part.offset_bytes, part.length_bytes
            if np.any(o % align) or np.any(n_bytes % align) or (n and o.max() // align > np.iinfo(np.uint32).max):
                raise ValueError(f"offsets and lengths must be multiples of {align} bytes, below {align} * 2**32")
            if n and n_bytes.max() // align > np.iinfo(ln.dtype).max:
                ln = ln.astype(np.uint32)
            op[at:at + n], off[at:at + n], ln[at:at + n] = part.op, o // align, n_bytes // align
            if timed:
                times[at:at + n] = part.issue_s
            vm_start[first + 1:first + part.vms + 1] = at + part.vm_start[1:]
            starts[first:first + part.vms] = part.start_s
        end = int(vm_start[-1])
        if end < len(op):
            op, off, ln, times = op[:end].copy(), off[:end].copy(), ln[:end].copy(), times[:end if timed else 0].copy()
        trace = Trace(vm_start, op, np.zeros(0, np.int64), np.zeros(0, np.int32), times, starts, self.seed)
        return trace, IoTable(vm_start, op, off, ln, align)

    def _one(self, rng: np.random.Generator, positions: IntArray) -> tuple[
            Int8Array, IntArray, Int32Array, float, FloatArray | None]:
        """One VM's boot: ops, offsets, lengths, power-on time, issue times (None for a closed loop)."""
        fleet, ios = self.fleet, self.ios
        start = rng.uniform(0.0, self.start_spread_s) if self.start_spread_s > 0 else 0.0
        w_off, w_len = _write_ios(fleet, self.write_n, self.scale, rng, self.write_span_start, self.align_bytes)
        n_w = len(w_off)
        n_r = max(ios - n_w, 0)
        # Fresh reads: the template's runs in a random order, the first n_r of them.
        run_order = rng.permutation(len(self.runs))
        lengths = self.run_len[run_order]
        # Each run's template positions, the runs in run_order: start of the run + offset in it.
        idx = np.repeat(self.runs[run_order] - (np.cumsum(lengths) - lengths), lengths) + positions
        idx = np.resize(idx, n_r)
        r_off, r_len = self.fresh_off[idx].copy(), self.fresh_len[idx].copy()
        # Re-reads: repeat one of the VM's recent reads.
        again = np.flatnonzero(rng.random(n_r) < self.reread_fraction)
        again = again[again > 0]
        back = np.minimum(again, 1 + (rng.random(len(again)) * REREAD_WINDOW_IOS).astype(np.int64))
        source = np.arange(n_r)
        source[again] = again - back
        while True:  # a re-read of a re-read reads what that one read: follow the chain
            deeper = source[source]
            if np.array_equal(deeper, source):
                break
            source = deeper
        r_off, r_len = r_off[source], r_len[source]
        op = np.zeros(n_r + n_w, np.int8)
        op[rng.choice(n_r + n_w, size=n_w, replace=False)] = WRITE
        write_at = np.flatnonzero(op)
        read_at = np.flatnonzero(op == READ)
        off = np.empty(n_r + n_w, np.int64)
        ln = np.empty(n_r + n_w, np.int32)
        off[read_at], ln[read_at] = r_off, r_len
        off[write_at], ln[write_at] = w_off, w_len
        times = None
        if self.arrivals is Arrivals.OPEN:
            times = start + np.cumsum(rng.exponential(1.0 / fleet.host_iops, len(op)))
        return op, off, ln, start, times


def trace_draw(
    fleet: FleetPreset,
    vms: int,
    rng: np.random.Generator,
    *,
    arrivals: Arrivals = Arrivals.CLOSED,
    ios_per_vm: int | None = None,
    reread_fraction: float = DEFAULT_REREAD_FRACTION,
    run_ios: int = DEFAULT_RUN_IOS,
    start_spread_s: float = 0.0,
    seed: int | None = None,
    align_bytes: int = DEFAULT_ALIGN_BYTES,
) -> TraceDraw:
    """Prepare drawing ``vms`` VMs of ``fleet`` (the arguments of :func:`generate_trace`), none drawn yet."""
    arrivals = Arrivals(arrivals)
    ios = int(round(fleet.boot_ios if ios_per_vm is None else ios_per_vm))
    scale = ios / fleet.boot_ios
    write_n = int(round(ios * (1.0 - fleet.read_fraction)))
    write_span_start = 0
    if fleet.boot_write_span_bytes + fleet.boot_read_span_bytes <= fleet.gi_used_bytes:
        # Writes land beyond the files the boot reads (pagefile, logs, hives), when they fit.
        # Start on a multiple of 84 MiB, so every allocation unit (4 KiB .. 42 MiB pages, 4 MiB
        # objects) starts there: the span holds ceil(R/u) units, as the model counts them.
        write_span_start = -(-int(fleet.boot_read_span_bytes) // SPAN_ALIGN_BYTES) * SPAN_ALIGN_BYTES
        if write_span_start + fleet.boot_write_span_bytes > fleet.gi_used_bytes:
            write_span_start = 0
    template_n = max(ios - write_n, 0)
    fresh_off, fresh_len = _read_template(fleet, max(template_n, 1), rng, align_bytes)
    runs = np.arange(0, len(fresh_off), max(run_ios, 1))
    run_len = np.diff(np.append(runs, len(fresh_off)))
    # One child generator per VM: VM v boots the same whatever the fleet size (a prefix property
    # the bisection on T relies on).
    seeds = rng.bit_generator.seed_seq
    if not isinstance(seeds, np.random.SeedSequence):
        raise TypeError("generate_trace needs a generator seeded by a SeedSequence (numpy.random.default_rng)")
    return TraceDraw(fleet, arrivals, ios, scale, write_n, write_span_start, reread_fraction, fresh_off, fresh_len,
                     runs, run_len, start_spread_s, align_bytes, tuple(seeds.spawn(vms)),
                     type(rng.bit_generator), seed)


def generate_trace(
    fleet: FleetPreset,
    vms: int,
    rng: np.random.Generator,
    *,
    arrivals: Arrivals = Arrivals.CLOSED,
    ios_per_vm: int | None = None,
    reread_fraction: float = DEFAULT_REREAD_FRACTION,
    run_ios: int = DEFAULT_RUN_IOS,
    start_spread_s: float = 0.0,
    seed: int | None = None,
    align_bytes: int = DEFAULT_ALIGN_BYTES,
    progress: Progress = no_progress,
) -> Trace:
    """Draw the boot IOs of ``vms`` VMs of ``fleet``.

    ``ios_per_vm`` overrides ``boot_ios``: a shorter boot with the same mix for
    quick runs, its write footprint (W and n) scaled by the same factor, R kept. Open-loop VMs issue at
    their rate A = ``host_iops`` as a Poisson stream; every VM starts at a time
    drawn uniformly in ``[0, start_spread_s]`` (0: all at once, the storm). Each VM draws
    from its own child of ``rng`` (``rng.spawn``), so the first k VMs of a larger fleet
    boot exactly as a fleet of k does (and :class:`TraceDraw` draws any range of VMs alone).
    ``progress`` hears ("draw the trace", VMs drawn, VMs).
    """
    arrivals = Arrivals(arrivals)
    check_fits_in_memory(vms, int(round(fleet.boot_ios if ios_per_vm is None else ios_per_vm)), arrivals)
    draw = trace_draw(fleet, vms, rng, arrivals=arrivals, ios_per_vm=ios_per_vm, reread_fraction=reread_fraction,
                      run_ios=run_ios, start_spread_s=start_spread_s, seed=seed, align_bytes=align_bytes)
    trace = draw.vms(0, vms, progress)
    progress("draw the trace", vms, vms)
    return trace
