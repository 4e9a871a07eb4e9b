"""A boot's write footprint as concrete extents, drawn to match the allocation model.

The occupancy model (:func:`clonefleet.model.allocated_bytes_per_clone`) assumes n
extents of mean size e = W/n placed at random inside a span of R bytes. This draws
such extents, so the simulator, the real backends and the tests all write the same
kind of footprint. Extents are aligned to ``align_bytes`` (4 KiB: the smallest
block of every backend) and their sizes are multiples of it with mean e.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from clonefleet.errors import UsageError

IntArray = npt.NDArray[np.int64]

DEFAULT_ALIGN_BYTES = 4096


def write_extents(
    write_bytes: float,
    write_extents: float,
    span_bytes: float,
    rng: np.random.Generator,
    span_start_bytes: int = 0,
    align_bytes: int = DEFAULT_ALIGN_BYTES,
) -> tuple[IntArray, IntArray]:
    """Draw (offsets, lengths) in bytes of one boot's writes.

    ``write_bytes`` W and ``write_extents`` n give the mean extent e = W/n; each
    length is a multiple of ``align_bytes`` (floor or ceil of e, mixed so the mean
    is e); each offset is uniform over the aligned positions where the extent fits
    in ``[span_start_bytes, span_start_bytes + span_bytes)``. Extents may overlap,
    as real rewrites do.
    """
    n = int(round(write_extents))
    if n <= 0 or write_bytes <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if span_bytes < align_bytes:
        raise UsageError(f"boot_write_span = {span_bytes:g} bytes: at least {align_bytes} bytes")
    mean_blocks = max(float(write_bytes) / n / align_bytes, 1.0)
    lo = int(np.floor(mean_blocks))
    frac = mean_blocks - lo
    blocks = lo + (rng.random(n) < frac).astype(np.int64)
    span_blocks = int(span_bytes // align_bytes)
    blocks = np.minimum(blocks, span_blocks)
    starts = (rng.random(n) * (span_blocks - blocks + 1)).astype(np.int64)
    offsets = span_start_bytes + starts * align_bytes
    return offsets.astype(np.int64), (blocks * align_bytes).astype(np.int64)
