"""Why a fleet gets the number of golden images (g) it gets, and whether the presets behind it fit.

``golden_images = "auto"`` takes the planner's g for the manifest's fleet and array presets
(:func:`clonefleet.provision.manifest.resolve_golden_images`). That number is only as right as
those presets: the shipped arrays describe storage arrays (a 2012 array of 15k rpm disks, a 2024
all-flash array), not the local filesystem a qcow2 or reflink fleet lives on. This module says
which g was chosen, from which presets, what limits one GI (Eq. 1's ``k``), and when the array is
a shipped preset rather than the user's description of their own storage.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from clonefleet.backends.reflink import filesystem_of
from clonefleet.errors import UsageError
from clonefleet.planner import GI_BOUND_NAMES, gi_bound
from clonefleet.presets import Method, load_array, load_fleet, load_function, preset_names
from clonefleet.provision.manifest import Manifest, resolve_golden_images

#: How to pass presets that describe the user's storage (one line each, printed by ``init``).
PRESET_HINT = ("describe your storage: pass --array with a preset or the path of your own TOML file "
               "and --preset with the fleet's ('clonefleet presets' lists the shipped ones)")


@dataclass(frozen=True)
class GoldenImageChoice:
    """g for one fleet and the reason, in the units of the model (clones, IOPS)."""

    golden_images: int | None  # g; None when no number of GIs carries even one clone
    requested: str  # "auto" or the number given
    method: str
    clones: int  # T
    fleet_preset: str
    array_preset: str
    array_description: str
    clones_per_gi: int | None  # k, the most clones one GI carries (snapshot, auto only)
    limited_by: str | None  # what bounds k: the GI volume's processor, the GI's disks or the function's limit
    reason: str
    storage_warning: str | None  # set when the array preset is a shipped one, not the user's storage

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _limit(manifest: Manifest) -> tuple[int, str, str]:
    """k, the resource that bounds it, and the figures behind it (:func:`clonefleet.planner.gi_bound`)."""
    name, value, figures = gi_bound(load_fleet(manifest.preset), load_array(manifest.array),
                                    load_function("snapshot"))
    return int(math.floor(value)) if math.isfinite(value) else manifest.count, GI_BOUND_NAMES[name], figures


def explain_golden_images(manifest: Manifest) -> GoldenImageChoice:
    """g for ``manifest`` (the number given, or the planner's for ``auto``) with the reason."""
    array = load_array(manifest.array)
    requested = "auto" if manifest.golden_images is None else str(manifest.golden_images)
    k: int | None = None
    limited_by: str | None = None
    g: int | None
    if manifest.method is not Method.SNAPSHOT:
        g = 1
        reason = f"{manifest.method.value} clones are private copies: one GI, read only while copying"
    elif manifest.golden_images is not None:
        g = manifest.golden_images
        reason = "given in the manifest (--golden-images)"
    else:
        k, limited_by, figures = _limit(manifest)
        try:
            g = resolve_golden_images(manifest)
        except UsageError:
            g = None
        if g is None:
            reason = (f"one GI cannot carry even one clone of {manifest.preset} on {manifest.array}, "
                      f"limited by the {limited_by} ({figures}); give a number")
        else:
            reason = (f"one GI carries at most {k:,} clones of {manifest.preset} on {manifest.array}, "
                      f"limited by the {limited_by} ({figures}); {manifest.count:,} clones need "
                      f"g = ceil({manifest.count:,} / {k:,}) = {g}")
    warning = None
    if requested == "auto" and manifest.method is Method.SNAPSHOT and manifest.array in preset_names("array"):
        warning = (f"g comes from the shipped array preset {manifest.array} ({array.description}), not from "
                   f"the storage under {manifest.dest} ({manifest.backend} files on "
                   f"{filesystem_of(manifest.dest)} on this host); {PRESET_HINT}")
    return GoldenImageChoice(
        golden_images=g, requested=requested, method=manifest.method.value, clones=manifest.count,
        fleet_preset=manifest.preset, array_preset=manifest.array, array_description=array.description,
        clones_per_gi=k, limited_by=limited_by, reason=reason, storage_warning=warning,
    )


__all__ = ["PRESET_HINT", "GoldenImageChoice", "explain_golden_images"]
