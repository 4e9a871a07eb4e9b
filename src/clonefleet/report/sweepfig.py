"""The sweep's figure (sweep.png): S against T per method, and the largest T against the swept field.

:func:`sweep_figure` builds a matplotlib Figure from a :class:`clonefleet.sweep.SweepResult`
without writing anything, so tests read its titles, labels and legend; :func:`write_sweep` writes it
with sweep.csv and sweep.json. What it shows, panel by panel:

- left: consumed capacity S [TiB] against T at the presets' own values (the array's disk count
  stated in the title); thick where the requirement holds, thin and faint where it fails; the
  largest T of each method dotted in its colour (one legend entry; methods sharing one largest T
  alternate their dots on one line, and the legend and a note name them); the target T; the T
  where snapshot clones need one GI more (faint past the largest T, like the curve).
- right (with ``--param``): the largest T each method carries against the swept field; methods
  whose curves coincide say so in the legend, and are drawn in styles that stay visible on top
  of each other. Sweeping ``disks`` with a target, each method's crossing of the target is
  marked at its fewest disks (``SweepResult.fewest``), labelled and in the legend.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from clonefleet.planner import operable_count
from clonefleet.progress import Progress, no_progress
from clonefleet.report.outputs import staged_outputs
from clonefleet.sweep import SweepResult, SweptParam, exact_text, json_numbers

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Rows of sweep.csv written between two progress reports (about 0.1 s of writing).
CSV_ROWS_PER_REPORT = 100_000
#: Line style per method: distinct even where two methods' curves coincide.
_STYLES: dict[str, dict[str, object]] = {
    "full": {"color": "#7f7f7f", "ls": "-", "lw": 4.0, "alpha": 0.55},
    "thin": {"color": "#1f77b4", "ls": (0, (6, 3)), "lw": 2.0},
    "snapshot": {"color": "#d62728", "ls": "-", "lw": 1.6},
}
#: More "new GI" steps than this are left unmarked (the title says so): markers would merge.
MAX_STEP_MARKS = 300
#: Opacity of what is drawn where the requirement fails (past the largest T).
FAINT_ALPHA = 0.35
_INTEGER_PARAMS = ("disks", "gi_disks", "processors", "queue_depth", "boot_write_extents")


_UNITS = {"host_iops": "IOPS", "boot_ios": "IOs", "read_fraction": "fraction", "boot_write_extents": "extents",
          "queue_depth": "IOs", "processor_iops": "IOPS", "processors": "count", "volume_iops_limit": "IOPS",
          "disk_iops": "IOPS", "disks": "count", "gi_disks": "count", "raid_write_penalty": "disk IOs per write",
          "cache_hit_shared": "fraction", "cache_hit_private": "fraction", "cow_read_fraction": "fraction"}


def param_axis(param: SweptParam) -> tuple[npt.NDArray[np.float64], str]:
    """The swept values as the figure shows them, and their unit (bytes as GiB)."""
    if param.attr.endswith("_bytes"):
        return param.values / 2**30, "GiB"
    return param.values, _UNITS.get(param.key, "preset units")


def _style(method: str) -> dict[str, object]:
    return dict(_STYLES.get(method, {"ls": "-", "lw": 1.5}))


def _groups(values: dict[str, int | None]) -> dict[int, list[str]]:
    """Methods by shared value, in the order first met (None left out)."""
    groups: dict[int, list[str]] = {}
    for name, value in values.items():
        if value is not None:
            groups.setdefault(value, []).append(name)
    return groups


def _draw_largest(ax: Axes, result: SweepResult) -> str:
    """The largest T of each method as a dotted line in its colour; the legend text for them ("" if none).

    Methods sharing one largest T draw alternating dashes on one line, so each colour shows, and the
    legend and a note at the top of the line name them all.
    """
    colours = {f.name: str(_style(f.method.value).get("color", "k")) for f in result.functions}
    shown = {name: t for name, t in result.largest.items() if 0 < t <= result.vms[-1]}
    groups = _groups(dict(shown))
    shared = []
    for t, names in groups.items():
        n = len(names)
        for i, name in enumerate(names):
            ls: object = ":" if n == 1 else (2.0 * i, (2.0, 2.0 * (n - 1)))
            ax.axvline(t, color=colours[name], ls=ls, lw=1 if n == 1 else 1.4, label=f"_largest T of {name}")
        if n > 1:
            together = " and ".join(names)
            shared.append(f"{together} share T = {t:,}")
            ax.annotate(f"{' = '.join(names)}\nT = {t:,}", xy=(t, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -3), textcoords="offset points", ha="left", va="top", fontsize=7)
    if not groups:
        return ""
    return "largest T of each method (dotted, its colour)" + "".join(f"\n{s} (alternating dots)" for s in shared)


def _mark_fewest(ax: Axes, result: SweepResult, xs: npt.NDArray[np.float64]) -> None:
    """Where each method's line crosses the target: the fewest disks carrying it (``result.fewest``).

    Methods with the same answer share one mark (rings of their colours) and one legend entry.
    """
    assert result.target is not None
    colours = {f.name: str(_style(f.method.value).get("color", "k")) for f in result.functions}
    fewest = {name: x for name, (x, _) in result.fewest.items() if x is not None and xs[0] <= x <= xs[-1]}
    for x, names in _groups(dict(fewest)).items():
        label = f"{', '.join(names)}: fewest disks for T = {result.target:,}: {x:,}"
        for i, name in enumerate(names):  # the first ring largest, so every colour shows
            ax.plot([x], [result.target], ls="none", marker="o", ms=11 - 4 * i, mfc="none" if i < len(names) - 1
                    else colours[name], mec=colours[name], mew=2, zorder=5,
                    label=label if i == 0 else f"_{label} ({name})")
        ax.annotate(f"{x:,} ({', '.join(names)})", xy=(x, result.target), xytext=(6, -12),
                    textcoords="offset points", fontsize=7)


def sweep_figure(result: SweepResult) -> Figure:
    """The figure of ``result`` (one panel, or two with a swept field); the caller saves or closes it."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = 2 if result.param is not None else 1
    fig = Figure(figsize=(7.2 * panels, 5.0), dpi=110)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    disks = f"X = {result.array_disks:g} disks (the preset's)" if result.array_disks is not None else "the preset"
    step_note = ""
    for f in result.functions:
        ev = result.baseline[f.name]
        style = _style(f.method.value)
        colour = str(style.get("color", "k"))
        tib = ev.consumed_bytes / 2**40
        holds = np.asarray(ev.meets_requirement)
        ax.plot(result.vms, np.where(holds, tib, np.nan), label=f"{f.name}", **style)
        faint = {**style, "lw": 1.0, "alpha": FAINT_ALPHA}
        ax.plot(result.vms, np.where(holds, np.nan, tib), **faint)
        if f.method.value == "snapshot" and len(result.vms) > 1:
            g = np.asarray(ev.golden_images)
            steps = np.flatnonzero(np.isfinite(g[1:]) & (g[1:] > g[:-1])) + 1
            if 0 < steps.size <= MAX_STEP_MARKS:
                # bold where the requirement holds, faint past the largest T, as the curve is
                bold, past = steps[holds[steps]], steps[~holds[steps]]
                ax.plot(result.vms[bold], tib[bold], ls="none", marker="|", ms=9, mew=1.2,
                        color=colour, label=f"{f.name}: one GI more (g + 1)")
                ax.plot(result.vms[past], tib[past], ls="none", marker="|", ms=9, mew=1.0,
                        color=colour, alpha=FAINT_ALPHA, label=f"_{f.name}: one GI more (g + 1), requirement fails")
            elif steps.size > MAX_STEP_MARKS:
                step_note = f"; {steps.size:,} new-GI steps, too many to mark"
    largest_note = _draw_largest(ax, result)
    if result.target is not None:
        ax.axvline(result.target, color="black", lw=1.2, ls="-.", label=f"target T = {result.target:,}")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("VMs T [count]")
    ax.set_ylabel("consumed capacity S [TiB] (log)")
    ax.set_title(f"S against T at {disks}\nfaint: requirement fails; dotted: largest T{step_note}", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    if largest_note:  # one entry for the dotted lines, before the target's
        from matplotlib.lines import Line2D

        at = len(labels) - (result.target is not None)
        handles.insert(at, Line2D([], [], color="0.3", ls=":", lw=1))
        labels.insert(at, largest_note)
    ax.legend(handles, labels, fontsize=8, loc="lower right")
    if result.param is not None:
        ax2 = axes[1]
        seen: list[tuple[str, npt.NDArray[np.float64]]] = []
        xs, unit = param_axis(result.param)
        for f in result.functions:
            largest_t = operable_count(result.grids[f.name].max_vms[0])
            same = [name for name, other in seen if np.array_equal(other, largest_t)]
            label = f.name + (f" (coincides with {', '.join(same)})" if same else "")
            ax2.plot(xs, largest_t, label=label, **_style(f.method.value))
            seen.append((f.name, largest_t))
        if result.target is not None:
            ax2.axhline(result.target, color="black", lw=1.2, ls="-.", label=f"target T = {result.target:,}")
            if result.param.key == "disks":
                _mark_fewest(ax2, result, xs)
        ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
        if result.param.key in _INTEGER_PARAMS:
            ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax2.set_xlabel(f"{result.param.key} [{unit}]")
        ax2.set_ylabel("largest T the array carries [VMs]")
        ax2.set_title(f"largest T against {result.param.key} (other fields: the presets')", fontsize=10)
        ax2.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"sweep of {result.fleet} on {result.array}")
    fig.tight_layout()
    return fig


