"""Eq. 1-3 of the paper and the loads they need.

Symbols (paper, Table 1): A host IO load of one VM [IOPS]; B back-end (disk) load
of one VM [IOPS]; C capacity one clone allocates [bytes]; D capacity of all GIs
[bytes]; N processor performance [IOPS]; M one disk's performance [IOPS]; X number
of disks; T number of VMs; S consumed capacity [bytes]. The reading of the lost
formula images is the one in ``docs/background.md``.

All functions are pure and vectorised: scalars or numpy arrays in, broadcast
arrays (or numpy scalars) out.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]


def _f(value: ArrayLike) -> FloatArray:
    """Any number or array as a float64 array (no copy when it already is one)."""
    return np.asarray(value, dtype=np.float64)


def array_performance_iops(processor_iops: ArrayLike, disk_iops: ArrayLike, disks: ArrayLike) -> FloatArray:
    """Eq. 1: the array's IO performance ``Y = min(N, M*X)`` [IOPS].

    ``processor_iops`` N [IOPS] is what the array's processors (controllers) process,
    ``disk_iops`` M [IOPS] what one disk serves, ``disks`` X the disks in the pool.
    Whichever term is smaller bounds the array: its processors or its disks. Eq. 2
    divides the same two terms by a VM's loads (A on the processors, B on the disks).
    """
    by_disks: FloatArray = _f(disk_iops) * _f(disks)
    return np.minimum(_f(processor_iops), by_disks)


def backend_iops_private(
    host_iops: ArrayLike,
    read_fraction: ArrayLike,
    cache_hit_private: ArrayLike,
    raid_write_penalty: ArrayLike,
) -> FloatArray:
    """Back-end load B of a VM whose data is private (full copy, thin mirror) [IOPS].

    ``B = A*(r*(1-h_p) + (1-r)*p)``: read misses reach the disks once, every write
    costs the RAID write penalty p.
    """
    a = _f(host_iops)
    r = _f(read_fraction)
    return a * (r * (1.0 - _f(cache_hit_private)) + (1.0 - r) * _f(raid_write_penalty))


def backend_iops_snapshot(
    host_iops: ArrayLike,
    read_fraction: ArrayLike,
    cache_hit_shared: ArrayLike,
    raid_write_penalty: ArrayLike,
    cow_read_fraction: ArrayLike,
) -> FloatArray:
    """Back-end load B of a snapshot clone [IOPS].

    ``B = A*(r*(1-h_s) + (1-r)*(p+phi))``: reads of data shared by the clones of
    one GI hit the cache at h_s; a share phi of writes must first read the old GI
    data (copy-on-write).
    """
    a = _f(host_iops)
    r = _f(read_fraction)
    write_cost = _f(raid_write_penalty) + _f(cow_read_fraction)
    return a * (r * (1.0 - _f(cache_hit_shared)) + (1.0 - r) * write_cost)


def gi_backend_iops(
    host_iops: ArrayLike,
    read_fraction: ArrayLike,
    cache_hit_shared: ArrayLike,
    cow_read_fraction: ArrayLike,
) -> FloatArray:
    """Disk load one snapshot clone puts on its GI's volume [IOPS].

    ``B_gi = A*(r*(1-h_s) + (1-r)*phi)``: shared read misses plus copy-on-write
    reads land on the GI's parity group.
    """
    a = _f(host_iops)
    r = _f(read_fraction)
    phi = _f(cow_read_fraction)
    return a * (r * (1.0 - _f(cache_hit_shared)) + (1.0 - r) * phi)


def operable_vms(
    processor_iops: ArrayLike, disk_iops: ArrayLike, disks: ArrayLike,
    host_iops: ArrayLike, backend_iops: ArrayLike,
) -> FloatArray:
    """Eq. 2: the largest number of VMs the array carries, ``T_max = min(N/A, M*X/B)``.

    The array's performance of Eq. 1, ``Y = min(N, M*X)``, seen per VM: N/A VMs load the
    processors fully, M*X/B VMs the disks. Returned as a real number; the operable count
    is its floor.
    """
    by_processors: FloatArray = _f(processor_iops) / _f(host_iops)
    by_disks: FloatArray = _f(disk_iops) * _f(disks) / _f(backend_iops)
    return np.minimum(by_processors, by_disks)


def clones_per_gi(
    volume_iops_limit: ArrayLike,
    disk_iops: ArrayLike,
    gi_disks: ArrayLike,
    host_iops: ArrayLike,
    gi_backend_iops_per_clone: ArrayLike,
    max_clones_per_gi: ArrayLike = np.inf,
) -> FloatArray:
    """Clones one GI carries: ``k = floor(min(N_v/A, M*X_g/B_gi, k_max))``.

    ``N_v`` is what the GI volume's owning processor can process, ``M*X_g`` what
    its parity group of ``X_g`` disks can serve; ``k_max`` is the storage
    function's own limit of clones per source (e.g. snapshots per volume).
    """
    by_processor = _f(volume_iops_limit) / _f(host_iops)
    by_disks = _f(disk_iops) * _f(gi_disks) / _f(gi_backend_iops_per_clone)
    limit: FloatArray = np.minimum(np.minimum(by_processor, by_disks), _f(max_clones_per_gi))
    return np.floor(limit)


def golden_images_needed(vms: ArrayLike, clones_per_gi_: ArrayLike) -> FloatArray:
    """The number of GIs g for T snapshot clones: ``g = ceil(T/k)``, at least 1.

    Infinite when one GI carries no clone at all (k = 0): no number of GIs helps.
    """
    t = _f(vms)
    k = _f(clones_per_gi_)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(k > 0, np.ceil(t / np.where(k > 0, k, 1.0)), np.inf)
    return np.maximum(g, 1.0)


def consumed_bytes(
    golden_images: ArrayLike, gi_bytes_each: ArrayLike, per_clone_bytes: ArrayLike, vms: ArrayLike
) -> FloatArray:
    """Eq. 3: total consumed capacity ``S = D + C*T`` with ``D = g*G_used`` [bytes]."""
    d = _f(golden_images) * _f(gi_bytes_each)
    result: FloatArray = d + _f(per_clone_bytes) * _f(vms)
    return result
