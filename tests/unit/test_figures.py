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
from clonefleet.report.sweepfig import FAINT_ALPHA, MAX_STEP_MARKS, sweep_figure
from clonefleet.sweep import SweepResult, parse_param, parse_range, run_sweep

LARGEST_T_ENTRY = ("largest T of each method (dotted, its colour)\n"
                   "full and thin share T = 1,189 (alternating dots)")
FAINT_STEPS = "_snapshot: one GI more (g + 1), requirement fails"


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
    assert legend_texts(left) == ["full", "thin", "snapshot", "snapshot: one GI more (g + 1)", LARGEST_T_ENTRY,
                                  "target T = 1,000"]
    # full and thin carry the same largest T at every disk count: said, and drawn in distinct styles
    assert legend_texts(right) == ["full", "thin (coincides with full)", "snapshot", "target T = 1,000",
                                   "full, thin: fewest disks for T = 1,000: 404",
                                   "snapshot: fewest disks for T = 1,000: 179"]
    full, thin = labelled(right, "full"), labelled(right, "thin (coincides with full)")
    assert (full.get_linestyle(), full.get_linewidth()) != (thin.get_linestyle(), thin.get_linewidth())
    assert list(labelled(left, "target T = 1,000").get_xdata()) == [1000, 1000]
    assert list(labelled(right, "target T = 1,000").get_ydata()) == [1000, 1000]
    # one mark per T where the snapshot fleet needs one GI more: T = k + 1, 2k + 1, ... (g = ceil(T/k))
    k = int(evaluate(fleet, array, load_function("snapshot"), 1).clones_per_gi)
    marks = labelled(left, "snapshot: one GI more (g + 1)").get_xdata()
    faint_marks = labelled(left, FAINT_STEPS).get_xdata()
    assert [*marks, *faint_marks] == list(range(k + 1, 5001, k))
    for ax, axis in ((left, "x"), (right, "x"), (right, "y")):
        ticks = ax.get_xticks() if axis == "x" else ax.get_yticks()
        assert all(float(t).is_integer() for t in ticks), (axis, ticks)


def disk_sweep() -> SweepResult:
    fleet, array = load_fleet("desktop-win7"), load_array("midrange-2012")
    return run_sweep(fleet, array, parse_range("1:5000"), param=parse_param("disks=100:1000:10"), target=1000)


def test_sweep_figure_largest_t_lines_have_one_legend_entry_and_shared_ones_name_both() -> None:
    result = disk_sweep()
    assert result.largest["full"] == result.largest["thin"] == 1189 != result.largest["snapshot"]
    left = sweep_figure(result).axes[0]
    texts = legend_texts(left)
    assert sum(t.startswith("largest T of each method") for t in texts) == 1
    assert "full and thin share T = 1,189" in next(t for t in texts if t.startswith("largest T"))
    # one dotted line per method at its own largest T, in its own colour; full's is not hidden under thin's
    for f in result.functions:
        line = labelled(left, f"_largest T of {f.name}")
        assert list(line.get_xdata()) == [result.largest[f.name]] * 2
        assert line.get_color() == labelled(left, f.name).get_color()
    full, thin = labelled(left, "_largest T of full"), labelled(left, "_largest T of thin")
    # (offset, on-off) as given: matplotlib has no public getter for a line's dash pattern
    full_dash, thin_dash = vars(full)["_unscaled_dash_pattern"], vars(thin)["_unscaled_dash_pattern"]
    assert full_dash[1] == thin_dash[1] and full_dash[0] != thin_dash[0]  # same dots, shifted: they alternate
    assert any("full = thin" in t.get_text() and "1,189" in t.get_text() for t in left.texts)


def test_sweep_figure_new_gi_ticks_are_faint_past_the_largest_t_like_the_curve() -> None:
    result = disk_sweep()
    left = sweep_figure(result).axes[0]
    largest = result.largest["snapshot"]
    bold, faint = labelled(left, "snapshot: one GI more (g + 1)"), labelled(left, FAINT_STEPS)
    assert len(bold.get_xdata()) and all(t <= largest for t in bold.get_xdata())
    assert len(faint.get_xdata()) and all(t > largest for t in faint.get_xdata())
    curve = labelled(left, "snapshot")
    faint_curve = next(line for line in left.get_lines()
                       if line.get_color() == curve.get_color() and line.get_alpha() is not None
                       and line.get_linestyle() == curve.get_linestyle() and line is not curve
                       and not line.get_label().startswith("_largest"))
    assert bold.get_alpha() == curve.get_alpha() and faint.get_alpha() == faint_curve.get_alpha() == FAINT_ALPHA
    assert faint.get_color() == bold.get_color() == curve.get_color()


def test_sweep_figure_marks_where_each_method_crosses_the_target() -> None:
    result = disk_sweep()
    right = sweep_figure(result).axes[1]
    assert {name: x for name, (x, _) in result.fewest.items()} == {"full": 404, "thin": 404, "snapshot": 179}
    texts = legend_texts(right)
    for names, x in ((("full", "thin"), 404), (("snapshot",), 179)):
        label = f"{', '.join(names)}: fewest disks for T = 1,000: {x}"
        assert label in texts
        marks = [line for line in right.get_lines() if line.get_label().lstrip("_").startswith(label)]
        assert len(marks) == len(names)  # a ring per method sharing the mark
        for mark, name in zip(marks, names, strict=True):
            assert (list(mark.get_xdata()), list(mark.get_ydata())) == ([result.fewest[name][0]], [result.target])
            assert mark.get_marker() == "o"
            assert mark.get_markeredgecolor() == labelled(right, name if name != "thin" else
                                                          "thin (coincides with full)").get_color()
        assert any(t.get_text() == f"{x} ({', '.join(names)})" for t in right.texts)


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


def test_a_bar_says_why_its_method_fails() -> None:
    from clonefleet.lifetime import Lifetime
    from clonefleet.planner import plan
    from clonefleet.report.figures import shortfall

    fleet, array = load_fleet("desktop-win10"), load_array("allflash-dr-2024")
    functions = ["full", "afa-snapshot"]
    too_many = plan(fleet, array, 5000, functions)
    assert {shortfall(m, 5000) for m in too_many.methods if not m.meets_requirement} == {"T > T_max"}
    # 1800 VMs fit the array (T_max 2142) but not with 20 % headroom on its processors
    busy = plan(fleet, array, 1800, functions, Lifetime(headroom=0.2))
    assert all(m.max_vms >= 1800 and not m.boot_holds for m in busy.methods)
    assert {shortfall(m, 1800) for m in busy.methods} == {"a resource over its headroom target"}
    small = plan(fleet, array, 1000, functions, Lifetime(days=30, capacity_bytes=2 * 2**40))
    assert {shortfall(m, 1000) for m in small.methods if not m.meets_requirement} == {"outgrows the datastore"}
    assert any(not m.meets_requirement for m in small.methods)