__all__ = ["param_axis", "sweep_figure"]


def write_sweep(result: SweepResult, out_dir: Path, progress: Progress = no_progress) -> list[Path]:
    """sweep.csv (every point), sweep.json (summary and the series over T), sweep.png.

    The three files appear together and whole, or not at all (:func:`~clonefleet.report.outputs.staged_outputs`).
    ``progress`` hears "write sweep.csv" (rows done of all rows, every
    ``CSV_ROWS_PER_REPORT`` rows: about 1 s per million), then "draw sweep.png".
    """
    names = ("sweep.csv", "sweep.json", "sweep.png")
    files = [out_dir / name for name in names]
    doc = result.summary(files)
    doc["series"] = {
        f.name: {
            "vms": result.vms.tolist(),
            "consumed_bytes": json_numbers(result.baseline[f.name].consumed_bytes),
            "capacity_ratio": json_numbers(result.baseline[f.name].capacity_ratio),
            "golden_images": json_numbers(result.baseline[f.name].golden_images),
            "meets_requirement": result.baseline[f.name].meets_requirement.tolist(),
        }
        for f in result.functions
    }
    text = json.dumps(doc, allow_nan=False) + "\n"
    with staged_outputs(out_dir, names) as staged:
        _write_csv(result, staged["sweep.csv"], progress)
        staged["sweep.json"].write_text(text, encoding="utf-8")
        progress("draw sweep.png", 0, 1)
        sweep_figure(result).savefig(staged["sweep.png"])
        progress("draw sweep.png", 1, 1)
    return files

