"""How much capacity one clone allocates with its writes (C of Eq. 3).

Writes allocate whole units of the storage function's granularity u: a
copy-on-write unit, a thin-provisioning page, a qcow2 cluster, an RBD object, a
filesystem block. A boot writes W bytes in n extents of mean size e = W/n, placed
at random inside a span of R bytes that holds U = ceil(R/u) units. An extent of
size e touches on average 1 + e/u units, so the boot makes n*(1 + e/u) unit
touches, each landing on one of the U units at random. The expected number of
distinct units touched (occupancy) gives

    C(u) = u * U * (1 - (1 - 1/U) ** (n*(1 + e/u)))
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def allocation_units(span_bytes: npt.ArrayLike, unit_bytes: npt.ArrayLike) -> FloatArray:
    """U = ceil(R/u): the units of granularity u inside a write span of R bytes."""
    return np.ceil(np.divide(span_bytes, unit_bytes, dtype=float))


def allocated_bytes_per_clone(
    write_bytes: npt.ArrayLike,
    write_extents: npt.ArrayLike,
    span_bytes: npt.ArrayLike,
    unit_bytes: npt.ArrayLike,
) -> FloatArray:
    """C(u): expected bytes one clone allocates for its boot writes [bytes].

    ``write_bytes`` W, ``write_extents`` n, ``span_bytes`` R, ``unit_bytes`` u.
    Never more than the span rounded up to whole units, never less than W's
    units when the writes fit in one unit; zero when nothing is written.
    """
    w = np.asarray(write_bytes, float)
    n = np.asarray(write_extents, float)
    u = np.asarray(unit_bytes, float)
    units = allocation_units(span_bytes, u)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_extent = np.where(n > 0, w / np.where(n > 0, n, 1.0), 0.0)
    touches = n * (1.0 + mean_extent / u)
    # (1 - 1/U)**k computed as exp(k*log1p(-1/U)) stays accurate for large U.
    safe_units = np.maximum(units, 2.0)  # U = 1 is handled by the where: one unit, fully touched
    untouched = np.where(units > 1, np.exp(touches * np.log1p(-1.0 / safe_units)), 0.0)
    # At least one touch lands somewhere, so at least one unit; exp and log1p round a hair below it
    # for a single touch in a large span (C = 4095.99999998 for u = 4 KiB), so hold the bound exactly.
    c = np.clip(u * units * (1.0 - untouched), u, u * np.maximum(units, 1.0))
    return np.where((w > 0) & (n > 0), c, 0.0)


def table_bytes_per_clone(
    write_bytes: npt.ArrayLike,
    write_extents: npt.ArrayLike,
    span_bytes: npt.ArrayLike,
    table_coverage_bytes: npt.ArrayLike,
    table_bytes: npt.ArrayLike,
) -> FloatArray:
    """Metadata tables one clone allocates for its writes [bytes].

    A format that maps its data through tables (qcow2: one L2 table of one cluster
    maps cluster_size/8 clusters, 512 MiB with 64 KiB clusters) allocates a table the
    first time a write lands in the space it maps. The count of tables touched is the
    occupancy of C(u) with u = the table's coverage. Zero when the function has none.
    """
    coverage = np.asarray(table_coverage_bytes, dtype=np.float64)
    size = np.asarray(table_bytes, dtype=np.float64)
    has_tables = (coverage > 0) & (size > 0)
    safe_coverage = np.where(has_tables, coverage, 1.0)
    tables = allocated_bytes_per_clone(write_bytes, write_extents, span_bytes, safe_coverage) / safe_coverage
    result: FloatArray = np.where(has_tables, tables * size, 0.0)
    return result
