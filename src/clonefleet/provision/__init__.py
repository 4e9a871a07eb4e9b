"""Real fleets on real storage: plan, provision, status, boot writes, capacity, destroy.

The public face of the package (what the CLI and library users call)::

    from clonefleet import provision
    m = provision.load_manifest("fleet.toml")
    provision.provision(m); provision.status(m); provision.apply_writes(m)
    provision.capacity(m); provision.refresh(m); provision.destroy(m)

Modules, by concept: ``manifest`` (the desired state), ``journal`` (what was done),
``fleetdir`` (the fleet directory, its lock, its private folder of temporaries),
``plan`` (what a run must do), ``apply`` (doing it), ``status``, ``destroy``,
``bootwrites`` (a boot's and the days' writes into the clones) and ``writes`` (writing extents),
``refresh`` (clones made anew from their GI),
``capacity`` (measured beside the model), ``gichoice`` (why a fleet gets its g),
``goldimage`` (building a small real GI).
Everything that touches storage itself is in :mod:`clonefleet.storage`; the
clones are made by :mod:`clonefleet.backends`.
"""

from clonefleet.provision.apply import ProvisionFailed, ProvisionResult, provision
from clonefleet.provision.bootwrites import WritesResult, apply_writes
from clonefleet.provision.capacity import CapacityReport, capacity
from clonefleet.provision.destroy import DestroyResult, destroy
from clonefleet.provision.fleetdir import FleetBusy, fleet_lock
from clonefleet.provision.gichoice import GoldenImageChoice, explain_golden_images
from clonefleet.provision.manifest import Manifest, load_manifest, write_manifest
from clonefleet.provision.plan import FleetPlan, make_plan
from clonefleet.provision.refresh import RefreshResult, refresh
from clonefleet.provision.status import StatusReport, status

__all__ = [
    "CapacityReport",
    "DestroyResult",
    "FleetBusy",
    "FleetPlan",
    "GoldenImageChoice",
    "Manifest",
    "ProvisionFailed",
    "ProvisionResult",
    "RefreshResult",
    "StatusReport",
    "WritesResult",
    "apply_writes",
    "capacity",
    "destroy",
    "explain_golden_images",
    "fleet_lock",
    "load_manifest",
    "make_plan",
    "provision",
    "refresh",
    "status",
    "write_manifest",
]
