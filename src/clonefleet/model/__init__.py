"""The paper's analytic model as pure, vectorised functions.

Every function takes numbers or numpy arrays (broadcast together) and returns the
same. Symbols follow the paper's Table 1; units are in the argument names. See
``docs/background.md`` for the glossary.
"""

from clonefleet.model.allocation import (
    allocated_bytes_in_regions,
    allocated_bytes_per_clone,
    allocation_units,
    table_bytes_per_clone,
)
from clonefleet.model.equations import (
    array_performance_iops,
    backend_iops_private,
    backend_iops_snapshot,
    clones_per_gi,
    consumed_bytes,
    gi_backend_iops,
    golden_images_needed,
    operable_vms,
)

__all__ = [
    "allocated_bytes_in_regions",
    "allocated_bytes_per_clone",
    "allocation_units",
    "array_performance_iops",
    "backend_iops_private",
    "backend_iops_snapshot",
    "clones_per_gi",
    "consumed_bytes",
    "gi_backend_iops",
    "golden_images_needed",
    "operable_vms",
    "table_bytes_per_clone",
]
