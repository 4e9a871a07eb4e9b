"""Figures of one run: when the VMs finished booting, and how busy each resource was over time.

Each figure has a builder that returns the matplotlib :class:`~matplotlib.figure.Figure` (tests
read its titles, labels and legend), and :func:`write_plots` saves both. No pyplot: no global
figure state, no GUI backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clonefleet.errors import output_folder
from clonefleet.sim.results import SimResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The nominal window is drawn inside the boot-time axis when it lies within this many data spans
#: of the boot times; farther away, an arrow at the edge points to it (the data keep the width).
WINDOW_REACH_SPANS = 3.0


def _gis(result: SimResult) -> str:
    g = result.scenario.golden_images
    return f"{g} GI" + ("s" if g != 1 else "")


def _subtitle(result: SimResult, gis: bool = True) -> str:
    sc = result.scenario
    return (f"{sc.vms:,} x {sc.fleet} on {sc.array}, {sc.function}" + (f", {_gis(result)}" if gis else "")
            + f"; {sc.arrivals.value} loop, seed {result.seed}")


#: Said on the x-axis of each run of a comparison: the runs share one time axis.
SHARED_NOTE = " (one time axis for every run compared)"


def boot_times_figure(result: SimResult, shared_range_s: tuple[float, float] | None = None) -> Figure:
    """The share of VMs booted against time since power-on (an empirical CDF: one step per VM, no
    bins to choose), the x-axis fitted to the boot times, the median, the p95 and the nominal window
    (boot IOs / A, a boot at the fleet's own IO rate with no queueing) marked. ``shared_range_s``:
    boot times the axis must also hold, so that the runs of one comparison share one time axis."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    boot = np.sort(np.asarray(result.boot_s, float))
    window = result.boot_window_s
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    share = 100 * np.arange(1, len(boot) + 1) / max(len(boot), 1)
    ax.step(boot, share, where="post", color="tab:blue", label=f"VMs booted ({len(boot):,} VMs)")
    lo, hi = (float(boot[0]), float(boot[-1])) if len(boot) else (0.0, 1.0)
    if shared_range_s is not None:
        lo, hi = min(lo, shared_range_s[0]), max(hi, shared_range_s[1])
    span = max(hi - lo, 0.01 * hi, 1e-3)
    if lo - WINDOW_REACH_SPANS * span <= window <= hi + WINDOW_REACH_SPANS * span:
        lo, hi = min(lo, window), max(hi, window)
        ax.axvline(window, color="tab:red", linestyle="--", label=f"nominal window {window:,.1f} s")
        window_inside = True
    else:
        window_inside = False
    pad = 0.05 * max(hi - lo, span)
    ax.set_xlim(max(0.0, lo - pad), hi + pad)
    if len(boot):
        for q, style in ((50, ":"), (95, "-.")):
            x = float(np.percentile(boot, q))
            ax.axvline(x, color="0.35", linestyle=style, linewidth=1, label=f"p{q}: {x:,.1f} s")
    if not window_inside:
        right = window > hi
        edge = hi + pad if right else max(0.0, lo - pad)
        ax.annotate(f"nominal window {window:,.1f} s {'→' if right else '←'}", xy=(edge, 2), xycoords="data",
                    ha="right" if right else "left", va="bottom", color="tab:red", fontsize=8,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
        ax.legend(handles=[*ax.get_legend_handles_labels()[0],
                           Line2D([], [], color="tab:red", linestyle="--",
                                  label=f"nominal window {window:,.1f} s (off the {'right' if right else 'left'})")],
                  loc="upper left", fontsize=8)
    else:
        ax.legend(loc="upper left", fontsize=8)
    ax.set_ylim(0, 102)
    ax.set_xlabel("boot time, power-on to last IO [s]" + (SHARED_NOTE if shared_range_s else ""))
    ax.set_ylabel("VMs booted [%]")
    ax.grid(alpha=0.3)
    ax.set_title(f"When the VMs finish booting, {_gis(result)}\n{_subtitle(result, gis=False)}", fontsize=9)
    fig.tight_layout()
    return fig


def utilisation_figure(result: SimResult, shared_range_s: tuple[float, float] | None = None) -> Figure:
    """Each resource class's busy share over time, in percent as in the tables (per time bin of
    ``util_bin_s``: busy server-seconds over servers x bin width), the legend beside the axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 4.2))
    ax = fig.add_subplot()
    for u in result.utilisation:
        if u.servers == 0 or not len(u.series):
            continue
        t = (np.arange(len(u.series)) + 0.5) * result.util_bin_s
        t[-1] = ((len(u.series) - 1) * result.util_bin_s + result.makespan_s) / 2  # the last bin ends the run
        ax.plot(t, 100 * u.series, label=f"{u.resource} ({u.servers:,} server{'s' if u.servers != 1 else ''})")
    ax.set_xlim(0, max(result.makespan_s, shared_range_s[1] if shared_range_s else 0.0, 1e-9))
    ax.set_ylim(0, 105)
    ax.set_xlabel("time since the storm began [s]" + (SHARED_NOTE if shared_range_s else ""))
    ax.set_ylabel("busy share of the resource [%]")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="resource (servers)",
              title_fontsize=8, frameon=False)
    ax.set_title(f"How busy each resource was ({result.util_bin_s:,.2g} s bins)\n{_subtitle(result)}", fontsize=9)
    fig.tight_layout()
    return fig


def shared_time_range(runs: Sequence[SimResult]) -> tuple[float, float] | None:
    """The first boot and the last moment of any of ``runs`` [s]: one time axis for them all."""
    booted = [r for r in runs if len(r.boot_s)]
    if not booted:
        return None
    return (min(float(np.min(r.boot_s)) for r in booted),
            max(max(float(np.max(r.boot_s)), r.makespan_s) for r in booted))


def write_plots(result: SimResult, folder: str | Path, compared_with: Sequence[SimResult] = ()) -> list[Path]:
    """Write ``boot_times.png`` and ``utilisation.png`` into ``folder``; return their paths.

    ``compared_with``: the other runs of one comparison (``--golden-images 1,2,3``): every run's
    figures then share one time axis, so a shorter storm looks shorter.
    """
    out = output_folder(folder, "--plots")
    shared = shared_time_range([result, *compared_with]) if compared_with else None
    paths = []
    for name, build in (("boot_times.png", boot_times_figure), ("utilisation.png", utilisation_figure)):
        fig = build(result, shared)
        fig.savefig(out / name, dpi=110)
        paths.append(out / name)
    return paths