def _write_csv(result: SweepResult, path: Path, progress: Progress = no_progress) -> None:
    values = result.param.values if result.param is not None else np.array([np.nan])
    total, done = result.points, 0
    progress("write sweep.csv", 0, total)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        header = ["function", "method", "vms"]
        if result.param is not None:
            header.append(result.param.key)
        header += ["golden_images", "consumed_bytes", "capacity_ratio", "meets_requirement"]
        over_time = result.life.days > 0
        if over_time:  # the peak over the horizon, raw and as the array stores it
            header += ["peak_consumed_bytes", "peak_reduced_consumed_bytes"]
        writer.writerow(header)
        for f in result.functions:
            grid = result.grids[f.name]
            for j, value in enumerate(values):
                column = (slice(None), j) if grid.consumed_bytes.ndim == 2 else (slice(None),)
                g, s = grid.golden_images[column], grid.consumed_bytes[column]
                r, ok = grid.capacity_ratio[column], grid.meets_requirement[column]
                peak, stored = grid.peak_consumed_bytes[column], grid.peak_reduced_consumed_bytes[column]
                prefix = [f.name, f.method.value]
                for i, t in enumerate(result.vms.tolist()):
                    row = [*prefix, t]
                    if result.param is not None:
                        row.append(exact_text(value))
                    row += [f"{g[i]:.0f}", f"{s[i]:.0f}", f"{r[i]:.6g}", int(ok[i])]
                    if over_time:
                        row += [f"{peak[i]:.0f}", f"{stored[i]:.0f}"]
                    writer.writerow(row)
                    done += 1
                    if done % CSV_ROWS_PER_REPORT == 0:
                        progress("write sweep.csv", done, total)
    if done % CSV_ROWS_PER_REPORT:  # the last rows, when they were not just reported
        progress("write sweep.csv", done, total)
