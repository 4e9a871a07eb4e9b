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

#: Bottleneck codes returned by :func:`operable_vms_bottleneck`.
BOTTLENECK_PROCESSORS = 0
BOTTLENECK_DISKS = 1


def array_performance_iops(
    processor_iops: ArrayLike, disk_iops: ArrayLike, disks: ArrayLike
) -> FloatArray:
    """Eq. 1: the array's IO performance ``Y = min(N, M*X)`` [IOPS]."""
    return np.minimum(np.asarray(processor_iops, float), np.multiply(disk_iops, disks, dtype=float))


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
    a = np.asarray(host_iops, float)
    r = np.asarray(read_fraction, float)
    return a * (r * (1.0 - np.asarray(cache_hit_private, float)) + (1.0 - r) * raid_write_penalty)


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
    a = np.asarray(host_iops, float)
    r = np.asarray(read_fraction, float)
    write_cost = np.add(raid_write_penalty, cow_read_fraction, dtype=float)
    return a * (r * (1.0 - np.asarray(cache_hit_shared, float)) + (1.0 - r) * write_cost)


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
    a = np.asarray(host_iops, float)
    r = np.asarray(read_fraction, float)
    return a * (r * (1.0 - np.asarray(cache_hit_shared, float)) + (1.0 - r) * np.asarray(cow_read_fraction, float))


def operable_vms(
    processor_iops: ArrayLike, disk_iops: ArrayLike, disks: ArrayLike,
    host_iops: ArrayLike, backend_iops: ArrayLike,
) -> FloatArray:
    """Eq. 2: the largest number of VMs the array carries, ``T_max = min(N/A, M*X/B)``.

    Returned as a real number; the operable count is its floor.
    """
    by_processors = np.divide(processor_iops, host_iops, dtype=float)
    by_disks = np.multiply(disk_iops, disks, dtype=float) / np.asarray(backend_iops, float)
    return np.minimum(by_processors, by_disks)


def operable_vms_bottleneck(
    processor_iops: ArrayLike, disk_iops: ArrayLike, disks: ArrayLike,
    host_iops: ArrayLike, backend_iops: ArrayLike,
) -> npt.NDArray[np.int8]:
    """Which term of Eq. 2 is smaller: 0 = array processors (N/A), 1 = array disks (M*X/B)."""
    by_processors = np.divide(processor_iops, host_iops, dtype=float)
    by_disks = np.multiply(disk_iops, disks, dtype=float) / np.asarray(backend_iops, float)
    return np.where(by_disks < by_processors, BOTTLENECK_DISKS, BOTTLENECK_PROCESSORS).astype(np.int8)


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
    by_processor = np.divide(volume_iops_limit, host_iops, dtype=float)
    by_disks = np.multiply(disk_iops, gi_disks, dtype=float) / np.asarray(gi_backend_iops_per_clone, float)
    return np.floor(np.minimum(np.minimum(by_processor, by_disks), max_clones_per_gi))


def golden_images_needed(vms: ArrayLike, clones_per_gi_: ArrayLike) -> FloatArray:
    """The number of GIs g for T snapshot clones: ``g = ceil(T/k)``, at least 1.

    Infinite when one GI carries no clone at all (k = 0): no number of GIs helps.
    """
    t = np.asarray(vms, float)
    k = np.asarray(clones_per_gi_, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(k > 0, np.ceil(t / np.where(k > 0, k, 1.0)), np.inf)
    return np.maximum(g, 1.0)


def consumed_bytes(
    golden_images: ArrayLike, gi_bytes_each: ArrayLike, per_clone_bytes: ArrayLike, vms: ArrayLike
) -> FloatArray:
    """Eq. 3: total consumed capacity ``S = D + C*T`` with ``D = g*G_used`` [bytes]."""
    d = np.multiply(golden_images, gi_bytes_each, dtype=float)
    return d + np.multiply(per_clone_bytes, vms, dtype=float)
