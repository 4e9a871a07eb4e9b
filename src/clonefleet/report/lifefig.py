"""The figure of ``plan --plot``: consumed capacity S(t) per method over the horizon, with the datastore.

:func:`life_figure` builds a matplotlib Figure without writing anything (tests read its labels and
lines); :func:`write_life_figure` writes it whole or not at all. One line per method: S as the array
stores it (after its data reduction, Eq. G5) drawn solid, the raw S dashed beside it when the array
reduces data; each method's peak marked with its day; the datastore's capacity and, with a headroom,
the target drawn across. The capacity axis is logarithmic: full copies and clones differ by orders of
magnitude, and a linear axis would flatten every clone's growth onto zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from clonefleet.lifetime import period_text
from clonefleet.planner import Plan, life_curve, peak_day_of, reduces_data, resolve_functions
from clonefleet.presets import ArrayPreset, FleetPreset
from clonefleet.report.outputs import staged_outputs
from clonefleet.units import format_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TIB = 1024.0**4
_COLORS = {"full": "#7f7f7f", "thin": "#1f77b4", "snapshot": "#d62728"}
_OTHER_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def life_figure(fleet: FleetPreset, array: ArrayPreset, result: Plan) -> Figure:
    """S(t) of every method of ``result`` over its horizon (a day-0 plan draws one day: a point each)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator

    life = result.life
    reduces = reduces_data(array)
    fig = Figure(figsize=(10.0, 5.2), dpi=110)
    ax = fig.subplots()
    others = iter(_OTHER_COLORS)
    functions = resolve_functions([m.function for m in result.methods])
    for function, m in zip(functions, result.methods, strict=True):
        if m.consumed_bytes is None:
            continue
        color = _COLORS.get(function.name) or next(others, "k")
        curve = life_curve(fleet, array, function, result.vms, life)
        name = m.function if m.function == m.method else f"{m.function} ({m.method})"
        peak = peak_day_of(curve.stored_bytes)
        label = f"{name}: peak {format_bytes(float(curve.stored_bytes.max()))}{' stored' if reduces else ''}, " \
                f"day {peak}"
        if life.days == 0:
            ax.plot([0.0], [curve.stored_bytes[0] / TIB], marker="o", color=color, ls="none", label=label)
        else:
            ax.step(curve.days, curve.stored_bytes / TIB, where="post", color=color, lw=2, label=label)
            ax.plot([curve.days[peak]], [curve.stored_bytes[peak] / TIB], marker="v", color=color, ms=6)
        if reduces:
            ax.step(curve.days, curve.consumed_bytes / TIB, where="post", color=color, lw=1, ls="--", alpha=0.5)
    if life.capacity_bytes is not None:
        ax.axhline(life.capacity_bytes / TIB, color="k", lw=1.2, label=f"datastore {format_bytes(life.capacity_bytes)}")
        if life.headroom:
            target = f"target: {100 * life.target_utilisation:.0f} % of it ({100 * life.headroom:.0f} % headroom)"
            ax.axhline((life.capacity_limit_bytes or 0) / TIB, color="k", lw=1, ls=":", label=target)
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ax.set_ylim(low / 1.15, high * 1.15)  # no line on the frame
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(_tib_label))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
    ax.set_xlim(0, max(life.days, 1))
    ax.set_xlabel("days after the first boot (each step: the end of a day of use)")
    ax.set_ylabel("consumed capacity S (log scale)")
    how = "stored after the array's data reduction (solid), raw (dashed)" if reduces else "consumed capacity"
    ax.set_title(f"S(t) of {result.vms:,} VMs of {result.fleet} on {result.array}, refresh "
                 f"{period_text(life.refresh_days)}\n{how}; v marks each peak", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def _tib_label(value: float, _pos: object) -> str:
    """A capacity tick in the unit people read (the axis holds TiB)."""
    return format_bytes(value * TIB)


def write_life_figure(fleet: FleetPreset, array: ArrayPreset, result: Plan, path: Path) -> Path:
    """Write :func:`life_figure` to ``path`` (PNG or SVG), whole or not at all; returns the path."""
    with staged_outputs(path.parent if str(path.parent) else Path("."), [path.name], "--plot") as staged:
        life_figure(fleet, array, result).savefig(staged[path.name])
    return path
