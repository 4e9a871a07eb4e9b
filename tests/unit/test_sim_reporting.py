"""What a run reports beside its numbers: the peak bin against the mean, the resource that limits
a storm, why more GIs stop helping, and the two figures (read from the matplotlib objects)."""

from __future__ import annotations

from functools import cache

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from clonefleet import sim
from clonefleet.presets import load_array, load_fleet, load_function
from clonefleet.sim.results import SimResult

SNAPSHOT = load_function("snapshot")


@cache
def _allflash_storm() -> tuple[SimResult, ...]:
    """200 desktops on the all-flash array (2 controllers) with 4 and then 5 GIs: at 5, processor 0
    owns GI volumes 0, 2 and 4 (volume j on processor j mod 2) and saturates."""
    storm = sim.run_storm(load_fleet("desktop-win7"), load_array("allflash-2024"), SNAPSHOT, 200,
                          golden_images=[4, 5], ios_per_vm=500)
    return storm.runs


def _small(vms: int, ios: int, g: int = 3, arrivals: sim.Arrivals = sim.Arrivals.CLOSED) -> SimResult:
    (run,) = sim.run_storm(load_fleet("server-ws2008"), load_array("midrange-2012"), SNAPSHOT, vms,
                           golden_images=g, ios_per_vm=ios, seed=1, arrivals=arrivals).runs
    return run


def test_the_peak_bin_never_reads_below_the_mean_whatever_the_last_bin() -> None:
    # Runs of a dozen bins ending in a part of one, and of hundreds: the last part used to be divided
    # by a whole bin's width, and a short run's peak read below its mean.
    for run in (_small(3, 20), _small(40, 400), _small(40, 400, arrivals=sim.Arrivals.OPEN), _allflash_storm()[1]):
        assert run.makespan_s % run.util_bin_s > 0
        for u in run.utilisation:
            if u.servers:
                assert u.mean - 1e-9 <= u.peak_bin <= 1 + 1e-9, (u.resource, u.peak_bin, u.mean)


def test_five_gis_slower_than_four_is_explained_by_the_shared_processor() -> None:
    four, five = _allflash_storm()
    assert five.boot.p95 > four.boot.p95  # the premise: one more GI made the boots slower
    (line,) = sim.explain_replicas([four, five])
    assert line.startswith("5 GIs slower than 4") and "processors saturate" in line
    assert "GIs 0, 2, 4 on processor 0" in line and "j mod 2" in line
    assert five.bottleneck().resource == "processors"
    why = sim.explain_bottleneck(five)
    assert "what limits this storm: the processors" in why and "GIs 0, 2, 4 on processor 0" in why


def test_a_storm_paced_by_its_vms_says_nothing_saturates() -> None:
    (run,) = sim.run_storm(load_fleet("server-ws2008"), load_array("allflash-2024"), load_function("thin"), 4,
                           ios_per_vm=100, arrivals=sim.Arrivals.OPEN).runs
    assert run.bottleneck().busiest_server < 0.9
    assert sim.explain_bottleneck(run).startswith("nothing saturates")


def _legend(ax: object) -> list[str]:
    legend = ax.get_legend()  # type: ignore[attr-defined]
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_the_boot_time_figure_titles_units_legend_and_fitted_axis() -> None:
    run = _allflash_storm()[1]
    fig = sim.boot_times_figure(run)
    (ax,) = fig.axes
    assert ax.get_title().startswith("When the VMs finish booting, 5 GIs\n200 x desktop-win7 on allflash-2024")
    assert ax.get_xlabel() == "boot time, power-on to last IO [s]" and ax.get_ylabel() == "VMs booted [%]"
    labels = _legend(ax)
    assert labels[0] == "VMs booted (200 VMs)"
    assert labels[1] == f"p50: {np.percentile(run.boot_s, 50):,.1f} s"
    assert labels[2] == f"p95: {np.percentile(run.boot_s, 95):,.1f} s"
    # An empirical CDF: one step per VM, no bins to choose; the axis spans the boot times.
    (curve,) = ax.get_lines()[:1]
    assert len(curve.get_xdata()) == 200
    lo, hi = ax.get_xlim()
    assert lo <= run.boot.min and hi >= run.boot.max
    # Far from the boots (25 s window, boots under 1 s), the window is named off the axis, not drawn.
    assert run.boot_window_s > 10 * run.boot.max and hi < run.boot_window_s
    assert labels[3] == f"nominal window {run.boot_window_s:,.1f} s (off the right)"


def test_the_boot_time_figure_draws_a_nearby_window_inside_the_axis() -> None:
    run = _small(40, 400, arrivals=sim.Arrivals.OPEN)  # boots of 8.9 to 10.8 s, a window of 10 s
    fig = sim.boot_times_figure(run)
    (ax,) = fig.axes
    assert "3 GIs" in ax.get_title()
    assert f"nominal window {run.boot_window_s:,.1f} s" in _legend(ax)
    lo, hi = ax.get_xlim()
    assert lo <= run.boot_window_s <= hi


def test_the_utilisation_figure_in_percent_with_the_legend_beside_the_curves() -> None:
    run = _allflash_storm()[0]
    fig = sim.utilisation_figure(run)
    (ax,) = fig.axes
    assert ax.get_title().startswith("How busy each resource was (")
    assert "4 GIs" in ax.get_title()
    assert ax.get_xlabel() == "time since the storm began [s]"
    assert ax.get_ylabel() == "busy share of the resource [%]" and ax.get_ylim() == (0, 105)
    assert _legend(ax) == ["volumes (4 servers)", "processors (2 servers)", "pool disks (24 servers)",
                           "GI disks (96 servers)"]  # 24 per GI copy
    peak = max(line.get_ydata().max() for line in ax.get_lines())  # type: ignore[union-attr]
    assert peak == 100 * max(u.peak_bin for u in run.utilisation)  # percent, as in the tables
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    legend_box, axes_box = ax.get_legend().get_window_extent(), ax.get_window_extent()  # type: ignore[union-attr]
    assert legend_box.x0 >= axes_box.x1  # outside the axes: no curve under it
    assert legend_box.x1 <= fig.bbox.x1  # and still inside the picture


def test_write_plots_saves_both_figures(tmp_path: object) -> None:
    from pathlib import Path

    paths = sim.write_plots(_small(5, 60), Path(str(tmp_path)))
    assert [p.name for p in paths] == ["boot_times.png", "utilisation.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_the_runs_of_one_comparison_share_one_time_axis() -> None:
    from clonefleet.sim.plots import shared_time_range

    four, five = _allflash_storm()
    shared = shared_time_range([four, five])
    assert shared is not None
    first = min(float(np.min(r.boot_s)) for r in (four, five))
    last = max(max(float(np.max(r.boot_s)), r.makespan_s) for r in (four, five))
    assert shared == (first, last)
    for run in (four, five):  # the faster storm's figures reach as far as the slower one's
        boot_ax = sim.boot_times_figure(run, shared).axes[0]
        util_ax = sim.utilisation_figure(run, shared).axes[0]
        assert boot_ax.get_xlim()[0] <= first and boot_ax.get_xlim()[1] >= last and util_ax.get_xlim()[1] >= last
        assert "one time axis" in boot_ax.get_xlabel() and "one time axis" in util_ax.get_xlabel()
    alone = sim.boot_times_figure(four).axes[0]
    assert "one time axis" not in alone.get_xlabel()
