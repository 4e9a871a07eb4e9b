"""A real boot replayed by a whole fleet: each VM boots as a captured VM did, with its own jitter.

A captured trace holds one boot (or a few); a storm needs thousands. :func:`replay_boots` gives
VM ``i`` the IOs of the trace's VM ``i mod k`` (k VMs in the trace), and two kinds of jitter:

- **start**: each VM powers on at its boot's own start plus a uniform draw in ``[0, start_spread_s)``
  (VMs never power on at the same microsecond);
- **order** (optional): the boot is cut into phases of ``order_window_s`` seconds (by the time since
  the VM's first IO); within each phase the VM issues the phase's IOs in its own random order, at the
  phase's original issue times. A boot reads the same files in roughly the same phases, but not in
  the same order twice (readahead, parallel units); across phases the order is kept.

Times are kept (open loop: every IO at its slot's time plus the VM's start) or dropped (closed loop:
each VM issues in order, keeping its queue depth, from its start).
"""

from __future__ import annotations

import numpy as np

from clonefleet.errors import UsageError
from clonefleet.sim.trace import Trace


def replay_boots(trace: Trace, vms: int, rng: np.random.Generator, *, start_spread_s: float = 0.0,
                 order_window_s: float = 0.0, closed: bool = False) -> Trace:
    """The trace of ``vms`` VMs each replaying one of ``trace``'s boots (module docstring)."""
    if trace.vms < 1 or trace.ios == 0:
        raise UsageError(f"trace '{trace.source}': no boot to replay (no IOs)")
    if not (np.isfinite(start_spread_s) and start_spread_s >= 0):
        raise UsageError(f"--start-spread = {start_spread_s!r}: a time of 0 s or more")
    if not (np.isfinite(order_window_s) and order_window_s >= 0):
        raise UsageError(f"--order-jitter = {order_window_s!r}: a phase length of 0 s or more")
    timed = len(trace.issue_s) > 0
    if order_window_s > 0 and not timed:
        raise UsageError(f"--order-jitter needs a trace with times to cut the boot into phases; "
                         f"'{trace.source}' has none")
    source_vm = np.arange(vms) % trace.vms
    counts = np.diff(trace.vm_start)[source_vm]
    vm_start = np.zeros(vms + 1, np.int64)
    np.cumsum(counts, out=vm_start[1:])
    total = int(vm_start[-1])
    vm_of = np.repeat(np.arange(vms), counts)
    idx = np.repeat(trace.vm_start[:-1][source_vm], counts) + (np.arange(total) - np.repeat(vm_start[:-1], counts))
    op, offset, length = trace.op[idx], trace.offset_bytes[idx], trace.length_bytes[idx]
    starts = trace.start_s[source_vm] + (rng.uniform(0.0, start_spread_s, vms) if start_spread_s > 0 else 0.0)
    issue = np.zeros(0)
    if timed:
        since_boot = trace.issue_s[idx] - np.repeat(trace.start_s[source_vm], counts)
        if order_window_s > 0:
            phase = np.floor(since_boot / order_window_s).astype(np.int64)
            slots = np.lexsort((np.arange(total), phase, vm_of))  # each (VM, phase) group, in time order
            shuffled = np.lexsort((rng.random(total), phase, vm_of))  # the same groups, each in a random order
            moved = np.empty(total, np.int64)
            moved[slots] = shuffled  # slot slots[j] now carries the IO that was at shuffled[j]
            op, offset, length = op[moved], offset[moved], length[moved]
        if not closed:
            issue = since_boot + np.repeat(starts, counts)
    jitter = (f", start spread {start_spread_s:g} s" if start_spread_s > 0 else "") + \
             (f", order shuffled within {order_window_s:g} s phases" if order_window_s > 0 else "")
    which = "its boot" if trace.vms == 1 else f"one of its {trace.vms:,} boots"
    return Trace(vm_start, op, offset, length, issue, np.asarray(starts, float) + np.zeros(vms), None,
                 f"{trace.source} (each of {vms:,} VMs replays {which}{jitter})")
