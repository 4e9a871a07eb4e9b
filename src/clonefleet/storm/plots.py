"""Figures of measured storms: a calibration (throughput and p95 boot time against fleet size) and a
comparison (boot times measured and simulated, and every figure of model and simulation as a ratio to
the measurement). Builders return a matplotlib Figure; ``write_*`` save PNGs. No pyplot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clonefleet.storm.calibrate import Calibration
from clonefleet.storm.compare import METRICS, Comparison
from clonefleet.storm.results import StormResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The band a prediction should land in (the issue's floor: within 20 %).
BAND = 0.20


def calibration_figure(cal: Calibration) -> Figure:
    """Throughput and p95 boot time against the storm's size: measured, the model fitted on all sizes
    (a line), and each size predicted by the model and the simulator fitted without it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2))
    sizes = np.array([p.vms for p in cal.points], dtype=float)
    grid = np.geomspace(max(1.0, sizes.min() / 2), sizes.max() * 2, 200)
    fit_iops = np.minimum(grid * cal.fit.host_iops, cal.fit.path_iops)
    ios_per_vm = float(np.mean([p.ios_per_vm for p in cal.points]))
    panels = (("throughput [IOPS]", [p.iops for p in cal.points], fit_iops, "iops", "simulated_iops"),
              ("boot time p95 [s]", [p.boot_p95_s for p in cal.points], ios_per_vm * grid / fit_iops, "boot_s",
               "simulated_boot_p95_s"))
    for i, (label, measured, line, model_key, sim_key) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(grid, line, color="tab:gray", lw=1.5, label="model fitted on every size")
        ax.plot(sizes, measured, "o", color="black", ms=7, label="measured storm")
        held = [c for c in cal.checks]
        ax.plot([c.vms for c in held], [getattr(c.model, model_key) for c in held], "x", color="tab:blue", ms=9,
                mew=2, label="model fitted without that size")
        ax.plot([c.vms for c in held], [getattr(c, sim_key) for c in held], "^", color="tab:orange", ms=7,
                mfc="none", mew=1.5, label="simulator, fitted without that size")
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{int(s)}" for s in sizes])
        ax.set_xlabel("VMs booting together")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"calibration: {cal.method} clones on {cal.backend}; A = {cal.fit.host_iops:,.0f} IOPS per VM, "
                 f"N = {cal.fit.path_iops:,.0f} IOPS", fontsize=10)
    fig.tight_layout()
    return fig


def comparison_figure(cmp: Comparison) -> Figure:
    """Left: share of VMs booted against time, measured and simulated, with the model's boot time.
    Right: model and simulation as a ratio to the measurement, per figure, with a +-20 % band."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2))
    ax = fig.add_subplot(1, 2, 1)
    model_boot = cmp.model["boot_p95_s"]
    if model_boot is not None:
        ax.axvline(model_boot, color="tab:blue", ls=":", lw=2.5, label="model (every VM alike)")
    curves = ((cmp.measured_boot_s, "measured", "black", 1.5), (cmp.sim_boot_s, "simulated", "tab:orange", 2.5))
    for boots, label, color, width in curves:
        b = np.sort(np.asarray(boots, float))
        if len(b):
            ax.step(b, 100 * np.arange(1, len(b) + 1) / len(b), where="post", color=color, lw=width, label=label,
                    alpha=0.85)
    ax.set_xlabel("boot time since power-on [s]")
    ax.set_ylabel("VMs booted [%]")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax = fig.add_subplot(1, 2, 2)
    labels, x = [label for _, label, _ in METRICS], np.arange(len(METRICS))
    for offset, source, color in ((-0.18, "model", "tab:blue"), (0.18, "simulation", "tab:orange")):
        ratios = [cmp.error(source, key) for key, _, _ in METRICS]
        ax.bar(x + offset, [1 + r if r is not None else 0 for r in ratios], width=0.34, color=color, label=source)
    for i, (key, _, _) in enumerate(METRICS):
        if cmp.measured[key] is None or not cmp.measured[key]:
            ax.text(i, 0.05, "not\nmeasured", ha="center", va="bottom", fontsize=7, color="gray")
    ax.axhspan(1 - BAND, 1 + BAND, color="tab:green", alpha=0.12, label="within 20 % of measured")
    ax.axhline(1.0, color="black", lw=1)
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("figure / measured")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    gis = f"{cmp.golden_images} GI" + ("s" if cmp.golden_images != 1 else "")
    fig.suptitle(f"{cmp.vms} {cmp.method} clones, {gis}: model vs simulation vs measurement "
                 f"(array {Path(cmp.array).name})", fontsize=10)
    fig.tight_layout()
    return fig


def storm_figure(result: StormResult) -> Figure:
    """Left: the share of VMs booted against time since the storm began (each VM's last IO), with
    when they powered on. Right: each VM's boot time against its power-on time."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2))
    ax = fig.add_subplot(1, 2, 1)
    done = np.sort([v.done_s for v in result.vms])
    starts = np.sort([v.start_s for v in result.vms])
    share = 100 * np.arange(1, len(done) + 1) / max(len(done), 1)
    ax.step(starts, share, where="post", color="tab:gray", ls="--", label="VMs powered on")
    ax.step(done, share, where="post", color="black", label="VMs booted (last IO done)")
    ax.set_xlabel("time since the storm began [s]")
    ax.set_ylabel("VMs [%]")
    ax.set_ylim(0, 102)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax = fig.add_subplot(1, 2, 2)
    ax.plot([v.start_s for v in result.vms], [v.boot_s for v in result.vms], "o", ms=4, color="tab:blue")
    for q, style in ((0.5, ":"), (0.95, "--")):
        ax.axhline(result.boot_s(q), color="tab:red", ls=style, lw=1, label=f"p{q * 100:g} {result.boot_s(q):.2f} s")
    ax.set_xlabel("power-on time [s]")
    ax.set_ylabel("boot time [s]")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    what = "real VMs under QEMU" if result.mode == "boot" else "fio replaying each boot"
    fig.suptitle(f"storm: {len(result.vms)} {result.method} clones on {result.backend} ({what}); "
                 f"{result.iops:,.0f} IOPS", fontsize=10)
    fig.tight_layout()
    return fig


def write_figure(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path
