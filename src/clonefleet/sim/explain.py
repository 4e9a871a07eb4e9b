"""Why a storm took as long as it did, in a sentence: the resource that saturates, and what GI
replicas can and cannot change about it.

Reporting only: these read :class:`~clonefleet.sim.results.SimResult` figures, never an engine.
The array model's routing they explain (:mod:`clonefleet.sim.arraymodel`): a snapshot clone's IO
passes its GI's volume, volume j is owned by processor ``j mod processors``; its reads of GI data
go to that GI's disks, its writes (and every IO of a full or thin clone) to the pool disks.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from clonefleet.presets import Method
from clonefleet.sim.results import SimResult, Utilisation

#: A resource whose busiest server is busy at least this share of the run is called saturated.
SATURATED = 0.9
#: More GIs "do not help" when the p95 boot time falls by less than this share.
NO_GAIN = 0.05

_WHAT_HELPS = {
    "GI disks": "the disks holding the GI copies, which every clone's reads of GI data reach; "
                "more GIs (--golden-images) spread those reads over more copies",
    "volumes": "a volume serves at most the array's per-volume IOPS; each GI is one volume all its clones "
               "pass, so more GIs give more volumes",
    "processors": "the array's controllers; more GIs help only while their volumes land on idle "
                  "controllers (volume j is owned by processor j mod processors)",
    "pool disks": "the clones' own writes (and every IO of full and thin clones) go to the pool disks, "
                  "which more GIs do not add to",
}


def _what_helps(resource: str, result: SimResult) -> str:
    if resource == "volumes" and result.scenario.method is not Method.SNAPSHOT:
        return "each clone is its own volume, which serves at most the array's per-volume IOPS"
    return _WHAT_HELPS.get(resource, "")


def seconds(x: float) -> str:
    """A time in s to 0.1 s, or to 3 significant digits under 10 s (0.125 s, not 0.1 s)."""
    return f"{x:,.1f}" if abs(x) >= 10 else f"{x:.3g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _processor_sharing(result: SimResult) -> str:
    """Which processors own two or more GI volumes more than others, or '' when balanced."""
    util = {u.resource: u for u in result.utilisation}
    p, g = util["processors"].servers, result.scenario.golden_images
    if result.scenario.method is not Method.SNAPSHOT or p <= 1 or g % p == 0 or g < 2:
        return ""
    shared = [f"GIs {', '.join(str(j) for j in range(c, g, p))} on processor {c}"
              for c in range(p) if len(range(c, g, p)) > g // p]
    return (f"{g} GI volumes on {p} processors cannot be shared evenly (volume j is owned by processor "
            f"j mod {p}): {'; '.join(shared)}")


def explain_bottleneck(result: SimResult) -> str:
    """One line: what limits this storm (the resource nearest saturation) and what would help."""
    top: Utilisation = result.bottleneck()
    if top.busiest_server < SATURATED:
        return (f"nothing saturates (nearest: {top.resource}, busiest one busy {_pct(top.busiest_server)} of the "
                "run): the boots are paced by the VMs themselves (their IO rate or queue depth), not the array")
    line = f"what limits this storm: the {top.resource}, busiest one busy {_pct(top.busiest_server)} of the run"
    helps = _what_helps(top.resource, result)
    line += f" ({helps})" if helps else ""
    sharing = _processor_sharing(result) if top.resource == "processors" else ""
    return line + (f"; {sharing}" if sharing else "")


def explain_replicas(runs: Sequence[SimResult]) -> list[str]:
    """One line per step to more GIs that does not shorten the boots by at least :data:`NO_GAIN`
    (which resource saturates there and why a GI copy cannot relieve it), and one per number of
    GIs whose saturated processors carry more GI volumes than the others."""
    lines = []
    for before, after in pairwise(runs):
        g0, g1 = before.scenario.golden_images, after.scenario.golden_images
        if g1 <= g0 or after.boot.p95 < (1 - NO_GAIN) * before.boot.p95:
            top = after.bottleneck()
            sharing = _processor_sharing(after)
            if top.resource == "processors" and top.busiest_server >= SATURATED and sharing:
                lines.append(f"{g1} GIs: the busiest processor saturates ({_pct(top.busiest_server)}, the mean "
                             f"{_pct(top.mean)}): {sharing}")
            continue
        verdict = "slower than" if after.boot.p95 > before.boot.p95 else "hardly faster than"
        top = after.bottleneck()
        why = f"the {top.resource} saturate (busiest one busy {_pct(top.busiest_server)} of the run)"
        sharing = _processor_sharing(after)
        if top.resource == "processors" and sharing:
            why += f": {sharing}"
        elif top.busiest_server < SATURATED:
            why = f"nothing saturates (nearest: {top.resource} at {_pct(top.busiest_server)}): the VMs pace themselves"
        elif _what_helps(top.resource, after):
            why += f"; {_what_helps(top.resource, after)}"
        p95 = f"boot p95 {seconds(after.boot.p95)} s against {seconds(before.boot.p95)} s"
        lines.append(f"{g1} GIs {verdict} {g0} ({p95}): {why}")
    return lines
