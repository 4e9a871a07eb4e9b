"""The reference engine: the same array model in SimPy, written to be obviously right.

Each IO is a SimPy process that walks its stages (volume, processor, cache,
disks) holding one ``simpy.Resource`` at a time; a write's copy-on-write reads
(on GI disks), then its p RAID writes, are parallel sub-processes. It is slow and
exists to hold :mod:`clonefleet.sim.fast` equal, IO for IO.

Tie-break rule (the same as the fast engine's): among events at the same time,
the IO with the lower id (lower VM id, then lower IO index) acts first. SimPy
orders its event queue by (time, priority, insertion); every step where an IO
arrives somewhere is a :class:`_At` event with priority ``2 + IO id``, which
sorts after SimPy's own URGENT (0) and NORMAL (1) events at that time and
among themselves by IO id. Everything an IO's arrival sets off at that instant
(granting a free server, starting sub-processes) happens in URGENT events
before the next IO's arrival.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy
from simpy.events import Event, EventPriority

from clonefleet.sim.arraymodel import Network
from clonefleet.sim.fast import UTIL_BINS, RawRun, reduced_run

Steps = Generator[Event, Any, None]


class _At(Event):
    """An event ``delay`` seconds from now that sorts among same-time events by IO id."""

    def __init__(self, env: simpy.Environment, delay: float, io: int) -> None:
        super().__init__(env)
        self._ok = True
        self._value = None
        env.schedule(self, priority=EventPriority(2 + io), delay=delay)


class _Lru:
    """A least-recently-used set of cache keys."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.keys: OrderedDict[int, None] = OrderedDict()

    def access(self, key: int) -> bool:
        if key in self.keys:
            self.keys.move_to_end(key)
            return True
        if self.slots > 0:
            self.keys[key] = None
            if len(self.keys) > self.slots:
                self.keys.popitem(last=False)
        return False


class _Model:
    def __init__(self, net: Network) -> None:
        self.net = net
        self.env = simpy.Environment()
        env = self.env
        self.volumes = [simpy.Resource(env, 1) for _ in range(net.volumes)]
        self.processors = [simpy.Resource(env, 1) for _ in range(net.processors)]
        self.disks = [simpy.Resource(env, 1) for _ in range(net.disks)]
        self.busy = [np.zeros(net.volumes), np.zeros(net.processors), np.zeros(net.disks)]
        self.bins = np.zeros((4, UTIL_BINS))
        self.cache = _Lru(net.cache_slots)
        n = len(net.is_write)
        self.completion = np.zeros(n)
        self.latency = np.zeros(n, np.float32)
        self.next_io = net.vm_start[:-1].copy()
        self.reads = 0
        self.hits = 0
        self.per_io = net.service_s.shape[1] == n

    def service(self, stage: int, io: int) -> float:
        if self.per_io:
            return float(self.net.service_s[stage, io])
        return (self.net.volume_s, self.net.processor_s, self.net.disk_s)[stage]

    def book(self, cls: int, start: float, service: float) -> None:
        """Add the busy interval [start, start + service) to the utilisation bins."""
        width, nb = self.net.util_bin_s, self.bins.shape[1]
        end = start + service
        b = min(int(start / width), nb - 1)
        lo = start
        while lo < end and b < nb:
            hi = (b + 1) * width
            if hi > end or b == nb - 1:
                hi = end
            self.bins[cls, b] += hi - lo
            lo = hi
            b += 1

    def serve(self, servers: list[simpy.Resource], busy: int, server: int, cls: int, io: int,
              service: float) -> Steps:
        """Queue at one FIFO server, hold it for ``service`` seconds."""
        with servers[server].request() as req:
            yield req
            start = self.env.now
            yield _At(self.env, service, io)
            self.busy[busy][server] += service
            self.book(cls, start, service)

    def io(self, i: int, vm: int, delay: float) -> Steps:
        net, env = self.net, self.env
        yield _At(env, delay, i)
        issued = env.now
        volume = int(net.vm_volume[vm])
        yield from self.serve(self.volumes, 0, volume, 0, i, self.service(0, i))
        yield from self.serve(self.processors, 1, int(net.volume_processor[volume]), 1, i, self.service(1, i))
        hit = self.cache.access(int(net.key[i]))
        disk_s = self.service(2, i)
        if net.is_write[i] == 0:
            self.reads += 1
            if hit:
                self.hits += 1
            else:
                d = int(net.disk[i])
                yield from self.serve(self.disks, 2, d, 2 if d < net.pool_disks else 3, i, disk_s)
        else:
            cows = [int(d) for d in net.cow_disk[:, i] if d >= 0] if net.cow_disk.shape[1] else []
            if cows:  # copy-on-write reads, in parallel; the writes start when the last is done
                yield env.all_of([env.process(self.serve(self.disks, 2, d, 3, i, disk_s)) for d in cows])
                yield _At(env, 0.0, i)  # back in IO-id order among the events of this instant
            writes = [env.process(self.serve(self.disks, 2, (int(net.disk[i]) + k) % net.pool_disks, 2, i,
                                             disk_s)) for k in range(net.write_disks)]
            yield env.all_of(writes)
            yield _At(env, 0.0, i)  # back in IO-id order among the events of this instant
        self.completion[i] = env.now
        self.latency[i] = env.now - issued
        if net.closed and self.next_io[vm] < net.vm_start[vm + 1]:
            nxt = int(self.next_io[vm])
            self.next_io[vm] += 1
            env.process(self.io(nxt, vm, 0.0))

    def run(self) -> None:
        net = self.net
        for vm in range(len(net.vm_start) - 1):
            first, end = int(net.vm_start[vm]), int(net.vm_start[vm + 1])
            if net.closed:
                last = min(end, first + net.queue_depth)
                for i in range(first, last):
                    self.env.process(self.io(i, vm, float(net.start_s[vm])))
                self.next_io[vm] = last
            else:
                for i in range(first, end):
                    self.env.process(self.io(i, vm, float(net.issue_s[i])))
        self.env.run()


def run_reference(net: Network) -> RawRun:
    """Run the SimPy model on a network placed ahead (``compile_network(place=True)``)."""
    if net.new_units is None:
        raise ValueError("the reference engine runs a network placed ahead (compile_network(place=True))")
    t0 = time.perf_counter()
    model = _Model(net)
    model.run()
    bv, bp, bd = model.busy
    return reduced_run(net, model.completion, model.latency, net.new_units, (bv, bp, bd, model.bins), model.reads,
                       model.hits, "reference", time.perf_counter() - t0)
