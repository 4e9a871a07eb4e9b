"""The figures read from their matplotlib Figure objects: titles, axis labels with units, legends,
and the marks the issue asks for (target T, new-GI steps, the 1 % and 2 % lines, TiB beside %)."""

from __future__ import annotations

import math

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.lines import Line2D

from clonefleet.planner import evaluate
from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.report.fig4 import compute_fig4, fig4_figure
from clonefleet.report.sweepfig import MAX_STEP_MARKS, sweep_figure
from clonefleet.sweep import parse_param, parse_range, run_sweep


def legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None, ax.get_title()
    return [t.get_text() for t in legend.get_texts()]


def labelled(ax: Axes, label: str) -> Line2D:
    return next(line for line in ax.get_lines() if line.get_label() == label)


def test_sweep_figure_titles_units_legend_target_steps_and_integer_ticks() -> None:
    fleet, array = load_fleet("desktop-win7"), load_array("midrange-2012")
    result = run_sweep(fleet, array, parse_range("1:5000"), param=parse_param("disks=100:1000:10"), target=1000)
    fig = sweep_figure(result)
    FigureCanvasAgg(fig).draw()
    left, right = fig.axes
    assert fig.get_suptitle() == "sweep of desktop-win7 on midrange-2012"
    assert "X = 480 disks" in left.get_title()  # the disk count the series over T are drawn at
    assert right.get_title().startswith("largest T against disks")
    assert left.get_xlabel() == "VMs T [count]" and left.get_ylabel() == "consumed capacity S [TiB] (log)"
    assert right.get_xlabel() == "disks [count]" and right.get_ylabel() == "largest T the array carries [VMs]"
    assert legend_texts(left) == ["full", "thin", "snapshot", "snapshot: one GI more (g + 1)", "target T = 1,000"]
    # full and thin carry the same largest T at every disk count: said, and drawn in distinct styles
    assert legend_texts(right) == ["full", "thin (coincides with full)", "snapshot", "target T = 1,000"]
    full, thin = labelled(right, "full"), labelled(right, "thin (coincides with full)")
    assert (full.get_linestyle(), full.get_linewidth()) != (thin.get_linestyle(), thin.get_linewidth())
    assert list(labelled(left, "target T = 1,000").get_xdata()) == [1000, 1000]
    assert list(labelled(right, "target T = 1,000").get_ydata()) == [1000, 1000]
    # one mark per T where the snapshot fleet needs one GI more: T = k + 1, 2k + 1, ... (g = ceil(T/k))
    k = int(evaluate(fleet, array, load_function("snapshot"), 1).clones_per_gi)
    marks = labelled(left, "snapshot: one GI more (g + 1)").get_xdata()
    assert list(marks) == list(range(k + 1, 5001, k))
    for ax, axis in ((left, "x"), (right, "x"), (right, "y")):
        ticks = ax.get_xticks() if axis == "x" else ax.get_yticks()
        assert all(float(t).is_integer() for t in ticks), (axis, ticks)


def test_sweep_figure_without_a_swept_field_has_one_titled_panel() -> None:
    result = run_sweep(load_fleet("server-linux"), load_array("allflash-2024"), parse_range("1:2000"))
    fig = sweep_figure(result)
    (ax,) = fig.axes
    assert "X = 24 disks" in ax.get_title() and "[TiB]" in ax.get_ylabel()
    assert {"full", "thin", "snapshot"} <= set(legend_texts(ax))


def test_sweep_figure_says_when_new_gi_steps_are_too_many_to_mark() -> None:
    fleet, array = load_fleet("desktop-win7"), load_array("midrange-2012")
    k = int(evaluate(fleet, array, load_function("snapshot"), 1).clones_per_gi)
    stop = k * (MAX_STEP_MARKS + 5)
    ax = sweep_figure(run_sweep(fleet, array, parse_range(f"1:{stop}"))).axes[0]
    assert "too many to mark" in ax.get_title()
    assert "snapshot: one GI more (g + 1)" not in legend_texts(ax)


def test_fig4_figure_legend_has_the_1_and_2_percent_lines_and_bars_show_tib() -> None:
    fig = fig4_figure(compute_fig4())
    (ax,) = fig.axes
    assert ax.get_title().startswith("Fig. 4 reproduced: 1000 VMs")
    assert "% of full copies" in ax.get_ylabel() and "[TiB]" in ax.get_xlabel()
    assert legend_texts(ax) == ["1 % of full copies", "2 % of full copies", "full", "thin", "snapshot"]
    assert list(labelled(ax, "1 % of full copies").get_ydata()) == [1.0, 1.0]
    assert list(labelled(ax, "2 % of full copies").get_ydata()) == [2.0, 2.0]
    labels = [t.get_text() for t in ax.texts]
    assert len(labels) == 6 and all(" %\n" in t and t.endswith(" TiB") for t in labels)
    # full copies: 1000 x 100 GB = 1e14 bytes = 90.95 TiB, beside 100 %
    full_tib = 1000 * 100e9 / 2**40
    assert labels.count(f"100.00 %\n{full_tib:,.2f} TiB") == 2
    # every bar's TiB is its percentage of the full copies' TiB
    for text in labels:
        pct, tib = (float(part.split()[0].replace(",", "")) for part in text.split("\n"))
        assert math.isclose(tib, pct / 100 * full_tib, abs_tol=0.01 + 0.005 * full_tib / 100), text
