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


#: Write regions start and end on these boundaries (the 4 KiB block every backend writes) [bytes].
REGION_ALIGN_BYTES = 4096


def allocated_bytes_in_regions(regions: npt.ArrayLike, unit_bytes: npt.ArrayLike) -> FloatArray:
    """C(u) for boot writes that fall into separate regions of the disk [bytes].

    ``regions``: rows of (start, end, bytes written, extents), sorted and apart, as
    :func:`clonefleet.presets.derive.write_regions` finds them in a trace. A real boot does not
    spread its writes over one span: it writes filesystem metadata near the start, new files'
    data in one place, its journal in another. So, for each unit u:

    - regions less than u apart may share a unit: they count as one (start of the first, end of
      the last, their bytes and extents summed);
    - in each region, the occupancy of :func:`allocated_bytes_per_clone` with the region's own
      W_i, n_i, and its span R_i = end - start; a region starts at a 4 KiB block boundary
      anywhere relative to the unit boundaries, so its span covers ``R_i/u + 1 - b/u`` units on
      average (b = min(4 KiB, u); exact for whole blocks), not ``ceil(R_i/u)``;
    - each region allocates at least one unit (a share of one when it holds a mean of fewer than one
      extent per VM) and at least the distinct bytes written in it (W_i: what the region's writes
      hold, which random touches may under-cover when one long run fills the region); C is the sum
      over the regions.
    """
    table = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
    units = np.asarray(unit_bytes, dtype=np.float64)
    if table.shape[0] == 0:
        return np.zeros_like(units)
    out = np.empty(units.size)
    for i, u in enumerate(units.ravel()):
        start, end, w, n = table.T
        first = np.r_[True, start[1:] - end[:-1] >= u]
        at = np.flatnonzero(first)
        span = np.maximum.reduceat(end, at) - start[at]
        w_sum, n_sum = np.add.reduceat(w, at), np.add.reduceat(n, at)
        # Units the span covers on average when it starts at a block boundary anywhere relative to the
        # units (exact for spans of whole blocks): R/u + 1 - b/u, b = min(block, u).
        covered = span / u + 1.0 - min(REGION_ALIGN_BYTES, u) / u
        touches = n_sum * (1.0 + w_sum / np.maximum(n_sum, 1.0) / u)
        with np.errstate(divide="ignore"):  # covered = 1: log1p(-1) = -inf, every unit touched
            c = u * covered * (1.0 - np.exp(touches * np.log1p(-1.0 / covered)))
        # At least one unit where a region holds at least one extent; a region that holds a mean of
        # fewer (VMs writing in different places) allocates that share of one.
        # and never more units than touches (a mean below one touch is a share of one unit).
        # Never less than the distinct bytes the region's writes hold (a long run fills its units, which
        # random touches would not all cover).
        low = np.maximum(u * np.minimum(n_sum, 1.0), w_sum)
        out[i] = float(np.sum(np.clip(c, low, u * np.minimum(np.ceil(covered), touches))))
    return out.reshape(units.shape)


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
